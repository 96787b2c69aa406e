#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root,
# or with sudo available). Idempotent: what is already there is skipped.
#
#   - netcat-openbsd: `nc`, a real third-party line client; curl for HTTP;
#     openssl: `s_client` (a line client over TLS) and test certificates
#   - Node.js and the `ws` package: the Node tutorial's client and server, and
#     a Node WebSocket client (tests/node)
#   - Debian's Chromium and playwright-core: the browser page's test
#   - Python `websockets`: a real third-party WebSocket client (tests/python)
#   - gcc and the Python 2.7 headers: the Autobahn testsuite builds C extensions
#     (the Autobahn virtualenv itself is built by scripts/autobahn/run.sh)
#   - redis-server: the Redis that the cluster tests start on a free port
#   - bench/'s npm packages (socket.io, @socket.io/redis-adapter, redis, ws):
#     the reference servers, which the `bench chat` tests run against
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v nc >/dev/null || missing+=(netcat-openbsd)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v prlimit >/dev/null || missing+=(util-linux)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v gcc >/dev/null || missing+=(gcc)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import websockets.asyncio.client' 2>/dev/null; then
  echo "setup: installing Python websockets"
  python3 -m pip install --quiet --disable-pip-version-check 'websockets>=14' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'websockets>=14'
fi

if [ ! -d tests/node/node_modules/ws ] || [ ! -d tests/node/node_modules/playwright-core ]; then
  echo "setup: installing the Node test clients' packages"
  npm install --prefix tests/node --no-audit --no-fund --silent
fi

if [ ! -d bench/node_modules/socket.io ] || [ ! -d bench/node_modules/@socket.io/redis-adapter ] \
  || [ ! -d bench/node_modules/redis ] || [ ! -d bench/node_modules/ws ]; then
  echo "setup: installing the benchmark reference servers' packages"
  npm install --prefix bench --no-audit --no-fund --silent
fi

echo "setup: test tools ready (nc, curl, node $(node --version), python3 websockets, $(chromium --version), $(redis-server --version | cut -d' ' -f1-3))"
