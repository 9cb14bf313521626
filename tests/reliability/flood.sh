#!/usr/bin/env bash
# Cardinality flood: the release server (max_series 10 000, SQLite sink on, 2 s windows)
# gets a set of "existing" series with known totals, then FLOOD_N (default 1 000 000)
# samples to FLOOD_N distinct service names over each of HTTP JSON, OTLP/HTTP (JSON) and
# StatsD UDP, one protocol after the other. RSS (VmRSS/VmHWM) is sampled every 0.5 s.
# Asserts:
#   * peak RSS <= idle RSS + the per-key bound of DESIGN.md "Bounded memory",
#   * the existing series' totals are exact (query API),
#   * every flood sample is either in its own series or in the overflow series
#     (admitted + overflow == accepted, per protocol), abacus_series_refused_total counts
#     the refused ones, and live series stay under max_series + max_overflow_series.
# Output in FLOOD_OUT (default target/flood): rss.csv, report.json, server.log.
# Loopback only; every wait has a deadline; ~3-5 min on 2 vCPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/reliability"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${FLOOD_OUT:-$TARGET/flood}"
N="${FLOOD_N:-1000000}"
MAX_SERIES=10000
WINDOW_MS=2000
RETENTION_SECS=120
WORK="$(mktemp -d -t abacus-flood.XXXXXX)"
PIDS=()
T0=$SECONDS

cleanup() {
    touch "$WORK/stop" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
log() { printf '[flood %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
fail() { log "FAIL: $*"; [ -f "$OUT/server.log" ] && tail -n 30 "$OUT/server.log" >&2; exit 1; }
poll() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
        sleep 0.3
    done
}

if ! command -v curl >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
fi
D="$HERE/drive.py"
# ABACUS_BIN: a prebuilt binary (a target dir shared by several checkouts may hold another one's).
if [ -z "${ABACUS_BIN:-}" ]; then
    log "building the release binary"
    cargo build -q --release --manifest-path "$ROOT/Cargo.toml" -p abacus-cli
fi
ABACUS="${ABACUS_BIN:-$TARGET/release/abacus}"
mkdir -p "$OUT"

read -r HTTP OTLP STATSD <<<"$(python3 -c '
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1",0))
print(s[0].getsockname()[1], s[1].getsockname()[1], u.getsockname()[1])')"
# Idle series are never evicted during the run, so the admitted flood series stay
# countable (eviction would free slots and admit more).
cat >"$WORK/abacus.toml" <<EOF
window_ms = $WINDOW_MS
retention_secs = $RETENTION_SECS
max_series = $MAX_SERIES
evict_after_idle_windows = 0
EOF
"$ABACUS" serve --config "$WORK/abacus.toml" --http-addr "127.0.0.1:$HTTP" --otlp-http-addr "127.0.0.1:$OTLP" \
    --otlp-grpc-addr off --statsd-addr "127.0.0.1:$STATSD" --data-dir "$WORK/data" \
    >"$OUT/server.log" 2>&1 &
SERVER=$!
PIDS+=($SERVER)
URL="http://127.0.0.1:$HTTP"
poll "abacus ready" 60 curl -sf "$URL/readyz" -o /dev/null
python3 "$D" flood-existing "$URL" "$OUT/existing.json"
sleep 3 # two windows: the existing series are in the store and SQLite
BASELINE_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")
log "server pid $SERVER, idle RSS $((BASELINE_KIB / 1024)) MiB; flooding $N names per protocol"
python3 "$D" sample "$SERVER" "$URL" "$OUT/rss.csv" "$WORK/stop" 0.5 &
PIDS+=($!)
for proto in http otlp statsd; do
    timeout 600 python3 "$D" flood "$proto" "$URL" "http://127.0.0.1:$OTLP" "$STATSD" "$N" "$OUT/flood-$proto.json" \
        || fail "flood over $proto failed"
done
sleep $((2 * WINDOW_MS / 1000 + 1)) # the refusals are counted at window close
touch "$WORK/stop"
python3 "$D" soak-check "$URL" "$OUT/existing.json" || fail "existing series changed"
python3 "$D" flood-check "$URL" "$OUT/report.json" "$OUT/rss.csv" "$BASELINE_KIB" "$MAX_SERIES" \
    $((RETENTION_SECS * 1000 / WINDOW_MS)) "$OUT"/flood-http.json "$OUT"/flood-otlp.json "$OUT"/flood-statsd.json \
    || fail "flood check"
kill -TERM "$SERVER"
for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.3; done
kill -0 "$SERVER" 2>/dev/null && fail "server did not stop within 30 s"
log "PASS ($((SECONDS - T0)) s); report in $OUT/report.json"
