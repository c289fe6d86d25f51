-- Signed cookies for the example: the visitor's session and the CSRF token.
--
-- The session cookie names the signed-in person by PKey:
--   sid=<base64url(JSON {"p": pkey, "e": expiry})>.<base64url(HMAC-SHA256)>
-- signed with the site's secret, so a visitor can neither forge nor alter
-- it. A real site sets it at its own sign-in; the example's /demo/sign-in
-- stands in for that.
--
-- CSRF: a random cookie (csrf) plus, in every form, a token that is the
-- HMAC of that cookie's value. A cross-site page can make the browser send
-- the cookie but can neither read it nor compute the token.
local ffi = require "ffi"
local b64 = require "ngx.base64"
local cjson = require("cjson").new()

local S = {}

ffi.cdef [[
  const void *EVP_sha256(void);
  unsigned char *HMAC(const void *evp_md, const void *key, int key_len,
                      const unsigned char *d, size_t n, unsigned char *md,
                      unsigned int *md_len);
  int RAND_bytes(unsigned char *buf, int num);
]]

local md = ffi.new("unsigned char[64]")
local md_len = ffi.new("unsigned int[1]")
local secret, public_origin

--- key: the HMAC secret (32 bytes or more); origin: the site's origin as
-- browsers see it ("https://shop.example"), when nginx sits behind a proxy
-- that changes scheme or host; nil: this request's scheme and Host.
function S.init(key, origin)
  assert(type(key) == "string" and #key >= 32, "the session secret must have 32 bytes or more")
  secret, public_origin = key, origin
end

-- HMAC-SHA256 through nginx's own libcrypto.
local function hmac(purpose, msg)
  local data = purpose .. "\0" .. msg
  assert(ffi.C.HMAC(ffi.C.EVP_sha256(), secret, #secret, data, #data, md, md_len) ~= nil)
  return ffi.string(md, md_len[0])
end

local function random_hex(n)
  local buf = ffi.new("unsigned char[?]", n)
  assert(ffi.C.RAND_bytes(buf, n) == 1, "RAND_bytes failed")
  return (ffi.string(buf, n):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
S.random_hex = random_hex

-- Compares two strings in time that depends only on their lengths.
local function same(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

local function cookie(name)
  return ngx.var["cookie_" .. name]
end

local function add_cookie(text)
  local h = ngx.header["Set-Cookie"]
  if h == nil then h = {} elseif type(h) == "string" then h = { h } end
  h[#h + 1] = text
  ngx.header["Set-Cookie"] = h
end

local function secure_attr()
  return ngx.var.scheme == "https" and "; Secure" or ""
end

--- The signed-in person's PKey, or nil.
function S.person()
  local v = cookie("sid")
  if not v then return nil end
  local payload, mac = v:match("^([%w_-]+)%.([%w_-]+)$")
  if not payload then return nil end
  if not same(b64.decode_base64url(mac), hmac("sid", payload)) then return nil end
  local ok, t = pcall(cjson.decode, b64.decode_base64url(payload) or "")
  if not ok or type(t) ~= "table" or type(t.p) ~= "string" or type(t.e) ~= "number"
      or t.e < ngx.time() then
    return nil
  end
  return t.p
end

--- Signs `pkey` in for `ttl` seconds (the example's stand-in for a login).
function S.sign_in(pkey, ttl)
  local payload = b64.encode_base64url(cjson.encode { p = pkey, e = ngx.time() + ttl })
  local mac = b64.encode_base64url(hmac("sid", payload))
  add_cookie(("sid=%s.%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s")
    :format(payload, mac, ttl, secure_attr()))
end

function S.sign_out()
  add_cookie("sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax" .. secure_attr())
end

--- The CSRF token for this visitor's forms (sets the csrf cookie if needed).
function S.csrf_token()
  local v = cookie("csrf")
  if not (v and v:match("^%x+$") and #v == 32) then
    v = random_hex(16)
    add_cookie(("csrf=%s; Path=/; HttpOnly; SameSite=Strict%s"):format(v, secure_attr()))
  end
  return b64.encode_base64url(hmac("csrf", v))
end

--- True when the submitted token matches the visitor's csrf cookie.
function S.csrf_ok(token)
  local v = cookie("csrf")
  if type(token) ~= "string" or not v then return false end
  return same(token, b64.encode_base64url(hmac("csrf", v)))
end

--- True when the request comes from this site's own pages: its Origin (or,
-- without one, its Referer) is this site, and Sec-Fetch-Site, when sent,
-- says same-origin.
function S.same_origin()
  local site = ngx.var.http_sec_fetch_site
  if site and site ~= "same-origin" then return false end
  local here = public_origin or (ngx.var.scheme .. "://" .. (ngx.var.http_host or ""))
  local origin = ngx.var.http_origin
  if not origin or origin == "null" then
    local ref = ngx.var.http_referer
    origin = ref and ref:match("^(https?://[^/?#]+)")
  end
  return origin ~= nil and origin:lower() == here:lower()
end

return S
