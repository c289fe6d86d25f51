-- The benchmark's conductor: runs every peer against the sandbox named by
-- CAMPAIGN_BASE_URL, interleaved in rounds, and prints one table of
-- ratios measured in this run.  Called by spec/bench/run.sh (make bench),
-- which builds the floor, installs the Node SDK and makes the seed.
--
--   lua5.4 spec/bench/bench.lua
--
-- Environment: CAMPAIGN_* (the sandbox), BENCH_DIR (build/bench),
-- BENCH_QUICK=1 (fewer rounds and calls), BENCH_NODE=0 with
-- BENCH_NODE_WHY (the Node SDK could not be installed).
--
-- Each peer times its own loop after a short untimed warm-up and prints
-- "N SECONDS"; a ratio is taken within each round (the module's run and
-- the peer's run next to each other) and the median of the rounds is
-- reported with their spread, so that a noisy neighbour moves both sides.
local http = require "socket.http"
local ltn12 = require "ltn12"
local gettime = require("socket").gettime

local BASE = assert(os.getenv("CAMPAIGN_BASE_URL"), "CAMPAIGN_BASE_URL is not set")
local DIR = os.getenv("BENCH_DIR") or "build/bench"
local QUICK = (os.getenv("BENCH_QUICK") or "") ~= "" and os.getenv("BENCH_QUICK") ~= "0"
local NODE = os.getenv("BENCH_NODE") ~= "0"
local NODE_WHY = os.getenv("BENCH_NODE_WHY") or "npm install failed"
local KEYS = DIR .. "/pkeys.txt"
local SEED_N = tonumber(os.getenv("BENCH_SEED_N") or "100000")
local JOB_N = QUICK and 10000 or 100000
local REQUESTS = ("%s/requests-%d.csv"):format(DIR, JOB_N)

-- Sizes of each measurement: full run, then BENCH_QUICK.
local S = QUICK and {
  rounds = 3, get = 1500, get_ls = 500, get_curl = 30, get_node = 100,
  bulk = 4000, seq10 = 100, node32 = 1000, rounds10 = 2,
  bulk8 = 5000, rounds8 = 2, memory = 40000,
} or {
  rounds = 7, get = 3000, get_ls = 1000, get_curl = 60, get_node = 200,
  bulk = 10000, seq10 = 300, node32 = 1000, rounds10 = 3,
  bulk8 = 10000, rounds8 = 5, memory = 200000,
}

local function say(fmt, ...)
  io.stderr:write(("bench: " .. fmt .. "\n"):format(...))
end

------------------------------------------------------------ the sandbox

local function control(method, path, body)
  local chunks = {}
  local _, code = http.request{
    url = BASE .. "/_sandbox/" .. path, method = method,
    headers = body and { ["Content-Type"] = "application/json",
                         ["Content-Length"] = #body } or nil,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  }
  if code ~= 200 then
    error(("sandbox control %s %s: %s"):format(method, path, tostring(code)))
  end
  return table.concat(chunks)
end

local function latency(ms)
  if ms > 0 then
    control("POST", "faults", ('{"latency_ms":%d}'):format(ms))
  else
    control("DELETE", "faults")
  end
end

-- The sandbox's nginx worker, whose CPU time tells whether the server
-- side was the ceiling of a run (nil when it cannot be found).
local WORKER
do
  local port = BASE:match(":(%d+)/?$")
  local reg = io.open(((os.getenv("TMPDIR") or "/tmp") .. "/campaign-sandbox/" .. (port or "")))
  local prefix = reg and reg:read("l")
  if reg then reg:close() end
  local pidf = prefix and io.open(prefix .. "/nginx.pid")
  local master = pidf and pidf:read("l")
  if pidf then pidf:close() end
  if master then
    local p = io.popen("pgrep -P " .. master .. " 2>/dev/null")
    WORKER = p:read("l")
    p:close()
  end
end

local function worker_cpu()
  local f = WORKER and io.open("/proc/" .. WORKER .. "/stat")
  if not f then return nil end
  local stat = f:read("a")
  f:close()
  -- fields after the ")" of the command: utime is the 12th, stime the 13th
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

------------------------------------------------------------ running peers

-- Runs a peer; returns calls a second and the sandbox worker's share of
-- one CPU over the run (or nil), or nil and why.
local function run(cmd)
  local cpu0, t0 = worker_cpu(), gettime()
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, status = p:close()
  local cpu1, t1 = worker_cpu(), gettime()
  local n, secs = out:match("(%d+)%s+([%d.]+)%s*$")
  if not ok or not n then
    return nil, ("exit %s: %s"):format(tostring(status), (out:gsub("%s+$", "")))
  end
  return tonumber(n) / tonumber(secs), cpu0 and cpu1 and (cpu1 - cpu0) / (t1 - t0)
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  if #s == 0 then return nil end
  local m = (#s + 1) // 2
  if #s % 2 == 1 then return s[m] end
  return (s[m] + s[m + 1]) / 2
end

local function spread(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  return lo, hi
end

--[[
  Rounds of interleaved runs.  `peers` is a list of {name, cmd}; the
  first is the module.  The order rotates each round, so that no peer
  always runs right after another.  Returns rates[name] = {r1, r2, ...}
  (nil entries where a run failed) and the first failure per name.
]]
local function rounds(n, peers, label)
  local rates, failures, busy = {}, {}, {}
  for _, p in ipairs(peers) do rates[p.name], busy[p.name] = {}, {} end
  for r = 1, n do
    for k = 0, #peers - 1 do
      local p = peers[(k + r - 1) % #peers + 1]
      local rate, why = run(p.cmd)
      rates[p.name][r] = rate or false
      if rate then
        if why then busy[p.name][#busy[p.name] + 1] = why end
        say("%s round %d/%d: %-10s %9.1f/s (sandbox worker %s)", label, r, n, p.name, rate,
          why and ("%.0f%% busy"):format(why * 100) or "?")
      else
        failures[p.name] = failures[p.name] or why
        say("%s round %d/%d: %s failed: %s", label, r, n, p.name, why)
      end
    end
  end
  return rates, failures, busy
end

-- Per-round ratios a/b where both ran; median, min, max.
local function ratio(ra, rb)
  local t = {}
  for r = 1, #ra do
    if ra[r] and rb[r] then t[#t + 1] = ra[r] / rb[r] end
  end
  if #t == 0 then return nil end
  local lo, hi = spread(t)
  return median(t), lo, hi
end

local function rate_of(t)
  local ok = {}
  for _, v in ipairs(t) do if v then ok[#ok + 1] = v end end
  if #ok == 0 then return nil end
  local lo, hi = spread(ok)
  return median(ok), lo, hi
end

------------------------------------------------------------ the table

local rows = {}
local notes = {}
local floor32   -- the C multi floor's PATCHes a second, 32 in flight, 10 ms

local function fmt_num(v)
  if v >= 100 then return ("%.0f"):format(v) end
  if v >= 10 then return ("%.1f"):format(v) end
  return ("%.2f"):format(v)
end

-- kind "ratio" or "rate" or "mib"; cmp ">=" or "<=" or "<" or ">".
local function row(what, value, lo, hi, kind, cmp, target, command, why)
  local shown, verdict
  if value == nil then
    shown, verdict = "-", why or "failed"
  else
    shown = (kind == "ratio" and fmt_num(value) .. "x")
      or (kind == "rate" and fmt_num(value) .. "/s")
      or (kind == "mib" and ("%.1f MiB"):format(value)) or fmt_num(value)
    if lo and hi and hi > lo then
      shown = shown .. (" (%s-%s)"):format(fmt_num(lo), fmt_num(hi))
    end
    if target then
      local met = (cmp == ">=" and value >= target) or (cmp == "<=" and value <= target)
        or (cmp == ">" and value > target) or (cmp == "<" and value < target)
      if met then
        verdict = "met"
      else
        local pct = value / target
        verdict = ("MISSED (%.0f%% of target)"):format(pct * 100)
        if cmp == "<=" or cmp == "<" then
          verdict = ("MISSED (%.0f%% over)"):format((pct - 1) * 100)
        end
      end
    else
      verdict = "reference"
    end
  end
  local tgt = ""
  if target then
    tgt = cmp .. " " .. ((kind == "ratio" and fmt_num(target) .. "x")
      or (kind == "rate" and ("%d/s"):format(target))
      or (kind == "mib" and ("%g MiB"):format(target)) or tostring(target))
  end
  rows[#rows + 1] = { what, shown, tgt, verdict, command or "" }
end

local function print_table()
  local head = { "measurement", "result (median, spread)", "target", "", "command" }
  local w = {}
  for i = 1, 4 do
    w[i] = #head[i]
    for _, r in ipairs(rows) do
      if utf8.len(r[i]) > w[i] then w[i] = utf8.len(r[i]) end
    end
  end
  local function line(r)
    local cells = {}
    for i = 1, 4 do cells[i] = r[i] .. (" "):rep(w[i] - utf8.len(r[i])) end
    cells[5] = r[5]
    return "| " .. table.concat(cells, " | ") .. " |"
  end
  print(line(head))
  local dashes = {}
  for i = 1, 4 do dashes[i] = ("-"):rep(w[i]) end
  dashes[5] = "---"
  print("|-" .. table.concat(dashes, "-|-") .. "-|")
  for _, r in ipairs(rows) do print(line(r)) end
end

------------------------------------------------------------ measurements

local C = "lua5.4 spec/bench/campaign_peer.lua"
local FLOOR = DIR .. "/floor"
local NODE_CMD = "node spec/bench/node_peer.js"
local started = gettime()

local function machine()
  local cpu = "?"
  for l in io.lines("/proc/cpuinfo") do
    local m = l:match("^model name%s*:%s*(.+)")
    if m then cpu = m break end
  end
  local ncpu = io.popen("nproc"):read("l")
  local mem = 0
  for l in io.lines("/proc/meminfo") do
    local kb = l:match("^MemTotal:%s+(%d+)")
    if kb then mem = tonumber(kb) // 1024 break end
  end
  local load = io.open("/proc/loadavg"):read("l"):match("^(%S+ %S+ %S+)")
  local kernel = io.popen("uname -sr"):read("l")
  local curl = io.popen("curl --version"):read("l"):match("libcurl/(%S+)")
  local node = NODE and io.popen("node --version 2>/dev/null"):read("l") or "-"
  return ("%s CPUs (%s), %d MiB, %s, libcurl %s, Lua 5.4, node %s; load before: %s")
    :format(ncpu, cpu, mem, kernel, curl or "?", node or "-", load)
end

control("POST", "reset")
latency(0)
-- The sandbox parses a seed profile when it is first used: touch the
-- profiles the measurements use once, untimed, so that no peer pays that.
say("warming the sandbox: %s", ("%s multi %d %s 32"):format(FLOOR, math.max(S.bulk, S.bulk8), KEYS))
run(("%s multi %d %s 32"):format(FLOOR, math.max(S.bulk, S.bulk8), KEYS))

-- The full-field profile's size, as the sandbox sends it.
do
  local pkey = io.lines(KEYS)()
  local enc = pkey:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
  local chunks = {}
  http.request{
    url = ("%s/%s/campaign/profileAndServices/profile/%s")
      :format(BASE, os.getenv("CAMPAIGN_ORG") or "acme", enc),
    headers = { Authorization = "Bearer " .. (os.getenv("CAMPAIGN_ACCESS_TOKEN") or ""),
                ["X-Api-Key"] = os.getenv("CAMPAIGN_API_KEY") or "" },
    sink = ltn12.sink.table(chunks),
  }
  notes[#notes + 1] = ("get_profile: one full-field profile, %d bytes of JSON"
    ):format(#table.concat(chunks))
end

-- 1. Sequential get_profile, no added latency.
do
  local cmds = {
    campaign = ("%s get %d %s"):format(C, S.get, KEYS),
    floor = ("%s get %d %s"):format(FLOOR, S.get, KEYS),
    floor_opts = ("FLOOR_MODULE_OPTIONS=1 %s get %d %s"):format(FLOOR, S.get, KEYS),
    luasocket = ("lua5.4 spec/bench/luasocket_peer.lua get %d %s"):format(S.get_ls, KEYS),
    curl = ("sh spec/bench/curl_peer.sh get %d %s"):format(S.get_curl, KEYS),
    node = ("%s get %d %s"):format(NODE_CMD, S.get_node, KEYS),
  }
  local peers = {
    { name = "campaign", cmd = cmds.campaign }, { name = "floor", cmd = cmds.floor },
    { name = "floor_opts", cmd = cmds.floor_opts },
    { name = "luasocket", cmd = cmds.luasocket }, { name = "curl", cmd = cmds.curl },
  }
  if NODE then peers[#peers + 1] = { name = "node", cmd = cmds.node } end
  local rates, fails = rounds(S.rounds, peers, "sequential get_profile")
  local v, lo, hi = rate_of(rates.campaign)
  row("get_profile, sequential: the module", v, lo, hi, "rate", nil, nil, cmds.campaign,
    fails.campaign)
  for _, p in ipairs{
    { "floor", "  vs C floor (easy handle, no JSON)", 0.75 },
    { "floor_opts", "  vs C floor with the module's curl options", nil },
    { "luasocket", "  vs LuaSocket + lua-cjson", 2 },
    { "curl", "  vs curl CLI, a process per call", 50 },
    { "node", "  vs Node SDK, sequential", 10 },
  } do
    if p[1] == "node" and not NODE then
      row(p[2], nil, nil, nil, "ratio", ">=", p[3], cmds.node, "skipped: " .. NODE_WHY)
    else
      local r, rlo, rhi = ratio(rates.campaign, rates[p[1]])
      local pv = rate_of(rates[p[1]])
      if pv then
        notes[#notes + 1] = ("sequential get_profile, %s: %s/s"):format(p[1], fmt_num(pv))
      end
      row(p[2], r, rlo, rhi, "ratio", p[3] and ">=", p[3], cmds[p[1]],
        fails[p[1]] or fails.campaign)
    end
  end
  if cmds.curl then
    local cmdline = io.popen(("sh spec/bench/curl_peer.sh command %s"):format(KEYS)):read("l")
    notes[#notes + 1] = "curl CLI: each call is one process: " .. cmdline
  end
end

-- 2. 10 ms of sandbox latency: bulk set_ccpa_optout, 32 in flight.
do
  latency(10)
  local cmds = {
    bulk = ("%s bulk %d %s 32"):format(C, S.bulk, KEYS),
    seq = ("%s optout %d %s"):format(C, S.seq10, KEYS),
    node = ("%s patch %d %s 32"):format(NODE_CMD, S.node32, KEYS),
    floor = ("%s multi %d %s 32"):format(FLOOR, S.bulk, KEYS),
  }
  local peers = {
    { name = "bulk", cmd = cmds.bulk }, { name = "seq", cmd = cmds.seq },
    { name = "floor", cmd = cmds.floor },
  }
  if NODE then peers[#peers + 1] = { name = "node", cmd = cmds.node } end
  local rates, fails, busy = rounds(S.rounds10, peers, "10 ms, 32 in flight")
  latency(0)
  if #busy.bulk > 0 and #busy.floor > 0 then
    notes[#notes + 1] = ("10 ms, 32 in flight: the sandbox's one nginx worker was busy"
      .. " %.0f%% of the time under the module, %.0f%% under the C multi floor")
      :format(median(busy.bulk) * 100, median(busy.floor) * 100)
  end
  local v, lo, hi = rate_of(rates.bulk)
  row(("set_ccpa_optout x%d, 10 ms, 32 in flight"):format(S.bulk), v, lo, hi, "rate", ">=",
    2400, cmds.bulk, fails.bulk)
  row("  of the 3,200/s ideal", v and v / 3200, lo and lo / 3200, hi and hi / 3200, "ratio",
    ">=", 0.75, "", fails.bulk)
  local r, rlo, rhi = ratio(rates.bulk, rates.seq)
  row("  vs sequential set_ccpa_optout (10 ms)", r, rlo, rhi, "ratio", ">=", 20, cmds.seq,
    fails.seq or fails.bulk)
  if NODE then
    r, rlo, rhi = ratio(rates.bulk, rates.node)
    row("  vs Node SDK, 32 in flight", r, rlo, rhi, "ratio", ">", 1, cmds.node,
      fails.node or fails.bulk)
  else
    row("  vs Node SDK, 32 in flight", nil, nil, nil, "ratio", ">", 1, cmds.node,
      "skipped: " .. NODE_WHY)
  end
  r, rlo, rhi = ratio(rates.bulk, rates.floor)
  row("  vs C multi floor, 32 in flight (10 ms)", r, rlo, rhi, "ratio", nil, nil, cmds.floor,
    fails.floor or fails.bulk)
  local fv = rate_of(rates.floor)
  floor32 = fv
  if fv then
    notes[#notes + 1] = ("10 ms, 32 in flight: the C multi floor itself does %s/s"
      .. " (the sandbox's ceiling on this machine)"):format(fmt_num(fv))
  end
end

-- 3. No added latency, 8 in flight.
do
  local cmds = {
    bulk = ("%s bulk %d %s 8"):format(C, S.bulk8, KEYS),
    floor = ("%s multi %d %s 8"):format(FLOOR, S.bulk8, KEYS),
  }
  local rates, fails, busy = rounds(S.rounds8, {
    { name = "bulk", cmd = cmds.bulk }, { name = "floor", cmd = cmds.floor },
  }, "no latency, 8 in flight")
  if #busy.bulk > 0 and #busy.floor > 0 then
    notes[#notes + 1] = ("no latency, 8 in flight: the sandbox worker was busy %.0f%% of"
      .. " the time under the module, %.0f%% under the C multi floor")
      :format(median(busy.bulk) * 100, median(busy.floor) * 100)
  end
  local v, lo, hi = rate_of(rates.bulk)
  row(("set_ccpa_optout x%d, no latency, 8 in flight"):format(S.bulk8), v, lo, hi, "rate",
    nil, nil, cmds.bulk, fails.bulk)
  local r, rlo, rhi = ratio(rates.bulk, rates.floor)
  row("  vs C multi floor, 8 in flight", r, rlo, rhi, "ratio", ">=", 0.8, cmds.floor,
    fails.floor or fails.bulk)
end

-- 4. The opt-out job, 10 ms latency, 32 in flight.
do
  control("POST", "reset")
  control("POST", "warm")  -- the sandbox's first touch of a profile is slow
  control("DELETE", "counters")
  latency(10)
  local report = DIR .. "/optout-report.csv"
  local timefile = DIR .. "/optout.time"
  os.remove(report)
  local cmd = ("/usr/bin/time -v -o %s lua5.4 examples/ccpa_optout.lua --concurrency 32"
    .. " --no-progress --report %s %s"):format(timefile, report, REQUESTS)
  say("the opt-out job on %d requests (10 ms, 32 in flight)", JOB_N)
  local cpu0, t0 = worker_cpu(), gettime()
  local p = io.popen(cmd .. " >" .. DIR .. "/optout.out 2>&1")
  p:read("a")
  local ok, _, status = p:close()
  local secs = gettime() - t0
  local cpu1 = worker_cpu()
  latency(0)
  local rss_kb, job_cpu
  local tf = io.open(timefile)
  if tf then
    local text = tf:read("a")
    tf:close()
    rss_kb = text:match("Maximum resident set size %(kbytes%): (%d+)")
    local u, s = text:match("User time %(seconds%): ([%d.]+)"),
      text:match("System time %(seconds%): ([%d.]+)")
    if u and s then job_cpu = tonumber(u) + tonumber(s) end
  end
  notes[#notes + 1] = ("opt-out job: %.0f s wall; the job used %s of CPU, the sandbox"
    .. " worker %s")
    :format(secs, job_cpu and ("%.1f s (%.0f%%)"):format(job_cpu, job_cpu / secs * 100) or "?",
      cpu0 and cpu1 and ("%.1f s (%.0f%% of one core)"):format(cpu1 - cpu0,
        (cpu1 - cpu0) / secs * 100) or "?")
  local counters = control("GET", "counters")
  local byemail = tonumber(counters:match('"GET profile/byEmail":(%d+)')) or 0
  local patches = tonumber(counters:match('"PATCH profile/pkey":(%d+)')) or 0
  local why = (not ok) and ("exit " .. tostring(status) .. ", see " .. DIR .. "/optout.out")
  local rate = ok and JOB_N / secs or nil
  row(("opt-out job, %d emails, 10 ms, 32 in flight"):format(JOB_N), rate, nil, nil, "rate",
    ">=", 1100, cmd, why)
  local trips = (byemail + patches) / JOB_N
  row("  round trips/s vs the C multi floor's (32, 10 ms)",
    rate and floor32 and rate * trips / floor32 or nil, nil, nil, "ratio", nil, nil, "",
    why or "no floor rate")
  row("  peak RSS of the job", rss_kb and tonumber(rss_kb) / 1024, nil, nil, "mib", "<=", 64,
    "", rss_kb == nil and "no /usr/bin/time output" or why)
  if byemail + patches > 0 then  -- none when the job could not run
    notes[#notes + 1] = ("opt-out job: %d lookups by email and %d PATCHes for %d requests"
      .. " (%.2f round trips each; %d/s ideal at 10 ms and 32 in flight)")
      :format(byemail, patches, JOB_N, (byemail + patches) / JOB_N,
        math.floor(3200 / ((byemail + patches) / JOB_N) + 0.5))
  end
  control("POST", "reset")
end

-- 5. Resident memory over many calls.
do
  local cmd = ("%s memory %d %s"):format(C, S.memory, KEYS)
  say("resident memory over %d calls", S.memory)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  local n, before, after = out:match("(%d+)%s+(%d+)%s+(%d+)")
  local growth = ok and n and (tonumber(after) - tonumber(before)) / 1024
  row(("RSS growth over %d calls"):format(S.memory), growth or nil, nil, nil, "mib", "<", 2,
    cmd, (not growth) and out or nil)
  if growth then
    notes[#notes + 1] = ("memory: RSS %d KiB after a warm-up, %d KiB after %s more calls"
      .. " (blocks of 10,000 sequential get_profile and 10,000 bulk set_ccpa_optout, 8 in"
      .. " flight, after 40,000 calls of warm-up)")
      :format(tonumber(before), tonumber(after), n)
  end
end

------------------------------------------------------------ the report

print()
print(("campaign benchmark%s, %s UTC, against the sandbox (%d profiles) on 127.0.0.1")
  :format(QUICK and " (BENCH_QUICK)" or "", os.date("!%Y-%m-%d %H:%M"), SEED_N))
print("machine: " .. machine())
print(("environment of every command: CAMPAIGN_BASE_URL=%s CAMPAIGN_ORG=%s"
  .. " CAMPAIGN_API_KEY=%s CAMPAIGN_ACCESS_TOKEN=%s SDK_DIR=%s/node")
  :format(BASE, os.getenv("CAMPAIGN_ORG") or "", os.getenv("CAMPAIGN_API_KEY") or "",
    os.getenv("CAMPAIGN_ACCESS_TOKEN") or "", DIR))
print()
print_table()
print()
for _, n in ipairs(notes) do print("- " .. n) end
print(("- ratios are the module's rate over the peer's, per round (runs side by side),"
  .. " median of %d rounds (%d at 10 ms, %d at 8 in flight) with min-max; %.0f s in all")
  :format(S.rounds, S.rounds10, S.rounds8, gettime() - started))
