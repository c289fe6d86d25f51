-- client:bulk against the sandbox: results for every op with the right
-- index, array and function sources, malformed ops, retries that respect
-- the server, POSTs never repeated once seen, rate_limit, and an error in
-- on_result.  Waits are measured by the sandbox's own clock (its log).
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/bulk_spec.lua
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local sandbox = require "spec.support.sandbox"
local socket = require "socket"

-- Runs a bulk and gathers every on_result call: { [i] = {op, result, err} }
-- and the completion order.
local function run(client, ops, concurrency)
  local results, order = {}, {}
  local summary = client:bulk(ops, {
    concurrency = concurrency,
    on_result = function(i, op, result, err)
      assert(results[i] == nil, "index " .. i .. " given twice")
      results[i] = { op = op, result = result, err = err }
      order[#order + 1] = i
    end,
  })
  return summary, results, order
end

-- The log entries of a route (all when nil), oldest first.
local function log_of(route)
  local out = {}
  for _, e in ipairs(sandbox.log()) do
    if route == nil or e.route == route then out[#out + 1] = e end
  end
  return out
end

describe("bulk", function()
  local client, all

  setup(function()
    sandbox.reset()
    all = sandbox.profiles()
  end)

  before_each(function()
    sandbox.reset()
    client = sandbox.client{ retries = 0 }
    sandbox.clear_counters()
  end)

  after_each(function()
    client:close()
    sandbox.clear_faults()
  end)

  describe("results", function()
    it("arrive for every op of an array, with its index", function()
      local ops = {}
      for i = 1, 60 do ops[i] = { "get_profile", all[i].PKey } end
      local summary, results = run(client, ops, 8)
      for i = 1, 60 do
        local r = results[i]
        assert.is_table(r, "no result for op " .. i)
        assert.are.equal(ops[i], r.op)
        assert.is_nil(r.err)
        assert.are.equal(all[i].PKey, r.result.PKey)
      end
      assert.are.same({ ok = 60, failed = 0, retried = 0, ops = 60 }, summary)
      assert.are.equal(60, sandbox.count("GET profile/pkey"))
    end)

    it("come from every profile method and request", function()
      local p, q, r = all[1], all[2], all[3]
      local ops = {
        { "get_profile", p.PKey },
        { "create_profile", { email = "bulk.created@example.com" } },
        { "update_profile", q.PKey, { middleName = "Bulk" } },
        { "delete_profile", r.PKey },
        { "find_profiles", { email = p.email } },
        { "count_profiles" },
        { "get_ccpa_optout", p.PKey },
        { "set_ccpa_optout", q.PKey, not q.ccpaOptOut },
        { "request", "GET", "profileAndServices/profile?_lineCount=2" },
        { "find_profiles", { text = p.lastName, page_size = 1 } },
      }
      local summary, results = run(client, ops, 4)
      assert.are.equal(#ops, summary.ok)
      for i = 1, #ops do assert.is_nil(results[i].err, "op " .. i) end
      assert.are.equal(p.PKey, results[1].result.PKey)
      local created = results[2].result
      assert.are.equal("bulk.created@example.com", sandbox.profile(created.PKey).email)
      assert.are.equal(q.PKey, results[3].result.PKey)
      assert.are.equal("Bulk", sandbox.profile(q.PKey).middleName)
      assert.is_true(results[4].result)
      assert.is_nil(sandbox.profile(r.PKey))
      local found = {}
      for _, x in ipairs(results[5].result) do found[x.PKey] = true end
      assert.is_true(found[p.PKey])
      -- the count ran alongside a create and a delete: either side of each
      local n = results[6].result
      assert.is_true(n >= #all - 1 and n <= #all + 1, "count " .. tostring(n))
      assert.are.equal(p.ccpaOptOut, results[7].result)
      assert.is_true(results[8].result)
      assert.are.equal(not q.ccpaOptOut, sandbox.profile(q.PKey).ccpaOptOut)
      assert.are.equal(2, #results[9].result.content)
      local by_text = {}
      for _, x in ipairs(results[10].result) do by_text[x.PKey] = true end
      assert.is_true(by_text[p.PKey])
    end)

    it("are right whatever order they complete in", function()
      -- the first op (the only PATCH) is slowed down: it completes last
      sandbox.faults{ latency_ms = { ms = 400, method = "PATCH", count = 1 } }
      local ops = { { "set_ccpa_optout", all[1].PKey, true } }
      for i = 2, 12 do ops[i] = { "get_profile", all[i].PKey } end
      local summary, results, order = run(client, ops, 4)
      assert.are.equal(12, summary.ok)
      assert.are.equal(1, order[#order])
      assert.is_true(results[1].result)
      for i = 2, 12 do assert.are.equal(all[i].PKey, results[i].result.PKey) end
    end)

    it("from a function, carry the order it gave the ops in", function()
      local given, n = {}, 0
      local function source()
        if n == 30 then return nil end
        n = n + 1
        given[n] = { "get_profile", all[n * 7].PKey }
        return given[n]
      end
      local summary, results = run(client, source, 8)
      assert.are.same({ ok = 30, failed = 0, retried = 0, ops = 30 }, summary)
      for i = 1, 30 do
        assert.are.equal(given[i], results[i].op)
        assert.are.equal(all[i * 7].PKey, results[i].result.PKey)
      end
    end)

    it("let on_result queue follow-ups while the function has said nil", function()
      -- lookups by email; each profile found not yet opted out gets a PATCH
      local emails, seen = {}, {}
      for _, p in ipairs(all) do
        if #emails < 5 and not seen[p.email] and not p.ccpaOptOut then
          emails[#emails + 1] = p.email
          seen[p.email] = true
        end
      end
      local queue, nils, patches = {}, 0, 0
      for i, e in ipairs(emails) do queue[i] = { "find_profiles", { email = e } } end
      local function source()
        local op = table.remove(queue, 1)
        if op == nil then nils = nils + 1 end
        return op
      end
      local summary = client:bulk(source, {
        concurrency = 8,
        on_result = function(_, op, result, err)
          assert(result, err)
          if op[1] == "find_profiles" then
            for _, p in ipairs(result) do
              if not p.ccpaOptOut then
                queue[#queue + 1] = { "set_ccpa_optout", p.PKey, true }
                patches = patches + 1
              end
            end
          end
        end,
      })
      assert.is_true(patches >= #emails)
      assert.are.equal(#emails + patches, summary.ops)
      assert.are.equal(#emails + patches, summary.ok)
      assert.are.equal(patches, sandbox.count("PATCH profile/pkey"))
      -- nil came back while lookups were in flight, and bulk asked again
      assert.is_true(nils >= 2)
      for _, p in ipairs(sandbox.profiles()) do
        if seen[p.email] then assert.is_true(p.ccpaOptOut, p.PKey) end
      end
    end)

    it("report a malformed op through on_result as kind \"usage\", sending nothing for it",
      function()
        local k = all[1].PKey
        local ops = {
          { "get_profile", k },
          { "no_such_method", k },
          { "get_profile" },
          { "get_profile", 42 },
          "not a table",
          { 42 },
          {},
          { "set_ccpa_optout", k, "yes" },
          { "update_profile", k, { x = 0 / 0 } },
          { "close" },
          { "bulk", {} },
          { "get_profile", all[2].PKey },
        }
        local summary, results = run(client, ops, 3)
        assert.are.same({ ok = 2, failed = 10, retried = 0, ops = 12 }, summary)
        for i = 2, 11 do
          local r = results[i]
          assert.are.equal(ops[i], r.op)
          assert.is_nil(r.result)
          assert.are.equal("usage", r.err.kind, "op " .. i)
          assert.is_false(r.err.retryable)
          assert.is_string(r.err.message)
          assert.is_falsy(tostring(r.err):find("\n", 1, true))
        end
        assert.is_truthy(results[2].err.message:find("no_such_method", 1, true))
        assert.is_truthy(results[4].err.message:find("get_profile", 1, true))
        assert.is_truthy(results[8].err.message:find("set_ccpa_optout", 1, true))
        assert.are.equal(all[1].PKey, results[1].result.PKey)
        assert.are.equal(all[2].PKey, results[12].result.PKey)
        assert.are.equal(2, sandbox.counters().total)
      end)
  end)

  describe("in flight", function()
    it("runs up to `concurrency` calls at once, on as many connections", function()
      sandbox.faults{ latency_ms = 600 }
      local ops = {}
      for i = 1, 8 do ops[i] = { "get_profile", all[i].PKey } end
      local summary = run(client, ops, 8)
      assert.are.equal(8, summary.ok)
      local log, conns = log_of("profile/pkey"), {}
      assert.are.equal(8, #log)
      for _, e in ipairs(log) do conns[e.conn] = true end
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.are.equal(8, n)
      -- all arrived before the first could have been answered
      assert.is_true(log[8].t - log[1].t < 0.6, "spread " .. (log[8].t - log[1].t))
    end)

    it("reuses its connections across ops", function()
      local ops = {}
      for i = 1, 100 do ops[i] = { "get_profile", all[i].PKey } end
      assert.are.equal(100, (run(client, ops, 4)).ok)
      local c = sandbox.counters()
      assert.are.equal(100, c.total)
      assert.is_true(c.connections <= 4, c.connections .. " connections")
    end)
  end)

  describe("retries", function()
    it("wait out a 429's Retry-After: 1 (at least 1 s, less than 2 s)", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 429, count = 1, retry_after = "1" } }
      local summary, results = run(c, { { "get_profile", all[1].PKey } }, 1)
      c:close()
      assert.are.same({ ok = 1, failed = 0, retried = 1, ops = 1 }, summary)
      assert.are.equal(all[1].PKey, results[1].result.PKey)
      local log = log_of()
      assert.are.equal(2, #log)
      assert.are.equal(429, log[1].status)
      assert.are.equal(200, log[2].status)
      local wait = log[2].t - log[1].t
      -- the log has millisecond precision
      assert.is_true(wait >= 0.999 and wait < 2, ("waited %.3f s"):format(wait))
    end)

    it("pause the whole client for a Retry-After, not only the call that got it", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 429, count = 1, retry_after = "1" } }
      local ops = {}
      for i = 1, 9 do ops[i] = { "get_profile", all[i].PKey } end
      local summary = run(c, ops, 3)
      c:close()
      assert.are.equal(9, summary.ok)
      local log = log_of()
      assert.are.equal(10, #log)
      local t429
      for _, e in ipairs(log) do
        if e.status == 429 then t429 = e.t end
      end
      assert.is_number(t429)
      -- once the client has had the 429 (a tenth of a second is plenty on
      -- loopback), nothing arrives until the second has passed
      local during = 0
      for _, e in ipairs(log) do
        if e.t > t429 + 0.1 and e.t < t429 + 0.999 then during = during + 1 end
      end
      assert.are.equal(0, during, during .. " requests during the pause")
      assert.is_true(log[10].t - t429 >= 0.999)
    end)

    it("cap a long Retry-After at max_retry_wait", function()
      local c = sandbox.client{ retries = 1, max_retry_wait = 1 }
      sandbox.faults{ status = { code = 429, count = 1, retry_after = "30" } }
      local summary = run(c, { { "get_profile", all[1].PKey } }, 1)
      c:close()
      assert.are.equal(1, summary.ok)
      local log = log_of()
      assert.are.equal(2, #log)
      local wait = log[2].t - log[1].t
      assert.is_true(wait >= 0.999 and wait < 2, ("waited %.3f s"):format(wait))
    end)

    it("give up after `retries`, with the last err", function()
      local c = sandbox.client{ retries = 1 }
      sandbox.faults{ status = { code = 429, retry_after = "1" } }
      local summary, results = run(c, { { "get_profile", all[1].PKey } }, 1)
      c:close()
      assert.are.same({ ok = 0, failed = 1, retried = 1, ops = 1 }, summary)
      local err = results[1].err
      assert.are.equal(429, err.status)
      assert.is_true(err.retryable)
      local log = log_of()
      assert.are.equal(2, #log)
      assert.is_true(log[2].t - log[1].t >= 0.999)
    end)

    it("give up after `retries` on a 503, backing off between tries", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 503 } }
      local ops = { { "get_profile", all[1].PKey }, { "get_profile", all[2].PKey } }
      local summary, results = run(c, ops, 2)
      c:close()
      assert.are.same({ ok = 0, failed = 2, retried = 4, ops = 2 }, summary)
      assert.are.equal(503, results[1].err.status)
      assert.are.equal(503, results[2].err.status)
      assert.are.equal(6, sandbox.count("GET profile/pkey"))
    end)
  end)

  describe("a POST", function()
    local function created_with(email)
      local n = 0
      for _, p in ipairs(sandbox.profiles()) do
        if p.email == email then n = n + 1 end
      end
      return n
    end

    it("is not repeated after the server saw it (503)", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 503, count = 1, method = "POST" } }
      local summary, results = run(c, { { "create_profile", { email = "once@example.com" } } })
      c:close()
      assert.are.equal(1, summary.failed)
      assert.are.equal(503, results[1].err.status)
      assert.are.equal(1, sandbox.count("POST profile"))
    end)

    it("is not repeated after the server saw it (connection closed, no answer)", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ drop = { count = 1, method = "POST" } }
      local summary = run(c, { { "create_profile", { email = "dropped@example.com" } } })
      c:close()
      assert.are.equal(1, summary.failed)
      assert.are.equal(1, sandbox.count("POST profile"))
    end)

    it("is not repeated by a single call either", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 503, count = 1, method = "POST" } }
      local v, err = c:create_profile{ email = "single@example.com" }
      c:close()
      assert.is_nil(v)
      assert.are.equal(503, err.status)
      assert.are.equal(1, sandbox.count("POST profile"))
      assert.are.equal(0, created_with("single@example.com"))
    end)

    it("is repeated on 429050 (the gateway refused it unseen)", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 429, count = 1, method = "POST" } }
      local summary, results = run(c, { { "create_profile", { email = "twice@example.com" } } })
      c:close()
      assert.are.same({ ok = 1, failed = 0, retried = 1, ops = 1 }, summary)
      assert.are.equal("twice@example.com", results[1].result.email)
      assert.are.equal(2, sandbox.count("POST profile"))
      assert.are.equal(1, created_with("twice@example.com"))
    end)

    it("unlike a PATCH, which a 503 does not stop", function()
      local c = sandbox.client{ retries = 2 }
      sandbox.faults{ status = { code = 503, count = 1, method = "PATCH" } }
      local summary = run(c, { { "set_ccpa_optout", all[1].PKey, true } })
      c:close()
      assert.are.equal(1, summary.ok)
      assert.are.equal(2, sandbox.count("PATCH profile/pkey"))
    end)
  end)

  describe("rate_limit", function()
    it("holds the rate the sandbox observes (20 a second over 40 calls)", function()
      local c = sandbox.client{ rate_limit = 20 }
      local ops = {}
      for i = 1, 40 do ops[i] = { "get_profile", all[i].PKey } end
      local summary = run(c, ops, 8)
      c:close()
      assert.are.equal(40, summary.ok)
      local log = log_of()
      assert.are.equal(40, #log)
      local spread = log[40].t - log[1].t
      assert.is_true(spread >= 1.9, ("40 calls in %.3f s"):format(spread))
      -- no second holds more than about 20 of them
      for i = 1, #log - 20 do
        assert.is_true(log[i + 20].t - log[i].t >= 0.95,
          ("21 calls in %.3f s"):format(log[i + 20].t - log[i].t))
      end
      -- and the rate is used, not undercut by far
      assert.is_true(spread < 4, ("40 calls in %.3f s"):format(spread))
    end)

    it("spaces single calls too", function()
      local c = sandbox.client{ rate_limit = 20 }
      for i = 1, 11 do assert(c:get_profile(all[i].PKey)) end
      c:close()
      local log = log_of()
      assert.are.equal(11, #log)
      assert.is_true(log[11].t - log[1].t >= 0.45,
        ("11 calls in %.3f s"):format(log[11].t - log[1].t))
    end)
  end)

  describe("an error", function()
    it("in on_result ends the run, is raised again, and the client stays usable", function()
      sandbox.faults{ latency_ms = 50 }
      local ops = {}
      for i = 1, 20 do ops[i] = { "get_profile", all[i].PKey } end
      local sentinel = setmetatable({}, { __tostring = function() return "sentinel" end })
      local calls = 0
      local ok, err = pcall(client.bulk, client, ops, {
        concurrency = 4,
        on_result = function()
          calls = calls + 1
          if calls == 3 then error(sentinel) end
        end,
      })
      assert.is_false(ok)
      assert.are.equal(sentinel, err)
      assert.are.equal(3, calls)
      sandbox.clear_faults()
      -- single calls and a new bulk run work
      assert.are.equal(all[1].PKey, assert(client:get_profile(all[1].PKey)).PKey)
      local summary, results = run(client, ops, 4)
      assert.are.equal(20, summary.ok)
      for i = 1, 20 do assert.are.equal(all[i].PKey, results[i].result.PKey) end
    end)

    it("in the op function is raised again too", function()
      local n = 0
      local ok, err = pcall(client.bulk, client, function()
        n = n + 1
        if n == 4 then error("no more ops here") end
        return { "get_profile", all[n].PKey }
      end, { concurrency = 2 })
      assert.is_false(ok)
      assert.matches("no more ops here", err)
      assert(client:count_profiles())
    end)
  end)

  describe("misuse", function()
    it("raises naming the option or argument", function()
      local k = all[1].PKey
      -- calls an earlier spec aborted may still be landing: let them
      socket.sleep(0.3)
      local sent = sandbox.counters().total
      local function raises(pattern, ...)
        local args = table.pack(...)
        -- a method call, as users write it (Lua names the function so)
        local ok, err = pcall(function() return client:bulk(table.unpack(args, 1, args.n)) end)
        assert.is_false(ok)
        assert.matches(pattern, err)
      end
      raises("'concurrency'", { { "get_profile", k } }, { concurrency = 0 })
      raises("'concurrency'", { { "get_profile", k } }, { concurrency = 1.5 })
      raises("'concurrency'", { { "get_profile", k } }, { concurrency = 100000 })
      raises("1 to 256", { { "get_profile", k } }, { concurrency = 257 })
      raises("'on_result'", { { "get_profile", k } }, { on_result = 1 })
      raises("'concurency'", { { "get_profile", k } }, { concurency = 2 })
      raises("bad argument #2 to 'bulk'", {}, "options")
      assert.are.equal(sent, sandbox.counters().total)
      raises("bad argument #1 to 'bulk'", "ops")
    end)
  end)
end)
