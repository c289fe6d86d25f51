-- The module's side of the benchmark: the same requests as the peers,
-- through `require "campaign"`.
--
--   lua5.4 spec/bench/campaign_peer.lua get N KEYS         sequential get_profile
--   lua5.4 spec/bench/campaign_peer.lua optout N KEYS      sequential set_ccpa_optout
--   lua5.4 spec/bench/campaign_peer.lua bulk N KEYS CONC   client:bulk, CONC in flight
--   lua5.4 spec/bench/campaign_peer.lua memory N KEYS      RSS growth over N calls
--                                                          (N a multiple of 20,000)
--
-- KEYS: raw PKeys, one a line (get uses the first).  Server and
-- credentials from CAMPAIGN_BASE_URL, CAMPAIGN_ORG, CAMPAIGN_API_KEY,
-- CAMPAIGN_ACCESS_TOKEN.  Prints "N SECONDS" for the timed loop (after
-- a short untimed warm-up); memory prints "N RSS_KB_BEFORE RSS_KB_AFTER".
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local campaign = require "campaign"
local gettime = require("socket").gettime

local mode, n, keys_file, conc = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4])
if not (mode and n and keys_file) then
  io.stderr:write("usage: campaign_peer.lua get|optout|bulk|memory N KEYS [CONC]\n")
  os.exit(2)
end

local keys = {}
for line in io.lines(keys_file) do
  if line ~= "" then keys[#keys + 1] = line end
  if #keys >= n then break end
end

local client = campaign.new{
  org = os.getenv("CAMPAIGN_ORG") or "acme",
  api_key = os.getenv("CAMPAIGN_API_KEY") or "sandbox-client",
  access_token = os.getenv("CAMPAIGN_ACCESS_TOKEN") or "sandbox-token",
  base_url = assert(os.getenv("CAMPAIGN_BASE_URL"), "CAMPAIGN_BASE_URL is not set"),
}

local failed = 0

local function seq_get(count)
  local pkey = keys[1]
  for _ = 1, count do
    local p = client:get_profile(pkey)
    if not p or p.PKey ~= pkey then failed = failed + 1 end
  end
end

local function seq_optout(count)
  local nk = #keys
  for i = 1, count do
    if not client:set_ccpa_optout(keys[(i - 1) % nk + 1], true) then
      failed = failed + 1
    end
  end
end

local function bulk_optout(count, concurrency)
  local nk, i = #keys, 0
  local summary = client:bulk(function()
    i = i + 1
    if i > count then return nil end
    return { "set_ccpa_optout", keys[(i - 1) % nk + 1], true }
  end, {
    concurrency = concurrency,
    on_result = function(_, _, result) if not result then failed = failed + 1 end end,
  })
  return summary
end

local function rss_kb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

local function finish(...)
  if failed > 0 then
    io.stderr:write(("campaign_peer: %d calls failed\n"):format(failed))
    os.exit(1)
  end
  print(...)
end

if mode == "get" then
  seq_get(20)
  local t0 = gettime()
  seq_get(n)
  finish(n, ("%.6f"):format(gettime() - t0))
elseif mode == "optout" then
  seq_optout(3)
  local t0 = gettime()
  seq_optout(n)
  finish(n, ("%.6f"):format(gettime() - t0))
elseif mode == "bulk" then
  bulk_optout(conc * 2, conc)
  local t0 = gettime()
  bulk_optout(n, conc)
  finish(n, ("%.6f"):format(gettime() - t0))
elseif mode == "memory" then
  -- Blocks of 10,000 sequential get_profile then 10,000 bulk
  -- set_ccpa_optout (8 in flight), over 10,000 PKeys.  RSS is read after
  -- a full collection, once after two warm-up blocks (so that the heap
  -- has been through the GC's cycle and libcurl's connections exist)
  -- and again after N more calls: a leak grows with N, the heap's
  -- high-water mark does not.
  local block = 10000
  for i = block + 1, #keys do keys[i] = nil end
  local function blocks(calls)
    for _ = 1, calls // (2 * block) do
      seq_get(block)
      bulk_optout(block, 8)
    end
  end
  blocks(4 * block)
  collectgarbage("collect")
  local before = rss_kb()
  local t0 = gettime()
  blocks(n)
  local secs = gettime() - t0
  collectgarbage("collect")
  finish(n, before, rss_kb(), ("%.6f"):format(secs))
else
  io.stderr:write("campaign_peer: unknown mode " .. mode .. "\n")
  os.exit(2)
end
client:close()
