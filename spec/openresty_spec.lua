-- The OpenResty example (examples/openresty/) on a real nginx with the
-- LuaJIT build of the module loaded, against the sandbox:
--   sh spec/sandbox/with-sandbox.sh lua5.4 /usr/bin/busted spec/openresty_spec.lua
-- Requests go through curl, as a browser's would: cookies in a jar, an
-- Origin header, the form's token.
local cjson = require("cjson").new()

local SANDBOX = os.getenv("CAMPAIGN_BASE_URL")
local ROOT = io.popen("pwd"):read("l")
local PREFIX = os.tmpname()  -- a file: replaced by a directory below
local RUN = "sh examples/openresty/run.sh"
local BASE
local CAMPAIGN = SANDBOX   -- where the example sends its calls
local BUDGET = 3           -- PRIVACY_FORM_BUDGET: seconds for the form's try

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok, code
end

local function env()
  return ("PREFIX=%s RATE=50r/s BURST=60 PRIVACY_RETRY_MIN=0.3 PRIVACY_RETRY_MAX=1 " ..
    "PRIVACY_FORM_BUDGET=" .. BUDGET .. " " ..
    "PRIVACY_SESSION_SECRET=%s CAMPAIGN_BASE_URL=%s CAMPAIGN_ORG=acme " ..
    "CAMPAIGN_API_KEY=sandbox-client CAMPAIGN_ACCESS_TOKEN=sandbox-token ")
    :format(q(PREFIX), string.rep("s3cr3t-", 6), q(CAMPAIGN))
end

local function start()
  local out, ok = sh(env() .. RUN .. " start 2>" .. q(PREFIX .. "/run.err"))
  assert(ok, "run.sh start failed: " .. out .. sh("cat " .. q(PREFIX .. "/run.err")))
  BASE = out:match("(http://127%.0%.0%.1:%d+)%s*$")
  assert(BASE, "no URL from run.sh: " .. out)
end

local function stop()
  sh(env() .. RUN .. " stop")
end

-- One HTTP request with curl. opts: method, path, jar (cookie file, read
-- and written), cookie (a Cookie header instead), form (table), headers,
-- base. Returns status, body, seconds.
local function http(opts)
  local args = { "curl -s -o - -w '\\n%{http_code} %{time_total}'" }
  if opts.method then args[#args + 1] = "-X " .. opts.method end
  if opts.jar then args[#args + 1] = "-b " .. q(opts.jar) .. " -c " .. q(opts.jar) end
  if opts.cookie then args[#args + 1] = "-H " .. q("Cookie: " .. opts.cookie) end
  for k, v in pairs(opts.headers or {}) do args[#args + 1] = "-H " .. q(k .. ": " .. v) end
  for k, v in pairs(opts.form or {}) do
    args[#args + 1] = "--data-urlencode " .. q(k .. "=" .. v)
  end
  args[#args + 1] = q((opts.base or BASE) .. opts.path)
  local out = sh(table.concat(args, " "))
  local body, status, secs = out:match("^(.*)\n(%d+) ([%d.]+)$")
  return tonumber(status), body, tonumber(secs)
end

local function control(method, path, body)
  local out, ok = sh(("curl -sf -X %s %s %s"):format(method,
    body and ("-H 'Content-Type: application/json' --data-binary " .. q(cjson.encode(body)))
      or "", q(SANDBOX .. "/_sandbox/" .. path)))
  assert(ok, method .. " /_sandbox/" .. path .. " failed")
  return out
end

local function profiles()
  local list = {}
  for line in control("GET", "profiles"):gmatch("[^\n]+") do
    list[#list + 1] = cjson.decode(line)
  end
  return list
end

local function profile(pkey)
  for _, p in ipairs(profiles()) do
    if p.PKey == pkey then return p end
  end
end

-- Profiles not opted out whose email no other profile has.
local function candidates()
  local count, list = {}, {}
  local all = profiles()
  for _, p in ipairs(all) do count[p.email] = (count[p.email] or 0) + 1 end
  for _, p in ipairs(all) do
    if p.ccpaOptOut == false and count[p.email] == 1 and p.email:match("^[%w.+_-]+@[%w.-]+$") then
      list[#list + 1] = p
    end
  end
  return list
end

local taken = 0
local pool
local function fresh(n)
  pool = pool or candidates()
  local out = {}
  for i = 1, n do out[i] = assert(pool[taken + i], "not enough profiles") end
  taken = taken + n
  return out
end

local jars = 0
-- A browser: a cookie jar holding the csrf cookie, and the form's token.
local function browser()
  jars = jars + 1
  local jar = PREFIX .. "/jar" .. jars
  local status, body = http { path = "/privacy/token", jar = jar }
  assert(status == 200, "token: " .. tostring(status))
  return { jar = jar, token = cjson.decode(body).csrf }
end

local function post(b, path, form, headers)
  form = form or {}
  form.csrf = form.csrf or b.token
  local h = { Origin = BASE, Accept = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v or nil end
  return http { path = path, jar = b.jar, form = form, headers = h }
end

local function sign_in(b, email)
  local status, body = post(b, "/demo/sign-in", { email = email })
  assert(status == 200, "sign-in: " .. tostring(status) .. " " .. tostring(body))
end

local function queue()
  local status, body = http { path = "/privacy/queue" }
  assert(status == 200)
  return cjson.decode(body)
end

local function wait_for(what, f, secs)
  local deadline = os.time() + (secs or 10)
  while true do
    local v = f()
    if v then return v end
    assert(os.time() <= deadline, "timed out waiting for " .. what)
    sh("sleep 0.1")
  end
end

local function counters()
  return cjson.decode(control("GET", "counters"))
end

describe("the OpenResty example", function()
  setup(function()
    assert(SANDBOX, "run under spec/sandbox/with-sandbox.sh")
    local f = io.open(ROOT .. "/build/luajit/campaign.so")
    if f then
      f:close()
    else
      assert(os.execute("sh tools/deps.sh luajit && make LUA=luajit >/dev/null"),
        "cannot build the LuaJIT module")
    end
    os.remove(PREFIX)
    assert(os.execute("mkdir -p " .. q(PREFIX)))
    control("POST", "reset", {})
    start()
  end)

  teardown(function()
    stop()
    control("POST", "reset", {})  -- the seed's profiles, no faults
    sh("rm -rf " .. q(PREFIX))
  end)

  before_each(function()
    control("DELETE", "faults")
  end)

  it("runs the LuaJIT build of the module", function()
    local status = http { path = "/healthz" }
    assert.equal(200, status)
    local conf = io.open(PREFIX .. "/nginx.conf"):read("a")
    assert.truthy(conf:find(ROOT .. "/build/luajit/?.so", 1, true))
  end)

  it("sets ccpaOptOut from the form, for an email", function()
    local p = fresh(1)[1]
    local b = browser()
    local status, body = post(b, "/privacy/do-not-sell", { email = p.email })
    assert.equal(200, status, body)
    assert.equal("done", cjson.decode(body).state)
    assert.is_true(profile(p.PKey).ccpaOptOut)
  end)

  it("answers the form once its time budget is spent, and delivers the rest later", function()
    -- A visitor waits for the form's own try: no call starts after its
    -- budget.  With Campaign at 800 ms and a budget of 0.5 s, the lookup
    -- ends past it: the answer is "queued", not the 1.6 s "done".
    BUDGET = 0.5
    stop()
    start()
    local p = fresh(1)[1]
    local b = browser()
    control("POST", "faults", { latency_ms = 800 })
    local status, body = post(b, "/privacy/do-not-sell", { email = p.email })
    assert.equal(202, status, body)
    assert.equal("queued", cjson.decode(body).state)
    control("DELETE", "faults")
    wait_for("delivery", function() return profile(p.PKey).ccpaOptOut end)
    BUDGET = 3
    stop()
    start()
  end)

  it("refuses cross-site requests, bad tokens and other methods", function()
    local p = fresh(1)[1]
    local b = browser()
    assert.equal(403, (post(b, "/privacy/do-not-sell", { email = p.email },
      { Origin = "http://elsewhere.invalid" })))
    assert.equal(403, (post(b, "/privacy/do-not-sell", { email = p.email },
      { ["Sec-Fetch-Site"] = "cross-site" })))
    assert.equal(403, (post(b, "/privacy/do-not-sell", { email = p.email, csrf = "forged" })))
    assert.equal(403, (http { path = "/privacy/do-not-sell", form = { email = p.email,
      csrf = b.token }, headers = { Origin = BASE } }))  -- no csrf cookie
    assert.equal(405, (http { path = "/privacy/do-not-sell", jar = b.jar }))
    assert.is_false(profile(p.PKey).ccpaOptOut)
  end)

  it("takes a signed-in visitor's person from the session, never from the body", function()
    local me, other = table.unpack(fresh(2))
    local b = browser()
    sign_in(b, me.email)
    local status = post(b, "/privacy/do-not-sell", { email = other.email, pkey = other.PKey })
    assert.equal(200, status)
    assert.is_true(profile(me.PKey).ccpaOptOut)
    assert.is_false(profile(other.PKey).ccpaOptOut)
    -- A session cookie altered by hand is no session.
    local jar = io.open(b.jar):read("a")
    local sid = jar:match("\tsid\t(%S+)")
    local forged = sid:gsub("^(.)", function(c) return c == "A" and "B" or "A" end)
    local st = http { path = "/privacy/do-not-sell", cookie = "sid=" .. forged ..
      "; csrf=" .. jar:match("\tcsrf\t(%S+)"), form = { csrf = b.token },
      headers = { Origin = BASE } }
    assert.equal(400, st)  -- anonymous, and no email given
  end)

  it("opts a GPC visitor out once, however many pages they view", function()
    local p = fresh(1)[1]
    local b = browser()
    sign_in(b, p.email)
    control("DELETE", "counters")
    for _ = 1, 5 do
      local status, _, secs = http { path = "/", jar = b.jar, headers = { ["Sec-GPC"] = "1" } }
      assert.equal(200, status)
      assert.is_true(secs < 1)
    end
    wait_for("the GPC opt-out", function() return profile(p.PKey).ccpaOptOut end)
    for _ = 1, 3 do http { path = "/", jar = b.jar, headers = { ["Sec-GPC"] = "1" } } end
    sh("sleep 0.3")
    assert.equal(0, queue().pending)
    assert.equal(1, counters().requests["PATCH profile/pkey"])
    -- Without the signal, or signed out, nothing is queued.
    local q2 = fresh(1)[1]
    local b2 = browser()
    sign_in(b2, q2.email)
    http { path = "/", jar = b2.jar }
    http { path = "/", headers = { ["Sec-GPC"] = "1" } }
    sh("sleep 0.3")
    assert.is_false(profile(q2.PKey).ccpaOptOut)
  end)

  it("keeps serving while 50 opt-outs wait on a slow Campaign", function()
    local people = fresh(50)
    local b = browser()
    control("POST", "faults", { latency_ms = 500 })
    local dir = PREFIX .. "/slow"
    local lines = { "mkdir -p " .. q(dir), "cd " .. q(dir) }
    for i, p in ipairs(people) do
      lines[#lines + 1] = ("curl -s -o /dev/null -w '%%{http_code} %%{time_total}\\n' -b %s " ..
        "-H %s -H 'Accept: application/json' --data-urlencode %s --data-urlencode %s %s " ..
        ">post%d &"):format(q(b.jar), q("Origin: " .. BASE), q("email=" .. p.email),
        q("csrf=" .. b.token), q(BASE .. "/privacy/do-not-sell"), i)
    end
    lines[#lines + 1] = "sleep 0.3"
    lines[#lines + 1] = "curl -s " .. q(BASE .. "/privacy/queue") .. " >queue"
    for _ = 1, 5 do
      lines[#lines + 1] = "curl -s -o /dev/null -w '%{time_total}\\n' " ..
        q(BASE .. "/healthz") .. " >>healthz; sleep 0.05"
    end
    lines[#lines + 1] = "wait"
    local t0 = sh("date +%s.%N")
    sh(table.concat(lines, "\n"))
    local elapsed = tonumber((sh("date +%s.%N"))) - tonumber(t0)

    local in_flight = cjson.decode(io.open(dir .. "/queue"):read("a")).pending
    local worst = 0
    for line in io.lines(dir .. "/healthz") do worst = math.max(worst, tonumber(line)) end
    local statuses = {}
    for i = 1, 50 do
      local code = io.open(dir .. "/post" .. i):read("a"):match("^(%d+)")
      statuses[code] = (statuses[code] or 0) + 1
    end
    print(("\n  openresty: %d opt-outs in flight, Campaign at 500 ms: the plain location "
      .. "answered in %.1f ms at worst (5 tries); the 50 took %.2f s in all")
      :format(in_flight, worst * 1000, elapsed))
    assert.is_true(in_flight >= 40, "only " .. in_flight .. " in flight")
    assert.is_true(worst < 0.1, ("plain location took %.3f s"):format(worst))
    assert.same({ ["200"] = 50 }, statuses)
    local now = {}
    for _, p in ipairs(profiles()) do now[p.PKey] = p.ccpaOptOut end
    for _, p in ipairs(people) do assert.is_true(now[p.PKey], p.email) end
  end)

  it("rate-limits the form per client address", function()
    local b = browser()
    -- One curl, 150 requests in parallel (a bad token: nothing reaches
    -- Campaign); the zone allows 50 a second with a burst of 60.
    local urls = {}
    for i = 1, 150 do urls[i] = "-o /dev/null " .. q(BASE .. "/privacy/do-not-sell") end
    local out = sh(("curl -s -Z --parallel-max 150 -w '%%{http_code}\\n' " ..
      "-b %s -H %s --data-urlencode 'csrf=forged' %s 2>/dev/null"):format(q(b.jar),
      q("Origin: " .. BASE), table.concat(urls, " ")))
    local limited = 0
    for code in out:gmatch("%d+") do
      if code == "429" then limited = limited + 1 end
    end
    print(("\n  openresty: %d of 150 form posts at once were refused with 429"):format(limited))
    assert.is_true(limited > 0, "no 429 in 150 requests at once")
    -- The zone drains at 50 a second.  The next spec posts from this
    -- address too, several times in a row, and must not meet this one's
    -- 429s: wait until a post goes through, then for the rest of the
    -- burst (60 at 50 a second) to drain.
    local one = ("curl -s -o /dev/null -w '%%{http_code}' -b %s -H %s " ..
      "--data-urlencode 'csrf=forged' %s"):format(q(b.jar), q("Origin: " .. BASE),
      q(BASE .. "/privacy/do-not-sell"))
    local deadline, code = os.time() + 10
    repeat
      code = sh(one)
      if code == "429" then sh("sleep 0.2") end
    until code ~= "429" or os.time() > deadline
    assert.are_not.equal("429", code, "the zone did not drain in 10 s")
    sh("sleep 1.5")
  end)

  it("keeps opt-outs while Campaign is down, over a reload and a restart, then delivers",
  function()
    local people = fresh(3)
    local gpc = fresh(1)[1]
    local b = browser()
    local g = browser()
    sign_in(g, gpc.email)
    control("POST", "faults", { drop = true })
    for _, p in ipairs(people) do
      local status, body, secs = post(b, "/privacy/do-not-sell", { email = p.email })
      assert.equal(202, status, body)
      assert.equal("queued", cjson.decode(body).state)
      assert.is_true(secs < 5)
    end
    assert.equal(200, (http { path = "/", jar = g.jar, headers = { ["Sec-GPC"] = "1" } }))
    wait_for("retries", function()
      local st = queue()
      if st.pending ~= 4 then return false end
      for _, j in ipairs(st.jobs) do if j.tries < 2 then return false end end
      return true
    end)

    assert(os.execute(env() .. RUN .. " reload"))
    sh("sleep 0.5")
    assert.equal(4, queue().pending)

    -- Restarted with nothing listening where Campaign was: refused
    -- connections, not dropped ones; the jobs wait and keep trying.
    local tried = {}
    for _, j in ipairs(queue().jobs) do tried[#tried + 1] = j.tries end
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    CAMPAIGN = ("http://127.0.0.1:%d"):format(select(2, s:getsockname()))
    s:close()
    stop()
    start()
    assert.equal(4, queue().pending)
    -- The GPC visitor was recorded before the restart: not queued again.
    http { path = "/", jar = g.jar, headers = { ["Sec-GPC"] = "1" } }
    assert.equal(4, queue().pending)
    wait_for("tries on refused connections", function()
      for i, j in ipairs(queue().jobs) do
        if j.tries <= (tried[i] or 0) then return false end
      end
      return true
    end)
    assert.equal(4, queue().pending)

    CAMPAIGN = SANDBOX
    stop()
    start()
    control("DELETE", "faults")
    wait_for("delivery", function() return queue().pending == 0 end)
    local now = {}
    for _, p in ipairs(profiles()) do now[p.PKey] = p.ccpaOptOut end
    for _, p in ipairs(people) do assert.is_true(now[p.PKey], p.email) end
    assert.is_true(now[gpc.PKey])
  end)
end)

-- campaign.ngx on its own, in a minimal nginx on a Unix socket.
describe("campaign.ngx", function()
  local dir, sock
  local function get(path)
    local out, ok = sh(("curl -s --unix-socket %s http://helper%s"):format(q(sock), path))
    assert(ok, "no answer from the helper's nginx")
    return cjson.decode(out)
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    sock = dir .. "/nginx.sock"
    local conf = ([[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
%s
worker_processes 1;
daemon on;
pid @D@/nginx.pid;
error_log @D@/error.log warn;
env CAMPAIGN_BASE_URL;
thread_pool campaign threads=2;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path @D@/body;
  proxy_temp_path @D@/proxy;
  fastcgi_temp_path @D@/fastcgi;
  uwsgi_temp_path @D@/uwsgi;
  scgi_temp_path @D@/scgi;
  lua_package_path "@R@/lua/?.lua;;";
  lua_package_cpath "@R@/build/luajit/?.so;;";
  lua_worker_thread_vm_pool_size 2;
  init_by_lua_block { require("campaign.ngx").configure { vms = 2, wait = 1 } }
  server {
    listen unix:@D@/nginx.sock;
    default_type application/json;
    location /check {
      content_by_lua_block {
        local cngx = require "campaign.ngx"
        local cjson = require "cjson"
        local S = { org = "acme", api_key = "sandbox-client", access_token = "sandbox-token",
                    base_url = os.getenv("CAMPAIGN_BASE_URL"), retries = 0 }
        local r = {}
        local n, err = cngx.call(S, "count_profiles")
        r.count = n
        local p, e = cngx.client(S):get_profile("@no-such-profile")
        r.profile = p == nil
        r.err = tostring(e)
        r.status, r.kind, r.code = e.status, e.kind, e.code
        r.same_mt = getmetatable(e) == debug.getregistry()["campaign.error"]
        local ok, msg = pcall(cngx.call, S, "get_profile", 42)
        r.misuse = not ok and msg
        ok, msg = pcall(cngx.call, S, "get_profile", function() end)
        r.crossing = not ok and msg
        ok, msg = pcall(cngx.call, S, "profiles")
        r.method = not ok and msg
        ok, msg = pcall(function() local x = cngx.client(S):get_profile(42); return x end)
        r.proxy_misuse = not ok and msg
        ok, msg = pcall(function()
          local x = cngx.client(S):update_profile("@x", { f = print })
          return x
        end)
        r.proxy_crossing = not ok and msg
        local summary, results, errs = cngx.call(S, "bulk",
          { { "get_profile", "@nope" }, { "count_profiles" } })
        r.bulk_ok, r.bulk_failed = summary.ok, summary.failed
        r.bulk_result, r.bulk_err = results[2], tostring(errs[1])
        local bad = { org = "acme", client_id = "sandbox-client", client_secret = "wrong",
                      ims_url = os.getenv("CAMPAIGN_BASE_URL"),
                      base_url = os.getenv("CAMPAIGN_BASE_URL"), retries = 0 }
        local _, ae = cngx.call(bad, "count_profiles")
        r.auth = tostring(ae)
        ngx.say(cjson.encode(r))
      }
    }
    location /reuse {
      content_by_lua_block {
        local cngx = require "campaign.ngx"
        local S = { org = "acme", api_key = "sandbox-client", access_token = "sandbox-token",
                    base_url = os.getenv("CAMPAIGN_BASE_URL") }
        for _ = 1, 10 do assert(cngx.call(S, "count_profiles")) end
        ngx.say("{}")
      }
    }
    location /nopool {
      content_by_lua_block {
        local cngx = require "campaign.ngx"
        cngx.configure { pool = "missing" }
        local S = { org = "acme", api_key = "k", access_token = "t",
                    base_url = os.getenv("CAMPAIGN_BASE_URL") }
        local res, err = cngx.call(S, "count_profiles")
        cngx.configure { pool = "campaign" }
        ngx.say(require("cjson").encode { res = res == nil, kind = err.kind,
          text = tostring(err), retryable = err.retryable })
      }
    }
  }
}
]]):format(io.popen("id -u"):read("l") == "0" and "user root root;" or "")
      :gsub("@D@", dir):gsub("@R@", ROOT)
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    assert(os.execute(("CAMPAIGN_BASE_URL=%s /usr/sbin/nginx -p %s -c %s/nginx.conf -e %s")
      :format(q(SANDBOX), q(dir), q(dir), q(dir .. "/error.log"))))
    wait_for("the helper's nginx", function() return os.execute("test -S " .. q(sock)) end)
  end)

  teardown(function()
    local pid = io.open(dir .. "/nginx.pid")
    if pid then
      os.execute("kill " .. pid:read("l"))
      pid:close()
      sh("sleep 0.2")
    end
    sh("rm -rf " .. q(dir))
  end)

  it("returns the client's results, and its err tables with their metatable", function()
    local r = get("/check")
    assert.is_true(r.count > 0)
    assert.is_true(r.profile)
    assert.equal(404, r.status)
    assert.equal("http", r.kind)
    assert.equal("RST-360011", r.code)
    assert.matches("^campaign: http 404 RST%-360011: ", r.err)
    assert.is_true(r.same_mt)
    assert.equal(1, r.bulk_ok)
    assert.equal(1, r.bulk_failed)
    assert.equal(r.count, r.bulk_result)
    assert.matches("^campaign: http 404", r.bulk_err)
    assert.matches("^campaign: auth", r.auth)
  end)

  it("raises on misuse, with the module's message", function()
    local r = get("/check")
    assert.equal("bad argument #1 to 'get_profile' (a PKey string expected)", r.misuse)
    assert.matches("cannot cross to a worker thread", r.crossing)
    assert.matches("a client method expected", r.method)
    -- Through cngx.client, at the caller's line, numbered as the module does.
    assert.matches("^content_by_lua%(nginx.conf:%d+%):%d+: bad argument #1 to 'get_profile' "
      .. "%(a PKey string expected%)$", r.proxy_misuse)
    assert.matches("^content_by_lua%(nginx.conf:%d+%):%d+: bad argument #2 to 'update_profile' "
      .. "%(holds a function", r.proxy_crossing)
  end)

  it("keeps one client per Lua state: calls reuse connections", function()
    control("DELETE", "counters")
    get("/reuse")
    -- Ten calls, at most one connection per Lua state of the pool (2).
    assert.is_true(counters().connections <= 2, "connections: " .. counters().connections)
  end)

  it("says 'thread' when the thread pool is missing", function()
    local r = get("/nopool")
    assert.is_true(r.res)
    assert.equal("thread", r.kind)
    assert.is_true(r.retryable)
    assert.matches("^campaign: thread THREAD: ", r.text)
  end)
end)
