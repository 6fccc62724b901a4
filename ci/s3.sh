#!/usr/bin/env bash
# An S3-compatible server for the Bedrock batch inference tests: moto's server (PyPI package
# moto, pinned with its dependencies in ci/s3-requirements.txt), in memory, on 127.0.0.1 only.
#
#   ci/s3.sh start   install into a venv if needed, start the server, wait until it answers
#   ci/s3.sh stop    stop the server this script started (and only that process)
#   ci/s3.sh url     print its URL (http://127.0.0.1:PORT)
#
# Settings: PROMPTGATE_S3_PORT (default 8091), PROMPTGATE_S3_VENV (default .promptgate/s3-venv).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.promptgate"
venv="${PROMPTGATE_S3_VENV:-$state/s3-venv}"
port="${PROMPTGATE_S3_PORT:-8091}"
url="http://127.0.0.1:$port"
pidfile="$state/s3-server.pid"
log="$state/s3-server.log"
requirements="$root/ci/s3-requirements.txt"

say() { echo "s3: $*" >&2; }

installed() {
    [ -x "$venv/bin/moto_server" ] && [ -f "$venv/.promptgate-requirements" ] &&
        cmp -s "$venv/.promptgate-requirements" "$requirements"
}

install() {
    installed && return
    python3 -c 'import venv, ensurepip' 2>/dev/null || {
        say "Python's venv module is missing (Debian: apt-get install python3-venv)"
        exit 1
    }
    say "installing moto's S3 server ($(grep -m1 '^moto' "$requirements")) into $venv"
    rm -rf "$venv"
    mkdir -p "$state"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$requirements" >&2
    cp "$requirements" "$venv/.promptgate-requirements"
}

answers() {
    python3 - "$url/" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2).read()
except urllib.error.HTTPError:
    pass
PY
}

server_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    # Only a live process that is our server: a stale pid may belong to anything by now.
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "moto_server" || return 1
    echo "$pid"
}

start() {
    if server_pid >/dev/null && answers; then
        say "already serving at $url"
        return
    fi
    install
    mkdir -p "$state"
    say "starting moto's S3 server on $url"
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 60); do
        if answers; then
            say "ready"
            return
        fi
        if ! server_pid >/dev/null; then
            say "the server exited; the end of its log ($log):"
            tail -n 20 "$log" >&2
            grep -q -i 'address already in use' "$log" && say "port $port is taken; set PROMPTGATE_S3_PORT"
            exit 1
        fi
        sleep 0.5
    done
    say "no answer from $url after 30 s; see $log"
    exit 1
}

stop() {
    local pid
    if pid=$(server_pid); then
        kill "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$url" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
