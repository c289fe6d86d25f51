#!/bin/sh
# Runs Adobe's Node SDK (@adobe/aio-lib-campaign-standard 4.x) against a
# sandbox: get, create, update, list (spec/sdk/check.js).
#
#   sh spec/sdk/check.sh        (make sdk-check)
#
# The SDK is installed with npm into build/sdk (SDK_DIR), outside git.
# Without network, the check says "skipped: npm unreachable" and exits 0.
# Uses the sandbox named by CAMPAIGN_BASE_URL, or starts one of its own.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SDK_DIR=${SDK_DIR:-$root/build/sdk}
export SDK_DIR

say() { echo "sdk-check: $*"; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing nodejs and npm (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      nodejs npm >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          nodejs npm >/dev/null 2>&1; } ||
      { say "skipped: nodejs/npm could not be installed"; exit 0; }
  else
    say "skipped: node and npm are not installed (Debian: apt-get install nodejs npm)"
    exit 0
  fi
fi

lib=$SDK_DIR/node_modules/@adobe/aio-lib-campaign-standard
if [ ! -f "$lib/spec/api.json" ]; then
  mkdir -p "$SDK_DIR"
  [ -f "$SDK_DIR/package.json" ] ||
    echo '{"name":"campaign-sdk-check","private":true}' >"$SDK_DIR/package.json"
  say "installing @adobe/aio-lib-campaign-standard@4 into $SDK_DIR"
  log=$SDK_DIR/npm-install.log
  if ! (cd "$SDK_DIR" && npm install --no-audit --no-fund --loglevel=error \
      --fetch-retries=1 --fetch-timeout=30000 \
      @adobe/aio-lib-campaign-standard@4) >"$log" 2>&1; then
    if grep -Eq 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network' "$log"
    then
      say "skipped: npm unreachable (see $log)"
      exit 0
    fi
    # a network that intercepts TLS with a CA this machine does not trust:
    # the registry is out of reach all the same
    if grep -Eq 'SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT' "$log"; then
      say "skipped: npm unreachable, its TLS certificate is not trusted here" \
        "(see $log)"
      exit 0
    fi
    cat "$log" >&2
    say "npm install failed"
    exit 1
  fi
fi

if [ -n "${CAMPAIGN_BASE_URL:-}" ]; then
  exec node "$here/check.js"
fi
exec sh "$root/spec/sandbox/with-sandbox.sh" node "$here/check.js"
