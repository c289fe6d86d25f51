#!/bin/sh
# make check-asan: runs CMD with the ASan runtime preloaded (lua5.4 is
# not instrumented; the module in build/asan is) and LUA_INIT making every
# lua5.4 process take that module (spec/support/asan_init.lua).
#
#   sh spec/support/asan-run.sh CMD ARGS...
#
# The preload would pass on to every program the specs start.  libcurl's
# command-line tool hangs with it (a futex wait at start), and none of
# those programs is ours, so shims first in PATH start them without it.
set -eu
root=$(pwd)
rt=$(${SAN_CC:-clang} -print-file-name=libclang_rt.asan-x86_64.so)
[ -f "$rt" ] || { echo "asan-run: no ASan runtime ($rt)" >&2; exit 2; }
shims=$root/build/asan/shims
mkdir -p "$shims"
for tool in curl nginx openssl gzip valgrind wrk node npm; do
  real=$(command -v $tool 2>/dev/null || true)
  [ -n "$real" ] || continue
  printf '#!/bin/sh\nunset LD_PRELOAD\nexec %s "$@"\n' "$real" >"$shims/$tool"
  chmod +x "$shims/$tool"
done

PATH="$shims:$PATH" \
LD_PRELOAD="$rt" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
CAMPAIGN_SO="$root/build/asan/campaign.so" \
LUA_INIT="@$root/spec/support/asan_init.lua" \
  exec "$@"
