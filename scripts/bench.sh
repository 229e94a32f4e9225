#!/usr/bin/env bash
# Benchmarks of issue 3 on this machine: a fresh Apache Kafka broker (`kbatch broker`, the
# install of scripts/install-kafka.sh), 4 tiers x 4 partitions, kbatch serve in its own process,
# `kbatch bench` as the load generator. Prints the bench report (a table) and keeps it as JSON in
# BENCH_JSON (default /tmp/kbatch-<mode>.json; `kbatch bench --report`).
#   scripts/bench.sh drain [N=50000] [serve args...]   backlog produced first, then serve drains it
#   scripts/bench.sh burst [N=50000] [serve args...]   serve started and ready first, then a backlog of N
#                                                      produced unpaced (it builds in Kafka within a second)
#   scripts/bench.sh priority [N=50000] [serve args...] serve ready, a backlog of N low requests, then
#                                                      critical requests at CRITICAL_RATE (200/s) for
#                                                      DURATION (4s) from a second load generator;
#                                                      its report goes to BENCH_JSON with -critical
#   scripts/bench.sh rate  [R=1000]  [serve args...]   R requests/s for DURATION (30s) after WARMUP_SECS (5) of load
#   scripts/bench.sh steps [R1,R2,...] [serve args...] a step load (default 1000,2000,...,12000), STEP_SECS
#                                                      (10) each, against a warm server: the saturation
#                                                      rate is the highest whose p99 <= MAX_P99_MS (50)
#   scripts/bench.sh ratio [N=100000] [serve args...]  raw ONNX Runtime (1 and 2 threads), then a drain of N,
#                                                      then the drain's share of the best raw figure
# Serve args are e.g. `--profile off_hours` or `--set batch_processing.max_batch_size=128`.
# BROKER=kafka (default) or BROKER=tansu picks the broker; for tansu, TANSU_BIN (default
# .kbatch/bin/tansu) and TANSU_STORAGE (default memory://tansu/; e.g. sqlite://.kbatch/bench.db
# for a tansu built with `--features libsql`, path relative to the repository; the file is
# deleted first). SERVER=echo runs
# examples/echo_server.rs (no model, no batching: the broker floor) instead of kbatch serve;
# SERVER=/path/to/kbatch runs that build's `serve`. BENCH_ARGS adds load generator flags (e.g.
# `--contract v2`: version-2 requests). Each run ends with the CPU seconds of broker,
# server and load generator and the server's peak RSS; PERF=1 (drain) records the server's stacks.
# Charts (SVG) go to PLOT_DIR (default /tmp): kbatch-<mode>.svg, each run second by second
# (`kbatch bench --plot`); ratio also draws kbatch-batch-sizes.svg (raw items/s per batch size
# with the drain's rate, `kbatch plot batch-sizes`).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-drain}; shift || true
arg=${1:-}; shift || true
plots=${PLOT_DIR:-/tmp}
mkdir -p "$plots"
if [[ $mode == ratio ]]; then
  cargo build --release --quiet --bin kbatch
  raw=()
  for t in 1 2; do
    # --json: the report as JSON on stdout (the per-size progress goes to stderr).
    ./target/release/kbatch bench-model --threads $t --seconds 2 --json "$@" >/tmp/kbatch-raw-$t.json
    raw+=("$(python3 - /tmp/kbatch-raw-$t.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r['best']
print(f"raw ONNX Runtime, {r['intra_op_threads']} thread(s): best batch {b['batch']} at "
      f"{b['items_per_s']:.0f} items/s", file=sys.stderr)
print(b['items_per_s'])
PY
)")
  done
  # The drain's table goes to stdout; only its resource lines are kept, the figures come from
  # its JSON report.
  BENCH_JSON=/tmp/kbatch-ratio.json "$0" drain "${arg:-100000}" "$@" | grep -E 'cpu|RSS'
  python3 - "${raw[@]}" <<'PY'
import json, sys
report = json.load(open('/tmp/kbatch-ratio.json'))
t, b = report['throughput'], report['batch_size']
drain = t['between_replies']
print(f"throughput {drain:.0f}/s over {t['first_to_last_reply_s']:.2f} s (first → last reply)")
if b:
    print(f"batch size mean {b['mean']:.1f}, p50 {b['p50']}, p99 {b['p99']}, max {b['max']}")
one, two = (float(x) for x in sys.argv[1:3])
print(f"drain {drain:.0f} req/s = {drain / one:.2f}x raw ORT 1 thread ({one:.0f}/s), "
      f"{drain / two:.2f}x raw ORT 2 threads ({two:.0f}/s), {drain / 1900:.1f}x the Python design (1,900/s)")
PY
  ./target/release/kbatch plot batch-sizes --raw /tmp/kbatch-raw-1.json --raw /tmp/kbatch-raw-2.json \
    --drain /tmp/kbatch-ratio.json -o "$plots/kbatch-batch-sizes.svg"
  exit 0
fi
broker_kind=${BROKER:-kafka}
scripts/install-onnxruntime.sh >/dev/null
case $broker_kind in
  kafka) scripts/install-kafka.sh >/dev/null ;;
  tansu) scripts/install-tansu.sh >/dev/null ;;
  *) echo "BROKER=$broker_kind: expected kafka or tansu" >&2; exit 2 ;;
esac
cargo build --release --quiet --bin kbatch --example echo_server
server=(./target/release/kbatch serve)
case ${SERVER:-kbatch} in
  kbatch) ;;
  echo) server=(./target/release/examples/echo_server) ;;
  *) server=("$SERVER" serve) ;;   # another kbatch build, to compare side by side
esac
# PERF=1: sample the server's threads (perf report -i /tmp/kbatch-serve.perf); `usage` then
# reports perf's own process, so its CPU figures include the sampling.
if [[ -n ${PERF:-} ]]; then server=(perf record -F 999 -o /tmp/kbatch-serve.perf -- "${server[@]}"); fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# `|| true` throughout: under `set -e` a failing kill or a non-zero wait status (a process
# ended by SIGTERM) would end the trap before the broker is stopped, leaving its JVM running.
stop_all() {
  if [[ -n ${serve:-} ]]; then
    kill "$serve" 2>/dev/null || true
    wait "$serve" 2>/dev/null || true
  fi
  kill "${launcher:-${broker:-}}" 2>/dev/null || true
  wait "${launcher:-${broker:-}}" 2>/dev/null || true
}
if [[ $broker_kind == kafka ]]; then
  ./target/release/kbatch broker --port "$port" >/tmp/kbatch-bench-broker.log 2>&1 &
  launcher=$!
  # The server first (it drains and commits while the broker is still there), then the broker.
  trap 'stop_all' EXIT
  for _ in $(seq 1 600); do
    grep -q 'ready at' /tmp/kbatch-bench-broker.log && break
    kill -0 $launcher 2>/dev/null || { cat /tmp/kbatch-bench-broker.log >&2; exit 1; }
    sleep 0.1
  done
  grep 'ready at' /tmp/kbatch-bench-broker.log >&2
  # The JVM is the launcher's child: its CPU time is the broker's.
  broker=$(pgrep -P $launcher java)
else
  storage=${TANSU_STORAGE:-memory://tansu/}
  if [[ $storage == sqlite://* ]]; then rm -f "${storage#sqlite://}"*; fi
  ${TANSU_BIN:-.kbatch/bin/tansu} broker --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://127.0.0.1:$port \
    --storage-engine "$storage" --cluster-id bench >/tmp/kbatch-bench-tansu.log 2>&1 &
  broker=$!
  trap 'stop_all' EXIT
  # tansu holds a group join for about half the session timeout.
  export KBATCH_KAFKA__SESSION_TIMEOUT_MS=6000
  sleep 0.5
fi
export KBATCH_KAFKA__BROKERS=127.0.0.1:$port LOG_LEVEL=${LOG_LEVEL:-warn}
./target/release/kbatch create-topics --partitions 4 >/dev/null
out=${BENCH_JSON:-/tmp/kbatch-$mode.json}
# CPU seconds (user + system) a process has used so far, and its peak resident memory.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$1/stat"; }
peak_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
usage() {
  [[ -n ${serve:-} && -e /proc/$serve ]] || return 0
  echo "cpu seconds: broker $(cpu_s $broker), server $(cpu_s $serve), load generator $(cat /tmp/kbatch-bench-cpu 2>/dev/null)"
  echo "server peak RSS $(peak_mb $serve) MB"
}
read -ra bench_args <<< "${BENCH_ARGS:-}"
bench=(/usr/bin/time -f '%U+%S' -o /tmp/kbatch-bench-cpu ./target/release/kbatch bench --plot "$plots/kbatch-$mode.svg" "${bench_args[@]}")
# Waits until the server answers /ready (model loaded, group joined, producer up).
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KBATCH_HTTP__PORT=$http_port
wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$http_port/ready" >/dev/null && return 0
    kill -0 "$serve" 2>/dev/null || { cat /tmp/kbatch-bench-serve.log >&2; exit 1; }
    sleep 0.1
  done
  echo "server not ready after 60 s" >&2; exit 1
}
case $mode in
  drain)
    "${bench[@]}" --backlog -n "${arg:-50000}" --wait-secs 120 -q --report "$out" &
    bench=$!
    sleep 4   # the backlog is produced in well under a second
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    wait $bench
    usage ;;
  burst)
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    wait_ready
    "${bench[@]}" --backlog -n "${arg:-50000}" --wait-secs "${WAIT_SECS:-120}" -q --report "$out"
    usage ;;
  priority)
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    wait_ready
    "${bench[@]}" --backlog -n "${arg:-50000}" --tier-mix 0,0,0,1 --wait-secs 120 -q --report "$out" >/tmp/kbatch-bench-low.txt &
    low=$!
    # Critical traffic starts behind the backlog (produced in about half a second). --warmup: its
    # reply reader is assigned and the path answered once before the timed run (else the
    # reader's group join shows up as latency); the timed run then falls inside the drain.
    ./target/release/kbatch bench --rate "${CRITICAL_RATE:-200}" -d "${DURATION:-4s}" --tier-mix 1,0,0,0 \
      --warmup --warmup-secs 1 --plot "$plots/kbatch-$mode-critical.svg" \
      -q --report "${out%.json}-critical.json"
    wait $low
    echo "--- the low backlog"; cat /tmp/kbatch-bench-low.txt
    usage ;;
  rate)
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    "${bench[@]}" --rate "${arg:-1000}" -d "${DURATION:-30s}" --warmup --warmup-secs "${WARMUP_SECS:-5}" -q --report "$out"
    usage ;;
  steps)
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    "${bench[@]}" --steps "${arg:-1000,2000,3000,4000,5000,6000,8000,10000,12000}" \
      --step-secs "${STEP_SECS:-10}" --max-p99-ms "${MAX_P99_MS:-50}" --warmup -q --report "$out"
    usage ;;
  *) echo "usage: $0 drain|burst|priority|rate|steps|ratio [N|R] [serve args...]" >&2; exit 2 ;;
esac
