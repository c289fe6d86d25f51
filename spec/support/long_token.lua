-- A token that lives 50 minutes, on a clock a thousand times fast:
-- token_spec runs this under libfaketime (FAKETIME="+0 x1000"), so the
-- monotonic clock the module reads, the one LuaSocket reads and sleeps
-- run fast here, and only here; the sandbox keeps real time, so it
-- never sees the token expire.  Prints the token requests the sandbox
-- counted after each call, one line each: at the start, 2,550 s in
-- (kept: a fifth of its life would have renewed it at 2,400 s) and
-- 2,850 s in (renewed: 300 s before the end).
--
--   lua5.4 spec/support/long_token.lua   (with the sandbox's environment)
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;" .. package.path

local campaign = require "campaign"
local socket = require "socket"
local peers = require "peers"

-- a minute of real time for each control request, on this clock
require("socket.http").TIMEOUT = 60000

local HOUR = 3600   -- every time limit of the client: 3.6 s of real time
local client = campaign.new {
  org = peers.ORG, client_id = peers.KEY, client_secret = peers.SECRET,
  ims_url = peers.BASE, base_url = peers.BASE, retries = 0,
  timeout = HOUR, connect_timeout = HOUR, stall_timeout = HOUR,
}
local pkey = peers.first_pkey()

local function call_at(t0, seconds)
  socket.sleep(math.max(0, t0 + seconds - socket.gettime()))
  assert(client:get_profile(pkey))
  print(("%d"):format(peers.count("POST ims/token")))
end

local t0 = socket.gettime()
call_at(t0, 0)
call_at(t0, 2550)
call_at(t0, 2850)
client:close()
