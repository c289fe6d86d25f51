#!/bin/sh
# Runs a command against a fresh sandbox on a free port:
#
#   sh spec/sandbox/with-sandbox.sh CMD ARGS...
#
# exports CAMPAIGN_BASE_URL, CAMPAIGN_ORG, CAMPAIGN_API_KEY,
# CAMPAIGN_ACCESS_TOKEN and CAMPAIGN_CLIENT_SECRET, always stops the
# sandbox, and exits with the command's status.  Honours sandbox.sh's
# environment (PORT, SEED, ORG, API_KEY, CLIENT_SECRET, TOKEN, TOKEN_TTL).
set -u
here=$(cd "$(dirname "$0")" && pwd)

out=$(sh "$here/sandbox.sh" start) || exit 1
url=$(printf '%s\n' "$out" | tail -n 1)
trap 'sh "$here/sandbox.sh" stop "$url" 2>/dev/null' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export CAMPAIGN_BASE_URL="$url"
export CAMPAIGN_ORG="${ORG:-acme}"
export CAMPAIGN_API_KEY="${API_KEY:-sandbox-client}"
export CAMPAIGN_ACCESS_TOKEN="${TOKEN:-sandbox-token}"
export CAMPAIGN_CLIENT_SECRET="${CLIENT_SECRET:-sandbox-secret}"

"$@"
status=$?
exit $status
