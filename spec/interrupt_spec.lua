-- An interrupt must go up through everything the module and the opt-out
-- job do.  lua5.4 turns Ctrl-C into an error ("interrupted!") raised from
-- a C hook at the next event, wherever that is: inside a protected call
-- it would be caught, and taken for bad JSON, a bad op or a bad input
-- line (CI runs lost a Ctrl-C of the job that way, as one failed row).
--
-- Each case is run once for every call and return it makes, the error
-- raised there; every time, the case must raise that very error.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/interrupt_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "examples/?.lua;" .. package.path
package.cpath = "build/spec/lua5.4/?.so;" .. package.cpath

local interrupt = require "interrupt"

local sandbox = require "spec.support.sandbox"

-- lua.c's message, after the place luaL_error names (if any).
local function is_interrupt(e)
  return type(e) == "string" and e:sub(-12) == "interrupted!"
end

-- Runs f with the interrupt raised at its n-th call or return event, as
-- lua.c raises it (see spec/support/interrupt.c).  f runs in a coroutine
-- of its own, the thread hooked, as lua.c hooks the main one.  Returns
-- whether the interrupt was raised, and what f did, as pcall's results
-- in a table.
local function interrupted_at(n, f)
  local co = coroutine.create(function() return table.pack(true, f()) end)
  interrupt.arm(co, n, "cr")
  local ok, r = coroutine.resume(co)
  return interrupt.fired(), ok and r or { n = 2, false, r }
end

-- assert, without luassert's own work after a failure.
local function must(v, err)
  if not v then error(err, 0) end
  return v
end

local function show(r)
  local out = {}
  for i = 1, r.n do
    local v = r[i]
    if type(v) == "table" and v.kind then
      v = ("err{kind=%s, message=%s}"):format(v.kind, tostring(v.message))
    end
    out[i] = tostring(v)
  end
  return table.concat(out, ", ")
end

-- Interrupts f at each of its call and return events in turn, `step`
-- apart (1: every one), until f runs to its end untouched; each time,
-- `after`, if given, must still work.  Returns how many events f made.
local function sweep(f, after, step)
  local n = 1
  while true do
    local raised, r = interrupted_at(n, f)
    if not raised then return n - 1 end
    assert(r[1] == false and is_interrupt(r[2]),
      ("interrupted at event %d, the interrupt was lost: %s (%s)"):format(n,
        show(r), type(r[2])))
    if after then after() end
    n = n + (step or 1)
  end
end

describe("an interrupt", function()
  local client, pkey, email

  setup(function()
    sandbox.reset()
    local all = sandbox.profiles()
    pkey, email = all[1].PKey, all[2].email
  end)

  before_each(function()
    client = sandbox.client { retries = 0 }
  end)

  after_each(function()
    client:close()
  end)

  local function still_works()
    assert.is_table(must(client:get_profile(pkey)))
  end

  it("rises through every single call", function()
    local calls = sweep(function()
      must(client:get_profile(pkey))
      must(client:find_profiles { email = email })
      must(client:update_profile(pkey, { firstName = "Ana", lastName = "Ruiz" }))
      must(client:set_ccpa_optout(pkey, true))
      must(client:get_ccpa_optout(pkey))
      must(client:count_profiles())
      local _, err = client:get_profile("no-such-profile")
      must(err.kind == "api")
    end, still_works)
    assert.is_true(calls > 10)
  end)

  it("rises through the pages of a list and the profiles iterator", function()
    sweep(function()
      must(#must(client:find_profiles { text = "a", page_size = 3 }) > 3)
      local n = 0
      for p in client:profiles { page_size = 4 } do
        n = n + 1
        if n == 9 then
          must(p.PKey)
          break
        end
      end
    end, still_works)
  end)

  it("rises through a bulk run, bad ops included", function()
    local ops = {
      { "get_profile", pkey },
      { "get_profile", 42 },                       -- a usage error
      { "set_ccpa_optout", pkey, true },
      { "update_profile", pkey, { n = 0 / 0 } },   -- not sendable
      { "nonsense" },
      { "find_profiles", { email = email } },
    }
    local calls = sweep(function()
      local usage = 0
      local summary = client:bulk(ops, {
        concurrency = 3,
        on_result = function(_, _, _, err)
          if err then
            must(err.kind == "usage", err.message)
            must(not is_interrupt(err.message))
            usage = usage + 1
          end
        end,
      })
      must(summary.ok == 3 and summary.failed == 3 and usage == 3)
    end, still_works)
    assert.is_true(calls > 10)
  end)

  it("rises through a bulk run fed by a function, with a hook", function()
    client:close()
    local tries = 0
    client = sandbox.client {
      retries = 0,
      on_request = function(t) tries = tries + t.try end,
    }
    sweep(function()
      local i = 0
      local summary = client:bulk(function()
        i = i + 1
        if i <= 4 then return { "get_ccpa_optout", pkey } end
      end, { concurrency = 2 })
      must(summary.ok == 4)
    end, still_works)
    assert.is_true(tries > 0)
  end)

  it("rises through a token request", function()
    local function with_credentials()
      local o = sandbox.options {
        client_id = sandbox.api_key, client_secret = sandbox.client_secret,
        ims_url = sandbox.base_url, retries = 0,
      }
      o.access_token, o.api_key = nil, nil
      return require("campaign").new(o)
    end
    local tokens = sandbox.count("POST ims/token")
    sweep(function()
      local c = with_credentials()
      must(c:get_profile(pkey))
      c:close()
    end, still_works)
    assert.is_true(sandbox.count("POST ims/token") > tokens)
  end)
end)

describe("an interrupt in the opt-out job", function()
  local requests = require "ccpa.requests"
  local report = require "ccpa.report"
  local resume = require "ccpa.resume"

  local function tmp(text)
    local path = os.tmpname()
    local fh = must(io.open(path, "w"))
    fh:write(text)
    fh:close()
    return path
  end

  local jsonl = tmp(table.concat({
    '{"email":"a@example.com","optOut":true}',
    '{"pkey":"@abc","optOut":"false"}',
    'not json at all',
    '[1,2]',
    '{"email":"b@example.com"}',
  }, "\n") .. "\n")

  teardown(function() os.remove(jsonl) end)

  it("rises through reading JSON Lines requests", function()
    local rows
    local calls = sweep(function()
      local fh = must(io.open(jsonl))
      local src = must(requests.open(fh, "jsonl"))
      rows = {}
      for r in src.next do rows[#rows + 1] = r end
      fh:close()
    end)
    assert.equal(5, #rows)
    assert.is_true(calls > 5)
  end)

  it("rises through reading a report to resume from", function()
    local csv_report = tmp(table.concat({
      "record,identifier,optout,pkey,before,after,outcome,changed_at,error,input",
      '1,a@example.com,true,@abc,false,true,opted_out,,,"{""email"":""a@example.com""}"',
      '2,@abd,true,@abd,,,failed,,"timeout","{""pkey"":""@abd""}"',
    }, "\n") .. "\n")
    local jsonl_report = tmp(table.concat({
      '{"record":1,"identifier":"a@example.com","optout":true,"pkey":"@abc",'
        .. '"outcome":"opted_out","input":{"email":"a@example.com"}}',
      '{"record":2,"identifier":"@abd","optout":true,"pkey":"@abd",'
        .. '"outcome":"failed","input":{"pkey":"@abd"}}',
      '{"record":3,"ident',
    }, "\n") .. "\n")
    os.rename(csv_report, csv_report .. ".csv")
    os.rename(jsonl_report, jsonl_report .. ".jsonl")
    csv_report, jsonl_report = csv_report .. ".csv", jsonl_report .. ".jsonl"
    local seen
    sweep(function()
      seen = 0
      for _, path in ipairs { csv_report, jsonl_report } do
        must(resume.settled(path))
        for row in must(report.rows(path)) do
          must(type(row.input) == "table")
          seen = seen + 1
        end
      end
    end)
    os.remove(csv_report)
    os.remove(jsonl_report)
    assert.equal(4, seen)
  end)

  it("rises through the job's engine, whatever it was doing", function()
    local engine = require "ccpa.engine"
    sandbox.reset()
    local all = sandbox.profiles()
    local input = tmp(table.concat({
      ('{"email":"%s","optOut":true}'):format(all[3].email),
      ('{"pkey":"%s","optOut":true}'):format(all[4].PKey),
      ('{"email":"%s","optOut":false}'):format(all[5].email:upper()),
      '{"email":"nobody@example.invalid"}',
      '{"pkey":""}',
    }, "\n") .. "\n")
    local out = os.tmpname()
    local client = sandbox.client { retries = 0 }
    local calls = sweep(function()
      local fh = must(io.open(input))
      local src = must(requests.open(fh, "jsonl"))
      local writer = must(report.writer(out, nil))
      local counts = engine.run { client = client, source = src.next,
        writer = writer, field = "ccpaOptOut", concurrency = 2 }
      writer:close()
      fh:close()
      must(counts.failed == 0)
    end, nil, 1)
    client:close()
    os.remove(input)
    os.remove(out)
    assert.is_true(calls > 100, calls)
  end)
end)
