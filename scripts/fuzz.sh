#!/usr/bin/env bash
# Runs each cargo fuzz target (fuzz/fuzz_targets/) for SECONDS (default 60)
# and prints its executions per second. CI runs it after the tests.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# First, on any toolchain, the targets are linted (so they keep compiling
# where they cannot run). Running them needs a nightly toolchain (cargo-fuzz's
# AddressSanitizer flag is nightly-only; fuzz/README.md has two ways on stable)
# and cargo-fuzz, which is installed from crates.io when missing. Without
# nightly this says so in a loud banner and exits 0. A crash, a hang (10 s
# per input) or a failed assertion fails the run; the input is kept in
# fuzz/artifacts/TARGET/, and
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…
# replays it. Inputs that found new coverage accumulate in fuzz/corpus/TARGET/
# (not committed); fuzz/seeds/TARGET/ holds a few hand-written starting points
# and fuzz/dicts/TARGET.dict the protocol's words.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
targets=("${@:2}")

cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings

skip() {
  echo "################################################################################"
  echo "# FUZZING SKIPPED: $1"
  echo "################################################################################"
  exit 0
}

cargo +nightly --version >/dev/null 2>&1 ||
  skip "no nightly toolchain; the targets were only linted (fuzz/README.md: running them on stable)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz || skip "cargo-fuzz could not be installed"
fi
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Debug assertions on: overflow checks find arithmetic on peer-given numbers.
cargo +nightly fuzz build --debug-assertions

mkdir -p target/fuzz-logs
summary=()
for target in "${targets[@]}"; do
  corpus=(fuzz/corpus/"$target")
  [ -d fuzz/seeds/"$target" ] && corpus+=(fuzz/seeds/"$target")
  options=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -f fuzz/dicts/"$target".dict ] && options+=(-dict=fuzz/dicts/"$target".dict)
  mkdir -p "${corpus[0]}"
  log=target/fuzz-logs/"$target".log
  echo "fuzz: $target for ${seconds}s (log: $log)"
  if ! cargo +nightly fuzz run --debug-assertions "$target" "${corpus[@]}" -- "${options[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED: the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  summary+=("$(printf '%-12s %12s runs %9s exec/s  %s' "$target" "$runs" "$rate" "$coverage")")
done
echo "fuzz: every target ran ${seconds}s without a failure"
printf '  %s\n' "${summary[@]}"
