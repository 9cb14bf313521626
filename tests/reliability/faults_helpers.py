"""Helpers for the fault-injection scripts in tests/reliability/ (standard library only).

  load URL NAME STOP_FILE LOG [THREADS] [MAX_SECS]
      POSTs {"name": NAME, "value": v, "type": "counter"} (v = 1..9, deterministic) from
      THREADS threads until STOP_FILE exists. Every request is logged to LOG as
      "t_send t_done status v" (Unix seconds, status "ok", "refused" = the connection was
      refused or reset before the request was sent so the server cannot have seen it, "err" =
      any other failure: the server may or may not have applied it).
  snapshot DB                     prints JSON [[window_start, window_end, sum], ..] of every
                                  committed window of the load metric (read-only connection)
  kill9-check DB NAME LOG EVENTS WINDOW_MS
      the kill -9 bounds, see check_kill9().
  proxy LISTEN_PORT TARGET_PORT DELAY_FILE STALL_FILE LOG
      loopback TCP proxy: every chunk from the client is held for the number of seconds in
      DELAY_FILE (0 if absent) before it is forwarded; while STALL_FILE exists nothing is
      forwarded in either direction (connections stay open: the client sees a store that
      accepted the connection and never answers; what was held is forwarded afterwards, so a
      request the client gave up on may still reach the store: a late duplicate).
"""
import asyncio
import http.client
import json
import os
import sqlite3
import sys
import threading
import time


# ------------------------------------------------------------------ load client
def load(url, name, stop_file, log_file, threads=2, max_secs=600):
    threads, max_secs = int(threads), float(max_secs)
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    deadline = time.time() + max_secs
    lock = threading.Lock()
    out = open(log_file, "w", buffering=1)

    def worker(k):
        conn, i = None, 0
        while not os.path.exists(stop_file) and time.time() < deadline:
            v = 1 + (i * 7 + k) % 9
            i += 1
            body = json.dumps({"name": name, "value": v, "type": "counter"})
            t0 = time.time()
            status = "err"
            sent = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=5)
                    conn.connect()
                conn.putrequest("POST", path)
                conn.putheader("content-type", "application/json")
                conn.putheader("content-length", str(len(body)))
                conn.endheaders(body.encode())
                sent = True
                r = conn.getresponse()
                r.read()
                status = "ok" if r.status == 200 else "err"
            except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
                # Refused: nothing reached the server. Reset/broken pipe before the request
                # was written: same. After it was written: unknown.
                status = "refused" if (isinstance(e, ConnectionRefusedError) or not sent) else "err"
                conn = None
            except Exception:
                status = "err"
                conn = None
            t1 = time.time()
            with lock:
                out.write(f"{t0:.6f} {t1:.6f} {status} {v}\n")
            if status != "ok":
                time.sleep(0.05)
            else:
                time.sleep(0.001)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.close()


def read_log(log_file):
    rows = []
    with open(log_file) as f:
        for line in f:
            p = line.split()
            if len(p) == 4:
                rows.append((float(p[0]), float(p[1]), p[2], int(p[3])))
    return rows


# ------------------------------------------------------------------ SQLite
def sqlite_windows(db, name):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(
            "SELECT window_start, window_end, sum FROM windows WHERE name = ? ORDER BY window_start",
            (name,),
        ).fetchall()
    finally:
        con.close()


def snapshot(db, name):
    print(json.dumps([list(r) for r in sqlite_windows(db, name)]))


# ------------------------------------------------------------------ kill -9 check
def check_kill9(db, name, log_file, events_file, window_ms):
    """EVENTS: lines "start T", "snap T JSON" (committed windows read right before the kill),
    "kill T" (just before SIGKILL), "term T" (the last run, stopped with SIGTERM after the load
    stopped). One run = from a "start" to the next "kill"/"term".

    Asserts, per run that ended with SIGKILL:
      1. every window committed before the kill (the snapshot) is in SQLite after the restarts,
         unchanged (same end, same sum): nothing committed is lost or rewritten;
      2. windows never overlap (no sample counted twice) and there is one row per window;
      3. stored >= acknowledged before E, E = end of the last window committed by that run:
         nothing acknowledged before the last committed window's end is lost;
      4. stored <= acknowledged + requests with an unknown outcome (nothing invented);
      5. lost = acknowledged - stored <= acknowledged at or after E: what is missing is only
         what was acknowledged after the last committed window ended (the open window and any
         closed window not yet committed at the kill);
    and for the final run (SIGTERM after the load stopped): stored == acknowledged exactly.
    """
    window_ms = int(window_ms)
    events = []
    with open(events_file) as f:
        for line in f:
            kind, rest = line.rstrip("\n").split(" ", 1)
            if kind == "snap":
                t, js = rest.split(" ", 1)
                events.append((kind, float(t), json.loads(js)))
            else:
                events.append((kind, float(rest), None))
    rows = sqlite_windows(db, name)
    log = read_log(log_file)
    errors = []
    by_start = {}
    for s, e, v in rows:
        if s in by_start:
            errors.append(f"window {s} stored twice")
        by_start[s] = (e, v)
    for (s1, e1, _), (s2, _, _) in zip(rows, rows[1:]):
        if s2 < e1:
            errors.append(f"windows overlap: [{s1},{e1}) and starts {s2}")

    runs, cur = [], None
    for kind, t, data in events:
        if kind == "start":
            cur = {"start": t, "snap": None}
        elif kind == "snap":
            cur["snap"] = data
        elif kind in ("kill", "term"):
            cur["end"], cur["how"] = t, kind
            runs.append(cur)
            cur = None
    total_acked = total_stored = 0
    print(f"{'run':>3} {'how':>4} {'windows':>7} {'acked':>7} {'stored':>7} {'lost':>5} "
          f"{'acked>=E':>8} {'unknown':>7} {'kill-E ms':>9} {'snap windows':>12}")
    for i, r in enumerate(runs):
        t0, t1 = r["start"], r["end"]
        w = [(s, e, v) for s, e, v in rows if t0 * 1000 <= s < t1 * 1000]
        stored = sum(v for _, _, v in w)
        E = max((e for _, e, _ in w), default=t0 * 1000) / 1000.0
        mine = [x for x in log if t0 <= x[0] < t1]
        acked = sum(v for _, d, st, v in mine if st == "ok")
        acked_before_E = sum(v for _, d, st, v in mine if st == "ok" and d < E)
        acked_after_E = acked - acked_before_E
        unknown = sum(v for _, d, st, v in mine if st == "err")
        lost = acked - stored
        total_acked += acked
        total_stored += stored
        snap = r["snap"] or []
        print(f"{i:>3} {r['how']:>4} {len(w):>7} {acked:>7g} {stored:>7g} {lost:>5g} "
              f"{acked_after_E:>8g} {unknown:>7g} {(t1 - E) * 1000:>9.0f} {len(snap):>12}")
        for s, e, v in snap:
            if by_start.get(s) != (e, v):
                errors.append(f"run {i}: window {s} committed before the kill is "
                              f"{by_start.get(s)} after restart, was {(e, v)}")
        if snap and max(e for _, e, _ in snap) / 1000.0 > E:
            errors.append(f"run {i}: last committed window end went back")
        if stored < acked_before_E:
            errors.append(f"run {i}: stored {stored} < acknowledged before E {acked_before_E}")
        if stored > acked + unknown:
            errors.append(f"run {i}: stored {stored} > acknowledged {acked} + unknown {unknown}")
        if r["how"] == "term" and stored != acked:
            errors.append(f"final run: stored {stored} != acknowledged {acked}")
        if r["how"] == "kill" and not snap:
            errors.append(f"run {i}: no window committed before the kill (test too short?)")
    print(f"total: acknowledged {total_acked:g}, stored {total_stored:g}, "
          f"lost {total_acked - total_stored:g}, windows {len(rows)}")
    for e in errors:
        print("ERROR:", e)
    sys.exit(1 if errors else 0)


# ------------------------------------------------------------------ delaying proxy
def proxy(listen_port, target_port, delay_file, stall_file, log_file):
    stats = {"conns": 0, "chunks": 0, "delayed_chunks": 0, "stalled_chunks": 0}

    def delay_s():
        try:
            with open(delay_file) as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0
    out = open(log_file, "a", buffering=1)

    async def wait_unstalled():
        while os.path.exists(stall_file):
            await asyncio.sleep(0.05)

    async def pipe(reader, writer, delayed):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                stats["chunks"] += 1
                d = delay_s() if delayed else 0.0
                if d > 0:
                    stats["delayed_chunks"] += 1
                    await asyncio.sleep(d)
                if os.path.exists(stall_file):
                    stats["stalled_chunks"] += 1
                    await wait_unstalled()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(cr, cw):
        stats["conns"] += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", int(target_port))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw, True), pipe(ur, cw, False))

    async def report():
        while True:
            await asyncio.sleep(5)
            out.write(f"{time.time():.3f} {json.dumps(stats)}\n")

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", int(listen_port))
        asyncio.get_running_loop().create_task(report())
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "load":
        load(*args)
    elif cmd == "snapshot":
        snapshot(*args)
    elif cmd == "kill9-check":
        check_kill9(*args)
    elif cmd == "proxy":
        proxy(*args)
    else:
        sys.exit(f"unknown command {cmd}")
