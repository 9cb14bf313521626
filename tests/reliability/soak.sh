#!/usr/bin/env bash
# Soak: the release server with 1 s windows, the SQLite sink and remote-write to a local
# VictoriaMetrics, driven at a steady rate over HTTP JSON, OTLP/HTTP and StatsD for
# MINUTES (default 20). Samples RSS, open fds, threads, tokio tasks and open connections
# every 2 s into a CSV, plots it (matplotlib in a venv), and asserts:
#   * RSS after warm-up (the first quarter) grows less than SOAK_RSS_TOL (default 10 %),
#     net of the SQLite page cache, which fills as the database grows up to its 64 MiB
#     cache_size (RSS - min(db + wal size, 64 MiB) is compared),
#   * open fds, threads and alive tasks at the end are not above their warm-up maximum,
#   * every count and sum the clients had accepted equals the query API's and SQLite's totals.
# Usage: tests/reliability/soak.sh [MINUTES]   (CI: 2). Output in SOAK_OUT (default
# target/soak): soak.csv, soak.png, sent.json, server.log. Loopback only, bounded:
# every wait has a deadline and the trap kills what was started here.
set -euo pipefail

MINUTES="${1:-20}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/reliability"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${SOAK_OUT:-$TARGET/soak}"
VENV="${ABACUS_RELIABILITY_VENV:-$TARGET/reliability-venv}"
RSS_TOL="${SOAK_RSS_TOL:-0.10}"
WORK="$(mktemp -d -t abacus-soak.XXXXXX)"
PIDS=()
T0=$SECONDS

cleanup() {
    touch "$WORK/stop" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
log() { printf '[soak %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
fail() { log "FAIL: $*"; [ -f "$OUT/server.log" ] && tail -n 30 "$OUT/server.log" >&2; exit 1; }
poll() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
        sleep 0.3
    done
}

# ---------------------------------------------------------------- install
if ! command -v victoria-metrics >/dev/null || ! command -v curl >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
    log "installing victoria-metrics, curl, python3-venv"
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends victoria-metrics curl python3-venv >/dev/null
fi
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "creating venv with matplotlib in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q matplotlib
fi
PY="$VENV/bin/python"
D="$HERE/drive.py"

# ABACUS_BIN: a prebuilt binary (a target dir shared by several checkouts may hold another one's).
if [ -z "${ABACUS_BIN:-}" ]; then
    log "building the release binary"
    cargo build -q --release --manifest-path "$ROOT/Cargo.toml" -p abacus-cli
fi
ABACUS="${ABACUS_BIN:-$TARGET/release/abacus}"
mkdir -p "$OUT"

read -r HTTP OTLP STATSD VM <<<"$(python3 -c '
import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1",0))
v=socket.socket(); v.bind(("127.0.0.1",0))
print(s[0].getsockname()[1], s[1].getsockname()[1], u.getsockname()[1], v.getsockname()[1])')"

victoria-metrics -storageDataPath "$WORK/vm" -httpListenAddr "127.0.0.1:$VM" -retentionPeriod 1d \
    >"$WORK/vm.log" 2>&1 &
PIDS+=($!)
poll "victoria-metrics" 60 curl -sf "http://127.0.0.1:$VM/health" -o /dev/null

SECS="${SOAK_SECS:-$((MINUTES * 60))}"
# In-memory retention: an eighth of the run (at least 20 s), so the window store is full
# before the warm-up ends; older windows are answered from SQLite (the query API's seam).
RETENTION=$((SECS / 8 < 20 ? 20 : SECS / 8))
"$ABACUS" serve --http-addr "127.0.0.1:$HTTP" --otlp-http-addr "127.0.0.1:$OTLP" --otlp-grpc-addr off \
    --statsd-addr "127.0.0.1:$STATSD" --window-ms 1000 --retention-secs "$RETENTION" \
    --data-dir "$WORK/data" --remote-write-url "http://127.0.0.1:$VM/api/v1/write" \
    >"$OUT/server.log" 2>&1 &
SERVER=$!
PIDS+=($SERVER)
poll "abacus ready" 60 curl -sf "http://127.0.0.1:$HTTP/readyz" -o /dev/null
log "server pid $SERVER: http $HTTP otlp $OTLP statsd $STATSD, victoria-metrics $VM; driving for $MINUTES min"

"$PY" "$D" sample "$SERVER" "http://127.0.0.1:$HTTP" "$OUT/soak.csv" "$WORK/stop" 2 "$WORK/data/abacus.db" &
PIDS+=($!)
timeout $((SECS + 300)) "$PY" "$D" soak "http://127.0.0.1:$HTTP" "http://127.0.0.1:$OTLP" "$STATSD" "$SECS" "$OUT/sent.json" \
    || fail "load driver failed"
touch "$WORK/stop"
log "load done; waiting for the last windows to close"
sleep 3
FAILED=()
"$PY" "$D" soak-check "http://127.0.0.1:$HTTP" "$OUT/sent.json" || FAILED+=("query API totals differ from what was sent")
RW=$("$PY" "$D" metric "http://127.0.0.1:$HTTP" abacus_sink_written_windows_total sink=remote_write || true)
log "remote-write windows written: ${RW:-?}"
kill -TERM "$SERVER"
for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.3; done
kill -0 "$SERVER" 2>/dev/null && fail "server did not stop within 30 s"
"$PY" "$D" sqlite-check "$WORK/data/abacus.db" "$OUT/sent.json" || FAILED+=("SQLite totals differ from what was sent")
"$PY" "$D" plot "$OUT/soak.csv" "$OUT/soak.png" "abacus soak: $MINUTES min, 1 s windows, SQLite + remote-write sinks (2 vCPU)"
"$PY" "$D" csv-check "$OUT/soak.csv" 0.25 "$RSS_TOL" || FAILED+=("resource growth after warm-up")
[ "${#FAILED[@]}" -eq 0 ] || fail "$(IFS='; '; echo "${FAILED[*]}")"
log "PASS ($((SECONDS - T0)) s); CSV and plot in $OUT"
