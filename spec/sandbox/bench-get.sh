#!/bin/sh
# How many GETs of one full-field profile a second the sandbox answers,
# measured with wrk (1 thread, 16 connections, keep-alive):
#
#   sh spec/sandbox/bench-get.sh [SECONDS]
#
# The sandbox should stay well above what any client here can ask of it
# (the target is 30,000 a second), so that benchmarks measure the client.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-5}
command -v wrk >/dev/null 2>&1 || { echo "bench-get: wrk is not installed" >&2; exit 1; }

url=$(sh "$here/sandbox.sh" start 2>/dev/null | tail -n 1)
trap 'sh "$here/sandbox.sh" stop "$url" 2>/dev/null' EXIT

# The first profile of the seed, its PKey percent-encoded for the path.
pkey=$(head -n 1 "$here/seed.jsonl" | sed 's/.*"PKey":"\([^"]*\)".*/\1/' |
  sed 's|/|%2F|g; s|+|%2B|g; s|=|%3D|g')
wrk -t1 -c16 -d"${secs}s" -H "X-Api-Key: ${API_KEY:-sandbox-client}" \
  -H "Authorization: Bearer ${TOKEN:-sandbox-token}" \
  "$url/${ORG:-acme}/campaign/profileAndServices/profile/$pkey"
