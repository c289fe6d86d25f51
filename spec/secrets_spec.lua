-- Secrets (client secret, token, API key) never appear in an err, in
-- tostring(client), in a raised error, in what the hook sees, nor in the
-- opt-out job's report, output and --verbose output.  Every output is
-- grepped for every secret, including when a server echoes them back.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/secrets_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "spec/support/?.lua;" .. package.path

local campaign = require "campaign"
local peers = require "peers"

-- Distinct secrets for this run, set on the sandbox.
math.randomseed(os.time())
local tag = ("%06d"):format(math.random(0, 999999))
local KEY = "AKey-" .. tag .. "-alpha"
local TOKEN = "Tok-" .. tag .. "-bravo"
local SECRET = "Sec-" .. tag .. "-charlie"
-- The listener's token endpoint issues "listener-token-<n>".
local SECRETS = { KEY, TOKEN, SECRET, "listener-token-" }

-- Flattens any value (tables deeply, with their tostring) to text.
local function text(v, seen)
  seen = seen or {}
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "" end
  seen[v] = true
  local out = { tostring(v) }
  for k, x in pairs(v) do
    out[#out + 1] = text(k, seen) .. "=" .. text(x, seen)
  end
  return table.concat(out, "\n")
end

local function assert_clean(what, v)
  local s = text(v)
  for _, secret in ipairs(SECRETS) do
    assert.is_nil(s:find(secret, 1, true),
      ("%s holds the secret %q:\n%s"):format(what, secret, s:sub(1, 600)))
  end
end

describe("secrets", function()
  local pkey, L

  local function client(extra)
    local o = { org = peers.ORG, api_key = KEY, access_token = TOKEN,
                base_url = peers.BASE, retries = 0, timeout = 5 }
    for k, v in pairs(extra or {}) do
      if v == false then o[k] = nil else o[k] = v end
    end
    return campaign.new(o)
  end

  setup(function()
    assert(peers.BASE, "run under sh spec/sandbox/with-sandbox.sh")
    peers.reset()
    pkey = peers.first_pkey()
    L = peers.listener()
  end)
  before_each(function()
    peers.reset()
    peers.config { api_key = KEY, token = TOKEN, client_secret = SECRET }
    L:clear()
    L:token_mode("ok")
  end)
  teardown(function()
    peers.reset()
    L:stop()
  end)

  it("the sandbox takes this run's secrets", function()
    local c = client()
    assert.equal(pkey, assert(c:get_profile(pkey)).PKey)
    c:close()
  end)

  it("tostring(client) names the organization, never a credential", function()
    for _, c in ipairs {
      client(),
      client { access_token = false, client_id = KEY, client_secret = SECRET,
               ims_url = peers.BASE, api_key = false },
    } do
      assert_clean("tostring(client)", tostring(c))
      c:close()
      assert_clean("tostring(closed client)", tostring(c))
    end
  end)

  it("no err holds a secret, whatever the failure", function()
    local errs = {}
    local c = client()
    local hooks = {}
    local c2 = client { on_request = function(info) hooks[#hooks + 1] = info end }
    local function keep(_, err) errs[#errs + 1] = err end

    keep(c:get_profile("@no-such-profile"))
    keep(c:get_profile("bad pkey"))
    keep(c:update_profile(pkey, { noSuchField = 1 }))
    keep(c:create_profile { email = 12 })
    keep(c:request("POST", "profileAndServices/profile", "not json"))
    keep(c:request("GET", "/nowhere"))
    keep(client({ access_token = TOKEN .. "x" }):get_profile(pkey))
    keep(client({ api_key = KEY .. "x" }):get_profile(pkey))
    -- a server that puts a secret in its message (this client has no
    -- client secret: it cannot know that one)
    for _, m in ipairs { TOKEN, KEY, "Bearer " .. TOKEN .. " and " .. KEY } do
      peers.faults { status = { code = 500, count = 1, message = m } }
      keep(c:get_profile(pkey))
      peers.faults { status = { code = 429, count = 1, error_code = 429001, message = m } }
      keep(c2:get_profile(pkey))
    end
    peers.faults { garbage = { count = 1 } }
    keep(c:get_profile(pkey))
    peers.faults { drop = { count = 1 } }
    keep(c:get_profile(pkey))
    -- in bulk, through on_result
    peers.faults { status = { code = 503, count = 4, message = TOKEN } }
    c:bulk({ { "get_profile", pkey }, { "get_profile", pkey }, { "nope" } },
           { on_result = function(_, _, _, err) errs[#errs + 1] = err end })
    c:close()
    c2:close()

    assert.is_true(#errs >= 17)
    for i, err in ipairs(errs) do
      assert.is_table(err, "call " .. i .. " did not fail")
      assert_clean("err " .. i, err)
      assert_clean("tostring(err " .. i .. ")", tostring(err))
    end
    assert.is_true(#hooks > 0)
    for _, info in ipairs(hooks) do assert_clean("hook info", info) end
  end)

  it("a server echoing the request headers into its message: scrubbed", function()
    local c = client { base_url = L.url }
    local _, err = c:get_profile("s-error-echo")
    c:close()
    assert.equal("http", err.kind)
    assert.truthy(err.message:find("you sent", 1, true))
    assert_clean("err", err)
  end)

  it("a server echoing a credential as its error code: not kept", function()
    local c = client { base_url = L.url }
    local _, err = c:get_profile("s-error-code-echo")
    c:close()
    assert.equal("http", err.kind)
    assert_clean("err", err)
  end)

  it("a secret cut by the 400-byte limit of a message: no piece of it kept", function()
    local long = "Tok-" .. tag .. ("-0123456789abcdef"):rep(4)
    local c = client { base_url = L.url, access_token = long }
    local _, err = c:get_profile("s-error-long-echo")
    c:close()
    assert.equal("http", err.kind)
    for i = 1, #long - 15 do
      local piece = long:sub(i, i + 15)
      assert.is_nil(err.message:find(piece, 1, true),
        ("16 bytes of the token (%q) in %q"):format(piece, err.message:sub(-80)))
    end
  end)

  it("secrets with URL-special bytes: not even form-encoded in a refusal", function()
    L:token_mode("echo_refusal")
    local id, secret = "AK/ey+" .. tag .. "=&x", "Se/c+" .. tag .. "=&y"
    local c = campaign.new { org = "acme", client_id = id, client_secret = secret,
                             ims_url = L.url, base_url = L.url, retries = 0 }
    local _, err = c:get_profile("@p")
    c:close()
    assert.equal("auth", err.kind)
    local function enc(s)
      return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
    end
    local s = text(err)
    for _, v in ipairs { id, secret, enc(id), enc(secret) } do
      assert.is_nil(s:find(v, 1, true), ("%q in %s"):format(v, s))
    end
  end)

  it("a token endpoint echoing the form in its refusal: scrubbed", function()
    for _, mode in ipairs { "echo_refusal", "echo_code" } do
      L:token_mode(mode)
      local c = campaign.new { org = "acme", client_id = KEY, client_secret = SECRET,
                               ims_url = L.url, base_url = L.url, retries = 0 }
      local _, err = c:get_profile("@p")
      c:close()
      assert.equal("auth", err.kind, mode)
      assert_clean("auth err (" .. mode .. ")", err)
    end
  end)

  it("tokens the client got itself never show either", function()
    local c = campaign.new { org = "acme", client_id = KEY, client_secret = SECRET,
                             ims_url = L.url, base_url = L.url, retries = 0 }
    local r, err = c:request("GET", "/x/s-error-echo")
    c:close()
    assert.is_nil(r)
    assert.truthy(err.message:find("Authorization", 1, true))
    assert_clean("err", err)
  end)

  it("raised errors do not quote a secret", function()
    local cases = {
      { org = "acme", api_key = KEY, access_token = TOKEN .. "\n" },
      { org = "acme", api_key = KEY .. "\r", access_token = TOKEN },
      { org = "acme", api_key = KEY, access_token = TOKEN, client_secret = SECRET },
      { org = "acme", client_id = KEY, client_secret = SECRET .. "\0" },
      { org = "acme", client_id = KEY, client_secret = SECRET, access_token = TOKEN },
      { org = "a/b", api_key = KEY, access_token = TOKEN },
      { org = "acme", api_key = KEY, access_token = TOKEN, timout = 1 },
      { org = "acme", api_key = KEY, access_token = TOKEN, base_url = "http://10.1.1.1" },
      { org = "acme", api_key = KEY, access_token = TOKEN:rep(400) },
    }
    for i, o in ipairs(cases) do
      local ok, msg = pcall(campaign.new, o)
      assert.is_false(ok, "case " .. i)
      assert_clean("the error of case " .. i, msg)
    end
    local c = client()
    for _, f in ipairs {
      function() c:get_profile(nil) end,
      function() c:request("GET", "x y") end,
      function() c:update_profile(pkey, { n = 1 / 3 }) end,
      function() c:bulk({}, { concurrency = 0 }) end,
    } do
      local ok, msg = pcall(f)
      assert.is_false(ok)
      assert_clean("a raised error", msg)
    end
    c:close()
    local ok, msg = pcall(c.get_profile, c, pkey)
    assert.is_false(ok)
    assert_clean("the closed client's error", msg)
  end)

  describe("the opt-out job", function()
    local JOB = "examples/ccpa_optout.lua"
    local have_job = io.open(JOB) ~= nil
    local dir

    local function run(args, env)
      local parts = { "cd", peers.quote(dir), "&&", "env" }
      for _, k in ipairs { "CAMPAIGN_API_KEY", "CAMPAIGN_ACCESS_TOKEN", "CAMPAIGN_CLIENT_ID",
                           "CAMPAIGN_CLIENT_SECRET", "CAMPAIGN_IMS_URL" } do
        parts[#parts + 1] = "-u " .. k
      end
      for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. peers.quote(v) end
      parts[#parts + 1] = "LUA_CPATH=" .. peers.quote(peers.ROOT .. "/build/lua5.4/?.so;;")
      parts[#parts + 1] = peers.LUA .. " " .. peers.quote(peers.ROOT .. "/" .. JOB)
      for _, a in ipairs(args) do parts[#parts + 1] = peers.quote(a) end
      local p = io.popen(table.concat(parts, " ") .. " 2>&1; echo \"exit=$?\"")
      local out = p:read("a")
      p:close()
      return tonumber(out:match("exit=(%d+)\n$")), out
    end

    local function all_files()
      local p = io.popen("cat " .. peers.quote(dir) .. "/* 2>/dev/null")
      local s = p:read("a")
      p:close()
      return s
    end

    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. peers.quote(dir))
      local f = assert(io.open(dir .. "/requests.csv", "w"))
      f:write("email,pkey,note\n")
      f:write(",", pkey, ",by pkey\n")
      f:write("nobody-", tag, "@example.com,,missing\n")
      f:write(",@no-such-pkey,missing pkey\n")
      f:write("broken,,invalid\n")
      f:close()
    end)
    teardown(function() os.execute("rm -rf " .. peers.quote(dir)) end)

    local base_env = function()
      return { CAMPAIGN_ORG = peers.ORG, CAMPAIGN_BASE_URL = peers.BASE,
               CAMPAIGN_API_KEY = KEY, CAMPAIGN_ACCESS_TOKEN = TOKEN }
    end

    it("prints no secret with a token, --verbose, failures and --resume", function()
      if not have_job then return pending("no " .. JOB) end
      peers.faults { status = { code = 500, probability = 0.5, message = TOKEN .. " " .. KEY } }
      local status, out = run({ "--verbose", "--no-progress", "--retries", "0",
                                "--report", "r1.csv", "requests.csv" }, base_env())
      assert.truthy(status == 0 or status == 1, out)
      assert_clean("the job's output", out)
      peers.control("DELETE", "faults")
      status, out = run({ "--verbose", "--no-progress", "--resume", "r1.csv",
                          "--report", "r2.jsonl", "requests.csv" }, base_env())
      assert.equal(0, status, out)
      assert_clean("the resumed job's output", out)
      assert_clean("the reports", all_files())
    end)

    it("prints no secret with client credentials, nor when they are refused", function()
      if not have_job then return pending("no " .. JOB) end
      local env = base_env()
      env.CAMPAIGN_ACCESS_TOKEN = nil
      env.CAMPAIGN_CLIENT_ID = KEY
      env.CAMPAIGN_CLIENT_SECRET = SECRET
      env.CAMPAIGN_IMS_URL = peers.BASE
      local status, out = run({ "-v", "--no-progress", "--report", "r3.csv",
                                "requests.csv" }, env)
      assert.equal(0, status, out)
      assert_clean("the job's output", out)
      env.CAMPAIGN_CLIENT_SECRET = SECRET .. "-wrong"
      status, out = run({ "-v", "--no-progress", "--report", "r4.csv", "requests.csv" }, env)
      assert.equal(2, status, out)
      assert_clean("the refused job's output", out)
      -- a token endpoint that echoes the form back
      L:token_mode("echo_refusal")
      env.CAMPAIGN_CLIENT_SECRET = SECRET
      env.CAMPAIGN_IMS_URL = L.url
      status, out = run({ "-v", "--no-progress", "--report", "r5.csv", "requests.csv" }, env)
      assert.equal(2, status, out)
      assert_clean("the job's output, refused by an echoing endpoint", out)
      assert_clean("the reports", all_files())
    end)

    it("a secrets file's values stay secret, even when the file is odd", function()
      if not have_job then return pending("no " .. JOB) end
      local f = assert(io.open(dir .. "/secrets.env", "w"))
      f:write("CAMPAIGN_API_KEY=", KEY, "\nCAMPAIGN_ACCESS_TOKEN=", TOKEN, "\n",
              "NOT_CAMPAIGN=", SECRET, "\nthis line is odd ", SECRET, "\n")
      f:close()
      local env = base_env()
      env.CAMPAIGN_API_KEY, env.CAMPAIGN_ACCESS_TOKEN = nil, nil
      local status, out = run({ "-v", "--no-progress", "--secrets-file", "secrets.env",
                                "--report", "r6.csv", "requests.csv" }, env)
      assert.truthy(status == 0 or status == 2, out)
      assert_clean("the job's output with a secrets file", out)
    end)
  end)
end)
