#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests (which start the real
# binary and talk to it with nc, Node and Python websockets), then the
# Autobahn|Testsuite WebSocket conformance run against `switchboard echo --ws`.
#
# Run scripts/setup.sh first on a fresh machine (the README's test command
# does both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo test --release
cargo build --release
scripts/autobahn/run.sh target/release/switchboard echo --ws --port 0
