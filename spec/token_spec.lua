-- Tokens from client credentials: asked for before the first call, kept,
-- renewed 300 s before they end (when a fifth of their life is left, for
-- those under 25 minutes) and after a 401013 (the call then repeated
-- once); a refusal is kind "auth" and remembered.
-- Against the sandbox's token endpoint, and the listener of the specs'
-- own for what the sandbox does not do.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/token_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;" .. package.path

local campaign = require "campaign"
local socket = require "socket"
local peers = require "peers"

local function creds(extra)
  local o = { org = peers.ORG, client_id = peers.KEY, client_secret = peers.SECRET,
              ims_url = peers.BASE, base_url = peers.BASE, retries = 0, timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return campaign.new(o)
end

local function tokens() return peers.count("POST ims/token") end

describe("tokens from the sandbox's token endpoint", function()
  local pkey

  setup(function()
    assert(peers.BASE, "run under sh spec/sandbox/with-sandbox.sh")
    peers.reset()
    pkey = peers.first_pkey()
  end)
  before_each(peers.reset)
  teardown(peers.reset)

  it("asks once, before the first call, and keeps the token", function()
    local c = creds()
    assert.equal(0, tokens())
    for _ = 1, 3 do assert.equal(pkey, assert(c:get_profile(pkey)).PKey) end
    assert.truthy(c:count_profiles() > 0)
    assert.equal(1, tokens())
    c:close()
  end)

  it("sends client_id as the API key when api_key is not given", function()
    local c = creds()
    assert(c:get_profile(pkey))
    c:close()
    -- the sandbox's gateway wants its API key first: 403003 otherwise
    c = creds { api_key = "not-the-key" }
    local _, err = c:get_profile(pkey)
    c:close()
    assert.equal("http", err.kind)
    assert.equal("403003", err.code)
  end)

  it("renews when a fifth of the life is left, before any 401", function()
    -- a 4 s token is renewed once under 0.8 s of it is left
    peers.config { token_ttl = 4 }
    local c = creds()
    local t0 = socket.gettime()
    assert(c:get_profile(pkey))
    assert.equal(1, tokens())
    socket.sleep(1)
    assert(c:get_profile(pkey))
    assert.equal(1, tokens())         -- about 3 s of life left: kept
    socket.sleep(math.max(0, t0 + 3.5 - socket.gettime()))
    assert(c:get_profile(pkey))       -- under 0.5 s left: renewed first
    assert.equal(2, tokens())
    c:close()
    for _, e in ipairs(peers.control("GET", "log")) do
      assert.is_true(e.status < 400, e.route .. " " .. e.status)
    end
  end)

  it("renews a long-lived token 300 s before it ends, on a fast clock", function()
    -- 50 minutes of life, lived in 3 s: spec/support/long_token.lua
    -- under libfaketime, its clock a thousand times fast
    peers.config { token_ttl = 3000 }
    local lib = io.popen("ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null")
      :read("l")
    assert(lib, "libfaketime is missing: apt-get install faketime")
    -- the child runs the plain build even under make check-asan: the
    -- ASan runtime hangs in its first malloc when libfaketime loads too
    local p = io.popen(("env -u LUA_INIT -u LUA_INIT_5_4 FAKETIME=%s " ..
      "LD_PRELOAD=%s %s spec/support/long_token.lua 2>&1"):format(
      peers.quote("+0 x1000"), peers.quote(lib), peers.LUA))
    local out = p:read("a")
    assert(p:close(), out)
    -- token requests after the calls at 0 s, 2,550 s and 2,850 s
    assert.equal("1\n1\n2\n", out)
    for _, e in ipairs(peers.control("GET", "log")) do
      assert.is_true(e.status < 400, e.route .. " " .. e.status)
    end
  end)

  it("after a 401013, renews once and repeats the call once", function()
    local c = creds()
    assert(c:get_profile(pkey))
    peers.faults { status = { code = 401, error_code = 401013, count = 1,
                              route = "profile/pkey" } }
    assert.equal(pkey, assert(c:get_profile(pkey)).PKey)
    assert.equal(2, tokens())
    assert.equal(3, peers.count("GET profile/pkey"))
    c:close()
  end)

  it("a second 401013 in a row is the caller's: http 401, no loop", function()
    local c = creds { retries = 3 }
    assert(c:get_profile(pkey))
    peers.faults { status = { code = 401, error_code = 401013, count = 5,
                              route = "profile/pkey" } }
    local r, err = c:get_profile(pkey)
    assert.is_nil(r)
    assert.equal("http", err.kind)
    assert.equal(401, err.status)
    assert.equal("401013", err.code)
    assert.equal(2, tokens())
    assert.equal(3, peers.count("GET profile/pkey"))
    c:close()
  end)

  it("renews for a bulk run whose calls meet 401013", function()
    local c = creds()
    assert(c:get_profile(pkey))
    peers.faults { status = { code = 401, error_code = 401013, count = 3,
                              route = "profile/pkey" } }
    local ops = {}
    for i = 1, 12 do ops[i] = { "get_profile", pkey } end
    local s = c:bulk(ops, { concurrency = 4 })
    assert.equal(12, s.ok)
    -- the three 401013 answers came to calls sent with the same token:
    -- one renewal serves them all
    assert.equal(2, tokens())
    c:close()
  end)

  it("a 429 of the token endpoint is no refusal: kind http, a later call asks again",
    function()
      local c = creds()
      peers.faults { status = { code = 429, count = 1, route = "ims/token" } }
      local r, err = c:get_profile(pkey)
      assert.is_nil(r)
      assert.equal("http", err.kind)
      assert.equal(429, err.status)
      assert(c:get_profile(pkey))
      assert.equal(2, tokens())
      c:close()
    end)

  it("retries the token request like any call: backoff, or Retry-After", function()
    local c = creds { retries = 2 }
    peers.faults { status = { code = 503, count = 2, route = "ims/token" } }
    assert(c:get_profile(pkey))
    assert.equal(3, tokens())
    c:close()

    c = creds { retries = 1 }
    peers.faults { status = { code = 429, count = 1, retry_after = 1,
                              route = "ims/token" } }
    local t0 = socket.gettime()
    assert(c:get_profile(pkey))
    local waited = socket.gettime() - t0
    assert.is_true(waited >= 0.9 and waited < 5, "waited " .. waited)
    assert.equal(5, tokens())
    c:close()

    c = creds { retries = 1 }
    peers.faults { status = { code = 503, count = 2, route = "ims/token" } }
    local _, err = c:get_profile(pkey)
    assert.equal("http", err.kind)
    assert.equal(503, err.status)
    assert.equal(7, tokens())
    c:close()
  end)

  it("a refused secret is kind auth, at the first call, remembered", function()
    local c = creds { client_secret = "wrong-secret" }
    local r, err = c:get_profile(pkey)
    assert.is_nil(r)
    assert.equal("auth", err.kind)
    assert.is_false(err.retryable)
    assert.truthy(tostring(err):match("^campaign: auth"))
    for _ = 1, 3 do
      local r2, err2 = c:count_profiles()
      assert.is_nil(r2)
      assert.equal("auth", err2.kind)
    end
    local s = c:bulk({ { "get_profile", pkey }, { "count_profiles" } })
    assert.equal(2, s.failed)
    assert.equal(1, tokens())
    assert.equal(0, peers.count("GET profile/pkey"))
    c:close()
  end)

  it("an unknown client id is refused the same way", function()
    local c = creds { client_id = "nobody", api_key = peers.KEY }
    local _, err = c:get_profile(pkey)
    assert.equal("auth", err.kind)
    c:close()
  end)

  it("401 and 403 of the API stay kind http", function()
    local c = peers.sandbox_client(campaign, { access_token = "expired-or-wrong" })
    local _, err = c:get_profile(pkey)
    assert.equal("http", err.kind)
    assert.equal(401, err.status)
    c:close()
    c = peers.sandbox_client(campaign, { api_key = "wrong" })
    _, err = c:get_profile(pkey)
    assert.equal("http", err.kind)
    assert.equal(403, err.status)
    c:close()
  end)

  it("a plain access_token is never renewed", function()
    local c = peers.sandbox_client(campaign)
    assert(c:get_profile(pkey))
    peers.faults { status = { code = 401, error_code = 401013, count = 1,
                              route = "profile/pkey" } }
    local _, err = c:get_profile(pkey)
    assert.equal("http", err.kind)
    assert.equal("401013", err.code)
    assert.equal(0, tokens())
    c:close()
  end)

  it("new refuses a token together with client credentials", function()
    assert.has_error(function()
      campaign.new { org = "acme", access_token = "t", client_id = "a", client_secret = "b" }
    end)
    assert.has_error(function() campaign.new { org = "acme", client_id = "a" } end)
    assert.has_error(function() campaign.new { org = "acme", client_secret = "b" } end)
    assert.has_error(function()
      campaign.new { org = "acme", client_id = "a", client_secret = "b", scopes = { {} } }
    end)
  end)
end)

describe("tokens from a listener of the specs' own", function()
  local L

  local function client(extra)
    local o = { org = "acme", client_id = "id-1", client_secret = "secret-1",
                ims_url = L.url, base_url = L.url, retries = 0, timeout = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return campaign.new(o)
  end

  local function form(body)
    local t = {}
    for pair in body:gmatch("[^&]+") do
      local k, v = pair:match("^([^=]+)=(.*)$")
      t[k] = v:gsub("%+", " "):gsub("%%(%x%x)", function(h)
        return string.char(tonumber(h, 16)) end)
    end
    return t
  end

  setup(function() L = peers.listener() end)
  teardown(function() L:stop() end)
  before_each(function()
    L:clear()
    L:token_mode("ok")
  end)

  it("posts a form-encoded client_credentials grant with the default scopes",
    function()
      local c = client()
      local echo = assert(c:get_profile("@p"))
      c:close()
      local reqs = L:requests()
      assert.equal(2, #reqs)
      assert.equal("POST /ims/token/v3 HTTP/1.1", reqs[1].line)
      local h = table.concat(reqs[1].headers, "\n")
      assert.truthy(h:find("Content%-Type: application/x%-www%-form%-urlencoded"))
      assert.is_nil(h:find("Authorization", 1, true))
      local f = form(reqs[1].body)
      assert.equal("client_credentials", f.grant_type)
      assert.equal("id-1", f.client_id)
      assert.equal("secret-1", f.client_secret)
      local scopes = {}
      for s in f.scope:gmatch("[^,]+") do scopes[s] = true end
      for _, s in ipairs { "openid", "AdobeID", "campaign_sdk", "read_organizations",
                           "additional_info.projectedProductContext" } do
        assert.is_true(scopes[s], "default scope " .. s)
      end
      -- the API call carries the token and the client id as API key
      local api = table.concat(echo.headers, "\n")
      assert.truthy(api:find("Authorization: Bearer listener%-token%-%d+"))
      assert.truthy(api:find("X-Api-Key: id-1", 1, true))
    end)

  it("takes scopes as an array or a comma-separated string", function()
    local c = client { scopes = { "a", "b.c" } }
    c:get_profile("@p")
    c:close()
    assert.equal("a,b.c", form(L:requests()[1].body).scope)
    L:clear()
    c = client { scopes = "x,y" }
    c:get_profile("@p")
    c:close()
    assert.equal("x,y", form(L:requests()[1].body).scope)
  end)

  it("a refusal (401 of the token endpoint) is kind auth, not retried", function()
    L:token_mode("echo_refusal")
    local c = client { retries = 3 }
    local _, err = c:get_profile("@p")
    assert.equal("auth", err.kind)
    assert.equal("invalid_client", err.code)
    _, err = c:get_profile("@p")
    assert.equal("auth", err.kind)
    c:close()
    assert.equal(1, #L:requests())
  end)

  it("a 5xx of the token endpoint is not a refusal: a later call asks again",
    function()
      L:token_mode("server_error")
      local c = client()
      local _, err = c:get_profile("@p")
      assert.are_not.equal("auth", err.kind)
      L:token_mode("ok")
      assert(c:get_profile("@p"))
      c:close()
    end)

  it("a token endpoint that cannot be reached: network, a later call asks again",
    function()
      local c = client { ims_url = "http://127.0.0.1:" .. peers.free_port() }
      local _, err = c:get_profile("@p")
      assert.equal("network", err.kind)
      assert.equal("COULDNT_CONNECT", err.code)
      c:close()
    end)

  it("an answer without a usable token is an err, not a crash", function()
    for _, mode in ipairs { "garbage", "no_token", "bad_token" } do
      L:token_mode(mode)
      local c = client()
      local r, err = c:get_profile("@p")
      c:close()
      assert.is_nil(r, mode)
      assert.is_table(err, mode)
      assert.truthy(err.kind == "auth" or err.kind == "protocol", mode .. " " .. err.kind)
      -- a token with CR LF never reaches a header
      for _, q in ipairs(L:requests()) do
        assert.is_nil(q.line:find("@p", 1, true), mode .. ": " .. q.line)
      end
    end
  end)
end)
