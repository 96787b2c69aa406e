#!/usr/bin/env bash
# TLS cost in one run: the same hub (`serve --memory --tls-self-signed`, one
# port for both) driven by `bench chat` over ws:// and wss:// (WebSocket
# members) and over HOST:PORT and tls://HOST:PORT (line members), rounds
# interleaved, each run on a fresh server pinned to CPU 0 with the load client
# on CPU 1 (as in bench/run.sh); then an idle ws:// and wss:// WebSocket's
# server memory (`bench idle`). Prints one row per case with medians.
#
#   bench/tls.sh                             # 1,000 members × 200, 300, 400 msg/s, 3 rounds
#   BENCH_TLS_RATES="200" BENCH_ROUNDS=5 bench/tls.sh
#   BENCH_TLS_KINDS="ws wss" bench/tls.sh    # WebSocket members only
#   BENCH_TLS_BEFORE=/path/to/old/switchboard bench/tls.sh
#                                            # each case also against an older
#                                            # server build, interleaved
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${BENCH_ROUNDS:-3}
RATES=${BENCH_TLS_RATES:-200 300 400}
KINDS=${BENCH_TLS_KINDS:-ws wss line tls}
SUBSCRIBERS=${BENCH_TLS_SUBSCRIBERS:-1000}
IDLE_CONNS=${BENCH_TLS_IDLE_CONNS:-10000}
OUT=target/bench/tls
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
cargo build --release --quiet --bin switchboard
SB=target/release/switchboard
declare -A BUILDS=([now]=$SB)
[ -z "${BENCH_TLS_BEFORE:-}" ] || BUILDS[before]=$BENCH_TLS_BEFORE

# Starts `BUILD serve` pinned to CPU 0; sets PID and PORT.
start_server() {
  taskset -c 0 "${BUILDS[$1]}" serve --host 127.0.0.1 --port 0 --memory --tls-self-signed \
    > "$OUT/server.out" 2> "$OUT/server.err" &
  PID=$!
  for _ in $(seq 100); do grep -q listening "$OUT/server.out" && break; sleep 0.05; done
  PORT=$(grep -o '[0-9]*$' "$OUT/server.out")
}

stop_server() {
  kill "$PID"
  wait "$PID" 2> /dev/null || true
}

# The address `bench` is given for a kind of client, and its TLS flag.
target() {
  case $1 in
    ws) echo "ws://127.0.0.1:$PORT/ws" ;;
    wss) echo "wss://127.0.0.1:$PORT/ws -k" ;;
    line) echo "127.0.0.1:$PORT" ;;
    tls) echo "tls://127.0.0.1:$PORT -k" ;;
  esac
}

for rate in $RATES; do
  for round in $(seq "$ROUNDS"); do
    for kind in $KINDS; do
      for build in "${!BUILDS[@]}"; do
        start_server "$build"
        # shellcheck disable=SC2046 # the target and its flag are two words
        result=$(taskset -c 1 "$SB" bench chat $(target "$kind") \
          --subscribers "$SUBSCRIBERS" --rate "$rate" --duration 3 --warmup 1 --pid "$PID" --json)
        stop_server
        printf '{"case":"chat","build":"%s","kind":"%s","rate":%s,"round":%s,"result":%s}\n' \
          "$build" "$kind" "$rate" "$round" "$result" >> "$OUT/results.jsonl"
      done
    done
  done
done
for round in $(seq "$ROUNDS"); do
  for kind in ws wss; do
    for build in "${!BUILDS[@]}"; do
      start_server "$build"
      # shellcheck disable=SC2046
      result=$(taskset -c 1 "$SB" bench idle $(target "$kind") \
        --conns "$IDLE_CONNS" --hold 3 --pid "$PID" --json)
      stop_server
      printf '{"case":"idle","build":"%s","kind":"%s","round":%s,"result":%s}\n' \
        "$build" "$kind" "$round" "$result" >> "$OUT/results.jsonl"
    done
  done
done

python3 bench/tls_report.py "$OUT/results.jsonl" | tee "$OUT/report.md"
