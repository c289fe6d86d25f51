-- Protected calls that an interrupt cannot reach.
--
-- lua5.4 turns Ctrl-C into an error raised from a hook it sets on the
-- main thread, at whatever event comes next.  A pcall around
-- cjson.decode would catch it there and take it for bad JSON: the job
-- would go on, the interrupt lost.  These calls run on a coroutine made
-- when this module loads (a new coroutine takes a copy of the hooks of
-- the moment), which lua5.4's hook never reaches: an error caught there
-- is the function's own, and an interrupt waits for the call to end,
-- then rises in the caller.
local M = {}

local quiet = coroutine.wrap(function(...)
  local call = table.pack(...)
  while true do
    call = table.pack(coroutine.yield(pcall(table.unpack(call, 1, call.n))))
  end
end)

-- Calls f (such as cjson.decode or campaign.new, which raise on bad
-- input) with the arguments, as pcall would: true and f's results, or
-- false and its error.  f must not call M.call itself.
function M.call(f, ...)
  return quiet(f, ...)
end

return M
