#!/usr/bin/env bash
# Build dependencies kbatch needs from Debian: OpenSSL headers and pkg-config, for librdkafka's
# TLS and SASL (SCRAM, OAUTHBEARER) support (rdkafka's `ssl` feature). Idempotent: installs only
# what is missing.
set -euo pipefail

need=()
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
((${#need[@]})) || exit 0

SUDO=()
((EUID == 0)) || SUDO=(sudo)
echo "==> installing ${need[*]} (apt)" >&2
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; then
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
