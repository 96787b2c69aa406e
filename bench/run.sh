#!/usr/bin/env bash
# The benchmark suite: builds switchboard and the reference servers, runs every
# server through the same cases in one run, and writes BENCHMARKS.md.
#
#   bench/run.sh                               # full run, about 15 minutes
#   BENCH_ROUNDS=1 BENCH_DURATION=2 bench/run.sh # quicker, noisier
#   BENCH_PUBLISH_MESSAGES=10000000 bench/run.sh # adds a long SQLite publish run
#
# Each server runs pinned to CPU 0 and the load client (`switchboard bench`,
# single-threaded) to CPU 1, so every server gets the same one core and the
# client never competes with it (tokio sizes its worker pool from the CPU
# affinity, so the tokio servers run one worker). These machines are noisy, so
# every case runs ROUNDS times with the servers interleaved (A B C D, A B C D,
# …), each measurement on a fresh server process, and the report takes medians.
# Results: target/bench/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-3}
WARMUP=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_HOLD=${BENCH_IDLE_HOLD:-5}
OUT=target/bench
RESULTS=$OUT/results.jsonl
mkdir -p "$OUT"
: > "$RESULTS"

echo "bench: building" >&2
cargo build --release --quiet --bin switchboard --example tokio-echo
cc -O2 -o "$OUT/epoll_echo" bench/servers/epoll_echo.c
cc -O2 -o "$OUT/epoll_chat" bench/servers/epoll_chat.c
[ -d bench/node_modules/ws ] || npm install --prefix bench --no-audit --no-fund --silent
SB=target/release/switchboard

if [ "$(nproc)" -ge 2 ]; then
  ON_SERVER_CPU=(taskset -c 0)
  ON_CLIENT_CPU=(taskset -c 1)
else
  ON_SERVER_CPU=()
  ON_CLIENT_CPU=()
fi

declare -A SERVERS=(
  [switchboard]="$SB echo --raw --host 127.0.0.1 --port 0"
  [tokio-echo]="target/release/examples/tokio-echo 0"
  [node-raw]="node bench/servers/node_echo.mjs raw 0"
  [c-epoll]="$OUT/epoll_echo 0"
  [switchboard-prefix]="$SB echo --host 127.0.0.1 --port 0"
  [node-tutorial]="node bench/servers/node_echo.mjs tutorial 0"
  [switchboard-chat]="$SB serve --host 127.0.0.1 --port 0 --data $OUT/chat-data"
  [switchboard-chat-memory]="$SB serve --host 127.0.0.1 --port 0 --memory"
  [node-chat]="node bench/servers/node_chat.mjs 0"
  [c-epoll-chat]="$OUT/epoll_chat 0"
  [publish-memory]="$SB serve --host 127.0.0.1 --port 0 --memory --rate 0"
  [publish-sqlite]="$SB serve --host 127.0.0.1 --port 0 --data $OUT/sqlite-data --rate 0"
  [publish-sqlite-full]="$SB serve --host 127.0.0.1 --port 0 --data $OUT/sqlite-data --rate 0 --sync full"
)
RAW_SERVERS=(switchboard tokio-echo node-raw c-epoll)
PREFIX_SERVERS=(switchboard-prefix node-tutorial)
CHAT_SERVERS=(switchboard-chat node-chat)
# Each chat case is a server and a transport; the C reference speaks lines only.
# switchboard-chat keeps its history in SQLite (the default); -memory is the
# same hub with --memory, to show what durability costs the fan-out.
CHAT_CASES=("switchboard-chat line" "switchboard-chat ws" "switchboard-chat-memory line"
  "switchboard-chat-memory ws" "node-chat line" "node-chat ws" "c-epoll-chat line")
# Publishers spread evenly over time (a steady stream: one message every
# 1/RATE s), then in step (all at once each period: bursts a server can batch).
CHAT_PACINGS=(spread in-step)
CHAT_SUBSCRIBERS=${BENCH_CHAT_SUBSCRIBERS:-1000}
CHAT_RATE=${BENCH_CHAT_RATE:-200}
# The message log: the hub with its in-memory engine and with SQLite (the
# default --sync normal, and --sync full), each at
# full speed (closed loop) and at a set rate (open loop), over lines and WebSockets.
PUBLISH_ENGINES=(memory sqlite sqlite-full)
PUBLISH_TRANSPORTS=(line ws)
PUBLISH_PUBLISHERS=${BENCH_PUBLISH_PUBLISHERS:-100}
PUBLISH_ROOMS=${BENCH_PUBLISH_ROOMS:-10}
PUBLISH_RATE=${BENCH_PUBLISH_RATE:-10000}
# A long SQLite run until this many messages were acknowledged: off unless set.
PUBLISH_MESSAGES=${BENCH_PUBLISH_MESSAGES:-}

SERVER_PID=""
# start_server NAME: runs it on the server CPU, waits for `listening on`, sets
# PORT. A hub keeping history in SQLite always starts from an empty directory.
start_server() {
  rm -rf "$OUT/chat-data" "$OUT/sqlite-data"
  local log=$OUT/$1.stdout
  # shellcheck disable=SC2086 # the command lines above are split on purpose
  "${ON_SERVER_CPU[@]}" ${SERVERS[$1]} > "$log" 2> "$OUT/$1.stderr" &
  SERVER_PID=$!
  for _ in $(seq 300); do
    # A whole line (the write may still be under way) that names a port.
    if [ "$(wc -l < "$log")" -ge 1 ] && head -1 "$log" | grep -q '^listening on .*:[0-9][0-9]*$'; then
      PORT=$(head -1 "$log" | sed 's/.*://')
      return
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: server $1 did not print its listening line" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT

# record NAME MODE ARGS...: runs one bench and appends {"server", "result"} to the results.
record() {
  local name=$1
  shift
  local json
  json=$("${ON_CLIENT_CPU[@]}" "$SB" bench "$@" --pid "$SERVER_PID" --json)
  printf '{"server":"%s","result":%s}\n' "$name" "$json" >> "$RESULTS"
  echo "bench: $name $* -> $(echo "$json" | head -c 160)..." >&2
}

# echo_case CONNS SIZE EXTRA SERVERS...: every server once per round, interleaved.
echo_case() {
  local conns=$1 size=$2 extra=$3
  shift 3
  for _ in $(seq "$ROUNDS"); do
    for name in "$@"; do
      start_server "$name"
      # shellcheck disable=SC2086 # EXTRA is empty or a flag and its value
      record "$name" echo "127.0.0.1:$PORT" --conns "$conns" --size "$size" \
        --duration "$DURATION" --warmup "$WARMUP" $extra
      stop_server
    done
  done
}

for conns in 1 50 500; do
  for size in 64 4096; do
    echo_case "$conns" "$size" "" "${RAW_SERVERS[@]}"
    echo_case "$conns" "$size" "--prefix=Echo:" "${PREFIX_SERVERS[@]}"
  done
done
# The load client's own capacity: the C server with 8 requests in flight per
# connection (the cases above keep one in flight).
for _ in $(seq "$ROUNDS"); do
  start_server c-epoll
  record c-epoll-pipeline-8 echo "127.0.0.1:$PORT" --conns 50 --size 64 --pipeline 8 \
    --duration "$DURATION" --warmup "$WARMUP"
  stop_server
done
for pacing in "${CHAT_PACINGS[@]}"; do
  for _ in $(seq "$ROUNDS"); do
    for case in "${CHAT_CASES[@]}"; do
      read -r name transport <<< "$case"
      start_server "$name"
      if [ "$transport" = ws ]; then
        target="ws://127.0.0.1:$PORT/ws" label="$name-ws"
      else
        target="127.0.0.1:$PORT" label="$name"
      fi
      flags=()
      if [ "$pacing" = in-step ]; then
        flags=(--in-step) label="$label-in-step"
      fi
      record "$label" chat "$target" --subscribers "$CHAT_SUBSCRIBERS" --rate "$CHAT_RATE" \
        --duration "$DURATION" --warmup "$WARMUP" "${flags[@]}"
      stop_server
    done
  done
done
for pacing in closed open; do
  for _ in $(seq "$ROUNDS"); do
    for transport in "${PUBLISH_TRANSPORTS[@]}"; do
      for engine in "${PUBLISH_ENGINES[@]}"; do
        start_server "publish-$engine"
        label="publish-$engine" target="127.0.0.1:$PORT" flags=()
        if [ "$transport" = ws ]; then
          label="$label-ws" target="ws://127.0.0.1:$PORT/ws"
        fi
        if [ "$pacing" = open ]; then
          label="$label-open" flags=(--rate "$PUBLISH_RATE")
        fi
        record "$label" publish "$target" --publishers "$PUBLISH_PUBLISHERS" \
          --rooms "$PUBLISH_ROOMS" --duration "$DURATION" --warmup "$WARMUP" "${flags[@]}"
        stop_server
      done
    done
  done
done
if [ -n "$PUBLISH_MESSAGES" ]; then
  start_server publish-sqlite
  record publish-sqlite-long publish "127.0.0.1:$PORT" --publishers "$PUBLISH_PUBLISHERS" \
    --rooms "$PUBLISH_ROOMS" --messages "$PUBLISH_MESSAGES" --warmup "$WARMUP"
  stop_server
fi
for name in "${RAW_SERVERS[@]}"; do
  start_server "$name"
  record "$name" idle "127.0.0.1:$PORT" --conns "$IDLE_CONNS" --hold "$IDLE_HOLD"
  stop_server
done
for name in "${CHAT_SERVERS[@]}"; do
  start_server "$name"
  record "$name-line" idle "127.0.0.1:$PORT" --conns "$IDLE_CONNS" --hold "$IDLE_HOLD"
  stop_server
  start_server "$name"
  record "$name-ws" idle "ws://127.0.0.1:$PORT/ws" --conns "$IDLE_CONNS" --hold "$IDLE_HOLD"
  stop_server
  # The same, after each client once sent a 60 KB message: read buffers
  # that keep the largest message's capacity show here.
  start_server "$name"
  record "$name-ws-after-60kB" idle "ws://127.0.0.1:$PORT/ws" --conns "$IDLE_CONNS" \
    --hold "$IDLE_HOLD" --message-size 60000
  stop_server
done

python3 bench/report.py "$RESULTS" \
  --command "BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_IDLE_CONNS=$IDLE_CONNS${PUBLISH_MESSAGES:+ BENCH_PUBLISH_MESSAGES=$PUBLISH_MESSAGES} bench/run.sh" \
  > BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md" >&2
