-- The opt-out job's engine: turns requests into client calls, keeps many in
-- flight through client:bulk, and writes the report as each request ends.
--
-- A request by email is a lookup (again in lower case if nothing matched as
-- given), then one PATCH per matched profile that is not yet in the wanted
-- state.  A request by PKey reads the flag, then PATCHes if needed.
--
-- Requests that reach the same profile write it in input order, so the
-- later one wins (see M.run).  At most `max_open` requests are under way at
-- a time; past that, reading the input pauses, which keeps memory flat on
-- any input size.
local M = {}

-- How a request is counted in the summary: by its strongest outcome.
M.STRENGTH = { invalid_request = 1, not_found = 2, already_set = 3,
  opted_out = 4, opted_in = 4, would_opt_out = 4, would_opt_in = 4,
  failed = 5 }
M.ORDER = { "opted_out", "opted_in", "would_opt_out", "would_opt_in",
  "already_set", "not_found", "invalid_request", "failed" }

local function strongest(rows)
  local best
  for _, row in ipairs(rows) do
    local o = row.outcome
    if not best or (M.STRENGTH[o] or 5) > (M.STRENGTH[best] or 5) then
      best = o
    end
  end
  return best
end
M.strongest = strongest

local function now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- A first-in, first-out queue.
local function queue()
  return { first = 1, last = 0 }
end
local function push(q, v)
  q.last = q.last + 1
  q[q.last] = v
end
local function pop(q)
  if q.first > q.last then return nil end
  local v = q[q.first]
  q[q.first] = nil
  q.first = q.first + 1
  return v
end
local function size(q) return q.last - q.first + 1 end

-- Whether an error means the run cannot go on at all.
local function fatal(err, anything_worked)
  if type(err) ~= "table" then return false end
  if err.kind == "auth" or err.status == 401 or err.status == 403 then
    return true
  end
  return not anything_worked and err.kind == "network"
    and (err.code == "COULDNT_CONNECT" or err.code == "COULDNT_RESOLVE_HOST")
end

-- Writes that completed recently, by PKey, to tell whether a value read
-- earlier may be stale.  Two generations of GENERATION writes each are
-- kept, so memory stays bounded; a value read longer ago than that is
-- simply read again.
local GENERATION = 10000

-- Runs the job.  p:
--   client       a campaign client
--   source       function returning the next request (see ccpa.requests)
--   writer       a ccpa.report writer
--   field        the name of the opt-out field in a profile
--   dry_run      read only, report what would change
--   concurrency  calls in flight
--   skip         optional function(record) -> true to leave a record out
--   on_request   optional function(record, outcome) called as each ends
--   max_open     requests started and not yet finished, at most (4096)
-- Returns counts (outcome -> requests) and the number of profiles changed
-- (or that would change, in a dry run), or raises.  A refused
-- authentication stops the run: M.run raises { fatal = err }.
--
-- How requests for the same person keep their input order: each request
-- first reads (the lookup by email, or the flag by PKey); many reads run at
-- once.  Then, strictly in input order, each request takes a lock on every
-- profile it found (a queue per PKey), and writes while it holds it.  So
-- two requests that reach the same profile, whether by email or by PKey,
-- write it in input order.  A request keeps its locks until its rows are in
-- the report.  A request that had to wait for a lock, or whose profile was
-- written since its read, takes the flag as the earlier request left it, or
-- reads it again when that is not known (after a failed write).
function M.run(p)
  local client, writer, field = p.client, p.writer, p.field
  local max_open = p.max_open or 4096
  local counts, changed = {}, 0
  for o in pairs(M.STRENGTH) do counts[o] = 0 end

  local ready = queue()   -- { op, req, step, slot }, to hand out
  local in_flight, handed = {}, 0
  local input_done = false
  local open = 0          -- requests started and not finished
  local turns = queue()   -- started requests, in input order, until locked
  local locks = {}        -- PKey -> queue of { req, slot } waiting for it
  -- The latest writes (a dry run's planned ones too): PKey -> the write's
  -- number, and PKey -> the value it left, or "?" when not known.
  local writes, gen = 0, 0
  local cur, prev, cur_value, prev_value = {}, {}, {}, {}
  local anything_worked = false
  local stop
  local proceed

  local function wrote(pkey, value)
    writes = writes + 1
    if value == nil then value = "?" end
    cur[pkey], cur_value[pkey] = writes, value
    if writes % GENERATION == 0 then
      prev, cur, prev_value, cur_value, gen = cur, {}, cur_value, {}, gen + 1
    end
  end

  -- nil when the profile was not written since the mark, else the value
  -- the write left (or "?").  A dry run's plans hold whenever they were
  -- made, since the profile itself never changes (past two generations they
  -- are forgotten, and the dry run reports from Campaign's values).
  local function written_since(pkey, mark, mark_gen)
    if gen - mark_gen >= 2 and not p.dry_run then return "?" end
    local w, v = cur[pkey], cur_value[pkey]
    if w == nil then w, v = prev[pkey], prev_value[pkey] end
    if w ~= nil and (w > mark or p.dry_run) then return v end
    return nil
  end

  local function schedule(req, step, op, slot)
    push(ready, { op = op, req = req, step = step, slot = slot })
  end

  local release

  -- The request is over: its rows go to the report, and only then are its
  -- profiles' locks handed on.  So a later request that reaches one of
  -- them is never in the report before this one (which --resume relies
  -- on).
  local function finish(req, rows)
    table.sort(rows, function(a, b) return a.n < b.n end)
    for i, r in ipairs(rows) do
      rows[i] = writer:row(req, r.fields)
      if M.STRENGTH[r.fields.outcome] == 4 then changed = changed + 1 end
    end
    writer:write(rows)
    local outcome = strongest(rows)
    counts[outcome] = counts[outcome] + 1
    if req.kind then open = open - 1 end
    for _, slot in ipairs(req.found or {}) do
      release(slot.pkey, slot.now)
    end
    if p.on_request then p.on_request(req.rec, outcome) end
  end

  local function row(req, n, fields)
    req.rows[#req.rows + 1] = { n = n, fields = fields }
  end

  -- One profile of a request is settled (or failed).
  local function slot_done(req, slot, fields)
    slot.now = fields.after -- the profile's value now, if known
    row(req, slot.n, fields)
    req.left = req.left - 1
    if req.left == 0 then finish(req, req.rows) end
  end

  -- Hands the profile's lock to the next request waiting for it, with the
  -- value the profile has now (nil: not known).
  function release(pkey, value)
    local nxt = pop(locks[pkey])
    if nxt then
      local req, slot = nxt[1], nxt[2]
      if value == nil then value = "?" end
      slot.handed = value
      proceed(req, slot)
    else
      locks[pkey] = nil
    end
  end

  local wanted_outcome = { [true] = "opted_out", [false] = "opted_in" }
  local dry_outcome = { [true] = "would_opt_out", [false] = "would_opt_in" }

  -- The profile's flag is known and the request holds its lock.
  local function decide(req, slot, before)
    local fields = { pkey = slot.pkey, before = before }
    if before == req.optout then
      fields.after, fields.outcome = before, "already_set"
    elseif p.dry_run then
      -- nothing is written; later requests see what would have been
      fields.after, fields.outcome = req.optout, dry_outcome[req.optout]
      wrote(slot.pkey, req.optout)
    else
      slot.before = before
      return schedule(req, "set", { "set_ccpa_optout", slot.pkey, req.optout },
        slot)
    end
    slot_done(req, slot, fields)
  end

  -- The request holds the lock of one of its profiles.
  function proceed(req, slot)
    local value = slot.handed
    if value == nil then
      value = written_since(slot.pkey, req.mark, req.mark_gen)
    end
    if value == nil then value = slot.value end
    if value == "?" then
      schedule(req, "recheck", { "get_ccpa_optout", slot.pkey }, slot)
    else
      decide(req, slot, value)
    end
  end

  -- The request's turn: take the locks of the profiles it found.
  local function take_turn(req)
    local found = req.found
    if not found then
      req.left = 1
      return slot_done(req, { n = 1 }, req.read_fields)
    end
    req.left = #found
    for n, slot in ipairs(found) do
      slot.n = n
      local q = locks[slot.pkey]
      if q then
        push(q, { req, slot })
      else
        locks[slot.pkey] = queue()
        proceed(req, slot)
      end
    end
  end

  local function advance()
    while true do
      local head = turns[turns.first]
      if not head or not head.read_done then return end
      pop(turns)
      take_turn(head)
    end
  end

  -- The read is over: found is a list of { pkey, value }, or nil with the
  -- fields of the request's only row (not found, failed).
  local function read_done(req, found, fields)
    req.found, req.read_fields, req.read_done = found, fields, true
    advance()
  end

  local function start(req)
    req.rows = {}
    req.mark, req.mark_gen = writes, gen
    open = open + 1
    push(turns, req)
    if req.kind == "email" then
      schedule(req, "find", { "find_profiles", { email = req.id } }, req.id)
    else
      schedule(req, "get", { "get_ccpa_optout", req.id })
    end
  end

  local function failed(err, slot)
    return { pkey = slot and slot.pkey, before = slot and slot.before,
      outcome = "failed", error = tostring(err) }
  end

  local handlers = {}

  function handlers.find(req, result, err, email)
    if err then return read_done(req, nil, failed(err)) end
    if #result == 0 then
      local lower = email:lower()
      if lower ~= email then
        return schedule(req, "find", { "find_profiles", { email = lower } },
          lower)
      end
      return read_done(req, nil, { outcome = "not_found" })
    end
    local found, seen = {}, {}
    for _, profile in ipairs(result) do
      local pkey = profile.PKey
      if type(pkey) ~= "string" or pkey == "" then
        return read_done(req, nil, failed(
          "Campaign returned a profile without a PKey"))
      end
      if not seen[pkey] then
        seen[pkey] = true
        found[#found + 1] = { pkey = pkey, value = profile[field] == true }
      end
    end
    read_done(req, found)
  end

  function handlers.get(req, result, err)
    if err then
      if err.status == 404 then
        return read_done(req, nil, { outcome = "not_found" })
      elseif err.code == "XTK-170036" then
        return read_done(req, nil, { outcome = "invalid_request",
          error = tostring(err) })
      end
      return read_done(req, nil, failed(err))
    end
    read_done(req, { { pkey = req.id, value = result == true } })
  end

  function handlers.recheck(req, result, err, slot)
    if err then
      return slot_done(req, slot, failed(err, slot))
    end
    decide(req, slot, result == true)
  end

  function handlers.set(req, _, err, slot)
    local fields
    if err then
      fields = failed(err, slot)
    else
      fields = { pkey = slot.pkey, before = slot.before, after = req.optout,
        outcome = wanted_outcome[req.optout], changed_at = now() }
    end
    -- a failed write may have landed or not: later requests read again
    wrote(slot.pkey, fields.after)
    slot_done(req, slot, fields)
  end

  local function next_op()
    while ready.first > ready.last and not input_done and open < max_open do
      local req = p.source()
      if not req then
        input_done = true
      elseif p.skip and p.skip(req.rec) then -- luacheck: ignore 542
        -- settled in an earlier run
      elseif not req.kind then
        req.rows = {}
        finish(req, { { n = 1, fields = { outcome = "invalid_request",
          error = req.invalid } } })
      else
        start(req)
      end
    end
    local item = pop(ready)
    if not item then return nil end
    handed = handed + 1
    in_flight[handed] = item
    return item.op
  end

  local function on_result(i, _, result, err)
    local item = in_flight[i]
    in_flight[i] = nil
    if err == nil and result == nil then
      err = { kind = "protocol", message = "no result and no error" }
    end
    if err and fatal(err, anything_worked) then
      stop = err
      error("stop", 0)
    end
    if not err then anything_worked = true end
    handlers[item.step](item.req, result, err, item.slot)
  end

  local ok, e = pcall(client.bulk, client, next_op,
    { concurrency = p.concurrency, on_result = on_result })
  if stop then error({ fatal = stop }, 0) end
  if not ok then error(e, 0) end
  assert(open == 0 and size(ready) == 0 and next(locks) == nil,
    "requests left over")
  return counts, changed
end

return M
