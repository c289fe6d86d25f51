-- Every kind of `err` and every field, from real sandbox answers and
-- faults, and the defensive reading of answers the sandbox cannot give
-- (from a canned server on 127.0.0.1).
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/errors_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local sandbox = require "spec.support.sandbox"
local campaign = require "campaign"
local socket = require "socket"

local FIELDS = { kind = true, status = true, code = true, message = true,
                 retryable = true, retry_after = true }
-- In `want`, a field that must be absent.
local ABSENT = setmetatable({}, { __tostring = function() return "absent" end })
local KINDS = { http = true, network = true, protocol = true, auth = true, usage = true }

-- Checks what every err must be, then the fields given in `want` (a
-- field set to ABSENT must be absent).  `want` comes first, so
-- that a call's two results can follow it.  Returns err.
local function check_err(want, v, err)
  assert.is_nil(v, "a result where an err was expected")
  assert.is_table(err)
  for k in pairs(err) do assert.is_true(FIELDS[k], "undocumented field " .. tostring(k)) end
  assert.is_true(KINDS[err.kind], "kind " .. tostring(err.kind))
  assert.is_string(err.message)
  assert.is_boolean(err.retryable)
  if err.status ~= nil then assert.are.equal("integer", math.type(err.status)) end
  if err.code ~= nil then assert.is_string(err.code) end
  if err.retry_after ~= nil then assert.is_number(err.retry_after) end
  -- printable, at most 400 bytes of the server's (and a "..." mark)
  assert.is_falsy(err.message:find("%c"), "control character in message")
  assert.is_true(#err.message <= 403, "message of " .. #err.message .. " bytes")
  -- one line
  local line = tostring(err)
  assert.is_string(line)
  assert.is_falsy(line:find("\n", 1, true))
  assert.are.equal("campaign: " .. err.kind, line:sub(1, #("campaign: " .. err.kind)))
  for k, w in pairs(want or {}) do
    if w == ABSENT then
      assert.is_nil(err[k], "field " .. k .. " should be absent")
    else
      assert.are.same(w, err[k], "field " .. k)
    end
  end
  return err
end

local function first_pkey()
  local status, text = sandbox.http("GET", "/_sandbox/profiles")
  assert(status == 200)
  return sandbox.json.decode(text:match("^[^\n]+")).PKey
end

describe("err", function()
  local client, pkey

  setup(function()
    sandbox.reset()
    pkey = first_pkey()
  end)

  before_each(function()
    sandbox.reset()
    client = sandbox.client{ retries = 0 }
  end)

  after_each(function()
    client:close()
    sandbox.clear_faults()
  end)

  describe("from Campaign", function()
    it("404 RST-360011 for a profile that does not exist", function()
      local err = check_err({ kind = "http", status = 404, code = "RST-360011",
                              retryable = false, retry_after = ABSENT },
        client:get_profile("@no-such-profile"))
      assert.is_truthy(err.message:find("@no-such-profile", 1, true))
      assert.are.equal("campaign: http 404 RST-360011: " .. err.message, tostring(err))
    end)

    it("500 XTK-170036 for a malformed PKey", function()
      check_err({ kind = "http", status = 500, code = "XTK-170036", retryable = false },
        client:get_profile("not a pkey"))
    end)

    it("500 naming an unknown or read-only field or a bad enum, with Campaign's id",
      function()
        local err = check_err({ kind = "http", status = 500, retryable = false },
          client:update_profile(pkey, { noSuchField = "x" }))
        assert.matches("^%u+%-%d+$", err.code)
        assert.is_truthy(err.message:find("noSuchField", 1, true))
        assert.are.equal(err.message:match("^(%u+%-%d+)"), err.code)
        err = check_err({ kind = "http", status = 500 },
          client:update_profile(pkey, { PKey = "@other" }))
        assert.are.equal(err.message:match("^(%u+%-%d+)"), err.code)
        err = check_err({ kind = "http", status = 500 },
          client:update_profile(pkey, { gender = "sometimes" }))
        assert.are.equal(err.message:match("^(%u+%-%d+)"), err.code)
        assert.is_truthy(err.message:find("gender", 1, true))
      end)

    it("400 for a body that is not a JSON object, without a code", function()
      check_err({ kind = "http", status = 400, code = ABSENT, retryable = false },
        client:request("POST", "profileAndServices/profile", "[1, 2]"))
    end)

    it("404 for an unknown path", function()
      check_err({ kind = "http", status = 404, code = "RST-360011", retryable = false },
        client:request("GET", "noSuchResource/thing"))
    end)
  end)

  describe("from the gateway", function()
    it("403003 for a wrong API key, never echoing it", function()
      local c = sandbox.client{ api_key = "wrong-key-123", retries = 0 }
      local err = check_err({ kind = "http", status = 403, code = "403003", retryable = false },
        c:get_profile(pkey))
      c:close()
      assert.is_falsy(tostring(err):find("wrong-key-123", 1, true))
    end)

    it("403010 without a token", function()
      local c = campaign.new{ org = sandbox.org, api_key = sandbox.api_key,
                              base_url = sandbox.base_url, retries = 0 }
      check_err({ kind = "http", status = 403, code = "403010", retryable = false },
        c:get_profile(pkey))
      c:close()
    end)

    it("401013 for a wrong token", function()
      local c = sandbox.client{ access_token = "expired-or-wrong", retries = 2 }
      check_err({ kind = "http", status = 401, code = "401013", retryable = false },
        c:get_profile(pkey))
      c:close()
      -- a fixed token is never renewed, and a 401 is not retried
      assert.are.equal(1, sandbox.counters().total)
    end)

    it("403000 as the gateway words it", function()
      sandbox.faults{ status = { code = 403, error_code = 403000, count = 1,
                                 message = "Api Key is required" } }
      check_err({ kind = "http", status = 403, code = "403000", message = "Api Key is required",
                  retryable = false },
        client:get_profile(pkey))
    end)

    it("500 \"Oops\" for a wrong organization, without a code", function()
      local c = sandbox.client{ org = "not-our-org", retries = 2 }
      local err = check_err({ kind = "http", status = 500, code = ABSENT, retryable = false },
        c:get_profile(pkey))
      c:close()
      assert.matches("^Oops", err.message)
      assert.are.equal(1, sandbox.counters().total)
    end)
  end)

  describe("429", function()
    it("with Retry-After: retryable, retry_after in seconds", function()
      sandbox.faults{ status = { code = 429, count = 1, retry_after = "1" } }
      check_err({ kind = "http", status = 429, code = "429050", retryable = true, retry_after = 1 },
        client:get_profile(pkey))
    end)

    it("with Retry-After as an HTTP date", function()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 5)
      sandbox.faults{ status = { code = 429, count = 1, error_code = 429003,
                                 retry_after = date } }
      local err = check_err({ kind = "http", status = 429, code = "429003", retryable = true },
        client:get_profile(pkey))
      assert.is_true(err.retry_after >= 3 and err.retry_after <= 6,
        "retry_after " .. tostring(err.retry_after))
    end)

    it("429050 without Retry-After: retryable", function()
      sandbox.faults{ status = { code = 429, count = 1 } }
      check_err({ kind = "http", status = 429, code = "429050", retryable = true,
                  retry_after = ABSENT },
        client:get_profile(pkey))
    end)

    it("another 429 without Retry-After: not retryable", function()
      sandbox.faults{ status = { code = 429, count = 1, error_code = 429003 } }
      check_err({ kind = "http", status = 429, code = "429003", retryable = false,
                  retry_after = ABSENT },
        client:get_profile(pkey))
    end)

    it("the quota codes 429001 and 429002: never retryable, even with Retry-After",
      function()
        sandbox.faults{ status = { code = 429, count = 1, error_code = 429001 } }
        check_err({ kind = "http", status = 429, code = "429001", retryable = false },
          client:get_profile(pkey))
        sandbox.faults{ status = { code = 429, count = 1, error_code = 429002,
                                   retry_after = "1" } }
        check_err({ kind = "http", status = 429, code = "429002", retryable = false,
                    retry_after = 1 },
          client:get_profile(pkey))
        -- and so never tried again, whatever `retries` says
        local c = sandbox.client{ retries = 2 }
        sandbox.clear_counters()
        sandbox.faults{ status = { code = 429, error_code = 429001 } }
        check_err({ code = "429001" },
          c:get_profile(pkey))
        c:close()
        assert.are.equal(1, sandbox.counters().total)
      end)
  end)

  describe("502, 503, 504", function()
    for _, code in ipairs({ 502, 503, 504 }) do
      it(code .. ": retryable, the server's message, no code", function()
        sandbox.faults{ status = { code = code, count = 1, message = "upstream said no" } }
        check_err({ kind = "http", status = code, code = ABSENT, retryable = true,
                    message = "upstream said no" },
          client:get_profile(pkey))
      end)
    end

    it("are tried `retries` more times, then given up", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.clear_counters()
      sandbox.faults{ status = { code = 503 } }
      check_err({ kind = "http", status = 503, retryable = true },
        c:get_profile(pkey))
      c:close()
      assert.are.equal(3, sandbox.count("GET profile/pkey"))
    end)

    it("a retry that succeeds leaves no err", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.clear_counters()
      sandbox.faults{ status = { code = 502, count = 2 } }
      local p = c:get_profile(pkey)
      c:close()
      assert.are.equal(pkey, p.PKey)
      assert.are.equal(3, sandbox.count("GET profile/pkey"))
    end)

    it("a 500 is not tried again", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.clear_counters()
      sandbox.faults{ status = { code = 500, count = 1 } }
      check_err({ kind = "http", status = 500, retryable = false },
        c:get_profile(pkey))
      c:close()
      assert.are.equal(1, sandbox.count("GET profile/pkey"))
    end)
  end)

  describe("from the network", function()
    it("a refused connection: COULDNT_CONNECT, retryable, no status", function()
      local c = campaign.new(sandbox.options{
        base_url = "http://127.0.0.1:" .. sandbox.closed_port(), retries = 0 })
      local err = check_err({ kind = "network", status = ABSENT, code = "COULDNT_CONNECT",
                              retryable = true, retry_after = ABSENT },
        c:get_profile(pkey))
      c:close()
      assert.is_true(#err.message > 0)
    end)

    it("a refused connection is tried `retries` more times", function()
      local tries = {}
      local c = campaign.new(sandbox.options{
        base_url = "http://127.0.0.1:" .. sandbox.closed_port(), retries = 2,
        on_request = function(info) tries[#tries + 1] = info.try end })
      check_err({ kind = "network", code = "COULDNT_CONNECT" },
        c:get_profile(pkey))
      c:close()
      assert.are.same({ 1, 2, 3 }, tries)
    end)

    it("a timeout: OPERATION_TIMEDOUT, retryable", function()
      sandbox.faults{ latency_ms = { ms = 1500, count = 1 } }
      local c = sandbox.client{ timeout = 0.3, retries = 0 }
      check_err({ kind = "network", status = ABSENT, code = "OPERATION_TIMEDOUT",
                  retryable = true },
        c:get_profile(pkey))
      c:close()
    end)

    it("an answer that stalls: OPERATION_TIMEDOUT once stall_timeout has passed", function()
      -- half the profile in about 0.2 s, then 8 s of silence: with
      -- stall_timeout = 1 the call must end about a second into it
      sandbox.faults{ trickle = { count = 1, bytes_per_sec = 4000, stall_ms = 8000 } }
      local c = sandbox.client{ stall_timeout = 1, retries = 0 }
      local t0 = socket.gettime()
      check_err({ kind = "network", code = "OPERATION_TIMEDOUT", retryable = true },
        c:get_profile(pkey))
      local elapsed = socket.gettime() - t0
      c:close()
      assert.is_true(elapsed < 3.5, ("ended %.1f s after the call began"):format(elapsed))
    end)

    it("a connection closed without an answer: retryable", function()
      sandbox.faults{ drop = { count = 1 } }
      check_err({ kind = "network", status = ABSENT, code = "GOT_NOTHING", retryable = true },
        client:get_profile(pkey))
    end)

    it("a truncated answer: PARTIAL_FILE, retryable", function()
      sandbox.faults{ truncate = { count = 1 } }
      check_err({ kind = "network", code = "PARTIAL_FILE", retryable = true },
        client:get_profile(pkey))
    end)
  end)

  describe("protocol", function()
    it("a 200 whose body is not JSON: BAD_JSON", function()
      sandbox.faults{ garbage = { count = 2 } }
      check_err({ kind = "protocol", status = 200, code = "BAD_JSON", retryable = false },
        client:get_profile(pkey))
      check_err({ kind = "protocol", status = 200, code = "BAD_JSON", retryable = false },
        client:request("GET", "profileAndServices/profile"))
    end)

    it("an answer over max_body: FILESIZE_EXCEEDED, not buffered", function()
      local c = sandbox.client{ max_body = 200, retries = 0 }
      check_err({ kind = "protocol", code = "FILESIZE_EXCEEDED", retryable = false },
        c:get_profile(pkey))
      -- under the cap, the same client reads it
      check_err({ status = 404 },
        c:request("GET", "profileAndServices/profile/@nope"))
      c:close()
    end)
  end)

  describe("auth", function()
    it("credentials the token endpoint refuses: kind auth, the same err after",
      function()
        local c = campaign.new{ org = sandbox.org, client_id = sandbox.api_key,
          client_secret = "not-the-secret", base_url = sandbox.base_url,
          ims_url = sandbox.base_url, retries = 2 }
        sandbox.clear_counters()
        local err = check_err({ kind = "auth", retryable = false },
          c:get_profile(pkey))
        assert.is_number(err.status)
        assert.is_falsy(tostring(err):find("not-the-secret", 1, true))
        local again = check_err({ kind = "auth" },
          c:get_profile(pkey))
        assert.are.equal(tostring(err), tostring(again))
        c:close()
        local counters = sandbox.counters()
        assert.are.equal(1, counters.total)
        assert.are.equal(1, counters.requests["POST ims/token"])
      end)
  end)

  describe("usage", function()
    it("a malformed op in bulk", function()
      local got
      local summary = client:bulk({ { "no_such_method", pkey } }, {
        on_result = function(_, _, result, err) got = { result, err } end })
      local err = check_err({ kind = "usage", status = ABSENT, retryable = false },
        got[1], got[2])
      assert.is_truthy(err.message:find("no_such_method", 1, true))
      assert.are.equal(1, summary.failed)
    end)
  end)

  describe("messages", function()
    it("stay on one printable line", function()
      sandbox.faults{ status = { code = 503, count = 1,
                                 message = "first line\nsecond line\r\n\tend" } }
      local err = check_err({ status = 503 },
        client:get_profile(pkey))
      assert.is_truthy(err.message:find("first line", 1, true))
      assert.is_truthy(err.message:find("second line", 1, true))
    end)

    it("keep at most 400 bytes of the server's", function()
      sandbox.faults{ status = { code = 503, count = 1, message = ("x"):rep(5000) } }
      local err = check_err({ status = 503 },
        client:get_profile(pkey))
      assert.is_true(#err.message >= 400)
    end)

    it("never carry a credential the server echoes", function()
      sandbox.faults{ status = { code = 503, count = 1, message = "you sent "
        .. sandbox.access_token .. " and " .. sandbox.api_key } }
      local err = check_err({ status = 503 },
        client:get_profile(pkey))
      assert.is_falsy(tostring(err):find(sandbox.access_token, 1, true))
      assert.is_falsy(tostring(err):find(sandbox.api_key, 1, true))
    end)
  end)

  describe("reading error bodies", function()
    it("an object: its message", function()
      local err = check_err({ status = 404 },
        client:get_profile("@gone"))
      assert.matches("^RST%-360011 ", err.message)
    end)

    it("a bare JSON string: the string, with Campaign's id", function()
      sandbox.config{ error_body = "string" }
      local err = check_err({ kind = "http", status = 404, code = "RST-360011" },
        client:get_profile("@gone"))
      assert.matches("^RST%-360011 .*'@gone'", err.message)
    end)

    it("text that is not JSON: the text, with Campaign's id", function()
      sandbox.config{ error_body = "text" }
      local err = check_err({ kind = "http", status = 404, code = "RST-360011" },
        client:get_profile("@gone"))
      assert.matches("^RST%-360011 .*'@gone'", err.message)
    end)
  end)

  describe("answers the sandbox cannot give (a canned server)", function()
    local function canned_client(answers)
      local url, stop = sandbox.canned(answers)
      local c = campaign.new(sandbox.options{ base_url = url, retries = 0 })
      return c, function() c:close() stop() end
    end

    it("an empty 200: true where no body is needed, EMPTY_BODY where one is", function()
      local c, stop = canned_client({ { status = 200, body = "" },
                                      { status = 200, body = "" } })
      assert.is_true(c:request("GET", "profileAndServices/profile"))
      check_err({ kind = "protocol", status = 200, code = "EMPTY_BODY", retryable = false },
        c:get_profile(pkey))
      stop()
    end)

    it("a bare JSON string: the string from request, a protocol err for a profile",
      function()
        local c, stop = canned_client({ { status = 200, body = '"hello"' },
                                        { status = 200, body = '"hello"' },
                                        { status = 200, body = "null" } })
        assert.are.equal("hello", c:request("GET", "profileAndServices/profile"))
        check_err({ kind = "protocol", status = 200, retryable = false },
          c:get_profile(pkey))
        check_err({ kind = "protocol", status = 200 },
          c:get_profile(pkey))
        stop()
      end)

    it("JSON nested past cjson's depth: BAD_JSON, not a raw cjson error", function()
      local deep = ("["):rep(5000) .. ("]"):rep(5000)
      local c, stop = canned_client({ { status = 200, body = deep } })
      check_err({ kind = "protocol", code = "BAD_JSON" },
        c:request("GET", "profileAndServices/profile"))
      stop()
    end)

    it("an error with an empty body: the status, no code", function()
      local c, stop = canned_client({ { status = 500, body = "" } })
      check_err({ kind = "http", status = 500, code = ABSENT, retryable = false },
        c:get_profile(pkey))
      stop()
    end)

    it("a gateway error_code sent as a number: a string code", function()
      local c, stop = canned_client({ { status = 429,
        body = '{"error_code":429050,"message":"Too many requests"}' } })
      check_err({ kind = "http", status = 429, code = "429050", retryable = true },
        c:get_profile(pkey))
      stop()
    end)

    it("a redirect: not followed", function()
      local c, stop = canned_client({ { status = 302, body = "",
        headers = { "Location: http://127.0.0.1:1/elsewhere" } } })
      check_err({ kind = "http", status = 302, retryable = false },
        c:get_profile(pkey))
      stop()
    end)
  end)
end)
