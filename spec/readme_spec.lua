-- Every ```lua block of README.md runs against the sandbox, in order.
-- Each runs in an environment with `campaign` (the module), `client` (a
-- client on the sandbox) and `pkey` (the PKey of an existing profile)
-- as globals, over the usual ones.
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local sandbox = require "spec.support.sandbox"
local campaign = require "campaign"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The ```lua blocks with the line each starts on and the heading above it.
local function lua_blocks(text)
  local blocks, heading, current, n = {}, "(top)", nil, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if current then
      if line:match("^```%s*$") then
        current.code = table.concat(current.lines, "\n")
        blocks[#blocks + 1] = current
        current = nil
      else
        current.lines[#current.lines + 1] = line
      end
    elseif line:match("^```lua%s*$") then
      current = { line = n + 1, heading = heading, lines = {} }
    elseif line:match("^#+ ") then
      heading = line:gsub("^#+ ", "")
    end
  end
  assert(current == nil, "a ```lua block is not closed")
  return blocks
end

-- Runs one example with campaign, client and pkey as globals.
local function run_example(b)
  local client = sandbox.client()
  local first = assert(client:request("GET", "profileAndServices/profile?_lineCount=1"))
  local env = setmetatable({
    campaign = campaign, client = client, pkey = first.content[1].PKey,
  }, { __index = _G })
  local chunk = assert(load(b.code, "=README.md:" .. b.line, "t", env))
  local ok, err = pcall(chunk)
  client:close()
  assert(ok, tostring(err))
end

local blocks = lua_blocks(read("README.md"))

describe("README.md", function()
  setup(function()
    sandbox.reset()
  end)

  teardown(function()
    sandbox.reset()
  end)

  it("has runnable examples", function()
    assert.is_true(#blocks >= 8, "only " .. #blocks .. " ```lua blocks")
  end)

  for _, b in ipairs(blocks) do
    local name = ("example at line %d (%s)"):format(b.line, b.heading)
    local needs_nginx = b.code:find("require%s*%(?%s*[\"']campaign%.ngx[\"']")
    if needs_nginx and not rawget(_G, "ngx") then
      -- The OpenResty helper needs nginx's `ngx` (worker threads): here
      -- the example is only compiled; examples/openresty runs it.
      it(name .. " compiles", function()
        assert(load(b.code, "=README.md:" .. b.line, "t", {}))
      end)
      pending(name .. " runs only inside OpenResty")
    else
      it(name .. " runs", function() run_example(b) end)
    end
  end
end)
