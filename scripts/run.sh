#!/usr/bin/env bash
# The main job: `kbatch demo`. Installs ONNX Runtime and Apache Kafka (from Maven Central,
# scripts/install-kafka.sh), builds kbatch, then serves the bundled model on a local Kafka broker
# started as a child process (tansu or librdkafka's in-process mock cluster only when Kafka could
# not be installed) under a synthetic mixed-tier load, printing a live line per second (stderr)
# and a summary table at the end (stdout). Extra arguments go to `kbatch demo` (e.g.
# `--rate 1000 --duration 60s`, `--json` for the summary as JSON, `--report FILE` to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
scripts/install-onnxruntime.sh
scripts/install-kafka.sh >/dev/null \
  || echo "Apache Kafka could not be installed: the demo falls back to the in-process mock broker" >&2
cargo build --release --quiet
exec ./target/release/kbatch demo "$@"
