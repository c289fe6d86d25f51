-- Spec-side helpers for the local peers of the hardening specs: the raw
-- HTTP listener (spec/support/listener.lua, run as its own process), a
-- TLS server with a self-signed certificate made at test time, and the
-- sandbox's control routes.  Everything listens on 127.0.0.1 only.
local socket = require "socket"
local http = require "socket.http"
local cjson = require("cjson").new()

local M = {}

M.ROOT = io.popen("pwd"):read("l")
M.LUA = "lua5.4"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = sh_quote

local function read_file(name)
  local f = io.open(name, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

-- A port no one listens on now (bound, then let go).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Waits until something accepts on 127.0.0.1:port.
local function wait_port(port, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then
      c:close()
      return true
    end
    c:close()
    socket.sleep(0.05)
  end
  error("nothing listens on 127.0.0.1:" .. port)
end

---------------------------------------------------------------- listener

local Listener = {}
Listener.__index = Listener

-- Starts a listener; mode "noaccept" for one that never accepts.
function M.listener(mode)
  local log = os.tmpname()
  local cmd = ("exec %s %s/spec/support/listener.lua %s %s"):format(
    M.LUA, M.ROOT, sh_quote(log), mode or "serve")
  local pipe = assert(io.popen(cmd, "r"))
  local line = pipe:read("l")
  assert(line, "the listener did not start")
  local port, pid = line:match("^(%d+) (%d+)$")
  local self = setmetatable({ pipe = pipe, port = tonumber(port),
    pid = tonumber(pid), logfile = log }, Listener)
  self.url = "http://127.0.0.1:" .. self.port
  return self
end

function Listener:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.pipe:close()
    os.remove(self.logfile)
    self.pid = nil
  end
end

-- The requests it received so far: { line, headers = {...}, body }.
function Listener:requests()
  local t = {}
  for l in (read_file(self.logfile) or ""):gmatch("[^\n]+") do
    t[#t + 1] = cjson.decode(l)
  end
  return t
end

-- Waits until the listener has served every connection before (it
-- serves one at a time, and some scenarios sleep).
function Listener:wait_idle()
  http.TIMEOUT = 15
  local ok, code = http.request(self.url .. "/_ctl/ping")
  http.TIMEOUT = 60
  assert(ok and code == 200, "the listener does not answer")
end

function Listener:clear()
  self:wait_idle()
  local f = io.open(self.logfile, "w")
  if f then f:close() end
end

-- How the token endpoint answers from now on (see listener.lua).
function Listener:token_mode(mode)
  local ok, code = http.request(self.url .. "/_ctl/token/" .. mode)
  assert(ok and code == 200, "token mode " .. mode)
end

---------------------------------------------------------------- TLS

local Tls = {}
Tls.__index = Tls

-- A self-signed certificate for 127.0.0.1 and localhost, made now, and
-- `openssl s_server -WWW` serving the files of a fresh folder with it.
function M.tls_server(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  local ok = os.execute(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes "
    .. "-keyout key.pem -out cert.pem -days 1 -subj /CN=localhost "
    .. "-addext subjectAltName=IP:127.0.0.1,DNS:localhost "
    .. ">/dev/null 2>&1"):format(sh_quote(dir)))
  assert(ok, "openssl could not make a certificate")
  for name, text in pairs(files or {}) do
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(text)
    f:close()
  end
  local port = M.free_port()
  local pidfile = dir .. "/pid"
  assert(os.execute(("cd %s && (openssl s_server -quiet -WWW -accept "
    .. "127.0.0.1:%d -cert cert.pem -key key.pem </dev/null >server.log 2>&1 "
    .. "& echo $! > %s)"):format(sh_quote(dir), port, sh_quote(pidfile))))
  wait_port(port)
  local self = setmetatable({ dir = dir, port = port,
    pid = tonumber(read_file(pidfile)), ca_file = dir .. "/cert.pem" }, Tls)
  self.url = "https://127.0.0.1:" .. port
  return self
end

function Tls:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.pid = nil
    os.execute("rm -rf " .. sh_quote(self.dir))
  end
end

---------------------------------------------------------------- sandbox

-- The sandbox's settings and control routes, from spec/support/sandbox.lua
-- under the names these specs use; loaded at first use, since the TLS and
-- injection specs run without a sandbox.
local function sandbox() return require "spec.support.sandbox" end

local FROM_SANDBOX = {
  BASE = "base_url", ORG = "org", KEY = "api_key", TOKEN = "access_token",
  SECRET = "client_secret", control = "control", reset = "reset",
  faults = "faults", config = "config", count = "count",
}
setmetatable(M, { __index = function(_, k)
  local name = FROM_SANDBOX[k]
  if name then return sandbox()[name] end
end })

M.now = socket.gettime

-- The PKey of the first profile of the seed.
function M.first_pkey()
  local status, text = sandbox().http("GET", "/" .. M.ORG ..
    "/campaign/profileAndServices/profile?_lineCount=1", nil, {
      ["X-Api-Key"] = M.KEY, ["Authorization"] = "Bearer " .. M.TOKEN })
  assert(status == 200, "cannot list the sandbox's profiles")
  return cjson.decode(text).content[1].PKey
end

-- A client of the sandbox with a plain token; options added or replaced.
function M.sandbox_client(campaign, extra)
  local o = { retries = 0, timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return campaign.new(sandbox().options(o))
end

return M
