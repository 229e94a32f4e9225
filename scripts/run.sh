#!/usr/bin/env bash
# The main job: `kbatch demo`. Installs ONNX Runtime and (if it can) the tansu broker, builds
# kbatch, then serves the bundled model on an embedded broker (tansu when installed, else
# librdkafka's in-process mock cluster) under a synthetic mixed-tier load, printing a live
# summary. Extra arguments go to `kbatch demo` (e.g. `--rate 1000 --duration 60s`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
scripts/install-onnxruntime.sh
scripts/install-tansu.sh || echo "tansu unavailable: the demo falls back to the in-process mock broker" >&2
cargo build --release --quiet
exec ./target/release/kbatch demo "$@"
