"""Helpers for tests/e2e/storage.sh: a load pusher and the checks against SQLite,
DynamoDB (dynalite, via boto3) and VictoriaMetrics. Standard library + boto3 only."""
import json
import os
import sqlite3
import sys
import time
import urllib.parse
import urllib.request


def push(url, name, stop_file, out_file, period=0.02, max_secs=400):
    """POSTs {"name": name, "value": 1, "type": "counter"} every `period` s until
    `stop_file` exists; writes the number of accepted samples to `out_file`."""
    body = json.dumps({"name": name, "value": 1, "type": "counter"}).encode()
    sent, failed, deadline = 0, 0, time.time() + max_secs
    while not os.path.exists(stop_file) and time.time() < deadline:
        req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    sent += 1
                else:
                    failed += 1
        except Exception:
            failed += 1
        time.sleep(period)
    with open(out_file, "w") as f:
        f.write(str(sent))
    print(f"pushed {sent} samples ({failed} failed requests)")


def sqlite_windows(db, name):
    """(window_start, window_end, sum) of every stored window of `name`."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT window_start, window_end, sum FROM windows WHERE name = ? ORDER BY window_start",
        (name,),
    ).fetchall()
    con.close()
    return rows


def dynamo_windows(endpoint, table, series):
    import boto3
    from boto3.dynamodb.conditions import Key

    t = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test").Table(table)
    items, kwargs = [], {"KeyConditionExpression": Key("series").eq(series), "ConsistentRead": True}
    while True:
        r = t.query(**kwargs)
        items += r["Items"]
        if "LastEvaluatedKey" not in r:
            break
        kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]
    return [(int(i["window_start"]), int(i["window_end"]), float(i["sum"])) for i in items]


def vm_samples(vm, metric):
    """Raw samples of `metric` through /api/v1/export: list of (timestamp_ms, value)."""
    q = urllib.parse.urlencode({"match[]": metric})
    with urllib.request.urlopen(f"{vm}/api/v1/export?{q}", timeout=10) as r:
        out = []
        for line in r.read().decode().splitlines():
            if line.strip():
                s = json.loads(line)
                out += list(zip(s["timestamps"], s["values"]))
    return sorted(out)


def promql(vm, query):
    q = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"{vm}/api/v1/query?{q}", timeout=10) as r:
        res = json.load(r)["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def check(db, dynamo, table, vm, name, sent):
    sent = int(sent)
    errors = []
    sq = sqlite_windows(db, name)
    sq_total = sum(r[2] for r in sq)
    print(f"sqlite: {len(sq)} windows, total {sq_total:g} (sent {sent})")
    if sq_total != sent:
        errors.append(f"sqlite total {sq_total} != sent {sent}")
    dy = sorted(dynamo_windows(dynamo, table, name))
    dy_total = sum(r[2] for r in dy)
    print(f"dynamodb: {len(dy)} windows, total {dy_total:g}")
    if dy != [tuple(r) for r in sq]:
        missing = {r[0] for r in sq} - {r[0] for r in dy}
        extra = {r[0] for r in dy} - {r[0] for r in sq}
        errors.append(f"dynamodb windows differ from sqlite: {len(missing)} missing, {len(extra)} extra")
    vs = vm_samples(vm, name + "_total")
    ts = [t for t, _ in vs]
    print(f"victoria-metrics: {len(vs)} samples, last cumulative {vs[-1][1] if vs else None}")
    if len(ts) != len(set(ts)):
        errors.append(f"victoria-metrics has {len(ts) - len(set(ts))} duplicate timestamps")
    if sorted(set(ts)) != [r[1] for r in sq]:
        errors.append(f"victoria-metrics timestamps differ from sqlite window ends "
                      f"({len(set(ts))} vs {len(sq)})")
    if not vs or vs[-1][1] != sent:
        errors.append(f"victoria-metrics last cumulative {vs[-1][1] if vs else None} != sent {sent}")
    vals = [v for _, v in vs]
    if any(b < a for a, b in zip(vals, vals[1:])):
        errors.append("victoria-metrics cumulative totals decrease")
    for e in errors:
        print("ERROR:", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "push":
        push(*args)
    elif cmd == "promql":
        v = promql(*args)
        print("" if v is None else f"{v:g}")
    elif cmd == "dynamo-total":
        print(f"{sum(r[2] for r in dynamo_windows(*args)):g}")
    elif cmd == "check":
        check(*args)
    else:
        sys.exit(f"unknown command {cmd}")
