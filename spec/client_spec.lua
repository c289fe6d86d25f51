-- The client against the sandbox: every method, awkward PKeys, closing,
-- garbage collection, keep-alive, misuse, and the on_request hook.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/client_spec.lua
--
-- Expected values come from the sandbox itself (its control endpoint),
-- never from copies of the seed.
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local sandbox = require "spec.support.sandbox"
local campaign = require "campaign"

---------------------------------------------------------------- helpers

local function set_of(list, field)
  local s = {}
  for _, v in ipairs(list) do s[field and v[field] or v] = true end
  return s
end

local function keys_of(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function pkeys(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p.PKey end
  table.sort(out)
  return out
end

-- Profiles of the sandbox that match `pred`, sorted by PKey.
local function where(all, pred)
  local out = {}
  for _, p in ipairs(all) do
    if pred(p) then out[#out + 1] = p end
  end
  return out
end

-- An email that several profiles share, and one with a "+" tag.
local function shared_email(all)
  local n = {}
  for _, p in ipairs(all) do n[p.email] = (n[p.email] or 0) + 1 end
  local best
  for e, k in pairs(n) do
    if k >= 2 and e ~= "" and (not best or k > n[best] or (k == n[best] and e < best)) then
      best = e
    end
  end
  return best
end

local function plus_email(all)
  for _, p in ipairs(all) do
    if p.email:find("+", 1, true) then return p.email end
  end
end

-- The seed's profiles whose PKeys hold "/", "+" and "=".
local function awkward_profiles(all)
  local found = {}
  for _, ch in ipairs({ "/", "+", "=" }) do
    for _, p in ipairs(all) do
      if p.PKey:find(ch, 1, true) then
        found[#found + 1] = p
        break
      end
    end
  end
  return found
end

-- The fields of `got` (all but href, which names the resource) equal
-- those the sandbox holds.
local function assert_same_profile(held, got)
  for k, v in pairs(got) do
    -- href and subscriptions.href name the resource the profile was read from
    if k ~= "href" and k ~= "subscriptions" then
      assert.are.same(held[k], v, "field " .. k)
    end
  end
  for k in pairs(held) do
    if k ~= "href" and not k:match("^cus") then
      assert.is_not_nil(got[k], "missing field " .. k)
    end
  end
end

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "did not raise (wanted " .. pattern .. ")")
  assert.is_string(err)
  assert.matches(pattern, err, 1, false)
  return err
end

---------------------------------------------------------------- specs

describe("client", function()
  local client, all

  setup(function()
    -- the seed gives the same profiles, PKeys included, at every reset
    sandbox.reset()
    all = sandbox.profiles()
  end)

  before_each(function()
    sandbox.reset()
    client = sandbox.client{ retries = 0 }
    sandbox.clear_counters()
  end)

  after_each(function()
    if client then client:close() end
    sandbox.clear_faults()
  end)

  describe("profiles", function()
    it("get_profile returns the profile the sandbox holds", function()
      for _, i in ipairs({ 1, #all // 2, #all }) do
        local held = all[i]
        local got = assert(client:get_profile(held.PKey))
        assert_same_profile(held, got)
      end
      assert.are.equal(3, sandbox.count("GET profile/pkey"))
    end)

    it("create_profile returns the created profile with its new PKey and defaults",
      function()
        local created = assert(client:create_profile{
          email = "zoe+news@example.com", firstName = "Zoë" })
        assert.is_string(created.PKey)
        assert.are.equal("zoe+news@example.com", created.email)
        assert.are.equal("Zoë", created.firstName)
        assert.is_nil(set_of(all, "PKey")[created.PKey], "PKey is not new")
        local held = sandbox.profile(created.PKey)
        assert.is_table(held)
        assert_same_profile(held, created)
        -- fields not sent come back at the server's defaults
        assert.are.equal(held.lastName, created.lastName)
        assert.is_boolean(created.ccpaOptOut)
        assert.are.equal(1, sandbox.count("POST profile"))
        assert.are.equal(#all + 1, #sandbox.profiles())
      end)

    it("update_profile sends the given fields only and returns the server's answer",
      function()
        local before = all[7]
        local answer = assert(client:update_profile(before.PKey, { lastName = "Ōta" }))
        assert.are.equal(before.PKey, answer.PKey)
        assert.is_string(answer.href)
        local after = sandbox.profile(before.PKey)
        assert.are.equal("Ōta", after.lastName)
        assert.are.equal(before.firstName, after.firstName)
        assert.are.equal(before.email, after.email)
        assert.are.equal(1, sandbox.count("PATCH profile/pkey"))
      end)

    it("update_profile sends nested fields as they are", function()
      local before = all[6]
      assert(client:update_profile(before.PKey, { location = { city = "Łódź" } }))
      local after = sandbox.profile(before.PKey)
      assert.are.equal("Łódź", after.location.city)
      assert.are.equal(before.location.zipCode, after.location.zipCode)
    end)

    it("update_profile returns the whole profile when the server answers with it",
      function()
        sandbox.config{ patch_response = "full" }
        local p = all[8]
        local answer = assert(client:update_profile(p.PKey, { firstName = "Ana" }))
        assert_same_profile(sandbox.profile(p.PKey), answer)
        assert.are.equal("Ana", answer.firstName)
      end)

    it("delete_profile returns true and the profile is gone", function()
      local p = all[9]
      assert.is_true(client:delete_profile(p.PKey))
      assert.is_nil(sandbox.profile(p.PKey))
      local again, err = client:get_profile(p.PKey)
      assert.is_nil(again)
      assert.are.equal(404, err.status)
    end)

    it("find_profiles{email} returns every profile with exactly that email", function()
      local email = shared_email(all)
      assert.is_string(email, "the seed has no shared email")
      local want = where(all, function(p) return p.email == email end)
      assert.is_true(#want >= 2)
      local got = assert(client:find_profiles{ email = email })
      assert.are.same(pkeys(want), pkeys(got))
      assert.are.equal(1, sandbox.count("GET profile/byEmail"))
    end)

    it("find_profiles{email} sends a '+' so that it stays a '+'", function()
      local email = plus_email(all)
      assert.is_string(email, "the seed has no '+' email")
      local want = where(all, function(p) return p.email == email end)
      local got = assert(client:find_profiles{ email = email })
      assert.is_true(#got >= 1)
      assert.are.same(pkeys(want), pkeys(got))
    end)

    it("find_profiles follows every page", function()
      local email = shared_email(all)
      local want = where(all, function(p) return p.email == email end)
      local got = assert(client:find_profiles{ email = email, page_size = 1 })
      assert.are.same(pkeys(want), pkeys(got))
      assert.is_true(sandbox.count("GET profile/byEmail") >= #want)
    end)

    it("find_profiles{text} finds by prefix of email or last name, case-sensitive",
      function()
        local t = all[3].lastName:sub(1, 3)
        local want = where(all, function(p)
          return p.email:sub(1, #t) == t or p.lastName:sub(1, #t) == t
        end)
        local got = assert(client:find_profiles{ text = t, page_size = 7 })
        assert.are.same(pkeys(want), pkeys(got))
        local lower = t:lower()
        if lower ~= t then
          local want_lower = where(all, function(p)
            return p.email:sub(1, #lower) == lower or p.lastName:sub(1, #lower) == lower
          end)
          local got_lower = assert(client:find_profiles{ text = lower })
          assert.are.same(pkeys(want_lower), pkeys(got_lower))
        end
      end)

    it("find_profiles of an email nobody has is an empty array", function()
      local got = assert(client:find_profiles{ email = "nobody.at.all@example.com" })
      assert.are.same({}, got)
    end)

    it("count_profiles counts all, by email and by text", function()
      local n = client:count_profiles()
      assert.are.equal(#all, n)
      assert.are.equal("integer", math.type(n))
      local email = shared_email(all)
      assert.are.equal(#where(all, function(p) return p.email == email end),
        client:count_profiles{ email = email })
      local t = all[5].email:sub(1, 2)
      assert.are.equal(#where(all, function(p)
        return p.email:sub(1, #t) == t or p.lastName:sub(1, #t) == t
      end), client:count_profiles{ text = t })
      assert.are.equal(3, sandbox.count("GET profile/_count"))
    end)
  end)

  describe("the profiles iterator", function()
    it("gives every profile once, page after page", function()
      local seen, n = {}, 0
      for p in client:profiles{ page_size = 150 } do
        assert.is_nil(seen[p.PKey], "repeated " .. p.PKey)
        seen[p.PKey] = true
        n = n + 1
      end
      assert.are.equal(#all, n)
      assert.are.same(set_of(all, "PKey"), seen)
      assert.are.equal(math.ceil(#all / 150), sandbox.count("GET profile"))
    end)

    it("orders by a field, ascending and descending", function()
      local emails = {}
      for p in client:profiles{ page_size = 300, order = "email" } do
        emails[#emails + 1] = p.email
      end
      assert.are.equal(#all, #emails)
      for i = 2, #emails do assert.is_true(emails[i - 1] <= emails[i]) end
      local down = {}
      for p in client:profiles{ page_size = 300, order = "email", descending = true } do
        down[#down + 1] = p.email
      end
      assert.are.equal(#all, #down)
      for i = 2, #down do assert.is_true(down[i - 1] >= down[i]) end
    end)

    it("filters by email and by text", function()
      local email = shared_email(all)
      local got = {}
      for p in client:profiles{ email = email, page_size = 1 } do got[#got + 1] = p end
      assert.are.same(pkeys(where(all, function(p) return p.email == email end)), pkeys(got))
      local t = all[11].lastName:sub(1, 2)
      got = {}
      for p in client:profiles{ text = t, page_size = 10 } do got[#got + 1] = p end
      assert.are.same(pkeys(where(all, function(p)
        return p.email:sub(1, #t) == t or p.lastName:sub(1, #t) == t
      end)), pkeys(got))
    end)

    it("always asks for _forcePagination (all rows past the pagination limit)", function()
      sandbox.config{ pagination_limit = 10 }
      local n = 0
      for _ in client:profiles{ page_size = 100 } do n = n + 1 end
      assert.are.equal(#all, n)
    end)

    it("follows a relative next.href", function()
      sandbox.config{ next_href = "relative" }
      local n = 0
      for _ in client:profiles{ page_size = 400 } do n = n + 1 end
      assert.are.equal(#all, n)
    end)

    it("raises the err table when a page fails, rather than ending early", function()
      local n = 0
      local ok, err = pcall(function()
        for _ in client:profiles{ page_size = 100 } do
          n = n + 1
          if n == 1 then
            sandbox.faults{ status = { code = 500, count = 1, route = "profile" } }
          end
        end
      end)
      assert.is_false(ok)
      assert.is_table(err)
      assert.are.equal("http", err.kind)
      assert.are.equal(500, err.status)
      assert.are.equal(100, n)
    end)
  end)

  describe("the opt-out", function()
    it("get_ccpa_optout reads the flag the sandbox holds", function()
      local yes = where(all, function(p) return p.ccpaOptOut == true end)[1]
      local no = where(all, function(p) return p.ccpaOptOut == false end)[1]
      assert.is_true(client:get_ccpa_optout(yes.PKey))
      assert.is_false(client:get_ccpa_optout(no.PKey))
    end)

    it("set_ccpa_optout changes it both ways and returns true", function()
      local no = where(all, function(p) return p.ccpaOptOut == false end)[1]
      assert.is_true(client:set_ccpa_optout(no.PKey, true))
      assert.is_true(sandbox.profile(no.PKey).ccpaOptOut)
      assert.is_true(client:set_ccpa_optout(no.PKey, false))
      assert.is_false(sandbox.profile(no.PKey).ccpaOptOut)
      assert.are.equal(2, sandbox.count("PATCH profile/pkey"))
    end)

    it("uses ccpa_optout_field and resource for older instances", function()
      local ext = sandbox.client{ resource = "profileAndServicesExt",
                                  ccpa_optout_field = "cusOptOutCcpa" }
      local p = all[2]
      local held = sandbox.profile(p.PKey)
      assert.are.equal(held.cusOptOutCcpa, ext:get_ccpa_optout(p.PKey))
      assert.is_true(ext:set_ccpa_optout(p.PKey, not held.cusOptOutCcpa))
      local after = sandbox.profile(p.PKey)
      assert.are.equal(not held.cusOptOutCcpa, after.cusOptOutCcpa)
      assert.are.equal(held.ccpaOptOut, after.ccpaOptOut)
      ext:close()
    end)

    it("answers a protocol err when the profile has no such boolean field", function()
      local odd = sandbox.client{ ccpa_optout_field = "noSuchField", retries = 0 }
      local v, err = odd:get_ccpa_optout(all[1].PKey)
      odd:close()
      assert.is_nil(v)
      assert.are.equal("protocol", err.kind)
      assert.are.equal(200, err.status)
      assert.are.equal("UNEXPECTED_ANSWER", err.code)
      assert.is_false(err.retryable)
    end)
  end)

  describe("request", function()
    it("takes a path relative to <base_url>/<org>/campaign/", function()
      local page = assert(client:request("GET", "profileAndServices/profile?_lineCount=2"))
      assert.are.equal(2, #page.content)
      assert.are.equal(all[1].PKey, page.content[1].PKey)
      assert.is_string(page.next.href)
    end)

    it("takes a path from the origin and an href from an answer", function()
      local first = assert(client:request("GET",
        "/" .. sandbox.org .. "/campaign/profileAndServices/profile?_lineCount=2"))
      local second = assert(client:request("GET", first.next.href))
      assert.are.equal(all[3].PKey, second.content[1].PKey)
      assert.are.equal(2, sandbox.count("GET profile"))
    end)

    it("sends a table or a JSON string as the body", function()
      local p = all[4]
      local path = "profileAndServices/profile/" .. sandbox.escape(p.PKey)
      assert(client:request("PATCH", path, { middleName = "Table" }))
      assert.are.equal("Table", sandbox.profile(p.PKey).middleName)
      assert(client:request("PATCH", path, '{"middleName":"String"}'))
      assert.are.equal("String", sandbox.profile(p.PKey).middleName)
      local created = assert(client:request("POST", "profileAndServices/profile",
        { email = "posted@example.com" }))
      assert.are.equal("posted@example.com", sandbox.profile(created.PKey).email)
    end)

    it("returns true for an empty answer", function()
      local p = all[5]
      assert.is_true(client:request("DELETE",
        "profileAndServices/profile/" .. sandbox.escape(p.PKey)))
      assert.is_nil(sandbox.profile(p.PKey))
    end)

    it("returns the server's err for a method the resource refuses", function()
      local v, err = client:request("PUT",
        "profileAndServices/profile/" .. sandbox.escape(all[1].PKey), {})
      assert.is_nil(v)
      assert.are.equal("http", err.kind)
      assert.are.equal(405, err.status)
      assert.are.equal(1, sandbox.count("PUT profile/pkey"))
    end)
  end)

  describe("awkward PKeys", function()
    it("of the seed, with '/', '+' and '=', work with every method", function()
      local awkward = awkward_profiles(all)
      assert.are.equal(3, #awkward)
      for _, p in ipairs(awkward) do
        assert.are.equal(p.PKey, assert(client:get_profile(p.PKey)).PKey)
        assert.are.equal(p.ccpaOptOut, client:get_ccpa_optout(p.PKey))
        assert.is_true(client:set_ccpa_optout(p.PKey, not p.ccpaOptOut))
        assert.are.equal(not p.ccpaOptOut, sandbox.profile(p.PKey).ccpaOptOut)
        assert(client:update_profile(p.PKey, { middleName = "Awk" }))
        assert.are.equal("Awk", sandbox.profile(p.PKey).middleName)
        assert.is_true(client:delete_profile(p.PKey))
        assert.is_nil(sandbox.profile(p.PKey))
      end
      local c = sandbox.counters()
      assert.are.equal(5 * 3, c.total)
      assert.is_nil(c.requests["GET other"])
    end)

    it("reach the server as one path segment, byte for byte", function()
      local odd = {
        "50% off", "with space", "Zoë/Ōta", "?x=1&y=2", "#frag", "a+b=c/d",
        "@x/../../ims/token/v3", "%2F%40", "\\back", "tab\there",
      }
      for _, k in ipairs(odd) do
        local v, err = client:get_profile(k)
        assert.is_nil(v, k)
        assert.are.equal("http", err.kind, k)
        assert.are.equal(500, err.status, k)
        assert.are.equal("XTK-170036", err.code, k)
        -- the server echoes the PKey it parsed: the very one sent (a tab is
        -- kept out of err.message, which stays printable)
        local printable = k:gsub("%c", " ")
        assert.is_truthy(err.message:find("'" .. printable .. "'", 1, true),
          k .. " -> " .. err.message)
      end
      local c = sandbox.counters()
      assert.are.equal(#odd, c.requests["GET profile/pkey"])
      assert.are.equal(#odd, c.total)
    end)

    it("that do not exist answer 404 with the PKey named", function()
      local k = "@no/such+profile=="
      for _, call in ipairs({
        function() return client:get_profile(k) end,
        function() return client:update_profile(k, { middleName = "x" }) end,
        function() return client:delete_profile(k) end,
        function() return client:set_ccpa_optout(k, true) end,
      }) do
        local v, err = call()
        assert.is_nil(v)
        assert.are.equal(404, err.status)
        assert.are.equal("RST-360011", err.code)
        assert.is_truthy(err.message:find("'" .. k .. "'", 1, true), err.message)
      end
    end)
  end)

  describe("closing", function()
    it("<close> closes the client at the end of its scope", function()
      local kept
      do
        local c <close> = sandbox.client()
        kept = c
        assert(c:get_profile(all[1].PKey))
        assert.is_falsy(tostring(c):find("closed", 1, true))
      end
      assert.is_truthy(tostring(kept):find("closed", 1, true))
      raises("closed", kept.get_profile, kept, all[1].PKey)
    end)

    -- Closing from inside a call on the same client (its hook, on_result,
    -- the op source; close() or a <close> variable) once freed what the
    -- call went on to use: a crash.  It raises instead, and the call ends
    -- as it would have.
    it("raises when a call on the client is under way, by close or <close>", function()
      local k = all[1].PKey
      local function closers(c)
        return {
          function() c:close() end,
          function() local _ <close> = c end,
        }
      end
      for i = 1, 2 do
        local c
        c = sandbox.client { on_request = function() closers(c)[i]() end }
        local ok, err = pcall(c.get_profile, c, k)
        assert.is_false(ok)
        assert.matches("cannot close a client while a call on it runs", err)
        assert.is_table(sandbox.client():get_profile(k))
        local n = 0
        ok, err = pcall(function()
          for _ in c:profiles { page_size = 2 } do n = n + 1 end
        end)
        assert.is_false(ok, n)
        assert.matches("cannot close a client while a call on it runs", err)
        c:close()

        c = sandbox.client()
        ok, err = pcall(c.bulk, c, { { "get_profile", k }, { "get_profile", k } },
          { on_result = function() closers(c)[i]() end })
        assert.is_false(ok)
        assert.matches("cannot close a client while a call on it runs", err)
        local given = 0
        ok, err = pcall(c.bulk, c, function()
          given = given + 1
          if given == 2 then closers(c)[i]() end
          if given <= 3 then return { "get_profile", k } end
        end)
        assert.is_false(ok)
        assert.matches("cannot close a client while a call on it runs", err)
        assert.is_table(c:get_profile(k))
        c:close()
        assert.matches("closed", tostring(c))
      end
    end)

    it("a bulk from the hook of a single call raises, and the call ends with it", function()
      local k = all[1].PKey
      local c
      c = sandbox.client { on_request = function()
        c:bulk({ { "get_profile", k } }, { concurrency = 16 })
      end }
      local ok, err = pcall(c.get_profile, c, k)
      assert.is_false(ok)
      assert.matches("a call on this client is already running", err)
      c:close()
    end)

    it("a second close does nothing", function()
      local c = sandbox.client()
      assert(c:get_profile(all[1].PKey))
      c:close()
      assert.has_no.errors(function() c:close() end)
      assert.has_no.errors(function() c:close() end)
    end)

    it("a method on a closed client raises, and sends nothing", function()
      local c = sandbox.client()
      c:close()
      local k = all[1].PKey
      for name, args in pairs({
        get_profile = { k }, create_profile = { { email = "x@example.com" } },
        update_profile = { k, { firstName = "x" } }, delete_profile = { k },
        find_profiles = { { email = "x@example.com" } }, count_profiles = {},
        get_ccpa_optout = { k }, set_ccpa_optout = { k, true },
        request = { "GET", "profileAndServices/profile" }, profiles = {},
        bulk = { { { "get_profile", k } } },
      }) do
        raises("closed", c[name], c, table.unpack(args))
      end
      assert.are.equal(0, sandbox.counters().total)
    end)

    it("tostring shows the organization, never a credential", function()
      local s = tostring(client)
      assert.is_truthy(s:find(sandbox.org, 1, true))
      assert.is_falsy(s:find(sandbox.access_token, 1, true))
      assert.is_falsy(s:find(sandbox.api_key, 1, true))
      local oauth = campaign.new{ org = sandbox.org, client_id = sandbox.api_key,
        client_secret = sandbox.client_secret, base_url = sandbox.base_url,
        ims_url = sandbox.base_url }
      assert.is_falsy(tostring(oauth):find(sandbox.client_secret, 1, true))
      oauth:close()
    end)
  end)

  describe("garbage collection", function()
    it("collects a client nobody holds (a weak table proves it)", function()
      local weak = setmetatable({}, { __mode = "v" })
      local function make()
        local c = sandbox.client()
        assert(c:get_profile(all[1].PKey))
        weak.used = c
        weak.unused = sandbox.client()
        -- a hook that holds its own client: a cycle through the client
        local cyc
        cyc = sandbox.client{ on_request = function() return cyc end }
        assert(cyc:get_profile(all[1].PKey))
        weak.cycle = cyc
      end
      make()
      assert.is_not_nil(weak.used)
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak.used)
      assert.is_nil(weak.unused)
      assert.is_nil(weak.cycle)
    end)

    it("keeps a client that is still held", function()
      local weak = setmetatable({}, { __mode = "v" })
      local held = sandbox.client()
      weak[1] = held
      collectgarbage()
      collectgarbage()
      assert.are.equal(held, weak[1])
      assert(held:get_profile(all[1].PKey))
      held:close()
    end)
  end)

  describe("keep-alive", function()
    it("sequential calls share one connection (1,000 calls, one connection)", function()
      local k = all[10].PKey
      for _ = 1, 1000 do
        assert(client:get_profile(k))
      end
      local c = sandbox.counters()
      assert.are.equal(1000, c.total)
      assert.are.equal(1, c.connections)
    end)

    it("different methods and failures keep the same connection", function()
      local p = all[12]
      assert(client:get_profile(p.PKey))
      assert(client:set_ccpa_optout(p.PKey, true))
      assert(client:create_profile{ email = "kept@example.com" })
      assert(client:find_profiles{ email = p.email })
      assert(client:count_profiles())
      assert.is_nil(client:get_profile("@no-such-profile"))
      assert(client:get_profile(p.PKey))
      local c = sandbox.counters()
      assert.are.equal(7, c.total)
      assert.are.equal(1, c.connections)
    end)
  end)

  describe("misuse raises naming the argument or option", function()
    local function new(extra) return campaign.new(sandbox.options(extra)) end

    it("in campaign.new", function()
      raises("^bad option 'timout' to 'campaign.new' %(unknown option%)$",
        campaign.new, sandbox.options{ timout = 1 })
      raises("'org'", campaign.new, { api_key = "k", access_token = "t" })
      raises("'org'", new, { org = 42 })
      raises("'timeout'", new, { timeout = "5" })
      raises("'timeout'", new, { timeout = -1 })
      -- a time limit under a millisecond: every call would end at once,
      -- or (as libcurl reads 0 ms) never
      raises("'timeout' .*at least 0.001", new, { timeout = 0 })
      raises("'connect_timeout'", new, { connect_timeout = 0.0004 })
      raises("'stall_timeout'", new, { stall_timeout = 0 })
      raises("'retries'", new, { retries = 1.5 })
      raises("'max_body'", new, { max_body = 0 })
      raises("'base_url'", new, { base_url = "ftp://127.0.0.1" })
      raises("'base_url'", new, { base_url = sandbox.base_url .. "/acme" })
      raises("'access_token'", new, { access_token = "tok\r\nX-Evil: 1" })
      raises("'api_key'", new, { api_key = "key\nX-Evil: 1" })
      raises("'on_request'", new, { on_request = "print" })
      raises("'resource'", new, { resource = "../ims" })
      raises("bad argument #1", campaign.new, "acme")
    end)

    it("in the methods, before anything is sent", function()
      local k = all[1].PKey
      local c = client
      raises("^bad argument #1 to 'get_profile' %(a PKey string expected%)$",
        c.get_profile, c)
      raises("^bad argument #1 to 'get_profile'", c.get_profile, c, 42)
      raises("^bad argument #1 to 'get_profile'", c.get_profile, c, "")
      raises("^bad argument #1 to 'get_profile'", c.get_profile, c, "..")
      raises("^bad argument #1 to 'create_profile'", c.create_profile, c, "x")
      raises("^bad argument #2 to 'update_profile'", c.update_profile, c, k)
      raises("^bad argument #2 to 'update_profile'", c.update_profile, c, k, "x")
      raises("^bad argument #1 to 'delete_profile'", c.delete_profile, c, false)
      raises("^bad argument #1 to 'find_profiles'", c.find_profiles, c)
      raises("^bad argument #1 to 'find_profiles'", c.find_profiles, c, {})
      raises("^bad argument #1 to 'find_profiles'.*emial", c.find_profiles, c,
        { emial = "x@example.com" })
      raises("^bad argument #1 to 'find_profiles'", c.find_profiles, c, { email = 1 })
      raises("^bad argument #1 to 'count_profiles'", c.count_profiles, c, "x")
      raises("^bad argument #1 to 'profiles'.*page_size", c.profiles, c, { page_size = 0 })
      raises("^bad argument #1 to 'profiles'.*descending", c.profiles, c,
        { descending = "yes" })
      raises("^bad argument #1 to 'get_ccpa_optout'", c.get_ccpa_optout, c, nil)
      raises("^bad argument #2 to 'set_ccpa_optout'", c.set_ccpa_optout, c, k, "true")
      raises("^bad argument #2 to 'set_ccpa_optout'", c.set_ccpa_optout, c, k)
      raises("^bad argument #1 to 'request'", c.request, c, "HEAD", "x")
      raises("^bad argument #2 to 'request'", c.request, c, "GET")
      raises("^bad argument #2 to 'request'", c.request, c, "GET", "a b")
      raises("^bad argument #2 to 'request'", c.request, c, "GET",
        "http://127.0.0.2:1/" .. sandbox.org .. "/campaign/profileAndServices/profile")
      raises("^bad argument #3 to 'request'", c.request, c, "POST",
        "profileAndServices/profile", 42)
      assert.are.equal(0, sandbox.counters().total)
      -- and the client still works
      assert(c:get_profile(k))
    end)
  end)

  describe("the on_request hook", function()
    local FIELDS = { "elapsed", "method", "route", "status", "try" }

    it("is called after every try with method, route, status, elapsed, try", function()
      local seen = {}
      local c = sandbox.client{ retries = 1, on_request = function(info)
        seen[#seen + 1] = info
      end }
      local k = all[1].PKey
      assert(c:get_profile(k))
      sandbox.faults{ status = { code = 503, count = 1 } }
      assert(c:set_ccpa_optout(k, true))
      c:close()
      assert.are.equal(3, #seen)
      for _, info in ipairs(seen) do
        assert.are.same(FIELDS, keys_of(info))
        assert.are.equal("number", type(info.elapsed))
        assert.is_true(info.elapsed >= 0 and info.elapsed < 10)
        assert.are.equal("integer", math.type(info.try))
      end
      assert.are.same({ "GET", "profile/pkey", 200, 1 },
        { seen[1].method, seen[1].route, seen[1].status, seen[1].try })
      assert.are.same({ "PATCH", "profile/pkey", 503, 1 },
        { seen[2].method, seen[2].route, seen[2].status, seen[2].try })
      assert.are.same({ "PATCH", "profile/pkey", 200, 2 },
        { seen[3].method, seen[3].route, seen[3].status, seen[3].try })
    end)

    it("names routes, never a PKey, a header or a body", function()
      local seen = {}
      local c = sandbox.client{ on_request = function(info) seen[#seen + 1] = info end }
      local p = all[1]
      assert(c:get_profile(p.PKey))
      assert(c:update_profile(p.PKey, { middleName = "Secretive" }))
      assert(c:create_profile{ email = "hooked@example.com" })
      assert(c:find_profiles{ email = p.email })
      assert(c:find_profiles{ text = "a" })
      assert(c:count_profiles())
      assert(c:request("GET", "profileAndServices/profile?_lineCount=1"))
      for _ in c:profiles{ page_size = 500 } do end
      c:close()
      local routes = {}
      for _, info in ipairs(seen) do
        routes[info.route] = true
        for _, v in pairs(info) do
          if type(v) == "string" then
            for _, secret in ipairs({ p.PKey, sandbox.access_token, sandbox.api_key,
                                      "Secretive", p.email }) do
              assert.is_falsy(v:find(secret, 1, true), v)
            end
          end
        end
      end
      assert.is_true(#seen >= 9)
      for _, r in ipairs({ "profile/pkey", "profile", "profile/byEmail", "profile/byText",
                           "profile/_count" }) do
        assert.is_true(routes[r], "no route " .. r)
      end
    end)
  end)
end)
