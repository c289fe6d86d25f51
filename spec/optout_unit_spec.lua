-- The opt-out job's parts, without the network: the request reader, the
-- report, --resume's bookkeeping, and the engine against a client made of
-- Lua tables (with a bulk that completes calls in a random order).
package.path = "examples/?.lua;" .. package.path
local requests = require "ccpa.requests"
local report = require "ccpa.report"
local resume = require "ccpa.resume"
local engine = require "ccpa.engine"

local function handle(text)
  local fh = io.tmpfile()
  fh:write(text)
  fh:seek("set", 0)
  return fh
end

local function all(src)
  local out = {}
  for r in src.next do out[#out + 1] = r end
  return out
end

local function tmpname(ext)
  local name = os.tmpname()
  os.remove(name)
  return name .. ext
end

describe("requests", function()
  it("reads a consent tool's CSV: BOM, CRLF, upper-case header, quotes",
    function()
      local src = assert(requests.open(handle(
        "\239\187\191Request ID,EMAIL,Notes\r\n"
        .. 'R1,  Ann@Example.com ,"a, ""b"""\r\n'
        .. 'R2,bob@example.org,"two\r\nlines"\r\n'), "csv"))
      assert.same({ "Request ID", "Notes" }, src.extra_names)
      local rs = all(src)
      assert.equal(2, #rs)
      assert.same({ rec = 1, kind = "email", id = "Ann@Example.com",
        optout = true, extras = { "R1", 'a, "b"' } }, rs[1])
      assert.equal(2, rs[2].rec)
      assert.same({ "R2", "two\r\nlines" }, rs[2].extras)
    end)

  it("numbers records, not lines", function()
    local rs = all(assert(requests.open(handle(
      'email,note\n"a@x","1\n2\n3"\n\nb@x,\n'), "csv")))
    assert.same({ 1, 2 }, { rs[1].rec, rs[2].rec })
    assert.equal("b@x", rs[2].id)
  end)

  it("takes pkey and optout columns, in any case", function()
    local rs = all(assert(requests.open(handle(
      "PKey,Email,OptOut\n@abc,,\n,c@x,false\n,d@x,NO\n,e@x,0\n,f@x,Yes\n"
      .. ",g@x,maybe\n@k,h@x,true\n"), "csv")))
    assert.same({ "pkey", "@abc", true }, { rs[1].kind, rs[1].id, rs[1].optout })
    assert.is_false(rs[2].optout)
    assert.is_false(rs[3].optout)
    assert.is_false(rs[4].optout)
    assert.is_true(rs[5].optout)
    assert.matches("optout", rs[6].invalid)
    -- both given: the PKey names the profile
    assert.same({ "pkey", "@k" }, { rs[7].kind, rs[7].id })
  end)

  it("makes each malformed record an invalid request", function()
    local rs = all(assert(requests.open(handle(
      "email,pkey,x\n"
      .. ",,no identifier\n"
      .. "not-an-email,,\n"
      .. "a@b@c,,\n"
      .. "@x.org,,\n"
      .. "a @b.org,,\n"
      .. ",nokey,\n"
      .. ",@,\n"
      .. "ok@x.org,,too,many\n"
      .. "short@x.org\n"
      .. '"ab"c@x.org,,\n'
      .. 'ok2@x.org,,"never closed\n'), "csv")))
    assert.equal(11, #rs)
    for i, r in ipairs(rs) do
      assert.is_nil(r.kind, "record " .. i)
      assert.is_string(r.invalid, "record " .. i)
      assert.equal(i, r.rec)
    end
    assert.matches("neither", rs[1].invalid)
    assert.matches("fields where the header has 3", rs[8].invalid)
    assert.matches("unterminated", rs[11].invalid)
  end)

  it("refuses an input it cannot use at all", function()
    assert.same({ nil, "the input is empty (no header row)" },
      { requests.open(handle(""), "csv") })
    local src, msg = requests.open(handle("name,phone\nx,1\n"), "csv")
    assert.is_nil(src)
    assert.matches("neither an email nor a pkey column", msg)
  end)

  it("reads JSON Lines, keys in any case, other keys carried", function()
    local rs = all(assert(requests.open(handle(
      '{"Email":" a@x.org ","ticket":7}\n\n'
      .. '{"pkey":"@k1","optout":false}\n'
      .. '{"email":"b@x.org","optOut":"no"}\n'
      .. 'not json\n[1,2]\n{"email":5}\n{"note":"none"}\n'), "jsonl")))
    assert.equal(7, #rs)
    assert.same({ rec = 1, kind = "email", id = "a@x.org", optout = true,
      extras = { ticket = 7 } }, rs[1])
    assert.same({ "pkey", "@k1", false }, { rs[2].kind, rs[2].id, rs[2].optout })
    assert.is_false(rs[3].optout)
    for i = 4, 7 do
      assert.is_string(rs[i].invalid)
      assert.equal(i, rs[i].rec)
    end
  end)

  it("takes JSON numbers 0 and 1 for optout, and no other", function()
    local rs = all(assert(requests.open(handle(
      '{"email":"a@x.org","optout":0}\n{"email":"b@x.org","optout":1}\n'
      .. '{"email":"c@x.org","optout":2}\n{"email":"d@x.org","optout":0.5}\n'),
      "jsonl")))
    assert.is_false(rs[1].optout)
    assert.is_true(rs[2].optout)
    assert.matches("optout", rs[3].invalid)
    assert.matches("optout", rs[4].invalid)
  end)

  it("knows a format by the file's extension", function()
    assert.equal("jsonl", requests.format_of("a/b.JSONL"))
    assert.equal("jsonl", requests.format_of("b.ndjson"))
    assert.equal("csv", requests.format_of("b.csv"))
    assert.equal("csv", requests.format_of("b"))
  end)
end)

describe("report", function()
  local req = { rec = 3, id = "a@x.org", optout = true,
    extras = { "R3", 'say "hi",\nthen' } }

  for _, ext in ipairs { ".csv", ".jsonl" } do
    it("writes and reads back rows as " .. ext, function()
      local path = tmpname(ext)
      local w = assert(report.writer(path, { "Request ID", "Outcome" }))
      w:write({ w:row(req, { pkey = "@k/+=", before = false, after = true,
        outcome = "opted_out", changed_at = "2026-12-03T10:00:00Z" }),
        w:row(req, { pkey = "@k2", before = true, after = true,
          outcome = "already_set" }) })
      w:write({ w:row({ rec = 4, id = "", optout = true, extras = {} },
        { outcome = "invalid_request", error = "neither" }) })
      w:close()
      local rows = {}
      for row in assert(report.rows(path)) do rows[#rows + 1] = row end
      os.remove(path)
      assert.equal(3, #rows)
      assert.same({ record = 3, identifier = "a@x.org", optout = true,
        pkey = "@k/+=", before = false, after = true, outcome = "opted_out",
        changed_at = "2026-12-03T10:00:00Z", ["Request ID"] = "R3",
        input_Outcome = 'say "hi",\nthen' }, rows[1])
      assert.equal("already_set", rows[2].outcome)
      assert.same({ 4, "invalid_request", "neither" },
        { rows[3].record, rows[3].outcome, rows[3].error })
    end)

    it("ignores a cut-off last row (" .. ext .. ")", function()
      local path = tmpname(ext)
      local w = assert(report.writer(path, {}))
      w:write({ w:row({ rec = 1, id = "a@x", optout = true, extras = {} },
        { outcome = "not_found" }) })
      w:close()
      local fh = io.open(path, "ab")
      fh:write(ext == ".csv" and "2,b@x,true,@k,false,true,opted_out"
        or '{"record":2,"outcome":"opted_out"')
      fh:close()
      local n = 0
      for row in assert(report.rows(path)) do
        n = n + 1
        assert.equal(1, row.record)
      end
      os.remove(path)
      assert.equal(1, n)
    end)
  end

  it("puts a JSON Lines input's other keys in one column", function()
    local path = tmpname(".csv")
    local w = assert(report.writer(path, nil))
    w:write({ w:row({ rec = 1, id = "a@x", optout = true,
      extras = { ticket = 7 } }, { outcome = "not_found" }) })
    w:close()
    local row = assert(report.rows(path))()
    os.remove(path)
    assert.same({ ticket = 7 }, row.input)
  end)
end)

describe("resume", function()
  it("keeps record numbers in bit sets", function()
    local b = resume.bits()
    for _, n in ipairs { 1, 63, 64, 65, 1000000 } do b:set(n) end
    for _, n in ipairs { 1, 63, 64, 65, 1000000 } do assert.is_true(b:has(n)) end
    for _, n in ipairs { 2, 62, 66, 999999 } do assert.is_false(b:has(n)) end
  end)

  it("settles a record only when every row of it succeeded", function()
    local path = tmpname(".csv")
    local w = assert(report.writer(path, {}))
    local function r(n)
      return { rec = n, id = n .. "@example.com", optout = true, extras = {} }
    end
    w:write({ w:row(r(1), { outcome = "opted_out" }) })
    w:write({ w:row(r(2), { outcome = "opted_out" }),
      w:row(r(2), { outcome = "failed", error = "503" }) })
    w:write({ w:row(r(3), { outcome = "not_found" }) })
    w:write({ w:row(r(4), { outcome = "would_opt_out" }) })
    w:write({ w:row(r(6), { outcome = "invalid_request" }),
      w:row(r(6), { outcome = "already_set" }) })
    w:close()
    local s = assert(resume.settled(path))
    local got = {}
    for n = 1, 7 do got[n] = s:has(n) end
    assert.same({ true, false, true, false, false, true, false }, got)

    local out = tmpname(".jsonl")
    local w2 = assert(report.writer(out, {}))
    local copied = {}
    assert(resume.copy(path, s, w2, function(rec, rows)
      copied[#copied + 1] = { rec, #rows }
    end))
    w2:close()
    assert.same({ { 1, 1 }, { 3, 1 }, { 6, 2 } }, copied)
    local n = 0
    for _ in assert(report.rows(out)) do n = n + 1 end
    assert.equal(4, n)
    os.remove(path)
    os.remove(out)
  end)

  it("does again what succeeded for a person a failed request reached",
    function()
      local path = tmpname(".csv")
      local w = assert(report.writer(path, {}))
      local function r(n, id)
        return { rec = n, id = id, optout = true, extras = {} }
      end
      -- 1 failed writing @p; 2 reached @p by email: done again
      w:write({ w:row(r(1), { pkey = "@p", outcome = "failed" }) })
      w:write({ w:row(r(2, "A@x.org"), { pkey = "@p", outcome = "opted_in" }) })
      -- 3's lookup failed; 4 has the same email in another case, and
      -- reached @q, which 5 reached by PKey: both done again
      w:write({ w:row(r(3, "B@x.org"), { outcome = "failed" }) })
      w:write({ w:row(r(5, "@q"), { pkey = "@q", outcome = "already_set" }) })
      w:write({ w:row(r(4, "b@x.org"), { pkey = "@q", outcome = "opted_out" }) })
      -- 6 and 7 reached no one a failed request did
      w:write({ w:row(r(6, "c@x.org"), { pkey = "@r", outcome = "opted_out" }) })
      w:write({ w:row(r(7, "d@x.org"), { outcome = "not_found" }) })
      w:close()
      local s, redone = assert(resume.settled(path))
      local got = {}
      for n = 1, 7 do got[n] = s:has(n) end
      assert.same({ false, false, false, false, false, true, true }, got)
      assert.equal(3, redone)
      os.remove(path)
    end)
end)

-- A bulk that makes one call at a time, in the order handed out.
local function sequential_bulk(c, next_op, o)
  local i, summary = 0, { ok = 0, failed = 0 }
  while true do
    local op = next_op()
    if op == nil then break end
    i = i + 1
    local res, e = c[op[1]](c, table.unpack(op, 2, #op))
    if e then summary.failed = summary.failed + 1
    else summary.ok = summary.ok + 1 end
    o.on_result(i, op, res, e)
  end
  return summary
end

-- A client made of tables: profiles by PKey, lookups by exact email.
local function fake_client(profiles, opts)
  opts = opts or {}
  local c = { writes = {}, profiles = {}, calls = 0 }
  for _, p in ipairs(profiles) do
    c.profiles[p.PKey] = { PKey = p.PKey, email = p.email,
      ccpaOptOut = p.ccpaOptOut or false }
  end
  local function err(status, code, message)
    return nil, setmetatable({ kind = "http", status = status, code = code,
      message = message }, { __tostring = function(e)
        return ("%d %s %s"):format(e.status, e.code, e.message) end })
  end
  function c.find_profiles(_, q)
    c.calls = c.calls + 1
    if opts.fail_email == q.email then return err(503, "503000", "busy") end
    local out = {}
    for _, pk in ipairs(c.order) do
      local p = c.profiles[pk]
      if p.email == q.email then
        out[#out + 1] = { PKey = p.PKey, email = p.email,
          ccpaOptOut = p.ccpaOptOut }
      end
    end
    return out
  end
  function c.get_ccpa_optout(_, pk)
    c.calls = c.calls + 1
    local p = c.profiles[pk]
    if not p then return err(404, "RST-360011", "no such profile") end
    return p.ccpaOptOut
  end
  function c.set_ccpa_optout(_, pk, flag)
    c.calls = c.calls + 1
    if opts.auth_fails then return err(401, "401013", "token expired") end
    if opts.fail_pkey == pk then return err(503, "503000", "busy") end
    c.profiles[pk].ccpaOptOut = flag
    c.writes[#c.writes + 1] = { pk, flag }
    return true
  end
  c.order = {}
  for _, p in ipairs(profiles) do c.order[#c.order + 1] = p.PKey end
  c.bulk = sequential_bulk
  return c
end

-- A bulk that keeps up to `concurrency` calls open and completes a random
-- one each time, so results arrive in any order.
local function random_bulk(c, next_op, o)
  local open, i, summary = {}, 0, { ok = 0, failed = 0 }
  local max_open = 0
  while true do
    while #open < o.concurrency do
      local op = next_op()
      if not op then break end
      i = i + 1
      open[#open + 1] = { i, op }
    end
    max_open = math.max(max_open, #open)
    if #open == 0 then break end
    local item = table.remove(open, math.random(#open))
    local op = item[2]
    local res, e = c[op[1]](c, table.unpack(op, 2, #op))
    if e then summary.failed = summary.failed + 1
    else summary.ok = summary.ok + 1 end
    o.on_result(item[1], op, res, e)
  end
  c.max_open = max_open
  return summary
end

-- Runs the engine on CSV text; returns counts, rows read back, changed.
local function run(client, text, extra)
  local path = tmpname(".csv")
  local src = assert(requests.open(handle(text), "csv"))
  local w = assert(report.writer(path, src.extra_names))
  local p = { client = client, source = src.next, writer = w,
    field = "ccpaOptOut", concurrency = 8 }
  for k, v in pairs(extra or {}) do p[k] = v end
  local counts, changed = engine.run(p)
  w:close()
  local rows = {}
  for row in assert(report.rows(path)) do rows[#rows + 1] = row end
  os.remove(path)
  return counts, rows, changed
end

local PEOPLE = {
  { PKey = "@a", email = "ann@x.org" },
  { PKey = "@b", email = "bob@x.org", ccpaOptOut = true },
  { PKey = "@s1", email = "shared@x.org" },
  { PKey = "@s2", email = "shared@x.org", ccpaOptOut = true },
  { PKey = "@c", email = "Cy@X.org" },
  { PKey = "@d", email = "dee@x.org", ccpaOptOut = true },
}

local REQUESTS = "email,pkey,optout,ticket\r\n"
  .. "ann@x.org,,,T1\r\n"          -- 1 opted_out
  .. "  BOB@X.ORG ,,,T2\r\n"       -- 2 already_set, after lower case
  .. "shared@x.org,,,T3\r\n"       -- 3 two profiles
  .. "Cy@X.org,,,T4\r\n"           -- 4 exact, mixed case
  .. ",@d,false,T5\r\n"            -- 5 opted_in
  .. "nobody@x.org,,,T6\r\n"       -- 6 not_found
  .. ",@zz,,T7\r\n"                -- 7 not_found by PKey
  .. "bad,,,T8\r\n"                -- 8 invalid_request
  .. "ann@x.org,,,T9\r\n"          -- 9 already_set (after 1)

describe("engine", function()
  for _, mode in ipairs { "one by one", "random order" } do
    it("carries out each kind of request (" .. mode .. ")", function()
      local c = fake_client(PEOPLE)
      if mode == "random order" then c.bulk = random_bulk end
      local counts, rows, changed = run(c, REQUESTS)
      local by = {}
      for _, row in ipairs(rows) do
        by[row.record] = by[row.record] or {}
        table.insert(by[row.record], row)
      end
      assert.same({ "opted_out" }, { by[1][1].outcome })
      assert.same({ "already_set", "@b" }, { by[2][1].outcome, by[2][1].pkey })
      assert.equal(2, #by[3])
      assert.same({ "@s1", "opted_out", false, true },
        { by[3][1].pkey, by[3][1].outcome, by[3][1].before, by[3][1].after })
      assert.same({ "@s2", "already_set" }, { by[3][2].pkey, by[3][2].outcome })
      assert.equal("opted_out", by[4][1].outcome)
      assert.same({ "opted_in", true, false },
        { by[5][1].outcome, by[5][1].before, by[5][1].after })
      assert.equal("not_found", by[6][1].outcome)
      assert.equal("not_found", by[7][1].outcome)
      assert.equal("invalid_request", by[8][1].outcome)
      assert.equal("already_set", by[9][1].outcome)
      assert.equal("T9", by[9][1].ticket)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$",
        by[1][1].changed_at)
      assert.is_nil(by[9][1].changed_at)
      assert.same({ opted_out = 3, opted_in = 1, already_set = 2,
        not_found = 2, invalid_request = 1, failed = 0, would_opt_out = 0,
        would_opt_in = 0 }, counts)
      assert.equal(4, changed)
      assert.is_true(c.profiles["@c"].ccpaOptOut)
      assert.is_false(c.profiles["@d"].ccpaOptOut)

      -- a second run changes nothing
      c.writes = {}
      local again, _, changed2 = run(c, REQUESTS)
      assert.same({}, c.writes)
      assert.equal(0, changed2)
      assert.equal(0, again.opted_out)
    end)
  end

  it("keeps each person's requests in input order with many in flight",
    function()
      math.randomseed(7)
      local people = {}
      for i = 1, 6 do
        people[i] = { PKey = "@p" .. i, email = "p" .. i .. "@x.org" }
      end
      local c = fake_client(people)
      c.bulk = random_bulk
      local lines, last = { "email,pkey,optout" }, {}
      for _ = 1, 300 do
        local i = math.random(6)
        local flag = math.random(2) == 1
        if math.random(3) == 1 then
          lines[#lines + 1] = (",@p%d,%s"):format(i, tostring(flag))
        else
          lines[#lines + 1] = ("P%d@x.org,,%s"):format(i, tostring(flag))
        end
        last[i] = flag
      end
      local counts = run(c, table.concat(lines, "\n") .. "\n",
        { concurrency = 16 })
      local total = 0
      for _, n in pairs(counts) do total = total + n end
      assert.equal(300, total)
      assert.equal(0, counts.failed)
      for i = 1, 6 do
        assert.equal(last[i], c.profiles["@p" .. i].ccpaOptOut, "person " .. i)
      end
    end)

  it("leaves each profile as its latest settled row says, with failures",
    function()
      for seed = 1, 10 do
        math.randomseed(seed)
        local people = {}
        for i = 1, 4 do
          people[i] = { PKey = "@p" .. i, email = "p" .. i .. "@x.org" }
        end
        local c = fake_client(people)
        c.bulk = random_bulk
        local set = c.set_ccpa_optout
        c.set_ccpa_optout = function(self, pk, flag)
          if math.random(5) == 1 then
            return nil, { kind = "http", status = 503, message = "busy" }
          end
          return set(self, pk, flag)
        end
        local lines = { "email,pkey,optout" }
        for _ = 1, 120 do
          local i = math.random(4)
          local flag = tostring(math.random(2) == 1)
          lines[#lines + 1] = math.random(2) == 1
            and (",@p%d,%s"):format(i, flag) or ("p%d@x.org,,%s"):format(i, flag)
        end
        local _, rows = run(c, table.concat(lines, "\n") .. "\n",
          { concurrency = 12 })
        local last = {}
        for _, row in ipairs(rows) do
          if row.outcome ~= "failed" then
            local l = last[row.pkey]
            if not l or l.record < row.record then last[row.pkey] = row end
          end
        end
        for pk, row in pairs(last) do
          assert.equal(row.after, c.profiles[pk].ccpaOptOut,
            ("seed %d, %s"):format(seed, pk))
        end
      end
    end)

  it("keeps no more than max_open requests under way", function()
    local c = fake_client({ { PKey = "@a", email = "a@x.org" } })
    c.bulk = random_bulk
    local lines = { "email" }
    for i = 1, 50 do lines[i + 1] = "a@x.org" end
    local counts = run(c, table.concat(lines, "\n") .. "\n",
      { max_open = 3 })
    assert.equal(1, counts.opted_out)
    assert.equal(49, counts.already_set)
  end)

  it("reports what would change in a dry run, and writes nothing", function()
    local c = fake_client(PEOPLE)
    local counts, rows, changed = run(c, REQUESTS, { dry_run = true })
    assert.same({}, c.writes)
    assert.equal(3, counts.would_opt_out)
    assert.equal(1, counts.would_opt_in)
    assert.equal(4, changed)
    for _, row in ipairs(rows) do assert.is_nil(row.changed_at) end
  end)

  it("records failures and goes on", function()
    local c = fake_client(PEOPLE, { fail_pkey = "@s1", fail_email = "ann@x.org" })
    local counts, rows = run(c, REQUESTS)
    assert.equal(3, counts.failed) -- records 1, 3 and 9
    local failed = {}
    for _, row in ipairs(rows) do
      if row.outcome == "failed" then
        failed[#failed + 1] = row.record
        assert.matches("503", row.error)
      end
    end
    table.sort(failed)
    assert.same({ 1, 3, 9 }, failed)
    assert.is_true(c.profiles["@c"].ccpaOptOut)
  end)

  it("stops the run when authentication is refused", function()
    local c = fake_client(PEOPLE, { auth_fails = true })
    local ok, e = pcall(run, c, REQUESTS)
    assert.is_false(ok)
    assert.equal(401, e.fatal.status)
  end)

  -- Campaign down from the start ends the run; once a call has worked,
  -- a connection that fails is one request's failure.
  for _, code in ipairs { "COULDNT_CONNECT", "COULDNT_RESOLVE_HOST" } do
    it("stops the run when Campaign cannot be reached at first (" .. code
        .. ")", function()
      local down = { kind = "network", code = code, message = "down" }
      local function cut(c, works)
        for _, name in ipairs { "find_profiles", "get_ccpa_optout",
            "set_ccpa_optout" } do
          local f = c[name]
          c[name] = function(...)
            if works == 0 then return nil, down end
            works = works - 1
            return f(...)
          end
        end
        return c
      end
      local ok, e = pcall(run, cut(fake_client(PEOPLE), 0), REQUESTS)
      assert.is_false(ok)
      assert.equal(down, e.fatal)
      -- the first request's lookup and write work, then every call fails
      local counts, rows = run(cut(fake_client(PEOPLE), 2), REQUESTS)
      assert.same({ 1, 7, 1 }, { counts.opted_out, counts.failed,
        counts.invalid_request })
      assert.equal(9, #rows)
    end)
  end

  it("resumes so that the later request for a profile still wins",
    function()
      local c = fake_client({ { PKey = "@a", email = "ann@x.org" } })
      local text = "email,pkey,optout\nann@x.org,,true\n,@a,false\n"
      -- the first write fails; the second (later, opt in) lands
      local set, calls = c.set_ccpa_optout, 0
      c.set_ccpa_optout = function(self, pk, flag)
        calls = calls + 1
        if calls == 1 then
          return nil, { kind = "http", status = 503, message = "busy" }
        end
        return set(self, pk, flag)
      end
      local first = tmpname(".csv")
      local src = assert(requests.open(handle(text), "csv"))
      local w = assert(report.writer(first, src.extra_names))
      local counts = engine.run { client = c, source = src.next, writer = w,
        field = "ccpaOptOut", concurrency = 4 }
      w:close()
      assert.same({ 1, 1 }, { counts.failed, counts.already_set })
      assert.is_false(c.profiles["@a"].ccpaOptOut)

      local settled, redone = assert(resume.settled(first))
      assert.equal(1, redone)
      src = assert(requests.open(handle(text), "csv"))
      local second = tmpname(".csv")
      w = assert(report.writer(second, src.extra_names))
      counts = engine.run { client = c, source = src.next, writer = w,
        field = "ccpaOptOut", concurrency = 4,
        skip = function(n) return settled:has(n) end }
      w:close()
      assert.same({ 1, 1 }, { counts.opted_out, counts.opted_in })
      assert.is_false(c.profiles["@a"].ccpaOptOut)
      os.remove(first)
      os.remove(second)
    end)

  it("leaves out the records an earlier run settled", function()
    local c = fake_client(PEOPLE)
    local skip = { [1] = true, [3] = true }
    local counts = run(c, REQUESTS, { skip = function(n) return skip[n] end })
    local total = 0
    for _, n in pairs(counts) do total = total + n end
    assert.equal(7, total)
    assert.is_false(c.profiles["@s1"].ccpaOptOut)
  end)
end)

describe("the demo's request file", function()
  it("is what the generator makes from the shipped seed", function()
    local gen = io.popen("lua5.4 examples/gen-demo-requests.lua "
      .. "spec/sandbox/seed.jsonl")
    local made = gen:read("a")
    gen:close()
    local fh = assert(io.open("examples/demo-requests.csv", "rb"))
    local shipped = fh:read("a")
    fh:close()
    assert.is_true(made == shipped, "the seed changed: run lua5.4 "
      .. "examples/gen-demo-requests.lua spec/sandbox/seed.jsonl "
      .. "> examples/demo-requests.csv")
  end)

  -- The job applies requests in input order; a request to opt back in
  -- that reverses an earlier request of the same person must also have
  -- been received after it, or the file reads wrong.
  it("dates each change of mind after the request it reverses", function()
    local cjson = require("cjson").new()
    local email_of = {}
    for line in io.lines("spec/sandbox/seed.jsonl") do
      if line:find("%S") then
        local p = cjson.decode(line)
        email_of[p.PKey] = p.email:lower()
      end
    end
    local fh = assert(io.open("examples/demo-requests.csv", "rb"))
    local src = assert(requests.open(fh, "csv"))
    assert.same({ "Request ID", "Received", "Note" }, src.extra_names)
    local last, pairs_seen = {}, 0
    for r in src.next do
      if r.kind then
        local who = r.kind == "pkey" and email_of[r.id] or r.id:lower()
        local before = last[who]
        if before and before.optout ~= r.optout then
          pairs_seen = pairs_seen + 1
          assert.is_true(r.extras[2] > before.extras[2], ("%s (%s) reverses "
            .. "%s (%s)"):format(r.extras[1], r.extras[2], before.extras[1],
            before.extras[2]))
        end
        last[who] = r
      end
    end
    fh:close()
    assert.is_true(pairs_seen >= 1)
  end)
end)
