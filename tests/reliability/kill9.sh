#!/usr/bin/env bash
# kill -9 of abacus serve under load, several times, restarting on the same data directory;
# then proves what the README promises (section "Durability"): every window committed to
# SQLite before a kill is there after the restart, once and unchanged, and what is missing is
# only what the client had acknowledged after the end of the last window committed before
# the kill (the open window, plus a closed window whose SQLite write had not committed yet).
#
# The load client (faults_helpers.py load) logs every request with its send and answer time;
# the check (faults_helpers.py kill9-check) compares that log with the SQLite file, read
# directly with Python's sqlite3. Exits non-zero on any violation.
#
# Needs: cargo, python3, curl (installed with apt-get if missing). Loopback only; every
# process started here is killed by the trap. Runtime ~40 s after the build.
# Env: CYCLES (3), WINDOW_MS (1000), PROFILE (release|debug, default release), ABACUS_BIN
# (use this binary instead of building).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/reliability"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CYCLES="${CYCLES:-3}"
WINDOW_MS="${WINDOW_MS:-1000}"
PROFILE="${PROFILE:-release}"
WORK="$(mktemp -d -t abacus-kill9.XXXXXX)"
PIDS=()
T0=$SECONDS

cleanup() {
    touch "$WORK/stop-load" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

TAG=kill9
POLL_SLEEP=0.1
# shellcheck source=../lib.sh
source "$ROOT/tests/lib.sh"
now() { date +%s.%N; }

if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
    log "installing curl, python3"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl python3 >/dev/null
fi
PY=python3
H="$HERE/faults_helpers.py"

build_abacus

HTTP="$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DATA="$WORK/abacus-data"
EVENTS="$WORK/events"
: >"$EVENTS"

start_abacus() {
    echo "start $(now)" >>"$EVENTS"
    "$ABACUS" serve --http-addr "127.0.0.1:$HTTP" --otlp-http-addr off --otlp-grpc-addr off \
        --statsd-addr off --window-ms "$WINDOW_MS" --data-dir "$DATA" >>"$WORK/abacus.log" 2>&1 &
    ABACUS_PID=$!; PIDS+=("$ABACUS_PID")
    poll "abacus /readyz" 30 curl -fs -o /dev/null "http://127.0.0.1:$HTTP/readyz"
}

start_abacus
log "abacus up on $HTTP (SQLite only, ${WINDOW_MS} ms windows, data in $DATA)"
"$PY" "$H" load "http://127.0.0.1:$HTTP/metrics" kill9_load "$WORK/stop-load" "$WORK/requests" 2 300 \
    >"$WORK/load.log" 2>&1 &
LOAD_PID=$!; PIDS+=("$LOAD_PID")

# Kill at different phases of the window: the run lengths are not multiples of it.
RUN_MS=(5300 6650 4870 7120 5530 6010)
for ((c = 0; c < CYCLES; c++)); do
    ms="${RUN_MS[$((c % ${#RUN_MS[@]}))]}"
    sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
    # Windows committed right before the kill (a reader sees only committed transactions).
    snap="$("$PY" "$H" snapshot "$DATA/abacus.db" kill9_load)"
    echo "snap $(now) $snap" >>"$EVENTS"
    kill -KILL "$ABACUS_PID"
    wait "$ABACUS_PID" 2>/dev/null || true
    forget_pid "$ABACUS_PID"
    echo "kill $(now)" >>"$EVENTS"
    log "cycle $((c + 1))/$CYCLES: SIGKILL after ${ms} ms; $("$PY" -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$snap") windows committed; restarting"
    sleep 0.5
    start_abacus
done

sleep 4.2
touch "$WORK/stop-load"
wait "$LOAD_PID" || fail "load client"
forget_pid "$LOAD_PID"
sleep 0.3
kill -TERM "$ABACUS_PID"
wait "$ABACUS_PID" || fail "abacus exit code $? on SIGTERM"
forget_pid "$ABACUS_PID"
echo "term $(now)" >>"$EVENTS"
log "last run stopped with SIGTERM (final window written)"

if "$PY" "$H" kill9-check "$DATA/abacus.db" kill9_load "$WORK/requests" "$EVENTS" "$WINDOW_MS" >"$WORK/check.out" 2>&1; then
    sed 's/^/    /' "$WORK/check.out" >&2
    log "PASS"
else
    sed 's/^/    /' "$WORK/check.out" >&2
    fail "kill -9 bounds violated"
fi
