-- The example site's handlers: the "do not sell" form and endpoint, the
-- Global Privacy Control hook, a stand-in sign-in, and a status page.
-- Every call to Campaign goes through campaign.ngx (a worker thread) or
-- the queue's timers: no handler ever blocks the worker.
local cngx = require "campaign.ngx"
local cjson = require("cjson").new()
local queue = require "privacy.queue"
local session = require "privacy.session"

local M = {}

local SESSION_TTL = 8 * 3600
local sign_in_settings

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

-- The client's settings from the environment (CAMPAIGN_*, as the module's
-- other examples take them), with a short timeout for the form's own try
-- and a longer one for background deliveries; retries are the queue's.
local function settings(timeout)
  local s = {
    org = env("CAMPAIGN_ORG", "acme"),
    base_url = env("CAMPAIGN_BASE_URL"),
    api_key = env("CAMPAIGN_API_KEY"),
    access_token = env("CAMPAIGN_ACCESS_TOKEN"),
    client_id = env("CAMPAIGN_CLIENT_ID"),
    client_secret = env("CAMPAIGN_CLIENT_SECRET"),
    timeout = timeout, connect_timeout = math.min(timeout, 3), retries = 0,
  }
  if s.access_token then s.client_id, s.client_secret = nil, nil end
  return s
end

--- init_by_lua (the master process, whose environment this reads: the
-- workers' is emptied by nginx): settings, the journal's replay.
function M.init(opts)
  session.init(assert(env("PRIVACY_SESSION_SECRET"), "PRIVACY_SESSION_SECRET is not set"),
               env("PRIVACY_ORIGIN"))
  local vms = tonumber(opts.vms) or 16
  cngx.configure { vms = vms, wait = 5 }
  sign_in_settings = settings(3)
  queue.init {
    journal = opts.journal,
    settings = settings(10),
    inline_settings = settings(3),
    inline_budget = tonumber(env("PRIVACY_FORM_BUDGET", "3")),
    retry_min = tonumber(env("PRIVACY_RETRY_MIN", "5")),
    retry_max = tonumber(env("PRIVACY_RETRY_MAX", "300")),
  }
end

function M.init_worker()
  queue.init_worker()
end

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                         ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function wants_json()
  local accept = ngx.var.http_accept or ""
  return accept:find("application/json", 1, true) ~= nil
end

local function reply(status, message, extra)
  ngx.status = status
  ngx.header["Cache-Control"] = "no-store"
  if wants_json() then
    ngx.header.content_type = "application/json"
    local body = { message = message }
    for k, v in pairs(extra or {}) do body[k] = v end
    ngx.say(cjson.encode(body))
  else
    ngx.header.content_type = "text/html; charset=utf-8"
    ngx.say("<!doctype html><title>Privacy</title><p>", html_escape(message),
            "</p><p><a href=\"/\">Back</a></p>")
  end
  return ngx.exit(status)
end

-- The form's checks: a POST of a form, from this site, with its token.
local function check_form()
  if ngx.req.get_method() ~= "POST" then
    ngx.header.Allow = "POST"
    return reply(405, "Use the form.")
  end
  if not session.same_origin() then
    return reply(403, "This request did not come from this site.")
  end
  local ctype = ngx.var.content_type or ""
  if not ctype:lower():find("^application/x%-www%-form%-urlencoded") then
    return reply(415, "Send the form.")
  end
  ngx.req.read_body()
  local args = ngx.req.get_post_args(10)
  if not session.csrf_ok(args.csrf) then
    return reply(403, "This form has expired: reload the page and try again.")
  end
  return args
end

local function valid_email(e)
  if type(e) ~= "string" then return nil end
  e = e:match("^%s*(.-)%s*$")
  if #e > 254 or not e:match("^[^@%s]+@[^@%s]+$") then return nil end
  return e
end

--- POST /privacy/do-not-sell: the signed-in visitor's person (from the
-- session, never from the body), or the form's email.
function M.do_not_sell()
  local args = check_form()
  local pkey = session.person()
  local job
  if pkey then
    job = { pkey = pkey, source = "session" }
    queue.mark(pkey)
  else
    local email = valid_email(args.email)
    if not email then return reply(400, "Give the email address you want to opt out.") end
    job = { email = email, source = "form" }
  end
  local state = queue.add(job, true)
  -- The same words whether or not the email is known: no one can use
  -- this form to learn whether someone is a customer.
  if state == "done" then
    return reply(200, "Done: your personal information will not be sold.", { state = state })
  end
  return reply(202, "Recorded: your request will be applied within minutes.", { state = state })
end

--- GET /privacy: the form, with its CSRF token.
function M.form()
  local token = session.csrf_token()
  local pkey = session.person()
  ngx.header.content_type = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  local field = pkey and "<p>You are signed in: this applies to your account.</p>"
    or "<p><label>Email <input type=\"email\" name=\"email\" required></label></p>"
  ngx.say("<!doctype html><title>Do not sell my personal information</title>",
          "<h1>Do not sell or share my personal information</h1>",
          "<form method=\"post\" action=\"/privacy/do-not-sell\">", field,
          "<input type=\"hidden\" name=\"csrf\" value=\"", html_escape(token), "\">",
          "<button>Do not sell</button></form>")
end

--- GET /privacy/token: the CSRF token as JSON (for pages that post with
-- fetch()).
function M.token()
  local token = session.csrf_token()
  ngx.header.content_type = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(cjson.encode { csrf = token })
end

--- access_by_lua on the site's pages: a signed-in visitor whose browser
-- sends Sec-GPC: 1 is opted out, once. Never waits, never fails the page.
function M.gpc()
  if ngx.var.http_sec_gpc ~= "1" then return end
  local ok, err = pcall(function()
    local pkey = session.person()
    if pkey and queue.gpc(pkey) then
      ngx.log(ngx.INFO, "privacy: GPC opt-out queued")
    end
  end)
  if not ok then ngx.log(ngx.ERR, "privacy: GPC hook: ", err) end
end

--- POST /demo/sign-in (email, csrf): signs in the first profile with that
-- email. A stand-in for the site's own login, which would set the same
-- signed cookie (session.sign_in) for the person it authenticated.
function M.demo_sign_in()
  local args = check_form()
  local email = valid_email(args.email)
  if not email then return reply(400, "Give an email address.") end
  local people, err = cngx.call(sign_in_settings, "find_profiles", { email = email })
  if not people then
    ngx.log(ngx.WARN, "privacy: sign-in lookup failed: ", tostring(err))
    return reply(503, "Sign-in is unavailable, try again later.")
  end
  if #people == 0 then return reply(403, "No such account.") end
  session.sign_in(people[1].PKey, SESSION_TTL)
  return reply(200, "Signed in.", { signed_in = true })
end

function M.demo_sign_out()
  check_form()
  session.sign_out()
  return reply(200, "Signed out.")
end

--- GET /privacy/queue (local only): the undelivered opt-outs.
function M.status()
  ngx.header.content_type = "application/json"
  local st = queue.status()
  if #st.jobs == 0 then
    -- Debian's cjson writes an empty table as {}: keep "jobs" an array.
    ngx.say('{"pending":0,"jobs":[]}')
  else
    ngx.say(cjson.encode(st))
  end
end

return M
