#!/usr/bin/env bash
# The main job: run the example suites end to end against the local real model.
# Extra arguments go to `promptgate run` (e.g. --model gpt-4o-mini for a hosted model).
# A second run is served from .promptgate/cache.sqlite; with a warm cache, `--offline` needs no
# server at all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
offline=false
for arg in "$@"; do [ "$arg" = "--offline" ] && offline=true; done
if [ "$offline" = false ]; then
    ci/local-model.sh start
fi
cargo run --release --locked --quiet -- run "$@"
