-- The API routes: the gateway's checks, the profile resource, lists and
-- the token endpoint, with faults applied on the way in and out.
local config = require "sandbox.config"
local faults = require "sandbox.faults"
local schema = require "sandbox.schema"
local stats = require "sandbox.stats"
local store = require "sandbox.store"
local util = require "sandbox.util"

local M = {}

local JSON = "application/json;charset=utf-8"
local OOPS = '{"code":500,"message":"Oops. Something went wrong. Check your URI and try again."}'

local RESOURCES = { profileAndServices = false, profileAndServicesExt = true }
local FILTERS = { byEmail = "email", byText = "text" }

-- Splits the raw path (still percent-encoded: a PKey may hold an encoded
-- "/") into decoded segments; one trailing slash is dropped.
local function segments(path)
  local segs, raws = {}, {}
  for raw in path:gmatch("/([^/]*)") do
    raws[#raws + 1] = raw
    segs[#segs + 1] = util.unescape_path(raw)
  end
  if segs[#segs] == "" then segs[#segs], raws[#raws] = nil, nil end
  return segs, raws
end

-- The route's short name (counters, log, fault filters) and what the
-- handlers need: {segs, ext, filters = {...}, pkey}.
local function parse(path)
  if path == "/ims/token/v3" or path == "/ims/token/v3/" then return "ims/token", nil end
  local segs, raws = segments(path)
  local ext = RESOURCES[segs[3] or ""]
  local req = { segs = segs }
  if ext == nil or segs[2] ~= "campaign" or segs[4] ~= "profile" then
    return "other", req
  end
  req.ext = ext
  local rest = segs[5]
  if rest == nil then return "profile", req end
  if rest == "_count" and not segs[6] then req.count = true return "profile/_count", req end
  if FILTERS[rest] then
    req.filters = {}
    local i = 5
    while FILTERS[segs[i] or ""] do
      req.filters[#req.filters + 1] = segs[i]
      i = i + 1
    end
    if segs[i] == "_count" and not segs[i + 1] then
      req.count = true
      return "profile/_count", req
    end
    if segs[i] then return "other", req end
    return "profile/" .. rest, req
  end
  -- "byX" is a filter's name (PKeys start with "@"): one unknown here.
  if rest:match("^by%u") then return "other", req end
  -- A PKey a client forgot to encode ("/" raw) still names one profile.
  if segs[6] and not (raws[5]:sub(1, 1) == "@" or raws[5]:sub(1, 3) == "%40") then
    return "other", req
  end
  req.pkey = table.concat(segs, "/", 5)
  return "profile/pkey", req
end

-- Parsing a path costs more than serving a cached profile, and clients
-- repeat paths (a benchmark, a poller), so parses are remembered; the
-- memo is dropped whole when it grows large.  Handlers never modify req.
local memo, memo_size = {}, 0
local function classify(path)
  local hit = memo[path]
  if hit then return hit[1], hit[2] end
  local route, req = parse(path)
  if memo_size >= 10000 then memo, memo_size = {}, 0 end
  memo[path] = { route, req }
  memo_size = memo_size + 1
  return route, req
end

-- Campaign's application errors, in the form config.error_body selects.
local function app_error(status, message)
  local form = config.current.error_body
  if form == "string" then return { status = status, body = util.encode(message) } end
  if form == "text" then
    return { status = status, body = message, type = "text/plain;charset=utf-8" }
  end
  return { status = status, body = util.encode_sorted({ code = status, message = message }) }
end

local function gateway_error(status, code, message)
  return { status = status,
           body = ('{"error_code":"%s","message":"%s"}'):format(code, message) }
end

local bearer_of, bearer  -- the fixed token and its Authorization header

-- API key first, then the token, then the organization, as the gateway.
local function gateway(req)
  local cfg = config.current
  local key = ngx.var.http_x_api_key
  if key == nil or key == "" then
    return gateway_error(403, "403000", "Api Key is required")
  end
  if key ~= cfg.api_key then return gateway_error(403, "403003", "Api Key is invalid") end
  local auth = ngx.var.http_authorization
  if auth == nil or auth == "" then
    return gateway_error(403, "403010", "Oauth token is missing.")
  end
  -- The fixed token, as nearly every request sends it, by plain string
  -- comparison: string.match is not compiled by LuaJIT and would slow
  -- every request down.
  if cfg.token ~= bearer_of then bearer_of, bearer = cfg.token, "Bearer " .. cfg.token end
  if auth ~= bearer then
    local tok = auth:match("^[Bb][Ee][Aa][Rr][Ee][Rr] +(%S+) *$")
    if not tok or not config.token_valid(tok) then
      return gateway_error(401, "401013", "Oauth token is not valid")
    end
  end
  if req == nil or req.segs[1] ~= cfg.org or req.segs[2] ~= "campaign" then
    return { status = 500, body = OOPS }
  end
  return nil
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return "" end
  body = f:read("*a")
  f:close()
  return body
end

-- A body must be a JSON object ("[]" decodes to a table too, hence the
-- look at its first character).
local function json_object(body)
  if not body:match("^%s*{") then return nil end
  local t = util.decode(body)
  if type(t) ~= "table" then return nil end
  return t
end

local function custom_fields(req)
  return req.ext and config.current.custom_fields or {}
end

local function resource_base(req)
  local cfg = config.current
  return ("%s/%s/campaign/%s/profile"):format(cfg.base_url, util.escape(cfg.org),
    req.ext and "profileAndServicesExt" or "profileAndServices")
end

---------------------------------------------------------------- profiles

local function pkey_malformed(pkey)
  return not pkey:match("^@[%w+/=_%-]+$")
end

local function find(req)
  local rec = store.get(req.pkey)
  if rec then return rec end
  if pkey_malformed(req.pkey) then
    return nil, app_error(500, ("XTK-170036 Unable to parse expression '%s'."):format(req.pkey))
  end
  return nil, app_error(404, ("RST-360011 An error has occurred - please repeat your request."
    .. " The profile '%s' does not exist."):format(req.pkey))
end

local function get_profile(req)
  local rec, err = find(req)
  if not rec then return err end
  return { status = 200, body = store.encode(rec, req.ext) }
end

local function body_or_error(req)
  local body = json_object(read_body())
  if not body then
    return nil, app_error(400, "The request body is not a JSON object.")
  end
  local ok, msg = schema.validate(body, custom_fields(req))
  if not ok then return nil, app_error(500, msg) end
  return body
end

local function create_profile(req)
  local body, err = body_or_error(req)
  if not body then return err end
  local rec = store.create(body)
  return { status = 201, body = store.encode(rec, req.ext) }
end

local function update_profile(req)
  local rec, err = find(req)
  if not rec then return err end
  local body
  body, err = body_or_error(req)
  if not body then return err end
  store.update(rec, body)
  if config.current.patch_response == "full" then
    return { status = 200, body = store.encode(rec, req.ext) }
  end
  local pkey = rec.pkey
  return { status = 200, body = '{"PKey":' .. util.encode_sorted(pkey) .. ',"href":'
    .. util.encode_sorted(resource_base(req) .. "/" .. util.escape(pkey)) .. '}' }
end

local function delete_profile(req)
  local rec, err = find(req)
  if not rec then return err end
  store.delete(rec)
  return { status = 200, body = "" }
end

------------------------------------------------------------------- lists

-- "_order": "email", "email desc", "email%20desc" (the SDK encodes twice).
local function parse_order(v)
  if type(v) ~= "string" or v == "" then return nil, false end
  v = v:gsub("%%20", " ")
  local field, dir = v:match("^%s*([%w_]+)%s*(%a*)%s*$")
  if not field then return false end
  return field, dir:lower() == "desc"
end

-- _lineStart: "@" and base64 of "field|dir|seq|type:value".  Opaque to
-- clients; a "+" that arrived as a space is put back.
local function encode_cursor(field, desc, cur)
  local k = cur.key
  local typed = type(k) == "number" and ("n:" .. k) or ("s:" .. tostring(k))
  return "@" .. ngx.encode_base64(("%s|%s|%d|%s"):format(field or "", desc and "d" or "a",
    cur.seq, typed))
end

local function decode_cursor(token)
  local raw = ngx.decode_base64((token:gsub(" ", "+")):sub(2))
  if not raw then return nil end
  local field, dir, seq, kind, value = raw:match("^([%w_]*)|([ad])|(%d+)|([ns]):(.*)$")
  if not field then return nil end
  if kind == "n" then value = tonumber(value) end
  return { field = field ~= "" and field or nil, desc = dir == "d",
           key = value, seq = tonumber(seq) }
end

local function query_string(params)
  local parts = {}
  for _, kv in ipairs(params) do
    parts[#parts + 1] = kv[1] .. "=" .. util.escape(kv[2])
  end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

local function filter_values(req, args)
  local values, params = {}, {}
  for _, name in ipairs(req.filters or {}) do
    local pname = FILTERS[name]
    local v = args[pname]
    if type(v) == "table" then v = v[1] end
    if type(v) ~= "string" then
      return nil, app_error(500, ("XTK-170042 The parameter '%s' of filter '%s' is missing.")
        :format(pname, name))
    end
    values[pname] = v
    params[#params + 1] = { pname, v }
  end
  return values, params
end

local function filter_path(req)
  if not req.filters then return "" end
  return "/" .. table.concat(req.filters, "/")
end

local function count_profiles(req, args)
  local values, err = filter_values(req, args)
  if not values then return err end
  return { status = 200, body = ('{"count":%d}'):format(store.count(values)) }
end

local function list_profiles(req, args)
  local values, params = filter_values(req, args)
  if not values then return params end
  local cfg = config.current
  local field, desc = parse_order(args._order)
  if field == false or (field and not schema.orderable(field)) then
    return app_error(500, ("XTK-170028 Unknown field '%s' in _order.")
      :format(tostring(args._order)))
  end
  local count = tonumber(args._lineCount) or cfg.line_count
  count = math.max(1, math.floor(count))
  local cursor
  if type(args._lineStart) == "string" and args._lineStart ~= "" then
    cursor = decode_cursor(args._lineStart)
    if not cursor or cursor.field ~= field or cursor.desc ~= desc then
      return app_error(500, ("XTK-170036 Unable to parse expression '%s'.")
        :format(args._lineStart))
    end
  end
  local page, total, more = store.page(values, field, desc, cursor, count)

  local parts = {}
  for i = 1, #page do parts[i] = store.encode(page[i], req.ext) end
  local base = resource_base(req) .. filter_path(req)
  local count_href = base .. "/_count" .. query_string(params)
  local force = args._forcePagination == "true"
  if field then params[#params + 1] = { "_order", field .. (desc and " desc" or "") } end
  if args._lineCount then params[#params + 1] = { "_lineCount", tostring(count) } end
  if force then params[#params + 1] = { "_forcePagination", "true" } end
  local next_part = ""
  if more and #page > 0 and (force or total <= cfg.pagination_limit) then
    params[#params + 1] = { "_lineStart", encode_cursor(field, desc,
      store.cursor_of(page[#page], field)) }
    local href = base .. query_string(params)
    -- Clients must follow next.href as given, absolute or relative.
    if cfg.next_href == "relative" then href = href:sub(#cfg.base_url + 1) end
    next_part = ',"next":{"href":' .. util.encode(href) .. '}'
  end
  return { status = 200, body = '{"content":[' .. table.concat(parts, ",") .. '],"count":{"href":'
    .. util.encode(count_href) .. '}' .. next_part .. ',"serverSidePagination":true}' }
end

------------------------------------------------------------------ tokens

local function token_error(status, err, desc)
  return { status = status, body = util.encode({ error = err, error_description = desc }) }
end

-- POST /ims/token/v3, form-encoded client credentials (query parameters
-- are read too, as the real endpoint accepts client_id there).
local function issue_token(method, args)
  if method ~= "POST" then return token_error(405, "invalid_request", "use POST") end
  local form = ngx.decode_args(read_body(), 100) or {}
  for k, v in pairs(args) do if form[k] == nil then form[k] = v end end
  local cfg = config.current
  if form.grant_type ~= "client_credentials" then
    return token_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
  end
  if type(form.client_id) ~= "string" or form.client_id == "" then
    return token_error(400, "invalid_request", "missing client_id parameter")
  end
  if form.client_id ~= cfg.api_key then
    return token_error(400, "invalid_client", "invalid client_id parameter")
  end
  if form.client_secret ~= cfg.client_secret then
    return token_error(401, "invalid_client", "invalid client_secret parameter")
  end
  if type(form.scope) ~= "string" or form.scope == "" then
    return token_error(400, "invalid_scope", "missing scope parameter")
  end
  local tok, ttl = config.issue_token()
  return { status = 200, body = util.encode({ access_token = tok, token_type = "bearer",
    expires_in = ttl }) }
end

---------------------------------------------------------------- dispatch

local function not_found(req)
  local what = req and table.concat(req.segs, "/") or ""
  return app_error(404, ("RST-360011 An error has occurred - please repeat your request."
    .. " Unknown resource path '%s'."):format(what))
end

local function not_allowed(method)
  return app_error(405, ("The method %s is not allowed on this resource."):format(method))
end

local function serve(method, route, req)
  if route == "ims/token" then return issue_token(method, ngx.req.get_uri_args(100)) end
  local denied = gateway(req)
  if denied then return denied end
  if route == "other" then return not_found(req) end
  if route == "profile/pkey" then
    if method == "GET" then return get_profile(req) end
    if method == "PATCH" then return update_profile(req) end
    if method == "DELETE" then return delete_profile(req) end
    return not_allowed(method)
  end
  if route == "profile" and method == "POST" then return create_profile(req) end
  if method ~= "GET" then return not_allowed(method) end
  local args = ngx.req.get_uri_args(100)
  if req.count then return count_profiles(req, args) end
  return list_profiles(req, args)
end

------------------------------------------------------------------ output

local REASONS = { [200] = "OK", [201] = "Created", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout" }

-- Writes the answer by hand on the raw connection, so that it can lie
-- about its length or stall; the connection is closed afterwards.
local function raw_send(res, kind, opts)
  ngx.req.read_body()
  local sock = ngx.req.socket(true)
  if not sock then return end
  local body = res.body
  local head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
    .. "Connection: close\r\n\r\n"):format(res.status, REASONS[res.status] or "Status",
    res.type or JSON, #body)
  if kind == "truncate" then
    sock:send(head .. body:sub(1, math.floor(#body / 2)))
    return
  end
  -- trickle: bytes_per_sec in slices of a twentieth of a second; with
  -- stall_ms, half the body, then silence, then the connection closes.
  local rate = tonumber(opts.bytes_per_sec) or 1000
  local limit = #body
  if opts.stall_ms then limit = math.floor(#body / 2) end
  local slice = math.max(1, math.floor(rate / 20))
  sock:send(head)
  local sent = 0
  while sent < limit do
    local n = math.min(slice, limit - sent)
    local ok = sock:send(body:sub(sent + 1, sent + n))
    if not ok then return end
    sent = sent + n
    ngx.sleep(n / rate)
  end
  if opts.stall_ms then ngx.sleep(tonumber(opts.stall_ms) / 1000) end
end

local function send(res, method, route)
  local kind, opts = faults.after(method, route)
  if kind == "drop" then return ngx.exit(444) end
  if kind == "garbage" then
    res = { status = 200, body = "<html><body>upstream says hello</body></html>\n" }
  elseif kind then
    raw_send(res, kind, opts)
    return
  end
  -- 200 and the JSON type are nginx's defaults here (default_type in the
  -- conf): not setting them again saves time on every GET.
  if res.status ~= 200 then ngx.status = res.status end
  if res.type then ngx.header.content_type = res.type end
  -- With a length, nginx sends the answer in one piece; chunked output
  -- costs a second write and halves the GETs a second.
  ngx.header.content_length = #res.body
  if res.headers then
    for k, v in pairs(res.headers) do ngx.header[k] = v end
  end
  ngx.print(res.body)
end

function M.handle()
  local method = ngx.req.get_method()
  local uri = ngx.var.request_uri
  local qpos = uri:find("?", 1, true)
  local path = qpos and uri:sub(1, qpos - 1) or uri
  local route, req = classify(path)
  local t = ngx.req.start_time()
  local conn = tonumber(ngx.var.connection)

  local res = faults.before(method, route)
  if res == "drop" then
    stats.record(method, route, 444, conn, t)
    return ngx.exit(444)
  end
  if not res then
    local ok, r = pcall(serve, method, route, req)
    if ok then
      res = r
    else
      ngx.log(ngx.ERR, "sandbox: ", r)
      res = app_error(500, "Sandbox internal error: " .. tostring(r))
    end
  end
  stats.record(method, route, res.status, conn, t)
  send(res, method, route)
end

return M
