-- Writes fuzz/corpus/: real answers of the sandbox and of the specs'
-- listener, each as the harness reads them (5 header bytes, the body;
-- see fuzz_reply.c), plus hand-made transport failures.
--
--   sh spec/sandbox/with-sandbox.sh lua5.4 fuzz/make-corpus.lua
--
-- The corpus's found-* files are inputs the fuzzer found new coverage
-- with, kept from a minimising merge (fuzz_reply -merge=1 OUT fuzz/corpus
-- build/fuzz/work).
package.path = "spec/support/?.lua;" .. package.path
local http = require "socket.http"
local ltn12 = require "ltn12"
local peers = require "peers"

local OUT = "fuzz/corpus/"
os.execute("mkdir -p " .. OUT)

local function write(name, status, retry_after, rc, over, body)
  local s = status and status - 100 or 0xffff
  local ra = retry_after and math.min(254, math.floor(retry_after * 4)) or 0xff
  local f = assert(io.open(OUT .. name, "wb"))
  f:write(string.char(s >> 8, s & 0xff, ra, rc or 0, over and 1 or 0), body or "")
  f:close()
end

local function fetch(url, method, body, headers)
  local out = {}
  local h = { ["X-Api-Key"] = peers.KEY, ["Authorization"] = "Bearer " .. peers.TOKEN }
  for k, v in pairs(headers or {}) do h[k] = v or nil end
  if body then h["Content-Length"] = #body end
  local ok, code, rh = http.request { url = url, method = method or "GET", headers = h,
    source = body and ltn12.source.string(body), sink = ltn12.sink.table(out) }
  assert(ok, code)
  return code, table.concat(out), rh
end

local function capture(name, url, method, body, headers)
  local code, text, rh = fetch(url, method, body, headers)
  write(name, code, rh and tonumber(rh["retry-after"]), 0, false, text)
end

peers.reset()
local B = peers.BASE .. "/" .. peers.ORG .. "/campaign/profileAndServices/profile"
local pkey = peers.first_pkey()
local epkey = pkey:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
capture("sandbox-get", B .. "/" .. epkey)
capture("sandbox-list", B .. "?_lineCount=3&_forcePagination=true")
capture("sandbox-count", B .. "/_count")
capture("sandbox-by-email", B .. "/byEmail?email=nobody%40example.com&_lineCount=5")
capture("sandbox-404", B .. "/%40no-such")
capture("sandbox-500-xtk", B .. "/not-a-pkey")
capture("sandbox-403000", B, "GET", nil, { ["X-Api-Key"] = false })
capture("sandbox-403003", B, "GET", nil, { ["X-Api-Key"] = "wrong" })
capture("sandbox-401013", B, "GET", nil, { ["Authorization"] = "Bearer nope" })
capture("sandbox-patch", B .. "/" .. epkey, "PATCH", '{"lastName":"Corpus"}')
capture("sandbox-400-body", B .. "/" .. epkey, "PATCH", '[1,2]')
capture("sandbox-500-field", B .. "/" .. epkey, "PATCH", '{"noSuchField":1}')
capture("sandbox-token", peers.BASE .. "/ims/token/v3", "POST",
  "grant_type=client_credentials&client_id=" .. peers.KEY .. "&client_secret=" ..
  peers.SECRET .. "&scope=openid", { ["Content-Type"] = "application/x-www-form-urlencoded" })
capture("sandbox-token-refused", peers.BASE .. "/ims/token/v3", "POST",
  "grant_type=client_credentials&client_id=" .. peers.KEY .. "&client_secret=x&scope=a",
  { ["Content-Type"] = "application/x-www-form-urlencoded" })
capture("sandbox-other-404", peers.BASE .. "/nowhere")
peers.faults { status = { code = 429, count = 1, retry_after = "2" } }
capture("sandbox-429", B .. "/" .. epkey)
peers.faults { status = { code = 429, count = 1, error_code = 429001 } }
capture("sandbox-429001", B .. "/" .. epkey)
peers.faults { status = { code = 503, count = 1 } }
capture("sandbox-503", B .. "/" .. epkey)
peers.faults { garbage = { count = 1 } }
capture("sandbox-garbage", B .. "/" .. epkey)
peers.config { error_body = "string" }
capture("sandbox-404-string", B .. "/%40no-such")
peers.config { error_body = "text" }
capture("sandbox-404-text", B .. "/%40no-such")
peers.reset()
capture("sandbox-delete", B .. "/" .. epkey, "DELETE")
peers.reset()

local L = peers.listener()
for _, s in ipairs { "s-json", "s-empty200", "s-204", "s-302", "s-not-json",
                     "s-deep-array", "s-deep-object", "s-deep-error", "s-bad-utf8",
                     "s-bad-utf8-error", "s-error-echo", "s-error-code-echo",
                     "s-list-offhost", "s-list-dots", "s-429-date", "s-gzip" } do
  local code, text = fetch(L.url .. "/acme/campaign/x/" .. s, "GET", nil,
                           { ["Accept-Encoding"] = "gzip" })
  write("listener-" .. s, code, s == "s-429-date" and 0 or nil, 0, false, text)
end
L:stop()

-- transport failures: the harness maps 0x80 + i to its codes[i]
write("net-refused", nil, nil, 0x80, false, "")
write("net-timeout", 200, nil, 0x81, false, '{"PKey":"@x"')
write("net-partial", 200, nil, 0x82, false, '{"PKey":')
write("net-too-big", 200, nil, 0x83, true, ("x"):rep(100))
write("net-bad-gzip", 200, nil, 0x84, false, "\31\139junk")
write("net-tls", nil, nil, 0x86, false, "")
write("net-unknown", nil, nil, 0x8f, false, "")
write("count-float", 200, nil, 0, false, '{"count":1e300}')
write("field-missing", 200, nil, 0, false, '{"PKey":"@x","ccpaOptOut":"yes"}')
write("next-relative", 200, nil, 0, false,
  '{"content":[],"next":{"href":"profileAndServices/profile?_lineStart=a"}}')
write("numbers", 200, nil, 0, false, '[9007199254740993,-0.0,1e-320,123456789012345678]')
print("corpus written to " .. OUT)
