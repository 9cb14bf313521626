#!/usr/bin/env bash
# Slow and stalling stores: abacus serve (1 s windows) with SQLite, DynamoDB (dynalite) and
# remote-write (VictoriaMetrics), both remote stores reached through a loopback TCP proxy
# (faults_helpers.py proxy) that delays every request chunk and can stall completely.
#
# Phases under load: BASE_SECS no delay (baseline), SLOW_SECS with DELAY_S (2 s) per request
# chunk, STALL_SECS with nothing forwarded (requests time out after 5 s; what the proxy held
# is forwarded after the stall, so the store may receive a request abacus already gave up
# on and retried: a late duplicate), then recovery until queues and spills are empty.
# Asserts: every load request acknowledged, every window exactly once in SQLite, DynamoDB and
# VictoriaMetrics with totals equal to what was acknowledged (tests/e2e/storage_helpers.py
# check), no window dropped, and that the stall made both remote sinks retry and spill.
# Reports (does not assert) the load client's rate and latency per phase.
#
# VictoriaMetrics runs with -dedup.minScrapeInterval=1ms: remote-write has no idempotency key,
# so a late duplicate of a sample (same series, same timestamp) is removed by the receiver's
# deduplication, as DESIGN/README state. DynamoDB writes are idempotent by key.
#
# Installs victoria-metrics/curl/python3-venv (apt), dynalite (npm), boto3 (venv) like
# tests/e2e/storage.sh. Loopback only; everything started here is killed by the trap.
# Runtime ~2 min after the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/reliability"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
NODE_DIR="${ABACUS_E2E_NODE:-$TARGET/e2e-node}"
VENV="${ABACUS_E2E_STORAGE_VENV:-$TARGET/e2e-storage-venv}"
PROFILE="${PROFILE:-release}"
BASE_SECS="${BASE_SECS:-15}"
SLOW_SECS="${SLOW_SECS:-20}"
STALL_SECS="${STALL_SECS:-20}"
DELAY_S="${DELAY_S:-2}"
WORK="$(mktemp -d -t abacus-slow.XXXXXX)"
PIDS=()
T0=$SECONDS

cleanup() {
    touch "$WORK/stop-load" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

TAG=slowstore
# shellcheck source=../lib.sh
source "$ROOT/tests/lib.sh"
now() { date +%s.%N; }

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
H="$HERE/faults_helpers.py"
SH="$ROOT/tests/e2e/storage_helpers.py"

build_abacus

read -r HTTP VM DYN PVM PDYN <<<"$("$PY" -c '
import socket
s=[socket.socket() for _ in range(5)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"

# ---------------------------------------------------------------- stores and proxies
victoria-metrics -httpListenAddr "127.0.0.1:$VM" -storageDataPath "$WORK/vm" -retentionPeriod 1d \
    -search.latencyOffset 0s -dedup.minScrapeInterval=1ms >>"$WORK/vm.log" 2>&1 &
PIDS+=("$!")
poll "victoria-metrics /health" 30 curl -fs -o /dev/null "http://127.0.0.1:$VM/health"
"$NODE_DIR/node_modules/.bin/dynalite" --host 127.0.0.1 --port "$DYN" --path "$WORK/dynalite" \
    --createTableMs 100 >>"$WORK/dynalite.log" 2>&1 &
PIDS+=("$!")
poll "dynalite" 30 bash -c "curl -s -o /dev/null http://127.0.0.1:$DYN/"
DELAY="$WORK/delay"; STALL="$WORK/stall"
echo 0 >"$DELAY"
python3 "$H" proxy "$PVM" "$VM" "$DELAY" "$STALL" "$WORK/proxy-vm.log" 2>>"$WORK/proxy-vm.log" &
PIDS+=("$!")
python3 "$H" proxy "$PDYN" "$DYN" "$DELAY" "$STALL" "$WORK/proxy-dyn.log" 2>>"$WORK/proxy-dyn.log" &
PIDS+=("$!")
poll "proxies" 10 bash -c "curl -fs -o /dev/null http://127.0.0.1:$PVM/health"
log "victoria-metrics $VM (proxy $PVM), dynalite $DYN (proxy $PDYN)"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
"$ABACUS" serve --http-addr "127.0.0.1:$HTTP" --otlp-http-addr off --otlp-grpc-addr off --statsd-addr off \
    --window-ms 1000 --data-dir "$WORK/abacus-data" \
    --remote-write-url "http://127.0.0.1:$PVM/api/v1/write" \
    --dynamodb-endpoint "http://127.0.0.1:$PDYN" --dynamodb-table metrics-service \
    >"$WORK/abacus.log" 2>&1 &
ABACUS_PID=$!; PIDS+=("$ABACUS_PID")
poll "abacus /readyz" 30 curl -fs -o /dev/null "http://127.0.0.1:$HTTP/readyz"
log "abacus up on $HTTP (SQLite + DynamoDB + remote-write through the proxies, 1 s windows)"

sink_metric() {  # sink_metric NAME SINK -> value summed over label sets (0 if absent)
    curl -fsS "http://127.0.0.1:$HTTP/metrics" | awk -v n="$1" -v s="sink=\"$2\"" \
        'index($0, n) == 1 && index($0, s) { v += $NF } END { print v + 0 }'
}
counters() {
    local s out=""
    for s in remote_write dynamodb; do
        out+="$s: written=$(sink_metric abacus_sink_written_windows $s) retries=$(sink_metric abacus_sink_retries $s)"
        out+=" spilled=$(sink_metric abacus_sink_spilled_windows $s) queue=$(sink_metric abacus_sink_queue_depth $s)"
        out+=" spill=$(sink_metric abacus_sink_spill_depth $s) dropped=$(sink_metric abacus_sink_dropped_windows $s); "
    done
    echo "$out"
}
drained() {
    local s
    for s in remote_write dynamodb; do
        # The gauge is set right after a window is handed over: 1 = only the newest window.
        [ "$(sink_metric abacus_sink_queue_depth $s)" -le 1 ] || return 1
        [ "$(sink_metric abacus_sink_spill_depth $s)" = "0" ] || return 1
    done
}

# ---------------------------------------------------------------- phases under load
PHASES="$WORK/phases"
"$PY" "$H" load "http://127.0.0.1:$HTTP/metrics" slow_load "$WORK/stop-load" "$WORK/requests" 2 400 \
    >"$WORK/load.log" 2>&1 &
LOAD_PID=$!; PIDS+=("$LOAD_PID")
echo "baseline $(now)" >>"$PHASES"
sleep "$BASE_SECS"
log "baseline: $(counters)"

echo "$DELAY_S" >"$DELAY"
echo "slow $(now)" >>"$PHASES"
log "stores slow: ${DELAY_S} s per request chunk for ${SLOW_SECS}s"
sleep "$SLOW_SECS"
log "slow: $(counters)"

touch "$STALL"
echo "stall $(now)" >>"$PHASES"
log "stores stalled (nothing forwarded) for ${STALL_SECS}s"
sleep "$STALL_SECS"
log "stalled: $(counters)"
SPILLED_RW="$(sink_metric abacus_sink_spilled_windows remote_write)"
SPILLED_DY="$(sink_metric abacus_sink_spilled_windows dynamodb)"
rm -f "$STALL"
echo 0 >"$DELAY"
echo "recovery $(now)" >>"$PHASES"
poll "queues and spills empty" 120 drained
log "recovered: $(counters)"
echo "end $(now)" >>"$PHASES"
sleep 2
touch "$WORK/stop-load"
wait "$LOAD_PID" || fail "load client"
forget_pid "$LOAD_PID"

curl -fsS "http://127.0.0.1:$HTTP/metrics" | grep '^abacus_sink_' | sort >"$WORK/sink-metrics.txt" || true
if grep -q '^abacus_sink_dropped_windows' "$WORK/sink-metrics.txt"; then
    cat "$WORK/sink-metrics.txt" >&2; fail "a sink dropped windows"
fi
[ "${SPILLED_RW%.*}" -gt 0 ] || fail "remote_write did not spill during the stall"
[ "${SPILLED_DY%.*}" -gt 0 ] || fail "dynamodb did not spill during the stall"
kill -TERM "$ABACUS_PID"
wait "$ABACUS_PID" || fail "abacus exit code $? on SIGTERM"
forget_pid "$ABACUS_PID"
log "abacus exited 0 on SIGTERM"
grep -E 'Sink stopped' "$WORK/abacus.log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    /' >&2 || true
for p in vm dyn; do log "proxy $p: $(tail -n1 "$WORK/proxy-$p.log")"; done

# ---------------------------------------------------------------- ingest per phase (reported)
"$PY" - "$WORK/requests" "$PHASES" "$H" <<'EOF' >&2
import sys, importlib.util
reqs, phases, helpers = sys.argv[1:]
spec = importlib.util.spec_from_file_location("h", helpers); h = importlib.util.module_from_spec(spec)
spec.loader.exec_module(h)
log = h.read_log(reqs)
ph = [(l.split()[0], float(l.split()[1])) for l in open(phases)]
print("    phase      secs  requests  not-ok  req/s   p50 ms  p99 ms  max ms")
for (name, t0), (_, t1) in zip(ph, ph[1:]):
    rs = [r for r in log if t0 <= r[0] < t1]
    lat = sorted((d - s) * 1000 for s, d, st, _ in rs if st == "ok")
    bad = sum(1 for r in rs if r[2] != "ok")
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    print(f"    {name:<9} {t1 - t0:5.1f} {len(rs):9d} {bad:7d} {len(rs) / (t1 - t0):6.0f} "
          f"{q(0.5):8.2f} {q(0.99):7.2f} {lat[-1] if lat else float('nan'):7.2f}")
EOF
NOT_OK="$(awk '$3 != "ok"' "$WORK/requests" | wc -l)"
[ "$NOT_OK" -eq 0 ] || fail "$NOT_OK load requests were not acknowledged"
SENT="$(awk '{ s += $4 } END { print s + 0 }' "$WORK/requests")"

check_all() {
    "$PY" "$SH" check "$WORK/abacus-data/abacus.db" "http://127.0.0.1:$DYN" metrics-service \
        "http://127.0.0.1:$VM" slow_load "$SENT" >"$WORK/check.out" 2>&1
}
poll "every window exactly once in SQLite, DynamoDB and VictoriaMetrics" 60 check_all
sed 's/^/    /' "$WORK/check.out" >&2
log "PASS (acknowledged total $SENT)"
