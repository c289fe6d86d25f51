-- The opt-out job's CSV reader and writer (examples/ccpa/csv.lua).
package.path = "examples/?.lua;" .. package.path
local csv = require "ccpa.csv"

local function handle(text)
  local fh = io.tmpfile()
  fh:write(text)
  fh:seek("set", 0)
  return fh
end

-- Every record of a text, with its problem (false when none).
local function parse(text)
  local r = csv.reader(handle(text))
  local out = {}
  while true do
    local fields, problem = r:next()
    if not fields then break end
    out[#out + 1] = { fields = fields, problem = problem or false,
      terminated = r.terminated }
  end
  return out, r
end

local function records(text)
  local out = {}
  for i, rec in ipairs(parse(text)) do out[i] = rec.fields end
  return out
end

describe("csv reader", function()
  it("reads plain records with LF or CRLF", function()
    assert.same({ { "a", "b" }, { "1", "2" } }, records("a,b\n1,2\n"))
    assert.same({ { "a", "b" }, { "1", "2" } }, records("a,b\r\n1,2\r\n"))
  end)

  it("reads a last record without a line end, and says so", function()
    local out = parse("a,b\r\n1,2")
    assert.same({ "1", "2" }, out[2].fields)
    assert.is_true(out[1].terminated)
    assert.is_false(out[2].terminated)
  end)

  it("drops a UTF-8 byte-order mark, only at the start", function()
    assert.same({ { "email" }, { "\239\187\191x" } },
      records("\239\187\191email\n\239\187\191x\n"))
  end)

  it("keeps commas, doubled quotes and line breaks in quoted fields",
    function()
      local text = 'id,note\r\n1,"a, b"\r\n2,"said ""no"""\r\n'
        .. '3,"line one\nline two"\r\n4,"crlf\r\ninside"\r\n5,""\r\n'
      assert.same({ { "id", "note" }, { "1", "a, b" }, { "2", 'said "no"' },
        { "3", "line one\nline two" }, { "4", "crlf\r\ninside" },
        { "5", "" } }, records(text))
    end)

  it("keeps a blank line inside a quoted field", function()
    assert.same({ { "a\n\nb", "c" } }, records('"a\n\nb",c\n'))
  end)

  it("skips blank lines between records", function()
    assert.same({ { "a" }, { "b" } }, records("a\n\n\r\nb\n\n"))
  end)

  it("reads empty fields, a trailing comma included", function()
    assert.same({ { "", "", "" }, { "a", "" }, { "", "b" } },
      records(",,\na,\n,b\n"))
    assert.same({ { "x", "" } }, records('"x",\n'))
  end)

  it("keeps surrounding whitespace (trimming is the caller's choice)",
    function()
      assert.same({ { "  a ", " b" } }, records("  a , b\n"))
    end)

  it("takes a quote inside an unquoted field as text", function()
    assert.same({ { 'ab"c', "d" } }, records('ab"c,d\n'))
  end)

  it("reports text after a closing quote, and keeps it", function()
    local out = parse('"ab"c,d\n')
    assert.same({ "abc", "d" }, out[1].fields)
    assert.equal("text after a closing quote", out[1].problem)
  end)

  it("reports an unterminated quote at the end of the input", function()
    local out = parse('a,b\n1,"never closed\nmore\n')
    assert.equal(2, #out)
    assert.same({ "1", "never closed\nmore\n" }, out[2].fields)
    assert.equal("unterminated quoted field", out[2].problem)
    assert.is_false(out[2].terminated)
  end)

  it("returns nothing for an empty input", function()
    assert.same({}, records(""))
    assert.same({}, records("\239\187\191"))
  end)

  it("counts the bytes it has read", function()
    local _, r = parse("a,b\r\n1,2\r\n")
    assert.equal(10, r.bytes)
  end)

  -- In a Lua of its own: in the suite's process, what other specs left
  -- for the collector can land in the middle of the measurement.
  it("streams a large input record by record", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([=[
package.path = "examples/?.lua;" .. package.path
local csv = require "ccpa.csv"
local fh = io.tmpfile()
for i = 1, 20000 do fh:write(("%d,\"x, %d\"\r\n"):format(i, i)) end
fh:seek("set", 0)
local n = 0
collectgarbage()
local before = collectgarbage("count")
local most = before
for fields in csv.records(fh) do
  n = n + 1
  assert(fields[1] == tostring(n))
  if n % 2000 == 0 then -- what stays alive, whatever the GC's mode
    collectgarbage()
    most = math.max(most, collectgarbage("count"))
  end
end
print(n, math.floor(most - before))
]=])
    f:close()
    local proc = assert(io.popen("lua5.4 " .. script .. " 2>&1"))
    local out = proc:read("a")
    proc:close()
    os.remove(script)
    local n, kept = out:match("^(%d+)\t(%-?%d+)")
    assert.equal("20000", n, out)
    -- a reader holds one record: well under 100 KB for 20,000 records
    assert.is_true(tonumber(kept) < 100, kept .. " KB kept")
  end)
end)

describe("csv writer", function()
  it("quotes only what needs it", function()
    assert.equal("a", csv.field("a"))
    assert.equal("", csv.field(nil))
    assert.equal('"a,b"', csv.field("a,b"))
    assert.equal('"say ""hi"""', csv.field('say "hi"'))
    assert.equal('"x\ny"', csv.field("x\ny"))
    assert.equal('" x"', csv.field(" x"))
    assert.equal("true", csv.field(true))
  end)

  it("writes what the reader reads back", function()
    local rows = { { "id", "note" }, { "1", 'a, "b"\r\nc' }, { "2", "" },
      { " pad ", "@k/+=" } }
    local text = ""
    for _, r in ipairs(rows) do text = text .. csv.line(r) end
    assert.same(rows, records(text))
  end)
end)
