-- Writes examples/demo-requests.csv, the request file `make demo` runs the
-- opt-out job on, from the sandbox's shipped seed:
--
--   lua5.4 examples/gen-demo-requests.lua spec/sandbox/seed.jsonl \
--     > examples/demo-requests.csv
--
-- The output is the same on every run (no clock, a fixed pseudo-random
-- sequence).  It has the shape of a consent tool's export (byte-order mark,
-- CRLF, quoted notes) and every case the job handles: requests by email and
-- by PKey, mixed case and stray spaces, people unknown to Campaign,
-- duplicates, an email shared by several profiles, requests to opt back in
-- (one of them after an opt-out of the same person, so the later row wins,
-- and dated after it), and malformed rows.
local cjson = require("cjson").new()

local seed_path = arg[1] or "spec/sandbox/seed.jsonl"
local profiles, email_of = {}, {}
for line in assert(io.open(seed_path)):lines() do
  if line:find("%S") then
    local p = cjson.decode(line)
    profiles[#profiles + 1] = { pkey = p.PKey, email = p.email,
      out = p.ccpaOptOut == true }
    email_of[p.PKey] = p.email
  end
end
assert(#profiles >= 500, "the seed is smaller than expected")

-- A small linear congruential generator: the same numbers everywhere.
local state = 20261203
local function rand(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return state % n + 1
end

-- An email that several profiles share, not all of them opted out yet.
local by_email, shared = {}, nil
for _, p in ipairs(profiles) do
  local e = by_email[p.email] or { n = 0, out = 0 }
  by_email[p.email] = e
  e.n = e.n + 1
  if p.out then e.out = e.out + 1 end
end
for _, p in ipairs(profiles) do
  local e = by_email[p.email]
  if not shared and e.n >= 2 and e.out < e.n then shared = p.email end
end
assert(shared, "the seed has no email shared by two profiles")

-- Who a row is about, so that a change of mind can be dated after the
-- request it reverses: the email as the job looks it up (trimmed, in lower
-- case), also for a row by the PKey of a known profile.
local function person(email, pkey)
  if email and email ~= "" then return email:match("^%s*(.-)%s*$"):lower() end
  if pkey and pkey ~= "" then return (email_of[pkey] or pkey):lower() end
  return nil
end

local rows = {}
local function add(email, pkey, optout, note)
  rows[#rows + 1] = { email = email or "", pkey = pkey or "",
    optout = optout or "", note = note or "", who = person(email, pkey) }
end

local NOTES = { "via web form", "phone, then email", 'said "stop selling"',
  "line one\nline two", "", "" }
local function note() return NOTES[rand(#NOTES)] end

-- Walk the seed with a stride, so that picks are spread and distinct.
local pick = 0
local function next_profile(want_out)
  repeat
    pick = (pick + 6) % #profiles + 1
  until want_out == nil or profiles[pick].out == want_out
  return profiles[pick]
end

local used = {}
for i = 1, 170 do                          -- by email, as people type it
  local p = next_profile(nil)
  used[#used + 1] = p
  local email = p.email
  if i % 9 == 0 then
    email = email:sub(1, 1):upper() .. email:sub(2)
  elseif i % 13 == 0 then
    email = "  " .. email .. " "
  elseif i % 17 == 0 then
    email = email:upper()
  end
  add(email, nil, nil, note())
end
for _ = 1, 40 do                           -- by PKey
  local p = next_profile(nil)
  used[#used + 1] = p
  add(nil, p.pkey, nil, "from the support queue")
end
for i = 1, 24 do                           -- people Campaign does not know
  add(("unknown%d@example.invalid"):format(i), nil, nil, note())
end
for i = 1, 3 do
  add(nil, ("@DemoUnknownKey%dAAAAAAAAAAAAAAAAAAA=="):format(i), nil,
    "from the support queue")
end
for i = 1, 14 do                           -- duplicates, some in another case
  local p = used[rand(#used)]
  add(i % 2 == 0 and p.email:upper() or p.email, nil, nil, "sent twice")
end
add(shared, nil, nil, "one email, several profiles")
for _ = 1, 16 do                           -- back in: opted out before
  local p = next_profile(true)
  add(p.email, nil, "false", "changed their mind")
end
do                                         -- out, then back in: in wins
  local p = next_profile(false)
  add(p.email, nil, "true", note())
  add(p.email, nil, "no", "changed their mind the next day")
end
add("", "", "", "no identifier")           -- malformed
add("not-an-email", nil, nil, note())
add("two@at@example.com", nil, nil, note())
add("@example.com", nil, nil, note())
add(nil, "NoLeadingAt", nil, "from the support queue")
add(profiles[3].email, nil, "maybe", "unclear answer")

-- Mix the rows (a consent tool exports by time, not by kind), keeping the
-- out-then-in pair in its order.
for i = #rows, 2, -1 do
  local j = rand(i)
  rows[i], rows[j] = rows[j], rows[i]
end
local first_pair, second_pair
for i, r in ipairs(rows) do
  if r.note == "changed their mind the next day" then second_pair = i end
end
for i, r in ipairs(rows) do
  if r.optout == "true" then first_pair = i end
end
if first_pair > second_pair then
  rows[first_pair].optout, rows[second_pair].optout = "no", "true"
  rows[first_pair].note, rows[second_pair].note =
    rows[second_pair].note, rows[first_pair].note
end

-- Rows are dated by their place, a day of November that cycles, so dates
-- do not follow the order.  A row that reverses an earlier request of the
-- same person is dated the day after that request when its place would
-- date it earlier: the job applies rows in input order, and a file where
-- someone opts back in before opting out reads wrong.
local WANTS = { [""] = "out", ["true"] = "out", ["false"] = "in", no = "in" }
local latest = {} -- person -> their latest row so far
for i, r in ipairs(rows) do
  r.day, r.minute = (i - 1) % 28 + 1, i % 60
  r.wants = WANTS[r.optout]
  local before = r.who and r.wants and latest[r.who]
  if before and before.wants ~= r.wants and (r.day < before.day
      or r.day == before.day and r.minute <= before.minute) then
    r.day = before.day + 1
    assert(r.day <= 30, "a change of mind would leave November")
  end
  if r.who and r.wants then latest[r.who] = r end
end

local function field(v)
  if v:find('[,"\r\n]') or v:find("^%s") or v:find("%s$") then
    return '"' .. v:gsub('"', '""') .. '"'
  end
  return v
end

local out = { "\239\187\191Request ID,Email,PKey,OptOut,Received,Note\r\n" }
for i, r in ipairs(rows) do
  out[#out + 1] = table.concat({ ("D%04d"):format(i), field(r.email),
    field(r.pkey), r.optout, ("2026-11-%02d 09:%02d"):format(r.day, r.minute),
    field(r.note) }, ",") .. "\r\n"
end
-- a row with one field too many, and a last one whose quote never closes
out[#out + 1] = ("D%04d,extra@example.com,,,2026-11-29 10:00,note,"
  .. "surplus\r\n"):format(#rows + 1)
out[#out + 1] = ('D%04d,broken@example.com,,,2026-11-30 10:00,"never '
  .. "closed\r\n"):format(#rows + 2)
io.write(table.concat(out))
