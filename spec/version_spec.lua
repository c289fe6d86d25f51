-- campaign._VERSION and the one rockspec at the top of the tree agree.
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local lfs = require "lfs"
local campaign = require "campaign"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function rockspecs()
  local found = {}
  for name in lfs.dir(".") do
    if name:match("^campaign%-.*%.rockspec$") then found[#found + 1] = name end
  end
  return found
end

describe("the version", function()
  it("is one rockspec at the top of the tree", function()
    local found = rockspecs()
    assert.are.equal(1, #found, "rockspecs: " .. table.concat(found, ", "))
  end)

  it("is campaign._VERSION, the rockspec's version without its revision", function()
    local name = rockspecs()[1]
    local env = {}
    assert(load(read(name), "=" .. name, "t", env))()
    assert.are.equal("campaign", env.package)
    local version, revision = env.version:match("^(.+)%-(%d+)$")
    assert.is_truthy(version, "rockspec version " .. tostring(env.version))
    assert.is_truthy(tonumber(revision))
    assert.are.equal("string", type(campaign._VERSION))
    assert.are.equal(version, campaign._VERSION)
    -- the file name agrees with what it declares
    assert.are.equal(("campaign-%s.rockspec"):format(env.version), name)
  end)

  it("is the one the README states", function()
    local readme = read("README.md")
    local stated = readme:match("`campaign%._VERSION`[^\n]-`\"([^\"]+)\"`")
    assert.are.equal(campaign._VERSION, stated)
  end)
end)
