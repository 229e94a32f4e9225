#!/usr/bin/env bash
# Installs what the compose-stack test needs besides the test bench (scripts/setup-testbench.sh),
# from Debian: prometheus (its binary goes into the local Prometheus image; the service it ships
# is not started) and docker-compose 1.29, which drives Podman through its Docker API socket.
# (podman-compose 1.6 on Podman 4.3 cannot start services that wait for a finished one-shot
# container; Debian's podman-compose 1.0.3 ignores compose profiles.) Idempotent.
set -euo pipefail
SUDO=()
((EUID == 0)) || SUDO=(sudo)
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
if ((${#need[@]})); then
  echo "==> installing ${need[*]} (apt)" >&2
  install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
  # Stale package lists can 404 a dependency: refresh once and retry.
  install || { "${SUDO[@]}" apt-get update -q >/dev/null && install; }
fi
# A package install may start the service where systemd runs; it would hold port 9090.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v prometheus docker-compose >/dev/null
