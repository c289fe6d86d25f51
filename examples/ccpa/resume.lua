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

function Bits:clear(n)
  local i = n // 64
  if self[i] then self[i] = self[i] & ~(1 << (n % 64)) end
end

function Bits:has(n)
  local w = self[n // 64]
  return w ~= nil and w & (1 << (n % 64)) ~= 0
end

-- A Bloom filter of strings, of a fixed size (2^22 bits, about 1 MB here):
-- it may say yes for a string it was never given (rarely, and then a
-- record is only done once more), never no for one it was.
local FILTER_BITS = 22
local MASK = (1 << FILTER_BITS) - 1

local function hash(s)
  s = s .. ("\0"):rep(-#s % 8)
  local h = 0x6a09e667f3bcc909
  for i = 1, #s, 8 do
    h = (h ~ string.unpack("<i8", s, i)) * 0x100000001b3
    h = h ~ (h >> 29)
  end
  h = (h ~ (h >> 33)) * 0x62a9d9ed799705f5
  return h ~ (h >> 28)
end

local function filter()
  local bits = M.bits()
  local f = {}
  function f.add(s)
    local h = hash(s)
    bits:set(h & MASK)
    bits:set((h >> 21) & MASK)
    bits:set((h >> 42) & MASK)
  end
  function f.has(s)
    local h = hash(s)
    return bits:has(h & MASK) and bits:has((h >> 21) & MASK)
      and bits:has((h >> 42) & MASK)
  end
  return f
end

-- The rows of a report, a record's rows at a time.  The job writes a
-- request's rows together, so they stand together.
local function groups(path)
  local rows, msg = report.rows(path)
  if not rows then return nil, msg end
  local pending = rows()
  return function()
    if not pending then return nil end
    local rec, group = pending.record, { pending }
    while true do
      pending = rows()
      if not pending or pending.record ~= rec then return rec, group end
      group[#group + 1] = pending
    end
  end
end

-- Does the file end inside a line?  Then a run was cut off in the middle
-- of a request's rows (a file size limit, a full disk, a kill during a
-- long write): the rows of it that are whole do not make it complete.
local function cut_short(path)
  local fh = io.open(path, "rb")
  if not fh then return false end
  local size = fh:seek("end")
  local last = size and size > 0 and fh:seek("set", size - 1) and fh:read(1)
  fh:close()
  return last ~= nil and last ~= false and last ~= "\n"
end

-- What names the people a record reached: its identifier, and the PKey of
-- every profile it touched.
local function keys(group)
  local out = {}
  local id = group[1].identifier
  if id then
    -- an email never starts with "@"; a PKey always does
    out[1] = id:byte(1) == 64 and "p:" .. id or "e:" .. id:lower()
  end
  for _, row in ipairs(group) do
    if row.pkey then out[#out + 1] = "p:" .. row.pkey end
  end
  return out
end

-- Reads an earlier report.  Returns a bit set of the records that need no
-- second try, and how many records that succeeded are done again all the
-- same; or nil and a message.
--
-- A record is settled when every row of it has a settled outcome.  But a
-- settled record that reached a person (an identifier or a profile) that a
-- record not settled also reached is done again too, so that the requests
-- for that person are replayed in input order and the later one still
-- wins.  The job writes a request's rows before a later request on the
-- same profile can end, so a record missing from the report (an
-- interrupted run) never shares a profile with a settled one.
function M.settled(path)
  local all, msg = groups(path)
  if not all then return nil, msg end
  local seen, unsettled = M.bits(), M.bits()
  local touched = filter()
  local any, last = false, nil
  for rec, group in all do
    seen:set(rec)
    last = rec
    for _, row in ipairs(group) do
      if not report.SETTLED[row.outcome] then
        unsettled:set(rec)
        any = true
        for _, k in ipairs(keys(group)) do touched.add(k) end
        break
      end
    end
  end
  -- the record being written when the report was cut is done again, as
  -- one the report never reached (the job had not finished it)
  if last and cut_short(path) then seen:clear(last) end
  local again, redone = M.bits(), 0
  -- Replaying a record can call for replaying a later one that shares a
  -- profile with it but not with the first: go on until nothing is added
  -- (in practice one or two passes; at most twenty).
  local passes = 0
  while any and passes < 20 do
    passes = passes + 1
    local added = false
    for rec, group in assert(groups(path)) do
      if not unsettled:has(rec) and not again:has(rec) then
        local ks = keys(group)
        for _, k in ipairs(ks) do
          if touched.has(k) then
            again:set(rec)
            redone = redone + 1
            added = true
            for _, k2 in ipairs(ks) do touched.add(k2) end
            break
          end
        end
      end
    end
    if not added then break end
  end
  local settled = M.bits()
  for i, w in pairs(seen) do
    local v = w & ~((unsettled[i] or 0) | (again[i] or 0))
    if v ~= 0 then settled[i] = v end
  end
  return settled, redone
end

-- Copies the rows of the settled records from the earlier report into the
-- writer, one request's rows per write.  Calls count(record, rows) once for
-- each record copied.
function M.copy(path, settled, writer, count)
  local all, msg = groups(path)
  if not all then return nil, msg end
  local copied = M.bits()
  for rec, group in all do
    if settled:has(rec) and not copied:has(rec) then
      copied:set(rec)
      writer:write(group)
      count(rec, group)
    end
  end
  return true
end

return M
