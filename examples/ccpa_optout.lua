#!/usr/bin/env lua5.4
-- Applies CCPA "do not sell" requests to Adobe Campaign profiles, and keeps
-- a record of what happened to each request.
--
--   lua5.4 examples/ccpa_optout.lua [options] REQUESTS
--
-- REQUESTS is a CSV file with a header row, or JSON Lines; a request names
-- a person by `email` or `pkey`, and an optional `optout` column set to
-- false, 0 or no asks to opt back in.  --help lists the options.

-- The job's own modules live beside it, in ccpa/.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local EXIT_OK, EXIT_FAILED, EXIT_CANNOT_START, EXIT_INTERRUPTED = 0, 1, 2, 130

-- The most calls client:bulk keeps in flight; the job checks --concurrency
-- itself, so that a bad value stops it before any work, naming the flag.
local MAX_CONCURRENCY = 256

local current_report -- the report being written, for the interrupt message
local clear_line = function() end -- wipes the progress bar, once drawn

local function say(fmt, ...)
  io.stderr:write("ccpa_optout: ", fmt:format(...), "\n")
end

-- An error that ends the run before it starts, with exit status 2.
local Cannot = {}
local function cannot(fmt, ...)
  error(setmetatable({ message = fmt:format(...) }, Cannot), 0)
end

local function options(argparse)
  local parser = argparse("ccpa_optout.lua",
    "Apply CCPA \"do not sell\" requests to Adobe Campaign profiles, and "
    .. "write a report of what happened to each request.")
  parser:argument("requests",
    "The requests: CSV with a header row, or JSON Lines (.jsonl). Columns "
    .. "`email` or `pkey` name the person; `optout` false/0/no asks to "
    .. "opt back in. Other columns are carried into the report.")
  parser:option("--report",
    "Where to write the report: .csv or .jsonl (default: named after "
    .. "the input and the time, in the current directory).")
    :argname("FILE")
  parser:option("--resume",
    "An earlier run's report: do again only the requests that did not "
    .. "succeed there, and write a new, complete report.")
    :argname("REPORT")
  parser:flag("--dry-run",
    "Read only: report what would change (outcomes would_opt_out and "
    .. "would_opt_in) without writing to Campaign.")
  parser:option("--concurrency", "Calls in flight at once, 1 to "
    .. MAX_CONCURRENCY .. ".", "16")
    :argname("N")
  parser:option("--org", "The Campaign organization (tenant) id "
    .. "(default: $CAMPAIGN_ORG).")
  parser:option("--base-url", "The API's base URL "
    .. "(default: $CAMPAIGN_BASE_URL, else the module's default).")
    :argname("URL")
  parser:option("--resource", "profileAndServices or "
    .. "profileAndServicesExt (default: the module's).")
  parser:option("--optout-field", "The profile's opt-out field, e.g. "
    .. "cusOptOutCcpa on instances from before 19.4.", "ccpaOptOut")
    :argname("NAME")
  parser:option("--timeout", "Seconds for one call.")
    :argname("SECONDS"):convert(tonumber)
  parser:option("--retries", "Tries again after a transient failure "
    .. "(default: the module's).")
    :argname("N"):convert(math.tointeger)
  parser:option("--rate-limit", "At most this many calls a second.")
    :argname("N"):convert(tonumber)
  parser:option("--secrets-file", "Read CAMPAIGN_* settings, secrets "
    .. "included, from this file of NAME=value lines (it wins over the "
    .. "environment).")
    :argname("FILE")
  parser:flag("--no-progress", "No progress bar, even on a terminal.")
  parser:flag("-v --verbose", "Say what the run uses (never a secret) and "
    .. "each failure as it happens.")
  parser:epilog([[
Secrets come only from the environment or --secrets-file, never from a flag:
  CAMPAIGN_API_KEY        the API key (X-Api-Key)
  CAMPAIGN_ACCESS_TOKEN   the bearer token
  CAMPAIGN_CLIENT_ID, CAMPAIGN_CLIENT_SECRET
                          OAuth server-to-server credentials
                          (used when there is no access token; the client
                          id defaults to the API key)
Other settings: CAMPAIGN_ORG, CAMPAIGN_BASE_URL (flags win over them),
CAMPAIGN_IMS_URL (where client credentials are exchanged for tokens).

Exit status: 0 when no request failed (not_found and invalid_request are
recorded outcomes), 1 when some failed (run again with --resume REPORT),
2 when the run could not start (bad options, unreadable input,
authentication refused), 130 when interrupted.]])
  return parser
end

-- NAME=value lines; blank lines and # comments are skipped, and a value
-- may be quoted.
local function read_settings(path)
  local fh, msg = io.open(path, "r")
  if not fh then cannot("cannot read the secrets file: %s", msg) end
  local t = {}
  for line in fh:lines() do
    local name, value = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if name then
      value = value:match('^"(.*)"$') or value:match("^'(.*)'$") or value
      t[name] = value
    elseif line:find("%S") and not line:find("^%s*#") then
      fh:close()
      cannot("the secrets file %s has a line that is not NAME=value", path)
    end
  end
  fh:close()
  return t
end

local function file_exists(path)
  local fh = io.open(path, "r")
  if fh then fh:close() end
  return fh ~= nil
end

local function default_report(input, format)
  local base = input:match("([^/]*)$"):gsub("%.[^.]*$", "")
  if base == "" then base = "requests" end
  local stem = ("%s-optout-%s"):format(base, os.date("!%Y%m%dT%H%M%SZ"))
  local ext = format == "jsonl" and ".jsonl" or ".csv"
  local path, n = stem .. ext, 1
  while file_exists(path) do
    n = n + 1
    path = ("%s-%d%s"):format(stem, n, ext)
  end
  return path
end

-- The progress bar: on a terminal only, redrawn at most once a second.
-- Requests are read ahead of those finished, so the share done is the
-- finished requests (and those an earlier report settled) times the bytes
-- a record takes so far, over the file's size.
local function progress(enabled, size, source)
  if not enabled then return function() end, function() end end
  local start, last, done = os.time(), -1, 0
  local skipped = 0
  local function draw(final)
    local t = os.time()
    if t == last and not final then return end
    last = t
    local elapsed = t - start
    local per_record = source.rec > 0 and source.bytes() / source.rec or 0
    local frac = size > 0
      and math.min((done + skipped) * per_record / size, 1) or 0
    local width = 24
    local fill = math.floor(frac * width + 0.5)
    local rate = elapsed > 0 and done / elapsed or 0
    local left = ""
    if frac > 0 and elapsed > 0 then
      local s = math.floor(elapsed * (1 - frac) / frac + 0.5)
      left = (" %d:%02d left"):format(s // 60, s % 60)
    end
    io.stderr:write(("\r[%s%s] %d requests %3d%% %.0f/s%s\27[K"):format(
      ("#"):rep(fill), ("-"):rep(width - fill), done,
      math.floor(frac * 100), rate, left))
    io.stderr:flush()
  end
  local function tick(skip)
    if skip then skipped = skipped + 1 else done = done + 1 end
    draw(false)
  end
  local function clear()
    io.stderr:write("\r\27[K")
    io.stderr:flush()
  end
  return tick, clear
end

local function summary(counts, changed, dry_run, carried, redone,
    report_path)
  local engine = require "ccpa.engine"
  local total = 0
  for _, o in ipairs(engine.ORDER) do total = total + counts[o] end
  local out = { ("requests          %7d"):format(total) }
  for _, o in ipairs(engine.ORDER) do
    if counts[o] > 0 or o == "failed" then
      out[#out + 1] = ("  %-16s%7d"):format(o, counts[o])
    end
  end
  if carried > 0 then
    out[#out + 1] = ("  (%d settled in the earlier report, carried over)")
      :format(carried)
  end
  if redone and redone > 0 then
    out[#out + 1] = ("  (%d that had succeeded done again, in order with "
      .. "a failed request for the same person)"):format(redone)
  end
  if dry_run then
    out[#out + 1] = ("profiles to change %6d (dry run: nothing written)")
      :format(changed)
  elseif changed == 0 then
    out[#out + 1] = "profiles changed        0 (nothing to do)"
  else
    out[#out + 1] = ("profiles changed  %7d"):format(changed)
  end
  out[#out + 1] = "report: " .. report_path
  io.stdout:write(table.concat(out, "\n"), "\n")
  io.stdout:flush()
end

-- The C module.  When it is not found, Lua's message lists every path it
-- tried, fifteen lines that hide what to do: one line says it instead.
-- Any other load error is kept, on one line.  The require runs as a
-- protected call that a Ctrl-C cannot reach (see ccpa.protect).
local function load_campaign()
  local protect = require "ccpa.protect"
  local ok, campaign = protect.call(require, "campaign")
  if ok then return campaign end
  local msg = tostring(campaign)
  if msg:find("^module 'campaign' not found") then
    cannot("the campaign module was not found: build it with make and set "
      .. "LUA_CPATH=\"$PWD/build/lua5.4/?.so;;\", or run make install")
  end
  cannot("cannot load the campaign module: %s", (msg:gsub("%s*\n%s*", " ")))
end

local function main()
  local argparse = require "argparse"
  local parser = options(argparse)
  local ok, args = parser:pparse()
  if not ok then
    io.stderr:write(parser:get_usage(), "\n\nError: ", args, "\n")
    return EXIT_CANNOT_START
  end
  local concurrency = math.tointeger(args.concurrency)
  if not concurrency or concurrency < 1 or concurrency > MAX_CONCURRENCY then
    cannot("--concurrency must be a whole number from 1 to %d",
      MAX_CONCURRENCY)
  end
  args.concurrency = concurrency
  if args.retries ~= nil and args.retries < 0 then
    cannot("--retries must be a whole number, 0 or more")
  end
  local campaign = load_campaign()

  local env = {}
  for _, k in ipairs { "CAMPAIGN_ORG", "CAMPAIGN_BASE_URL", "CAMPAIGN_API_KEY",
      "CAMPAIGN_ACCESS_TOKEN", "CAMPAIGN_CLIENT_ID", "CAMPAIGN_CLIENT_SECRET",
      "CAMPAIGN_IMS_URL" } do
    env[k] = os.getenv(k)
    if env[k] == "" then env[k] = nil end
  end
  if args.secrets_file then
    for k, v in pairs(read_settings(args.secrets_file)) do
      if k:find("^CAMPAIGN_") and v ~= "" then env[k] = v end
    end
  end

  local settings = {
    org = args.org or env.CAMPAIGN_ORG,
    base_url = args.base_url or env.CAMPAIGN_BASE_URL,
    -- the API key is the credential's client id
    api_key = env.CAMPAIGN_API_KEY or env.CAMPAIGN_CLIENT_ID,
    access_token = env.CAMPAIGN_ACCESS_TOKEN,
    resource = args.resource,
    ccpa_optout_field = args.optout_field,
    timeout = args.timeout,
    retries = args.retries,
    rate_limit = args.rate_limit,
  }
  -- A token when there is one; else client credentials, with which the
  -- module asks for tokens itself (the client id is the API key).
  if not settings.access_token and env.CAMPAIGN_CLIENT_SECRET then
    settings.client_id = env.CAMPAIGN_CLIENT_ID or env.CAMPAIGN_API_KEY
    settings.client_secret = env.CAMPAIGN_CLIENT_SECRET
    settings.ims_url = env.CAMPAIGN_IMS_URL
  end
  if not settings.org then
    cannot("no organization: set CAMPAIGN_ORG or give --org")
  end
  if not settings.api_key then
    cannot("no API key: set CAMPAIGN_API_KEY (environment or --secrets-file)")
  end
  if not settings.access_token and not settings.client_secret then
    cannot("no access token: set CAMPAIGN_ACCESS_TOKEN "
      .. "(environment or --secrets-file)")
  end

  local requests = require "ccpa.requests"
  local report = require "ccpa.report"
  local resume = require "ccpa.resume"
  local engine = require "ccpa.engine"

  local input_format = requests.format_of(args.requests)
  local fh, msg = io.open(args.requests, "rb")
  if not fh then cannot("cannot read the requests: %s", msg) end
  local size = fh:seek("end") or 0
  fh:seek("set", 0)
  local source, why = requests.open(fh, input_format)
  if not source then cannot("%s: %s", args.requests, why) end

  local report_path = args.report or default_report(args.requests,
    input_format)
  if report_path == args.requests then
    cannot("--report would overwrite the requests")
  end
  if args.resume and report_path == args.resume then
    cannot("--report must differ from --resume (the earlier report is "
      .. "kept as it is)")
  end
  -- A report is the record of what was done: never written over, which
  -- also keeps the requests and --resume's report safe however their
  -- paths are spelled (./x, a link).  An empty file may be reused.
  local existing = io.open(report_path, "rb")
  if existing then
    local readable, problem = existing:read(0)   -- a directory says so
    local bytes = existing:seek("end")
    existing:close()
    if readable == nil and problem then
      cannot("cannot write the report: %s", problem)
    end
    if bytes and bytes > 0 then
      cannot("--report %s exists and is not empty: a report is never "
        .. "written over (name another, or remove it)", report_path)
    end
  end

  local settled, redone
  if args.resume then
    settled, redone = resume.settled(args.resume)
    if not settled then cannot("--resume: %s", redone) end
  end

  local protect = require "ccpa.protect"
  local made, client = protect.call(campaign.new, settings)
  if not made then
    cannot("cannot set up the client: %s", tostring(client))
  end

  if args.verbose then
    say("organization %s, base URL %s, resource %s, field %s",
      settings.org, settings.base_url or "(module default)",
      settings.resource or "(module default)", settings.ccpa_optout_field)
    say("%d calls in flight; API key set; access token %s",
      args.concurrency, settings.access_token and "set"
      or "from client credentials")
    say("report: %s", report_path)
  end

  local writer
  writer, why = report.writer(report_path, source.extra_names)
  if not writer then cannot("cannot write the report: %s", why) end
  current_report = report_path

  local counts = {}
  for o in pairs(engine.STRENGTH) do counts[o] = 0 end
  local carried = 0
  if settled then
    local done
    done, why = resume.copy(args.resume, settled, writer, function(_, rows)
      local o = engine.strongest(rows)
      counts[o] = counts[o] + 1
      carried = carried + 1
    end)
    if not done then cannot("--resume: %s", why) end
  end

  local term = require "term"
  local show = not args.no_progress and term.isatty(io.stderr)
  local tick, clear = progress(show, size, source)
  clear_line = clear
  local ran, result, changed = pcall(engine.run, {
    client = client,
    source = source.next,
    writer = writer,
    field = settings.ccpa_optout_field,
    dry_run = args.dry_run,
    concurrency = args.concurrency,
    skip = settled and function(rec)
      if settled:has(rec) then tick(true) return true end
      return false
    end,
    on_request = function(rec, outcome)
      tick()
      if args.verbose and outcome == "failed" then
        clear()
        say("request %d failed (see the report)", rec)
      end
    end,
  })
  clear()
  writer:close()
  fh:close()
  if not ran then
    if type(result) == "table" and result.fatal then
      say("the run stopped: %s", tostring(result.fatal))
      say("the report %s holds every request finished before; "
        .. "run again with --resume %s", report_path, report_path)
      return EXIT_CANNOT_START
    end
    error(result, 0)
  end
  for o, n in pairs(result) do counts[o] = counts[o] + n end
  summary(counts, changed, args.dry_run, carried, redone, report_path)
  return counts.failed > 0 and EXIT_FAILED or EXIT_OK
end

-- Runs main, turning every way it can end into one line and an exit status:
-- never a traceback, and never a secret (no message here carries one).
local ok, status = pcall(main)
if not ok then
  local err = status
  if getmetatable(err) == Cannot then
    say("%s", err.message)
    status = EXIT_CANNOT_START
  elseif tostring(err):find("interrupted!", 1, true) then
    clear_line()
    say("interrupted: %s holds every request finished so far; run again "
      .. "with --resume %s to finish", current_report or "the report",
      current_report or "REPORT")
    status = EXIT_INTERRUPTED
  else
    say("%s", tostring(err))
    status = EXIT_CANNOT_START
  end
end
os.exit(status, true)
