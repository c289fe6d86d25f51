-- The sandbox's settings (organization, credentials, token lifetime,
-- switches of the answers' forms) and the access tokens it has issued.
-- Start-up values come from the environment sandbox.sh exports; a reset
-- goes back to them.
local M = {}

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

-- What each settable key must be; used by POST /_sandbox/config.
local KINDS = {
  org = "string", api_key = "string", client_secret = "string",
  token = "string", token_ttl = "number", base_url = "string",
  error_body = { object = true, string = true, text = true },
  patch_response = { short = true, full = true },
  next_href = { absolute = true, relative = true },
  custom_fields = "table", pagination_limit = "number",
  line_count = "number",
}

local current

local function startup()
  return {
    org = env("SANDBOX_ORG", "acme"),
    api_key = env("SANDBOX_API_KEY", "sandbox-client"),
    client_secret = env("SANDBOX_CLIENT_SECRET", "sandbox-secret"),
    token = env("SANDBOX_TOKEN", "sandbox-token"),
    token_ttl = tonumber(env("SANDBOX_TOKEN_TTL", "86399")) or 86399,
    base_url = env("SANDBOX_BASE_URL", "http://127.0.0.1"),
    -- Campaign's application errors: {"code","message"} (object), a bare
    -- JSON string (string, as one report shows), or plain text (text).
    error_body = "object",
    -- PATCH answers {PKey, href} (short) or the whole profile (full, as
    -- the seed page shows).
    patch_response = "short",
    -- next.href as an absolute URL or a path (both are seen).
    next_href = "absolute",
    -- Custom fields the Ext resource shows, with their defaults.
    custom_fields = { cusOptOutCcpa = false },
    -- Above this many rows, next is withheld without _forcePagination.
    pagination_limit = 100000,
    line_count = 25,
  }
end

M.tokens = {}  -- issued token -> expiry (ngx.now() seconds)

function M.reset()
  current = startup()
  M.current = current
  M.tokens = {}
end

-- Merges a table of settings; returns true or nil and a message.
function M.set(t)
  for k, v in pairs(t) do
    local kind = KINDS[k]
    if not kind then return nil, "unknown setting '" .. tostring(k) .. "'" end
    if type(kind) == "table" then
      if not kind[v] then return nil, "bad value for '" .. k .. "'" end
    elseif type(v) ~= kind then
      return nil, "'" .. k .. "' must be a " .. kind
    end
  end
  for k, v in pairs(t) do current[k] = v end
  return true
end

-- Issues a token valid for token_ttl seconds.
function M.issue_token()
  local raw = {}
  for i = 1, 24 do raw[i] = string.char(math.random(0, 255)) end
  local tok = "sbx." .. ngx.encode_base64(table.concat(raw)):gsub("[+/=]", {
    ["+"] = "-", ["/"] = "_", ["="] = "" })
  M.tokens[tok] = ngx.now() + current.token_ttl
  return tok, current.token_ttl
end

function M.token_valid(tok)
  if tok == current.token then return true end
  local exp = M.tokens[tok]
  return exp ~= nil and ngx.now() < exp
end

return M
