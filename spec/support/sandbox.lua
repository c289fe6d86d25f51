-- Shared helpers for specs that drive the module against the sandbox
-- started by spec/sandbox/with-sandbox.sh:
--
--   local sandbox = require "spec.support.sandbox"
--   sandbox.reset()
--   local client = sandbox.client{ retries = 0 }
--   sandbox.faults{ status = { code = 503, count = 1 } }
--   local counters = sandbox.counters()
--
-- The control endpoint (/_sandbox/) is reached with LuaSocket, so these
-- helpers never depend on the module under test.  JSON goes through a
-- private cjson instance: the specs' own `require "cjson"` settings are
-- left as they are.
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local json = require("cjson").new()

local M = {}

M.base_url = os.getenv("CAMPAIGN_BASE_URL")
M.org = os.getenv("CAMPAIGN_ORG") or "acme"
M.api_key = os.getenv("CAMPAIGN_API_KEY") or "sandbox-client"
M.access_token = os.getenv("CAMPAIGN_ACCESS_TOKEN") or "sandbox-token"
M.client_secret = os.getenv("CAMPAIGN_CLIENT_SECRET") or "sandbox-secret"
M.null = json.null
M.json = json

assert(M.base_url and M.base_url:match("^http://127%.0%.0%.1:%d+$"),
  "CAMPAIGN_BASE_URL is not a loopback sandbox: run the specs through "
  .. "sh spec/sandbox/with-sandbox.sh")

-- Percent-encodes everything but RFC 3986's unreserved characters.
function M.escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- One raw exchange with the sandbox's port, with extra headers if
-- given; returns status and body.
function M.http(method, path, body, extra)
  local out = {}
  local headers = {}
  for k, v in pairs(extra or {}) do headers[k] = v end
  if body then
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = tostring(#body)
  end
  local ok, status = http.request{
    url = M.base_url .. path, method = method, headers = headers,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(out),
  }
  assert(ok, status)
  return status, table.concat(out)
end

-- A request to the control endpoint; asserts a 200 and returns the
-- decoded answer (nil for an empty one).
function M.control(method, name, body)
  if type(body) == "table" then body = json.encode(body) end
  local status, text = M.http(method, "/_sandbox/" .. name, body)
  assert(status == 200, ("/_sandbox/%s: %s %s"):format(name, status, text))
  if text == "" then return nil end
  return json.decode(text)
end

function M.reset() return M.control("POST", "reset") end
function M.faults(t) return M.control("POST", "faults", t) end
function M.clear_faults() return M.control("DELETE", "faults") end
function M.config(t) return M.control("POST", "config", t) end
function M.counters() return M.control("GET", "counters") end
function M.clear_counters() return M.control("DELETE", "counters") end
function M.info() return M.control("GET", "") end

-- The request log, oldest first: { t, method, route, status, conn }.
function M.log(since)
  return M.control("GET", "log" .. (since and ("?since=" .. since) or ""))
end

-- One profile as the sandbox holds it now, or nil when it has none.
function M.profile(pkey)
  local status, text = M.http("GET", "/_sandbox/profile/" .. M.escape(pkey))
  if status == 404 then return nil end
  assert(status == 200, "/_sandbox/profile: " .. status .. " " .. text)
  return json.decode(text)
end

-- Every profile as the sandbox holds it now, in creation order.
function M.profiles()
  local status, text = M.http("GET", "/_sandbox/profiles")
  assert(status == 200, "/_sandbox/profiles: " .. status)
  local all = {}
  for line in text:gmatch("[^\n]+") do all[#all + 1] = json.decode(line) end
  return all
end

-- The number of requests the sandbox counted for "METHOD route".
function M.count(key)
  return M.counters().requests[key] or 0
end

-- Options for campaign.new pointing at the sandbox, merged with `extra`.
function M.options(extra)
  local o = {
    org = M.org, api_key = M.api_key, access_token = M.access_token,
    base_url = M.base_url,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- A client of the module under test, on the sandbox.
function M.client(extra)
  return require("campaign").new(M.options(extra))
end

-- A port on 127.0.0.1 that nothing listens on (bound, then closed).
function M.closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

---------------------------------------------------------------------
-- A canned server: answers that the sandbox cannot give (an empty 200,
-- a bare JSON string as a profile, ...), one per connection, in order.
-- Runs in a child process; `stop` waits for it.

local CANNED = [[
local socket = require "socket"
local answers = ...
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
io.stdout:write(port, "\n")
io.stdout:flush()
srv:settimeout(5)
for _, raw in ipairs(answers) do
  local conn = srv:accept()
  if not conn then break end
  conn:settimeout(5)
  local length = 0
  while true do
    local line = conn:receive("*l")
    if not line or line == "" then break end
    local n = line:lower():match("^content%-length:%s*(%d+)")
    if n then length = tonumber(n) end
  end
  if length > 0 then conn:receive(length) end
  conn:send(raw)
  conn:close()
end
srv:close()
]]

-- `answers`: an array of { status =, body =, headers = { "Name: v" } }.
-- Returns the server's base URL and a function that waits for its end.
function M.canned(answers)
  local raws = {}
  for i, a in ipairs(answers) do
    local head = { ("HTTP/1.1 %d Canned"):format(a.status or 200),
                   "Content-Type: " .. (a.type or "application/json"),
                   "Content-Length: " .. #(a.body or ""),
                   "Connection: close" }
    for _, h in ipairs(a.headers or {}) do head[#head + 1] = h end
    raws[i] = table.concat(head, "\r\n") .. "\r\n\r\n" .. (a.body or "")
  end
  local parts = {}
  for i, r in ipairs(raws) do parts[i] = ("%q"):format(r) end
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write("return (function(...)\n", CANNED, "\nend)({", table.concat(parts, ","), "})\n")
  f:close()
  local proc = assert(io.popen("lua5.4 " .. script, "r"))
  local port = proc:read("*l")
  assert(port and port:match("^%d+$"), "canned server did not start")
  return "http://127.0.0.1:" .. port, function()
    proc:close()
    os.remove(script)
  end
end

return M
