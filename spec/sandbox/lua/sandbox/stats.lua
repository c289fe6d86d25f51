-- Counters and the request log of the API routes (never /_sandbox/).
-- The log is a ring of parallel arrays: no table per request, so logging
-- costs the hot path next to nothing.
local M = {}

local CAP = 50000
local T, Me, R, S, C = {}, {}, {}, {}, {}
local written = 0

local KEYS = {}
local requests, methods, seen_conn = {}, {}, {}
local connections, total = 0, 0

function M.reset()
  T, Me, R, S, C = {}, {}, {}, {}, {}
  written = 0
  requests, methods, seen_conn = {}, {}, {}
  connections, total = 0, 0
end

-- One finished request.  A connection counts once, the first time one
-- of its requests reaches an API route.
function M.record(method, route, status, conn, t)
  -- "GET profile/pkey" made once, not per request
  local by_route = KEYS[method]
  if not by_route then by_route = {} KEYS[method] = by_route end
  local key = by_route[route]
  if not key then key = method .. " " .. route by_route[route] = key end
  requests[key] = (requests[key] or 0) + 1
  methods[method] = (methods[method] or 0) + 1
  total = total + 1
  if not seen_conn[conn] then
    seen_conn[conn] = true
    connections = connections + 1
  end
  written = written + 1
  local i = (written - 1) % CAP + 1
  T[i], Me[i], R[i], S[i], C[i] = t, method, route, status, conn
end

function M.counters()
  return { requests = requests, methods = methods,
           connections = connections, total = total }
end

-- The log, oldest first; `since` keeps entries with t >= since.
function M.log(since)
  local out = {}
  local first = written > CAP and written - CAP + 1 or 1
  for w = first, written do
    local i = (w - 1) % CAP + 1
    if not since or T[i] >= since then
      out[#out + 1] = { t = T[i], method = Me[i], route = R[i],
                        status = S[i], conn = C[i] }
    end
  end
  return out
end

return M
