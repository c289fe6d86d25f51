-- The usual way in plain Lua 5.4: LuaSocket's http.request with an ltn12
-- sink, then cjson.decode (Debian's lua-socket and lua-cjson).
--
--   lua5.4 spec/bench/luasocket_peer.lua get N KEYS
--
-- Server and credentials from the CAMPAIGN_* environment.  Prints
-- "N SECONDS" for the timed loop.
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"
local gettime = require("socket").gettime

local mode, n, keys_file = arg[1], tonumber(arg[2]), arg[3]
if mode ~= "get" or not n or not keys_file then
  io.stderr:write("usage: luasocket_peer.lua get N KEYS\n")
  os.exit(2)
end

local pkey = io.lines(keys_file)()
local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end
local url = os.getenv("CAMPAIGN_BASE_URL") .. "/" .. (os.getenv("CAMPAIGN_ORG") or "acme")
  .. "/campaign/profileAndServices/profile/" .. escape(pkey)
local headers = {
  ["Authorization"] = "Bearer " .. (os.getenv("CAMPAIGN_ACCESS_TOKEN") or "sandbox-token"),
  ["X-Api-Key"] = os.getenv("CAMPAIGN_API_KEY") or "sandbox-client",
  ["Content-Type"] = "application/json;charset=utf-8",
  ["Cache-Control"] = "no-cache",
}

local failed = 0
local function get_profile()
  local chunks = {}
  local ok, code = http.request{ url = url, headers = headers, sink = ltn12.sink.table(chunks) }
  if not ok or code ~= 200 then failed = failed + 1 return end
  local p = cjson.decode(table.concat(chunks))
  if p.PKey ~= pkey then failed = failed + 1 end
end

for _ = 1, 5 do get_profile() end
local t0 = gettime()
for _ = 1, n do get_profile() end
local secs = gettime() - t0
if failed > 0 then
  io.stderr:write(("luasocket_peer: %d calls failed\n"):format(failed))
  os.exit(1)
end
print(n, ("%.6f"):format(secs))
