#!/usr/bin/env bash
# Run every test, the real-model end-to-end test included: starts the local model server
# (installing it on first use), runs `cargo test`, and stops the server again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ci/local-model.sh start
trap 'ci/local-model.sh stop' EXIT
PROMPTGATE_REAL_MODEL_URL=$(ci/local-model.sh url)
export PROMPTGATE_REAL_MODEL_URL
cargo test --locked "$@"
