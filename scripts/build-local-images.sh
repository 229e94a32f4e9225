#!/usr/bin/env bash
# Builds the compose stack's images on a machine without a registry (nothing to pull):
#   localhost/kbatch:local      deploy/image/Containerfile.local, FROM scratch: the kbatch binary
#                               given as $1 (default target/release/kbatch), ONNX Runtime, the shared
#                               libraries both load, models/ and config/
#   localhost/kbatch-prometheus:local  deploy/image/Containerfile.prometheus: Debian's prometheus
#                               binary with deploy/compose/prometheus.yml and the alert rules
# The broker image (localhost/kbatch-tansu:latest) comes from scripts/setup-testbench.sh.
# Needs podman (setup-testbench.sh) and /usr/bin/prometheus (scripts/setup-deploy.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$(realpath "${1:-$REPO/target/release/kbatch}")"
STAGE="${KBATCH_DIR:-$REPO/.kbatch}/images"
ORT="$("$REPO/scripts/install-onnxruntime.sh")"
[[ -x $BIN ]] || { echo "no kbatch binary at $BIN (cargo build --release first)" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "prometheus missing: run scripts/setup-deploy.sh" >&2; exit 1; }

# Copies the shared libraries $@ load (and the dynamic loader) into $root, at their own paths.
copy_libs() {
  local root=$1; shift
  ldd "$@" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

rm -rf "$STAGE" && mkdir -p "$STAGE/kbatch/rootfs/opt/kbatch/bin" "$STAGE/kbatch/rootfs/opt/kbatch/models" \
  "$STAGE/prometheus/rootfs/bin" "$STAGE/prometheus/rootfs/etc/prometheus" "$STAGE/prometheus/rootfs/tmp"
k="$STAGE/kbatch/rootfs"
# Debug info is most of a build's size and nothing a container needs.
objcopy --strip-debug "$BIN" "$k/opt/kbatch/bin/kbatch"
cp -L "$ORT" "$k/opt/kbatch/bin/"
# The bundled registry: <model>/<version>/model.onnx and the model.yaml files.
cp -r "$REPO"/models/cnn_lstm "$REPO"/models/risk_mlp "$REPO"/models/txn_scorer "$k/opt/kbatch/models/"
# Optimized-graph caches of local runs are this machine's (its CPU): the image builds its own.
find "$k/opt/kbatch/models" -name .optimized -type d -prune -exec rm -rf {} +
cp -r "$REPO/config" "$k/opt/kbatch/config"
copy_libs "$k" "$BIN" "$ORT"
cp "$REPO/deploy/image/Containerfile.local" "$STAGE/kbatch/Containerfile"
podman build -q --format docker -t localhost/kbatch:local "$STAGE/kbatch" >/dev/null

p="$STAGE/prometheus/rootfs"
cp /usr/bin/prometheus "$p/bin/"
chmod 1777 "$p/tmp"
cp "$REPO/deploy/compose/prometheus.yml" "$REPO/deploy/prometheus/kbatch-alerts.yml" "$p/etc/prometheus/"
copy_libs "$p" /usr/bin/prometheus
cp "$REPO/deploy/image/Containerfile.prometheus" "$STAGE/prometheus/Containerfile"
podman build -q --format docker -t localhost/kbatch-prometheus:local "$STAGE/prometheus" >/dev/null
echo "built localhost/kbatch:local and localhost/kbatch-prometheus:local"
