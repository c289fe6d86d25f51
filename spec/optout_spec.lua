-- The opt-out job end to end, against the sandbox:
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/optout_spec.lua
-- The job runs as a user runs it, in a process of its own; the sandbox's
-- control routes (/_sandbox/) set it up and show its state afterwards.
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "examples/?.lua;" .. package.path

local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require("cjson").new()
local report = require "ccpa.report"
local requests = require "ccpa.requests"

local BASE = os.getenv("CAMPAIGN_BASE_URL")
local ROOT = io.popen("pwd"):read("l")
local LUA = "lua5.4"
local DEMO = "examples/demo-requests.csv"
local SHIPPED_SEED = ROOT .. "/spec/sandbox/seed.jsonl"
-- Real input, prepared outside the project, read in place.
local SHARED = ROOT .. "/../shared/data/"

local function control(method, path, body)
  local out = {}
  local src = body and cjson.encode(body)
  local ok, code = http.request {
    url = BASE .. "/_sandbox/" .. path, method = method,
    source = src and ltn12.source.string(src),
    headers = src and { ["Content-Type"] = "application/json",
      ["Content-Length"] = #src } or nil,
    sink = ltn12.sink.table(out),
  }
  assert(ok, code)
  local text = table.concat(out)
  assert(code >= 200 and code < 300, ("%s %s: %s %s"):format(method, path,
    tostring(code), text))
  return text
end

local function reset(seed)
  control("POST", "reset", { seed = seed or SHIPPED_SEED })
end

local function faults(t)
  control("POST", "faults", t)
end

local function clear_faults()
  control("DELETE", "faults")
end

-- PKey -> profile, as the sandbox holds them now.
local function profiles()
  local t = {}
  for line in control("GET", "profiles"):gmatch("[^\n]+") do
    local p = cjson.decode(line)
    t[p.PKey] = p
  end
  return t
end

local function flags()
  local t = {}
  for pkey, p in pairs(profiles()) do t[pkey] = p.ccpaOptOut end
  return t
end

local function counters()
  return cjson.decode(control("GET", "counters"))
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function tmp(ext)
  local name = os.tmpname()
  os.remove(name)
  return name .. ext
end

-- Runs the job; returns its exit status and everything it printed.
-- env: extra NAME=value settings, or false to leave a variable out; the
-- module is found in build/ unless env sets LUA_CPATH.
local function job(args, env)
  local parts, sets = { "env" }, {}
  for k, v in pairs(env or {}) do
    -- env takes its -u options before any assignment
    if v == false then
      parts[#parts + 1] = "-u " .. k
    else
      sets[#sets + 1] = k .. "=" .. quote(v)
    end
  end
  table.move(sets, 1, #sets, #parts + 1, parts)
  if not (env and env.LUA_CPATH) then
    parts[#parts + 1] = "LUA_CPATH=" .. quote(ROOT .. "/build/lua5.4/?.so;;")
  end
  parts[#parts + 1] = LUA .. " examples/ccpa_optout.lua"
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  local p = io.popen(table.concat(parts, " ") .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("exit=(%d+)\n$"))
  return status, out:gsub("exit=%d+\n$", "")
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function rows_of(path)
  local rows = {}
  for row in assert(report.rows(path)) do rows[#rows + 1] = row end
  return rows
end

local function count_records(path)
  local fh = assert(io.open(path, "rb"))
  local src = assert(requests.open(fh, requests.format_of(path)))
  local n = 0
  while src.next() do n = n + 1 end
  fh:close()
  return n
end

-- The summary's counts, as printed.
local function summary(out)
  local t = {}
  for name, n in out:gmatch("\n  ([%a_]+) +(%d+)") do t[name] = tonumber(n) end
  t.requests = tonumber(out:match("requests +(%d+)"))
  return t
end

-- Every record of the input has rows, and the report agrees with the
-- sandbox: for each profile, the latest request that settled it left the
-- value the sandbox holds.
local function check_report(rows, n_records, state)
  local seen, last = {}, {}
  for _, row in ipairs(rows) do
    seen[row.record] = true
    if row.pkey and (row.outcome == "opted_out" or row.outcome == "opted_in"
        or row.outcome == "already_set") then
      local l = last[row.pkey]
      if not l or l.record < row.record then last[row.pkey] = row end
      if row.outcome == "already_set" then
        assert.equal(row.before, row.after)
      else
        assert.are_not.equal(row.before, row.after)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", row.changed_at)
      end
    end
  end
  for i = 1, n_records do assert.is_true(seen[i], "record " .. i) end
  assert.is_nil(seen[n_records + 1])
  for pkey, row in pairs(last) do
    assert.equal(row.after, state[pkey], "profile " .. pkey)
  end
end

local function same_flags(a, b)
  local diff = {}
  for k, v in pairs(a) do if b[k] ~= v then diff[#diff + 1] = k end end
  for k in pairs(b) do if a[k] == nil then diff[#diff + 1] = k end end
  assert.same({}, diff)
end

local describe_sandbox = BASE and describe or function(name)
  describe(name, function()
    pending("needs a sandbox: run under spec/sandbox/with-sandbox.sh")
  end)
end

describe_sandbox("ccpa_optout.lua against the sandbox", function()
  local demo_records
  local clean -- the flags after a clean run on the demo requests
  local files = {}
  local function report_file(ext)
    local f = tmp(ext or ".csv")
    files[#files + 1] = f
    return f
  end

  setup(function()
    demo_records = count_records(DEMO)
  end)

  teardown(function()
    clear_faults()
    reset(os.getenv("SEED") or SHIPPED_SEED)
    for _, f in ipairs(files) do os.remove(f) end
  end)

  before_each(function()
    clear_faults()
  end)

  -- A clean run on the demo requests, once; its flags are what the runs
  -- with failures must end with.
  local function clean_run()
    if not clean then
      reset()
      local out = report_file()
      local status, text = job { "--report", out, DEMO }
      assert.equal(0, status, text)
      clean = { flags = flags(), rows = rows_of(out), text = text }
    end
    return clean
  end

  it("applies the demo requests; the report agrees with the sandbox",
    function()
      reset()
      local before = flags()
      local out = report_file()
      local status, text = job { "--report", out, DEMO }
      assert.equal(0, status, text)
      local s = summary(text)
      assert.equal(demo_records, s.requests)
      local sum = 0
      for k, n in pairs(s) do if k ~= "requests" then sum = sum + n end end
      assert.equal(s.requests, sum)
      assert.equal(0, s.failed)
      assert.is_true(s.opted_out > 100)
      assert.is_true(s.opted_in > 10)
      assert.is_true(s.already_set > 10)
      assert.is_true(s.not_found > 20)
      assert.is_true(s.invalid_request >= 8)
      assert.matches("report: " .. out:gsub("%p", "%%%0"), text)
      local state = flags()
      local rows = rows_of(out)
      check_report(rows, demo_records, state)
      -- nothing the report does not name has changed
      local named = {}
      for _, row in ipairs(rows) do if row.pkey then named[row.pkey] = true end end
      for pkey, v in pairs(before) do
        if not named[pkey] then assert.equal(v, state[pkey], pkey) end
      end
      -- a shared email: one row per profile
      local per_record = {}
      for _, row in ipairs(rows) do
        per_record[row.record] = (per_record[row.record] or 0) + 1
      end
      local shared = 0
      for _, n in pairs(per_record) do if n > 1 then shared = shared + 1 end end
      assert.is_true(shared >= 1)
      -- the person who asked out, then back in, is in
      local flip
      for _, row in ipairs(rows) do
        if row.Note == "changed their mind the next day" then flip = row end
      end
      assert.is_false(state[flip.pkey])
    end)

  it("on the real input, ends with exactly the expected profiles opted out",
    function()
      local seed = SHARED .. "people-seed.jsonl"
      local input = SHARED .. "optout-requests.csv"
      reset(seed)
      local out = report_file()
      local status, text = job { "--report", out, input }
      assert.equal(0, status, text)
      local expected = cjson.decode(assert(io.open(SHARED
        .. "expected-optout.json")):read("a"))
      local got, want = {}, {}
      for _, p in pairs(profiles()) do
        if p.ccpaOptOut then got[#got + 1] = p.externalId end
      end
      for _, id in ipairs(expected.opted_out_after) do want[#want + 1] = id end
      table.sort(got)
      table.sort(want)
      assert.same(want, got)
      -- every request accounted for
      local n = count_records(input)
      assert.equal(expected.requests, n)
      assert.equal(n, summary(text).requests)
      check_report(rows_of(out), n, flags())

      -- a second run writes nothing, and says so
      local patches = counters().methods.PATCH or 0
      local again = report_file(".jsonl")
      status, text = job { "--report", again, input }
      assert.equal(0, status, text)
      assert.equal(patches, counters().methods.PATCH or 0)
      assert.matches("profiles changed +0 %(nothing to do%)", text)
      local s = summary(text)
      assert.is_nil(s.opted_out)
      assert.equal(n, s.requests)
      for _, row in ipairs(rows_of(again)) do
        assert.is_true(row.outcome == "already_set"
          or row.outcome == "not_found" or row.outcome == "invalid_request")
      end
    end)

  -- Writes text to a new file of the spec's own; returns its path.
  local function write_file(ext, text)
    local path = report_file(ext)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
  end

  it("never writes over a report, the requests or --resume's report, however spelled",
    function()
      reset()
      local input = write_file(".csv", "email\nquentin.nunez@example.org\n")
      local dir, base = input:match("^(.*)/([^/]+)$")
      local status, text = job { "--report", dir .. "/./" .. base, input }
      assert.equal(2, status, text)
      assert.matches("exists and is not empty: a report is never written over", text)
      assert.equal("email\nquentin.nunez@example.org\n", read_file(input))
      local first = report_file()
      status, text = job { "--report", first, input }
      assert.equal(0, status, text)
      local kept = read_file(first)
      status, text = job { "--resume", first, "--report", dir .. "/../" ..
        dir:match("[^/]+$") .. "/" .. first:match("[^/]+$"), input }
      assert.equal(2, status, text)
      assert.equal(kept, read_file(first))
      -- an empty file (a placeholder made for it) may be used
      local empty = write_file(".csv", "")
      status, text = job { "--report", empty, input }
      assert.equal(0, status, text)
      assert.equal(2, #rows_of(empty))   -- the email is shared by two profiles
    end)

  it("--resume redoes a request whose rows a cut report holds only in part", function()
    reset()
    -- the second email is shared by two profiles: two rows, written last
    local input = write_file(".csv",
      "email\ngrace.jones@example.net\nquentin.nunez@example.org\n")
    local first = report_file()
    local status, text = job { "--report", first, input }
    assert.equal(0, status, text)
    local whole = read_file(first)
    assert.equal(2, select(2, whole:gsub("\n2,", "")))
    -- cut inside the last row, as a size limit or a full disk would
    local f = assert(io.open(first, "wb"))
    f:write(whole:sub(1, #whole - 10))
    f:close()
    local second = report_file()
    status, text = job { "--resume", first, "--report", second, input }
    assert.equal(0, status, text)
    local n = 0
    for _, row in ipairs(rows_of(second)) do
      if row.record == 2 then n = n + 1 end
    end
    assert.equal(2, n)
  end)

  it("carries twice-named CSV columns and a JSON Lines 1e999 without loss or a stop",
    function()
      reset()
      local input = write_file(".csv",
        "email,note,note,Email\ngrace.jones@example.net,first,second,other@x.example\n")
      local out = report_file()
      local status, text = job { "--report", out, input }
      assert.equal(0, status, text)
      local row = rows_of(out)[1]
      assert.same({ "first", "second", "other@x.example" }, { row.note, row.note_2, row.Email })
      input = write_file(".jsonl", '{"email":"grace.jones@example.net","n":1}\n' ..
        '{"email":"quentin.nunez@example.org","note":1e999}\n')
      out = report_file(".jsonl")
      status, text = job { "--report", out, input }
      assert.equal(0, status, text)
      assert.equal(2, summary(text).requests)
      assert.matches('"input":{"note":null}', read_file(out), 1, true)
    end)

  it("after injected failures, --resume ends as a clean run does", function()
    local want = clean_run().flags
    reset()
    faults { status = { code = 503, probability = 0.25 },
      drop = { probability = 0.05 } }
    local first = report_file()
    local status, text = job { "--retries", "0", "--report", first, DEMO }
    assert.equal(1, status, text)
    local failed = summary(text).failed
    assert.is_true(failed > 10, text)
    clear_faults()
    local second = report_file(".jsonl")
    status, text = job { "--resume", first, "--report", second, DEMO }
    assert.equal(0, status, text)
    local s = summary(text)
    assert.equal(demo_records, s.requests)
    assert.equal(0, s.failed)
    assert.matches("carried over", text)
    local state = flags()
    same_flags(want, state)
    check_report(rows_of(second), demo_records, state)
  end)

  it("after being killed halfway, --resume ends as a clean run does",
    function()
      local want = clean_run().flags
      reset()
      faults { latency_ms = 15 }
      local first = report_file()
      local cmd = ("LUA_CPATH=%s %s examples/ccpa_optout.lua --concurrency 2"
        .. " --report %s %s >/dev/null 2>&1 & echo $!"):format(
        quote(ROOT .. "/build/lua5.4/?.so;;"), LUA, quote(first), DEMO)
      local p = io.popen(cmd)
      local pid = p:read("l")
      p:close()
      -- wait until about a third of the requests are in the report
      local deadline = socket.gettime() + 20
      local lines = 0
      repeat
        socket.sleep(0.05)
        local fh = io.open(first, "rb")
        if fh then
          lines = select(2, fh:read("a"):gsub("\n", ""))
          fh:close()
        end
      until lines > demo_records / 3 or socket.gettime() > deadline
      os.execute("kill -KILL " .. pid)
      assert.is_true(lines < demo_records, "the job finished too soon")
      clear_faults()
      local done = {}
      for _, row in ipairs(rows_of(first)) do done[row.record] = true end
      local n = 0
      for _ in pairs(done) do n = n + 1 end
      assert.is_true(n > 0 and n < demo_records)
      local second = report_file()
      local status, text = job { "--resume", first, "--report", second, DEMO }
      assert.equal(0, status, text)
      assert.equal(demo_records, summary(text).requests)
      local state = flags()
      same_flags(want, state)
      check_report(rows_of(second), demo_records, state)
    end)

  it("on Ctrl-C, says one line, keeps a valid report, exits 130", function()
    reset()
    faults { latency_ms = 15 }
    local first = report_file()
    local log, pidfile, statusfile = tmp(".log"), tmp(".pid"), tmp(".status")
    files[#files + 1] = log
    files[#files + 1] = pidfile
    files[#files + 1] = statusfile
    os.execute(("( LUA_CPATH=%s %s examples/ccpa_optout.lua --concurrency 2"
      .. " --report %s %s >%s 2>&1 & echo $! >%s; wait $!; echo $? >%s )"
      .. " >/dev/null 2>&1 &"):format(quote(ROOT .. "/build/lua5.4/?.so;;"),
      LUA, quote(first), DEMO, log, pidfile, statusfile))
    local function read(f)
      local fh = io.open(f)
      local v = fh and fh:read("l")
      if fh then fh:close() end
      return v
    end
    local deadline = socket.gettime() + 10
    while not read(pidfile) and socket.gettime() < deadline do
      socket.sleep(0.02)
    end
    socket.sleep(0.8)
    os.execute("kill -INT " .. read(pidfile))
    while not read(statusfile) and socket.gettime() < deadline do
      socket.sleep(0.05)
    end
    -- A lost interrupt shows as status 1 and a failed row: lua5.4 raises
    -- Ctrl-C as an error at the next call, which a protected call could
    -- take for bad JSON or a bad op.  This run lands on one such call by
    -- chance; spec/interrupt_spec.lua tries every one of them.
    assert.equal("130", read(statusfile), "the interrupt was lost: "
      .. io.open(log):read("a"))
    local text = io.open(log):read("a")
    assert.matches("^ccpa_optout: interrupted: .*%-%-resume", text)
    assert.equal(1, select(2, text:gsub("\n", "")), text)
    assert.not_matches("traceback", text)
    local rows = rows_of(first)
    assert.is_true(#rows > 0 and #rows < demo_records)
  end)

  it("reports what a dry run would change, and changes nothing", function()
    local want = clean_run()
    reset()
    local before = flags()
    local out = report_file(".jsonl")
    local status, text = job { "--dry-run", "--report", out, DEMO }
    assert.equal(0, status, text)
    same_flags(before, flags())
    local s, c = summary(text), summary(want.text)
    assert.equal(c.opted_out, s.would_opt_out)
    assert.equal(c.opted_in, s.would_opt_in)
    assert.equal(c.already_set, s.already_set)
  end)

  it("reads JSON Lines and writes a JSON Lines report", function()
    reset()
    -- a profile not opted out, whose email no other profile has
    local all, uses, some = profiles(), {}, nil
    for _, p in pairs(all) do uses[p.email] = (uses[p.email] or 0) + 1 end
    for pkey, p in pairs(all) do
      if not p.ccpaOptOut and uses[p.email] == 1 then
        some = { pkey = pkey, email = p.email }
        break
      end
    end
    local input = report_file(".jsonl")
    local fh = io.open(input, "w")
    fh:write(cjson.encode { email = some.email:upper(), ticket = 1 }, "\n")
    fh:write(cjson.encode { pkey = some.pkey, optout = false, ticket = 2 }, "\n")
    fh:write("{broken\n")
    fh:close()
    local out = report_file(".jsonl")
    local status, text = job { "--report", out, input }
    assert.equal(0, status, text)
    local rows = rows_of(out)
    table.sort(rows, function(a, b) return a.record < b.record end)
    assert.same({ "opted_out", "opted_in", "invalid_request" },
      { rows[1].outcome, rows[2].outcome, rows[3].outcome })
    assert.same({ ticket = 1 }, rows[1].input)
    assert.is_false(flags()[some.pkey])
  end)

  describe("malformed input", function()
    local function input(text, ext)
      local f = report_file(ext or ".csv")
      local fh = io.open(f, "wb")
      fh:write(text)
      fh:close()
      return f
    end

    local CASES = {
      { "no identifier", "email,pkey,note\n,,x\n", "neither" },
      { "not an email", "email\nnot-an-email\n", "not a valid email" },
      { "two @", "email\na@b@example.com\n", "not a valid email" },
      { "nothing before @", "email\n@example.com\n", "not a valid email" },
      { "a PKey without @", "pkey\nABC\n", "not a valid pkey" },
      { "too many fields", "email,note\na@example.com,x,y\n", "3 fields" },
      { "too few fields", "email,note,more\na@example.com,x\n", "2 fields" },
      { "an unterminated quote", 'email,note\na@example.com,"oops\n',
        "unterminated" },
      { "text after a closing quote", 'email\n"a"@example.com\n',
        "closing quote" },
      { "an optout value not understood", "email,optout\na@example.com,maybe\n",
        "optout" },
      { "a line that is not JSON", "{nope\n", "not a JSON object", ".jsonl" },
      { "a JSON array", "[1]\n", "not a JSON object", ".jsonl" },
      { "a number for an email", '{"email":5}\n', "not a string", ".jsonl" },
    }
    for _, c in ipairs(CASES) do
      it("records " .. c[1] .. " as an invalid request", function()
        local out = report_file()
        local status, text = job { "--report", out, input(c[2], c[4]) }
        assert.equal(0, status, text)
        local rows = rows_of(out)
        assert.equal(1, #rows)
        assert.equal("invalid_request", rows[1].outcome)
        assert.matches(c[3], rows[1].error, 1, true)
        assert.equal(1, summary(text).invalid_request)
      end)
    end

    it("refuses to start on an input it cannot use (exit 2)", function()
      for _, text in ipairs { "", "\239\187\191", "name,phone\nx,1\n" } do
        local status, out = job { "--report", report_file(), input(text) }
        assert.equal(2, status, out)
        assert.equal(1, select(2, out:gsub("\n", "")), out)
      end
      local status, out = job { "--report", report_file(), "/nonexistent.csv" }
      assert.equal(2, status, out)
      assert.matches("cannot read the requests", out)
    end)
  end)

  describe("options and secrets", function()
    it("exits 2 on bad options, with usage and no traceback", function()
      for _, args in ipairs {
        { "--concurrency", "0", DEMO }, { "--bogus", DEMO }, {},
        { "--access-token", "t", DEMO }, { "--resume", "/nonexistent.csv", DEMO },
      } do
        local status, out = job(args)
        assert.equal(2, status, out)
        assert.not_matches("traceback", out)
      end
    end)

    it("checks --concurrency itself: one line, before any work", function()
      for _, n in ipairs { "0", "257", "300", "2.5", "many" } do
        local out = report_file()
        local calls = counters().total
        local status, text = job { "--concurrency", n, "--report", out, DEMO }
        assert.equal(2, status, text)
        assert.equal("ccpa_optout: --concurrency must be a whole number "
          .. "from 1 to 256\n", text)
        assert.equal(calls, counters().total)
        assert.is_nil(io.open(out), "a report was written")
      end
      -- the bounds themselves are taken
      for _, n in ipairs { "1", "256" } do
        local status, text = job { "--concurrency", n, "--dry-run",
          "--report", report_file(), DEMO }
        assert.equal(0, status, text)
      end
    end)

    -- A directory for LUA_CPATH that has cjson, which the job needs, and
    -- no campaign module (not even an installed one) unless one is put in.
    local function cpath_dir()
      local dir = tmp("")
      os.execute("mkdir " .. quote(dir))
      local so = assert(package.searchpath("cjson", package.cpath))
      os.execute(("ln -s %s %s"):format(quote(so), quote(dir .. "/cjson.so")))
      files[#files + 1] = dir .. "/cjson.so"
      files[#files + 1] = dir .. "/campaign.so"
      files[#files + 1] = dir -- removed once empty
      return dir
    end

    it("says in one line how to get the module when it is not found",
      function()
        -- (without LUA_INIT: make check-asan preloads the module with it)
        local status, text = job({ "--report", report_file(), DEMO },
          { LUA_CPATH = cpath_dir() .. "/?.so", LUA_INIT = false })
        assert.equal(2, status, text)
        assert.equal(1, select(2, text:gsub("\n", "")), text)
        assert.matches("^ccpa_optout: the campaign module was not found", text)
        assert.matches("make", text, 1, true)
        assert.matches("LUA_CPATH=", text, 1, true)
        assert.matches("make install", text, 1, true)
      end)

    it("keeps another error loading the module, on one line", function()
      local dir = cpath_dir()
      local fh = io.open(dir .. "/campaign.so", "w")
      fh:write("not a shared object\n")
      fh:close()
      local status, text = job({ "--report", report_file(), DEMO },
        { LUA_CPATH = dir .. "/?.so", LUA_INIT = false })
      assert.equal(2, status, text)
      assert.equal(1, select(2, text:gsub("\n", "")), text)
      assert.matches("^ccpa_optout: cannot load the campaign module: error "
        .. "loading module 'campaign' from file", text)
    end)

    it("says every option in --help, and how secrets are given", function()
      local status, out = job { "--help" }
      assert.equal(0, status)
      for _, opt in ipairs { "--report", "--resume", "--dry-run",
          "--concurrency", "--secrets-file", "CAMPAIGN_API_KEY",
          "CAMPAIGN_ACCESS_TOKEN", "CAMPAIGN_ORG", "CAMPAIGN_BASE_URL" } do
        assert.matches(opt, out, 1, true)
      end
    end)

    it("needs its secrets from the environment or a file", function()
      local status, out = job({ "--report", report_file(), DEMO },
        { CAMPAIGN_ACCESS_TOKEN = false, CAMPAIGN_CLIENT_SECRET = false })
      assert.equal(2, status)
      assert.matches("no access token", out)
      local secrets = report_file(".env")
      local fh = io.open(secrets, "w")
      fh:write("# the sandbox's\nCAMPAIGN_ACCESS_TOKEN=\"",
        os.getenv("CAMPAIGN_ACCESS_TOKEN"), "\"\n")
      fh:close()
      reset()
      status, out = job({ "--secrets-file", secrets, "--verbose", "--report",
        report_file(), DEMO },
        { CAMPAIGN_ACCESS_TOKEN = false, CAMPAIGN_CLIENT_SECRET = false })
      assert.equal(0, status, out)
      assert.not_matches(os.getenv("CAMPAIGN_ACCESS_TOKEN"), out, 1, true)
      assert.not_matches(os.getenv("CAMPAIGN_API_KEY"), out, 1, true)
    end)

    it("stops with exit 2 when Campaign cannot be reached", function()
      -- a port nothing listens on (no test asks a name server: a name
      -- that never resolves would go out to one)
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      server:close()
      for _, url in ipairs { "http://127.0.0.1:" .. port } do
        local out = report_file()
        local status, text = job { "--base-url", url, "--retries", "0",
          "--timeout", "10", "--report", out, DEMO }
        assert.equal(2, status, text)
        assert.matches("^ccpa_optout: the run stopped: .*network COULDNT_", text)
        assert.matches("\nccpa_optout: the report .* holds every request "
          .. "finished before; run again with %-%-resume ", text)
        assert.equal(2, select(2, text:gsub("\n", "")), text)
        assert.equal(0, #rows_of(out))
      end
    end)

    it("stops with exit 2 when authentication is refused", function()
      reset()
      local out = report_file()
      local status, text = job({ "--report", out, DEMO },
        { CAMPAIGN_ACCESS_TOKEN = "not-the-token" })
      assert.equal(2, status, text)
      assert.matches("the run stopped", text)
      assert.not_matches("not-the-token", text, 1, true)
    end)
  end)
end)
