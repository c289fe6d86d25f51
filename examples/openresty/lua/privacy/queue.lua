-- Opt-outs on their way to Campaign: kept until delivered, retried in the
-- background, never lost to a reload or a restart of nginx.
--
-- Two stores:
--   * the shared dict privacy_queue holds the pending jobs ("job:<id>",
--     JSON) and short leases ("lease:<id>") so that one worker delivers a
--     job at a time. Shared dicts live as long as the master process: they
--     survive `nginx -s reload`, not a stop and start.
--   * an append-only journal file in the nginx prefix, one JSON line per
--     event: {"op":"add","id","job"}, {"op":"done","id","outcome"},
--     {"op":"seen","pkey"}. When nginx starts afresh (the dict is empty),
--     init_by_lua replays it: every job added and not done is pending again,
--     every GPC visitor already recorded is remembered. The journal is then
--     rewritten with only those lines (compaction), before any worker runs.
--
-- Delivery: a job is tried at once (the form waits for that try; a GPC
-- signal does not), then by an ngx.timer.every in each worker, with
-- exponential backoff. Writing an opt-out twice is harmless, so a job is
-- marked done only after Campaign said yes: a crash in between means one
-- more (idempotent) write, never a lost one.
local cjson = require("cjson").new()
local cngx = require "campaign.ngx"

local Q = {}

local conf = {
  journal = nil,        -- path of the journal file
  settings = nil,       -- campaign.new options for background deliveries
  inline_settings = nil,-- the same, with a short timeout, for the form's try
  inline_budget = 3,    -- seconds the form's try may start calls for
  retry_min = 5,        -- seconds before the first retry
  retry_max = 300,      -- seconds between retries, at most
  tick = 1,             -- seconds between scans of the queue
  lease = 120,          -- seconds a worker owns a job it is delivering
  batch = 64,           -- jobs started per tick per worker, at most
}

local function dict() return ngx.shared.privacy_queue end
local function seen() return ngx.shared.privacy_seen end

------------------------------------------------------------------------
-- The journal.

local journal_fh

local function journal(entry)
  if not conf.journal then return true end
  if not journal_fh then
    local fh, err = io.open(conf.journal, "a")
    if not fh then
      ngx.log(ngx.ERR, "privacy: cannot open the journal: ", err)
      return nil, err
    end
    fh:setvbuf("no")  -- each line goes out in one write(2), at once
    journal_fh = fh
  end
  local ok, err = journal_fh:write(cjson.encode(entry), "\n")
  if not ok then
    ngx.log(ngx.ERR, "privacy: cannot write the journal: ", err)
    journal_fh:close()
    journal_fh = nil
  end
  return ok, err
end

-- Reads the journal: pending jobs (id -> job, in order) and the PKeys
-- whose GPC signal was recorded.
local function read_journal(path)
  local fh = io.open(path, "r")
  if not fh then return {}, {}, {} end
  local jobs, order, marks = {}, {}, {}
  for line in fh:lines() do
    local ok, e = pcall(cjson.decode, line)
    if ok and type(e) == "table" then
      if e.op == "add" and type(e.job) == "table" and e.id then
        if not jobs[e.id] then order[#order + 1] = e.id end
        jobs[e.id] = e.job
        if e.job.source == "gpc" and e.job.pkey then marks[e.job.pkey] = true end
      elseif e.op == "done" and e.id then
        jobs[e.id] = nil
      elseif e.op == "seen" and type(e.pkey) == "string" then
        marks[e.pkey] = true
      end
    end  -- a torn last line (a crash mid-write) is skipped
  end
  fh:close()
  return jobs, order, marks
end

------------------------------------------------------------------------
-- Jobs in the shared dict.

local seq = 0
local function new_id()
  seq = seq + 1
  return ("%d-%d-%d"):format(ngx.time(), ngx.worker.pid(), seq)
end

local function store(id, job)
  local ok, err = dict():safe_set("job:" .. id, cjson.encode(job))
  if not ok then
    -- Still in the journal: the next start delivers it.
    ngx.log(ngx.ERR, "privacy: queue full (", err, "): job ", id, " waits for a restart")
  end
  return ok
end

local function load(id)
  local v = dict():get("job:" .. id)
  return v and cjson.decode(v)
end

local function take_lease(id)
  return dict():add("lease:" .. id, ngx.worker.pid(), conf.lease)
end

local function release(id)
  dict():delete("lease:" .. id)
end

local function finish(id, outcome)
  journal { op = "done", id = id, outcome = outcome, t = ngx.time() }
  dict():delete("job:" .. id)
  release(id)
end

-- True when trying again cannot help: Campaign refused the request itself
-- (a 4xx other than 401, 403, 408, 429: e.g. the profile no longer exists).
local function permanent(err)
  if type(err) ~= "table" then return false end
  if err.kind == "usage" then return true end
  local s = err.kind == "http" and err.status
  return s and s >= 400 and s < 500 and s ~= 401 and s ~= 403 and s ~= 408 and s ~= 429
end

-- The err of a try that ran out of its time budget: kept for a retry.
local OVER_BUDGET = { kind = "network", code = "BUDGET",
  message = "the form's own try ran out of time", retryable = true }

-- One try of a job; true, outcome on success, or nil, err.  With a
-- deadline (the form's try, which a visitor waits for), no call starts
-- after it: the rest is left to a background retry.
local function attempt(job, settings, deadline)
  local function late() return deadline and ngx.now() > deadline end
  local client = cngx.client(settings)
  if job.pkey then
    local ok, err = client:set_ccpa_optout(job.pkey, true)
    if not ok then return nil, err end
    return true, "opted_out"
  end
  local email = job.email
  local people, err = client:find_profiles { email = email }
  if people and #people == 0 and email:lower() ~= email then
    if late() then return nil, OVER_BUDGET end
    people, err = client:find_profiles { email = email:lower() }
  end
  if not people then return nil, err end
  if #people == 0 then return true, "not_found" end
  local outcome = "already_set"
  for _, p in ipairs(people) do
    if p.ccpaOptOut ~= true then
      if late() then return nil, OVER_BUDGET end
      local ok, e = client:set_ccpa_optout(p.PKey, true)
      if not ok then return nil, e end
      outcome = "opted_out"
    end
  end
  return true, outcome
end

-- Tries a job whose lease this worker holds, and settles it: done (journal,
-- dict), dropped for good, or kept with its next try's time. Returns true,
-- outcome when settled, or nil, err when kept.
local function try(id, job, settings, deadline)
  local ok, done, outcome = pcall(attempt, job, settings, deadline)
  if ok and done then
    finish(id, outcome)
    return true, outcome
  end
  local err = ok and outcome or { kind = "error", message = tostring(done), retryable = false }
  if ok and permanent(err) then
    ngx.log(ngx.WARN, "privacy: job ", id, " dropped: ", tostring(err))
    finish(id, "failed: " .. tostring(err))
    return true, "failed"
  end
  job.tries = (job.tries or 0) + 1
  job.due = ngx.now() + math.min(conf.retry_max, conf.retry_min * 2 ^ (job.tries - 1))
  job.last_error = tostring(err)
  store(id, job)
  release(id)
  ngx.log(ngx.INFO, "privacy: job ", id, " kept for retry ", job.tries, ": ", tostring(err))
  return nil, err
end

local function try_in_timer(premature, id)
  if premature then return end
  local job = load(id)
  if job and take_lease(id) then try(id, job, conf.settings) end
end

------------------------------------------------------------------------
-- The interface.

--- Called from init_by_lua (the master, before any worker): settings, and
-- on a fresh start the journal's replay and compaction.
function Q.init(options)
  for k, v in pairs(options) do conf[k] = v end
  if not conf.journal then return end
  -- The dict outlives reloads: loaded already means this is a reload.
  if not dict():add("journal:loaded", true) then return end
  local jobs, order, marks = read_journal(conf.journal)
  local tmp = conf.journal .. ".tmp"
  local fh = assert(io.open(tmp, "w"))
  local n = 0
  for _, id in ipairs(order) do
    local job = jobs[id]
    if job then
      job.due = 0
      fh:write(cjson.encode { op = "add", id = id, job = job }, "\n")
      dict():safe_set("job:" .. id, cjson.encode(job))
      n = n + 1
    end
  end
  for pkey in pairs(marks) do
    fh:write(cjson.encode { op = "seen", pkey = pkey }, "\n")
    seen():set("gpc:" .. pkey, true)
  end
  fh:close()
  assert(os.rename(tmp, conf.journal))
  if n > 0 then
    ngx.log(ngx.NOTICE, "privacy: ", n, " undelivered opt-outs taken back from the journal")
  end
end

--- Called from init_worker_by_lua: the background retries.
function Q.init_worker()
  local function scan(premature)
    if premature then return end
    local now, started = ngx.now(), 0
    for _, key in ipairs(dict():get_keys(0)) do
      local id = key:match("^job:(.+)$")
      if id and not dict():get("lease:" .. id) then
        local job = load(id)
        if job and (job.due or 0) <= now and take_lease(id) then
          ngx.timer.at(0, function(p)
            if p then release(id) return end
            try(id, job, conf.settings)
          end)
          started = started + 1
          if started >= conf.batch then break end
        end
      end
    end
  end
  assert(ngx.timer.every(conf.tick, scan))
end

--- Queues an opt-out ({pkey=} or {email=}, and source). With `wait`, tries
-- it now (this request yields meanwhile) and returns "done" or "queued";
-- without, returns "queued" at once and a timer tries it right away.
function Q.add(job, wait)
  local id = new_id()
  job.added = ngx.time()
  job.due = 0
  journal { op = "add", id = id, job = job }
  if wait then
    take_lease(id)  -- before the job is visible to the other workers' scans
    if not store(id, job) then release(id) return "queued" end
    local deadline = ngx.now() + conf.inline_budget
    if try(id, job, conf.inline_settings or conf.settings, deadline) then return "done" end
    return "queued"
  end
  if not store(id, job) then return "queued" end
  ngx.timer.at(0, try_in_timer, id)
  return "queued"
end

--- Records the GPC opt-out of a signed-in person once: the first call for
-- a PKey queues it and returns true; later calls return false at once.
function Q.gpc(pkey)
  if not seen():add("gpc:" .. pkey, true) then return false end
  Q.add({ pkey = pkey, source = "gpc" }, false)
  return true
end

--- Marks a person as recorded (e.g. after the form), so that their GPC
-- signal does not queue the same opt-out again.
function Q.mark(pkey)
  if seen():add("gpc:" .. pkey, true) then
    journal { op = "seen", pkey = pkey }
  end
end

--- The pending jobs, for the status page: count and the jobs (no PKey or
-- email in full).
function Q.status()
  local list = {}
  for _, key in ipairs(dict():get_keys(0)) do
    local id = key:match("^job:(.+)$")
    if id then
      local job = load(id)
      if job then
        list[#list + 1] = { id = id, source = job.source, tries = job.tries or 0,
                            due = job.due, last_error = job.last_error,
                            leased = dict():get("lease:" .. id) ~= nil }
      end
    end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return { pending = #list, jobs = list }
end

return Q
