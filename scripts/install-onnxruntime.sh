#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that kbatch loads at run time (the `ort` crate is built
# with `load-dynamic`, so nothing is linked at build time).
#
# Invariant: after a successful run, vendor/onnxruntime/libonnxruntime.so.$ORT_VERSION exists and
# vendor/onnxruntime/libonnxruntime.so points at it; a second run changes nothing.
#
# The library comes out of the official PyPI wheel because PyPI is reachable where GitHub release
# downloads are not; the wheel's capi/ directory ships the same libonnxruntime.so as the C release.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${REPO_ROOT}/vendor/onnxruntime"
LIB="${DEST}/libonnxruntime.so.${ORT_VERSION}"
PYTHON="${PYTHON:-python3}"

if [[ -f "${LIB}" ]]; then
    # The symlink is cheap to repair and a half-finished earlier run may have left it missing.
    ln -sfn "libonnxruntime.so.${ORT_VERSION}" "${DEST}/libonnxruntime.so"
    echo "${LIB}"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

"${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: \
    "onnxruntime==${ORT_VERSION}" -d "${TMP}" >&2
WHEEL="$(ls "${TMP}"/onnxruntime-"${ORT_VERSION}"-*.whl | head -n 1)"

# Extract via python's zipfile so the script does not depend on `unzip` being installed.
"${PYTHON}" - "${WHEEL}" "${TMP}/lib" <<'PY'
import pathlib
import sys
import zipfile

wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist()
             if n.startswith("onnxruntime/capi/libonnxruntime.so.")]
    if not names:
        sys.exit(f"no onnxruntime/capi/libonnxruntime.so.* in {wheel}")
    for name in names:
        (out / pathlib.Path(name).name).write_bytes(zf.read(name))
PY

mkdir -p "${DEST}"
# Copy to a temporary name then rename, so an interrupted copy never looks like a finished install.
cp "${TMP}/lib/libonnxruntime.so.${ORT_VERSION}" "${LIB}.partial"
chmod 0755 "${LIB}.partial"
mv -f "${LIB}.partial" "${LIB}"
ln -sfn "libonnxruntime.so.${ORT_VERSION}" "${DEST}/libonnxruntime.so"

echo "${LIB}"
