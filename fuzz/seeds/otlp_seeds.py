#!/usr/bin/env python3
"""Writes the OTLP seed corpus (fuzz/corpus/otlp_protobuf, fuzz/corpus/otlp_json): a few
valid export requests covering every metric type, encoded by hand (no protobuf package)."""
import json
import os
import struct
import sys

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def key(field, wire):
    return varint(field << 3 | wire)

def msg(field, body):
    return key(field, 2) + varint(len(body)) + body

def s(field, text):
    return msg(field, text.encode())

def uv(field, n):
    return key(field, 0) + varint(n)

def sint(field, n):
    return uv(field, (n << 1) ^ (n >> 63))

def f64(field, x):
    return key(field, 1) + struct.pack("<d", x)

def fx64(field, n):
    return key(field, 1) + struct.pack("<Q", n)

def packed_fx64(field, ns):
    return msg(field, b"".join(struct.pack("<Q", n) for n in ns))

def packed_f64(field, xs):
    return msg(field, b"".join(struct.pack("<d", x) for x in xs))

def packed_uv(field, ns):
    return msg(field, b"".join(varint(n) for n in ns))

def attr(k, v):
    return s(1, k) + msg(2, s(1, v))

T0 = 1_700_000_000_000_000_000

def request(metrics, service="api"):
    resource = msg(1, msg(1, attr("service.name", service)))
    scope = msg(1, s(1, "lib") + s(2, "1.0"))
    sm = msg(2, scope + b"".join(msg(2, m) for m in metrics))
    return msg(1, resource + sm)

def number_point(value, attrs=(), cumulative_start=True, as_int=False):
    body = b"".join(msg(7, attr(k, v)) for k, v in attrs)
    body += fx64(2, T0) + fx64(3, T0 + 10**9)
    body += key(6, 1) + struct.pack("<q", value) if as_int else f64(4, value)
    return body

gauge = s(1, "cpu.usage") + s(3, "1") + msg(5, msg(1, number_point(0.5, [("host", "a")])))
counter_delta = s(1, "http.requests") + msg(7, msg(1, number_point(3, [("code", "200")], as_int=True)) + uv(2, 1) + uv(3, 1))
counter_cum = s(1, "bytes") + msg(7, msg(1, number_point(100, as_int=True)) + uv(2, 2) + uv(3, 1))
updown = s(1, "queue.depth") + msg(7, msg(1, number_point(-2.0)) + uv(2, 1))
hist_point = fx64(2, T0) + fx64(3, T0 + 10**9) + fx64(4, 6) + f64(5, 21.0) + packed_fx64(6, [1, 2, 3]) + packed_f64(7, [1.0, 5.0]) + f64(11, 0.5) + f64(12, 9.0)
hist = s(1, "http.server.duration") + s(3, "ms") + msg(9, msg(1, hist_point) + uv(2, 2))
exp_point = fx64(2, T0) + fx64(3, T0 + 10**9) + fx64(4, 5) + f64(5, 12.0) + sint(6, 3) + fx64(7, 1) + msg(8, sint(1, -2) + packed_uv(2, [1, 2])) + msg(9, sint(1, 0) + packed_uv(2, [1])) + f64(14, 0.0)
exp = s(1, "rpc.latency") + msg(10, msg(1, exp_point) + uv(2, 1))
summary_point = fx64(2, T0) + fx64(3, T0 + 10**9) + fx64(4, 10) + f64(5, 55.0) + msg(6, f64(1, 0.5) + f64(2, 5.0)) + msg(6, f64(1, 0.99) + f64(2, 9.9))
summary = s(1, "gc.pause") + msg(11, msg(1, summary_point))

pb = {
    "gauge": request([gauge]),
    "sums": request([counter_delta, counter_cum, updown]),
    "histogram": request([hist]),
    "exp_histogram": request([exp]),
    "summary": request([summary]),
}

JSON = {
    "all_types": {"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
      "scopeMetrics": [{"scope": {"name": "lib"}, "metrics": [
        {"name": "req", "unit": "1", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
          "dataPoints": [{"startTimeUnixNano": str(T0), "timeUnixNano": T0 + 10**9, "asInt": "42",
            "attributes": [{"key": "code", "value": {"intValue": "200"}}, {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"boolValue": True}]}}}]}]}},
        {"name": "h", "histogram": {"aggregationTemporality": 1, "dataPoints": [{"count": "3", "sum": 2.5, "bucketCounts": ["1", 2], "explicitBounds": [1.0]}]}},
        {"name": "g", "gauge": {"dataPoints": [{"asDouble": 1.5, "attributes": [{"key": "k", "value": {"kvlistValue": {"values": [{"key": "x", "value": {"doubleValue": 0.25}}]}}}]}]}},
        {"name": "e", "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [{"count": "3", "scale": 2, "zeroCount": "1", "positive": {"offset": -1, "bucketCounts": ["1", "1"]}, "startTimeUnixNano": "1", "timeUnixNano": "2"}]}},
        {"name": "s", "summary": {"dataPoints": [{"count": "2", "sum": 3.0, "quantileValues": [{"quantile": 0.5, "value": 1.0}]}]}}
      ]}]}]},
    "rejects": {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "", "gauge": {"dataPoints": [{"asDouble": 1}]}},
        {"name": "x", "sum": {"aggregationTemporality": 0, "dataPoints": [{"asInt": "1"}]}},
        {"name": "y", "histogram": {"aggregationTemporality": 1, "dataPoints": [{"count": "9", "bucketCounts": ["1"], "explicitBounds": []}]}}
      ]}]}]},
}

def main(root):
    for name, body in pb.items():
        with open(os.path.join(root, "otlp_protobuf", name), "wb") as f:
            f.write(body)
    for name, doc in JSON.items():
        with open(os.path.join(root, "otlp_json", name + ".json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus"))
