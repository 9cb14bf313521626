#!/usr/bin/env python3
"""Turns criterion's output (target/criterion) into the Markdown tables of BENCHMARKS.md.

Usage: python3 crates/abacus-bench/report.py [target/criterion]
Throughput is aggregate (all threads): elements per iteration / mean time per iteration.
Ratios compare abacus with the fastest peer of the same group and mode, in the same run.
"""
import json
import os
import sys
from collections import defaultdict

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"


def load():
    out = {}
    for dirpath, _, files in os.walk(root):
        if "benchmark.json" in files and os.path.basename(dirpath) == "new":
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                b = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                e = json.load(f)
            elems = (b.get("throughput") or {}).get("Elements", 1)
            ns = e["mean"]["point_estimate"]
            out[b["full_id"]] = (ns, elems)
    return out


def mops(ns, elems):
    return elems / ns * 1e3  # million elements per second


def peers_table(data):
    groups = defaultdict(dict)
    for full_id, (ns, elems) in data.items():
        parts = full_id.split("/")
        if parts[0] != "peers" or len(parts) != 5:
            continue
        _, workload, threads, target, mode = parts
        groups[(workload, threads, mode)][target] = mops(ns, elems)
    if not groups:
        return ""
    targets = ["abacus", "baseline", "prometheus", "prometheus-client", "metrics", "opentelemetry"]
    seen = sorted({t for g in groups.values() for t in g})
    targets = [t for t in targets if t in seen] + [t for t in seen if t not in targets]
    lines = ["| workload | threads | mode | " + " | ".join(targets) + " | abacus ÷ fastest library | abacus ÷ Mutex<HashMap> |",
             "|---|---|---|" + "---:|" * (len(targets) + 2)]
    order = {"uniform100": 0, "zipf10k": 1, "onehot": 2}
    for (workload, threads, mode) in sorted(groups, key=lambda k: (order.get(k[0], 9), k[1], k[2])):
        g = groups[(workload, threads, mode)]
        libs = [v for t, v in g.items() if t not in ("abacus",) and not t.startswith("baseline")]
        base = [v for t, v in g.items() if t.startswith("baseline")]
        ratio = g["abacus"] / max(libs) if "abacus" in g and libs else float("nan")
        vs_base = g["abacus"] / max(base) if "abacus" in g and base else float("nan")
        cells = [f"{g[t]:.1f}" if t in g else "–" for t in targets]
        lines.append(f"| {workload} | {threads[1:]} | {mode} | " + " | ".join(cells) + f" | **{ratio:.1f}×** | {vs_base:.1f}× |")
    return "Throughput in millions of records per second (all threads together), higher is better.\n\n" + "\n".join(lines)


def simple_table(data, prefix, unit_ns=True):
    rows = [(k, v) for k, v in sorted(data.items()) if k.startswith(prefix)]
    if not rows:
        return ""
    lines = ["| benchmark | mean time | throughput |", "|---|---:|---:|"]
    for k, (ns, elems) in rows:
        t = f"{ns:.2f} ns" if ns < 1e3 else (f"{ns/1e3:.2f} µs" if ns < 1e6 else f"{ns/1e6:.2f} ms")
        lines.append(f"| {k} | {t} | {mops(ns, elems):.1f} M elem/s |")
    return "\n".join(lines)


def main():
    data = load()
    for title, body in [
        ("Peers", peers_table(data)),
        ("Core hot paths and snapshots", simple_table(data, "core/")),
        ("Rendering 10,000 histogram series", simple_table(data, "render/")),
        ("Memory ordering", simple_table(data, "ordering/")),
    ]:
        if body:
            print(f"### {title}\n\n{body}\n")
    render = {k.split("/")[-1]: ns for k, (ns, _) in data.items() if k.startswith("render/")}
    if "abacus" in render and "metrics_prometheus" in render:
        print(f"Render: abacus is **{render['metrics_prometheus'] / render['abacus']:.1f}×** faster than "
              f"metrics-exporter-prometheus on the same 10,000 series.\n")


main()
