#!/usr/bin/env bash
# Run the Autobahn|Testsuite WebSocket fuzzingclient against a WebSocket echo
# server and fail if any case FAILED.
#
# Usage:
#   scripts/autobahn/run.sh SERVER_CMD [ARGS...]
#   e.g. scripts/autobahn/run.sh target/release/switchboard echo --ws --port 0
#
# The server command is started in the background and must print
#   listening on ADDR:PORT
# as the FIRST line of its stdout (ADDR may be [::], 0.0.0.0, 127.0.0.1, ...).
# The fuzzingclient then connects to ws://127.0.0.1:PORT, or to
# ws://[::1]:PORT when ADDR is an IPv6 address such as [::] (a [::] socket
# may be IPv6-only, and [::1] reaches it whether or not it is dual-stack).
#
# Autobahn|Testsuite (wstest) only runs on Python 2.7, so a pinned Python 2.7
# virtualenv is built on first use and cached (see AUTOBAHN_VENV below).
#
# Environment:
#   AUTOBAHN_VENV     virtualenv cache dir
#                     (default: $HOME/.cache/switchboard/autobahn-venv)
#   AUTOBAHN_PYTHON   Python 2.7 interpreter used to build the virtualenv
#                     (default: $HOME/.pyenv/versions/2.7.18/bin/python)
#   AUTOBAHN_OUT      output dir for spec, logs and report
#                     (default: <repo>/target/autobahn)
#   AUTOBAHN_TIMEOUT  seconds allowed for the whole wstest run (default: 600)
#   AUTOBAHN_STARTUP_TIMEOUT
#                     seconds to wait for the "listening on" line (default: 30)
#
# The spec is generated from fuzzingclient.json.in next to this script:
# all cases except 9.* (performance), 12.* and 13.* (permessage-deflate).
# "failByDrop": false makes the fuzzer do a closing handshake (rather than
# just drop TCP) when it fails a connection, as most WebSocket crates'
# Autobahn setups do, so close behavior is judged on the server's own
# actions.
#
# Outputs (in AUTOBAHN_OUT): fuzzingclient.json (spec), wstest.log,
# server.stdout.log, server.stderr.log and report/ (index.html, index.json).
#
# Exit status: 0 all cases passed (OK / NON-STRICT / INFORMATIONAL /
# UNIMPLEMENTED), 1 some case failed (behavior FAILED, or behaviorClose
# FAILED / UNCLEAN), no case ran, or the server died during the run,
# 2 usage/setup/infrastructure error (including wstest timing out).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

AGENT="switchboard"
VENV="${AUTOBAHN_VENV:-$HOME/.cache/switchboard/autobahn-venv}"
PY27="${AUTOBAHN_PYTHON:-$HOME/.pyenv/versions/2.7.18/bin/python}"
OUT="${AUTOBAHN_OUT:-$REPO_ROOT/target/autobahn}"
RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-600}"
STARTUP_TIMEOUT="${AUTOBAHN_STARTUP_TIMEOUT:-30}"

# Bootstrap tool used to create the Python 2.7 virtualenv (20.22 dropped the
# ability to create Python 2 environments; 20.15.1 is the last release that
# itself runs on 2.7). Its dependencies are pinned too so that new uploads to
# PyPI cannot break the bootstrap.
BOOTSTRAP_PINS=(
  "virtualenv==20.15.1"
  "distlib==0.4.4"
  "filelock==3.2.1"
  "platformdirs==2.0.2"
  "six==1.17.0"
  "importlib-metadata==2.1.3"
  "importlib-resources==3.3.1"
  "zipp==1.2.0"
  "contextlib2==0.6.0.post1"
  "pathlib2==2.3.7.post1"
  "scandir==1.10.0"
  "singledispatch==3.7.0"
  "configparser==4.0.2"
  "typing==3.10.0.0"
)

# Full, known-good dependency set of autobahntestsuite 0.8.2 on Python 2.7.
# wsaccel and zope.interface are built from source (needs a C compiler and
# the Python 2.7 headers, which pyenv installs); everything else is a wheel.
SUITE_PINS=(
  "autobahntestsuite==0.8.2"
  "autobahn[twisted,accelerate]==0.10.9"
  "txaio==2.1.0"
  "Twisted==20.3.0"
  "zope.interface==5.5.2"
  "attrs==21.4.0"
  "Automat==22.10.0"
  "constantly==15.1.0"
  "hyperlink==21.0.0"
  "incremental==22.10.0"
  "idna==2.10"
  "typing==3.10.0.0"
  "PyHamcrest==1.10.1"
  "six==1.17.0"
  "wsaccel==0.6.6"
  "ujson==2.0.3"
  "pyOpenSSL==21.0.0"
  "cryptography==3.3.2"
  "cffi==1.15.1"
  "pycparser==2.21"
  "enum34==1.1.10"
  "ipaddress==1.0.23"
  "service-identity==21.1.0"
  "pyasn1==0.5.1"
  "pyasn1-modules==0.3.0"
  "klein==20.6.0"
  "Werkzeug==1.0.1"
  "Tubes==0.2.1"
  "Jinja2==2.11.3"
  "MarkupSafe==1.1.1"
  "unittest2==1.1.0"
  "argparse==1.4.0"
  "linecache2==1.0.0"
  "traceback2==1.4.0"
)

die() { echo "error: $*" >&2; exit 2; }

# Print the last lines of a log file to stderr, framed, for diagnostics.
show_log() {
  local file="$1" lines="${2:-40}"
  [[ -s "$file" ]] || return 0
  echo "---- last $lines lines of $file ----" >&2
  tail -n "$lines" "$file" >&2
  echo "----" >&2
}

# ---------------------------------------------------------------------------
# 1. Setup: build (or reuse) the cached Python 2.7 virtualenv with wstest.
# ---------------------------------------------------------------------------
setup_venv() {
  # The stamp records exactly what was installed; any change to the pins (or
  # a half-finished earlier install, which has no stamp) triggers a rebuild.
  local stamp="$VENV/.switchboard-autobahn-stamp"
  local want
  want="$(printf '%s\n' "${BOOTSTRAP_PINS[@]}" "${SUITE_PINS[@]}")"
  # The import check catches a cached venv whose interpreter has since been
  # removed or replaced.
  if [[ -x "$VENV/bin/wstest" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
     "$VENV/bin/python" -c 'import autobahntestsuite' >/dev/null 2>&1; then
    return 0
  fi

  if [[ ! -x "$PY27" ]]; then
    die "Python 2.7 interpreter not found at $PY27 (needed by Autobahn|Testsuite;" \
        "install it with 'pyenv install 2.7.18' or set AUTOBAHN_PYTHON)"
  fi
  if ! "$PY27" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' 2>/dev/null; then
    die "$PY27 is not a working Python 2.7 interpreter"
  fi

  echo "autobahn: building Python 2.7 virtualenv in $VENV (one-time setup)..." >&2
  local start=$SECONDS
  local tmp log
  tmp="$(mktemp -d)"
  log="$tmp/install.log"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"

  # virtualenv goes into a throwaway --target dir, so the interpreter's own
  # site-packages are left untouched.
  if ! "$PY27" -m pip install --disable-pip-version-check --no-input -q \
        --target "$tmp/bootstrap" "${BOOTSTRAP_PINS[@]}" >"$log" 2>&1; then
    show_log "$log"; rm -rf "$tmp"
    die "failed to install virtualenv for Python 2.7"
  fi
  if ! PYTHONPATH="$tmp/bootstrap" "$PY27" -m virtualenv -q --python "$PY27" "$VENV" >>"$log" 2>&1; then
    show_log "$log"; rm -rf "$tmp" "$VENV"
    die "failed to create the Python 2.7 virtualenv at $VENV"
  fi
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        "${SUITE_PINS[@]}" >>"$log" 2>&1; then
    show_log "$log"; rm -rf "$tmp" "$VENV"
    die "failed to install autobahntestsuite into $VENV"
  fi
  if ! "$VENV/bin/wstest" --autobahnversion >>"$log" 2>&1; then
    show_log "$log"; rm -rf "$tmp" "$VENV"
    die "wstest was installed but does not run"
  fi
  rm -rf "$tmp"
  printf '%s\n' "$want" >"$stamp"
  echo "autobahn: setup done in $((SECONDS - start))s" >&2
}

# ---------------------------------------------------------------------------
# 2. Start the server under test and learn its port.
# ---------------------------------------------------------------------------
SERVER_PID=""
WSTEST_PID=""

stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # The server runs in its own process group (see start_server), so this
    # also reaches children of wrapper commands such as `cargo run`.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

on_exit() {
  # On an interrupted run, stop wstest too (`timeout` passes the signal on).
  if [[ -n "$WSTEST_PID" ]] && kill -0 "$WSTEST_PID" 2>/dev/null; then
    kill -TERM "$WSTEST_PID" 2>/dev/null || true
    wait "$WSTEST_PID" 2>/dev/null || true
  fi
  stop_server
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server CMD... ; sets SERVER_PID, HOST and PORT.
start_server() {
  local stdout_log="$OUT/server.stdout.log" stderr_log="$OUT/server.stderr.log"
  : >"$stdout_log"
  : >"$stderr_log"

  # Job control on => the background job gets its own process group whose id
  # is its pid, so stop_server can kill the whole group.
  set -m
  "$@" </dev/null >"$stdout_log" 2>"$stderr_log" &
  SERVER_PID=$!
  set +m

  local deadline=$((SECONDS + STARTUP_TIMEOUT)) line=""
  while :; do
    # Only look at a complete first line (terminated by a newline).
    if [[ "$(wc -l <"$stdout_log")" -ge 1 ]]; then
      IFS= read -r line <"$stdout_log" || true
      break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      show_log "$stderr_log"
      die "server exited before printing 'listening on ADDR:PORT': $*"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$stderr_log"
      die "timed out after ${STARTUP_TIMEOUT}s waiting for 'listening on ADDR:PORT' from: $*"
    fi
    sleep 0.1
  done

  line="${line%$'\r'}"
  if [[ "$line" =~ ^listening\ on\ (.+):([0-9]+)[[:space:]]*$ ]]; then
    PORT="${BASH_REMATCH[2]}"
    if [[ "${BASH_REMATCH[1]}" == \[* ]]; then HOST="[::1]"; else HOST="127.0.0.1"; fi
  else
    die "unexpected first line from server (want 'listening on ADDR:PORT'): '$line'"
  fi
  ((PORT > 0 && PORT < 65536)) || die "bad port in server line: '$line'"
  echo "autobahn: server pid $SERVER_PID $line" >&2
}

# ---------------------------------------------------------------------------
# 4. Summarise index.json. Prints the summary; exits 0 (all good) or 1.
#    summarize INDEX_JSON PLANNED_CASES SERVER_DIED(0/1)
# ---------------------------------------------------------------------------
summarize() {
  "$VENV/bin/python" - "$1" "$AGENT" "$2" "$3" <<'PY'
import json, sys

index_path, agent = sys.argv[1], sys.argv[2]
planned, server_died = int(sys.argv[3] or 0), sys.argv[4] == "1"
with open(index_path) as f:
    index = json.load(f)
cases = index.get(agent, {})

def case_key(cid):
    return [int(p) if p.isdigit() else p for p in cid.split(".")]

order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# behaviorClose values that autobahn's own HTML report marks as failures.
# ("WRONG CODE" and "FAILED BY CLIENT" are shown as non-strict there.)
close_fatal = ("FAILED", "UNCLEAN")
counts = dict((b, 0) for b in order)
close_counts = {}
failed = []
for cid in sorted(cases, key=case_key):
    res = cases[cid]
    behavior = res.get("behavior", "MISSING")
    close = res.get("behaviorClose", "MISSING")
    counts[behavior] = counts.get(behavior, 0) + 1
    close_counts[close] = close_counts.get(close, 0) + 1
    # A failed closing handshake fails the case even if the payload was OK.
    if behavior in ("FAILED", "MISSING") or close in close_fatal + ("MISSING",):
        failed.append((cid, behavior, close))

print("autobahn: results for agent '%s' (%s)" % (agent, index_path))
for b in order + sorted(set(counts) - set(order)):
    print("  %-14s %d" % (b, counts[b]))
print("  close behavior: " + ", ".join(
    "%s %d" % (c, n) for c, n in sorted(close_counts.items())))
if failed:
    print("autobahn: FAILED cases (behavior / behaviorClose):")
    for cid, b, c in failed:
        print("  %-10s %s / %s" % (cid, b, c))
# wstest stops early (with exit status 0) when it cannot connect, e.g.
# because the server crashed, so compare against what it planned to run.
not_run = max(planned - len(cases), 0)
sys.stdout.flush()  # keep stdout/stderr in order on a shared terminal
if not cases:
    sys.stderr.write("error: no Autobahn cases ran\n")
elif not_run:
    sys.stderr.write("error: only %d of %d planned cases ran\n" % (len(cases), planned))
if server_died:
    sys.stderr.write("error: the server exited during the Autobahn run\n")
sys.stderr.flush()
print("autobahn: %d cases, %d failed%s" % (
    len(cases), len(failed), ", %d not run" % not_run if not_run else ""))
sys.exit(1 if failed or not cases or not_run or server_died else 0)
PY
}

main() {
  if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 2
  fi
  command -v timeout >/dev/null || die "'timeout' (coreutils) is required"

  setup_venv

  mkdir -p "$OUT"
  local report_dir="$OUT/report" spec="$OUT/fuzzingclient.json" wstest_log="$OUT/wstest.log"
  rm -rf "$report_dir"   # never summarise a stale report

  start_server "$@"

  # 3. Write the spec from the template and run the fuzzingclient.
  sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" -e "s|@OUTDIR@|$report_dir|g" -e "s|@AGENT@|$AGENT|g" \
    "$SCRIPT_DIR/fuzzingclient.json.in" >"$spec"

  echo "autobahn: running fuzzingclient against ws://$HOST:$PORT (log: $wstest_log)..." >&2
  local start=$SECONDS rc=0
  # wstest runs from inside $OUT so any stray relative output lands there.
  # It runs in the background and is waited for, so that INT/TERM traps
  # fire at once instead of after the whole run.
  (cd "$OUT" && PYTHONWARNINGS=ignore exec timeout --kill-after=10 "$RUN_TIMEOUT" \
      "$VENV/bin/wstest" -m fuzzingclient -s "$spec") >"$wstest_log" 2>&1 &
  WSTEST_PID=$!
  wait "$WSTEST_PID" || rc=$?
  WSTEST_PID=""
  echo "autobahn: fuzzingclient finished in $((SECONDS - start))s" >&2
  if ((rc == 124 || rc == 137)); then
    show_log "$wstest_log"
    die "wstest timed out after ${RUN_TIMEOUT}s"
  elif ((rc != 0)); then
    show_log "$wstest_log"
    die "wstest exited with status $rc"
  fi

  # A server that crashed part-way is a failure even if the cases that ran
  # before the crash passed.
  local server_died=0
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_died=1
    show_log "$OUT/server.stderr.log"
  fi
  stop_server
  # Connection errors are reported by wstest only in its log.
  grep -E '^Connection to .* failed' "$wstest_log" >&2 || true

  # "Ok, will run 247 test cases against 1 servers"
  local planned
  planned="$(sed -n 's/^Ok, will run \([0-9][0-9]*\) test cases.*/\1/p' "$wstest_log" | head -n 1)"

  local index="$report_dir/index.json"
  if [[ ! -f "$index" ]]; then
    show_log "$wstest_log"
    echo "error: no report at $index" >&2
    echo "autobahn: 0 cases, 0 failed"
    exit 1
  fi
  summarize "$index" "$planned" "$server_died"
}

main "$@"
