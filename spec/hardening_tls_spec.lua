-- Hardening: TLS verification and the plain-http refusal.  The TLS peer
-- is `openssl s_server` on 127.0.0.1 with a self-signed certificate made
-- at test time (spec/support/peers.lua).
--
--   lua5.4 /usr/bin/busted spec/hardening_tls_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;" .. package.path

local campaign = require "campaign"
local peers = require "peers"

local PROFILE = '{"PKey":"@tls-1","email":"tls@example.com","ccpaOptOut":false}'

local function new(base, extra)
  local o = { org = "acme", api_key = "k-tls", access_token = "t-tls",
              base_url = base, retries = 0, timeout = 5, connect_timeout = 2 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return campaign.new(o)
end

describe("TLS against a self-signed server of the specs' own", function()
  local S

  setup(function()
    S = peers.tls_server { ["ok.json"] = PROFILE }
  end)
  teardown(function() S:stop() end)

  it("is refused by default: network, verification failed, not retried", function()
    local tries = 0
    local c = new(S.url, { retries = 2, on_request = function() tries = tries + 1 end })
    local r, err = c:request("GET", "/ok.json")
    c:close()
    assert.is_nil(r)
    assert.equal("network", err.kind)
    assert.truthy(err.code == "PEER_FAILED_VERIFICATION" or err.code:match("^SSL_"),
      tostring(err))
    assert.is_false(err.retryable)
    assert.equal(1, tries)
  end)

  it("is refused by name too (https://localhost)", function()
    local c = new("https://localhost:" .. S.port)
    local r, err = c:request("GET", "/ok.json")
    c:close()
    assert.is_nil(r)
    assert.equal("network", err.kind)
  end)

  it("is accepted with ca_file naming its certificate", function()
    local c = new(S.url, { ca_file = S.ca_file })
    local r, err = c:request("GET", "/ok.json")
    assert.is_table(r, err and tostring(err))
    assert.equal("@tls-1", r.PKey)
    c:close()
    c = new("https://localhost:" .. S.port, { ca_file = S.ca_file })
    r, err = c:request("GET", "/ok.json")
    c:close()
    assert.is_table(r, err and tostring(err))
  end)

  it("a ca_file that is not a CA bundle is an err, not a crash", function()
    local c = new(S.url, { ca_file = peers.ROOT .. "/README.md" })
    local r, err = c:request("GET", "/ok.json")
    c:close()
    assert.is_nil(r)
    assert.equal("network", err.kind)
    assert.is_false(err.retryable)
  end)

  it("plain http to the TLS port is an err, not a hang", function()
    local c = new("http://127.0.0.1:" .. S.port)
    local r, err = c:request("GET", "/ok.json")
    c:close()
    assert.is_nil(r)
    assert.is_table(err)
  end)

  it("a token endpoint with an unverifiable certificate is refused too", function()
    local c = campaign.new { org = "acme", client_id = "id", client_secret = "s3cr3t-x",
      ims_url = S.url, base_url = S.url, retries = 0, timeout = 5 }
    local r, err = c:get_profile("@x")
    c:close()
    assert.is_nil(r)
    assert.equal("network", err.kind)
  end)
end)

describe("plain http is refused but to loopback", function()
  local function refused(url, opt)
    opt = opt or "base_url"
    local o = { org = "acme" }
    if opt == "ims_url" then
      o.client_id, o.client_secret, o.ims_url = "id", "secret", url
    else
      o.api_key, o.access_token, o.base_url = "k", "t", url
    end
    local ok, msg = pcall(campaign.new, o)
    return not ok and tostring(msg):find("bad option '" .. opt .. "'", 1, true) ~= nil, msg
  end

  it("accepts loopback origins", function()
    for _, u in ipairs { "http://127.0.0.1:1", "http://127.1.2.3:8080",
                         "http://localhost:9", "http://[::1]:9", "https://127.0.0.1" } do
      local c = campaign.new { org = "acme", api_key = "k", base_url = u }
      c:close()
    end
  end)

  it("refuses plain http to other hosts", function()
    for _, u in ipairs { "http://campaign.invalid", "http://10.0.0.1:80",
                         "http://192.168.1.1", "http://[::2]:80" } do
      assert.is_true(refused(u), u)
      assert.is_true(refused(u, "ims_url"), u)
    end
  end)

  -- A name is not an address: "127.<name>" can resolve anywhere.
  it("refuses plain http to a host name that merely starts with 127.", function()
    for _, u in ipairs { "http://127.campaign.invalid", "http://127.0.0.1.campaign.invalid:80",
                         "http://localhost.campaign.invalid" } do
      local ok, msg = refused(u)
      assert.is_true(ok, u .. " was accepted as loopback " .. tostring(msg))
    end
  end)

  it("refuses other schemes, paths, queries and fragments", function()
    for _, u in ipairs { "ftp://127.0.0.1", "file:///etc/passwd", "127.0.0.1:80",
                         "http://127.0.0.1:1/x", "http://127.0.0.1:1?x=1",
                         "http://127.0.0.1:1/#x", "http://127.0.0.1:1#frag",
                         "" } do
      assert.is_true(refused(u), u)
    end
  end)
end)
