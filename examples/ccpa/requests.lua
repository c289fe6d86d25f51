-- Opt-out requests read from a CSV or JSON Lines file, one at a time.
--
-- Each request comes back as a table:
--   rec      the record number (1 for the first record after the header;
--            for JSON Lines the number of the non-blank line)
--   kind     "email" or "pkey", nil for an invalid request
--   id       the identifier, trimmed
--   optout   true to opt out, false to opt back in
--   invalid  why the request cannot be carried out, or nil
--   extras   the record's other columns: an array of values in the order of
--            the header (CSV), or a table of key -> value (JSON Lines)
local cjson = require("cjson").new()

local csv = require "ccpa.csv"
local protect = require "ccpa.protect"

local M = {}

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end
M.trim = trim

-- An email is valid when it has exactly one "@" with something on each
-- side; whitespace and control characters are never part of one.
function M.valid_email(e)
  local local_part, domain = e:match("^([^@]+)@([^@]+)$")
  return local_part ~= nil and domain ~= nil and not e:find("[%s%c]")
end

-- A PKey is opaque, but Campaign's always start with "@" and are
-- base64-like; anything with whitespace or control characters is not one.
function M.valid_pkey(k)
  return #k > 1 and k:byte(1) == 64 and not k:find("[%s%c]")
end

-- "false", "0", "no" (any case) ask to opt back in; "true", "1", "yes" or
-- an empty value ask to opt out.  Anything else is not understood.
local FLAGS = { ["false"] = false, ["0"] = false, no = false,
  ["true"] = true, ["1"] = true, yes = true, [""] = true }

function M.parse_optout(v)
  if v == nil or v == cjson.null then return true end
  if type(v) == "boolean" then return v end
  -- cjson reads every JSON number as a float: 0 arrives as 0.0
  if type(v) == "number" then
    if v == 0 then return false elseif v == 1 then return true end
    return nil
  end
  if type(v) ~= "string" then return nil end
  return FLAGS[trim(v):lower()]
end

-- Builds a request from the identifying values of one record.
local function request(rec, email, pkey, optout, extras, problem)
  local r = { rec = rec, extras = extras }
  if type(email) ~= "string" and email ~= nil and email ~= cjson.null then
    email = nil
    problem = problem or "email is not a string"
  end
  if type(pkey) ~= "string" and pkey ~= nil and pkey ~= cjson.null then
    pkey = nil
    problem = problem or "pkey is not a string"
  end
  email = type(email) == "string" and trim(email) or ""
  pkey = type(pkey) == "string" and trim(pkey) or ""
  r.optout = M.parse_optout(optout)
  if pkey ~= "" then
    r.kind, r.id = "pkey", pkey
  elseif email ~= "" then
    r.kind, r.id = "email", email
  else
    r.id = ""
  end
  if problem then
    r.invalid = problem
  elseif not r.kind then
    r.invalid = "neither an email nor a pkey"
  elseif r.optout == nil then
    r.invalid = "optout is not one of true/false/1/0/yes/no"
  elseif r.kind == "email" and not M.valid_email(email) then
    r.invalid = "not a valid email"
  elseif r.kind == "pkey" and not M.valid_pkey(pkey) then
    r.invalid = "not a valid pkey"
  end
  if r.invalid then r.kind = nil end
  if r.optout == nil then r.optout = true end
  return r
end

-- The format of a file, by its extension: "jsonl" or "csv".
function M.format_of(path)
  local ext = path:match("%.([%w]+)$")
  ext = ext and ext:lower()
  if ext == "jsonl" or ext == "ndjson" or ext == "json" then return "jsonl" end
  return "csv"
end

local ROLES = { email = "email", pkey = "pkey", optout = "optout" }

-- Opens a request source on a file handle.  Returns an object with
--   :next()        the next request, or nil at the end
--   .extra_names   for CSV, the names of the carried columns
--   :bytes()       how much of the file has been read
-- or nil and a message when the input cannot be used at all.
function M.open(fh, format)
  if format == "jsonl" then
    local src = { rec = 0, read = 0, format = "jsonl" }
    function src.bytes() return src.read end
    function src.next()
      local line
      repeat
        line = fh:read("L")
        if not line then return nil end
        src.read = src.read + #line
        if src.rec == 0 and line:sub(1, 3) == "\239\187\191" then
          line = line:sub(4)
        end
      until line:find("%S")
      src.rec = src.rec + 1
      local ok, obj = protect.call(cjson.decode, line)
      if not ok or type(obj) ~= "table" or obj[1] ~= nil then
        return request(src.rec, nil, nil, nil, {},
          "not a JSON object")
      end
      local email, pkey, optout
      local extras = {}
      for k, v in pairs(obj) do
        local role = type(k) == "string" and ROLES[trim(k):lower()]
        if role == "email" and email == nil then email = v
        elseif role == "pkey" and pkey == nil then pkey = v
        elseif role == "optout" and optout == nil then optout = v
        else extras[k] = v end
      end
      return request(src.rec, email, pkey, optout, extras)
    end
    return src
  end

  local reader = csv.reader(fh)
  local header = reader:next()
  if not header then return nil, "the input is empty (no header row)" end
  local col = {}
  local extra_cols, extra_names = {}, {}
  for i, name in ipairs(header) do
    local role = ROLES[trim(name):lower()]
    if role and not col[role] then
      col[role] = i
    else
      extra_cols[#extra_cols + 1] = i
      extra_names[#extra_names + 1] = trim(name)
    end
  end
  if not col.email and not col.pkey then
    return nil, "the header has neither an email nor a pkey column"
  end
  local width = #header
  local src = { rec = 0, extra_names = extra_names, format = "csv" }
  function src.bytes() return reader.bytes end
  function src.next()
    local fields, problem = reader:next()
    if not fields then return nil end
    src.rec = src.rec + 1
    if not problem and #fields ~= width then
      problem = ("%d fields where the header has %d"):format(#fields, width)
    end
    local extras = {}
    for j, i in ipairs(extra_cols) do extras[j] = fields[i] or "" end
    return request(src.rec, col.email and fields[col.email],
      col.pkey and fields[col.pkey], col.optout and fields[col.optout],
      extras, problem)
  end
  return src
end

return M
