"""Push known values to abacus with the OpenTelemetry Python SDK (HTTP and gRPC exporters).

usage: push_otlp.py http|grpc ENDPOINT PREFIX
Records counter PREFIX_orders += 5 then += 7 (total 12, label region=eu) and histogram
PREFIX_duration with 5, 20, 70, 200 (count 4, sum 295), service.name=e2e, delta temporality.
"""
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

kind, endpoint, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "http":
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint)
else:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)

reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(resource=Resource.create({"service.name": "e2e"}), metric_readers=[reader])
meter = provider.get_meter("abacus-e2e")
orders = meter.create_counter(f"{prefix}_orders")
duration = meter.create_histogram(f"{prefix}_duration", unit="ms")
labels = {"region": "eu"}
orders.add(5, labels)
duration.record(5, labels)
duration.record(20, labels)
assert provider.force_flush(10_000), "first export failed"
orders.add(7, labels)
duration.record(70, labels)
duration.record(200, labels)
assert provider.force_flush(10_000), "second export failed"
provider.shutdown()
print(f"pushed {prefix} via {kind}")
