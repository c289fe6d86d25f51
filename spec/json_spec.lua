-- Numbers, null and empty tables between Lua and JSON, against the
-- sandbox: integers come back as integers, a number JSON (as Debian's
-- lua-cjson 2.1.0 writes it) cannot carry exactly raises and sends
-- nothing, null is campaign.null == cjson.null both ways, and the
-- user's own cjson settings are never touched.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/json_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local sandbox = require "spec.support.sandbox"
local campaign = require "campaign"
local cjson = require "cjson"

-- The custom fields the Ext resource shows in these specs.
local CUSTOM = { cusOptOutCcpa = false, cusScore = 0, cusNote = sandbox.null }

local SETTINGS = { "encode_number_precision", "encode_invalid_numbers",
                   "decode_invalid_numbers", "encode_sparse_array", "encode_max_depth",
                   "decode_max_depth", "encode_keep_buffer" }

-- The user's global cjson settings, each as the list its getter returns.
local function settings()
  local s = {}
  for _, name in ipairs(SETTINGS) do s[name] = table.pack(cjson[name]()) end
  return s
end

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "did not raise (wanted " .. pattern .. ")")
  assert.is_string(err)
  assert.matches(pattern, err, 1, false)
  return err
end

describe("JSON", function()
  local client, ext, pkey, all

  setup(function()
    sandbox.reset()
    all = sandbox.profiles()
    pkey = all[1].PKey
  end)

  before_each(function()
    sandbox.reset()
    sandbox.config{ custom_fields = CUSTOM }
    client = sandbox.client{ retries = 0 }
    ext = sandbox.client{ retries = 0, resource = "profileAndServicesExt" }
    sandbox.clear_counters()
  end)

  after_each(function()
    client:close()
    ext:close()
  end)

  describe("numbers in answers", function()
    it("integral ones come back as Lua integers", function()
      local p = assert(client:get_profile(pkey))
      local held = sandbox.profile(pkey)
      assert.are.equal("integer", math.type(p.age))
      assert.are.equal(held.age, p.age)
      assert.are.equal("integer", math.type(p.postalAddress.addrErrorCount))
      assert.are.equal(held.postalAddress.addrErrorCount, p.postalAddress.addrErrorCount)
      assert.are.equal("integer", math.type(client:count_profiles()))
      local page = assert(client:request("GET", "profileAndServices/profile?_lineCount=3"))
      for _, q in ipairs(page.content) do assert.are.equal("integer", math.type(q.age)) end
      for q in client:profiles{ page_size = 500 } do
        assert.are.equal("integer", math.type(q.age))
      end
      -- as tostring shows them: "36", not "36.0"
      assert.is_falsy(tostring(p.age):find(".", 1, true))
    end)

    it("others come back as floats", function()
      assert(ext:update_profile(pkey, { cusScore = 0.1 }))
      local v = ext:get_profile(pkey).cusScore
      assert.are.equal("float", math.type(v))
      assert.are.equal(0.1, v)
      assert(ext:update_profile(pkey, { cusScore = -2.5e-7 }))
      assert.are.equal(-2.5e-7, ext:get_profile(pkey).cusScore)
    end)
  end)

  describe("numbers in requests", function()
    it("with up to 14 significant digits are sent exactly", function()
      for _, n in ipairs({ 12345678901234, -12345678901234, 0, 7, 0.1, 1e300, 2 ^ 40 }) do
        assert(ext:update_profile(pkey, { cusScore = n }))
        local held = sandbox.profile(pkey).cusScore
        assert.are.equal(n, held, "sent " .. tostring(n))
        local back = ext:get_profile(pkey).cusScore
        assert.are.equal(n, back)
      end
    end)

    local refused = {
      { "an integer of 15 digits", 123456789012345 },
      { "a negative one", -123456789012345 },
      { "2^53 + 1", (1 << 53) + 1 },
      { "the largest integer", math.maxinteger },
      { "1/3", 1 / 3 },
      { "0.1 + 0.2", 0.1 + 0.2 },
      { "NaN", 0 / 0 },
      { "infinity", math.huge },
      { "minus infinity", -math.huge },
    }
    for _, case in ipairs(refused) do
      it(case[1] .. " raises a clear error and sends nothing", function()
        local n = case[2]
        raises("^bad argument #2 to 'update_profile' %(.*cusScore", ext.update_profile,
          ext, pkey, { cusScore = n })
        assert.are.equal(0, sandbox.counters().total)
        assert.are.equal(0, sandbox.profile(pkey).cusScore)
      end)
    end

    it("the error shows the refused number with all its digits", function()
      for n, shown in pairs { [12345678901234.5] = "12345678901234.5",
                              [2.0 ^ 53] = "9007199254740992",
                              [123456789012345] = "123456789012345" } do
        local err = raises("cusScore", ext.update_profile, ext, pkey, { cusScore = n })
        assert.truthy(err:find("the number " .. shown .. " under", 1, true), err)
      end
    end)

    it("anywhere in a body: nested, in an array, in every method that sends one", function()
      local bad = 123456789012345
      raises("^bad argument #2 to 'update_profile'", client.update_profile, client, pkey,
        { location = { city = "x", zipCode = bad } })
      raises("^bad argument #2 to 'update_profile'", client.update_profile, client, pkey,
        { tags = { 1, 2, 1 / 3 } })
      raises("^bad argument #1 to 'create_profile'", client.create_profile, client,
        { email = "n@example.com", postalAddress = { addrErrorCount = bad } })
      raises("^bad argument #3 to 'request'", client.request, client, "POST",
        "profileAndServices/profile", { deep = { deeper = { 0 / 0 } } })
      local got
      local summary = client:bulk({ { "update_profile", pkey, { x = math.huge } } }, {
        on_result = function(_, _, result, err) got = { result, err } end })
      assert.are.equal(1, summary.failed)
      assert.is_nil(got[1])
      assert.are.equal("usage", got[2].kind)
      assert.is_truthy(got[2].message:find("update_profile", 1, true))
      assert.are.equal(0, sandbox.counters().total)
      assert.are.equal(#all, #sandbox.profiles())
    end)
  end)

  describe("null", function()
    it("is campaign.null, the same value as cjson.null", function()
      assert.are.equal(cjson.null, campaign.null)
      assert.are.equal("userdata", type(campaign.null))
    end)

    it("comes back from an answer as campaign.null", function()
      local p = assert(ext:get_profile(pkey))
      assert.are.equal(campaign.null, p.cusNote)
      local page = assert(ext:request("GET", "profileAndServicesExt/profile?_lineCount=2"))
      assert.are.equal(campaign.null, page.content[2].cusNote)
    end)

    it("goes out as JSON null", function()
      -- the field takes only null: a string is refused, null accepted
      local v, err = ext:update_profile(pkey, { cusNote = "null" })
      assert.is_nil(v)
      assert.are.equal(500, err.status)
      assert(ext:update_profile(pkey, { cusNote = campaign.null }))
      assert(ext:update_profile(pkey, { cusNote = cjson.null }))
      assert.are.equal(sandbox.null, sandbox.profile(pkey).cusNote)
      -- a string field refuses a null, naming the field
      v, err = client:update_profile(pkey, { middleName = campaign.null })
      assert.is_nil(v)
      assert.are.equal(500, err.status)
      assert.is_truthy(err.message:find("middleName", 1, true))
      assert.are.equal(4, sandbox.count("PATCH profile/pkey"))
    end)
  end)

  describe("empty tables", function()
    it("an empty JSON array in an answer is an empty table", function()
      local found = assert(client:find_profiles{ email = "nobody.at.all@example.com" })
      assert.are.same({}, found)
      local page = assert(client:request("GET",
        "profileAndServices/profile/byEmail?email=nobody.at.all%40example.com"))
      assert.are.same({}, page.content)
    end)

    it("an empty Lua table is sent as an empty JSON object", function()
      -- the sandbox refuses a body that is not an object ("[]" included)
      local answer = assert(client:update_profile(pkey, {}))
      assert.are.equal(pkey, answer.PKey)
      local created = assert(client:create_profile{})
      assert.is_string(created.PKey)
      assert(client:request("PATCH",
        "profileAndServices/profile/" .. sandbox.escape(pkey), {}))
    end)
  end)

  describe("the user's own cjson", function()
    -- In a fresh Lua, so that the module is surely loaded after cjson:
    -- the user's cjson table, its functions and their behaviour are the
    -- same before and after `require "campaign"`.
    it("is left as it was by require \"campaign\"", function()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([=[
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local cjson = require "cjson"
cjson.encode_number_precision(3)
cjson.decode_invalid_numbers(true)
local before = {}
for k, v in pairs(cjson) do before[k] = v end
require "campaign"
for k, v in pairs(cjson) do
  if before[k] ~= v then print("changed: cjson." .. k) end
end
for k in pairs(before) do
  if cjson[k] == nil then print("removed: cjson." .. k) end
end
print("encode: " .. cjson.encode(1 / 3))
local ok, v = pcall(cjson.decode, "NaN")
print("decode NaN: " .. tostring(ok and v ~= v))
]=])
      f:close()
      local proc = assert(io.popen("lua5.4 " .. script .. " 2>&1"))
      local out = proc:read("a")
      proc:close()
      os.remove(script)
      assert.are.equal("encode: 0.333\ndecode NaN: true\n", out)
    end)

    it("keeps its settings while the module works", function()
      local before = settings()
      assert(client:get_profile(pkey))
      assert(ext:update_profile(pkey, { cusScore = 0.25 }))
      pcall(client.update_profile, client, pkey, { x = 0 / 0 })
      local other = sandbox.client()
      assert(other:count_profiles())
      other:close()
      assert.are.same(before, settings())
    end)

    it("does not change the module's numbers when the user changes it", function()
      local before = settings()
      local ok, err = pcall(function()
        cjson.encode_number_precision(3)
        cjson.encode_invalid_numbers(true)
        cjson.decode_invalid_numbers(false)
        cjson.encode_max_depth(2)
        cjson.decode_max_depth(2)
        assert(ext:update_profile(pkey, { cusScore = 12345678901234 }))
        assert.are.equal(12345678901234, sandbox.profile(pkey).cusScore)
        local p = assert(ext:get_profile(pkey))
        assert.are.equal(12345678901234, p.cusScore)
        assert.are.equal("integer", math.type(p.age))
        raises("cusScore", ext.update_profile, ext, pkey, { cusScore = 0 / 0 })
        -- and the user's instance still has the user's settings
        assert.are.equal("0.333", cjson.encode(1 / 3))
      end)
      cjson.encode_number_precision(before.encode_number_precision[1])
      cjson.encode_invalid_numbers(before.encode_invalid_numbers[1])
      cjson.decode_invalid_numbers(before.decode_invalid_numbers[1])
      cjson.encode_max_depth(before.encode_max_depth[1])
      cjson.decode_max_depth(before.decode_max_depth[1])
      assert.are.same(before, settings())
      assert(ok, err)
    end)
  end)
end)
