-- /_sandbox/: the control endpoint used by specs and benchmarks.  No
-- authentication, never subject to faults, never counted.
local config = require "sandbox.config"
local faults = require "sandbox.faults"
local stats = require "sandbox.stats"
local store = require "sandbox.store"
local util = require "sandbox.util"

local M = {}

local seed_path  -- the seed a reset restores

local function reply(status, body, ctype)
  ngx.status = status
  ngx.header.content_type = ctype or "application/json;charset=utf-8"
  ngx.header.content_length = #body
  ngx.print(body)
end

local function fail(status, message)
  reply(status, util.encode({ error = message }))
end

local function json_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  if not body:find("%S") then return {} end
  local t = util.decode(body)
  if type(t) ~= "table" then return nil end
  return t
end

-- Start-up and reset: seed, settings, faults, counters, tokens.
function M.reset(path)
  local n, err = store.load(path or seed_path)
  if not n then return nil, err end
  if path then seed_path = path end
  config.reset()
  faults.reset()
  stats.reset()
  config.current.base_url = M.base_url
  store.forget_json()
  return n
end

function M.init(path, base_url)
  seed_path = path
  M.base_url = base_url
  config.reset()
  config.current.base_url = base_url
  return M.reset(path)
end

local routes = {}

routes["POST reset"] = function()
  local body = json_body()
  if not body then return fail(400, "body must be a JSON object") end
  if body.seed ~= nil and type(body.seed) ~= "string" then
    return fail(400, "seed must be a path")
  end
  local n, err = M.reset(body.seed)
  if not n then return fail(400, err) end
  reply(200, util.encode({ profiles = n, seed = seed_path }))
end

routes["GET faults"] = function()
  reply(200, util.encode(faults.get()))
end

routes["POST faults"] = function()
  local body = json_body()
  if not body then return fail(400, "body must be a JSON object") end
  local ok, err = faults.merge(body, util.null)
  if not ok then return fail(400, err) end
  reply(200, util.encode(faults.get()))
end

routes["DELETE faults"] = function()
  faults.reset()
  reply(200, "{}")
end

routes["GET config"] = function()
  reply(200, util.encode(config.current))
end

routes["POST config"] = function()
  local body = json_body()
  if not body then return fail(400, "body must be a JSON object") end
  local ok, err = config.set(body)
  if not ok then return fail(400, err) end
  store.forget_json()
  reply(200, util.encode(config.current))
end

routes["GET counters"] = function()
  reply(200, util.encode(stats.counters()))
end

-- Counters and log back to zero, profiles untouched.
routes["DELETE counters"] = function()
  stats.reset()
  reply(200, "{}")
end
routes["DELETE log"] = routes["DELETE counters"]

routes["GET log"] = function()
  local since = tonumber(ngx.req.get_uri_args().since)
  local entries = stats.log(since)
  if #entries == 0 then return reply(200, "[]") end
  reply(200, util.encode(entries))
end

-- Every profile, one JSON object a line, in creation order; sent in
-- slices, as a big seed's whole text would not fit in one string.
-- Parses every seed line now instead of at its first use, so that a
-- benchmark right after a reset measures the client, not this.
routes["POST warm"] = function()
  local n = 0
  for _, rec in ipairs(store.all()) do
    if rec.p then n = n + 1 end
  end
  reply(200, util.encode({ profiles = n }))
end

routes["GET profiles"] = function()
  local all = store.all()
  ngx.header.content_type = "application/x-ndjson;charset=utf-8"
  local out = {}
  for i = 1, #all do
    out[#out + 1] = store.encode(all[i], true, true)
    if #out == 1000 or i == #all then
      out[#out + 1] = ""
      ngx.print(table.concat(out, "\n"))
      out = {}
    end
  end
end

local function one_profile(pkey)
  local rec = store.get(pkey)
  if not rec then return fail(404, "no profile " .. pkey) end
  reply(200, store.encode(rec, true))
end

routes["GET "] = function()
  reply(200, util.encode({ profiles = store.size(), seed = seed_path,
    org = config.current.org, base_url = M.base_url }))
end

function M.handle()
  local method = ngx.req.get_method()
  local uri = ngx.var.request_uri
  local path = uri:match("^[^?]*")
  local name = path:match("^/_sandbox/(.-)/?$") or ""
  local pkey = name:match("^profile/(.+)$")
  if pkey then
    if method ~= "GET" then return fail(405, "GET only") end
    return one_profile(util.unescape_path(pkey))
  end
  local fn = routes[method .. " " .. name]
  if not fn then return fail(404, "no control route " .. method .. " /_sandbox/" .. name) end
  fn()
end

return M
