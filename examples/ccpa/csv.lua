-- A small streaming CSV reader and writer (RFC 4180), for the opt-out job.
--
-- The reader takes records from a file handle one at a time, so a file of
-- any size is read in constant memory (one record at a time).  It accepts
-- what exports really contain: a UTF-8 byte-order mark, CRLF or LF line
-- ends, quoted fields holding commas, doubled quotes and line breaks, and
-- blank lines (skipped).  It never raises on bad input: a record it had to
-- guess at comes back with a second value describing the problem.

local M = {}

local BOM = "\239\187\191"

local Reader = {}
Reader.__index = Reader

-- Wraps a file handle open for reading.
function M.reader(fh)
  return setmetatable({ fh = fh, bytes = 0, first = true, terminated = true },
    Reader)
end

-- Reads one physical line, keeping its line end; counts the bytes.
function Reader:line()
  local line = self.fh:read("L")
  if line then
    self.bytes = self.bytes + #line
    if self.first then
      self.first = false
      if line:sub(1, 3) == BOM then line = line:sub(4) end
    end
  end
  return line
end

-- Where the text of a line stops: before its LF or CRLF.
local function text_end(line)
  if line:byte(-1) == 10 then
    if line:byte(-2) == 13 then return #line - 2 end
    return #line - 1
  end
  return #line
end

-- Returns the next record as an array of strings, and a problem string when
-- the record is malformed (an unterminated quote, text after a closing
-- quote).  Returns nil at the end of the input.  After each record,
-- self.terminated tells whether it ended with a line end (false only for a
-- last record cut off without one).
function Reader:next()
  local line
  repeat
    line = self:line()
    if not line then return nil end
  until text_end(line) > 0
  local stop = text_end(line)
  local fields, n, problem = {}, 0, nil
  local pos = 1
  while true do
    local field
    if line:byte(pos) == 34 then -- a quoted field, which may span lines
      local parts = {}
      pos = pos + 1
      while true do
        local q = line:find('"', pos, true)
        if q then
          parts[#parts + 1] = line:sub(pos, q - 1)
          if line:byte(q + 1) == 34 then
            parts[#parts + 1] = '"'
            pos = q + 2
          else
            pos = q + 1
            break
          end
        else
          parts[#parts + 1] = line:sub(pos)
          line = self:line()
          if not line then
            n = n + 1
            fields[n] = table.concat(parts)
            self.terminated = false
            return fields, problem or "unterminated quoted field"
          end
          stop = text_end(line)
          pos = 1
        end
      end
      field = table.concat(parts)
      if pos <= stop and line:byte(pos) ~= 44 then
        -- Text between the closing quote and the next comma: keep it.
        local comma = line:find(",", pos, true)
        local last = comma and comma <= stop and comma - 1 or stop
        field = field .. line:sub(pos, last)
        problem = problem or "text after a closing quote"
        pos = last + 1
      end
    else
      local comma = line:find(",", pos, true)
      local last = comma and comma <= stop and comma - 1 or stop
      field = line:sub(pos, last)
      pos = last + 1
    end
    n = n + 1
    fields[n] = field
    if pos > stop then
      self.terminated = stop < #line
      return fields, problem
    end
    pos = pos + 1 -- past the comma
    if pos > stop then -- a trailing comma: one more, empty field
      n = n + 1
      fields[n] = ""
      self.terminated = stop < #line
      return fields, problem
    end
  end
end

-- Iterates over records: for fields, problem in csv.records(fh) do ... end
function M.records(fh)
  local r = M.reader(fh)
  return function() return r:next() end
end

-- One field as CSV text: quoted only when it has to be.
function M.field(value)
  if value == nil then return "" end
  value = tostring(value)
  if value:find('[,"\r\n]') or value:find("^%s") or value:find("%s$") then
    return '"' .. value:gsub('"', '""') .. '"'
  end
  return value
end

-- One record as a line of CSV text, with its CRLF.
function M.line(values, n)
  local out = {}
  for i = 1, n or #values do out[i] = M.field(values[i]) end
  return table.concat(out, ",") .. "\r\n"
end

return M
