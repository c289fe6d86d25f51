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

-- JSON with object keys in byte order (PKey first, then alphabetical,
-- as Campaign lists them): stable output is easier to read and diff.
function M.encode_sorted(v)
  if type(v) ~= "table" then return M.encode(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = M.encode(k) .. ":" .. M.encode_sorted(v[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

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
