//! Inputs for the `abacus serve` ingest measurements (`benches/server.rs`, `src/bin/ingest_load.rs`,
//! `src/bin/ingest_latency.rs`): OTLP export requests, StatsD packets and JSON batches, all
//! deterministic, plus small helpers to read the server's own ingest counters.
//!
//! Every OTLP point is DELTA temporality, so the same pre-encoded body can be posted again and
//! again and every point is applied each time (cumulative points re-sent with the same
//! timestamps would only refresh the stream baseline and apply nothing).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// Services in the OTLP request (one `ResourceMetrics` each).
pub const OTLP_SERVICES: usize = 4;
/// Routes × status codes per service: each is one counter point and one histogram point.
const ROUTES: usize = 25;
const STATUSES: [&str; 5] = ["200", "201", "404", "500", "503"];
/// Explicit bounds of the histogram points (ms), the OpenTelemetry SDK default.
const BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// An export request with `OTLP_SERVICES × 250 = 1,000` points: per service, 125 delta
/// counter points (`http.server.requests`, attributes `http.route` and
/// `http.response.status_code`) and 125 delta explicit-bucket histogram points
/// (`http.server.duration`, same attributes, 16 buckets).
pub fn otlp_request() -> ExportMetricsServiceRequest {
    let t0 = 1_700_000_000_000_000_000u64;
    let mut resource_metrics = Vec::new();
    for s in 0..OTLP_SERVICES {
        let mut counters = Vec::new();
        let mut hists = Vec::new();
        for r in 0..ROUTES {
            for (k, status) in STATUSES.iter().enumerate() {
                let attributes = vec![
                    kv("http.route", &format!("/api/v1/route{r:02}")),
                    kv("http.response.status_code", status),
                ];
                let seed = (s * 131 + r * 7 + k) as u64;
                counters.push(NumberDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: t0,
                    time_unix_nano: t0 + 10_000_000_000,
                    value: Some(number_data_point::Value::AsInt(1 + (seed % 50) as i64)),
                    ..Default::default()
                });
                let counts: Vec<u64> = (0..=BOUNDS.len() as u64)
                    .map(|b| (seed + b * 3) % 7)
                    .collect();
                let count: u64 = counts.iter().sum();
                hists.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: t0,
                    time_unix_nano: t0 + 10_000_000_000,
                    count,
                    sum: Some(count as f64 * 42.0),
                    bucket_counts: counts,
                    explicit_bounds: BOUNDS.to_vec(),
                    min: Some(0.5),
                    max: Some(9000.0),
                    ..Default::default()
                });
            }
        }
        resource_metrics.push(ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", &format!("service-{s}")),
                    kv("host.name", "bench-host"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "abacus-bench".into(),
                    version: "0.1".into(),
                    ..Default::default()
                }),
                metrics: vec![
                    Metric {
                        name: "http.server.requests".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: counters,
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "http.server.duration".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: hists,
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest { resource_metrics }
}

/// Number of data points in [`otlp_request`].
pub const OTLP_POINTS: usize = OTLP_SERVICES * ROUTES * STATUSES.len() * 2;

/// [`otlp_request`] encoded as protobuf.
pub fn otlp_body() -> Vec<u8> {
    otlp_request().encode_to_vec()
}

/// StatsD line number `i` (deterministic; 40 names, counters and timers, some sampled).
/// Always one sample per line, and plain Etsy StatsD syntax (no DogStatsD tags), so the same
/// packets can be sent to abacus and to the Etsy daemon.
pub fn statsd_line(i: usize) -> String {
    let svc = i % 10;
    match i % 4 {
        0 => format!("svc{svc}.requests:1|c"),
        1 => format!("svc{svc}.latency:{}.{}|ms", 1 + i % 997, i % 10),
        2 => format!("svc{svc}.errors:{}|c|@0.5", 1 + i % 3),
        _ => format!("svc{svc}.db_time:{}|ms", 1 + i % 251),
    }
}

/// `count` StatsD packets of `lines_per_packet` lines each (newline separated), packet `p`
/// starting at line `p * lines_per_packet`.
pub fn statsd_packets(count: usize, lines_per_packet: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|p| {
            let lines: Vec<String> = (0..lines_per_packet)
                .map(|l| statsd_line(p * lines_per_packet + l))
                .collect();
            lines.join("\n").into_bytes()
        })
        .collect()
}

/// JSON item number `i` for `POST /metrics` (histograms, counters, gauges over 100 series).
pub fn json_item(i: usize) -> String {
    let svc = i % 10;
    match i % 4 {
        0 | 1 => format!(
            r#"{{"name":"http_latency","value":{}.5,"labels":{{"service":"svc{svc}","route":"/r{}"}}}}"#,
            1 + i % 997,
            i % 10
        ),
        2 => format!(
            r#"{{"name":"http_requests","value":1,"type":"counter","labels":{{"service":"svc{svc}"}}}}"#
        ),
        _ => format!(
            r#"{{"name":"queue_depth","value":{},"type":"gauge","labels":{{"service":"svc{svc}"}}}}"#,
            i % 100
        ),
    }
}

/// A JSON array of `n` items ([`json_item`]).
pub fn json_batch(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n).map(json_item).collect();
    format!("[{}]", items.join(",")).into_bytes()
}

/// Finds `name{labels}` (exact label text, e.g. `protocol="statsd"`) in Prometheus text and
/// returns its value.
pub fn prometheus_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Etsy statsd's management `counters` dump (util.inspect of an object) → value of `key`.
pub fn etsy_counter(dump: &str, key: &str) -> Option<f64> {
    let quoted = format!("'{key}':");
    let at = dump.find(&quoted)? + quoted.len();
    dump[at..]
        .trim_start()
        .split(|c: char| c == ',' || c == '\n' || c == '}' || c.is_whitespace())
        .next()
        .and_then(|v| v.parse().ok())
}

/// `Udp: ... RcvbufErrors` from `/proc/net/snmp` (0 when unreadable).
pub fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(head), Some(vals)) = (udp.next(), udp.next()) else {
        return 0;
    };
    head.split_whitespace()
        .zip(vals.split_whitespace())
        .find(|(h, _)| *h == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_request_has_1000_points() {
        assert_eq!(OTLP_POINTS, 1000);
        let req = otlp_request();
        let points: usize = req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Histogram(h)) => h.data_points.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(points, OTLP_POINTS);
    }

    #[test]
    fn statsd_packets_fit_a_datagram() {
        for p in statsd_packets(100, 40) {
            assert!(p.len() <= 1400, "{}", p.len());
        }
    }

    #[test]
    fn parsers_of_counter_dumps() {
        let text = "# TYPE x counter\nabacus_ingest_samples_total{protocol=\"statsd\"} 1234\n";
        assert_eq!(
            prometheus_value(text, "abacus_ingest_samples_total", "protocol=\"statsd\""),
            Some(1234.0)
        );
        let dump = "{ 'statsd.bad_lines_seen': 0,\n  'statsd.packets_received': 17,\n  'statsd.metrics_received': 340 }\nEND\n";
        assert_eq!(etsy_counter(dump, "statsd.metrics_received"), Some(340.0));
        assert_eq!(etsy_counter(dump, "statsd.packets_received"), Some(17.0));
    }
}
