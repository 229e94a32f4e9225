#!/usr/bin/env bash
# Benchmarks of issue 3 on this machine: a fresh tansu broker, 4 tiers x 4 partitions, kbatch
# serve in its own process, `kbatch bench` as the load generator. Prints the bench report.
#   scripts/bench.sh drain [N=50000] [serve args...]   backlog produced first, then serve drains it
#   scripts/bench.sh rate  [R=1000]  [serve args...]   R requests/s for DURATION (30s) against a warm server
# Serve args are e.g. `--profile off_hours` or `--set batch_processing.max_batch_size=128`.
# TANSU_BIN (default .kbatch/bin/tansu) and TANSU_STORAGE (default memory://tansu/; e.g.
# sqlite://.kbatch/bench.db for a tansu built with `--features libsql`, path relative to the
# repository; the file is deleted first) pick the broker. SERVER=echo runs
# examples/echo_server.rs (no model, no batching: the broker floor) instead of kbatch serve;
# SERVER=/path/to/kbatch runs that build's `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-drain}; shift || true
arg=${1:-}; shift || true
scripts/install-onnxruntime.sh >/dev/null
scripts/install-tansu.sh >/dev/null
cargo build --release --quiet --bin kbatch --example echo_server
server=(./target/release/kbatch serve)
case ${SERVER:-kbatch} in
  kbatch) ;;
  echo) server=(./target/release/examples/echo_server) ;;
  *) server=("$SERVER" serve) ;;   # another kbatch build, to compare side by side
esac
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
storage=${TANSU_STORAGE:-memory://tansu/}
if [[ $storage == sqlite://* ]]; then rm -f "${storage#sqlite://}"*; fi
${TANSU_BIN:-.kbatch/bin/tansu} broker --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://127.0.0.1:$port \
  --storage-engine "$storage" --cluster-id bench >/tmp/kbatch-bench-tansu.log 2>&1 &
tansu=$!
trap 'kill $tansu ${serve:-} 2>/dev/null || true' EXIT
export KBATCH_KAFKA__BROKERS=127.0.0.1:$port KBATCH_KAFKA__SESSION_TIMEOUT_MS=6000 LOG_LEVEL=${LOG_LEVEL:-warn}
sleep 0.5
./target/release/kbatch create-topics --partitions 4 >/dev/null
out=${BENCH_JSON:-/tmp/kbatch-$mode.json}
case $mode in
  drain)
    ./target/release/kbatch bench --backlog -n "${arg:-50000}" --wait-secs 120 -q --json "$out" &
    bench=$!
    sleep 4   # the backlog is produced in well under a second
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    wait $bench ;;
  rate)
    "${server[@]}" "$@" >/tmp/kbatch-bench-serve.log 2>&1 &
    serve=$!
    ./target/release/kbatch bench --rate "${arg:-1000}" -d "${DURATION:-30s}" --warmup -q --json "$out" ;;
  *) echo "usage: $0 drain|rate [N|R] [serve args...]" >&2; exit 2 ;;
esac
