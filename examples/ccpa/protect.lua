-- Protected calls that catch one function's own complaints, and nothing
-- else.
--
-- lua5.4 turns Ctrl-C into an error raised from a debug hook at the next
-- call, whichever it is.  A plain pcall around cjson.decode would take
-- that error for bad JSON, and the job would go on with the interrupt
-- lost: here it goes on up, as does any error f did not raise itself.
local M = {}

local Own = {}

-- A message handler: f's own error comes back marked.  Level 2 is the
-- function that raised: f itself when a C function complains of its
-- input, the hook (or `error`) when an interrupt is raised at a call.
local function handler_for(f)
  return function(e)
    local raiser = debug.getinfo(2, "f")
    if raiser and raiser.func == f then return setmetatable({ e }, Own) end
    return e
  end
end

-- Calls f (a C function, such as cjson.decode or campaign.new) with the
-- arguments.  Returns true and f's results, or false and the message of
-- an error f raised itself; raises any other error again.
function M.call(f, ...)
  local r = table.pack(xpcall(f, handler_for(f), ...))
  if r[1] then return table.unpack(r, 1, r.n) end
  if getmetatable(r[2]) == Own then return false, r[2][1] end
  error(r[2], 0)
end

return M
