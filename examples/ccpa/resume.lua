-- --resume: which records of an earlier report are settled, and copying
-- their rows into the new report.
--
-- Record numbers are kept in bit sets (64 records to an integer), so a
-- report of a million rows costs a few hundred kilobytes, not a table entry
-- per record.
local report = require "ccpa.report"

local M = {}

local Bits = {}
Bits.__index = Bits

function M.bits() return setmetatable({}, Bits) end

function Bits:set(n)
  local i, b = n // 64, 1 << (n % 64)
  self[i] = (self[i] or 0) | b
end

function Bits:has(n)
  local w = self[n // 64]
  return w ~= nil and w & (1 << (n % 64)) ~= 0
end

-- Reads an earlier report.  Returns a bit set of the settled records (every
-- row of theirs has a settled outcome), or nil and a message.
function M.settled(path)
  local rows, msg = report.rows(path)
  if not rows then return nil, msg end
  local seen, unsettled = M.bits(), M.bits()
  for row in rows do
    seen:set(row.record)
    if not report.SETTLED[row.outcome] then unsettled:set(row.record) end
  end
  local settled = M.bits()
  for i, w in pairs(seen) do
    local v = w & ~(unsettled[i] or 0)
    if v ~= 0 then settled[i] = v end
  end
  return settled
end

-- Copies the rows of the settled records from the earlier report into the
-- writer, one request's rows per write.  Calls count(record, rows) once for
-- each record copied.  A record's rows are written together by the job, so
-- they stand together in the report.
function M.copy(path, settled, writer, count)
  local rows, msg = report.rows(path)
  if not rows then return nil, msg end
  local copied = M.bits()
  local group, current = {}, nil
  local function flush()
    if current and not copied:has(current) then
      copied:set(current)
      writer:write(group)
      count(current, group)
    end
    group, current = {}, nil
  end
  for row in rows do
    if settled:has(row.record) then
      if row.record ~= current then flush() end
      current = row.record
      group[#group + 1] = row
    end
  end
  flush()
  return true
end

return M
