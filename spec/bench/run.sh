#!/bin/sh
# `make bench`: the module side by side with what users would use instead,
# against one local sandbox, in one run; prints one table of ratios.
#
#   sh spec/bench/run.sh              the full run (about 5 to 10 minutes)
#   BENCH_QUICK=1 sh spec/bench/run.sh   fewer rounds and calls (about 2)
#
# Everything it makes goes under build/bench (BENCH_DIR): the C floor
# (spec/bench/floor.c), Adobe's Node SDK installed by npm into
# build/bench/node (skipped, with a message, when npm cannot install it),
# a seed of 100,000 full-field profiles (spec/sandbox/gen-seed.lua), its
# PKeys, and the opt-out job's request file.  The conductor is
# spec/bench/bench.lua; the table goes to stdout, progress to stderr.
# Network: 127.0.0.1 only (and npm's registry for the SDK's install).
set -eu
cd "$(dirname "$0")/../.."
root=$(pwd)
lua=${LUA:-lua5.4}
dir=${BENCH_DIR:-build/bench}
seed_n=${BENCH_SEED_N:-100000}
mkdir -p "$dir"

say() { echo "bench: $*" >&2; }

# The module (make bench has built it; a direct run may not have).
[ -f "build/$lua/campaign.so" ] || make --no-print-directory all >&2

# The floor: libcurl only.
# shellcheck disable=SC2046
${CC:-cc} -O2 -Wall -Wextra -o "$dir/floor" spec/bench/floor.c \
  $(pkg-config --cflags --libs libcurl 2>/dev/null || echo -lcurl)

# Adobe's Node SDK, into build/bench/node (outside git).
node_ok=1 node_why=""
sdk=$dir/node/node_modules/@adobe/aio-lib-campaign-standard
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  node_ok=0 node_why="node/npm not installed"
elif [ ! -f "$sdk/spec/api.json" ]; then
  mkdir -p "$dir/node"
  [ -f "$dir/node/package.json" ] ||
    echo '{"name":"campaign-bench-node","private":true}' >"$dir/node/package.json"
  say "installing @adobe/aio-lib-campaign-standard@4 into $dir/node"
  if ! (cd "$dir/node" && npm install --no-audit --no-fund --loglevel=error \
      --fetch-retries=1 --fetch-timeout=30000 \
      @adobe/aio-lib-campaign-standard@4) >"$dir/node/npm-install.log" 2>&1 ||
     [ ! -f "$sdk/spec/api.json" ]; then
    node_ok=0 node_why="npm install failed (see $dir/node/npm-install.log)"
  fi
fi
[ $node_ok = 1 ] || say "Node SDK skipped: $node_why"

# A large seed, its PKeys, and the opt-out job's requests (every email
# of the seed, in seed order; about one in five is already opted out).
seed=$dir/seed-$seed_n.jsonl
if [ ! -s "$seed" ]; then
  say "generating $seed"
  "$lua" spec/sandbox/gen-seed.lua "$seed_n" >"$seed.tmp" && mv "$seed.tmp" "$seed"
fi
if [ ! -s "$dir/pkeys.txt" ] || [ "$seed" -nt "$dir/pkeys.txt" ]; then
  "$lua" - "$seed" "$dir" <<'LUA'
local cjson = require "cjson"
local seed, dir = arg[1], arg[2]
local keys = assert(io.open(dir .. "/pkeys.txt.tmp", "w"))
local emails = {}
for line in io.lines(seed) do
  local p = cjson.decode(line)
  keys:write(p.PKey, "\n")
  emails[#emails + 1] = p.email
end
keys:close()
assert(os.rename(dir .. "/pkeys.txt.tmp", dir .. "/pkeys.txt"))
for _, n in ipairs{ 10000, 100000 } do
  local f = assert(io.open(("%s/requests-%d.csv"):format(dir, n), "w"))
  f:write("email,optout\n")
  for i = 1, n do f:write(emails[(i - 1) % #emails + 1], ",true\n") end
  f:close()
end
LUA
fi

export BENCH_DIR="$dir" BENCH_SEED_N="$seed_n" BENCH_NODE="$node_ok"
export BENCH_NODE_WHY="$node_why" SDK_DIR="$root/$dir/node"
export LUA_CPATH="build/$lua/?.so;;"
SEED="$root/$seed" exec sh spec/sandbox/with-sandbox.sh "$lua" spec/bench/bench.lua
