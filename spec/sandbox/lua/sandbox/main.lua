-- Start-up of the worker: settings from the environment, the seed, and a
-- "ready" file in the prefix that sandbox.sh waits for.
local control = require "sandbox.control"

local M = {}

local function write_ready(text)
  local f = io.open(ngx.config.prefix() .. "/ready", "w")
  if f then f:write(text, "\n") f:close() end
end

function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  local seed = os.getenv("SANDBOX_SEED")
  local base = os.getenv("SANDBOX_BASE_URL") or "http://127.0.0.1"
  local ok, n, err = pcall(control.init, seed, base)
  if not ok then
    write_ready("error: " .. tostring(n))
  elseif not n then
    write_ready("error: " .. tostring(err))
  else
    write_ready("ok " .. n)
  end
end

return M
