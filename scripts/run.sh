#!/usr/bin/env bash
# The main job. Until the serving pipeline lands this installs ONNX Runtime and measures the
# bundled model's throughput per batch size through kbatch's inference backend.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-onnxruntime.sh
cargo bench --bench inference "$@"
