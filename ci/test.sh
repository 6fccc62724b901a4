#!/usr/bin/env bash
# Run every test, the real-model end-to-end test included: starts the local model server and an
# S3-compatible server (installing them on first use), makes sure Debian's Chromium and jq are
# there for the HTML page and workflow checks, runs `cargo test`, and stops both servers again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Chromium for tests/html.rs, jq for the gate workflow's comment step in tests/workflows.rs.
missing=()
if ! command -v chromium >/dev/null && [ -z "${PROMPTGATE_CHROMIUM:-}" ]; then
    missing+=(chromium)
fi
command -v jq >/dev/null || missing+=(jq)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "installing ${missing[*]} (Debian packages) for the tests" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# moto's S3 server for the Bedrock batch inference tests (tests/bedrock_batch.rs).
ci/s3.sh start
trap 'ci/s3.sh stop' EXIT
ci/local-model.sh start
trap 'ci/local-model.sh stop; ci/s3.sh stop' EXIT
PROMPTGATE_REAL_MODEL_URL=$(ci/local-model.sh url)
PROMPTGATE_S3_URL=$(ci/s3.sh url)
export PROMPTGATE_REAL_MODEL_URL PROMPTGATE_S3_URL
# --no-fail-fast: one failing test binary must not hide the others.
cargo test --locked --no-fail-fast "$@"
