-- Independent Lua states in several threads of one process, each with
-- the module and its own clients, calling the sandbox at the same time:
-- spec/threads/threads.c, built by `make spec` into build/spec/.  (CI
-- also runs it under helgrind and ThreadSanitizer: make check-threads.)
--
--   make spec    (or: sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/threads_spec.lua
--                 after make build/spec/lua5.4/threads)
local PROGRAM = "build/spec/lua5.4/threads"

describe("Lua states in threads", function()
  it("each loads the module and makes its calls, all at once", function()
    assert(os.getenv("CAMPAIGN_BASE_URL"), "run under sh spec/sandbox/with-sandbox.sh")
    assert(io.open(PROGRAM), PROGRAM .. " is missing: make spec builds it"):close()
    local p = io.popen(PROGRAM .. " 8 2>&1; echo \"exit=$?\"")
    local out = p:read("a")
    p:close()
    assert.matches("8 threads, 0 failed\nexit=0\n$", out)
  end)
end)
