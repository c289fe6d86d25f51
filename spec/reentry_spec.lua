-- What user code run in the middle of a call can do to the client, and
-- the misuse an adversarial review found: a finalizer or an err
-- metamethod that closes the client mid-call, a GET with a body, URLs
-- too long for libcurl, a proxy that would read credentials sent in
-- clear, server text with line breaks in an err, names with a NUL, and
-- (a second review) finalizers run by argument checks, the token before
-- a renewal echoed back, dot segments behind encoded slashes.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/reentry_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local campaign = require "campaign"
local sandbox = require "spec.support.sandbox"

local function client(extra)
  return sandbox.client(extra or { retries = 0 })
end

-- Runs f with an eager collector and a hook that, on every try, leaves
-- behind a table whose finalizer tries `act`; returns f's results and
-- what the finalizers saw.
local function with_finalizers(act, f)
  local seen = {}
  collectgarbage("incremental", 10, 1000)
  local ok, a, b = pcall(f, function()
    setmetatable({}, { __gc = function()
      seen[#seen + 1] = { pcall(act) }
    end })
  end)
  collectgarbage("incremental", 200, 100)
  collectgarbage()
  assert(ok, a)
  return a, b, seen
end

describe("user code in the middle of a call", function()
  local pkey

  setup(function()
    sandbox.reset()
    pkey = sandbox.profiles()[1].PKey
  end)
  after_each(function()
    campaign.error_metatable.__index = nil
    campaign.error_metatable.__newindex = nil
    sandbox.reset()
  end)

  it("a finalizer cannot close the client under a call: it raises, the call ends well",
    function()
      local c
      local planted, inside = 0, false
      local hook
      c = client { retries = 0, on_request = function() hook() end }
      -- a finalizer that runs between calls may close the client: only
      -- those that run while a call is under way try to
      local got, _, seen = with_finalizers(function()
          if inside then return c:close() end
          return true
        end,
        function(plant)
          hook = function()
            inside = true
            planted = planted + 1
            plant()
            -- garbage for the collector to find during the decode
            for _ = 1, 50 do local _ = { {}, {} } end
          end
          local n = 0
          for p in c:profiles { page_size = 100 } do
            inside = false
            n = n + 1
            assert.is_string(p.PKey)
          end
          inside = false
          local list = assert(c:find_profiles { text = "a", page_size = 5 })
          inside = false
          return n, list
        end)
      assert.equal(#sandbox.profiles(), got)
      assert.truthy(planted > 0)
      -- finalizers ran during the calls, and each was refused
      local refused = 0
      for _, r in ipairs(seen) do
        if not r[1] then
          assert.matches("cannot close a client while a call on it runs", r[2])
          refused = refused + 1
        end
      end
      assert.truthy(refused > 0, #seen .. " finalizers ran, none in a call")
      assert(c:get_profile(pkey))   -- still usable
      c:close()
    end)

  it("a finalizer run by a call's argument checks cannot close it or start a bulk run",
    function()
      local c = client()
      local inside, refused = false, 0
      local slashes, fields = ("/"):rep(1000), { a = ("x"):rep(3000) }
      local filter = { email = ("+"):rep(5000) }
      collectgarbage("incremental", 0, 1000)
      for _ = 1, 100 do
        for _ = 1, 5 do
          setmetatable({}, { __gc = function()
            if not inside then return end
            if not pcall(c.close, c) then refused = refused + 1 end
            pcall(c.bulk, c, {}, { concurrency = 200 })
          end })
        end
        inside = true   -- nothing allocates here but the calls
        pcall(c.get_profile, c, slashes)
        pcall(c.update_profile, c, "@x", fields)
        pcall(c.find_profiles, c, filter)
        pcall(c.profiles, c, filter)
        inside = false
      end
      collectgarbage("incremental", 200, 100)
      collectgarbage()
      -- whether a finalizer ran inside depends on the collector's pace
      -- (alone, this loop crashed every time before the fix): what must
      -- hold is no crash and a client still usable
      assert.is_number(refused)
      assert.is_true(c:count_profiles() > 0)
      c:close()
    end)

  it("an err metamethod that closes the client mid-call is refused; no crash", function()
    local c = client { retries = 1 }
    local refused = {}
    campaign.error_metatable.__index = function(_, k)
      refused[#refused + 1] = select(2, pcall(c.close, c))
      return nil and k
    end
    campaign.error_metatable.__newindex = function(t, k, v)
      refused[#refused + 1] = select(2, pcall(c.close, c))
      rawset(t, k, v)
    end
    sandbox.faults { status = { code = 503, retry_after = "0", count = 1 } }
    assert(c:get_profile(pkey))   -- the 503, then the retry
    sandbox.faults { status = { code = 500, message = "boom", count = 1 } }
    local r, err = c:get_profile(pkey)
    assert.is_nil(r)
    assert.equal(500, rawget(err, "status"))
    assert.truthy(#refused > 0)
    for _, m in ipairs(refused) do
      assert.matches("cannot close a client while a call on it runs", m)
    end
    campaign.error_metatable.__index = nil
    campaign.error_metatable.__newindex = nil
    assert(c:get_profile(pkey))
    c:close()
  end)
end)

describe("misuse the review found", function()
  setup(sandbox.reset)
  after_each(sandbox.reset)

  it("a GET with a body raises, and sends nothing", function()
    local c = client()
    local before = sandbox.count("POST profile")
    for _, body in ipairs { {}, '{"x":1}', { email = "a@example.org" } } do
      local ok, e = pcall(c.request, c, "GET",
        "profileAndServices/profile?_lineCount=1", body)
      assert.is_false(ok)
      assert.matches("bad argument #3 to 'request' %(a GET sends no body%)", e)
    end
    assert.equal(before, sandbox.count("POST profile"))
    assert(c:request("GET", "profileAndServices/profile?_lineCount=1"))
    c:close()
  end)

  it("a URL too long raises naming the argument and leaves the client usable",
    function()
      local c = client()
      local big = string.rep("@", 3 * 1024 * 1024)
      local ok, e = pcall(c.find_profiles, c, { email = big })
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'find_profiles' %(makes a URL of %d+ bytes", e)
      ok, e = pcall(c.request, c, "GET", string.rep("a", 9 * 1024 * 1024))
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'request' %(longer than 65536 bytes%)", e)
      ok, e = pcall(c.request, c, "GET", "profileAndServices/profile?x=" ..
        string.rep("a", 70000))
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'request'", e)
      -- the same op in a bulk run is a failure of that op
      local errs = {}
      local s = c:bulk({ { "find_profiles", { email = big } }, { "count_profiles" } },
        { on_result = function(i, _, _, err) errs[i] = err end })
      assert.same({ 1, 1 }, { s.ok, s.failed })
      assert.equal("usage", errs[1].kind)
      assert.is_true(c:count_profiles() > 0)
      c:close()   -- does not raise: nothing is left running
    end)

  it("a next href too long is a protocol err, not a raise", function()
    local href = "/acme/campaign/profileAndServices/profile?_lineCount=1&x=" ..
      string.rep("a", 70000)
    local body = ('{"content":[{"PKey":"@a"}],"next":{"href":"%s"}}'):format(href)
    local url, wait = sandbox.canned { { body = body } }
    local c = campaign.new { org = "acme", api_key = "k", access_token = "t",
                             base_url = url, retries = 0, timeout = 5 }
    local r, err = c:find_profiles { text = "a", page_size = 1 }
    wait()
    assert.is_nil(r)
    assert.equal("protocol", err.kind)
    assert.matches("over 65536 bytes", err.message)
    c:close()
  end)

  it("with a plain http:// base_url or ims_url, only a loopback proxy", function()
    local o = sandbox.options { proxy = "http://192.0.2.1:3128" }
    local ok, e = pcall(campaign.new, o)
    assert.is_false(ok)
    assert.matches("bad option 'proxy' to 'campaign.new' %(with a plain http://", e)
    for _, p in ipairs { "192.0.2.1:3128", "socks5://proxy.example:1080",
                         "http://127.0.0.1.example:8080" } do
      assert.is_false(pcall(campaign.new, sandbox.options { proxy = p }), p)
    end
    ok, e = pcall(campaign.new, { org = "acme", client_id = "id", client_secret = "s",
      base_url = "https://campaign.example", ims_url = sandbox.base_url,
      proxy = "http://192.0.2.1:3128" })
    assert.is_false(ok)
    assert.matches("ims_url", e)
    for _, p in ipairs { "http://127.0.0.1:3128", "localhost:3128", "http://[::1]:3128" } do
      campaign.new(sandbox.options { proxy = p }):close()
    end
    -- https: what crosses the proxy is a tunnel it cannot read
    campaign.new { org = "acme", api_key = "k", access_token = "t",
                   base_url = "https://campaign.example",
                   proxy = "http://192.0.2.1:3128" }:close()
  end)

  it("a server's code and token refusal come back printable, on one line", function()
    local c = client()
    sandbox.faults { status = { code = 400, error_code = "line1\r\nline2\27[31m",
                                count = 1 } }
    local _, err = c:get_profile("@x")
    assert.equal("line1  line2 [31m", err.code)
    assert.is_nil(tostring(err):find("[%c]"))
    c:close()

    local url, wait = sandbox.canned { { status = 403,
      body = '{"error":"bad\\r\\nclient","error_description":"line1\\r\\nline2\\u001b[31mred"}' } }
    c = campaign.new { org = "acme", client_id = "id-1", client_secret = "secret-1",
                       base_url = url, ims_url = url, retries = 0, timeout = 5 }
    local r
    r, err = c:get_profile("@x")
    wait()
    assert.is_nil(r)
    assert.equal("auth", err.kind)
    assert.equal("bad  client", err.code)
    assert.equal("line1  line2 [31mred", err.message)
    assert.is_nil(tostring(err):find("[%c]"))
    c:close()
  end)

  it("refuses encoded dot segments in a request path", function()
    local c = client()
    for _, p in ipairs { "x/%2e%2e/profileAndServices/profile", "x/%2E./y",
                         "%2e/y", "a/.%2E", "a/%2e%2E?q=1", "a/%2e%2e%2fx",
                         "a/..%2fx", "a/..%2Fx", "a/..;/..;/x", "a%2f..%2fb",
                         "a/..%5cb", "a%5C.." } do
      local ok, e = pcall(c.request, c, "GET", p)
      assert.is_false(ok, p)
      assert.matches("dot segments", e)
    end
    -- three dots, or a dot in a name, are names like any other
    assert.is_nil((c:request("GET", "profileAndServices/profile/%2e%2e%2e")))
    c:close()
  end)

  it("the profiles iterator refuses a URL too long at once", function()
    local c = client()
    for _, f in ipairs { { email = ("x"):rep(70000) }, { order = ("x"):rep(70000) } } do
      local ok, e = pcall(c.profiles, c, f)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'profiles' %(makes a URL of %d+ bytes", e)
    end
    assert.equal(0, sandbox.count("GET profile"))
    c:close()
  end)

  it("scrubs the token before a renewal too: it is live until it expires", function()
    local old_token, new_token = "tok-one-0123456789abcdef", "tok-two-0123456789abcdef"
    local url, wait = sandbox.canned {
      { body = ('{"access_token":"%s","expires_in":3600}'):format(old_token) },
      { status = 401, body = '{"error_code":"401013","message":"Oauth token is not valid"}' },
      { body = ('{"access_token":"%s","expires_in":3600}'):format(new_token) },
      { status = 500, body = ('{"message":"rejected header: Bearer %s"}'):format(old_token) },
    }
    local c = campaign.new { org = "acme", client_id = "id-1", client_secret = "secret-1",
                             base_url = url, ims_url = url, retries = 0, timeout = 5 }
    local r, err = c:get_profile("@x")
    wait()
    assert.is_nil(r)
    assert.equal(500, err.status)
    assert.equal("rejected header: Bearer ***", err.message)
    c:close()
  end)

  it("a token with a control character is no usable token", function()
    local url, wait = sandbox.canned {
      { body = '{"access_token":"abc\\u000b\\u001b[31mdef","expires_in":3600}' } }
    local c = campaign.new { org = "acme", client_id = "id-1", client_secret = "secret-1",
                             base_url = url, ims_url = url, retries = 0, timeout = 5 }
    local r, err = c:get_profile("@x")
    wait()
    assert.is_nil(r)
    assert.equal("BAD_TOKEN_ANSWER", err.code)
    c:close()
  end)

  it("C1 controls and line separators in a server's message become spaces", function()
    local c = client()
    sandbox.faults { status = { code = 500, count = 1,
                                message = "a\u{9b}31mb\u{85}c\u{2028}d\u{2029}e\u{a0}f" } }
    local _, err = c:get_profile("@x")
    assert.equal("a 31mb c d e\u{a0}f", err.message)
    c:close()
  end)

  it("names with a NUL, and numbers for names, are refused", function()
    local o = sandbox.options()
    o["org\0x"] = "acme"
    assert.has_error(function() campaign.new(o) end)
    local c = client()
    assert.has_error(function() c:find_profiles { ["email\0junk"] = "a@b" } end)
    assert.has_error(function() c:request("GET\0x", "profileAndServices/profile") end)
    assert.has_error(function() campaign.new(sandbox.options { scopes = { 1, 2 } }) end)
    assert.has_error(function() campaign.new(sandbox.options { scopes = "a\r\nb" }) end)
    local errs = {}
    local s = c:bulk({ { "get_profile\0x", "@a" }, { 1 }, { "count_profiles" } },
      { on_result = function(i, _, _, err) errs[i] = err end })
    assert.same({ 1, 2 }, { s.ok, s.failed })
    assert.matches("method name", errs[1].message)
    assert.matches("method name", errs[2].message)
    assert.has_error(function() c:bulk({}, { ["concurrency\0x"] = 3 }) end,
      "bad option 'concurrency' to 'bulk' (unknown option)")
    assert.has_error(function()
      c:bulk({ { "count_profiles" } }, { ["on_result\0x"] = print })
    end, "bad option 'on_result' to 'bulk' (unknown option)")
    c:close()
  end)

  it("page_size infinity, descending without order, a long client_id raise", function()
    local c = client()
    local ok, e = pcall(c.find_profiles, c, { page_size = math.huge })
    assert.is_false(ok)
    assert.matches("'page_size' must be 1 to 1000", e)
    ok, e = pcall(c.profiles, c, { descending = true })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'profiles' %('descending' needs an 'order'%)", e)
    local first = c:profiles { order = "email", descending = true, page_size = 2 }()
    assert.is_string(first.email)
    c:close()
    ok, e = pcall(campaign.new, { org = "acme", client_id = string.rep("i", 1025),
      client_secret = "s", base_url = sandbox.base_url, ims_url = sandbox.base_url })
    assert.is_false(ok)
    assert.matches("bad option 'client_id'.*longer than 1024 bytes", e)
  end)
end)
