#!/usr/bin/env bash
# Peak resident memory of `kbatch serve` while requesters name N distinct reply topics (none of
# which exists): the cost `replies.max_reply_topics` bounds. Starts a fresh Apache Kafka broker,
# the server, then `examples/reply_topic_flood.rs`, and waits until every request has an outcome.
#   scripts/reply-topic-rss.sh [N=100000] [serve args...]     e.g. --set replies.max_reply_topics=1000000
# SERVER=/path/to/kbatch runs that build's `serve` (another build, side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}; shift || true
scripts/install-onnxruntime.sh >/dev/null
scripts/install-kafka.sh >/dev/null
cargo build --release --quiet --bin kbatch --example reply_topic_flood
server=${SERVER:-./target/release/kbatch}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop_all() {
  [[ -z ${serve:-} ]] || { kill "$serve" 2>/dev/null || true; wait "$serve" 2>/dev/null || true; }
  kill "${launcher:-}" 2>/dev/null || true
  wait "${launcher:-}" 2>/dev/null || true
}
trap stop_all EXIT
./target/release/kbatch broker --port "$port" >/tmp/kbatch-rss-broker.log 2>&1 &
launcher=$!
for _ in $(seq 1 600); do
  grep -q 'ready at' /tmp/kbatch-rss-broker.log && break
  kill -0 $launcher 2>/dev/null || { cat /tmp/kbatch-rss-broker.log >&2; exit 1; }
  sleep 0.1
done
export KBATCH_KAFKA__BROKERS=127.0.0.1:$port KBATCH_HTTP__PORT=$http LOG_LEVEL=${LOG_LEVEL:-error}
./target/release/kbatch create-topics --partitions 4 >/dev/null
"$server" serve "$@" >/tmp/kbatch-rss-serve.log 2>&1 &
serve=$!
start=$(date +%s)
./target/release/examples/reply_topic_flood "$n"
# Every request answered: a REJECTED reply on the default topic, or its reply refused by a
# topic that does not exist and sent to the dead-letter topic.
while :; do
  done_n=$(curl -s "127.0.0.1:$http/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(c for _, c in s["by_status"]) + s["dead_letters"])' 2>/dev/null || echo 0)
  (( done_n >= n )) && break
  (( $(date +%s) - start > 900 )) && { echo "gave up waiting: $done_n of $n outcomes" >&2; break; }
  sleep 2
done
curl -s "127.0.0.1:$http/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("outcomes:", dict(s["by_status"]), "dead letters:", s["dead_letters"])'
echo "requests $n, seconds $(( $(date +%s) - start )), server peak RSS $(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' /proc/$serve/status) MB, now $(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' /proc/$serve/status) MB"
