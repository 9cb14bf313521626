#!/usr/bin/env bash
# Disk full and read-only data directory, at startup and while running, on a real small
# filesystem (tmpfs mounted here; needs root / CAP_SYS_ADMIN, as in the project's container).
#
# Startup: a read-only filesystem (empty, and holding an existing abacus.db), a full one, and
# one with a few KiB left must each stop `abacus serve` with a clear error naming the data
# directory, exit code != 0, no hang.
# Runtime (SQLite + remote-write to VictoriaMetrics, 1 s windows, load running): the disk is
# filled for FAULT_SECS, freed, then the filesystem is remounted read-only for FAULT_SECS and
# back. Asserts: every request of the load client is acknowledged (ingest unaffected), the
# query API answers during the faults, SQLite failures are counted (retries, dropped
# windows), every window missing from SQLite is counted as dropped and every window present
# has the right sum, and VictoriaMetrics got every window (timestamps = window ends, last
# cumulative = everything acknowledged).
#
# Installs victoria-metrics and curl with apt-get if missing. Loopback only; every process
# started here is killed and every mount unmounted by the trap. Runtime ~60 s after the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/reliability"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${PROFILE:-release}"
FAULT_SECS="${FAULT_SECS:-8}"
WORK="$(mktemp -d -t abacus-disk.XXXXXX)"
MNT="$WORK/mnt"
PIDS=()
T0=$SECONDS

cleanup() {
    touch "$WORK/stop-load" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true; fi
    if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

TAG=diskfault
POLL_SLEEP=0.2
# shellcheck source=../lib.sh
source "$ROOT/tests/lib.sh"

# ---------------------------------------------------------------- install
if ! command -v victoria-metrics >/dev/null || ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
    log "installing victoria-metrics, curl, python3"
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends victoria-metrics curl python3 >/dev/null
fi
PY=python3
H="$HERE/faults_helpers.py"
mkdir -p "$MNT"
mount -t tmpfs -o size=64k tmpfs "$MNT" 2>/dev/null && umount "$MNT" \
    || fail "cannot mount a tmpfs (this script needs root with CAP_SYS_ADMIN)"

build_abacus

read -r HTTP VM <<<"$("$PY" -c '
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"
SERVE=(serve --http-addr "127.0.0.1:$HTTP" --otlp-http-addr off --otlp-grpc-addr off --statsd-addr off
       --window-ms 1000 --data-dir "$MNT/data")

# ---------------------------------------------------------------- startup
# expect_startup_error NAME: abacus must exit != 0 within 20 s naming the data directory.
expect_startup_error() {
    local name="$1" rc=0
    timeout 20 "$ABACUS" "${SERVE[@]}" >"$WORK/start-$name.log" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || fail "$name: abacus started"
    [ "$rc" -ne 124 ] || fail "$name: abacus hung at startup"
    grep -q "$MNT/data" "$WORK/start-$name.log" || fail "$name: the error does not name the data directory"
    log "startup, $name: exit $rc: $(grep '^abacus:' "$WORK/start-$name.log" | tail -n 1)"
}
fresh_mount() { mountpoint -q "$MNT" && umount "$MNT"; mount -t tmpfs -o "size=$1" tmpfs "$MNT"; }

fresh_mount 512k; mkdir "$MNT/data"; mount -o remount,ro "$MNT"
expect_startup_error readonly-empty
fresh_mount 4m
timeout 20 "$ABACUS" "${SERVE[@]}" >"$WORK/start-ok.log" 2>&1 &
pid=$!; PIDS+=("$pid")
poll "abacus /readyz" 20 curl -fs -o /dev/null "http://127.0.0.1:$HTTP/readyz"
curl -fsS -o /dev/null "http://127.0.0.1:$HTTP/metrics" -d '{"name":"diskfault_seed","value":1,"type":"counter"}'
kill -TERM "$pid"; wait "$pid" || fail "abacus exit on SIGTERM"; forget_pid "$pid"
[ -s "$MNT/data/abacus.db" ] || fail "no abacus.db written"
mount -o remount,ro "$MNT"
expect_startup_error readonly-existing-db
fresh_mount 512k; dd if=/dev/zero of="$MNT/filler" bs=4k >/dev/null 2>&1 || true
expect_startup_error full
fresh_mount 512k; dd if=/dev/zero of="$MNT/filler" bs=4k count=120 >/dev/null 2>&1 || true
expect_startup_error nearly-full
umount "$MNT"
DATA_DB="$MNT/data/abacus.db"

# ---------------------------------------------------------------- runtime
# A loop-mounted ext4 (errors=remount-ro): filled with a file for the disk-full phase, then
# made read-only by the kernel through /sys/fs/ext4/<dev>/trigger_fs_error, exactly what
# ext4 does on an I/O error (a plain `mount -o remount,ro` is refused while SQLite holds the
# files open for writing). It stays read-only until the end.
victoria-metrics -httpListenAddr "127.0.0.1:$VM" -storageDataPath "$WORK/vm" -retentionPeriod 1d \
    -search.latencyOffset 0s >>"$WORK/vm.log" 2>&1 &
PIDS+=("$!")
poll "victoria-metrics /health" 30 curl -fs -o /dev/null "http://127.0.0.1:$VM/health"
truncate -s 16M "$WORK/ext4.img"
mkfs.ext4 -q -F "$WORK/ext4.img"
mount -o loop,errors=remount-ro "$WORK/ext4.img" "$MNT" || fail "cannot loop-mount an ext4 image"
DEV="$(basename "$(findmnt -no SOURCE "$MNT")")"
[ -w "/sys/fs/ext4/$DEV/trigger_fs_error" ] || fail "no /sys/fs/ext4/$DEV/trigger_fs_error"
"$ABACUS" "${SERVE[@]}" --remote-write-url "http://127.0.0.1:$VM/api/v1/write" >"$WORK/abacus.log" 2>&1 &
ABACUS_PID=$!; PIDS+=("$ABACUS_PID")
poll "abacus /readyz" 30 curl -fs -o /dev/null "http://127.0.0.1:$HTTP/readyz"
log "abacus up on $HTTP: SQLite on a 16 MiB ext4 ($DEV) + remote-write to victoria-metrics on $VM"
"$PY" "$H" load "http://127.0.0.1:$HTTP/metrics" diskfault_load "$WORK/stop-load" "$WORK/requests" 2 300 \
    >"$WORK/load.log" 2>&1 &
LOAD_PID=$!; PIDS+=("$LOAD_PID")

sink_metric() {  # sink_metric NAME SINK -> value summed over label sets (0 if absent)
    curl -fsS "http://127.0.0.1:$HTTP/metrics" | awk -v n="$1" -v s="sink=\"$2\"" \
        'index($0, n) == 1 && index($0, s) { v += $NF } END { print v + 0 }'
}
counters() {
    printf 'sqlite written=%s retries=%s dropped=%s queue=%s; remote_write written=%s spilled=%s dropped=%s' \
        "$(sink_metric abacus_sink_written_windows sqlite)" "$(sink_metric abacus_sink_retries sqlite)" \
        "$(sink_metric abacus_sink_dropped_windows sqlite)" "$(sink_metric abacus_sink_queue_depth sqlite)" \
        "$(sink_metric abacus_sink_written_windows remote_write)" "$(sink_metric abacus_sink_spilled_windows remote_write)" \
        "$(sink_metric abacus_sink_dropped_windows remote_write)"
}
query_ok() { curl -fsS -o /dev/null "http://127.0.0.1:$HTTP/metrics/diskfault_load"; }
# The gauge is set right after a window is handed over: 1 = only the newest window queued.
queue_empty() { [ "$(sink_metric abacus_sink_queue_depth sqlite)" -le 1 ]; }
sqlite_failing() { [ "$(sink_metric abacus_sink_retries sqlite)" != "$1" ]; }
sleep 3
log "before faults: $(counters)"

R0="$(sink_metric abacus_sink_retries sqlite)"
dd if=/dev/zero of="$MNT/filler" bs=64k >/dev/null 2>&1 || true
log "disk full ($(df -h --output=avail "$MNT" | tail -n1 | tr -d ' ') free) for ${FAULT_SECS}s"
poll "SQLite write failures to be counted (disk full)" 20 sqlite_failing "$R0"
sleep "$FAULT_SECS"
query_ok || fail "query API failed while the disk was full"
log "disk full: $(counters)"
rm -f "$MNT/filler"
poll "SQLite queue to drain after the disk was freed" 90 queue_empty
log "disk freed: $(counters)"

R1="$(sink_metric abacus_sink_retries sqlite)"
echo 1 >"/sys/fs/ext4/$DEV/trigger_fs_error"
log "ext4 error triggered: filesystem now $(findmnt -no OPTIONS "$MNT" | tr ',' '\n' | grep -E '^(ro|rw|emergency_ro)$' | tr '\n' ' ')for ${FAULT_SECS}s and until the end"
poll "SQLite write failures to be counted (read-only)" 20 sqlite_failing "$R1"
sleep "$FAULT_SECS"
query_ok || fail "query API failed while the filesystem was read-only"
log "read-only: $(counters)"

touch "$WORK/stop-load"
wait "$LOAD_PID" || fail "load client"
forget_pid "$LOAD_PID"
sleep 0.3
curl -fsS "http://127.0.0.1:$HTTP/metrics/diskfault_load" >"$WORK/memory-windows.json" || fail "query API"
kill -TERM "$ABACUS_PID"
wait "$ABACUS_PID" || fail "abacus exit code $? on SIGTERM"
forget_pid "$ABACUS_PID"
log "after SIGTERM: abacus exited 0; log: $(grep -c 'Write failed' "$WORK/abacus.log") 'Write failed' lines, $(grep -c 'Dropped windows' "$WORK/abacus.log") 'Dropped windows' lines"
grep -E 'Sink stopped|did not drain' "$WORK/abacus.log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    /' >&2 || true

# Sink counters at exit, from the shutdown log line (the server is gone now).
stopped() {  # stopped SINK FIELD
    sed -E 's/\x1b\[[0-9;]*m//g' "$WORK/abacus.log" | grep 'Sink stopped' | grep -E "sink=\"?$1" \
        | sed -E "s/.*[ ]$2=([0-9]+).*/\1/" | tail -n1
}
SQ_DROPPED="$(stopped sqlite dropped)"
SQ_WRITTEN="$(stopped sqlite written)"
RW_DROPPED="$(stopped remote_write dropped)"
RW_WRITTEN="$(stopped remote_write written)"
[ -n "$SQ_WRITTEN" ] && [ -n "$RW_WRITTEN" ] || fail "a sink did not log 'Sink stopped' (did not drain before the shutdown timeout?)"
# The filesystem is read-only now: read a copy of the database (SQLite applies the WAL).
mkdir "$WORK/dbcopy"
cp "$MNT/data/abacus.db"* "$WORK/dbcopy/"

check() {
    "$PY" - "$WORK/dbcopy/abacus.db" "$WORK/memory-windows.json" "http://127.0.0.1:$VM" "$WORK/requests" \
        "$SQ_DROPPED" "$RW_DROPPED" "$H" "$SQ_WRITTEN" "$RW_WRITTEN" <<'EOF'
import json, sys, importlib.util
db, mem_file, vm, reqs, sq_dropped, rw_dropped, helpers, sq_written, rw_written = sys.argv[1:]
spec = importlib.util.spec_from_file_location("h", helpers); h = importlib.util.module_from_spec(spec)
spec.loader.exec_module(h)
sys.path.insert(0, "")
import urllib.parse, urllib.request
errors = []
log = h.read_log(reqs)
acked = sum(v for _, _, st, v in log if st == "ok")
not_ok = sum(1 for _, _, st, _ in log if st != "ok")
if not_ok:
    errors.append(f"{not_ok} load requests were not acknowledged (ingest must be unaffected)")
mem = json.load(open(mem_file))
mem_w = {w["start_ms"]: (w["end_ms"], w["sum"]) for w in mem}
q = urllib.parse.urlencode({"match[]": "diskfault_load_total"})
vs = []
with urllib.request.urlopen(f"{vm}/api/v1/export?{q}", timeout=10) as r:
    for line in r.read().decode().splitlines():
        if line.strip():
            s = json.loads(line); vs += list(zip(s["timestamps"], s["values"]))
vs.sort()
# The final window (closed by SIGTERM) is not in the memory list taken before it: take it
# from SQLite, or, when SQLite dropped it (the disk stays read-only to the end), from
# remote-write's cumulative series (its samples after the last window memory listed).
sq = {s: (e, v) for s, e, v in h.sqlite_windows(db, "diskfault_load")}
last_mem_end = max(e for e, _ in mem_w.values())
final = {s: ev for s, ev in sq.items() if s >= last_mem_end}
vm_at_mem_end = max((v for t, v in vs if t <= last_mem_end), default=0.0)
vm_after = [(t, v) for t, v in vs if t > last_mem_end]
if final:
    final_sum = sum(v for _, v in final.values())
    final_ends = [e for e, _ in final.values()]
else:
    final_sum = (vm_after[-1][1] - vm_at_mem_end) if vm_after else 0.0
    final_ends = [t for t, _ in vm_after]
missing = sorted(set(mem_w) - set(sq))
wrong = [s for s in set(mem_w) & set(sq) if sq[s] != mem_w[s]]
mem_total = sum(v for _, v in mem_w.values()) + final_sum
print(f"load: {len(log)} requests, {acked:g} acknowledged, {not_ok} not")
print(f"memory (query API): {len(mem_w)} windows, total {sum(v for _, v in mem_w.values()):g} (+ final window {final_sum:g}, from {'SQLite' if final else 'remote-write'})")
print(f"sqlite: {len(sq)} windows stored, {len(missing)} missing, {len(wrong)} with a wrong sum; sink dropped counter {sq_dropped}")
if mem_total != acked:
    errors.append(f"memory total {mem_total} != acknowledged {acked}")
if wrong:
    errors.append(f"sqlite windows with a wrong sum: {wrong[:5]}")
# Every window went to remote-write (it dropped none): each must be written or counted as
# dropped by the SQLite sink; the load metric's missing windows are among the dropped.
print(f"sink counters at exit: sqlite written {sq_written} + dropped {sq_dropped}; remote_write written {rw_written}")
if int(sq_written) + int(sq_dropped) != int(rw_written):
    errors.append(f"sqlite written {sq_written} + dropped {sq_dropped} != windows {rw_written}")
if len(missing) > int(sq_dropped):
    errors.append(f"{len(missing)} windows missing in SQLite but only {sq_dropped} counted as dropped")
if int(sq_dropped) == 0:
    errors.append("no SQLite window was dropped: the faults were not injected?")
ends = sorted([e for e, _ in mem_w.values()] + final_ends)
print(f"victoria-metrics: {len(vs)} samples, last cumulative {vs[-1][1] if vs else None}; remote_write dropped {rw_dropped}")
if [t for t, _ in vs] != ends:
    errors.append(f"victoria-metrics timestamps != window ends ({len(vs)} vs {len(ends)})")
if not vs or vs[-1][1] != acked:
    errors.append(f"victoria-metrics last cumulative != acknowledged {acked}")
if int(rw_dropped or 0) != 0:
    errors.append("remote_write dropped windows")
for e in errors:
    print("ERROR:", e)
sys.exit(1 if errors else 0)
EOF
}
check_quiet() { check >"$WORK/check.out" 2>&1; }
poll "every window in VictoriaMetrics, SQLite losses counted" 45 check_quiet || true
sed 's/^/    /' "$WORK/check.out" >&2
log "PASS"
