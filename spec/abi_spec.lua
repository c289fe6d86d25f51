-- The same source built for Lua 5.3 and for LuaJIT (the 5.1 ABI), each
-- loaded by its own interpreter outside nginx and run against the
-- sandbox by spec/support/abi_smoke.lua: the calls, the err tables, bulk,
-- misuse, and the two paths through a userdata's user value (the
-- on_request hook, a remembered token refusal).
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/abi_spec.lua
local sandbox = require "spec.support.sandbox"

-- Without what check-asan sets for the 5.4 processes: LUA_INIT loads
-- the 5.4 ASan build, LD_PRELOAD its runtime.
local CLEAN = "env -u LUA_INIT -u LUA_INIT_5_3 -u LD_PRELOAD "

local function run(cmd)
  local f = assert(io.popen(CLEAN .. cmd .. " 2>&1"))
  local out = f:read("a")
  local ok = f:close()
  return ok, out
end

local function findings(out)
  local t = {}
  for name, value in out:gmatch("([%w_]+)\t([^\n]*)") do t[name] = value end
  return t
end

local ABIS = {
  { lua = "lua5.3", version = "Lua 5.3", integers = "integer" },
  { lua = "luajit", version = "Lua 5.1", integers = "number" },
}

describe("other Lua ABIs", function()
  setup(function() sandbox.reset() end)

  for _, abi in ipairs(ABIS) do
    it("the " .. abi.lua .. " build works as the 5.4 one does", function()
      local ok, out = run("make -s --no-print-directory LUA=" .. abi.lua .. " all")
      assert(ok, "make LUA=" .. abi.lua .. " failed:\n" .. out)
      ok, out = run(abi.lua .. " spec/support/abi_smoke.lua build/" .. abi.lua)
      assert(ok, out)
      local f = findings(out)
      assert.equal(abi.version, f.lua, out)
      assert.equal("true", f.same_email, out)
      assert.equal(abi.integers, f.age_type, out)
      assert.equal("true", f.flipped, out)
      assert.equal("true", f.found, out)
      assert.equal("http 404", f.missing, out)
      assert.matches("^campaign: http 404 RST%-360011: ", f.err_line)
      assert.equal("1 ok, 1 failed, ok, usage", f.bulk, out)
      assert.equal("bad argument #1 to 'get_profile' (a PKey string expected)",
        f.misuse, out)
      assert.equal("9", f.tries, out)
      assert.equal("auth auth true", f.auth, out)
      assert.equal("true", f.closed, out)
    end)
  end
end)
