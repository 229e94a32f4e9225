#!/usr/bin/env bash
# Regenerates the bundled registry (models/cnn_lstm/{1,2}, models/risk_mlp/1, models/txn_scorer/1)
# and the reference outputs models/cnn_lstm.reference.json and models/txn_scorer.reference.json.
#
# Invariant: the Python tool chain lives only in .kbatch/venv (git-ignored) with pinned
# onnxruntime, so reruns reuse it and the reference outputs come from the same ONNX Runtime
# version the Rust service loads (scripts/install-onnxruntime.sh).
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.kbatch/venv"
PY="${VENV}/bin/python"

if [[ ! -x "${PY}" ]]; then
    python3 -m venv "${VENV}"
fi

# Checking imports first keeps reruns offline and fast once the venv is populated.
if ! "${PY}" - "${ORT_VERSION}" <<'PY' 2>/dev/null
import sys
import numpy, onnx, onnxruntime
sys.exit(0 if onnxruntime.__version__ == sys.argv[1] else 1)
PY
then
    "${PY}" -m pip install --quiet --disable-pip-version-check onnx numpy "onnxruntime==${ORT_VERSION}"
fi

"${PY}" "${REPO_ROOT}/models/gen_cnn_lstm.py" "$@"
"${PY}" "${REPO_ROOT}/models/gen_risk_mlp.py"
"${PY}" "${REPO_ROOT}/models/gen_txn_scorer.py"
