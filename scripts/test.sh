#!/usr/bin/env bash
# Runs every test, container-backed ones included, after setting up what they need on a fresh
# machine (ONNX Runtime library, Podman + its Docker-API socket, the local broker image).
# Idempotent: a second run skips the set-up that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
scripts/install-onnxruntime.sh
scripts/setup-testbench.sh
scripts/setup-deploy.sh
# shellcheck disable=SC1091
source .kbatch/testbench.env

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --features container-tests --no-fail-fast "$@"
cargo test --doc --features container-tests
