#!/usr/bin/env bash
# The main job: run the example suites end to end against the local real model.
# Extra arguments go to `promptgate run` (e.g. --model gpt-4o-mini for a hosted model).
# The answers behind the committed baselines ship as promptgate-cache.jsonl and are imported
# first, so an unchanged suite is answered from the cache in seconds and the model server is
# started only when something is not (a changed prompt or case, another model). `--offline`
# never starts it. To ask the model afresh, delete .promptgate/cache.sqlite and run with
# PROMPTGATE_NO_IMPORT=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { echo "examples: $*" >&2; }
offline=false
for arg in "$@"; do [ "$arg" = "--offline" ] && offline=true; done

# Build first, with cargo's own progress: a cold release build of the dependency tree takes
# 7-15 minutes on 2 cores, and a silent wait that long looks like a hang.
say "building promptgate (release; the first build takes 7-15 minutes, later ones seconds)"
cargo build --release --locked
# Where cargo put it: a CI cache often moves the target folder with CARGO_TARGET_DIR.
binary="${CARGO_TARGET_DIR:-target}/release/promptgate"

if [ -f promptgate-cache.jsonl ] && [ -z "${PROMPTGATE_NO_IMPORT:-}" ]; then
    say "importing the shipped answers (promptgate-cache.jsonl); answers already cached are kept"
    "$binary" cache import --quiet promptgate-cache.jsonl
fi
# Everything answered from the cache: no server to start.
if [ "$offline" = false ] && "$binary" run --offline --quiet "$@" > /dev/null 2>&1; then
    say "the cache answers every request: running offline, no model server needed"
    offline=true
    set -- "$@" --offline
fi

# Both local models (Gemma 3 270M and Qwen2.5-Coder-0.5B), each started only if
# it is not already serving, and stopped again (only those this script started) however the run
# ends.
started=()
stop_started() {
    local model
    for model in ${started[@]+"${started[@]}"}; do ci/local-model.sh stop "$model"; done
}
trap stop_started EXIT
if [ "$offline" = false ]; then
    for model in gemma qwen; do
        if ! python3 - "$(ci/local-model.sh url "$model")/models" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
        then
            started+=("$model")
        fi
        ci/local-model.sh start "$model"
    done
fi
if [ "$offline" = false ]; then
    say "running the example suites (requests not in the cache go to the local models, 2-50 s each on 2 cores; progress shows on a terminal)"
else
    say "running the example suites from the cache"
fi
status=0
"$binary" run "$@" || status=$?
# The two real models side by side on every suite (paired by case), in the terminal and as a
# page with forest plots.
page=.promptgate/compare-local-models.html
say "comparing the two local models on every suite (the page: $page)"
compare=(--model gemma-local --model qwen-local --out "$page")
[ "$offline" = true ] && compare+=(--offline)
"$binary" compare "${compare[@]}" || status=$?
exit "$status"
