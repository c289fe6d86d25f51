#!/bin/sh
# The curl command line, one process per request, with the headers of
# Adobe's examples: what a shell script around the API does.
#
#   sh spec/bench/curl_peer.sh get N KEYS     N times: curl GET of the first PKey
#   sh spec/bench/curl_peer.sh command KEYS   prints the exact curl command run
#
# Server and credentials from the CAMPAIGN_* environment.  Prints
# "N SECONDS" for the timed loop (after one untimed call).
set -eu
mode=$1
if [ "$mode" = command ]; then keys=$2; else n=$2 keys=$3; fi

# The PKey holds "/", "+" and "=": percent-encoded once, before timing.
enc=$(head -n 1 "$keys" | lua5.4 -e '
  io.write((io.read("l"):gsub("[^%w%-%._~]", function(c)
    return ("%%%02X"):format(c:byte()) end)))')
url="$CAMPAIGN_BASE_URL/${CAMPAIGN_ORG:-acme}/campaign/profileAndServices/profile/$enc"
token=${CAMPAIGN_ACCESS_TOKEN:-sandbox-token}
key=${CAMPAIGN_API_KEY:-sandbox-client}

if [ "$mode" = command ]; then
  printf "curl -sS -f -o /dev/null -X GET '%s' -H 'Authorization: Bearer %s' -H 'X-Api-Key: %s'" \
    "$url" "$token" "$key"
  printf " -H 'Content-Type: application/json;charset=utf-8' -H 'Cache-Control: no-cache'\n"
  exit 0
fi

one() {
  curl -sS -f -o /dev/null -X GET "$url" \
    -H "Authorization: Bearer $token" \
    -H "X-Api-Key: $key" \
    -H "Content-Type: application/json;charset=utf-8" \
    -H "Cache-Control: no-cache"
}

one
t0=$(date +%s.%N)
i=0
while [ "$i" -lt "$n" ]; do
  one
  i=$((i + 1))
done
t1=$(date +%s.%N)
awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d %.6f\n", n, b - a }'
