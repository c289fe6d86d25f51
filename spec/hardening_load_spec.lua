-- Hardening: under load and faults, nothing is lost.  The opt-out job on
-- 10,000 requests with 5% injected 503s and 1% dropped connections
-- accounts for every request, reports the few failures left after its
-- retries, and one --resume completes them; killed three times (SIGKILL)
-- at points drawn from a fixed seed and resumed each time, it leaves the
-- sandbox as a clean run does.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/hardening_load_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;examples/?.lua;" .. package.path

local cjson = require("cjson").new()
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local peers = require "peers"

local JOB = "examples/ccpa_optout.lua"
local N = 10000
local have_job = io.open(JOB) ~= nil

-- PKey -> ccpaOptOut, as the sandbox holds them now.
local function state()
  local out = {}
  local ok, code = http.request { url = peers.BASE .. "/_sandbox/profiles",
                                  sink = ltn12.sink.table(out) }
  assert(ok and code == 200, "cannot read the sandbox's profiles")
  local t = {}
  for line in table.concat(out):gmatch("[^\n]+") do
    local p = cjson.decode(line)
    t[p.PKey] = p.ccpaOptOut
  end
  return t
end

local function diff(a, b)
  local n, first = 0, nil
  for k, v in pairs(a) do
    if b[k] ~= v then
      n = n + 1
      first = first or ("%s: %s then %s"):format(k, tostring(v), tostring(b[k]))
    end
  end
  for k in pairs(b) do
    if a[k] == nil then n = n + 1 end
  end
  return n, first
end

describe("the opt-out job under load and faults", function()
  local dir, input, clean

  local function path(name) return dir .. "/" .. name end

  -- The size of a file: cheap enough to poll often, even under valgrind.
  local function size_of(file)
    local f = io.open(file)
    if not f then return 0 end
    local n = f:seek("end")
    f:close()
    return n
  end

  -- Starts the job; waits for it unless `kill` ({ report =, size = }) is
  -- given, in which case it is killed with SIGKILL once that report has
  -- grown to that size: a point in its progress, whatever the machine's
  -- speed (under valgrind a point in time was often past the end).
  -- Returns the exit status (nil when killed) and its output.
  local function job(args, kill)
    local cmd = { "env", "-u", "CAMPAIGN_CLIENT_SECRET",
      "LUA_CPATH=" .. peers.quote(peers.ROOT .. "/build/lua5.4/?.so;;"),
      peers.LUA, peers.quote(peers.ROOT .. "/" .. JOB), "--no-progress",
      "--concurrency", "16", "--retries", "2" }
    for _, a in ipairs(args) do cmd[#cmd + 1] = peers.quote(a) end
    local log, pidf, statf = path("log"), path("pid"), path("status")
    os.remove(pidf)
    os.remove(statf)
    os.execute(("cd %s && ( %s >%s 2>&1 & echo $! >%s; wait $!; echo $? >%s ) "
      .. ">/dev/null 2>&1 &"):format(peers.quote(dir), table.concat(cmd, " "),
      peers.quote(log), peers.quote(pidf), peers.quote(statf)))
    local deadline = socket.gettime() + 600
    local pid
    while not pid and socket.gettime() < deadline do
      pid = peers.read_file(pidf)
      if not pid or pid == "" then pid = nil socket.sleep(0.01) end
    end
    local killed = false
    while socket.gettime() < deadline do
      local s = peers.read_file(statf)
      if s and s ~= "" then break end
      if kill and not killed and size_of(kill.report) >= kill.size then
        os.execute("kill -KILL " .. pid:match("%d+") .. " 2>/dev/null")
        killed = true
      end
      socket.sleep(0.02)
    end
    local status = tonumber((peers.read_file(statf) or ""):match("%d+"))
    return not killed and status or nil, peers.read_file(log) or "", killed
  end

  -- Every record of the input, from its report rows.
  local function records(report_path)
    local report = require "ccpa.report"
    local seen, failed = {}, 0
    for row in assert(report.rows(report_path)) do
      seen[tonumber(row.record)] = seen[tonumber(row.record)] or row.outcome
      if row.outcome == "failed" then failed = failed + 1 end
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    return n, failed, seen
  end

  setup(function()
    assert(peers.BASE, "run under sh spec/sandbox/with-sandbox.sh")
    if not have_job then return end
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. peers.quote(dir))
    peers.reset()
    -- 10,000 requests over the seed's profiles, by email and by PKey,
    -- some asking back in, some for people Campaign does not know:
    -- the same file on every run (a fixed generator)
    local profiles = {}
    for pkey in pairs(state()) do profiles[#profiles + 1] = pkey end
    table.sort(profiles)
    local emails = {}
    local out = {}
    http.request { url = peers.BASE .. "/_sandbox/profiles", sink = ltn12.sink.table(out) }
    for line in table.concat(out):gmatch("[^\n]+") do
      local p = cjson.decode(line)
      emails[p.PKey] = p.email
    end
    local x = 6062026
    local function rand(n)
      x = (x * 1103515245 + 12345) % 2147483648
      return x % n + 1
    end
    input = path("requests.csv")
    local f = assert(io.open(input, "w"))
    f:write("email,pkey,optout\n")
    for i = 1, N do
      local pkey = profiles[rand(#profiles)]
      local flag = rand(10) <= 8 and "true" or "false"
      local r = rand(100)
      if r <= 1 then
        f:write("unknown-", i, "@example.org,,", flag, "\n")
      elseif r <= 50 then
        f:write(emails[pkey], ",,", flag, "\n")
      else
        f:write(",", pkey, ",", flag, "\n")
      end
    end
    f:close()
  end)
  teardown(function()
    if dir then os.execute("rm -rf " .. peers.quote(dir)) end
    peers.reset()
  end)

  it("a clean run: every request accounted for", function()
    if not have_job then return pending("no " .. JOB) end
    peers.reset()
    local status, out = job { "--report", path("clean.csv"), input }
    assert.equal(0, status, out)
    local n, failed = records(path("clean.csv"))
    assert.equal(N, n)
    assert.equal(0, failed)
    clean = state()
  end)

  it("5% 503s and 1% drops: all accounted for, one --resume completes", function()
    if not clean then return pending("needs the clean run") end
    peers.reset()
    peers.faults { status = { code = 503, probability = 0.05 },
                   drop = { probability = 0.01 } }
    local status, out = job { "--report", path("faulty.csv"), input }
    peers.control("DELETE", "faults")
    assert.truthy(status == 0 or status == 1, out)
    local n, failed = records(path("faulty.csv"))
    assert.equal(N, n)
    assert.is_true(failed < N * 0.01, failed .. " failed")
    if status == 1 then assert.is_true(failed > 0) end
    status, out = job { "--resume", path("faulty.csv"), "--report", path("resumed.csv"), input }
    assert.equal(0, status, out)
    n, failed = records(path("resumed.csv"))
    assert.equal(N, n)
    assert.equal(0, failed)
    local d, first = diff(clean, state())
    assert.equal(0, d, first)
  end)

  it("killed three times at seeded points and resumed: as a clean run", function()
    if not clean then return pending("needs the clean run") end
    peers.reset()
    math.randomseed(20261203)
    local prev, k = nil, 0
    for i = 1, 3 do
      local report = path("killed-" .. i .. ".csv")
      local args = { "--report", report, input }
      if prev then table.insert(args, 1, prev) table.insert(args, 1, "--resume") end
      -- a point between what the last run got to and a whole report
      local base = prev and size_of(prev) or 0
      local whole = size_of(path("clean.csv"))
      local at = base + math.floor((whole - base) * (0.15 + 0.5 * math.random()))
      local status, out, killed = job(args, { report = report, size = at })
      if killed then k = k + 1 else assert.equal(0, status, out) end
      prev = report
    end
    local status, out = job { "--resume", prev, "--report", path("final.csv"), input }
    assert.equal(0, status, out)
    local n, failed = records(path("final.csv"))
    assert.equal(N, n)
    assert.equal(0, failed)
    assert.equal(3, k, "runs killed")
    local d, first = diff(clean, state())
    assert.equal(0, d, first)
  end)
end)
