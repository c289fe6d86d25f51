-- Proxies: only the `proxy` option names one.  libcurl would otherwise
-- take one from http_proxy, HTTP_PROXY or ALL_PROXY, and the token could
-- go through a proxy nobody chose (in clear, for a loopback base_url).
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local campaign = require "campaign"

local BASE = assert(os.getenv("CAMPAIGN_BASE_URL"), "run under with-sandbox.sh")
local DEAD = "http://127.0.0.1:1"   -- nothing listens there

local function client(opts)
  local o = { org = os.getenv("CAMPAIGN_ORG"), base_url = BASE, retries = 0,
              api_key = os.getenv("CAMPAIGN_API_KEY"),
              access_token = os.getenv("CAMPAIGN_ACCESS_TOKEN") }
  for k, v in pairs(opts or {}) do o[k] = v end
  return campaign.new(o)
end

describe("proxies", function()
  it("none is taken from the environment", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local c = require("campaign").new{ org = os.getenv("CAMPAIGN_ORG"),
  api_key = os.getenv("CAMPAIGN_API_KEY"),
  access_token = os.getenv("CAMPAIGN_ACCESS_TOKEN"),
  base_url = os.getenv("CAMPAIGN_BASE_URL"), retries = 0 }
local n, err = c:count_profiles()
print(n or tostring(err))
]])
    f:close()
    local env = ("http_proxy=%s HTTP_PROXY=%s https_proxy=%s ALL_PROXY=%s all_proxy=%s")
      :format(DEAD, DEAD, DEAD, DEAD, DEAD)
    local p = assert(io.popen(env .. " lua5.4 " .. script .. " 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.matches("^%d+\n$", out)
  end)

  it("the proxy option is the one used", function()
    local c = client { proxy = DEAD }
    local n, err = c:count_profiles()
    c:close()
    assert.is_nil(n)
    assert.equal("network", err.kind)
    assert.equal("COULDNT_CONNECT", err.code)
  end)
end)
