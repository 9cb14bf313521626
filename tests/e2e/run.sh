#!/usr/bin/env bash
# End-to-end check of `abacus serve` with real third-party clients and Prometheus.
#
# Installs what it needs (Debian prometheus, a Python venv with the OpenTelemetry SDK and
# OTLP exporters), builds abacus, starts it on free loopback ports, pushes known values over
# OTLP/HTTP and OTLP/gRPC from Python, reads them back through the query API, lets a private
# Prometheus scrape /metrics until PromQL returns the expected value, and runs
# `promtool check metrics` on the exposition. Idempotent; cleans up after itself.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/e2e"
VENV="${ABACUS_E2E_VENV:-$ROOT/target/e2e-venv}"
WORK="$(mktemp -d -t abacus-e2e.XXXXXX)"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

log() { printf '[e2e] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; for f in "$WORK"/*.log; do [ -f "$f" ] && { log "--- $f"; tail -n 30 "$f" >&2; }; done; exit 1; }

# poll DESCRIPTION SECONDS COMMAND...: retries COMMAND until it succeeds or time runs out.
poll() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}

# ---------------------------------------------------------------- install
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! python3 -m venv --help >/dev/null 2>&1 || ! command -v curl >/dev/null; then
    log "installing prometheus, python3-venv, curl"
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus python3-venv curl >/dev/null
fi
if ! "$VENV/bin/python" -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc' 2>/dev/null; then
    log "creating Python venv in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-grpc
fi

# ---------------------------------------------------------------- build and start abacus
log "building abacus"
cargo build -q --manifest-path "$ROOT/Cargo.toml" -p abacus-cli
ABACUS="$ROOT/target/debug/abacus"

free_ports() {
    "$VENV/bin/python" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
read -r HTTP OTLP_HTTP OTLP_GRPC STATSD PROM <<<"$(free_ports 5)"

"$ABACUS" serve --http-addr "127.0.0.1:$HTTP" --otlp-http-addr "127.0.0.1:$OTLP_HTTP" \
    --otlp-grpc-addr "127.0.0.1:$OTLP_GRPC" --statsd-addr "127.0.0.1:$STATSD" --window-ms 1000 \
    >"$WORK/abacus.log" 2>&1 &
ABACUS_PID=$!
PIDS+=("$ABACUS_PID")
poll "abacus /readyz" 30 curl -fsS -o /dev/null "http://127.0.0.1:$HTTP/readyz"
log "abacus up: http=$HTTP otlp_http=$OTLP_HTTP otlp_grpc=$OTLP_GRPC statsd=$STATSD"

# ---------------------------------------------------------------- push over OTLP from Python
export OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta
"$VENV/bin/python" "$HERE/push_otlp.py" http "http://127.0.0.1:$OTLP_HTTP/v1/metrics" e2e_http >"$WORK/push-http.log" 2>&1 \
    || fail "python OTLP/HTTP push"
"$VENV/bin/python" "$HERE/push_otlp.py" grpc "127.0.0.1:$OTLP_GRPC" e2e_grpc >"$WORK/push-grpc.log" 2>&1 \
    || fail "python OTLP/gRPC push"

# query_total METRIC FIELD: sums FIELD over all windows of METRIC.
query_total() {
    curl -fsS "http://127.0.0.1:$HTTP/metrics/$1?service=e2e" \
        | "$VENV/bin/python" -c "import json,sys; print(sum(w['$2'] for w in json.load(sys.stdin)))"
}
check_value() { [ "$(query_total "$1" "$2")" = "$3" ]; }
for p in e2e_http e2e_grpc; do
    poll "$p counter via query API" 30 check_value "${p}_orders" sum 12.0
    poll "$p histogram count via query API" 30 check_value "${p}_duration" count 4
    poll "$p histogram sum via query API" 30 check_value "${p}_duration" sum 295.0
    log "query API: ${p}_orders=12, ${p}_duration count=4 sum=295"
done

# ---------------------------------------------------------------- promtool
curl -fsS "http://127.0.0.1:$HTTP/metrics" >"$WORK/exposition.txt"
if promtool check metrics <"$WORK/exposition.txt" >"$WORK/promtool.log" 2>&1; then
    log "promtool check metrics: clean"
else
    rc=$?
    cat "$WORK/promtool.log" >&2
    fail "promtool check metrics exited $rc (3 = lint warnings only)"
fi

# ---------------------------------------------------------------- Prometheus scrape + PromQL
mkdir -p "$WORK/prom-data"
cat >"$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: abacus
    static_configs:
      - targets: ['127.0.0.1:$HTTP']
YML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PROM" >"$WORK/prometheus.log" 2>&1 &
PIDS+=("$!")
promql_is() {
    local got
    got="$(curl -fsS "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode "query=$1" 2>/dev/null \
        | "$VENV/bin/python" -c "import json,sys; r=json.load(sys.stdin)['data']['result']; print(r[0]['value'][1] if r else '')" 2>/dev/null)" || return 1
    [ "$got" = "$2" ]
}
poll "PromQL e2e_http_orders_total" 60 promql_is 'sum(e2e_http_orders_total{service="e2e"})' 12
poll "PromQL e2e_grpc_duration_count" 60 promql_is 'sum(e2e_grpc_duration_count{service="e2e"})' 4
log "Prometheus scraped abacus: e2e_http_orders_total=12, e2e_grpc_duration_count=4"

# ---------------------------------------------------------------- graceful shutdown
kill -TERM "$ABACUS_PID"
if wait "$ABACUS_PID"; then log "abacus exited 0 on SIGTERM"; else fail "abacus exit code $? on SIGTERM"; fi
PIDS=("${PIDS[@]/$ABACUS_PID/}")
log "PASS"
