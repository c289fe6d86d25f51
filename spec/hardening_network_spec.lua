-- Hardening: bad networks and bad answers.  What the sandbox can fake is
-- asked of it (/_sandbox/faults); the rest comes from a listener of the
-- specs' own (spec/support/listener.lua) that writes raw HTTP answers.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/hardening_network_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;" .. package.path

local campaign = require "campaign"
local peers = require "peers"

local now = peers.now

-- Every err has the documented fields and a one-line tostring.
local function check_err(err, kind, code)
  assert.is_table(err)
  assert.equal(kind, err.kind, tostring(err))
  if code then assert.equal(code, err.code, tostring(err)) end
  assert.is_boolean(err.retryable)
  assert.is_string(err.message)
  assert.is_true(#err.message <= 403)
  local line = tostring(err)
  assert.is_nil(line:find("[\r\n]"))
  assert.truthy(line:match("^campaign: " .. kind))
end

describe("hardening against a listener of the specs' own", function()
  local L

  local function client(extra)
    local o = { org = "acme", api_key = "k-listener", access_token = "t-listener",
                base_url = L.url, retries = 0, timeout = 5,
                connect_timeout = 2, max_body = 100000 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return campaign.new(o)
  end

  local function get(name, extra)
    local c = client(extra)
    local r, err = c:get_profile(name)
    c:close()
    return r, err
  end

  setup(function() L = peers.listener() end)
  teardown(function() L:stop() end)
  before_each(function() L:clear() end)

  it("reads a plain answer (the listener works)", function()
    local p = assert(get("s-json"))
    assert.equal("@listener-1", p.PKey)
    assert.equal(42, p.age)
    assert.is_true(math.type(p.age) == "integer")
  end)

  describe("connections", function()
    it("connection refused: network COULDNT_CONNECT, retryable", function()
      local c = campaign.new { org = "acme", api_key = "k", access_token = "t",
        base_url = "http://127.0.0.1:" .. peers.free_port(), retries = 0 }
      local t0 = now()
      local r, err = c:get_profile("@x")
      assert.is_nil(r)
      check_err(err, "network", "COULDNT_CONNECT")
      assert.is_true(err.retryable)
      assert.is_nil(err.status)
      assert.is_true(now() - t0 < 2)
    end)

    it("connection refused is retried `retries` times, then reported", function()
      local tries = 0
      local c = campaign.new { org = "acme", api_key = "k", access_token = "t",
        base_url = "http://localhost:" .. peers.free_port(), retries = 2,
        max_retry_wait = 0.05, on_request = function() tries = tries + 1 end }
      local _, err = c:get_profile("@x")
      check_err(err, "network", "COULDNT_CONNECT")
      assert.equal(3, tries)
    end)

    it("a connect timeout ends at connect_timeout", function()
      local N = peers.listener("noaccept")
      local c = campaign.new { org = "acme", api_key = "k", access_token = "t",
        base_url = N.url, retries = 0, connect_timeout = 1, timeout = 20 }
      local t0 = now()
      local r, err = c:get_profile("@x")
      local took = now() - t0
      N:stop()
      if r == nil and err.code == "COULDNT_CONNECT" then
        -- the kernel answered the SYN after all: nothing to measure here
        pending("this kernel accepts past a full backlog")
        return
      end
      assert.is_nil(r)
      check_err(err, "network", "OPERATION_TIMEDOUT")
      assert.is_true(err.retryable)
      assert.is_true(took >= 0.9 and took < 5, "took " .. took)
    end)

    it("a total timeout ends a slow answer", function()
      local t0 = now()
      local r, err = get("s-slow", { timeout = 0.5 })
      local took = now() - t0
      assert.is_nil(r)
      check_err(err, "network", "OPERATION_TIMEDOUT")
      assert.is_true(err.retryable)
      assert.is_true(took < 1.8, "took " .. took)
    end)

    -- The listener goes silent for 9 s; the low-speed limit must end the
    -- call before the listener closes (how soon: see the sandbox's trickle
    -- spec below).
    it("a body that stalls halfway is ended by the low-speed limit", function()
      local t0 = now()
      local r, err = get("s-stall", { stall_timeout = 1, timeout = 30 })
      local took = now() - t0
      assert.is_nil(r)
      check_err(err, "network", "OPERATION_TIMEDOUT")
      assert.is_true(err.retryable)
      assert.is_true(took < 8.5, "took " .. took)
    end)

    it("a slow but steady body is not a stall", function()
      local p = assert(get("s-trickle", { stall_timeout = 1 }))
      assert.equal("@listener-1", p.PKey)
    end)

    it("the server closing mid-body: network PARTIAL_FILE, retryable", function()
      local r, err = get("s-close-mid")
      assert.is_nil(r)
      check_err(err, "network", "PARTIAL_FILE")
      assert.is_true(err.retryable)
    end)

    it("a GET cut mid-body is tried again, `retries` times", function()
      local _, err = get("s-close-mid", { retries = 2, max_retry_wait = 0.05 })
      check_err(err, "network", "PARTIAL_FILE")
      assert.equal(3, #L:requests())
    end)

    it("a POST cut after it was sent is not repeated", function()
      local c = client { retries = 2, max_retry_wait = 0.05 }
      local r, err = c:request("POST", "/acme/campaign/x/s-close-mid", { a = 1 })
      c:close()
      assert.is_nil(r)
      check_err(err, "network", "PARTIAL_FILE")
      assert.equal(1, #L:requests())
    end)

    it("a connection closed without an answer: network GOT_NOTHING", function()
      local _, err = get("s-drop")
      check_err(err, "network", "GOT_NOTHING")
      assert.is_true(err.retryable)
    end)

    it("a connection closed inside the headers is an err, not a crash", function()
      local r, err = get("s-half-head")
      assert.is_nil(r)
      assert.is_table(err)
      assert.truthy(err.kind == "network" or err.kind == "protocol")
    end)

    it("an answer that is not HTTP is an err, not a crash", function()
      local r, err = get("s-not-http")
      assert.is_nil(r)
      assert.is_table(err)
      assert.truthy(err.kind == "network" or err.kind == "protocol", tostring(err))
      assert.is_false(err.retryable)
    end)
  end)

  describe("sizes", function()
    it("a body over max_body, announced by Content-Length, is refused", function()
      local t0 = now()
      local r, err = get("s-big-length")
      assert.is_nil(r)
      check_err(err, "protocol", "FILESIZE_EXCEEDED")
      assert.is_false(err.retryable)
      assert.is_true(now() - t0 < 3)
    end)

    it("a chunked body over max_body is refused", function()
      local r, err = get("s-big-chunked")
      assert.is_nil(r)
      check_err(err, "protocol", "FILESIZE_EXCEEDED")
      assert.is_false(err.retryable)
    end)

    it("the same bodies pass with a larger max_body", function()
      local c = client { max_body = 4 * 1024 * 1024 }
      local r, err = c:request("GET", "/x/s-big-chunked")
      c:close()
      assert.is_table(r, err and tostring(err))
      assert.equal(63 * 16 * 1024, #r.pad)
    end)

    it("a gzip body that inflates past max_body is refused", function()
      local r, err = get("s-gzip-bomb")
      assert.is_nil(r)
      check_err(err, "protocol", "FILESIZE_EXCEEDED")
    end)
  end)

  describe("bodies", function()
    it("a 200 that is not JSON: protocol BAD_JSON", function()
      local r, err = get("s-not-json")
      assert.is_nil(r)
      check_err(err, "protocol", "BAD_JSON")
      assert.equal(200, err.status)
      assert.is_false(err.retryable)
    end)

    for _, name in ipairs { "s-deep-array", "s-deep-object" } do
      it("JSON nested 10,000 deep is an err, not a crash (" .. name .. ")", function()
        local c = client()
        local r, err = c:request("GET", "/x/" .. name)
        assert.is_nil(r)
        check_err(err, "protocol", "BAD_JSON")
        r, err = c:get_profile(name)
        assert.is_nil(r)
        check_err(err, "protocol", "BAD_JSON")
        c:close()
      end)
    end

    it("a request body nested 10,000 deep, or cyclic, raises before sending", function()
      local deep = {}
      local t = deep
      for _ = 1, 10000 do t.a = {} t = t.a end
      local cyclic = { x = 1 }
      cyclic.self = cyclic
      local c = client()
      for _, body in ipairs { deep, cyclic } do
        local ok, msg = pcall(c.create_profile, c, body)
        assert.is_false(ok)
        assert.truthy(tostring(msg):find("bad argument #1 to 'create_profile'", 1, true), msg)
        ok = pcall(c.request, c, "POST", "x", body)
        assert.is_false(ok)
      end
      assert.is_table(c:get_profile("s-json"))   -- the client is still usable
      c:close()
      assert.equal(1, #L:requests())
    end)

    -- In a Lua of its own: a crash must not take the spec run with it.
    it("an err with a 5,000-byte code from the server: tostring works", function()
      local script = ([[
        package.cpath = "build/lua5.4/?.so;" .. package.cpath
        local c = require("campaign").new { org = "acme", api_key = "k",
          access_token = "t", base_url = %q, retries = 0 }
        local _, err = c:get_profile("s-long-code")
        local s = tostring(err)
        io.write(err.kind, " ", err.status, " ", #s, " ", s:find("\n") and "lines" or "line")
      ]]):format(L.url)
      local p = io.popen(peers.LUA .. " -e " .. peers.quote(script) .. " 2>&1; echo \" rc=$?\"")
      local out = p:read("a")
      p:close()
      local kind, status, _, lines, rc = out:match("^(%a+) (%d+) (%d+) (%a+) rc=(%d+)")
      assert.same({ "http", "429", "line", "0" }, { kind, status, lines, rc }, out)
    end)

    it("an error answer nested 10,000 deep is still an http err", function()
      local _, err = get("s-deep-error")
      check_err(err, "http")
      assert.equal(500, err.status)
    end)

    it("invalid UTF-8 in a 200 is a result or a protocol err, never a crash", function()
      local r, err = get("s-bad-utf8")
      if r then
        assert.equal("@u", r.PKey)
        assert.equal("\xff\xfe\xc3(", r.lastName)
      else
        check_err(err, "protocol")
      end
    end)

    it("invalid UTF-8 and control bytes in an error message are made printable",
      function()
        local _, err = get("s-bad-utf8-error")
        check_err(err, "http", "RST-360011")
        assert.equal(404, err.status)
        assert.is_nil(err.message:find("[%z\1-\31\127]"))
      end)

    it("an empty 200: true for request and delete, EMPTY_BODY for a profile",
      function()
        local c = client()
        assert.is_true(c:request("GET", "/x/s-empty200"))
        local r, err = c:get_profile("s-empty200")
        assert.is_nil(r)
        check_err(err, "protocol", "EMPTY_BODY")
        assert.is_true(c:delete_profile("s-empty200"))
        r, err = c:count_profiles { email = "s-empty200" }
        assert.is_nil(r)
        check_err(err, "protocol")
        c:close()
      end)

    it("a 204: true for request, delete and set_ccpa_optout", function()
      local c = client()
      assert.is_true(c:request("DELETE", "/x/s-204"))
      assert.is_true(c:delete_profile("s-204"))
      assert.is_true(c:set_ccpa_optout("s-204", true))
      local r, err = c:get_profile("s-204")
      assert.is_nil(r)
      check_err(err, "protocol", "EMPTY_BODY")
      c:close()
    end)

    it("a 3xx is not followed: http err with its status", function()
      local r, err = get("s-302")
      assert.is_nil(r)
      check_err(err, "http")
      assert.equal(302, err.status)
      assert.is_false(err.retryable)
      local reqs = L:requests()
      assert.equal(1, #reqs)
    end)

    it("a redirect to another host is not followed either", function()
      local _, err = get("s-307-away")
      check_err(err, "http")
      assert.equal(307, err.status)
      assert.equal(1, #L:requests())
    end)

    it("chunked transfer", function()
      local p = assert(get("s-chunked"))
      assert.equal("@listener-1", p.PKey)
      assert.is_true(p.ccpaOptOut)
    end)

    it("HTTP/1.0 without keep-alive, body ended by close", function()
      local c = client()
      for _ = 1, 3 do
        local p = assert(c:get_profile("s-http10"))
        assert.equal("zoe@example.com", p.email)
      end
      c:close()
    end)

    it("an interim 100 answer before the real one", function()
      local p = assert(get("s-interim"))
      assert.equal("@listener-1", p.PKey)
    end)

    it("asks for compression and reads a gzip body", function()
      local p = assert(get("s-gzip"))
      assert.equal("@listener-1", p.PKey)
      local h = table.concat(L:requests()[1].headers, "\n"):lower()
      assert.truthy(h:find("accept%-encoding:[^\n]*gzip"))
    end)

    it("a body that claims gzip but is not: protocol BAD_CONTENT_ENCODING", function()
      local r, err = get("s-bad-gzip")
      assert.is_nil(r)
      check_err(err, "protocol", "BAD_CONTENT_ENCODING")
    end)

    it("a Retry-After date in the past does not pause the client", function()
      local t0 = now()
      local _, err = get("s-429-date", { retries = 1, max_retry_wait = 5 })
      check_err(err, "http", "429050")
      assert.equal(0, err.retry_after)
      assert.is_true(now() - t0 < 3)
    end)

    it("a next href on another host is not followed (the token stays home)",
      function()
        local c = client()
        local r, err = c:find_profiles { email = "s-list-offhost" }
        assert.is_nil(r)
        check_err(err, "protocol", "UNEXPECTED_ANSWER")
        r, err = c:find_profiles { text = "s-list-dots" }
        assert.is_nil(r)
        check_err(err, "protocol", "UNEXPECTED_ANSWER")
        c:close()
        for _, q in ipairs(L:requests()) do
          assert.truthy(q.line:match("^GET /acme/campaign/profileAndServices/profile/by"),
            q.line)
        end
      end)
  end)
end)

describe("hardening against the sandbox's faults", function()
  local campaign_client = function(extra)
    return peers.sandbox_client(campaign, extra)
  end
  local pkey

  setup(function()
    assert(peers.BASE, "run under sh spec/sandbox/with-sandbox.sh")
    peers.reset()
    pkey = peers.first_pkey()
  end)
  before_each(peers.reset)
  teardown(peers.reset)

  it("a truncated body: network PARTIAL_FILE, then a retry succeeds", function()
    peers.faults { truncate = { count = 1, route = "profile/pkey" } }
    local c = campaign_client()
    local r, err = c:get_profile(pkey)
    assert.is_nil(r)
    check_err(err, "network", "PARTIAL_FILE")
    peers.faults { truncate = { count = 1, route = "profile/pkey" } }
    c:close()
    c = campaign_client { retries = 1, max_retry_wait = 0.05 }
    assert.equal(pkey, assert(c:get_profile(pkey)).PKey)
    c:close()
  end)

  it("a dropped connection is retried", function()
    peers.faults { drop = { count = 2 } }
    local c = campaign_client { retries = 2, max_retry_wait = 0.05 }
    assert.equal(pkey, assert(c:get_profile(pkey)).PKey)
    c:close()
  end)

  it("garbage: protocol BAD_JSON, not retried", function()
    peers.faults { garbage = { count = 1 } }
    local c = campaign_client { retries = 2 }
    local _, err = c:get_profile(pkey)
    check_err(err, "protocol", "BAD_JSON")
    assert.equal(1, peers.count("GET profile/pkey"))
    c:close()
  end)

  -- README: stall_timeout is "seconds an answer may stall (under 1
  -- byte/s) before the call ends".  Half the body comes in well under a
  -- second here, then nothing for 20 s.
  it("a trickle that stalls halfway ends about stall_timeout later", function()
    peers.faults { trickle = { count = 1, bytes_per_sec = 4000, stall_ms = 20000 } }
    local c = campaign_client { stall_timeout = 1, timeout = 30 }
    local t0 = now()
    local r, err = c:get_profile(pkey)
    local took = now() - t0
    assert.is_nil(r)
    check_err(err, "network", "OPERATION_TIMEDOUT")
    c:close()
    assert.is_true(took < 3, ("a 1 s stall_timeout ended the call after %.1f s"):format(took))
  end)

  it("latency past the timeout ends the call", function()
    peers.faults { latency_ms = { ms = 1500, count = 1 } }
    local c = campaign_client { timeout = 0.4 }
    local t0 = now()
    local _, err = c:get_profile(pkey)
    check_err(err, "network", "OPERATION_TIMEDOUT")
    assert.is_true(now() - t0 < 1.4)
    c:close()
  end)

  it("503s are retried; what is left is an http err, retryable", function()
    peers.faults { status = { code = 503, count = 5 } }
    local c = campaign_client { retries = 2, max_retry_wait = 0.05 }
    local _, err = c:get_profile(pkey)
    check_err(err, "http")
    assert.equal(503, err.status)
    assert.is_true(err.retryable)
    assert.equal(3, peers.count("GET profile/pkey"))
    c:close()
  end)

  it("a 429 with a quota code is not retried", function()
    peers.faults { status = { code = 429, count = 3, error_code = 429001 } }
    local c = campaign_client { retries = 2 }
    local _, err = c:get_profile(pkey)
    check_err(err, "http", "429001")
    assert.is_false(err.retryable)
    assert.equal(1, peers.count("GET profile/pkey"))
    c:close()
  end)

  it("many clients in one state, under faults, all finish", function()
    peers.faults { status = { code = 503, probability = 0.2 },
                   drop = { probability = 0.05 } }
    local clients = {}
    for i = 1, 6 do
      clients[i] = campaign_client { retries = 6, max_retry_wait = 0.02 }
    end
    for round = 1, 5 do
      for i, c in ipairs(clients) do
        local p, err = c:get_profile(pkey)
        assert.is_table(p, ("client %d round %d: %s"):format(i, round, tostring(err)))
      end
    end
    for _, c in ipairs(clients) do c:close() end
  end)

  it("clients in coroutines, interleaved", function()
    local cos = {}
    for i = 1, 4 do
      cos[i] = coroutine.wrap(function()
        local c = campaign_client()
        for _ = 1, 3 do
          local n = assert(c:count_profiles())
          coroutine.yield(n)
          assert.equal(pkey, assert(c:get_profile(pkey)).PKey)
        end
        c:close()
        return "done"
      end)
    end
    local finished = 0
    while finished < #cos do
      finished = 0
      for _, co in ipairs(cos) do
        if co() == "done" then finished = finished + 1 end
      end
    end
  end)

  it("a client's bulk in a coroutine, its hook yielding nothing", function()
    local co = coroutine.create(function()
      local c = campaign_client()
      local s = c:bulk({ { "get_profile", pkey }, { "count_profiles" } },
                       { concurrency = 2 })
      c:close()
      return s
    end)
    local ok, s = coroutine.resume(co)
    assert.is_true(ok, s)
    assert.equal(2, s.ok)
  end)
end)
