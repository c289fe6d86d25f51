#!/bin/sh
# The local Campaign sandbox: nginx + Lua in a private temporary prefix,
# listening on 127.0.0.1 only.
#
#   sh spec/sandbox/sandbox.sh start          prints http://127.0.0.1:PORT last
#   sh spec/sandbox/sandbox.sh stop [BASE_URL] the one started last, or that one
#
# Environment (start): PORT (default: a free one), SEED (default
# spec/sandbox/seed.jsonl), ORG (acme), API_KEY (sandbox-client),
# CLIENT_SECRET (sandbox-secret), TOKEN (sandbox-token, never expires),
# TOKEN_TTL (lifetime of issued tokens in seconds, 86399).
#
# Several sandboxes may run at once; each is registered as
# ${TMPDIR:-/tmp}/campaign-sandbox/<port>, a file holding its prefix.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=${TMPDIR:-/tmp}
registry=$tmp/campaign-sandbox
nginx=${NGINX:-nginx}
[ -x /usr/sbin/nginx ] && [ "$nginx" = nginx ] && nginx=/usr/sbin/nginx

die() { echo "sandbox: $*" >&2; exit 1; }

# Is anything bound to this local port (any state, IPv4 or IPv6)?
port_used() {
  hex=$(printf ':%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    awk -v p="$hex" 'substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}

# A port below the kernel's range for outgoing connections, and free now:
# nginx spends 2.5 s retrying the bind of a taken one.
random_port() {
  while :; do
    n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    port=$((20000 + n % 12000))
    port_used $port || break
  done
  echo $port
}

# Writes the conf for PORT into PREFIX and runs nginx.  Returns 0, or 2
# when the port is taken, or 1 on any other failure (message printed).
try_start() {
  prefix=$1 port=$2
  user=""
  [ "$(id -u)" = 0 ] && user="user root root;"
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" \
      -e "s|@LUA@|$here/lua|g" -e "s|@USER@|$user|" \
      "$here/nginx.conf.in" >"$prefix/nginx.conf"
  # a fresh log for this attempt: wait_ready reads it for failures
  rm -f "$prefix/ready" "$prefix/error.log"
  SANDBOX_BASE_URL="http://127.0.0.1:$port" \
    "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
    2>"$prefix/start.err" && return 0
  grep -q "Address already in use" "$prefix/start.err" && return 2
  cat "$prefix/start.err" >&2
  return 1
}

# Waits for the worker's "ready" file (the seed is loaded then).
wait_ready() {
  prefix=$1
  i=0
  while [ ! -s "$prefix/ready" ]; do
    i=$((i + 1))
    [ $i -gt 6000 ] && return 1   # 60 s: a seed of millions of rows
    # a worker that failed before it could say so
    grep -q "init_worker_by_lua\|\[emerg\]" "$prefix/error.log" 2>/dev/null && return 1
    sleep 0.01
  done
  case $(cat "$prefix/ready") in
    ok*) return 0 ;;
    *) return 1 ;;
  esac
}

# nginx, its Lua module and lua-cjson, installed when missing by the
# project's installer (which keeps Debian's nginx service from starting).
need_nginx() {
  if [ -x "$nginx" ] || command -v "$nginx" >/dev/null 2>&1; then
    [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] && return 0
  fi
  deps=$here/../../tools/deps.sh
  [ -f "$deps" ] && sh "$deps" sandbox >&2 && [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] &&
    return 0
  die "nginx and its Lua module are missing (Debian: nginx libnginx-mod-http-lua lua-cjson)"
}

# A PORT given must be one nginx can listen on: say which setting is
# wrong before nginx complains about its own configuration file.
check_port() {
  case $1 in
    '' | *[!0-9]*) ;;
    *) [ ${#1} -le 5 ] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] && return 0 ;;
  esac
  die "PORT must be a number from 1 to 65535, not '$1'"
}

start() {
  [ -z "${PORT:-}" ] || check_port "$PORT"
  need_nginx
  [ -x /usr/sbin/nginx ] && [ "$nginx" = nginx ] && nginx=/usr/sbin/nginx
  seed=${SEED:-$here/seed.jsonl}
  case $seed in /*) ;; *) seed=$(pwd)/$seed ;; esac
  [ -r "$seed" ] || die "cannot read seed $seed"
  export SANDBOX_ORG="${ORG:-acme}" SANDBOX_API_KEY="${API_KEY:-sandbox-client}"
  export SANDBOX_CLIENT_SECRET="${CLIENT_SECRET:-sandbox-secret}"
  export SANDBOX_TOKEN="${TOKEN:-sandbox-token}" SANDBOX_TOKEN_TTL="${TOKEN_TTL:-86399}"
  export SANDBOX_SEED="$seed"

  prefix=$(mktemp -d "$tmp/campaign-sandbox.XXXXXX")
  chmod 755 "$prefix"
  tries=0
  while :; do
    port=${PORT:-$(random_port)}
    rc=0
    try_start "$prefix" "$port" || rc=$?
    [ $rc = 0 ] && break
    if [ $rc = 2 ] && [ -z "${PORT:-}" ] && [ $tries -lt 30 ]; then
      tries=$((tries + 1))
      continue
    fi
    rm -rf "$prefix"
    [ $rc = 2 ] && die "port $port on 127.0.0.1 is already in use (choose another with PORT=)"
    die "nginx did not start"
  done
  if ! wait_ready "$prefix"; then
    cat "$prefix/ready" "$prefix/error.log" >&2 2>/dev/null || true
    kill "$(cat "$prefix/nginx.pid")" 2>/dev/null || true
    rm -rf "$prefix"
    die "the sandbox did not become ready"
  fi
  mkdir -p "$registry"
  echo "$prefix" >"$registry/$port"
  echo "sandbox: serving $(sed 's/^ok //' "$prefix/ready") profiles from $seed" >&2
  echo "http://127.0.0.1:$port"
}

stop() {
  if [ $# -gt 0 ] && [ -n "$1" ]; then
    port=${1##*:}
    port=${port%%/*}
  else
    # shellcheck disable=SC2012
    port=$(ls -t "$registry" 2>/dev/null | head -n 1)
    [ -n "$port" ] || die "no sandbox is running"
  fi
  [ -f "$registry/$port" ] || die "no sandbox registered on port $port"
  prefix=$(cat "$registry/$port")
  if [ -f "$prefix/nginx.pid" ]; then
    pid=$(cat "$prefix/nginx.pid")
    if kill "$pid" 2>/dev/null; then
      # nginx removes its pid file as it exits; the process itself may
      # linger as a zombie until whoever adopted it reaps it.
      i=0
      while [ -f "$prefix/nginx.pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
        i=$((i + 1))
        sleep 0.01
      done
    fi
  fi
  case $prefix in "$tmp"/campaign-sandbox.*) rm -rf "$prefix" ;; esac
  rm -f "$registry/$port"
  echo "sandbox: stopped http://127.0.0.1:$port" >&2
}

case "${1:-}" in
  start) start ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: sh spec/sandbox/sandbox.sh start|stop [BASE_URL]" >&2; exit 2 ;;
esac
