#!/bin/sh
# The "do not sell" example on nginx + its Lua module, in one command:
#
#   sh examples/openresty/run.sh              start it (and a sandbox, unless
#                                             CAMPAIGN_BASE_URL is set); Ctrl-C stops
#   sh examples/openresty/run.sh start        start it in the background; prints its URL last
#   sh examples/openresty/run.sh reload       nginx -s reload (the queue is kept)
#   sh examples/openresty/run.sh stop         stop it (the journal is kept in PREFIX)
#
# Environment: PREFIX (build/openresty: conf, logs, pid, the journal),
# PORT (a free one), WORKERS (1), RATE (5r/s) and BURST (10) of the forms'
# limit per client address, LOGLEVEL (warn), CAMPAIGN_BASE_URL, CAMPAIGN_ORG,
# CAMPAIGN_API_KEY, CAMPAIGN_ACCESS_TOKEN (or CAMPAIGN_CLIENT_ID and
# CAMPAIGN_CLIENT_SECRET), PRIVACY_SESSION_SECRET (default: made once and
# kept in PREFIX/session.secret), PRIVACY_ORIGIN (the site's origin as
# browsers see it, behind a proxy; default: each request's scheme and
# Host), PRIVACY_RETRY_MIN (5) and
# PRIVACY_RETRY_MAX (300) seconds between retries of undelivered opt-outs,
# PRIVACY_FORM_BUDGET (3) seconds after which the form's own try starts
# no more calls (the rest is left to the retries).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=${PREFIX:-$root/build/openresty}
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
nginx=/usr/sbin/nginx
command -v "$nginx" >/dev/null 2>&1 || nginx=nginx

die() { echo "openresty example: $*" >&2; exit 1; }

random_port() {
  n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
  echo $((20000 + n % 40000))
}

# nginx, its Lua module, LuaJIT's headers, then the LuaJIT build of the
# module (a no-op when it is up to date).
build() {
  sh "$root/tools/deps.sh" luajit >&2 || die "missing packages (see above)"
  make -s -C "$root" LUA=luajit >&2 || die "the LuaJIT build failed"
}

write_conf() {
  port=$1
  user=""
  [ "$(id -u)" = 0 ] && user="user root root;"
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@ROOT@|$root|g" \
      -e "s|@USER@|$user|" -e "s|@WORKERS@|${WORKERS:-1}|" \
      -e "s|@RATE@|${RATE:-5r/s}|" -e "s|@BURST@|${BURST:-10}|g" \
      -e "s|@LOGLEVEL@|${LOGLEVEL:-warn}|" \
      "$here/nginx.conf.in" >"$prefix/nginx.conf"
}

running() {
  [ -f "$prefix/nginx.pid" ] && kill -0 "$(cat "$prefix/nginx.pid")" 2>/dev/null
}

start() {
  build
  running && die "already running in $prefix (stop it first)"
  mkdir -p "$prefix"
  if [ -z "${PRIVACY_SESSION_SECRET:-}" ]; then
    if [ ! -s "$prefix/session.secret" ]; then
      (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$prefix/session.secret")
    fi
    PRIVACY_SESSION_SECRET=$(cat "$prefix/session.secret")
  fi
  export PRIVACY_SESSION_SECRET
  export CAMPAIGN_ORG="${CAMPAIGN_ORG:-acme}"
  tries=0
  while :; do
    port=${PORT:-$(random_port)}
    write_conf "$port"
    if "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        2>"$prefix/start.err"; then
      break
    fi
    if grep -q "Address already in use" "$prefix/start.err" && [ -z "${PORT:-}" ] &&
        [ $tries -lt 30 ]; then
      tries=$((tries + 1))
      continue
    fi
    cat "$prefix/start.err" >&2
    die "nginx did not start"
  done
  i=0
  until curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; do
    i=$((i + 1))
    [ $i -gt 500 ] && die "nginx does not answer on port $port"
    sleep 0.01
  done
  echo "$port" >"$prefix/port"
  echo "http://127.0.0.1:$port"
}

stop() {
  if running; then
    pid=$(cat "$prefix/nginx.pid")
    kill "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ -f "$prefix/nginx.pid" ] && [ $i -lt 500 ]; do
      i=$((i + 1))
      sleep 0.01
    done
  fi
}

reload() {
  running || die "not running in $prefix"
  "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -s reload
}

foreground() {
  sandbox=""
  if [ -z "${CAMPAIGN_BASE_URL:-}" ]; then
    out=$(sh "$root/spec/sandbox/sandbox.sh" start) || die "the sandbox did not start"
    sandbox=$(printf '%s\n' "$out" | tail -n 1)
    export CAMPAIGN_BASE_URL="$sandbox" CAMPAIGN_ORG=acme
    export CAMPAIGN_API_KEY=sandbox-client CAMPAIGN_ACCESS_TOKEN=sandbox-token
  fi
  trap 'stop; [ -n "$sandbox" ] && sh "$root/spec/sandbox/sandbox.sh" stop "$sandbox"; exit 0' \
    INT TERM
  url=$(start) || { [ -n "$sandbox" ] && sh "$root/spec/sandbox/sandbox.sh" stop "$sandbox"; exit 1; }
  cat <<EOF
The example runs at $url (Campaign: $CAMPAIGN_BASE_URL); Ctrl-C stops it.
  $url/privacy              the form (an email; or the signed-in person)
  $url/privacy/queue        the undelivered opt-outs
  $url/healthz              a plain location
Logs and the journal: $prefix
EOF
  while running; do sleep 1; done
}

case "${1:-run}" in
  run) foreground ;;
  start) start ;;
  stop) stop ;;
  reload) reload ;;
  *) echo "usage: sh examples/openresty/run.sh [start|stop|reload]" >&2; exit 2 ;;
esac
