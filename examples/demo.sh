#!/bin/sh
# `make demo`: the opt-out job on a local sandbox, start to finish.
#
# Starts a sandbox seeded with spec/sandbox/seed.jsonl (1,000 made-up
# profiles), runs examples/ccpa_optout.lua on examples/demo-requests.csv
# (a few hundred requests of every kind: by email and by PKey, unknown
# people, duplicates, a shared email, opt-ins, malformed rows), prints the
# summary and where the report is, and stops the sandbox.  The module must
# be built (make does it first).  Exits with the job's status.
set -eu

cd "$(dirname "$0")/.."
lua=${LUA:-lua5.4}
so=build/$lua/campaign.so
[ -f "$so" ] || { echo "demo: $so is missing; run make first" >&2; exit 2; }

url=$(SEED="$(pwd)/spec/sandbox/seed.jsonl" sh spec/sandbox/sandbox.sh start |
  tail -n 1)
case $url in
  http://127.0.0.1:*) ;;
  *) echo "demo: the sandbox did not start" >&2; exit 2 ;;
esac
trap 'sh spec/sandbox/sandbox.sh stop "$url" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The sandbox's own settings; a real run takes them from the environment
# or a --secrets-file, never from flags.
export CAMPAIGN_BASE_URL="$url" CAMPAIGN_ORG=acme
export CAMPAIGN_API_KEY=sandbox-client CAMPAIGN_ACCESS_TOKEN=sandbox-token
export LUA_CPATH="build/$lua/?.so;;"

mkdir -p reports
report=reports/demo-optout-$(date -u +%Y%m%dT%H%M%SZ).csv
echo "sandbox at $url, seeded with spec/sandbox/seed.jsonl"
echo "running: $lua examples/ccpa_optout.lua --report $report" \
  "examples/demo-requests.csv"
echo
status=0
"$lua" examples/ccpa_optout.lua --report "$report" \
  examples/demo-requests.csv || status=$?
echo
echo "Every input record has its rows in the report; --resume $report"
echo "would redo only what did not succeed."
exit $status
