--- campaign.ngx: the campaign module from an nginx request handler, without
-- ever blocking the worker.
--
--   local cngx = require "campaign.ngx"
--   local ok, err = cngx.call(settings, "set_ccpa_optout", pkey, true)
--
-- or, the same through an object shaped like a client:
--
--   local client = cngx.client(settings)
--   local people, err = client:find_profiles{ email = email }
--
-- `settings` are campaign.new's options. The call runs on an nginx thread
-- pool (ngx.run_worker_thread), in one of the Lua states the Lua module
-- keeps for that (lua_worker_thread_vm_pool_size); meanwhile the request's
-- light thread yields and the worker serves other requests. Each such Lua
-- state keeps one client per distinct settings, created on first use, so
-- keep-alive connections and tokens are reused from call to call.
--
-- Results and `err` are those of the client's method: values cross between
-- Lua states without metatables, so err tables get campaign's err metatable
-- back here (tostring(err) gives "campaign: <kind> [status] [code]: message").
-- Misuse raises here, with the module's message. The helper adds one kind
-- of err of its own, "thread": no Lua state became free within `wait`
-- seconds (code "BUSY"), or the thread machinery failed ("THREAD"); both are
-- retryable.
--
-- Usable wherever the Lua module lets a request yield: rewrite, access and
-- content phases, ngx.timer callbacks. Not in init, set, header/body filter
-- or log phases (start an ngx.timer.at(0, ...) there).
--
-- nginx needs, in the main context, a thread pool named as `pool` below:
--   thread_pool campaign threads=16;
-- and, in http, at least `vms` Lua states for worker threads:
--   lua_worker_thread_vm_pool_size 16;
-- and lua_package_path/lua_package_cpath that find this file and the
-- LuaJIT build of campaign.so (build/luajit/).
local M = { _VERSION = "0.1.0" }

local ngx = ngx
local MODULE = ...  -- "campaign.ngx", or however it was required
local SOURCE = debug.getinfo(1, "S").short_src

local conf = {
  pool = "campaign",  -- the thread_pool's name
  vms = 10,           -- calls at once per worker: <= lua_worker_thread_vm_pool_size
  wait = 10,          -- seconds a call may wait for a free Lua state
  auth_retry = 60,    -- seconds before a client refused by the token endpoint is remade
}

local METHODS = {
  get_profile = true, create_profile = true, update_profile = true,
  delete_profile = true, find_profiles = true, count_profiles = true,
  get_ccpa_optout = true, set_ccpa_optout = true, request = true, bulk = true,
}

local unpack = rawget(table, "unpack") or unpack

local function pack(...)
  return { n = select("#", ...), ... }
end

------------------------------------------------------------------------
-- The worker-thread side: runs in the Lua states of the thread pool.

local clients, nclients = {}, 0
local MAX_CLIENTS = 16

-- A key for a settings table: its entries, sorted, as text.
local function settings_key(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then v = settings_key(v) end
    parts[i] = k .. "=" .. type(v) .. ":" .. tostring(v)
  end
  return "{" .. table.concat(parts, "\0") .. "}"
end

local function client_for(settings, auth_retry)
  local key = settings_key(settings)
  local entry = clients[key]
  if entry and entry.auth_failed_at and os.time() - entry.auth_failed_at >= auth_retry then
    entry.client:close()
    clients[key], nclients, entry = nil, nclients - 1, nil
  end
  if not entry then
    if nclients >= MAX_CLIENTS then
      for _, e in pairs(clients) do e.client:close() end
      clients, nclients = {}, 0
    end
    entry = { client = require("campaign").new(settings) }
    clients[key], nclients = entry, nclients + 1
  end
  return entry
end

local function run(auth_retry, settings, method, ...)
  local entry = client_for(settings, auth_retry)
  local client = entry.client
  if method == "bulk" then
    local ops, opts = ...
    local results, errs = {}, {}
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.on_result = function(i, _, result, err)
      results[i], errs[i] = result, err
    end
    local summary = client:bulk(ops, o)
    return summary, results, errs
  end
  local r = pack(client[method](client, ...))
  local err = r[2]
  if r[1] == nil and type(err) == "table" and err.kind == "auth" then
    entry.auth_failed_at = entry.auth_failed_at or os.time()
  end
  return unpack(r, 1, r.n)
end

-- Called by ngx.run_worker_thread. Never raises: a raised error comes back
-- as "raise", message, to be raised again on the caller's side.
function M._thread(auth_retry, settings, method, ...)
  local r = pack(pcall(run, auth_retry, settings, method, ...))
  if not r[1] then
    -- The position is this file's, in the worker thread: drop it, so that
    -- the caller's side raises with the caller's position.
    local msg = tostring(r[2])
    if msg:sub(1, #SOURCE + 1) == SOURCE .. ":" then
      msg = msg:gsub("^[^:]*:%d+: ", "", 1)
    end
    return "raise", msg
  end
  r[1] = "ok"
  return unpack(r, 1, r.n)
end

------------------------------------------------------------------------
-- The caller's side: the request handler's Lua state.

local err_mt
-- campaign's own err metatable (the module registers it as
-- "campaign.error"), or an equivalent one when the module cannot be
-- loaded in this Lua state.
local function error_metatable()
  if err_mt then return err_mt end
  local ok, campaign = pcall(require, "campaign")
  if ok and type(campaign) == "table" and type(campaign.error_metatable) == "table" then
    err_mt = campaign.error_metatable
  elseif ok then
    err_mt = debug.getregistry()["campaign.error"]
  end
  if type(err_mt) ~= "table" then
    err_mt = {
      __tostring = function(e)
        local s = "campaign: " .. tostring(e.kind)
        if type(e.status) == "number" then s = s .. " " .. e.status end
        if e.code ~= nil then s = s .. " " .. tostring(e.code) end
        if type(e.message) == "string" then s = s .. ": " .. e.message end
        return s
      end,
    }
  end
  return err_mt
end

local function is_err(v)
  return type(v) == "table" and getmetatable(v) == nil and type(v.kind) == "string"
    and type(v.retryable) == "boolean"
end

local function restore(v)
  if is_err(v) then return setmetatable(v, error_metatable()) end
  return v
end

local function thread_err(code, message)
  return setmetatable({ kind = "thread", code = code, message = message,
                        retryable = true }, error_metatable())
end

-- nil, or why a value cannot cross to another Lua state (functions,
-- coroutines and full userdata cannot; JSON null, a light userdata, can).
local function crossing_problem(v, depth)
  local t = type(v)
  if t == "table" then
    if depth > 50 then return "nests too deep" end
    for k, x in pairs(v) do
      local why = crossing_problem(k, depth + 1) or crossing_problem(x, depth + 1)
      if why then return why end
    end
  elseif t == "function" or t == "thread" or (t == "userdata" and v ~= ngx.null) then
    return "holds a " .. t
  end
  return nil
end

local function check_crossing(v, fname, argn, level)
  local why = crossing_problem(v, 0)
  if why then
    error(("bad argument #%d to '%s' (%s, which cannot cross to a worker thread)")
      :format(argn, fname, why), level + 1)
  end
end

local sema
local function semaphore()
  if not sema then
    sema = assert(require("ngx.semaphore").new(conf.vms))
  end
  return sema
end

--- Sets the helper's options for this worker: `pool` (the thread_pool's
-- name, "campaign"), `vms` (calls at once per worker, 10: at most
-- lua_worker_thread_vm_pool_size), `wait` (seconds a call waits for a free
-- Lua state, 10), `auth_retry` (seconds after which a client whose
-- credentials were refused is made again, 60). Call it in init_by_lua.
function M.configure(options)
  for k, v in pairs(options) do
    if conf[k] == nil then
      error("bad option '" .. tostring(k) .. "' to 'campaign.ngx.configure' (unknown option)", 2)
    end
    if type(v) ~= type(conf[k]) then
      error("bad option '" .. k .. "' to 'campaign.ngx.configure' (" .. type(conf[k])
        .. " expected)", 2)
    end
    conf[k] = v
  end
  sema = nil
end

-- M.call's work; errors are raised at `level` (as error() counts it
-- from this function); argument numbers in messages start at `first`.
local function invoke(level, fname, first, settings, method, ...)
  if type(settings) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (a settings table expected)", level)
  end
  if not METHODS[method] then
    error("bad argument #2 to '" .. fname .. "' (a client method expected, got "
      .. tostring(method) .. ")", level)
  end
  check_crossing(settings, fname, 1, level)
  local args = pack(...)
  for i = 1, args.n do
    check_crossing(args[i], fname, i + first - 1, level)
  end
  if method == "bulk" and type(args[1]) ~= "table" then
    error("bad argument #" .. first .. " to '" .. fname
      .. "' (bulk takes an array of ops here)", level)
  end

  local s = semaphore()
  local ok, werr = s:wait(conf.wait)
  if not ok then
    return nil, thread_err("BUSY", "no worker thread free within " .. conf.wait
      .. " s (" .. tostring(werr) .. ")")
  end
  local r = pack(pcall(ngx.run_worker_thread, conf.pool, MODULE, "_thread",
                       conf.auth_retry, settings, method, ...))
  s:post(1)
  if not r[1] then
    return nil, thread_err("THREAD", tostring(r[2]))
  end
  -- r[2]: run_worker_thread's own status; r[3]: "ok" or "raise".
  if not r[2] then
    return nil, thread_err("THREAD", tostring(r[3]))
  end
  if r[3] == "raise" then
    error(r[4], level)
  end
  if method == "bulk" and type(r[6]) == "table" then
    for _, e in pairs(r[6]) do restore(e) end
  end
  for i = 4, r.n do r[i] = restore(r[i]) end
  return unpack(r, 4, r.n)
end

--- Calls client:method(...) on a worker thread with the client kept for
-- `settings`, and returns what it returns (err tables with their metatable).
-- For "bulk", ops must be an array and on_result is not allowed: the
-- results come back as summary, results, errs (indexed like ops).
function M.call(settings, method, ...)
  -- Not a tail call, so that level 3 is M.call's caller.
  local r = pack(invoke(3, "campaign.ngx.call", 3, settings, method, ...))
  return unpack(r, 1, r.n)
end

local proxy_mt = {}
proxy_mt.__index = function(self, name)
  if not METHODS[name] then return nil end
  local f = function(me, ...)
    if me ~= self then
      error("calling '" .. name .. "' on bad self (use client:" .. name .. "(...))", 2)
    end
    local r = pack(invoke(3, name, 1, rawget(self, "settings"), name, ...))
    return unpack(r, 1, r.n)
  end
  rawset(self, name, f)
  return f
end
proxy_mt.__tostring = function(self)
  return "campaign.ngx client (org " .. tostring(rawget(self, "settings").org) .. ")"
end

--- An object with the client's methods (not `profiles` nor `close`), each
-- one M.call with these settings. Cheap: make one per request if you like.
function M.client(settings)
  if type(settings) ~= "table" then
    error("bad argument #1 to 'campaign.ngx.client' (a settings table expected)", 2)
  end
  check_crossing(settings, "campaign.ngx.client", 1, 2)
  local copy = {}
  for k, v in pairs(settings) do copy[k] = v end
  return setmetatable({ settings = copy }, proxy_mt)
end

M._settings_key = settings_key
return M
