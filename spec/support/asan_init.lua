-- LUA_INIT of `make check-asan`: every lua5.4 process of the run (busted,
-- and the opt-out job the specs start) gets the module from build/asan,
-- built with AddressSanitizer and UBSan, whatever its package.cpath says.
-- CAMPAIGN_SO names the shared object (an absolute path).
local so = os.getenv("CAMPAIGN_SO")
if so then
  package.preload.campaign = assert(package.loadlib(so, "luaopen_campaign"))
end
