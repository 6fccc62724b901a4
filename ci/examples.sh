#!/usr/bin/env bash
# The main job: run the example suites end to end against the local real model.
# Extra arguments go to `promptgate run` (e.g. --model gpt-4o-mini for a hosted model).
# A second run is served from .promptgate/cache.sqlite; with a warm cache, `--offline` needs no
# server at all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { echo "examples: $*" >&2; }
offline=false
for arg in "$@"; do [ "$arg" = "--offline" ] && offline=true; done

# Build first, with cargo's own progress: a cold release build of the dependency tree takes
# 7-15 minutes on 2 cores, and a silent wait that long looks like a hang.
say "building promptgate (release; the first build takes 7-15 minutes, later ones seconds)"
cargo build --release --locked
binary=target/release/promptgate

started=false
if [ "$offline" = false ]; then
    if ! python3 - "$(ci/local-model.sh url)/models" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
    then
        started=true
    fi
    ci/local-model.sh start
fi
# Stop the server this script started (and only that one) however the run ends.
if [ "$started" = true ]; then
    trap 'ci/local-model.sh stop' EXIT
fi
say "running the example suites (a first run makes about 500 calls to the local model, 176 of them the triage suite's robustness variants; progress shows on a terminal)"
"$binary" run "$@"
