-- Run by spec/abi_spec.lua under a Lua other than 5.4 (5.3, LuaJIT):
-- takes the module built for that Lua from the directory given, drives
-- the sandbox with it, and prints one "name<TAB>value" line a finding.
-- Written for every Lua from 5.1 on.
--
--   luajit spec/support/abi_smoke.lua build/luajit
package.cpath = arg[1] .. "/?.so;" .. package.cpath

local campaign = require "campaign"

local function say(name, value)
  io.write(name, "\t", tostring(value), "\n")
end

local function kind(v)
  return math.type and math.type(v) or type(v)
end

local tries = 0
local client = campaign.new {
  org = os.getenv("CAMPAIGN_ORG"),
  api_key = os.getenv("CAMPAIGN_API_KEY"),
  access_token = os.getenv("CAMPAIGN_ACCESS_TOKEN"),
  base_url = os.getenv("CAMPAIGN_BASE_URL"),
  retries = 0,
  -- the hook lives in the client's user value
  on_request = function() tries = tries + 1 end,
}
say("lua", _VERSION)

local first = client:profiles { page_size = 2 }()
local p = assert(client:get_profile(first.PKey))
say("same_email", p.email == first.email)
say("age_type", kind(p.age))

local was = assert(client:get_ccpa_optout(first.PKey))
assert(client:set_ccpa_optout(first.PKey, not was))
say("flipped", client:get_ccpa_optout(first.PKey) == not was)
assert(client:set_ccpa_optout(first.PKey, was))

local found = assert(client:find_profiles { email = first.email })
say("found", #found >= 1)

local none, err = client:get_profile("@no-such-profile")
say("missing", none == nil and err.kind .. " " .. err.status)
say("err_line", tostring(err))

local seen = {}
local summary = client:bulk({ { "get_ccpa_optout", first.PKey },
                              { "no_such_method", 1 } },
  { concurrency = 2, on_result = function(i, _, _, e)
    seen[i] = e and e.kind or "ok"
  end })
say("bulk", summary.ok .. " ok, " .. summary.failed .. " failed, "
  .. seen[1] .. ", " .. seen[2])

local ok, msg = pcall(client.get_profile, client, 42)
say("misuse", not ok and msg)
say("tries", tries)

-- a refused token is remembered in the client's user value too
local refused = campaign.new {
  org = os.getenv("CAMPAIGN_ORG"), client_id = os.getenv("CAMPAIGN_API_KEY"),
  client_secret = "not-the-secret", ims_url = os.getenv("CAMPAIGN_BASE_URL"),
  base_url = os.getenv("CAMPAIGN_BASE_URL"), retries = 0,
}
local _, e1 = refused:get_profile(first.PKey)
local _, e2 = refused:get_profile(first.PKey)
say("auth", e1.kind .. " " .. e2.kind .. " " .. tostring(e1.status == e2.status))
refused:close()
client:close()
say("closed", not pcall(client.get_profile, client, first.PKey))
