-- Small helpers shared by the sandbox's handlers: JSON, time stamps,
-- percent-encoding.  Runs inside nginx (LuaJIT, Lua 5.1 dialect).
local cjson = require "cjson.safe"

local M = {}

M.null = cjson.null

-- cjson escapes "/" as "\/".  Valid JSON, but hrefs then read badly and
-- differ from what Campaign sends.  In cjson's output every "/" is
-- preceded by its escaping backslash, so removing that one is exact.
function M.encode(v)
  local s = cjson.encode(v)
  return (s:gsub("\\/", "/"))
end

-- A JSON string.  Most values need no escaping: a byte loop (which
-- LuaJIT compiles, unlike string patterns) finds out, and those are quoted
-- as they are, many times faster than a call into cjson.
local byte = string.byte
local function json_string(s)
  for i = 1, #s do
    local b = byte(s, i)
    if b < 32 or b == 34 or b == 92 then return M.encode(s) end
  end
  return '"' .. s .. '"'
end

local KEYS, keys_n = {}, 0   -- '"name":' for each key seen (field names)

local encode_sorted

local function encode_value(v)
  local t = type(v)
  if t == "string" then return json_string(v) end
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" and v == math.floor(v) and v > -1e15 and v < 1e15 then
    return string.format("%d", v)
  end
  if t == "table" then return encode_sorted(v) end
  return M.encode(v)
end

-- JSON with object keys in byte order (PKey first, then alphabetical,
-- as Campaign lists them): stable output is easier to read and diff.
encode_sorted = function(v)
  if type(v) ~= "table" then return encode_value(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  if #keys == 0 then return "{}" end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local key = KEYS[k]
    if not key then
      key = json_string(tostring(k)) .. ":"
      if keys_n < 1000 then KEYS[k], keys_n = key, keys_n + 1 end
    end
    parts[i] = key .. encode_value(v[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
M.encode_sorted = encode_sorted

-- A key order for encode_ordered: keys sorted once, and the orders of
-- nested objects (name -> order).
function M.order(keys, sub)
  local sorted = {}
  for i, k in ipairs(keys) do sorted[i] = k end
  table.sort(sorted)
  local quoted = {}
  for i, k in ipairs(sorted) do quoted[i] = json_string(k) .. ":" end
  return { keys = sorted, quoted = quoted, sub = sub or {} }
end

-- An object whose keys are known beforehand (a profile), in that order:
-- the same text as encode_sorted without sorting on every call.  Keys
-- missing from the order are left out.
local function encode_ordered(t, order)
  local keys, quoted, sub = order.keys, order.quoted, order.sub
  local parts, n = {}, 0
  for i = 1, #keys do
    local v = t[keys[i]]
    if v ~= nil then
      n = n + 1
      local o = sub[keys[i]]
      if o and type(v) == "table" then
        parts[n] = quoted[i] .. encode_ordered(v, o)
      else
        parts[n] = quoted[i] .. encode_value(v)
      end
    end
  end
  return "{" .. table.concat(parts, ",", 1, n) .. "}"
end
M.encode_ordered = encode_ordered

-- Returns the decoded value, or nil and a message.
function M.decode(s)
  return cjson.decode(s)
end

-- Campaign's time stamp form: "2019-09-25 00:19:14.569Z" (UTC).
function M.timestamp(t)
  t = t or ngx.now()
  local sec = math.floor(t)
  local ms = math.floor((t - sec) * 1000 + 0.5)
  if ms >= 1000 then sec, ms = sec + 1, 999 end
  return os.date("!%Y-%m-%d %H:%M:%S", sec) .. string.format(".%03dZ", ms)
end

-- Percent-decoding of one path segment.  ngx.unescape_uri would turn "+"
-- into a space, which is wrong in a path and breaks base64 PKeys.
function M.unescape_path(s)
  if not s:find("%", 1, true) then return s end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Percent-encoding for a path segment or a query value: everything but
-- the unreserved characters (and "@", legal in a path, kept readable).
function M.escape(s)
  return (tostring(s):gsub("[^%w@%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end


return M
