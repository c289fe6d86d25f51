-- Faults on demand, set through POST /_sandbox/faults and applied to every
-- route but /_sandbox/.  Each fault may carry "count" (the next N matching
-- requests), "probability" (each matching request with that chance) or
-- neither (every matching request until cleared), and may be narrowed by
-- "route" (a counters route name) and "method".
local util = require "sandbox.util"

local M = {}

local KNOWN = {
  latency_ms = true, status = true, drop = true, truncate = true,
  garbage = true, trickle = true, rate_limit = true,
}

local current = {}
local active = false   -- any fault set (next() is not compiled by LuaJIT)
local window_second, window_count = 0, 0

function M.reset()
  current = {}
  active = false
  window_second, window_count = 0, 0
end

function M.get() return current end

-- Merges new faults; a key set to JSON null (or false) is removed.
function M.merge(t, null)
  for k in pairs(t) do
    if not KNOWN[k] then return nil, "unknown fault '" .. tostring(k) .. "'" end
  end
  local st = t.status
  if type(st) == "table" and type(st.code) ~= "number" then
    return nil, "status needs a numeric code"
  end
  for k, v in pairs(t) do
    if v == null or v == false then current[k] = nil else current[k] = v end
  end
  active = next(current) ~= nil
  return true
end

-- Does fault f apply to this request?  Consumes one of its count.
local function fires(f, method, route)
  if type(f) ~= "table" then return f ~= nil end
  if f.route and f.route ~= route then return false end
  if f.method and f.method ~= method then return false end
  if f.count then
    if f.count <= 0 then return false end
    f.count = f.count - 1
    return true
  end
  if f.probability then return math.random() < f.probability end
  return true
end

local function latency(v)
  if type(v) == "number" then return v end
  if type(v) == "table" and type(v[1]) == "number" then
    local lo, hi = v[1], v[2] or v[1]
    return lo + math.random() * (hi - lo)
  end
  if type(v) == "table" and type(v.ms) == "number" then return v.ms end
  if type(v) == "table" and type(v.min) == "number" then
    return latency({ v.min, v.max or v.min })
  end
  return 0
end

local GATEWAY_MESSAGES = {
  [401] = "Oauth token is not valid", [403] = "Forbidden",
  [429] = "Too many requests", [503] = "Service unavailable",
}

local function gateway(code, error_code, message)
  return { status = code,
           body = util.encode_sorted({ error_code = error_code, message = message }) }
end

-- Faults acting before the request is served.  Returns nil (serve it),
-- "drop", or a response {status, body, headers}.
function M.before(method, route)
  if not active then return nil end
  local lat = current.latency_ms
  if lat then
    -- An array is a [min, max] range; an object may be conditional.
    local conditional = type(lat) == "table" and lat[1] == nil
    if not conditional or fires(lat, method, route) then
      -- counted from the request's arrival, not from now: under load the
      -- handler starts late, and a plain sleep would add that delay on top
      local ms = latency(lat)
      if ms > 0 then
        ngx.update_time()
        local left = ngx.req.start_time() + ms / 1000 - ngx.now()
        if left > 0 then ngx.sleep(left) end
      end
    end
  end
  local limit = current.rate_limit
  if type(limit) == "number" then
    local sec = math.floor(ngx.now())
    if sec ~= window_second then window_second, window_count = sec, 0 end
    if window_count >= limit then
      local r = gateway(429, "429050", "Too many requests")
      r.headers = { ["Retry-After"] = "1" }
      return r
    end
    window_count = window_count + 1
  end
  local drop = current.drop
  if drop and not (type(drop) == "table" and drop.after) and fires(drop, method, route) then
    return "drop"
  end
  local st = current.status
  if st and fires(st, method, route) then
    local r
    if st.error_code or st.code == 429 then
      r = gateway(st.code, tostring(st.error_code or "429050"),
        st.message or GATEWAY_MESSAGES[st.code] or "Gateway error")
    else
      r = { status = st.code, body = util.encode_sorted({ code = st.code,
        message = st.message or ("Sandbox fault: status " .. st.code) }) }
    end
    if st.retry_after then r.headers = { ["Retry-After"] = tostring(st.retry_after) } end
    return r
  end
  return nil
end

-- Faults acting on the answer of a request that was served (its change
-- made).  Returns nil, or the kind ("drop" with "after": true, "garbage",
-- "truncate", "trickle") and its options.
function M.after(method, route)
  if not active then return nil end
  local drop = current.drop
  if type(drop) == "table" and drop.after and fires(drop, method, route) then
    return "drop", drop
  end
  for _, kind in ipairs({ "garbage", "truncate", "trickle" }) do
    local f = current[kind]
    if f and fires(f, method, route) then return kind, f end
  end
  return nil
end

return M
