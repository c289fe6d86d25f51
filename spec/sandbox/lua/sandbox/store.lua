-- The profiles: held in Lua tables of the single worker (fast, and the
-- sandbox runs one worker), indexed by PKey and by email, kept in creation
-- order.  Also seed loading, PKey making, and keyset paging.
local bit = require "bit"
local schema = require "sandbox.schema"
local util = require "sandbox.util"
local config = require "sandbox.config"

local M = {}

-- A record: {seq = creation number, pkey, email (the indexed values),
-- p = the profile's public fields (a seed line keeps its text in `raw`
-- until p is first read, see LAZY), custom = custom fields or nil,
-- json / json_ext = cached encodings}.
local recs         -- records in creation (seq) order
local by_pkey      -- PKey -> record
local by_email     -- email -> array of records (seq order)
local next_seq
local version      -- bumped on every change, to invalidate sorted views
local sorted       -- "field dir" -> {version =, arr =}

-- Deterministic bytes from an integer: xorshift32 seeded with n.  Seed
-- PKeys come from their line number, so a reset gives the same PKeys.
local function det_bytes(n, salt, len)
  local x = bit.bxor(n * 2654435761 % 4294967296, salt)
  if x == 0 then x = 1 end
  local out = {}
  for i = 1, len do
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    out[i] = string.char(bit.band(x, 255))
  end
  return table.concat(out)
end

-- "@" and standard base64: 48, 49 or 50 bytes, so "=" padding shows up
-- in two PKeys of three and "/" or "+" in most, which tests a client's
-- percent-encoding.
local function make_pkey(n, salt)
  return "@" .. ngx.encode_base64(det_bytes(n, salt, 48 + n % 3))
end

local function make_crypted(n, salt)
  return ngx.encode_base64(det_bytes(n, salt + 7, 30))
end

local created_count = 0
local function fresh_pkey()
  repeat
    created_count = created_count + 1
    local n = created_count + math.floor(ngx.now() * 1000) % 1000000007
    local k = make_pkey(n, 0x5eed)
    if not by_pkey[k] then return k, make_crypted(n, 0x5eed) end
  until false
end

local function email_add(rec)
  local e = rec.email
  if e == "" then return end
  local list = by_email[e]
  if not list then by_email[e] = { rec } return end
  list[#list + 1] = rec
  -- New records come in seq order; only a PATCHed email brings an older
  -- one, which must take its place.
  if list[#list - 1].seq > rec.seq then
    table.sort(list, function(a, b) return a.seq < b.seq end)
  end
end

local function email_remove(rec)
  local list = by_email[rec.email]
  if not list then return end
  for i = #list, 1, -1 do
    if list[i] == rec then table.remove(list, i) end
  end
  if #list == 0 then by_email[rec.email] = nil end
end

local function changed(rec)
  rec.json, rec.json_ext = nil, nil
  version = version + 1
end

local function domain_of(email)
  return email:match("@([^@]+)$") or ""
end

local function new_record(p, custom)
  local rec = { seq = next_seq, p = p, custom = custom, pkey = p.PKey, email = p.email }
  next_seq = next_seq + 1
  recs[#recs + 1] = rec
  by_pkey[p.PKey] = rec
  email_add(rec)
  return rec
end

-- Seed lines are parsed when first used.  cjson takes ~30 us for a full
-- profile under nginx, half a minute for a million lines; at load only
-- the PKey and the email (for the index) are cut out of the text.
local loaded_at, load_today

local function complete(p, n)
  if p.PKey == "" or type(p.PKey) ~= "string" then p.PKey = make_pkey(n, 0x1ee7) end
  if p.cryptedId == "" then p.cryptedId = make_crypted(n, 0x1ee7) end
  if p.created == "" then p.created = loaded_at end
  if p.lastModified == "" then p.lastModified = p.created end
  if p.domain == "" then p.domain = domain_of(p.email) end
  p.age = schema.age(p.birthDate, load_today)
end

local LAZY = {
  __index = function(rec, k)
    if k ~= "p" then return nil end
    local p = util.decode(rec.raw)
    if type(p) ~= "table" then
      -- Checked as far as cheaply possible at load; a line broken inside
      -- still gives a profile, with only its PKey and email.
      p = { email = rec.email }
    end
    rec.custom = schema.from_seed(p, util.null)
    p.PKey = rec.pkey
    complete(p, rec.line)
    rec.raw = nil
    rawset(rec, "p", p)
    return p
  end,
}

-- The text of a string field `key` in a JSON line, if it is there in
-- plain form; "present" tells a missing field from one written otherwise
-- (escapes, unusual spacing), which the caller then parses properly.
local FORMS = {}
for _, key in ipairs({ "PKey", "email" }) do
  FORMS[key] = { '"' .. key .. '":"', '"' .. key .. '": "', '"' .. key .. '"' }
end

local function cut(raw, key)
  local forms = FORMS[key]
  for k = 1, 2 do
    local form = forms[k]
    local i = raw:find(form, 1, true)
    if i then
      local s = i + #form
      local j = raw:find('"', s, true)
      local v = j and raw:sub(s, j - 1)
      if v and not v:find("\\", 1, true) then return v, true end
      return nil, true
    end
  end
  return nil, raw:find(forms[3], 1, true) ~= nil
end

-- Loads a JSON Lines seed, replacing every profile.  On error the old
-- state is kept and nil, message returned.
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read seed: " .. tostring(err) end
  local old = { recs, by_pkey, by_email, next_seq }
  local function fail(msg)
    f:close()
    collectgarbage("restart")
    recs, by_pkey, by_email, next_seq = old[1], old[2], old[3], old[4]
    return nil, msg
  end
  recs, by_pkey, by_email, next_seq = {}, {}, {}, 1
  loaded_at, load_today = util.timestamp(), os.date("!*t", ngx.time())
  -- Nearly all a load allocates stays alive: collecting while the heap
  -- grows would only walk it again and again.
  collectgarbage("stop")
  local n = 0
  for raw in f:lines() do
    n = n + 1
    -- Tests on the first and last characters only: an unanchored
    -- pattern would walk the whole line, and LuaJIT does not compile it.
    local e = #raw
    local last = raw:byte(e)
    while last == 13 or last == 32 or last == 9 do
      e = e - 1
      last = raw:byte(e)
    end
    if e < #raw then raw = raw:sub(1, e) end
    if last then
      if not raw:match("^%s*{") or last ~= 125 then
        return fail(("seed %s line %d is not a JSON object"):format(path, n))
      end
      local pkey, has_pkey = cut(raw, "PKey")
      local email, has_email = cut(raw, "email")
      local rec
      if (pkey or not has_pkey) and (email or not has_email) then
        rec = setmetatable({ seq = next_seq, raw = raw, line = n,
          pkey = pkey or make_pkey(n, 0x1ee7), email = email or "" }, LAZY)
      else
        local p = util.decode(raw)
        if type(p) ~= "table" then
          return fail(("seed %s line %d is not a JSON object"):format(path, n))
        end
        local custom = schema.from_seed(p, util.null)
        complete(p, n)
        rec = { seq = next_seq, p = p, custom = custom, line = n, pkey = p.PKey,
                email = p.email }
      end
      if by_pkey[rec.pkey] then
        return fail(("seed %s line %d repeats PKey %s"):format(path, n, rec.pkey))
      end
      next_seq = next_seq + 1
      recs[#recs + 1] = rec
      by_pkey[rec.pkey] = rec
      email_add(rec)
    end
  end
  f:close()
  collectgarbage("restart")
  version, sorted = 0, {}
  return #recs
end

function M.get(pkey) return by_pkey[pkey] end
function M.size() return #recs end
function M.all() return recs end

-- Field orders of the profile JSON: the standard resource's, and the Ext
-- resource's for the custom fields in force (remade when they change).
local STANDARD = schema.profile_order()
local ext_for, ext_cached
local function ext_order(custom_fields)
  if ext_for ~= custom_fields then
    local names = {}
    for name in pairs(custom_fields) do names[#names + 1] = name end
    ext_for, ext_cached = custom_fields, schema.profile_order(names)
  end
  return ext_cached
end

-- The JSON of one profile as the standard or the Ext resource shows it;
-- cached per record unless `transient` (a dump of every profile should
-- not keep a second copy of them all).
function M.encode(rec, ext, transient)
  local cached
  if ext then cached = rec.json_ext else cached = rec.json end
  if cached then return cached end
  local cfg = config.current
  local p = rec.p
  p.href = ("%s/%s/campaign/%s/profile/%s"):format(cfg.base_url, util.escape(cfg.org),
    ext and "profileAndServicesExt" or "profileAndServices", util.escape(p.PKey))
  p.subscriptions = { href = p.href .. "/subscriptions/" }
  if ext then
    for name, default in pairs(cfg.custom_fields) do
      local v = rec.custom and rec.custom[name]
      if v == nil then v = default end
      p[name] = v
    end
  end
  local s = util.encode_ordered(p, ext and ext_order(cfg.custom_fields) or STANDARD)
  if ext then
    for name in pairs(cfg.custom_fields) do p[name] = nil end
  end
  if transient then return s end
  if ext then rec.json_ext = s else rec.json = s end
  return s
end

-- Settings that change every href (org, base) drop all cached JSON.
function M.forget_json()
  for i = 1, #recs do recs[i].json, recs[i].json_ext = nil, nil end
end

local function set_fields(rec, body, now)
  local p = rec.p
  for k, v in pairs(body) do
    if type(v) == "table" and type(p[k]) == "table" then
      for sk, sv in pairs(v) do p[k][sk] = sv end
    elseif schema.FIELDS[k] then
      p[k] = v
    else
      rec.custom = rec.custom or {}
      rec.custom[k] = v
    end
  end
  if body.email ~= nil and body.domain == nil then p.domain = domain_of(p.email) end
  if body.birthDate ~= nil then p.age = schema.age(p.birthDate) end
  p.lastModified = now
end

-- POST: a new profile from a validated body.
function M.create(body)
  local now = util.timestamp()
  local p = schema.defaults()
  p.PKey, p.cryptedId = fresh_pkey()
  p.created = now
  -- Fields first, then the record joins the indexes with its email.
  local draft = { p = p }
  set_fields(draft, body, now)
  local rec = new_record(p, draft.custom)
  -- A flag set at creation has been "modified" then; unset ones stay "".
  for _, flag in ipairs(schema.FLAGS) do
    if body[flag] ~= nil then p[flag .. "LastModified"] = now end
  end
  changed(rec)
  return rec
end

-- PATCH: only the fields given; a flag whose value changes gets its
-- *LastModified stamped.
function M.update(rec, body)
  local now = util.timestamp()
  local p = rec.p
  for _, flag in ipairs(schema.FLAGS) do
    if body[flag] ~= nil and body[flag] ~= p[flag] then
      p[flag .. "LastModified"] = now
    end
  end
  if body.email ~= nil and body.email ~= p.email then
    email_remove(rec)
    set_fields(rec, body, now)
    rec.email = p.email
    email_add(rec)
  else
    set_fields(rec, body, now)
  end
  changed(rec)
end

-- Index of the first record with seq >= s in an array ordered by seq.
local function seq_search(arr, s)
  local lo, hi = 1, #arr + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if arr[mid].seq < s then lo = mid + 1 else hi = mid end
  end
  return lo
end

function M.delete(rec)
  local i = seq_search(recs, rec.seq)
  if recs[i] == rec then table.remove(recs, i) end
  by_pkey[rec.pkey] = nil
  email_remove(rec)
  changed(rec)
end

-- Sort value of a field: booleans as numbers so that they order.
local function key_of(rec, field)
  local v = rec.p[field]
  if v == true then return 1 elseif v == false then return 0 end
  return v
end

-- "a comes before b" for an order (field or nil, desc); ties and the
-- unordered case fall back to creation order, which makes it total.
local function before(ka, sa, kb, sb, desc)
  if ka ~= kb then
    if desc then return ka > kb end
    return ka < kb
  end
  return sa < sb
end

local function sorted_view(arr, field, desc, shared)
  if not field then return arr end
  local key = field .. (desc and " desc" or "")
  local c = shared and sorted[key]
  if c and c.version == version then return c.arr end
  local out = {}
  for i = 1, #arr do out[i] = arr[i] end
  table.sort(out, function(a, b)
    return before(key_of(a, field), a.seq, key_of(b, field), b.seq, desc)
  end)
  if shared then sorted[key] = { version = version, arr = out } end
  return out
end

-- The records a list shows, in its order: filters is {email =, text =}.
local function selection(filters, field, desc)
  local base, shared = recs, true
  if filters.email then
    base, shared = by_email[filters.email] or {}, false
  end
  if filters.text then
    local t, n, out = filters.text, #filters.text, {}
    for i = 1, #base do
      local p = base[i].p
      if p.email:sub(1, n) == t or p.lastName:sub(1, n) == t then
        out[#out + 1] = base[i]
      end
    end
    base, shared = out, false
  end
  return sorted_view(base, field, desc, shared)
end

function M.count(filters)
  return #selection(filters, nil, false)
end

-- One page: records after the cursor {key =, seq =} (nil: from the top).
-- Keyset paging: a profile that exists throughout is never skipped or
-- repeated, whatever is created or deleted between pages.
function M.page(filters, field, desc, cursor, count)
  local arr = selection(filters, field, desc)
  local lo, hi = 1, #arr + 1
  if cursor then
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local r = arr[mid]
      local k = field and key_of(r, field) or 0
      if before(cursor.key, cursor.seq, k, r.seq, desc) then hi = mid else lo = mid + 1 end
    end
  end
  local out = {}
  for i = lo, math.min(lo + count - 1, #arr) do out[#out + 1] = arr[i] end
  return out, #arr, lo + count <= #arr
end

function M.cursor_of(rec, field)
  return { key = field and key_of(rec, field) or 0, seq = rec.seq }
end

return M
