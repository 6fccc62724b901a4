#!/usr/bin/env bash
# Run every test, the real-model end-to-end test included: starts the local model server
# (installing it on first use), makes sure Debian's Chromium is there for the HTML page check,
# runs `cargo test`, and stops the server again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v chromium >/dev/null && [ -z "${PROMPTGATE_CHROMIUM:-}" ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "installing chromium (Debian package) for tests/html.rs" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
ci/local-model.sh start
trap 'ci/local-model.sh stop' EXIT
PROMPTGATE_REAL_MODEL_URL=$(ci/local-model.sh url)
export PROMPTGATE_REAL_MODEL_URL
# --no-fail-fast: one failing test binary must not hide the others.
cargo test --locked --no-fail-fast "$@"
