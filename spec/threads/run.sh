#!/bin/sh
# make check-threads: the threads program (spec/threads/threads.c) against
# the sandbox, under helgrind with the plain build, then under
# ThreadSanitizer with build/tsan.  Fails when a thread fails, or on any
# report pointing into the module's own code.
set -u
out=build/threads
n=${THREADS:-4}

valgrind --tool=helgrind --log-file=$out/helgrind.log $out/threads "$n" || {
  echo "check-threads: the threads program failed under helgrind" >&2
  exit 1
}
lua5.4 spec/threads/scan.lua $out/helgrind.log || exit 1

CAMPAIGN_CPATH='build/tsan/?.so;' TSAN_OPTIONS="halt_on_error=0 exitcode=66" \
  $out/threads-tsan "$n" >$out/tsan.log 2>&1
rc=$?
cat $out/tsan.log
if [ $rc -ne 0 ]; then
  # a report only in third-party code is no finding of ours
  if grep -q "WARNING: ThreadSanitizer" $out/tsan.log &&
     ! grep -A30 "WARNING: ThreadSanitizer" $out/tsan.log |
       grep -Eq 'src/(campaign|calls|http|reply|token|bulk)\.c:[0-9]+'; then
    echo "check-threads: TSan reports only outside the module"
  else
    echo "check-threads: ThreadSanitizer failed (exit $rc)" >&2
    exit 1
  fi
fi
echo "check-threads: clean"
