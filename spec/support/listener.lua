-- A local HTTP listener of the specs' own, for what the sandbox cannot
-- do: raw, hand-made answers on 127.0.0.1.  Run as its own process:
--
--   lua5.4 spec/support/listener.lua LOGFILE [noaccept]
--
-- It prints "PORT PID" on its first line, then serves one connection at
-- a time until killed (or after 15 minutes, in case nobody kills it).
-- Each connection carries one request (answers say Connection: close).
-- Every request is appended to LOGFILE as one JSON line: { line, headers
-- = { raw header lines }, body }.
--
-- The answer is picked by the last segment of the request path (before
-- any query): a name of the `scenarios` table below ("s-chunked", ...).
-- Any other path gets 200 and a JSON echo of the request, so a spec can
-- see exactly which request line and headers went out.  The token
-- endpoint (/ims/token/v3) answers as set by GET /_ctl/token/<mode>;
-- GET /_ctl/ping answers once the connections before it are served.
--
-- With "noaccept" it listens but never accepts, and fills its own
-- backlog first: a new connection then waits in SYN-SENT until the
-- client's connect timeout.
local socket = require "socket"
local cjson = require("cjson").new()

local LOG = assert(arg[1], "usage: listener.lua LOGFILE [noaccept]")
local MODE = arg[2] or "serve"
local LIFE = 900

local function my_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end

local server = assert(socket.bind("127.0.0.1", 0, MODE == "noaccept" and 1 or 32))
local _, PORT = server:getsockname()
PORT = tonumber(PORT)

---------------------------------------------------------------- answers

local PROFILE = '{"PKey":"@listener-1","email":"zoe@example.com",' ..
  '"lastName":"Ota","ccpaOptOut":true,"age":42}'

local function gzip(text)
  local name = os.tmpname()
  local f = assert(io.open(name, "wb"))
  f:write(text)
  f:close()
  local p = assert(io.popen("gzip -c -n " .. name, "r"))
  local z = p:read("a")
  p:close()
  os.remove(name)
  return z
end

local GZ_PROFILE = gzip(PROFILE)
-- Two megabytes of JSON that gzip packs into a few kilobytes.
local GZ_BOMB = gzip('{"pad":"' .. ("a"):rep(2 * 1024 * 1024) .. '"}')

-- One request per connection (Connection: close): the listener serves one
-- connection at a time, and must not sit on an idle keep-alive one.
local function head(status, headers)
  local t = { "HTTP/1.1 " .. status }
  for _, h in ipairs(headers or {}) do t[#t + 1] = h end
  if not status:match("^1") then t[#t + 1] = "Connection: close" end
  return table.concat(t, "\r\n") .. "\r\n\r\n"
end

-- A whole answer with Content-Length (keep-alive).
local function answer(c, status, body, headers)
  local h = { "Content-Type: application/json",
              "Content-Length: " .. #body }
  for _, x in ipairs(headers or {}) do h[#h + 1] = x end
  c:send(head(status, h) .. body)
  return "keep"
end

local function send_chunks(c, pieces)
  for _, p in ipairs(pieces) do
    if not c:send(("%x\r\n%s\r\n"):format(#p, p)) then return end
  end
  c:send("0\r\n\r\n")
end

local function nested(n, open, close)
  return open:rep(n) .. close:rep(n)
end

local token_mode = "ok"
local token_count = 0

local token_answers = {
  ok = function(c)
    token_count = token_count + 1
    return answer(c, "200 OK", cjson.encode {
      access_token = "listener-token-" .. token_count,
      token_type = "bearer", expires_in = 86399 })
  end,
  -- a refusal whose description repeats what the client sent
  echo_refusal = function(c, req)
    return answer(c, "401 Unauthorized", cjson.encode {
      error = "invalid_client",
      error_description = "refused: " .. req.body })
  end,
  -- a refusal whose code is what the client sent
  echo_code = function(c, req)
    return answer(c, "400 Bad Request", cjson.encode {
      error = req.body, error_description = "refused" })
  end,
  server_error = function(c)
    return answer(c, "500 Internal Server Error", '{"error":"oops"}')
  end,
  garbage = function(c)
    return answer(c, "200 OK", "<html>not a token</html>")
  end,
  no_token = function(c)
    return answer(c, "200 OK", '{"token_type":"bearer","expires_in":10}')
  end,
  bad_token = function(c)
    return answer(c, "200 OK", cjson.encode {
      access_token = "evil\r\nX-Injected: 1", expires_in = 100 })
  end,
}

local scenarios = {
  ["s-json"] = function(c) return answer(c, "200 OK", PROFILE) end,
  ["s-chunked"] = function(c)
    c:send(head("200 OK", { "Content-Type: application/json",
                            "Transfer-Encoding: chunked" }))
    local pieces = {}
    for i = 1, #PROFILE, 7 do pieces[#pieces + 1] = PROFILE:sub(i, i + 6) end
    send_chunks(c, pieces)
    return "keep"
  end,
  ["s-http10"] = function(c)
    c:send("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" ..
           PROFILE)
    return "close"
  end,
  ["s-gzip"] = function(c, req)
    if not req.raw_headers:lower():find("accept%-encoding:[^\n]*gzip") then
      return answer(c, "406 Not Acceptable", '{"message":"no gzip asked"}')
    end
    return answer(c, "200 OK", GZ_PROFILE, { "Content-Encoding: gzip" })
  end,
  ["s-gzip-bomb"] = function(c)
    return answer(c, "200 OK", GZ_BOMB, { "Content-Encoding: gzip" })
  end,
  ["s-bad-gzip"] = function(c)
    return answer(c, "200 OK", "this is not gzip at all",
                  { "Content-Encoding: gzip" })
  end,
  ["s-empty200"] = function(c) return answer(c, "200 OK", "") end,
  ["s-204"] = function(c)
    c:send(head("204 No Content"))
    return "keep"
  end,
  ["s-302"] = function(c)
    return answer(c, "302 Found", "{}", {
      "Location: /acme/campaign/profileAndServices/profile/s-json" })
  end,
  ["s-307-away"] = function(c)
    return answer(c, "307 Temporary Redirect", "", {
      "Location: http://localhost:" .. PORT .. "/elsewhere/s-json" })
  end,
  ["s-big-length"] = function(c)
    local body = ("x"):rep(64 * 1024)
    c:send(head("200 OK", { "Content-Type: application/json",
                            "Content-Length: " .. 32 * #body }))
    for _ = 1, 32 do
      if not c:send(body) then break end
    end
    return "close"
  end,
  ["s-big-chunked"] = function(c)
    c:send(head("200 OK", { "Content-Type: application/json",
                            "Transfer-Encoding: chunked" }))
    local pieces = { '{"pad":"' }
    for i = 2, 64 do pieces[i] = ("y"):rep(16 * 1024) end
    pieces[#pieces + 1] = '"}'
    send_chunks(c, pieces)
    return "close"
  end,
  ["s-not-json"] = function(c)
    return answer(c, "200 OK", "<html><body>Maintenance</body></html>",
                  { "X-Note: html" })
  end,
  ["s-deep-array"] = function(c)
    return answer(c, "200 OK", nested(10000, "[", "]"))
  end,
  ["s-deep-object"] = function(c)
    return answer(c, "200 OK", ('{"a":'):rep(10000) .. "1" ..
                  ("}"):rep(10000))
  end,
  ["s-deep-error"] = function(c)
    return answer(c, "500 Internal Server Error", nested(10000, "[", "]"))
  end,
  ["s-bad-utf8"] = function(c)
    return answer(c, "200 OK", '{"PKey":"@u","lastName":"\xff\xfe\xc3(",' ..
                  '"firstName":"\xed\xa0\x80","ccpaOptOut":false}')
  end,
  ["s-bad-utf8-error"] = function(c)
    return answer(c, "404 Not Found",
                  '{"message":"RST-360011 \xff\xc3\x28 \x01\x7f gone"}')
  end,
  ["s-close-mid"] = function(c)
    c:send(head("200 OK", { "Content-Type: application/json",
                            "Content-Length: 1000" }) .. PROFILE:sub(1, 20))
    return "close"
  end,
  ["s-drop"] = function() return "close" end,
  ["s-half-head"] = function(c)
    c:send("HTTP/1.1 200 OK\r\nContent-Le")
    return "close"
  end,
  ["s-not-http"] = function(c)
    c:send("HELLO THERE\r\n\r\n")
    return "close"
  end,
  ["s-stall"] = function(c)
    c:send(head("200 OK", { "Content-Type: application/json",
                            "Content-Length: " .. #PROFILE }) ..
           PROFILE:sub(1, 10))
    socket.sleep(9)
    return "close"
  end,
  ["s-slow"] = function(c)
    socket.sleep(1.5)
    answer(c, "200 OK", PROFILE)
    return "close"
  end,
  ["s-trickle"] = function(c)
    c:send(head("200 OK", { "Content-Type: application/json",
                            "Content-Length: " .. #PROFILE }))
    for i = 1, #PROFILE, 8 do
      socket.sleep(0.05)
      if not c:send(PROFILE:sub(i, i + 7)) then break end
    end
    return "keep"
  end,
  ["s-interim"] = function(c)
    c:send("HTTP/1.1 100 Continue\r\n\r\n")
    return answer(c, "200 OK", PROFILE)
  end,
  ["s-error-echo"] = function(c, req)
    return answer(c, "400 Bad Request", cjson.encode {
      message = "you sent: " .. req.line .. " " .. req.raw_headers })
  end,
  -- the token again, where a 400-byte cut of the message falls inside it
  ["s-error-long-echo"] = function(c, req)
    local tok = req.raw_headers:match("[Aa]uthorization: Bearer ([^\r\n]+)") or ""
    return answer(c, "400 Bad Request", cjson.encode {
      message = ("x"):rep(400 - #tok // 2) .. tok })
  end,
  -- a gateway-style error whose code is 5,000 bytes long
  ["s-long-code"] = function(c)
    return answer(c, "429 Too Many Requests", cjson.encode {
      error_code = ("4"):rep(5000), message = "slow down" })
  end,
  ["s-error-code-echo"] = function(c, req)
    local tok = req.raw_headers:match("[Aa]uthorization: Bearer ([^\r\n]+)")
    local key = req.raw_headers:match("[Xx]%-[Aa]pi%-[Kk]ey: ([^\r\n]+)")
    return answer(c, "403 Forbidden", cjson.encode {
      error_code = tok or key or "none", message = "denied" })
  end,
  ["s-list-offhost"] = function(c)
    return answer(c, "200 OK", cjson.encode {
      content = { cjson.decode(PROFILE) },
      next = { href = "http://127.0.0.2:" .. PORT ..
               "/acme/campaign/profileAndServices/profile?_lineStart=x" } })
  end,
  ["s-list-dots"] = function(c)
    return answer(c, "200 OK", cjson.encode {
      content = { cjson.decode(PROFILE) },
      next = { href = "/acme/campaign/../../secret?x=1" } })
  end,
  ["s-429-date"] = function(c)
    return answer(c, "429 Too Many Requests",
                  '{"error_code":"429050","message":"slow down"}',
                  { "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT" })
  end,
}

---------------------------------------------------------------- serving

local function log(req)
  local f = io.open(LOG, "a")
  if f then
    f:write(cjson.encode { line = req.line, headers = req.headers,
                           body = req.body }, "\n")
    f:close()
  end
end

local function read_request(c)
  local line = c:receive("*l")
  if not line then return nil end
  local req = { line = line, headers = {}, body = "" }
  local len = 0
  while true do
    local h = c:receive("*l")
    if not h then return nil end
    if h == "" then break end
    req.headers[#req.headers + 1] = h
    local n = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  req.raw_headers = table.concat(req.headers, "\r\n")
  if len > 0 then req.body = c:receive(len) or "" end
  req.target = line:match("^%S+ (%S+)") or ""
  req.path = req.target:match("^[^?]*")
  req.name = req.path:match("([^/]*)$")
  return req
end

local function handle(c, req)
  if req.path == "/_ctl/ping" then return answer(c, "200 OK", "{}") end
  local mode = req.path:match("^/_ctl/token/(.+)$")
  if mode then
    token_mode = mode
    return answer(c, "200 OK", "{}")
  end
  log(req)
  if req.path == "/ims/token/v3" then
    return (token_answers[token_mode] or token_answers.ok)(c, req)
  end
  local s = scenarios[req.name]
  if s then return s(c, req) end
  return answer(c, "200 OK", cjson.encode {
    line = req.line, headers = req.headers, body = req.body })
end

local function serve(c)
  c:settimeout(10)
  local req = read_request(c)
  if req then pcall(handle, c, req) end
  c:close()
end

local born = socket.gettime()
if MODE == "noaccept" then
  -- fill the accept queue (and then some) with our own connections
  local held = {}
  for _ = 1, 8 do
    local s = socket.tcp()
    s:settimeout(0.2)
    s:connect("127.0.0.1", PORT)
    held[#held + 1] = s
  end
  io.write(PORT, " ", my_pid(), "\n")
  io.flush()
  while socket.gettime() - born < LIFE and #held > 0 do socket.sleep(1) end
  os.exit(0)
end

io.write(PORT, " ", my_pid(), "\n")
io.flush()
server:settimeout(1)
while socket.gettime() - born < LIFE do
  local c = server:accept()
  if c then serve(c) end
end
