-- Injection: every string the caller gives (PKey, email, text, order,
-- field names, option values) tried with / ? # % .. spaces CR LF NUL and
-- non-ASCII.  No request may go to another path, host, query or header
-- than intended.  The listener of the specs' own echoes and logs the raw
-- request line, headers and body of each request.
--
--   lua5.4 /usr/bin/busted spec/injection_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;" .. package.path

local campaign = require "campaign"
local cjson = require("cjson").new()
local peers = require "peers"

local PROFILE = "/acme/campaign/profileAndServices/profile"

local EVIL = {
  "/", "?", "#", "%", "..", ".", " ", "\r", "\n", "\0", "é",
  "a/b", "../../etc/passwd", "a/../../b", "x?y=1&z=2", "x#frag", "%2e%2e",
  "%2F", "%00", "a b", "a\r\nX-Evil: 1", "a\nHost: evil", "a\0b",
  "Zoë Ōta", "\xff\xfe", "@a/b+c==", "a&_lineCount=1", "a;b,c", "\\x",
  "http://127.0.0.2/", "//127.0.0.2/x", "\t", ("A"):rep(900),
}

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local EXPECTED_HEADERS = {
  host = true, ["user-agent"] = true, accept = true, ["accept-encoding"] = true,
  ["content-type"] = true, ["cache-control"] = true, ["x-api-key"] = true,
  authorization = true, ["content-length"] = true,
}

-- Each request: one line, our host, only the headers we send, each once.
local function check_request(q, L, key, token)
  assert.is_nil(q.line:find("[%z\1-\31\127]"), q.line)
  local seen = {}
  for _, h in ipairs(q.headers) do
    local name, value = h:match("^([^:]+):%s?(.*)$")
    assert.truthy(name, h)
    name = name:lower()
    assert.is_true(EXPECTED_HEADERS[name], "unexpected header " .. h)
    assert.is_nil(seen[name], "header twice: " .. h)
    seen[name] = value
  end
  assert.equal("127.0.0.1:" .. L.port, seen.host)
  assert.equal("lua-campaign/" .. campaign._VERSION, seen["user-agent"])
  if key then assert.equal(key, seen["x-api-key"]) end
  if token then assert.equal("Bearer " .. token, seen.authorization) end
end

-- The target of a request line, split into path and query.
local function target(q)
  local method, t = q.line:match("^(%u+) (%S+) HTTP/1%.1$")
  assert.truthy(method, "odd request line: " .. q.line)
  local path, query = t:match("^([^?]*)%??(.*)$")
  return method, path, query
end

describe("injection", function()
  local L, c

  local function new(extra)
    local o = { org = "acme", api_key = "k-inj", access_token = "t-inj",
                base_url = L.url, retries = 0, timeout = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return campaign.new(o)
  end

  -- The requests logged since the last clear; each checked.
  local function sent(n)
    local reqs = L:requests()
    if n then assert.equal(n, #reqs) end
    for _, q in ipairs(reqs) do check_request(q, L, "k-inj", "t-inj") end
    return reqs
  end

  setup(function()
    L = peers.listener()
    c = new()
  end)
  teardown(function()
    c:close()
    L:stop()
  end)
  before_each(function() L:clear() end)

  describe("a PKey", function()
    local function check_pkey_path(q, pkey, method)
      local m, path, query = target(q)
      assert.equal(method, m)
      assert.equal("", query, q.line)
      local seg = path:match("^" .. PROFILE:gsub("%p", "%%%0") .. "/([%w%%%-%._~]+)$")
      assert.truthy(seg, "PKey " .. ("%q"):format(pkey) .. " went to " .. path)
      assert.equal(pkey, unescape(seg))
    end

    local calls = {
      { "get_profile", "GET", function(k) return c:get_profile(k) end },
      { "update_profile", "PATCH", function(k) return c:update_profile(k, { a = 1 }) end },
      { "delete_profile", "DELETE", function(k) return c:delete_profile(k) end },
      { "get_ccpa_optout", "GET", function(k) return c:get_ccpa_optout(k) end },
      { "set_ccpa_optout", "PATCH", function(k) return c:set_ccpa_optout(k, true) end },
    }
    for _, call in ipairs(calls) do
      it("stays one path segment in " .. call[1], function()
        for _, pkey in ipairs(EVIL) do
          L:clear()
          local ok = pcall(call[3], pkey)
          local reqs = sent()
          if pkey == "." or pkey == ".." then
            -- a dot segment would be folded away by the URL: refused
            assert.is_false(ok)
            assert.equal(0, #reqs)
          else
            assert.equal(1, #reqs, ("%q"):format(pkey))
            check_pkey_path(reqs[1], pkey, call[2])
          end
        end
      end)
    end

    it("stays one path segment in bulk ops too", function()
      local ops = {}
      for i, pkey in ipairs(EVIL) do ops[i] = { "get_profile", pkey } end
      local s = c:bulk(ops, { concurrency = 4 })
      assert.equal(#EVIL, s.ops)
      local reqs = sent()
      assert.equal(#EVIL - 2, #reqs)   -- "." and ".." are usage errors
      local want = {}
      for _, pkey in ipairs(EVIL) do
        if pkey ~= "." and pkey ~= ".." then want[pkey] = true end
      end
      for _, q in ipairs(reqs) do
        local _, path = target(q)
        local seg = path:match("^" .. PROFILE:gsub("%p", "%%%0") .. "/([%w%%%-%._~]+)$")
        assert.truthy(seg, path)
        assert.is_true(want[unescape(seg)])
        want[unescape(seg)] = nil
      end
    end)
  end)

  describe("a filter value", function()
    local function check_query(q, route, key, value)
      local m, path, query = target(q)
      assert.equal("GET", m)
      assert.equal(PROFILE .. route, path)
      local got = {}
      for pair in query:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]+)=(.*)$")
        assert.truthy(k, query)
        assert.is_nil(got[k], "twice: " .. k)
        assert.truthy(v:match("^[%w%%%-%._~]*$"), "unescaped byte in " .. v)
        got[k] = unescape(v)
      end
      assert.equal(value, got[key])
      return got
    end

    for _, v in ipairs(EVIL) do
      it(("stays one query value: %q"):format(v), function()
        c:find_profiles { email = v }
        c:find_profiles { text = v }
        c:count_profiles { email = v }
        c:count_profiles { text = v }
        -- the echo is no list: the iterator raises, after its request; an
        -- order it cannot send as given may be refused before any request
        local refused = false
        pcall(function()
          local ok, iter = pcall(c.profiles, c, { order = v, descending = true, email = v })
          refused = not ok
          if ok then iter() end
        end)
        local reqs = sent(refused and 4 or 5)
        local q = check_query(reqs[1], "/byEmail", "email", v)
        assert.same({ email = v, _lineCount = "100", _forcePagination = "true" }, q)
        q = check_query(reqs[2], "/byText", "text", v)
        assert.same({ text = v, _lineCount = "100", _forcePagination = "true" }, q)
        assert.same({ email = v }, check_query(reqs[3], "/byEmail/_count", "email", v))
        assert.same({ text = v }, check_query(reqs[4], "/byText/_count", "text", v))
        if not refused then
          q = check_query(reqs[5], "/byEmail", "email", v)
          assert.equal(v .. " desc", q._order)
        end
      end)
    end
  end)

  describe("field names and values", function()
    it("go into the JSON body only, as given", function()
      local fields = {}
      for i, v in ipairs(EVIL) do
        fields[v] = v
        fields["k" .. i] = v
      end
      c:create_profile(fields)
      c:update_profile("@p", fields)
      local reqs = sent(2)
      local m, path = target(reqs[1])
      assert.same({ "POST", PROFILE }, { m, path })
      m, path = target(reqs[2])
      assert.same({ "PATCH", PROFILE .. "/%40p" }, { m, path })
      for _, q in ipairs(reqs) do
        assert.same(fields, cjson.decode(q.body))
      end
    end)

    it("request() bodies given as strings are sent as they are", function()
      local body = '{"a":"x\\r\\nHost: evil","b":"\\u0000"}'
      c:request("POST", "profileAndServices/profile", body)
      local q = sent(1)[1]
      assert.equal(body, q.body)
    end)
  end)

  describe("request() paths", function()
    it("go where they say, or are refused", function()
      local cases = {
        { "x", "/acme/campaign/x" },
        { "/acme/campaign/y?z=1", "/acme/campaign/y?z=1" },
        { L.url .. "/acme/campaign/w", "/acme/campaign/w" },
        { "x%2e/%0d%0a", "/acme/campaign/x%2e/%0d%0a" },
      }
      for _, case in ipairs(cases) do
        L:clear()
        c:request("GET", case[1])
        local q = sent(1)[1]
        assert.equal("GET " .. case[2] .. " HTTP/1.1", q.line)
      end
      local bad = { "../x", "/acme/../x", "a/./b", "%2e%2e/%0d%0a", "a/.%2E/b",
                    "x y", "x\r\nEvil: 1", "x\0y", "x#y",
                    "é", "\\x", "http://127.0.0.2:" .. L.port .. "/x",
                    "http://localhost:" .. L.port .. "/x",
                    L.url .. "@127.0.0.2/x", L.url .. ".evil/x", "" }
      for _, p in ipairs(bad) do
        L:clear()
        local ok = pcall(c.request, c, "GET", p)
        assert.is_false(ok, ("%q was not refused"):format(p))
        sent(0)
      end
      for _, m in ipairs { "GET /x", "get", "TRACE", "GET\r\n", "CONNECT" } do
        assert.is_false(pcall(c.request, c, m, "x"))
      end
      sent(0)
    end)
  end)

  describe("option values", function()
    local function raises(opts)
      local o = { org = "acme", api_key = "k", access_token = "t", base_url = L.url }
      for k, v in pairs(opts) do o[k] = v end
      local ok, msg = pcall(campaign.new, o)
      if ok then msg:close() end
      return not ok, msg
    end

    it("org, resource and ccpa_optout_field take plain names only", function()
      for _, v in ipairs(EVIL) do
        for _, opt in ipairs { "org", "resource", "ccpa_optout_field" } do
          if not v:match("^[%w_%-][%w_%-%.]*$") then
            local ok, msg = raises { [opt] = v }
            assert.is_true(ok, opt .. (" %q"):format(v))
            assert.truthy(tostring(msg):find("'" .. opt .. "'", 1, true))
          end
        end
      end
    end)

    it("api_key and access_token cannot end a header line", function()
      for _, v in ipairs { "a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b", "\t\r", "" } do
        assert.is_true(raises { api_key = v }, ("%q"):format(v))
        assert.is_true(raises { access_token = v }, ("%q"):format(v))
      end
    end)

    it("odd but printable api_key and token go out as one header each", function()
      for _, v in ipairs { "a b", "k?x=1#f", "%0d%0a", "Zoë", "../..", "a:b" } do
        L:clear()
        local cl = new { api_key = v, access_token = v .. "-t" }
        cl:get_profile("@p")
        cl:close()
        local reqs = L:requests()
        assert.equal(1, #reqs)
        check_request(reqs[1], L, v, v .. "-t")
        assert.equal("GET " .. PROFILE .. "/%40p HTTP/1.1", reqs[1].line)
      end
    end)

    it("base_url with a fragment still reaches the right path", function()
      for _, frag in ipairs { "#x", "/#x" } do
        L:clear()
        local ok, cl = pcall(new, { base_url = L.url .. frag })
        if ok then
          cl:get_profile("@p")
          cl:close()
          local reqs = L:requests()
          assert.equal(1, #reqs)
          assert.equal("GET " .. PROFILE .. "/%40p HTTP/1.1", reqs[1].line,
            "base_url " .. L.url .. frag)
        end
      end
    end)

    it("client credentials and scopes stay form values of the token request", function()
      local secret = "s&scope=evil %00+é="
      local cl = campaign.new { org = "acme", client_id = "id&grant_type=password",
        client_secret = secret, scopes = { "a,b", "c&d=e", "f g" },
        ims_url = L.url, base_url = L.url, retries = 0 }
      cl:get_profile("@p")
      cl:close()
      local reqs = L:requests()
      assert.equal(2, #reqs)
      assert.equal("POST /ims/token/v3 HTTP/1.1", reqs[1].line)
      local form = {}
      for pair in reqs[1].body:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]+)=(.*)$")
        assert.is_nil(form[k], "twice: " .. k)
        form[k] = unescape(v:gsub("%+", " "))
      end
      assert.same({ grant_type = "client_credentials", client_id = "id&grant_type=password",
        client_secret = secret, scope = "a,b,c&d=e,f g" }, form)
      assert.equal("GET " .. PROFILE .. "/%40p HTTP/1.1", reqs[2].line)
    end)
  end)
end)
