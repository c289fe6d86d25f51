-- Generates a synthetic seed for the sandbox: N profiles as JSON Lines,
-- in the API's field names, with the full field set.  Deterministic: the
-- same N always gives the same bytes.  Every person is invented, every
-- address is under example.com / example.net / example.org.
--
--   lua5.4 spec/sandbox/gen-seed.lua 1000 > spec/sandbox/seed.jsonl
--
-- What specs rely on: ccpaOptOut mixed (about one in five true), some
-- emails shared by two or three profiles, non-ASCII names, "+"-tagged
-- emails, PKeys with "/", "+" and "=".
--
-- Speed: a million rows of ~1.3 kB each.  Plain Lua spends its time in
-- building strings, so whatever can be is built once up front (address
-- blocks, date strings, base64 chunks, whole people) and a row is one
-- concatenation.
local N = tonumber(arg[1] or "1000")
if not N or N < 0 then
  io.stderr:write("usage: lua5.4 gen-seed.lua N > seed.jsonl\n")
  os.exit(2)
end

-- xorshift64*: fast, deterministic, good enough for test data.
local state = 0x2545F4914F6CDD1D
local function rand64()
  state = state ~ (state >> 12)
  state = state ~ (state << 25)
  state = state ~ (state >> 27)
  return state * 0x2545F4914F6CDD1D
end
local function below(n) return (rand64() >> 33) % n end  -- 0 .. n-1
local function pick(t) return t[below(#t) + 1] end

------------------------------------------------------------ base64 parts

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64char(v) return B64:sub(v + 1, v + 1) end

-- 4096 random chunks of 16 base64 characters (12 bytes' worth each).
local CHUNK = {}
for i = 0, 4095 do
  local c = {}
  for j = 1, 16 do c[j] = b64char(below(64)) end
  CHUNK[i] = table.concat(c)
end
-- Two characters for each 12-bit value: the row number, spelled in base64,
-- makes every PKey unique.
local PAIR = {}
for v = 0, 4095 do PAIR[v] = b64char(v >> 6) .. b64char(v & 63) end
-- Endings of a base64 text whose data is 48, 49 or 50 bytes long: none,
-- "xA==" style, or "xyA=" style (the last data character's unused bits
-- are zero, as in real base64).
local ENDING = { [0] = {}, {}, {} }
for k = 0, 4095 do
  local zero4, zero2 = "AQgw", "AEIMQUYcgkosw048"
  local a, b = below(4) + 1, below(16) + 1
  ENDING[0][k] = ""
  ENDING[1][k] = b64char(below(64)) .. zero4:sub(a, a) .. "=="
  ENDING[2][k] = b64char(below(64)) .. b64char(below(64)) .. zero2:sub(b, b) .. "="
end

-- Decimal text of a number as two table lookups (thousands, then the last
-- three digits), so that no new short string is made per row: Lua interns
-- those, and a million of them cost more than the rest of the row.
local THREE, HIGH, SMALL = {}, {}, {}
for k = 0, 999 do THREE[k], SMALL[k] = string.format("%03d", k), tostring(k) end
local function decimal(n)
  local hi = n // 1000
  local h = HIGH[hi]
  if not h then h = tostring(hi) HIGH[hi] = h end
  return h, THREE[n % 1000]
end

-- 64 characters (48 bytes) then an ending.
local function pkey(i)
  local r = rand64()
  return "@" .. CHUNK[r & 4095] .. CHUNK[(r >> 12) & 4095] .. CHUNK[(r >> 24) & 4095]
    .. CHUNK[(r >> 36) & 4095]:sub(1, 10)
    .. PAIR[(i >> 24) & 4095] .. PAIR[(i >> 12) & 4095] .. PAIR[i & 4095]
    .. ENDING[i % 3][(r >> 48) & 4095]
end


------------------------------------------------------------------ people

-- Names: what is shown, and the ASCII form an email address uses.
local FIRST = {
  { "Anna", "anna" }, { "Björn", "bjorn" }, { "Chloé", "chloe" }, { "Daniel", "daniel" },
  { "Émile", "emile" }, { "Fatima", "fatima" }, { "Grace", "grace" }, { "Hiroshi", "hiroshi" },
  { "Inès", "ines" }, { "José", "jose" }, { "Kai", "kai" }, { "Łucja", "lucja" },
  { "Mateo", "mateo" }, { "Nora", "nora" }, { "Oskar", "oskar" }, { "Priya", "priya" },
  { "Quentin", "quentin" }, { "Rosa", "rosa" }, { "Søren", "soren" }, { "Tomás", "tomas" },
  { "Uma", "uma" }, { "Václav", "vaclav" }, { "Wen", "wen" }, { "Xavier", "xavier" },
  { "Yara", "yara" }, { "Zoë", "zoe" }, { "美玲", "meiling" }, { "Ольга", "olga" },
  { "Ana-María", "anamaria" }, { "Noah", "noah" }, { "Leila", "leila" }, { "Sam", "sam" },
}
local LAST = {
  { "Andersen", "andersen" }, { "Brown", "brown" }, { "Castillo", "castillo" },
  { "Dvořák", "dvorak" }, { "Eriksen", "eriksen" }, { "Fischer", "fischer" },
  { "García", "garcia" }, { "Hansen", "hansen" }, { "Ivanova", "ivanova" },
  { "Jones", "jones" }, { "Kowalczyk", "kowalczyk" }, { "Lefèvre", "lefevre" },
  { "Müller", "muller" }, { "Núñez", "nunez" }, { "O'Neill", "oneill" },
  { "Petrov", "petrov" }, { "Quinn", "quinn" }, { "Rossi", "rossi" }, { "Smith", "smith" },
  { "Tanaka", "tanaka" }, { "Ümit", "umit" }, { "Varga", "varga" }, { "Wong", "wong" },
  { "Øverby", "overby" }, { "Yilmaz", "yilmaz" }, { "Zhang", "zhang" }, { "王", "wang" },
  { "Şahin", "sahin" }, { "Brown-Smith", "brownsmith" }, { "Lee", "lee" },
}
local DOMAINS = { "example.com", "example.net", "example.org" }
local TAGS = { "news", "shop", "promo", "2024" }

-- Email sharing: now and then a profile takes the previous one's email,
-- at most three in a row.  An email is kept as its pieces (name, number
-- in two parts, tag, domain) and joined only in the row's one
-- concatenation: Lua interns every short string it creates, and a
-- million of those cost more than all the rest.
local TAGGED = {}
for k, t in ipairs(TAGS) do TAGGED[k] = "+" .. t end
local e_name, e_hi, e_lo, e_tag, e_domain
local run = 0

local function email_for(block, i)
  if e_name and run < 3 and below(100) < 3 then
    run = run + 1
    return
  end
  e_name = block.name
  if i % 7 == 0 then
    e_hi, e_lo = "", ""
  elseif i < 1000 then
    e_hi, e_lo = "", SMALL[i]
  else
    e_hi, e_lo = decimal(i)
  end
  e_tag = below(100) < 8 and pick(TAGGED) or ""
  e_domain = pick(DOMAINS)
  run = 1
end

local function phone()
  return string.format("+1 555 01%02d %03d", below(100), below(1000))
end
local PHONES = {}
for k = 1, 4096 do PHONES[k] = phone() end

-- Whole address blocks (location, postalAddress, language, time zone),
-- built once: a place, a street number and a postcode each.
local PLACES = {
  { "Springfield", "US", "IL", "627", "en_us", "America/Chicago" },
  { "Riverside", "US", "CA", "925", "en_us", "America/Los_Angeles" },
  { "Lyon", "FR", "", "690", "fr_fr", "Europe/Paris" },
  { "Köln", "DE", "", "506", "de_de", "Europe/Berlin" },
  { "Kraków", "PL", "", "300", "none", "Europe/Warsaw" },
  { "Sevilla", "ES", "", "410", "es_es", "Europe/Madrid" },
  { "Osaka", "JP", "", "530", "ja_jp", "Asia/Tokyo" },
  { "Toronto", "CA", "ON", "M5V", "en_us", "America/Toronto" },
}
local STREETS = { "Example Street", "Sample Road", "Test Avenue", "Placeholder Lane" }
local ADDRESS = {}
for k = 1, 4096 do
  local place = pick(PLACES)
  local street = string.format("%d %s", 1 + below(250), pick(STREETS))
  local zip = place[4] .. string.format("%02d", below(100))
  local line2 = zip .. " " .. place[1]
  ADDRESS[k] = string.format('"location":{"address1":"%s","address2":"","address3":"",'
    .. '"address4":"","city":"%s","countryCode":"%s","stateCode":"%s","zipCode":"%s"},'
    .. '"postalAddress":{"addrDefined":true,"addrErrorCount":0,"addrLastCheck":"",'
    .. '"addrQuality":"%d","line1":"%s","line2":"%s","line3":"","line4":"","line5":"",'
    .. '"line6":"","serialized":"%s\\n%s"},"preferredLanguage":"%s","timeZone":"%s"',
    street, place[1], place[2], place[3], zip, below(4), street, line2, street, line2,
    place[5], place[6])
end

------------------------------------------------------------------- dates

local DAY = 86400
local T0 = 1546300800          -- 2019-01-01, the earliest creation
local DAYS = 7 * 365           -- creations spread over seven years
local REF_Y, REF_M = 2026, 1   -- ages are counted to 2026-01-01

local DATE = {}
for d = 0, DAYS + 400 do DATE[d] = os.date("!%Y-%m-%d ", T0 + d * DAY) end
local TIME = {}
for k = 0, 4095 do
  TIME[k] = string.format("%02d:%02d:%02d.%03dZ", below(24), below(60), below(60), below(1000))
end

local function stamp(day)
  return DATE[day] .. TIME[rand64() & 4095]
end

------------------------------------------------------------------- flags

local FLAGS = { "blackList", "blackListEmail", "blackListFax", "blackListMobile",
  "blackListPhone", "blackListPostalMail", "blackListPushnotification" }

local function flags_join(on, modified)
  local out = {}
  for k, f in ipairs(FLAGS) do
    out[k] = string.format('"%s":%s,"%sLastModified":"%s",', f, on[k] and "true" or "false",
      f, on[k] and modified or "")
  end
  return table.concat(out)
end
local FLAGS_OFF = flags_join({}, "")

-- The flags as text: nearly always all false and never set.
local function flags_text(modified)
  local r = rand64()
  if (r & 1023) >= 50 then return FLAGS_OFF end
  local on = { [1 + (r >> 10) % #FLAGS] = true }
  return flags_join(on, modified)
end

------------------------------------------------------------------- rows

local GENDERS = { { "male", "Mr." }, { "female", "Ms." }, { "unknown", "" } }
local FORMATS = { "unknown", "html", "text" }

-- A row is what makes it unique (PKey, email, external id, stamps,
-- opt-out) and one of 4096 blocks holding the rest of a person, drawn
-- once: names, birth date, flags, address, phones.  Each block keeps the
-- ASCII name its rows' emails are made of.
local BLOCK = {}
for k = 1, 4096 do
  local first, last = pick(FIRST), pick(LAST)
  local birth, age = "", 0
  if below(100) >= 4 then
    local y, m, d = 1940 + below(68), 1 + below(12), 1 + below(28)
    birth = string.format("%04d-%02d-%02d", y, m, d)
    age = REF_Y - y - ((m > REF_M or d > 1) and 1 or 0)
  end
  local gender = pick(GENDERS)
  local text = '"age":' .. age .. ',"birthDate":"' .. birth .. '",'
    .. flags_text(stamp(below(DAYS)))
    .. '"emailFormat":"' .. pick(FORMATS)
    .. '","fax":"' .. (below(10) == 0 and pick(PHONES) or "")
    .. '","firstName":"' .. first[1] .. '","gender":"' .. gender[1]
    .. '","isExternal":false,"lastName":"' .. last[1] .. '",' .. pick(ADDRESS)
    .. ',"middleName":"' .. (below(10) == 0 and pick(FIRST)[1] or "")
    .. '","mobilePhone":"' .. pick(PHONES)
    .. '","phone":"' .. (below(3) == 0 and "" or pick(PHONES))
    .. '","salutation":"' .. gender[2] .. '","thumbnail":"","title":"'
    .. (below(8) == 0 and "Dr." or "") .. '"}\n'
  BLOCK[k] = { name = first[2] .. "." .. last[2], text = text }
end

local out = io.stdout
out:setvbuf("full", 1 << 20)

for i = 1, N do
  local r = rand64()
  local block = BLOCK[(r & 4095) + 1]
  email_for(block, i)
  local cday = (r >> 12) % DAYS
  local mday = cday + (r >> 24) % 200
  local ctime, mtime = TIME[(r >> 32) & 4095], TIME[(r >> 44) & 4095]
  local opt = (r >> 56) % 5 == 0
  local c = rand64()
  local id_hi, id_lo = decimal(100000000 + i)
  -- One concatenation: Lua builds it in a single pass.
  out:write('{"PKey":"' .. pkey(i) .. '","ccpaOptOut":' .. (opt and "true" or "false")
    .. ',"ccpaOptOutLastModified":"' .. (opt and DATE[mday] or "") .. (opt and mtime or "")
    .. '","created":"' .. DATE[cday] .. ctime
    .. '","cryptedId":"' .. CHUNK[c & 4095] .. CHUNK[(c >> 12) & 4095]
    .. CHUNK[(c >> 24) & 4095] .. '","domain":"' .. e_domain
    .. '","email":"' .. e_name .. e_hi .. e_lo .. e_tag .. "@" .. e_domain
    .. '","externalId":"EXT-' .. id_hi .. id_lo
    .. '","lastModified":"' .. DATE[mday] .. mtime .. '",' .. block.text)
end
out:flush()
