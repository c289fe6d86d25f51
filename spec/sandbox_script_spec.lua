-- The sandbox's scripts and seed generator: start, stop, settings from the
-- environment, a taken port, with-sandbox.sh, and the seed itself.
--
-- Every sandbox started here registers under a private TMPDIR, so these
-- specs never stop a sandbox somebody else started.
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"

local SCRIPT = "spec/sandbox/sandbox.sh"

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local tmpdir

-- Runs a shell command with environment `env`; returns the exit code,
-- stdout and stderr.
local function run(cmd, env)
  local prefix = { "TMPDIR=" .. shell_quote(tmpdir) }
  for k, v in pairs(env or {}) do prefix[#prefix + 1] = k .. "=" .. shell_quote(v) end
  local err = os.tmpname()
  local p = io.popen(table.concat(prefix, " ") .. " " .. cmd .. " 2>" .. err)
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(err)
  local errtext = f:read("a")
  f:close()
  os.remove(err)
  return code, out, errtext
end

local function last_line(s) return s:match("([^\n]+)\n?$") end

local function get(url, headers)
  local out = {}
  local ok, status = http.request({ url = url, headers = headers,
    sink = ltn12.sink.table(out) })
  if not ok then return nil, status end
  return status, table.concat(out)
end

local function start(env)
  local code, out, err = run("sh " .. SCRIPT .. " start", env)
  assert(code == 0, "start failed: " .. err)
  return last_line(out)
end

local function stop(url)
  return run("sh " .. SCRIPT .. " stop " .. (url and shell_quote(url) or ""))
end

describe("sandbox scripts", function()
  setup(function()
    tmpdir = io.popen("mktemp -d"):read("l")
  end)
  teardown(function()
    -- whatever a failed test left running
    for _ = 1, 5 do
      if stop() ~= 0 then break end
    end
    os.execute("rm -rf " .. shell_quote(tmpdir))
  end)

  it("start prints the base URL last, serves the seed quickly, stop cleans up", function()
    local t = socket.gettime()
    local url = start()
    local took = socket.gettime() - t
    assert.matches("^http://127%.0%.0%.1:%d+$", url)
    assert.is_true(took < 1.5, "took " .. took .. " s")
    local status, body = get(url .. "/_sandbox/")
    assert.equal(200, status)
    assert.equal(1000, cjson.decode(body).profiles)
    local port = url:match(":(%d+)$")
    local prefix = io.open(tmpdir .. "/campaign-sandbox/" .. port):read("l")
    assert.truthy(io.open(prefix .. "/nginx.pid"))
    local conf = io.open(prefix .. "/nginx.conf"):read("a")
    assert.matches("listen 127%.0%.0%.1:" .. port, conf)
    assert.equal(0, (stop(url)))
    assert.is_nil(get(url .. "/_sandbox/"))
    assert.is_nil(io.open(prefix .. "/nginx.conf"))
    assert.is_nil(io.open(tmpdir .. "/campaign-sandbox/" .. port))
  end)

  it("takes ORG, API_KEY, TOKEN, CLIENT_SECRET, TOKEN_TTL and SEED from the environment", function()
    local seed = os.tmpname()
    local f = io.open(seed, "w")
    f:write('{"email":"only@example.com"}\n')
    f:close()
    local url = start({ ORG = "tenant7", API_KEY = "k7", TOKEN = "t7",
      CLIENT_SECRET = "s7", TOKEN_TTL = "42", SEED = seed })
    finally(function()
      stop(url)
      os.remove(seed)
    end)
    local status, body = get(url .. "/tenant7/campaign/profileAndServices/profile/_count",
      { ["X-Api-Key"] = "k7", ["Authorization"] = "Bearer t7" })
    assert.equal(200, status)
    assert.equal(1, cjson.decode(body).count)
    local form = "grant_type=client_credentials&client_id=k7&client_secret=s7&scope=openid"
    local out = {}
    http.request({ url = url .. "/ims/token/v3", method = "POST",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                  ["Content-Length"] = tostring(#form) },
      source = ltn12.source.string(form), sink = ltn12.sink.table(out) })
    assert.equal(42, cjson.decode(table.concat(out)).expires_in)
    status = get(url .. "/acme/campaign/profileAndServices/profile/_count",
      { ["X-Api-Key"] = "k7", ["Authorization"] = "Bearer t7" })
    assert.equal(500, status)
  end)

  it("says so in one line when the port is taken", function()
    local url = start()
    finally(function() stop(url) end)
    local port = url:match(":(%d+)$")
    local code, out, err = run("sh " .. SCRIPT .. " start", { PORT = port })
    assert.is_not.equal(0, code)
    assert.equal("", out)
    assert.matches("port " .. port .. " .*already in use", err)
    assert.equal(1, select(2, err:gsub("\n", "")))
    assert.equal(200, (get(url .. "/_sandbox/")))
  end)

  it("refuses a PORT that is no port, in one line naming it, leaving nothing", function()
    for _, port in ipairs { "0", "abc", "70000", "8080x", "-1", "123456" } do
      local code, out, err = run("sh " .. SCRIPT .. " start", { PORT = port })
      assert.equal(1, code, port)
      assert.equal("", out)
      assert.equal("sandbox: PORT must be a number from 1 to 65535, not '" .. port
        .. "'\n", err)
    end
    -- no prefix made (campaign-sandbox.XXXXXX), no sandbox registered
    assert.equal("", io.popen("ls -d " .. shell_quote(tmpdir) ..
      "/campaign-sandbox.* " .. shell_quote(tmpdir) .. "/campaign-sandbox/* 2>/dev/null")
      :read("a"))
  end)

  it("runs several at once; stop without a URL stops the last started", function()
    local a = start()
    socket.sleep(0.05)
    local b = start()
    assert.is_not.equal(a, b)
    assert.equal(0, (stop()))
    assert.is_nil(get(b .. "/_sandbox/"))
    assert.equal(200, (get(a .. "/_sandbox/")))
    assert.equal(0, (stop(a)))
    assert.is_nil(get(a .. "/_sandbox/"))
    local code, _, err = stop()
    assert.is_not.equal(0, code)
    assert.matches("no sandbox", err)
  end)

  it("with-sandbox.sh exports the settings, exits with the command's status, stops", function()
    local code, out = run("sh spec/sandbox/with-sandbox.sh sh -c " .. shell_quote(
      'echo "$CAMPAIGN_BASE_URL $CAMPAIGN_ORG $CAMPAIGN_API_KEY $CAMPAIGN_ACCESS_TOKEN '
      .. '$CAMPAIGN_CLIENT_SECRET"; exit 7'), { ORG = "o9" })
    assert.equal(7, code)
    local url, rest = out:match("^(%S+) (.*)\n$")
    assert.equal("o9 sandbox-client sandbox-token sandbox-secret", rest)
    assert.is_nil(get(url .. "/_sandbox/"))
  end)
end)

describe("seed", function()
  local function gen(n)
    local p = io.popen("lua5.4 spec/sandbox/gen-seed.lua " .. n)
    local out = p:read("a")
    p:close()
    return out
  end

  it("is what the generator makes, and the generator is deterministic", function()
    local shipped = io.open("spec/sandbox/seed.jsonl"):read("a")
    assert.equal(shipped, gen(1000))
    assert.equal(gen(50), gen(50))
  end)

  it("has the full field set, mixed opt-outs, shared and tagged emails, non-ASCII names", function()
    local n, opted, tagged, non_ascii, awkward = 0, 0, 0, 0, 0
    local emails, pkeys = {}, {}
    local REQUIRED = { "PKey", "age", "birthDate", "blackList",
      "blackListLastModified", "blackListEmail", "blackListEmailLastModified",
      "blackListFax", "blackListFaxLastModified", "blackListMobile",
      "blackListMobileLastModified", "blackListPhone", "blackListPhoneLastModified",
      "blackListPostalMail", "blackListPostalMailLastModified",
      "blackListPushnotification", "blackListPushnotificationLastModified",
      "ccpaOptOut", "ccpaOptOutLastModified", "created",
      "cryptedId", "domain", "email", "emailFormat", "externalId", "fax", "firstName",
      "gender", "isExternal", "lastModified", "lastName", "location", "middleName",
      "mobilePhone", "phone", "postalAddress", "preferredLanguage", "salutation",
      "thumbnail", "timeZone", "title" }
    for line in io.lines("spec/sandbox/seed.jsonl") do
      local p = cjson.decode(line)
      n = n + 1
      for _, f in ipairs(REQUIRED) do assert.is_not_nil(p[f], f) end
      assert.matches("@example%.[a-z]+$", p.email)
      assert.is_nil(pkeys[p.PKey])
      pkeys[p.PKey] = true
      if p.PKey:find("[/+=]") then awkward = awkward + 1 end
      if p.ccpaOptOut then opted = opted + 1 end
      if p.email:find("+", 1, true) then tagged = tagged + 1 end
      if (p.firstName .. p.lastName):find("[\128-\255]") then non_ascii = non_ascii + 1 end
      emails[p.email] = (emails[p.email] or 0) + 1
    end
    local shared = { 0, 0, 0, 0 }
    for _, k in pairs(emails) do shared[k] = (shared[k] or 0) + 1 end
    assert.is_true(n >= 1000)
    assert.is_true(opted > 50 and opted < n - 50)
    assert.is_true(shared[2] > 0 and shared[3] > 0, "emails shared by 2 and by 3")
    assert.equal(0, shared[4] or 0)
    assert.is_true(tagged > 10)
    assert.is_true(non_ascii > 50)
    assert.is_true(awkward > n / 2)
  end)
end)
