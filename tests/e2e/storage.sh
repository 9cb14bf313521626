#!/usr/bin/env bash
# End-to-end check of the storage sinks: abacus serve with SQLite (default), DynamoDB
# (dynalite) and Prometheus remote-write (VictoriaMetrics), then an outage of each remote
# store under load. Asserts every window is stored exactly once everywhere and totals equal
# what was sent.
#
# Installs what it needs: Debian victoria-metrics (+ curl), dynalite from npm into
# target/e2e-node, boto3 in a venv at target/e2e-storage-venv. Loopback only; every
# process is started here and killed by the trap; every wait has a deadline.
# Runtime ~2.5 min (OUTAGE_SECS=30 per store).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/e2e"
NODE_DIR="${ABACUS_E2E_NODE:-$ROOT/target/e2e-node}"
VENV="${ABACUS_E2E_STORAGE_VENV:-$ROOT/target/e2e-storage-venv}"
OUTAGE_SECS="${OUTAGE_SECS:-30}"
WORK="$(mktemp -d -t abacus-storage-e2e.XXXXXX)"
PIDS=()
T0=$SECONDS

cleanup() {
    touch "$WORK/stop-load" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

TAG=storage-e2e
# shellcheck source=../lib.sh
source "$ROOT/tests/lib.sh"

# ---------------------------------------------------------------- install
if ! command -v victoria-metrics >/dev/null || ! command -v curl >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
    log "installing victoria-metrics, curl, python3-venv"
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends victoria-metrics curl python3-venv >/dev/null
fi
if [ ! -x "$NODE_DIR/node_modules/.bin/dynalite" ]; then
    log "installing dynalite into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund dynalite@4 >/dev/null)
fi
if ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    log "creating venv with boto3 in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q boto3
fi
PY="$VENV/bin/python"
H="$HERE/storage_helpers.py"

log "building abacus"
cargo build -q --manifest-path "$ROOT/Cargo.toml" -p abacus-cli
ABACUS="$ROOT/target/debug/abacus"

read -r HTTP VM DYN <<<"$("$PY" -c '
import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"

# ---------------------------------------------------------------- stores
start_vm() {
    victoria-metrics -httpListenAddr "127.0.0.1:$VM" -storageDataPath "$WORK/vm" -retentionPeriod 1d \
        -search.latencyOffset 0s >>"$WORK/vm.log" 2>&1 &
    VM_PID=$!; PIDS+=("$VM_PID")
    poll "victoria-metrics /health" 30 curl -fs -o /dev/null "http://127.0.0.1:$VM/health"
}
start_dynalite() {
    "$NODE_DIR/node_modules/.bin/dynalite" --host 127.0.0.1 --port "$DYN" --path "$WORK/dynalite" \
        --createTableMs 100 >>"$WORK/dynalite.log" 2>&1 &
    DYN_PID=$!; PIDS+=("$DYN_PID")
    poll "dynalite" 30 bash -c "curl -s -o /dev/null http://127.0.0.1:$DYN/"
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget_pid "$1"; }
start_vm
start_dynalite
log "victoria-metrics on $VM, dynalite on $DYN"

# ---------------------------------------------------------------- abacus
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
"$ABACUS" serve --http-addr "127.0.0.1:$HTTP" --otlp-http-addr off --otlp-grpc-addr off --statsd-addr off \
    --window-ms 1000 --data-dir "$WORK/abacus-data" \
    --remote-write-url "http://127.0.0.1:$VM/api/v1/write" \
    --dynamodb-endpoint "http://127.0.0.1:$DYN" --dynamodb-table metrics-service \
    >"$WORK/abacus.log" 2>&1 &
ABACUS_PID=$!; PIDS+=("$ABACUS_PID")
poll "abacus /readyz" 30 curl -fs -o /dev/null "http://127.0.0.1:$HTTP/readyz"
log "abacus up on $HTTP (SQLite + DynamoDB + remote-write, 1 s windows)"

# ---------------------------------------------------------------- known values
for v in 3 4; do
    curl -fsS -o /dev/null "http://127.0.0.1:$HTTP/metrics" -d "{\"name\":\"e2e_basic\",\"value\":$v,\"type\":\"counter\"}"
done
curl -fsS -o /dev/null "http://127.0.0.1:$HTTP/metrics" -d '{"name":"e2e_gauge","value":42.5,"type":"gauge"}'
promql_is() { [ "$("$PY" "$H" promql "http://127.0.0.1:$VM" "$1" 2>/dev/null)" = "$2" ]; }
dynamo_is() { [ "$("$PY" "$H" dynamo-total "http://127.0.0.1:$DYN" metrics-service "$1" 2>/dev/null)" = "$2" ]; }
poll "PromQL e2e_basic_total = 7" 60 promql_is 'max(max_over_time(e2e_basic_total[10m]))' 7
poll "PromQL e2e_gauge = 42.5" 60 promql_is 'max(max_over_time(e2e_gauge[10m]))' 42.5
poll "DynamoDB e2e_basic sum = 7" 60 dynamo_is e2e_basic 7
log "known values: VictoriaMetrics e2e_basic_total=7, e2e_gauge=42.5; DynamoDB e2e_basic=7"

# ---------------------------------------------------------------- outages under load
"$PY" "$H" push "http://127.0.0.1:$HTTP/metrics" e2e_load "$WORK/stop-load" "$WORK/sent" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!; PIDS+=("$LOAD_PID")
sleep 3
sink_metric() {  # sink_metric NAME SINK -> value summed over label sets (0 if absent)
    curl -fsS "http://127.0.0.1:$HTTP/metrics" | awk -v n="$1" -v s="sink=\"$2\"" \
        'index($0, n) == 1 && index($0, s) { v += $NF } END { print v + 0 }'
}
log "stopping dynalite for ${OUTAGE_SECS}s"
stop_pid "$DYN_PID"
sleep "$OUTAGE_SECS"
SPILL_DYN="$(sink_metric abacus_sink_spill_depth dynamodb)"
log "dynamodb spill depth during outage: $SPILL_DYN windows; restarting dynalite"
[ "${SPILL_DYN%.*}" -gt 0 ] || fail "dynamodb sink did not spill during the outage"
start_dynalite
spill_empty() { [ "$(sink_metric abacus_sink_spill_depth "$1")" = "0" ]; }
poll "dynamodb spill replayed" 60 spill_empty dynamodb
log "dynamodb spill replayed"

log "stopping victoria-metrics for ${OUTAGE_SECS}s"
stop_pid "$VM_PID"
sleep "$OUTAGE_SECS"
SPILL_RW="$(sink_metric abacus_sink_spill_depth remote_write)"
log "remote_write spill depth during outage: $SPILL_RW windows; restarting victoria-metrics"
[ "${SPILL_RW%.*}" -gt 0 ] || fail "remote-write sink did not spill during the outage"
start_vm
poll "remote_write spill replayed" 60 spill_empty remote_write
log "remote_write spill replayed"
sleep 2
touch "$WORK/stop-load"
wait "$LOAD_PID" || fail "load pusher"
forget_pid "$LOAD_PID"
SENT="$(cat "$WORK/sent")"
# No pause: the last samples are in the window that SIGTERM closes, which must still reach
# every sink before abacus exits.

curl -fsS "http://127.0.0.1:$HTTP/metrics" | grep '^abacus_sink_' | sort >"$WORK/sink-metrics.txt" || true
if grep -q '^abacus_sink_dropped_windows' "$WORK/sink-metrics.txt"; then
    cat "$WORK/sink-metrics.txt" >&2; fail "a sink dropped windows"
fi
log "sink counters: $(grep -E '^abacus_sink_(spilled_windows|written_windows)' "$WORK/sink-metrics.txt" | tr '\n' ' ')"

kill -TERM "$ABACUS_PID"
wait "$ABACUS_PID" || fail "abacus exit code $? on SIGTERM"
forget_pid "$ABACUS_PID"
log "abacus exited 0 on SIGTERM (final window handed to every sink)"

# ---------------------------------------------------------------- exactly once, totals
check_all() {
    "$PY" "$H" check "$WORK/abacus-data/abacus.db" "http://127.0.0.1:$DYN" metrics-service \
        "http://127.0.0.1:$VM" e2e_load "$SENT" >"$WORK/check.log" 2>&1
}
# VictoriaMetrics makes fresh samples searchable within a few seconds: poll.
poll "every window exactly once in SQLite, DynamoDB and VictoriaMetrics" 45 check_all
sed 's/^/    /' "$WORK/check.log" >&2
log "PASS (sent $SENT samples)"
