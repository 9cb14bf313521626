#!/usr/bin/env bash
# Socket-level ingest measurements of `abacus serve`, side by side with the Etsy StatsD daemon.
# Loopback only, bounded in time (~2-3 min after the build). Prints Markdown tables.
#
#   crates/abacus-bench/run-server-bench.sh              # everything
#   SECS=3 STEP_SECS=2 crates/abacus-bench/run-server-bench.sh
#   CRITERION=1 crates/abacus-bench/run-server-bench.sh  # also `cargo bench --bench server`
#
# Needs: cargo, python3 (free ports), node + npm (Etsy statsd 0.9, installed once into
# target/srvbench/etsy). abacus gets its default 4 MiB StatsD receive buffer (capped by
# net.core.rmem_max); Etsy statsd 0.9 has no receive-buffer option and runs with
# net.core.rmem_default.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-5}            # per HTTP load run
STEP_SECS=${STEP_SECS:-3}  # per StatsD rate step
CONNS=${CONNS:-4}
ABACUS_RATES_40=${ABACUS_RATES_40:-250000,500000,1000000,1500000,2000000,2500000,3000000,4000000}
ABACUS_RATES_1=${ABACUS_RATES_1:-50000,100000,150000,200000,250000,300000,400000}
ETSY_RATES_40=${ETSY_RATES_40:-50000,100000,150000,200000,250000,300000,400000}
ETSY_RATES_1=${ETSY_RATES_1:-10000,15000,20000,25000,30000,40000,60000}

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p abacus-cli -p abacus-bench --bin abacus --bin ingest_load --bin ingest_latency
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { # $1 = tcp|udp
  python3 -c 'import socket,sys
k = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, k); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}
wait_tcp() { # $1 = port
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$1" >&2; exit 1
}

# --- Etsy statsd (npm), installed once ---------------------------------------------------
ETSY_DIR=target/srvbench/etsy
if [ ! -f "$ETSY_DIR/node_modules/statsd/stats.js" ]; then
  mkdir -p "$ETSY_DIR"
  (cd "$ETSY_DIR" && npm install --no-audit --no-fund --silent statsd@0.9 >/dev/null)
fi

# --- start the servers ----------------------------------------------------------------------
H=$(free_port tcp); O=$(free_port tcp); S=$(free_port udp)
"$BIN/abacus" serve --http-addr "127.0.0.1:$H" --otlp-http-addr "127.0.0.1:$O" \
  --otlp-grpc-addr off --statsd-addr "127.0.0.1:$S" --max-series 100000 --log info \
  >"$WORK/abacus.log" 2>&1 &
PIDS+=($!); ABACUS_PID=$!
ES=$(free_port udp); EM=$(free_port tcp)
cat >"$WORK/etsy.js" <<JS
{ port: $ES, address: "127.0.0.1", mgmt_address: "127.0.0.1", mgmt_port: $EM,
  flushInterval: 3600000, backends: ["./backends/console"], console: { prettyprint: false } }
JS
(cd "$ETSY_DIR/node_modules/statsd" && exec node stats.js "$WORK/etsy.js") >"$WORK/etsy.log" 2>&1 &
PIDS+=($!)
wait_tcp "$H"; wait_tcp "$O"; wait_tcp "$EM"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$H/readyz" >/dev/null && break; sleep 0.1; done

echo "## Machine"
echo
echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(uname -r)"
echo "net.core.rmem_default $(cat /proc/sys/net/core/rmem_default), rmem_max $(cat /proc/sys/net/core/rmem_max)"
echo "abacus StatsD receive buffer: $(sed 's/\x1b\[[0-9;]*m//g' "$WORK/abacus.log" | grep -o 'recv_buffer=[0-9]*' || echo '?') (kernel reports double the request)"
echo "Etsy statsd $(node -p "require('./$ETSY_DIR/node_modules/statsd/package.json').version") on node $(node --version)"
echo

echo "## In-process latency of one sample (parse + apply)"
echo
"$BIN/ingest_latency"
echo

HTTP_HEAD='| protocol | load | requests | failed | points acknowledged | server-counted samples | points/s acknowledged | requests/s |
|---|---|---:|---:|---:|---:|---:|---:|'
echo "## OTLP/HTTP protobuf and JSON over loopback ($CONNS connections, ingest_load = reqwest, 1 client thread)"
echo
echo "$HTTP_HEAD"
"$BIN/ingest_load" otlp --url "http://127.0.0.1:$O/v1/metrics" --api "http://127.0.0.1:$H" --secs "$SECS" --conns "$CONNS"
"$BIN/ingest_load" json --url "http://127.0.0.1:$H/metrics" --api "http://127.0.0.1:$H" --secs "$SECS" --conns "$CONNS" --items 1000
echo

echo "## StatsD over UDP (one sender thread, ${STEP_SECS} s per rate step; stops at the first lossy step)"
echo
echo 'A step is "sender-limited" when the sender thread reached < 97 % of the target rate (it shares the 2 cores with the server).'
echo
echo '| server | lines/packet | bytes/packet | target lines/s | sent lines/s | lines sent | lines counted | lost | RcvbufErrors | send errors | |'
echo '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|'
"$BIN/ingest_load" statsd --label abacus --addr "127.0.0.1:$S" --api "http://127.0.0.1:$H" --lines-per-packet 40 --secs "$STEP_SECS" --rates "$ABACUS_RATES_40"
"$BIN/ingest_load" statsd --label etsy --addr "127.0.0.1:$ES" --etsy-admin "127.0.0.1:$EM" --lines-per-packet 40 --secs "$STEP_SECS" --rates "$ETSY_RATES_40"
"$BIN/ingest_load" statsd --label abacus --addr "127.0.0.1:$S" --api "http://127.0.0.1:$H" --lines-per-packet 1 --secs "$STEP_SECS" --rates "$ABACUS_RATES_1"
"$BIN/ingest_load" statsd --label etsy --addr "127.0.0.1:$ES" --etsy-admin "127.0.0.1:$EM" --lines-per-packet 1 --secs "$STEP_SECS" --rates "$ETSY_RATES_1"
echo
kill -0 "$ABACUS_PID" 2>/dev/null || { echo "abacus serve died:" >&2; cat "$WORK/abacus.log" >&2; exit 1; }

if [ "${CRITERION:-0}" = 1 ]; then
  cargo bench -p abacus-bench --bench server 2>&1 | grep -E '^server/|thrpt:|time:'
fi
