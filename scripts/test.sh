#!/usr/bin/env bash
# Runs every test, container-backed ones included, after setting up what they need on a fresh
# machine (OpenSSL headers, ONNX Runtime, Apache Kafka from Maven Central, Podman + its
# Docker-API socket, the local Kafka broker image, docker-compose and prometheus).
# Idempotent: a second run skips the set-up that is already done.
#
# `cargo test` (not nextest): each test binary is one process, so the tests of a binary share
# one Kafka broker container (tests/common/broker.rs) instead of starting a JVM per test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
scripts/install-onnxruntime.sh
scripts/setup-testbench.sh
scripts/setup-deploy.sh
# shellcheck disable=SC1091
source .kbatch/testbench.env

# Broker containers a killed earlier run left behind (a test process that dies skips its
# clean-up); named by tests/common/broker.rs.
remove_stale_brokers() {
  local ids
  ids="$(podman ps -aq --filter name=kbatch-broker- 2>/dev/null || true)"
  [[ -z $ids ]] || podman rm -f $ids >/dev/null 2>&1 || true
}
remove_stale_brokers
trap remove_stale_brokers EXIT
cargo test --features container-tests --no-fail-fast "$@"
