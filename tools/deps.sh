#!/bin/sh
# Installs the Debian packages a target needs, only those missing.
#
#   sh tools/deps.sh build|test|demo|bench|memory|fuzz
#
# Debian's nginx package starts the system's web server on port 80 of
# every interface as soon as it is installed.  The sandbox never wants
# that, so while apt runs, a policy-rc.d refuses every service start;
# it is removed again afterwards unless it was there before.
set -eu

build="make gcc libc6-dev pkg-config lua5.4 liblua5.4-dev
  libcurl4-openssl-dev lua-cjson"
sandbox="nginx libnginx-mod-http-lua lua-cjson"
# the OpenResty spec builds the module for LuaJIT and drives nginx with
# the curl command; the ABI spec runs the 5.3 and LuaJIT builds; the
# token spec runs a client on a fast clock (libfaketime)
test="$build $sandbox lua-busted lua-socket lua-argparse lua-term lua-check
  curl libluajit2-5.1-dev luajit2 lua5.3 liblua5.3-dev faketime"

case "${1:-build}" in
  build) want=$build ;;
  sandbox) want=$sandbox ;;
  test|demo) want=$test ;;
  memory) want="$test valgrind" ;;
  fuzz|asan) want="$test clang libclang-rt-14-dev" ;;
  bench)
    want="$test wrk curl lua-socket time"
    # a Node.js from elsewhere (with its own npm) stays: apt's npm would
    # conflict with it
    command -v node >/dev/null 2>&1 || want="$want nodejs"
    command -v npm >/dev/null 2>&1 || want="$want npm"
    ;;
  luajit) want="$test" ;;
  *) echo "deps.sh: unknown set '$1'" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  s=$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$s" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages:$missing" >&2
  echo "install them as root: apt-get install$missing" >&2
  exit 1
fi

echo "installing:$missing"
case " $missing " in
  *" nginx "*) echo "(nginx: service starts refused during the install;" \
    "the sandbox runs its own nginx on 127.0.0.1 only)" ;;
esac

rc=/usr/sbin/policy-rc.d
ours=0
cleanup() { [ $ours = 1 ] && rm -f $rc; ours=0; }
# dash runs no EXIT trap when a signal ends it: catch those too, so an
# interrupted install never leaves every later service start refused
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM HUP
if [ ! -e $rc ]; then
  printf '#!/bin/sh\nexit 101\n' >$rc
  chmod +x $rc
  ours=1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null

# nor should the system's nginx start at the next boot
case " $missing " in
  *" nginx "*)
    { systemctl disable nginx || update-rc.d nginx disable; } >/dev/null 2>&1 \
      || true
    echo "(the system's nginx service is disabled: it would serve port 80)" ;;
esac
