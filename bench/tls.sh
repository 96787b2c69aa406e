#!/usr/bin/env bash
# TLS cost in one run: the same hub (`serve --memory --tls-self-signed`, one
# port for both) driven by `bench chat` over ws:// and over wss://, rounds
# interleaved, each run on a fresh server pinned to CPU 0 with the load client
# on CPU 1 (as in bench/run.sh). Prints one row per run and the medians.
#
#   bench/tls.sh                       # 1,000 members × 200 and 400 msg/s, 3 rounds
#   BENCH_TLS_RATES="200" BENCH_ROUNDS=5 bench/tls.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${BENCH_ROUNDS:-3}
RATES=${BENCH_TLS_RATES:-200 400}
SUBSCRIBERS=${BENCH_TLS_SUBSCRIBERS:-1000}
OUT=target/bench/tls
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
cargo build --release --quiet --bin switchboard
SB=target/release/switchboard

for rate in $RATES; do
  for round in $(seq "$ROUNDS"); do
    for scheme in ws wss; do
      taskset -c 0 "$SB" serve --host 127.0.0.1 --port 0 --memory --tls-self-signed \
        > "$OUT/server.out" 2> "$OUT/server.err" &
      pid=$!
      for _ in $(seq 100); do grep -q listening "$OUT/server.out" && break; sleep 0.05; done
      port=$(grep -o '[0-9]*$' "$OUT/server.out")
      insecure=()
      [ "$scheme" = wss ] && insecure=(-k)
      result=$(taskset -c 1 "$SB" bench chat "$scheme://127.0.0.1:$port/ws" "${insecure[@]}" \
        --subscribers "$SUBSCRIBERS" --rate "$rate" --duration 3 --warmup 1 --pid "$pid" --json)
      kill "$pid"
      wait "$pid" 2> /dev/null || true
      printf '{"scheme":"%s","rate":%s,"round":%s,"result":%s}\n' \
        "$scheme" "$rate" "$round" "$result" >> "$OUT/results.jsonl"
    done
  done
done

python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| members × msg/s | transport | runs | deliveries/s | p50 | p99 | p99 of each run | lost | server CPU/delivery (kernel) |")
print("|---|---|---:|---:|---:|---:|---|---:|---:|")
median = lambda xs: statistics.median_high(xs)
for rate in sorted({r["rate"] for r in rows}):
    for scheme in ("ws", "wss"):
        runs = [r["result"] for r in rows if r["rate"] == rate and r["scheme"] == scheme]
        p99s = [r["latency"]["p99_us"] for r in runs]
        print(f'| {runs[0]["subscribers"]:,} × {rate} | {scheme}:// | {len(runs)} '
              f'| {median([r["deliveries_per_sec"] for r in runs]):,.0f} '
              f'| {median([r["latency"]["p50_us"] for r in runs]) / 1000:.1f} ms '
              f'| {median(p99s) / 1000:.1f} ms | {", ".join(f"{p / 1000:.1f}" for p in p99s)} ms '
              f'| {sum(r["lost"] for r in runs)} '
              f'| {median([r["server"]["cpu_us_per_message"] for r in runs]):.2f} µs '
              f'({median([r["server"]["kernel_us_per_message"] for r in runs]):.2f}) |')
PY
