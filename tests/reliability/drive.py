"""Load drivers and checks for tests/reliability/{soak,flood}.sh. Standard library only
(matplotlib for `plot`). Loopback only; every loop is bounded in time or count.

  drive.py sample PID HTTP_URL OUT.csv STOP_FILE          RSS/fds/threads/tasks every 2 s
  drive.py soak HTTP OTLP_HTTP STATSD_PORT SECS OUT.json   steady load on all three protocols
  drive.py soak-check HTTP_URL SENT.json                   query API totals == sent
  drive.py sqlite-check DB SENT.json                       SQLite totals == sent
  drive.py csv-check OUT.csv WARMUP_FRACTION RSS_TOL       RSS flat, fds/threads not growing
  drive.py plot OUT.csv OUT.png TITLE
  drive.py flood-existing HTTP OUT.json                    the "existing" series
  drive.py flood PROTO HTTP OTLP_HTTP STATSD_PORT N OUT.json
  drive.py metric HTTP_URL FAMILY [k=v ...]                one exposed value (sum of matches)
"""
import json
import http.client
import multiprocessing as mp
import os
import socket
import sqlite3
import statistics
import sys
import time
import urllib.parse
import urllib.request

SERVICES = [f"s{i}" for i in range(20)]
SQLITE_CACHE_KIB = 65_536  # PRAGMA cache_size = -65536 (crates/abacus-server/src/sinks/spill.rs)


# ---------------------------------------------------------------- helpers
def exposition(http_url):
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=30) as r:
        return r.read().decode()


def metric(http_url, family, labels=(), text=None):
    """Sum of the exposed samples of `family` carrying every k=v in `labels`."""
    text = text if text is not None else exposition(http_url)
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name != family:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


class Http:
    """A keep-alive HTTP/1.1 client that reconnects when the server closed the connection."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def post(self, path, body, ctype="application/json"):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("POST", path, body=body, headers={"content-type": ctype})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, data
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def otlp_body(name, points, temporality=1):
    """OTLP/JSON export of one monotonic Sum with `points` = [(service, int value)]."""
    now = str(time.time_ns())
    dps = [{"asInt": str(v), "timeUnixNano": now, "startTimeUnixNano": now,
            "attributes": [{"key": "service", "value": {"stringValue": s}}]} for s, v in points]
    return json.dumps({"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [
        {"name": name, "sum": {"aggregationTemporality": temporality, "isMonotonic": True,
                               "dataPoints": dps}}]}]}]})


def statsd_received(http_url):
    return metric(http_url, "abacus_ingest_requests_total", [("protocol", "statsd")]) or 0.0


# ---------------------------------------------------------------- sampler
def sample(pid, http_url, out, stop_file, period=2.0, db=None):
    """Samples the server process; `db`: the SQLite file, whose size (with its WAL) bounds
    what the SQLite page cache can hold."""
    period = float(period)
    t0 = time.time()
    with open(out, "w") as f:
        f.write("secs,rss_kib,hwm_kib,fds,threads,alive_tasks,connections,series,db_kib\n")
        while not os.path.exists(stop_file):
            try:
                st = open(f"/proc/{pid}/status").read()
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                break
            kv = {}
            for l in st.splitlines():
                k, _, v = l.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    kv[k] = v.split()[0]
            tasks = conns = series = ""
            try:
                text = exposition(http_url)
                tasks = metric(http_url, "abacus_runtime_alive_tasks", text=text)
                conns = metric(http_url, "abacus_connections", text=text)
                series = metric(http_url, "abacus_series", text=text)
            except Exception:
                pass
            db_kib = ""
            if db:
                db_kib = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)) // 1024
            f.write(f"{time.time() - t0:.1f},{kv['VmRSS']},{kv['VmHWM']},{fds},{kv['Threads']},"
                    f"{tasks if tasks is not None else ''},{conns if conns is not None else ''},"
                    f"{series if series is not None else ''},{db_kib}\n")
            f.flush()
            time.sleep(period)


# ---------------------------------------------------------------- soak
def _paced(secs, per_sec, step):
    """Calls step(i) per_sec times a second for secs seconds (catching up after stalls)."""
    t0 = time.time()
    i = 0
    while True:
        now = time.time()
        if now - t0 >= secs:
            return i
        due = int((now - t0) * per_sec)
        while i < due and time.time() - t0 < secs:
            step(i)
            i += 1
        time.sleep(0.005)


def soak_http(url, secs, q):
    c = Http(url)
    sent = {}
    bad = 0

    def step(i):
        nonlocal bad
        items, add = [], {}
        for j in range(100):
            s = SERVICES[(i + j) % len(SERVICES)]
            v = 1 + (i * 7 + j) % 5
            lat = 1 + (i * 13 + j * 3) % 500
            items.append({"name": "soak_http_hits", "type": "counter", "value": v, "labels": {"service": s}})
            items.append({"name": "soak_http_latency", "value": lat, "labels": {"service": s}})
            add[("soak_http_hits", s, "sum")] = add.get(("soak_http_hits", s, "sum"), 0) + v
            add[("soak_http_latency", s, "sum")] = add.get(("soak_http_latency", s, "sum"), 0) + lat
            add[("soak_http_latency", s, "count")] = add.get(("soak_http_latency", s, "count"), 0) + 1
        status, _ = c.post("/metrics", json.dumps(items))
        if status == 200:
            for k, v in add.items():
                sent[k] = sent.get(k, 0) + v
        else:
            bad += 1

    n = _paced(secs, 40, step)
    q.put(("http_json", n, bad, sent))


def soak_otlp(url, secs, q):
    c = Http(url)
    sent = {}
    bad = 0

    def step(i):
        nonlocal bad
        pts = [(SERVICES[(i + j) % len(SERVICES)], 1 + (i + j) % 9) for j in range(200)]
        status, body = c.post("/v1/metrics", otlp_body("soak_otlp_hits", pts))
        if status == 200 and b"rejected" not in body:
            for s, v in pts:
                k = ("soak_otlp_hits", s, "sum")
                sent[k] = sent.get(k, 0) + v
        else:
            bad += 1

    n = _paced(secs, 40, step)
    q.put(("otlp_http", n, bad, sent))


def soak_statsd(http_url, port, secs, q):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = {}
    datagrams = [0]
    base = statsd_received(http_url)

    def step(i):
        lines, add = [], {}
        for j in range(40):
            s = SERVICES[(i + j) % len(SERVICES)]
            v = 1 + (i + 3 * j) % 4
            ms = 1 + (i * 11 + j) % 300
            lines.append(f"soak_statsd_hits:{v}|c|#service:{s}")
            lines.append(f"soak_statsd_latency:{ms}|ms|#service:{s}")
            for k, x in (((("soak_statsd_hits", s, "sum")), v), (("soak_statsd_latency", s, "sum"), ms),
                         (("soak_statsd_latency", s, "count"), 1)):
                add[k] = add.get(k, 0) + x
        sock.sendto("\n".join(lines).encode(), ("127.0.0.1", port))
        datagrams[0] += 1
        for k, v in add.items():
            sent[k] = sent.get(k, 0) + v
        # Flow control: never more than 400 datagrams (~1.2 MB) queued in the server's socket.
        if datagrams[0] % 100 == 0:
            deadline = time.time() + 30
            while statsd_received(http_url) - base < datagrams[0] - 400:
                if time.time() > deadline:
                    raise RuntimeError("statsd receiver stalled")
                time.sleep(0.01)

    n = _paced(secs, 250, step)
    # Wait until every datagram was received, so `sent` is exact.
    deadline = time.time() + 60
    while statsd_received(http_url) - base < datagrams[0] and time.time() < deadline:
        time.sleep(0.05)
    got = statsd_received(http_url) - base
    q.put(("statsd", n, int(datagrams[0] - got), sent))


def soak(http_url, otlp_url, statsd_port, secs, out):
    secs = float(secs)
    q = mp.Queue()
    procs = [mp.Process(target=soak_http, args=(http_url, secs, q)),
             mp.Process(target=soak_otlp, args=(otlp_url, secs, q)),
             mp.Process(target=soak_statsd, args=(http_url, int(statsd_port), secs, q))]
    for p in procs:
        p.start()
    results = [q.get(timeout=secs + 180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    totals, summary = {}, {}
    for proto, n, bad, sent in results:
        samples = sum(v for (name, s, what), v in sent.items() if what in ("count",) or name.endswith("hits"))
        summary[proto] = {"requests": n, "failed_or_lost": bad}
        for k, v in sent.items():
            totals["|".join(k)] = v
    json.dump({"secs": secs, "protocols": summary, "totals": totals}, open(out, "w"), indent=1)
    print(json.dumps(summary))
    if any(r[2] for r in results):
        print("ERROR: failed requests or lost datagrams", file=sys.stderr)
        sys.exit(1)


def _query_totals(http_url, name, service):
    q = urllib.parse.urlencode({"service": service})
    with urllib.request.urlopen(f"{http_url}/metrics/{name}?{q}", timeout=30) as r:
        rows = json.load(r)
    return sum(r["sum"] for r in rows), sum(r["count"] for r in rows)


def soak_check(http_url, sent_file):
    sent = json.load(open(sent_file))["totals"]
    errors = 0
    for key, want in sorted(sent.items()):
        name, s, what = key.split("|")
        ssum, count = _query_totals(http_url, name, s)
        got = ssum if what == "sum" else count
        if got != want:
            errors += 1
            print(f"ERROR query API {name}{{service={s}}} {what}: {got} != sent {want}")
    print(f"query API: {len(sent) - errors}/{len(sent)} totals exact")
    sys.exit(1 if errors else 0)


def sqlite_check(db, sent_file):
    sent = json.load(open(sent_file))["totals"]
    con = sqlite3.connect(db)
    errors = 0
    for key, want in sorted(sent.items()):
        name, s, what = key.split("|")
        col = "sum" if what == "sum" else "count"
        got = con.execute(f"SELECT COALESCE(SUM({col}), 0) FROM windows WHERE name = ? AND labels LIKE ?",
                          (name, f'%"service":"{s}"%')).fetchone()[0]
        if got != want:
            errors += 1
            print(f"ERROR sqlite {name}{{service={s}}} {what}: {got} != sent {want}")
    rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT window_start) FROM windows").fetchone()
    print(f"sqlite: {len(sent) - errors}/{len(sent)} totals exact ({rows[0]} rows, {rows[1]} windows)")
    sys.exit(1 if errors else 0)


def read_csv(path):
    rows = []
    with open(path) as f:
        head = f.readline().strip().split(",")
        for line in f:
            vals = line.strip().split(",")
            rows.append({h: (float(v) if v else None) for h, v in zip(head, vals)})
    return rows


def csv_check(path, warm_frac, rss_tol):
    rows = read_csv(path)
    warm_frac, rss_tol = float(warm_frac), float(rss_tol)
    if len(rows) < 8:
        print(f"ERROR: only {len(rows)} samples")
        sys.exit(1)
    n = len(rows)
    w = max(1, int(n * warm_frac))
    after = rows[w:]
    q = max(1, len(after) // 4)
    first, last = after[:q], after[-q:]
    # The SQLite writer's page cache grows with the database up to cache_size (64 MiB):
    # subtract what it can hold at most, min(db + wal, 64 MiB), to see the rest of RSS.
    for r in rows:
        r["net_kib"] = r["rss_kib"] - min(r.get("db_kib") or 0, SQLITE_CACHE_KIB)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    raw0, raw1 = med(first, "rss_kib"), med(last, "rss_kib")
    rss0, rss1 = med(first, "net_kib"), med(last, "net_kib")
    growth = (rss1 - rss0) / rss0
    fd_max0, fd_last = max(r["fds"] for r in rows[:w + q]), med(last, "fds")
    th_max0, th_last = max(r["threads"] for r in rows[:w + q]), med(last, "threads")
    tasks = [r["alive_tasks"] for r in after if r["alive_tasks"] is not None]
    tk0 = max(tasks[:q]) if tasks else None
    tk1 = statistics.median(tasks[-q:]) if tasks else None
    print(f"samples {n}; RSS after warm-up {raw0 / 1024:.1f} MiB -> end {raw1 / 1024:.1f} MiB; "
          f"net of the SQLite cache {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
          f"({growth * 100:+.1f} %, tolerance {rss_tol * 100:.0f} %); peak {max(r['hwm_kib'] for r in rows) / 1024:.1f} MiB; "
          f"database {(rows[-1].get('db_kib') or 0) / 1024:.1f} MiB")
    print(f"fds: max in warm-up {fd_max0:g}, median at end {fd_last:g}; threads: max in warm-up {th_max0:g}, "
          f"median at end {th_last:g}; alive tasks: max early {tk0}, median at end {tk1}")
    errors = []
    if growth > rss_tol:
        errors.append("RSS grew beyond the tolerance after warm-up")
    if fd_last > fd_max0:
        errors.append("open fds grew")
    if th_last > th_max0:
        errors.append("threads grew")
    if tasks and tk1 > tk0:
        errors.append("alive tasks grew")
    for e in errors:
        print("ERROR:", e)
    sys.exit(1 if errors else 0)


def plot(path, png, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = read_csv(path)
    t = [r["secs"] / 60 for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax[0].plot(t, [r["rss_kib"] / 1024 for r in rows], label="RSS")
    ax[0].plot(t, [r["hwm_kib"] / 1024 for r in rows], label="peak RSS (VmHWM)", linestyle="--")
    if any(r.get("db_kib") for r in rows):
        ax[0].plot(t, [(r["rss_kib"] - min(r["db_kib"] or 0, SQLITE_CACHE_KIB)) / 1024 for r in rows],
                   label="RSS - min(SQLite db, 64 MiB cache)")
        ax[0].plot(t, [(r["db_kib"] or 0) / 1024 for r in rows], label="SQLite db + wal size", linestyle=":")
    ax[0].set_ylabel("MiB")
    ax[0].set_ylim(bottom=0)
    ax[0].legend()
    ax[1].plot(t, [r["fds"] for r in rows], label="open fds")
    ax[1].plot(t, [r["threads"] for r in rows], label="threads")
    ax[1].plot(t, [r["connections"] for r in rows], label="HTTP connections (abacus_connections)")
    ax[1].set_ylim(bottom=0)
    ax[1].legend()
    ax[2].plot(t, [r["alive_tasks"] for r in rows], label="tokio alive tasks")
    ax[2].plot(t, [r["series"] for r in rows], label="live series")
    ax[2].set_ylim(bottom=0)
    ax[2].set_xlabel("minutes")
    ax[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


# ---------------------------------------------------------------- flood
def flood_existing(http_url, out):
    """The series that must survive the flood: counters and latencies with known totals."""
    c = Http(http_url)
    items, totals = [], {}
    for i in range(10):
        s = f"existing{i}"
        for j in range(50):
            items.append({"name": "flood_existing_hits", "type": "counter", "value": i + 1, "labels": {"service": s}})
            items.append({"name": "flood_existing_latency", "value": j + 1, "labels": {"service": s}})
        totals[f"flood_existing_hits|{s}|sum"] = 50 * (i + 1)
        totals[f"flood_existing_latency|{s}|sum"] = sum(range(1, 51))
        totals[f"flood_existing_latency|{s}|count"] = 50
    status, body = c.post("/metrics", json.dumps(items))
    assert status == 200, body
    json.dump({"totals": totals}, open(out, "w"), indent=1)


def flood(proto, http_url, otlp_url, statsd_port, n, out):
    """Sends n samples of value 1 to n distinct service names; writes what was accepted."""
    n = int(n)
    t0 = time.time()
    accepted, bad = 0, 0
    name = f"flood_{proto}"
    if proto in ("http", "otlp"):
        c = Http(http_url if proto == "http" else otlp_url)
        batch = 10_000
        for start in range(0, n, batch):
            svcs = [f"svc-{proto}-{k:07d}" for k in range(start, min(n, start + batch))]
            if proto == "http":
                body = json.dumps([{"name": name, "type": "counter", "value": 1, "labels": {"service": s}} for s in svcs])
                status, resp = c.post("/metrics", body)
                ok = status == 200
            else:
                status, resp = c.post("/v1/metrics", otlp_body(name, [(s, 1) for s in svcs]))
                ok = status == 200 and b"rejected" not in resp
            if ok:
                accepted += len(svcs)
            else:
                bad += 1
                print(f"{proto}: HTTP {status} {resp[:200]!r}", file=sys.stderr)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        base = statsd_received(http_url)
        per, sent_dg = 1000, 0
        for start in range(0, n, per):
            lines = [f"{name}:1|c|#service:svc-statsd-{k:07d}" for k in range(start, min(n, start + per))]
            sock.sendto("\n".join(lines).encode(), ("127.0.0.1", int(statsd_port)))
            sent_dg += 1
            accepted += len(lines)
            if sent_dg % 40 == 0:  # flow control: at most ~2 MB queued in the server socket
                deadline = time.time() + 60
                while statsd_received(http_url) - base < sent_dg - 40:
                    if time.time() > deadline:
                        raise RuntimeError("statsd receiver stalled")
                    time.sleep(0.01)
        deadline = time.time() + 60
        while statsd_received(http_url) - base < sent_dg and time.time() < deadline:
            time.sleep(0.05)
        lost = sent_dg - (statsd_received(http_url) - base)
        if lost:
            bad += int(lost)
            accepted -= int(lost) * per
    secs = time.time() - t0
    json.dump({"proto": proto, "name": name, "sent": n, "accepted": accepted, "failed": bad,
               "secs": secs}, open(out, "w"))
    print(f"{proto}: {accepted} of {n} samples accepted in {secs:.1f} s ({n / secs:,.0f}/s), {bad} failed")
    sys.exit(1 if bad else 0)


def flood_check(http_url, out_json, rss_csv, baseline_kib, max_series, windows_kept, *floods):
    """Refusals and conservation after the flood; peak RSS against the DESIGN.md bound."""
    text = exposition(http_url)
    max_series, windows_kept = int(max_series), int(windows_kept)
    errors, per = [], {}
    for f in floods:
        r = json.load(open(f))
        name = r["name"]
        admitted, overflow = 0, 0.0
        for line in text.splitlines():
            if not line.startswith(name + "_total{"):
                continue
            v = float(line.rsplit(" ", 1)[1])
            if 'service="__overflow__"' in line:
                overflow += v
            else:
                admitted += 1
                if v != 1:
                    errors.append(f"{line}: a flood series holds {v}, not 1")
        per[r["proto"]] = {"sent": r["sent"], "accepted": r["accepted"], "admitted_series": admitted,
                           "refused_to_overflow": overflow, "secs": round(r["secs"], 1),
                           "rate_per_s": round(r["sent"] / r["secs"])}
        if admitted + overflow != r["accepted"]:
            errors.append(f"{name}: {admitted} admitted + {overflow:g} in overflow != {r['accepted']} accepted")
    refused = metric(http_url, "abacus_series_refused_total", text=text) or 0.0
    flood_refused = sum(p["refused_to_overflow"] for p in per.values())
    series = metric(http_url, "abacus_series", text=text)
    store = metric(http_url, "abacus_window_store_series", text=text)
    rows = read_csv(rss_csv)
    peak_kib = max(r["hwm_kib"] for r in rows)
    bound = memory_bound(max_series, windows_kept)
    baseline = float(baseline_kib) * 1024
    report = {"per_protocol": per, "abacus_series_refused_total": refused,
              "refused_by_flood": flood_refused, "live_series": series, "window_store_series": store,
              "baseline_rss_mib": round(baseline / 2**20, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
              "bound_mib": round((baseline + bound["total"]) / 2**20, 1), "bound_parts_mib":
              {k: round(v / 2**20, 1) for k, v in bound.items()}}
    json.dump(report, open(out_json, "w"), indent=1)
    print(json.dumps(report, indent=1))
    if refused < flood_refused:
        errors.append(f"abacus_series_refused_total {refused:g} < {flood_refused:g} refused flood samples")
    if series is not None and series > max_series + 1000:
        errors.append(f"{series:g} live series, more than max_series + max_overflow_series")
    if peak_kib * 1024 > baseline + bound["total"]:
        errors.append(f"peak RSS {peak_kib / 1024:.1f} MiB over the bound {(baseline + bound['total']) / 2**20:.1f} MiB")
    for e in errors:
        print("ERROR:", e)
    sys.exit(1 if errors else 0)


def memory_bound(max_series, windows_kept, threads=4, key=64, overflow=1000, max_items=10_000,
                 otlp_streams_per_series=2, set_members_total=100_000, clients=3):
    """The per-key memory bound of DESIGN.md "Bounded memory" (server), in bytes, for counter
    series (G = 0, B = 0): registry, window store, OTLP tracker, StatsD sets, in-flight bodies."""
    s = max_series + overflow
    registry = s * (290 + key) + s * threads * (590 + key)
    store = max_series * (600 + key) + max_series * max(0, windows_kept - 1) * 112
    tracker = otlp_streams_per_series * max_series * (2 * key + 200)
    sets = set_members_total * (64 + 48) + max_series * (key + 100)
    # One request per client in flight: body + parsed JSON values (~200 B per item) + samples.
    inflight = clients * (16 << 20) + clients * max_items * (200 + 2 * key)
    parts = {"registry": registry, "window_store": store, "otlp_tracker": tracker,
             "statsd_sets": sets, "in_flight_requests": inflight}
    parts["total"] = sum(parts.values())
    return parts


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sample":
        sample(int(args[0]), *args[1:])  # PID URL OUT STOP [PERIOD] [DB]
    elif cmd == "soak":
        soak(*args)
    elif cmd == "soak-check":
        soak_check(*args)
    elif cmd == "sqlite-check":
        sqlite_check(*args)
    elif cmd == "csv-check":
        csv_check(*args)
    elif cmd == "plot":
        plot(*args)
    elif cmd == "flood-existing":
        flood_existing(*args)
    elif cmd == "flood":
        flood(*args)
    elif cmd == "flood-check":
        flood_check(*args)
    elif cmd == "metric":
        v = metric(args[0], args[1], [tuple(a.split("=", 1)) for a in args[2:]])
        print("" if v is None else f"{v:g}")
    else:
        sys.exit(f"unknown command {cmd}")
