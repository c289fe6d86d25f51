-- The opt-out job's report: one row per request and per profile it touched.
--
-- CSV or JSON Lines by the file's extension.  Rows are written together for
-- a request, in one write, and flushed at once: a run that is killed leaves
-- a report that is valid up to its last finished request (at worst a last
-- line cut short, which the reader below ignores).
local cjson = require("cjson").new()
-- a carried NaN or infinity (JSON Lines input may hold 1e999) goes in as
-- null: it would otherwise stop the run at that request on every try
cjson.encode_invalid_numbers("null")

local csv = require "ccpa.csv"
local protect = require "ccpa.protect"
local requests = require "ccpa.requests"

local M = {}

-- The columns every report has, in this order; the input's other columns
-- follow.
M.COLUMNS = { "record", "identifier", "optout", "pkey", "before", "after",
  "outcome", "changed_at", "error" }
local FIXED = {}
for _, c in ipairs(M.COLUMNS) do FIXED[c] = true end
local BOOLEAN = { optout = true, before = true, after = true }

-- Outcomes that need no second try.  Anything else ("failed", the dry
-- run's "would_opt_out") is done again by --resume.
M.SETTLED = { opted_out = true, opted_in = true, already_set = true,
  not_found = true, invalid_request = true }

M.format_of = requests.format_of

-- The report column that carries an input column: its own name unless it
-- would clash with one of the job's.
local function carried(name)
  if FIXED[name:lower()] or name:lower() == "input" then
    return "input_" .. name
  end
  return name
end

local function encode_object(t)
  if next(t) == nil then return "{}" end
  return cjson.encode(t)
end

local Writer = {}
Writer.__index = Writer

-- Opens a report for writing.  names: the input's carried CSV columns, or
-- nil when the input is JSON Lines (its other keys go in one "input"
-- column, a JSON object).  Returns nil, message when it cannot be created.
function M.writer(path, names)
  local fh, msg = io.open(path, "wb")
  if not fh then return nil, msg end
  fh:setvbuf("full", 1 << 16)
  local cols = {}
  for i, c in ipairs(M.COLUMNS) do cols[i] = c end
  local extra, used = {}, {}
  for _, c in ipairs(cols) do used[c] = true end
  if names then
    for j, name in ipairs(names) do
      -- a name the header gives twice: the second is name_2, and so on,
      -- so that neither column's values are lost
      local c, n = carried(name), 1
      while used[c] do
        n = n + 1
        c = ("%s_%d"):format(carried(name), n)
      end
      used[c] = true
      extra[j] = c
      cols[#cols + 1] = c
    end
  else
    cols[#cols + 1] = "input"
  end
  local w = setmetatable({ fh = fh, path = path, cols = cols, extra = extra,
    named = names ~= nil, format = M.format_of(path) }, Writer)
  if w.format == "csv" then
    local ok, err = w:emit(csv.line(cols))
    if not ok then fh:close(); return nil, err end
  end
  return w
end

-- A row for a request: fields are the job's columns (record, identifier and
-- optout are taken from the request).
function Writer:row(req, fields)
  local row = { record = req.rec, identifier = req.id, optout = req.optout }
  for k, v in pairs(fields) do row[k] = v end
  if self.named then
    for j, c in ipairs(self.extra) do row[c] = req.extras[j] end
  else
    row.input = req.extras
  end
  return row
end

local function csv_value(v)
  if v == nil then return "" end
  if type(v) == "table" then return encode_object(v) end
  return tostring(v)
end

function Writer:text(row)
  local cols = self.cols
  if self.format == "csv" then
    local out = {}
    for i, c in ipairs(cols) do out[i] = csv.field(csv_value(row[c])) end
    return table.concat(out, ",") .. "\r\n"
  end
  local out = {}
  for i, c in ipairs(cols) do
    local v = row[c]
    local text
    if v == nil then
      text = "null"
    elseif type(v) == "table" then
      text = encode_object(v)
    else
      text = cjson.encode(v)
    end
    out[i] = cjson.encode(c) .. ":" .. text
  end
  return "{" .. table.concat(out, ",") .. "}\n"
end

function Writer:emit(text)
  local ok, err = self.fh:write(text)
  if ok then ok, err = self.fh:flush() end
  if not ok then return nil, ("cannot write the report %s: %s"):format(
    self.path, tostring(err)) end
  return true
end

-- Writes the rows of one request at once, and flushes them.  Raises when
-- the report cannot be written: the run cannot go on without its record.
function Writer:write(rows)
  local parts = {}
  for i, row in ipairs(rows) do parts[i] = self:text(row) end
  local ok, err = self:emit(table.concat(parts))
  if not ok then error(err, 0) end
end

function Writer:close()
  if self.fh then self.fh:close(); self.fh = nil end
end

-- Turns a value read back from a report into what the writer was given.
local function typed(col, v)
  if v == cjson.null or v == "" then return nil end
  if col == "record" then return math.tointeger(tonumber(v)) end
  if BOOLEAN[col] then
    if v == true or v == "true" then return true end
    if v == false or v == "false" then return false end
    return nil
  end
  if col == "input" and type(v) == "string" then
    local ok, t = protect.call(cjson.decode, v)
    if ok and type(t) == "table" then return t end
  end
  return v
end

-- Reads a report back: returns an iterator over its rows (tables keyed by
-- column, as the writer was given them), or nil and a message.  A row that
-- is not whole (the cut-off end of an interrupted run) is skipped, so is
-- any row without a record number or an outcome.
function M.rows(path)
  local fh, msg = io.open(path, "rb")
  if not fh then return nil, msg end
  local function valid(row)
    return math.type(row.record) == "integer" and row.record > 0
      and type(row.outcome) == "string"
  end
  if M.format_of(path) == "csv" then
    local reader = csv.reader(fh)
    local header = reader:next()
    if not header or header[1] ~= "record" then
      fh:close()
      return nil, path .. " is not an opt-out report"
    end
    return function()
      while true do
        local fields, problem = reader:next()
        if not fields then fh:close(); return nil end
        if not problem and reader.terminated and #fields == #header then
          local row = {}
          for i, c in ipairs(header) do row[c] = typed(c, fields[i]) end
          if valid(row) then return row end
        end
      end
    end
  end
  return function()
    while true do
      local line = fh:read("L")
      if not line then fh:close(); return nil end
      if line:byte(-1) == 10 then
        local ok, obj = protect.call(cjson.decode, line)
        if ok and type(obj) == "table" then
          local row = {}
          for k, v in pairs(obj) do row[k] = typed(k, v) end
          if valid(row) then return row end
        end
      end
    end
  end
end

return M
