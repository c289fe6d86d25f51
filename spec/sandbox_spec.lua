-- The sandbox itself: every behaviour issue 2 asks of it, over HTTP.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/sandbox_spec.lua
--
-- Each test starts from a reset sandbox and leaves one behind, so the
-- other specs that share the sandbox see the seed and no faults.
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"

local BASE = os.getenv("CAMPAIGN_BASE_URL")
local ORG = os.getenv("CAMPAIGN_ORG") or "acme"
local KEY = os.getenv("CAMPAIGN_API_KEY") or "sandbox-client"
local TOKEN = os.getenv("CAMPAIGN_ACCESS_TOKEN") or "sandbox-token"
local SECRET = os.getenv("CAMPAIGN_CLIENT_SECRET") or "sandbox-secret"
local PROFILE = "/" .. ORG .. "/campaign/profileAndServices/profile"
local SHARED_SEED = "../shared/data/people-seed.jsonl"

---------------------------------------------------------------- helpers

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- One HTTP exchange.  `headers` are added to the API's usual ones; a
-- header set to false is left out.  Returns status, body, headers.
local function request(method, path, body, headers)
  local h = {
    ["X-Api-Key"] = KEY,
    ["Authorization"] = "Bearer " .. TOKEN,
    ["Content-Type"] = "application/json;charset=utf-8",
  }
  for k, v in pairs(headers or {}) do h[k] = v or nil end
  if body then h["Content-Length"] = tostring(#body) end
  local out = {}
  local url = path:match("^http") and path or BASE .. path
  local ok, status, rh = http.request({
    url = url, method = method, headers = h,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(out),
  })
  assert(ok, status)
  return status, table.concat(out), rh
end

local function json(s)
  local ok, v = pcall(cjson.decode, s)
  assert(ok, "not JSON: " .. tostring(s))
  return v
end

local function api(method, path, body, headers)
  if type(body) == "table" then body = cjson.encode(body) end
  local status, text, rh = request(method, path, body, headers)
  local ok, v = pcall(cjson.decode, text)
  return status, ok and v or text, rh
end

local function control(method, name, body)
  if type(body) == "table" then body = cjson.encode(body) end
  local status, text = request(method, "/_sandbox/" .. name, body, {
    ["X-Api-Key"] = false, ["Authorization"] = false })
  assert(status == 200, name .. ": " .. status .. " " .. text)
  return text ~= "" and json(text) or nil
end

local function reset() control("POST", "reset") end

local function first_profile()
  local status, list = api("GET", PROFILE .. "?_lineCount=1")
  assert(status == 200)
  return list.content[1]
end

local function path_of(pkey) return PROFILE .. "/" .. escape(pkey) end

-- A raw keep-alive connection, for what LuaSocket's http hides.
local function connect()
  local host, port = BASE:match("^http://([^:/]+):(%d+)")
  local c = assert(socket.tcp())
  c:settimeout(5)
  assert(c:connect(host, tonumber(port)))
  return c
end

local function send_raw(c, method, path, body)
  c:send(("%s %s HTTP/1.1\r\nHost: sandbox\r\nX-Api-Key: %s\r\n"
    .. "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s")
    :format(method, path, KEY, TOKEN, body and #body or 0, body or ""))
end

-- Reads one answer: status, headers (lower-case names), body, and the
-- error that ended the read early, if one did.
local function read_raw(c)
  local line, err = c:receive("*l")
  if not line then return nil, nil, nil, err end
  local status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  repeat
    line = c:receive("*l")
    local k, v
    if line then k, v = line:match("^([^:]+):%s*(.*)$") end
    if k then headers[k:lower()] = v end
  until not line or line == ""
  local len = tonumber(headers["content-length"] or "0")
  local body, e, partial = c:receive(len)
  return status, headers, body or partial, e
end

local function now() return socket.gettime() end

----------------------------------------------------------------- specs

describe("sandbox", function()
  setup(function()
    assert(BASE, "run under sh spec/sandbox/with-sandbox.sh")
  end)
  before_each(reset)
  teardown(reset)

  describe("gateway", function()
    local function gw(headers, path)
      local status, body = api("GET", path or PROFILE, nil, headers)
      return status, body
    end

    it("wants the API key first: missing 403000, invalid 403003", function()
      local s, b = gw({ ["X-Api-Key"] = false, ["Authorization"] = false }, "/nowhere")
      assert.same({ 403, "403000" }, { s, b.error_code })
      assert.is_string(b.message)
      s, b = gw({ ["X-Api-Key"] = "wrong", ["Authorization"] = false })
      assert.same({ 403, "403003" }, { s, b.error_code })
    end)

    it("then the token: missing 403010, invalid 401013", function()
      local s, b = gw({ ["Authorization"] = false }, "/other-org/x")
      assert.same({ 403, "403010" }, { s, b.error_code })
      s, b = gw({ ["Authorization"] = "Bearer nope" }, "/other-org/x")
      assert.same({ 401, "401013" }, { s, b.error_code })
      s, b = gw({ ["Authorization"] = TOKEN })
      assert.same({ 401, "401013" }, { s, b.error_code })
    end)

    it("then the organization: 500 Oops with code and message", function()
      local s, b = gw(nil, "/not-" .. ORG .. "/campaign/profileAndServices/profile")
      assert.equal(500, s)
      assert.equal(500, b.code)
      assert.matches("^Oops%. Something went wrong%. Check your URI and try again%.$", b.message)
    end)

    it("answers an unknown path 404, the seed page's profilesAndServices too", function()
      local s, b = gw(nil, "/" .. ORG .. "/campaign/profilesAndServices/profile")
      assert.equal(404, s)
      assert.equal(404, b.code)
      s = gw(nil, PROFILE .. "/byNothing?x=1")
      assert.equal(404, s)
      s = gw(nil, "/" .. ORG .. "/campaign/profileAndServices/nothing")
      assert.equal(404, s)
    end)
  end)

  describe("token endpoint", function()
    local function token_request(form)
      local parts = {}
      for k, v in pairs(form) do parts[#parts + 1] = k .. "=" .. escape(v) end
      return api("POST", "/ims/token/v3", table.concat(parts, "&"), {
        ["X-Api-Key"] = false, ["Authorization"] = false,
        ["Content-Type"] = "application/x-www-form-urlencoded" })
    end
    local GOOD = { grant_type = "client_credentials", client_id = KEY,
                   client_secret = SECRET, scope = "openid,AdobeID,campaign_sdk" }
    local function with(changes)
      local t = {}
      for k, v in pairs(GOOD) do t[k] = v end
      for k, v in pairs(changes) do t[k] = v or nil end
      return t
    end

    it("issues bearer tokens the API accepts until they expire", function()
      control("POST", "config", { token_ttl = 2 })
      local s, b = token_request(GOOD)
      assert.equal(200, s)
      assert.same({ "bearer", 2 }, { b.token_type, b.expires_in })
      local auth = { ["Authorization"] = "Bearer " .. b.access_token }
      assert.equal(200, (api("GET", PROFILE .. "?_lineCount=1", nil, auth)))
      socket.sleep(2.1)
      local s2, b2 = api("GET", PROFILE .. "?_lineCount=1", nil, auth)
      assert.same({ 401, "401013" }, { s2, b2.error_code })
      -- the fixed token never expires
      assert.equal(200, (api("GET", PROFILE .. "?_lineCount=1")))
    end)

    it("gives 86399 s by default and the TTL set through config", function()
      local _, b = token_request(GOOD)
      assert.equal(86399, b.expires_in)
      control("POST", "config", { token_ttl = 7 })
      _, b = token_request(GOOD)
      assert.equal(7, b.expires_in)
    end)

    it("refuses bad client credentials with {error, error_description}", function()
      local cases = {
        { { client_secret = "wrong" }, 401, "invalid_client" },
        { { client_id = "someone-else" }, 400, "invalid_client" },
        { { client_id = false }, 400, "invalid_request" },
        { { grant_type = "password" }, 400, "unsupported_grant_type" },
        { { scope = false }, 400, "invalid_scope" },
      }
      for _, case in ipairs(cases) do
        local s, b = token_request(with(case[1]))
        assert.same({ case[2], case[3] }, { s, b.error })
        assert.is_string(b.error_description)
      end
    end)

    it("forgets issued tokens on reset", function()
      local _, b = token_request(GOOD)
      reset()
      local s = api("GET", PROFILE, nil, { ["Authorization"] = "Bearer " .. b.access_token })
      assert.equal(401, s)
    end)
  end)

  describe("profiles", function()
    local FIELDS = { "PKey", "age", "birthDate", "blackList", "blackListEmail",
      "blackListFax", "blackListMobile", "blackListPhone", "blackListPostalMail",
      "blackListPushnotification", "ccpaOptOut", "ccpaOptOutLastModified", "created",
      "cryptedId", "domain", "email", "emailFormat", "externalId", "fax", "firstName",
      "gender", "href", "isExternal", "lastModified", "lastName", "location", "middleName",
      "mobilePhone", "phone", "postalAddress", "preferredLanguage", "salutation",
      "subscriptions", "thumbnail", "timeZone", "title" }

    it("GETs one by PKey: the bare profile, every field, its own href", function()
      local p = first_profile()
      local s, got = api("GET", path_of(p.PKey))
      assert.equal(200, s)
      for _, f in ipairs(FIELDS) do assert.is_not_nil(got[f], f) end
      assert.equal(p.PKey, got.PKey)
      assert.is_string(got.location.city)
      assert.is_boolean(got.postalAddress.addrDefined)
      -- the href is absolute and leads back to the same profile
      local s2, again = api("GET", got.href)
      assert.equal(200, s2)
      assert.equal(p.PKey, again.PKey)
    end)

    it("takes @ as %40 and a trailing slash", function()
      local p = first_profile()
      local path = PROFILE .. "/%40" .. escape(p.PKey:sub(2)) .. "/"
      local s, got = api("GET", path)
      assert.equal(200, s)
      assert.equal(p.PKey, got.PKey)
    end)

    it("POST creates: 201, the whole profile, defaults, stamps, a new @ PKey", function()
      local s, p = api("POST", PROFILE, { email = "new.person+t@example.com",
        firstName = "Zoë", ccpaOptOut = true })
      assert.equal(201, s)
      assert.matches("^@", p.PKey)
      assert.equal("Zoë", p.firstName)
      assert.equal("unknown", p.gender)
      assert.equal(false, p.blackList)
      assert.equal("", p.blackListLastModified)
      assert.equal("", p.lastName)
      assert.equal("example.com", p.domain)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%dZ$", p.created)
      assert.equal(p.created, p.ccpaOptOutLastModified)
      local s2, again = api("GET", path_of(p.PKey))
      assert.equal(200, s2)
      assert.equal("new.person+t@example.com", again.email)
    end)

    it("POST as Adobe's SDK sends it: text/plain, trailing slash", function()
      local s, p = api("POST", PROFILE .. "/", '{"email":"sdk@example.org"}',
        { ["Content-Type"] = "text/plain;charset=UTF-8" })
      assert.equal(201, s)
      assert.equal("sdk@example.org", p.email)
    end)

    it("makes PKeys that need percent-encoding (/, + or =) most of the time", function()
      local awkward = 0
      for i = 1, 12 do
        local _, p = api("POST", PROFILE, { email = ("k%d@example.net"):format(i) })
        if p.PKey:find("[/+=]") then awkward = awkward + 1 end
        assert.equal(200, (api("GET", path_of(p.PKey))))
      end
      assert.is_true(awkward >= 6, "only " .. awkward .. " of 12")
    end)

    it("PATCH answers {PKey, href} and stamps lastModified and the changed flag", function()
      local p = first_profile()
      local flag = p.ccpaOptOut and "blackListEmail" or "ccpaOptOut"
      local value = not p[flag]
      socket.sleep(0.01)
      local s, b = api("PATCH", path_of(p.PKey), { [flag] = value, lastName = "Renamed" })
      assert.equal(200, s)
      local keys = {}
      for k in pairs(b) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "PKey", "href" }, keys)
      assert.equal(p.PKey, b.PKey)
      local _, after = api("GET", path_of(p.PKey))
      assert.equal(value, after[flag])
      assert.equal("Renamed", after.lastName)
      assert.is_true(after.lastModified > p.lastModified)
      assert.equal(after.lastModified, after[flag .. "LastModified"])
      assert.equal(p.blackListPhoneLastModified, after.blackListPhoneLastModified)
      -- setting a flag to the value it has changes nothing of its stamp
      socket.sleep(0.01)
      api("PATCH", path_of(p.PKey), { [flag] = value })
      local _, third = api("GET", path_of(p.PKey))
      assert.equal(after[flag .. "LastModified"], third[flag .. "LastModified"])
    end)

    it("PATCH answers the whole profile when config says patch_response=full", function()
      control("POST", "config", { patch_response = "full" })
      local p = first_profile()
      local s, b = api("PATCH", path_of(p.PKey), { title = "Dr." })
      assert.equal(200, s)
      assert.equal("Dr.", b.title)
      assert.equal(p.email, b.email)
    end)

    it("DELETE answers 200; the profile is gone", function()
      local p = first_profile()
      assert.equal(200, (api("DELETE", path_of(p.PKey))))
      assert.equal(404, (api("GET", path_of(p.PKey))))
      assert.equal(404, (api("DELETE", path_of(p.PKey))))
    end)

    it("unknown PKey 404 RST-360011; malformed PKey 500 XTK-170036", function()
      local s, b = api("GET", PROFILE .. "/%40AAAAnotThere")
      assert.equal(404, s)
      assert.matches("^RST%-360011", b.message)
      s, b = api("PATCH", PROFILE .. "/not-a-pkey", { title = "x" })
      assert.equal(500, s)
      assert.matches("^XTK%-170036", b.message)
    end)

    it("unknown, read-only or badly typed fields and bad enums: 500 naming the field", function()
      local p = first_profile()
      local cases = {
        { "POST", PROFILE, { nickname = "x" }, "nickname" },
        { "POST", PROFILE, { age = 30 }, "age" },
        { "PATCH", path_of(p.PKey), { PKey = "@x" }, "PKey" },
        { "PATCH", path_of(p.PKey), { created = "2020-01-01 00:00:00.000Z" }, "created" },
        { "PATCH", path_of(p.PKey), { gender = "other" }, "gender" },
        { "PATCH", path_of(p.PKey), { ccpaOptOut = "yes" }, "ccpaOptOut" },
        { "PATCH", path_of(p.PKey), { location = { planet = "Mars" } }, "planet" },
        { "POST", PROFILE, { cusOptOutCcpa = true }, "cusOptOutCcpa" },
      }
      for _, c in ipairs(cases) do
        local s, b = api(c[1], c[2], c[3])
        assert.equal(500, s, c[4])
        assert.equal(500, b.code)
        assert.truthy(b.message:find(c[4], 1, true), b.message)
      end
      local _, same = api("GET", path_of(p.PKey))
      assert.equal(p.gender, same.gender)
    end)

    it("a body that is not a JSON object: 400", function()
      local p = first_profile()
      for _, body in ipairs({ "[1,2]", "not json", "", '"text"' }) do
        assert.equal(400, (api("POST", PROFILE, body)), body)
        assert.equal(400, (api("PATCH", path_of(p.PKey), body)), body)
      end
    end)

    it("shows custom fields on profileAndServicesExt, the same profiles", function()
      local p = first_profile()
      local ext = "/" .. ORG .. "/campaign/profileAndServicesExt/profile/" .. escape(p.PKey)
      local s, got = api("GET", ext)
      assert.equal(200, s)
      assert.equal(false, got.cusOptOutCcpa)
      assert.matches("profileAndServicesExt", got.href)
      assert.equal(200, (api("PATCH", ext, { cusOptOutCcpa = true })))
      local _, again = api("GET", ext)
      assert.equal(true, again.cusOptOutCcpa)
      local _, std = api("GET", path_of(p.PKey))
      assert.is_nil(std.cusOptOutCcpa)
    end)

    it("can answer application errors as a bare JSON string or plain text", function()
      control("POST", "config", { error_body = "string" })
      local s, b = api("GET", PROFILE .. "/%40nothere")
      assert.equal(404, s)
      assert.is_string(b)
      assert.matches("^RST%-360011", b)
      control("POST", "config", { error_body = "text" })
      local s2, text, h = request("GET", PROFILE .. "/%40nothere")
      assert.equal(404, s2)
      assert.matches("^RST%-360011", text)
      assert.matches("^text/plain", h["content-type"])
    end)
  end)

  describe("lists", function()
    local function collect(url, seen, limit)
      local pages = 0
      while url and pages < (limit or 1000) do
        local s, page = api("GET", url)
        assert.equal(200, s, tostring(page))
        for _, p in ipairs(page.content) do
          seen[p.PKey] = (seen[p.PKey] or 0) + 1
          seen[#seen + 1] = p
        end
        url = page.next and page.next.href
        pages = pages + 1
      end
      return url
    end

    it("has content, count.href, next.href and serverSidePagination; 25 by default", function()
      local s, page = api("GET", PROFILE)
      assert.equal(200, s)
      assert.equal(25, #page.content)
      assert.is_true(page.serverSidePagination)
      assert.matches("/_count", page.count.href)
      assert.matches("_lineStart=@", page.next.href)
      local _, c = api("GET", page.count.href)
      assert.equal(1000, c.count)
      local _, c2 = api("GET", PROFILE .. "/_count")
      assert.equal(1000, c2.count)
    end)

    it("follows next through every profile once; the last page has no next", function()
      local seen = {}
      collect(PROFILE .. "/?_lineCount=90", seen)
      assert.equal(1000, #seen)
      for _, p in ipairs(seen) do assert.equal(1, seen[p.PKey]) end
      local _, last = api("GET", PROFILE .. "?_lineCount=2000")
      assert.equal(1000, #last.content)
      assert.is_nil(last.next)
    end)

    it("orders by a field, ascending, %20desc, and the SDK's email%2520desc", function()
      local function emails(q)
        local seen = {}
        collect(PROFILE .. "?_lineCount=300&_order=" .. q, seen)
        local out = {}
        for i, p in ipairs(seen) do out[i] = p.email end
        return out
      end
      local asc = emails("email")
      assert.equal(1000, #asc)
      for i = 2, #asc do assert.is_true(asc[i - 1] <= asc[i]) end
      for _, q in ipairs({ "email%20desc", "email%2520desc" }) do
        local desc = emails(q)
        assert.equal(1000, #desc)
        for i = 2, #desc do assert.is_true(desc[i - 1] >= desc[i], q) end
      end
      assert.equal(500, (api("GET", PROFILE .. "?_order=shoeSize")))
    end)

    it("pages correctly while profiles are created and deleted between pages", function()
      for _, order in ipairs({ "", "&_order=lastName", "&_order=email%20desc" }) do
        reset()
        local _, all = api("GET", PROFILE .. "?_lineCount=2000")
        local seen, created, deleted = {}, {}, {}
        local url = PROFILE .. "?_lineCount=40" .. order
        local step = 0
        while url do
          local _, page = api("GET", url)
          for _, p in ipairs(page.content) do
            seen[p.PKey] = (seen[p.PKey] or 0) + 1
          end
          -- between pages: create two, delete one seen and one not yet seen
          step = step + 1
          for k = 1, 2 do
            local _, p = api("POST", PROFILE, { email = ("m%d.%d@example.com"):format(step, k),
              lastName = "M" .. step })
            created[p.PKey] = true
          end
          local victim_seen = page.content[1]
          local victim_later = all.content[(step * 37) % 1000 + 1]
          for _, v in ipairs({ victim_seen, victim_later }) do
            if v and not deleted[v.PKey] and not created[v.PKey] then
              api("DELETE", path_of(v.PKey))
              deleted[v.PKey] = true
            end
          end
          url = page.next and page.next.href
        end
        for _, p in ipairs(all.content) do
          if not deleted[p.PKey] then
            assert.equal(1, seen[p.PKey], "order " .. order .. ": " .. p.PKey)
          end
        end
        for k, n in pairs(seen) do assert.equal(1, n, k) end
      end
    end)

    it("byEmail matches exactly, several profiles per email, %40 and %2B", function()
      local counts, tagged = {}, nil
      for line in io.lines("spec/sandbox/seed.jsonl") do
        local p = cjson.decode(line)
        counts[p.email] = (counts[p.email] or 0) + 1
        if p.email:find("+", 1, true) then tagged = p.email end
      end
      local shared
      for e, n in pairs(counts) do if n >= 2 then shared = e end end
      local s, page = api("GET", PROFILE .. "/byEmail?email=" .. escape(shared))
      assert.equal(200, s)
      assert.equal(counts[shared], #page.content)
      for _, p in ipairs(page.content) do assert.equal(shared, p.email) end
      local _, t = api("GET", PROFILE .. "/byEmail/?email=" .. escape(tagged))
      assert.equal(counts[tagged], #t.content)
      local _, none = api("GET", PROFILE .. "/byEmail?email=" .. escape(tagged:upper()))
      assert.equal(0, #none.content)
      local _, c = api("GET", page.count.href)
      assert.equal(counts[shared], c.count)
    end)

    it("byEmail follows a PATCHed email and a deletion", function()
      local p = first_profile()
      local _, created = api("POST", PROFILE, { email = "moved@example.org" })
      api("PATCH", path_of(p.PKey), { email = "moved@example.org" })
      local _, page = api("GET", PROFILE .. "/byEmail?email=moved%40example.org")
      assert.equal(2, #page.content)
      assert.equal(p.PKey, page.content[1].PKey)     -- older first
      assert.equal("example.org", page.content[1].domain)
      local _, old = api("GET", PROFILE .. "/byEmail?email=" .. escape(p.email))
      for _, x in ipairs(old.content) do assert.is_not.equal(p.PKey, x.PKey) end
      api("DELETE", path_of(created.PKey))
      local _, after = api("GET", PROFILE .. "/byEmail?email=moved%40example.org")
      assert.equal(1, #after.content)
    end)

    it("keeps byEmail and _count in step with the profiles through random changes", function()
      math.randomseed(7)
      local emails = { "r1@example.com", "r2@example.com", "r3@example.net" }
      local _, start = api("GET", PROFILE .. "?_lineCount=60")
      local pool = {}
      for _, p in ipairs(start.content) do pool[#pool + 1] = p.PKey end
      for _ = 1, 120 do
        local op = math.random(3)
        if op == 1 then
          local _, p = api("POST", PROFILE, { email = emails[math.random(#emails)] })
          pool[#pool + 1] = p.PKey
        elseif op == 2 and #pool > 0 then
          api("PATCH", path_of(pool[math.random(#pool)]),
            { email = emails[math.random(#emails)] })
        elseif #pool > 0 then
          api("DELETE", path_of(table.remove(pool, math.random(#pool))))
        end
      end
      local by, n = {}, 0
      local _, dump = request("GET", "/_sandbox/profiles")
      for line in dump:gmatch("[^\n]+") do
        local p = json(line)
        n = n + 1
        by[p.email] = (by[p.email] or 0) + 1
      end
      local _, c = api("GET", PROFILE .. "/_count")
      assert.equal(n, c.count)
      for _, e in ipairs(emails) do
        local _, page = api("GET", PROFILE .. "/byEmail?_lineCount=500&email=" .. escape(e))
        assert.equal(by[e] or 0, #page.content, e)
        local _, ce = api("GET", PROFILE .. "/byEmail/_count?email=" .. escape(e))
        assert.equal(by[e] or 0, ce.count, e)
      end
    end)

    it("byText is a case-sensitive prefix of email or lastName", function()
      api("POST", PROFILE, { email = "zzprefix@example.com", lastName = "Other" })
      api("POST", PROFILE, { email = "other@example.com", lastName = "Zzprefix" })
      local _, page = api("GET", PROFILE .. "/byText?text=zzprefix")
      assert.equal(1, #page.content)
      assert.equal("zzprefix@example.com", page.content[1].email)
      local _, page2 = api("GET", PROFILE .. "/byText?text=Zzpre")
      assert.equal(1, #page2.content)
      assert.equal("Zzprefix", page2.content[1].lastName)
      local _, c = api("GET", PROFILE .. "/byText/_count?text=zz")
      assert.equal(1, c.count)
    end)

    it("withholds next above the pagination limit unless _forcePagination=true", function()
      control("POST", "config", { pagination_limit = 500 })
      local _, page = api("GET", PROFILE .. "?_lineCount=10")
      assert.is_nil(page.next)
      local _, forced = api("GET", PROFILE .. "?_lineCount=10&_forcePagination=true")
      assert.matches("_forcePagination=true", forced.next.href)
      local _, second = api("GET", forced.next.href)
      assert.equal(10, #second.content)
      assert.is_not_nil(second.next)
    end)

    it("can give next.href as a path instead of a URL", function()
      control("POST", "config", { next_href = "relative" })
      local _, page = api("GET", PROFILE .. "?_lineCount=400")
      assert.matches("^/" .. ORG .. "/campaign/profileAndServices/profile%?", page.next.href)
      local seen = {}
      local url = page.next.href
      while url do
        local _, p = api("GET", url)
        for _, x in ipairs(p.content) do seen[#seen + 1] = x end
        url = p.next and p.next.href
      end
      assert.equal(600, #seen)
    end)

    it("rejects a _lineStart it did not make", function()
      assert.equal(500, (api("GET", PROFILE .. "?_lineStart=%40garbage")))
    end)
  end)

  describe("faults", function()
    local function get_first()
      return api("GET", PROFILE .. "?_lineCount=1")
    end

    it("adds latency, fixed or in a range", function()
      control("POST", "faults", { latency_ms = 250 })
      local t = now()
      assert.equal(200, (get_first()))
      assert.is_true(now() - t >= 0.24)
      control("POST", "faults", { latency_ms = { 100, 150 } })
      t = now()
      get_first()
      local dt = now() - t
      assert.is_true(dt >= 0.095 and dt < 3, tostring(dt))
    end)

    it("answers a status for the next N requests, then serves again", function()
      control("POST", "faults", { status = { code = 503, count = 2 } })
      assert.equal(503, (get_first()))
      assert.equal(503, (get_first()))
      assert.equal(200, (get_first()))
    end)

    it("429 with Retry-After (seconds or a date) and a gateway error_code", function()
      control("POST", "faults", { status = { code = 429, count = 1, retry_after = "1" } })
      local s, b, h = get_first()
      assert.same({ 429, "429050", "1" }, { s, b.error_code, h["retry-after"] })
      local date = "Wed, 21 Oct 2026 07:28:00 GMT"
      control("POST", "faults", { status = { code = 429, count = 1, retry_after = date,
        error_code = 429001 } })
      s, b, h = get_first()
      assert.same({ 429, "429001", date }, { s, b.error_code, h["retry-after"] })
      control("POST", "faults", { status = { code = 500, count = 1 } })
      s, b = get_first()
      assert.same({ 500, 500 }, { s, b.code })
    end)

    it("gives any gateway error_code and message asked for", function()
      control("POST", "faults", { status = { code = 403, count = 1, error_code = 403023 } })
      local s, b = get_first()
      assert.same({ 403, "403023", "Forbidden" }, { s, b.error_code, b.message })
      control("POST", "faults", { status = { code = 502, count = 1,
        message = "Oops. Something went wrong. Check your URI and try again." } })
      s, b = get_first()
      assert.same({ 502, 502 }, { s, b.code })
      assert.matches("^Oops", b.message)
    end)

    it("applies a status with a probability, and only to a route or method", function()
      control("POST", "faults", { status = { code = 502, probability = 1 } })
      assert.equal(502, (get_first()))
      assert.equal(502, (get_first()))
      control("POST", "faults", { status = { code = 502, probability = 0 } })
      assert.equal(200, (get_first()))
      local p = first_profile()
      control("POST", "faults", { status = { code = 503, count = 1, method = "PATCH" } })
      assert.equal(200, (api("GET", path_of(p.PKey))))
      assert.equal(503, (api("PATCH", path_of(p.PKey), { title = "x" })))
      control("POST", "faults", { status = { code = 503, count = 1, route = "profile/byEmail" } })
      assert.equal(200, (get_first()))
      assert.equal(503, (api("GET", PROFILE .. "/byEmail?email=a%40example.com")))
    end)

    it("never applies to /_sandbox/, and DELETE clears them", function()
      control("POST", "faults", { status = { code = 503 }, latency_ms = 1500 })
      local t = now()
      control("GET", "counters")
      assert.is_true(now() - t < 1.2)
      assert.equal(503, (get_first()))
      control("DELETE", "faults")
      assert.same({}, control("GET", "faults"))
      assert.equal(200, (get_first()))
    end)

    it("drops the connection without an answer", function()
      control("POST", "faults", { drop = { count = 1 } })
      local c = connect()
      send_raw(c, "GET", PROFILE .. "?_lineCount=1")
      local status, _, _, err = read_raw(c)
      c:close()
      assert.is_nil(status)
      assert.equal("closed", err)
      assert.equal(200, (get_first()))
    end)

    it("drops the connection after serving, with after=true: the change is made", function()
      local p = first_profile()
      control("POST", "faults", { drop = { count = 1, after = true, method = "PATCH" } })
      local c = connect()
      send_raw(c, "PATCH", path_of(p.PKey), '{"title":"Prof."}')
      local status, _, _, err = read_raw(c)
      c:close()
      assert.is_nil(status)
      assert.equal("closed", err)
      local _, now_p = api("GET", path_of(p.PKey))
      assert.equal("Prof.", now_p.title)
    end)

    it("truncates a body: Content-Length larger than what comes", function()
      control("POST", "faults", { truncate = { count = 1 } })
      local c = connect()
      send_raw(c, "GET", PROFILE .. "?_lineCount=3")
      local status, headers, body, err = read_raw(c)
      c:close()
      assert.equal(200, status)
      assert.equal("closed", err)
      assert.is_true(#body < tonumber(headers["content-length"]))
      assert.is_false(pcall(cjson.decode, body))
    end)

    it("answers 200 with a body that is not JSON", function()
      control("POST", "faults", { garbage = { count = 1 } })
      local s, text = request("GET", PROFILE .. "?_lineCount=1")
      assert.equal(200, s)
      assert.is_false(pcall(cjson.decode, text))
      assert.equal(200, (get_first()))
    end)

    it("trickles a body, whole but slow, or stalls halfway", function()
      control("POST", "faults", { trickle = { count = 1, bytes_per_sec = 4000 } })
      local t = now()
      local c = connect()
      send_raw(c, "GET", PROFILE .. "?_lineCount=1")
      local status, headers, body = read_raw(c)
      c:close()
      local dt = now() - t
      assert.equal(200, status)
      assert.equal(tonumber(headers["content-length"]), #body)
      assert.is_table(json(body).content)
      assert.is_true(dt >= 0.3, tostring(dt))    -- ~2 kB at 4 kB/s

      control("POST", "faults", { trickle = { count = 1, bytes_per_sec = 100000,
        stall_ms = 400 } })
      t = now()
      c = connect()
      send_raw(c, "GET", PROFILE .. "?_lineCount=1")
      local _, h2, partial, err = read_raw(c)
      c:close()
      assert.equal("closed", err)
      assert.is_true(#partial < tonumber(h2["content-length"]))
      assert.is_true(now() - t >= 0.38)
    end)

    it("rate-limits: beyond N a second, 429 429050 with Retry-After: 1", function()
      control("POST", "faults", { rate_limit = 3 })
      local c = connect()
      local limited, retry, code = 0, nil, nil
      for _ = 1, 12 do
        send_raw(c, "GET", PROFILE .. "/_count")
        local status, headers, body = read_raw(c)
        if status == 429 then
          limited = limited + 1
          retry, code = headers["retry-after"], json(body).error_code
        end
      end
      c:close()
      assert.is_true(limited >= 1)
      assert.same({ "1", "429050" }, { retry, code })
      -- by the sandbox's own clock: at most 3 served in any one second
      local served = {}
      for _, e in ipairs(control("GET", "log")) do
        if e.status == 200 then
          local sec = math.floor(e.t)
          served[sec] = (served[sec] or 0) + 1
          assert.is_true(served[sec] <= 3, "second " .. sec)
        end
      end
    end)

    it("refuses an unknown fault", function()
      local s = request("POST", "/_sandbox/faults", '{"meteor":1}')
      assert.equal(400, s)
    end)
  end)

  describe("counters and log", function()
    it("count requests by method and route, and connections accepted", function()
      local p = first_profile()
      control("DELETE", "counters")
      local c = connect()
      for _ = 1, 3 do
        send_raw(c, "GET", path_of(p.PKey))
        assert.equal(200, (read_raw(c)))
      end
      send_raw(c, "PATCH", path_of(p.PKey), '{"title":"x"}')
      assert.equal(200, (read_raw(c)))
      c:close()
      api("GET", PROFILE .. "/byEmail?email=x%40example.com")
      api("GET", PROFILE .. "/_count")
      local cnt = control("GET", "counters")
      assert.equal(3, cnt.requests["GET profile/pkey"])
      assert.equal(1, cnt.requests["PATCH profile/pkey"])
      assert.equal(1, cnt.requests["GET profile/byEmail"])
      assert.equal(1, cnt.requests["GET profile/_count"])
      assert.equal(5, cnt.methods.GET)
      assert.equal(6, cnt.total)
      assert.equal(3, cnt.connections)   -- one kept alive, two of LuaSocket's
    end)

    it("names the other routes", function()
      api("POST", PROFILE, { email = "r@example.com" })
      api("GET", PROFILE)
      api("GET", "/" .. ORG .. "/campaign/nothing")
      request("POST", "/ims/token/v3", "grant_type=client_credentials")
      local cnt = control("GET", "counters")
      assert.equal(1, cnt.requests["POST profile"])
      assert.equal(1, cnt.requests["GET profile"])
      assert.equal(1, cnt.requests["GET other"])
      assert.equal(1, cnt.requests["POST ims/token"])
    end)

    it("log the requests with the sandbox's time, route, status, connection", function()
      control("POST", "faults", { status = { code = 503, count = 1 } })
      local c = connect()
      local t0 = now()
      send_raw(c, "GET", PROFILE .. "/_count")
      read_raw(c)
      socket.sleep(0.2)
      send_raw(c, "GET", PROFILE .. "/_count")
      read_raw(c)
      c:close()
      local log = control("GET", "log")
      assert.equal(2, #log)
      assert.same({ "GET", "profile/_count", 503 }, { log[1].method, log[1].route, log[1].status })
      assert.equal(200, log[2].status)
      assert.equal(log[1].conn, log[2].conn)
      local gap = log[2].t - log[1].t
      assert.is_true(gap >= 0.19 and gap < 3, tostring(gap))
      assert.is_true(math.abs(log[1].t - t0) < 5)
      assert.equal(1, #control("GET", "log?since=" .. log[2].t))
    end)
  end)

  describe("state and reset", function()
    it("shows every profile as JSON Lines, and one by PKey", function()
      local s, text = request("GET", "/_sandbox/profiles")
      assert.equal(200, s)
      local n, pkey = 0, nil
      for line in text:gmatch("[^\n]+") do
        n = n + 1
        pkey = json(line).PKey
      end
      assert.equal(1000, n)
      local one = control("GET", "profile/" .. escape(pkey))
      assert.equal(pkey, one.PKey)
      assert.equal(404, (request("GET", "/_sandbox/profile/%40none")))
    end)

    it("warms every profile, which then reads as before", function()
      local before = first_profile()
      assert.equal(1000, control("POST", "warm").profiles)
      assert.same(before, first_profile())
    end)

    it("reset restores the seed, faults, counters and config", function()
      local p = first_profile()
      api("DELETE", path_of(p.PKey))
      api("POST", PROFILE, { email = "extra@example.com" })
      control("POST", "faults", { latency_ms = 1000 })
      control("POST", "config", { org = "elsewhere" })
      reset()
      local _, again = api("GET", path_of(p.PKey))
      assert.equal(p.PKey, again.PKey)
      assert.equal(p.lastModified, again.lastModified)
      local _, c = api("GET", PROFILE .. "/_count")
      assert.equal(1000, c.count)
      assert.same({}, control("GET", "faults"))
      assert.equal(2, control("GET", "counters").total)
    end)

    it("loads another seed; lines lacking fields get defaults and stable PKeys", function()
      local f = io.open(SHARED_SEED)
      if not f then
        pending("no ../shared/data here")
        return
      end
      f:close()
      local path = io.popen("realpath " .. SHARED_SEED):read("*l")
      local own = io.popen("realpath spec/sandbox/seed.jsonl"):read("*l")
      -- back to the project's seed for the others, whatever happens
      finally(function() control("POST", "reset", { seed = own }) end)
      local r = control("POST", "reset", { seed = path })
      assert.equal(1005, r.profiles)
      local _, page = api("GET", PROFILE .. "?_lineCount=3")
      local p = page.content[1]
      assert.matches("^@", p.PKey)
      assert.equal(false, p.blackList)
      assert.equal("", p.location.city)
      assert.equal(p.email:match("@(.*)$"), p.domain)
      reset()  -- the same seed again: same PKeys
      local _, page2 = api("GET", PROFILE .. "?_lineCount=3")
      assert.equal(p.PKey, page2.content[1].PKey)
    end)

    it("refuses a seed it cannot read, keeping the state", function()
      local s = request("POST", "/_sandbox/reset", '{"seed":"/nonexistent.jsonl"}')
      assert.equal(400, s)
      local _, c = api("GET", PROFILE .. "/_count")
      assert.equal(1000, c.count)
    end)
  end)
end)
