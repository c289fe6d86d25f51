-- The profile resource's fields: which exist, their types, Campaign's
-- defaults, which are read-only, and the validation of a client's body.
-- Error messages imitate Campaign's (an error id, then the field named).
local util = require "sandbox.util"

local M = {}

local FLAGS = {
  "blackList", "blackListEmail", "blackListFax", "blackListMobile",
  "blackListPhone", "blackListPostalMail", "blackListPushnotification",
  "ccpaOptOut",
}
M.FLAGS = FLAGS

-- kind: "string", "boolean", "number", "date", {enum...}, or a nested
-- table of sub-fields.  Read-only fields are listed apart.
local FIELDS = {
  birthDate = "date", domain = "string", email = "string",
  emailFormat = { "unknown", "html", "text" },
  externalId = "string", fax = "string", firstName = "string",
  gender = { "unknown", "male", "female" },
  isExternal = "boolean", lastName = "string", middleName = "string",
  mobilePhone = "string", phone = "string", preferredLanguage = "string",
  salutation = "string", thumbnail = "string", timeZone = "string",
  title = "string",
  location = {
    address1 = "string", address2 = "string", address3 = "string",
    address4 = "string", city = "string", countryCode = "string",
    stateCode = "string", zipCode = "string",
  },
  postalAddress = {
    addrDefined = "boolean", addrErrorCount = "number",
    addrLastCheck = "string", addrQuality = "string",
    line1 = "string", line2 = "string", line3 = "string",
    line4 = "string", line5 = "string", line6 = "string",
    serialized = "string",
  },
}
for _, f in ipairs(FLAGS) do FIELDS[f] = "boolean" end
M.FIELDS = FIELDS

-- Stamped or computed by the server; a client that sends one gets a 500.
local READ_ONLY = {
  PKey = true, age = true, created = true, lastModified = true,
  href = true, cryptedId = true, subscriptions = true,
}
for _, f in ipairs(FLAGS) do READ_ONLY[f .. "LastModified"] = true end
M.READ_ONLY = READ_ONLY

-- The order a profile's JSON lists its fields in (util.encode_ordered),
-- with `custom` field names added for the Ext resource.
function M.profile_order(custom)
  local keys, sub = {}, {}
  for name, kind in pairs(FIELDS) do
    keys[#keys + 1] = name
    if type(kind) == "table" and kind[1] == nil then
      local subkeys = {}
      for k in pairs(kind) do subkeys[#subkeys + 1] = k end
      sub[name] = util.order(subkeys)
    end
  end
  for name in pairs(READ_ONLY) do keys[#keys + 1] = name end
  for _, name in ipairs(custom or {}) do keys[#keys + 1] = name end
  sub.subscriptions = util.order({ "href" })
  return util.order(keys, sub)
end

local function is_enum(kind) return type(kind) == "table" and kind[1] ~= nil end
local function is_object(kind) return type(kind) == "table" and kind[1] == nil end

local function default_of(kind)
  if kind == "boolean" then return false end
  if kind == "number" then return 0 end
  if is_enum(kind) then return kind[1] end
  if is_object(kind) then
    local t = {}
    for k, sub in pairs(kind) do t[k] = default_of(sub) end
    return t
  end
  return ""
end

-- A profile with every field at Campaign's default (no PKey, no stamps).
-- A profile at its defaults is copied from a flat template made once
-- (walking the schema for each POST cost more than the rest of it).
local SCALAR_NAMES, SCALAR_VALUES, OBJECTS = {}, {}, {}
do
  local function add(name, v)
    SCALAR_NAMES[#SCALAR_NAMES + 1] = name
    SCALAR_VALUES[#SCALAR_VALUES + 1] = v
  end
  for name, kind in pairs(FIELDS) do
    if is_object(kind) then OBJECTS[name] = default_of(kind) else add(name, default_of(kind)) end
  end
  for name in pairs(READ_ONLY) do
    if name:find("LastModified$") then add(name, "") end
  end
  add("age", 0)
  add("cryptedId", "")
end

function M.defaults()
  local p = {}
  for i = 1, #SCALAR_NAMES do p[SCALAR_NAMES[i]] = SCALAR_VALUES[i] end
  for name, template in pairs(OBJECTS) do
    local t = {}
    for k, v in pairs(template) do t[k] = v end
    p[name] = t
  end
  return p
end

local function bad(msg) return nil, msg end

-- Checks one value against its kind; returns the value to store or nil
-- and a message naming the field.
local function check(name, kind, v)
  if is_object(kind) then
    if type(v) ~= "table" then
      return bad(("XTK-170006 Value of '%s' must be an object."):format(name))
    end
    for k, sub in pairs(v) do
      if type(k) ~= "string" or not kind[k] then
        return bad(("XTK-170028 Unknown field '%s/%s'."):format(name, tostring(k)))
      end
      local ok, msg = check(name .. "/" .. k, kind[k], sub)
      if ok == nil then return nil, msg end
    end
    return v
  end
  if is_enum(kind) then
    for _, allowed in ipairs(kind) do
      if v == allowed then return v end
    end
    return bad(("SCM-120005 The value '%s' of field '%s' is not part of its enumeration (%s).")
      :format(tostring(v), name, table.concat(kind, ", ")))
  end
  if kind == "date" then
    if v == "" or (type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d$")) then
      return v
    end
    return bad(("XTK-170045 Invalid date '%s' for field '%s' (expected YYYY-MM-DD).")
      :format(tostring(v), name))
  end
  if type(v) ~= kind then
    return bad(("XTK-170006 Value '%s' of field '%s' is not a %s.")
      :format(tostring(v), name, kind))
  end
  return v
end

-- Validates a client's body (POST or PATCH).  `custom` lists the custom
-- fields this resource shows (name -> default), empty on the standard
-- resource.  Returns true, or nil and a Campaign-style message.
function M.validate(body, custom)
  for name, v in pairs(body) do
    if type(name) ~= "string" then
      return bad("XTK-170028 Field names must be strings.")
    end
    if READ_ONLY[name] then
      return bad(("XTK-170041 The field '%s' is read-only and cannot be written."):format(name))
    end
    local kind = FIELDS[name]
    if kind then
      local ok, msg = check(name, kind, v)
      if ok == nil then return nil, msg end
    elseif custom[name] ~= nil then
      local want = type(custom[name])
      if type(v) ~= want then
        return bad(("XTK-170006 Value '%s' of field '%s' is not a %s.")
          :format(tostring(v), name, want))
      end
    else
      return bad(("XTK-170028 Unknown field '%s' on resource 'profile'."):format(name))
    end
  end
  return true
end

-- Whole years between a "YYYY-MM-DD" birth date and `today` (a date
-- table, default now), as Campaign's read-only `age` shows; 0 when unset.
function M.age(birth, today)
  local y, m, d = tostring(birth):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return 0 end
  local now = today or os.date("!*t", ngx.time())
  local age = now.year - tonumber(y)
  if now.month < tonumber(m) or (now.month == tonumber(m) and now.day < tonumber(d)) then
    age = age - 1
  end
  return age < 0 and 0 or age
end

-- Stored state a seed line may carry although clients cannot write it.
local SEEDABLE = { PKey = true, created = true, lastModified = true, cryptedId = true }
for _, f in ipairs(FLAGS) do SEEDABLE[f .. "LastModified"] = true end

-- Turns a decoded seed line into a profile in place (loading a million
-- lines, a second table per profile would double the work): drops what
-- is computed (href, age, ...) or unknown, moves custom "cus..." fields
-- out, and fills every missing field with its default.  Returns the
-- custom fields or nil.
function M.from_seed(line, null)
  local custom
  for k, v in pairs(line) do
    local kind = FIELDS[k]
    if v == null then
      line[k] = nil
    elseif is_object(kind) then
      if type(v) ~= "table" then line[k] = nil end
    elseif not kind and not SEEDABLE[k] then
      if type(k) == "string" and k:match("^cus%u") then
        custom = custom or {}
        custom[k] = v
      end
      line[k] = nil
    end
  end
  for name, kind in pairs(FIELDS) do
    local v = line[name]
    if v == nil then
      line[name] = default_of(kind)
    elseif is_object(kind) then
      for sub, sk in pairs(kind) do
        if v[sub] == nil then v[sub] = default_of(sk) end
      end
    end
  end
  for name in pairs(SEEDABLE) do
    if line[name] == nil then line[name] = "" end
  end
  return custom
end

-- Fields a list may be ordered by: the top-level scalars.
function M.orderable(name)
  local kind = FIELDS[name]
  if kind then return not is_object(kind) end
  return name == "PKey" or name == "created" or name == "lastModified"
    or name == "age" or (READ_ONLY[name] and name:find("LastModified$") ~= nil)
end

return M
