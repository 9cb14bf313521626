//! Names and labels (issue #6): every row of the rules table in the crate README, for every
//! protocol (JSON, OTLP, StatsD) on a real server; and label values with `"`, `\`, newline
//! and unicode read back exactly from every exposition (Prometheus text, OpenMetrics, the
//! JSON query API, SQLite history after a restart, the remote-write encoding), parsed by
//! independent parsers.

use std::collections::BTreeMap;

use abacus_server::ingest::statsd::parser::RejectReason;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use prost::Message;
use serde_json::{Value, json};

use crate::common::{Running, poll, start, test_config};

/// A stored series: metric name and labels.
type Series = (&'static str, Vec<(&'static str, String)>);

/// What a protocol does with one row's input.
#[derive(Debug)]
enum Want {
    /// Refused; the error message (JSON 400 / OTLP partial success) contains this.
    Refused(&'static str),
    /// Accepted as this metric name with these labels.
    Stored(&'static str, Vec<(&'static str, String)>),
}

struct Row {
    what: &'static str,
    /// `POST /metrics` body (see [`j`]).
    json: String,
    json_want: Want,
    /// OTLP metric name, attributes, histogram?
    otlp: (String, Vec<(String, String)>, bool),
    otlp_want: Want,
    /// One StatsD line.
    statsd: String,
    /// `Err(reason)` or the stored series.
    statsd_want: Result<Series, RejectReason>,
}

/// A `POST /metrics` body: `item` with `value` 1 and type `gauge` unless it names one.
fn j(mut item: Value) -> String {
    item["value"] = json!(1);
    if item.get("type").is_none() {
        item["type"] = json!("gauge");
    }
    item.to_string()
}

fn many(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("l{i:02}"), "v".to_owned()))
        .collect()
}

fn many_want(n: usize) -> Vec<(&'static str, String)> {
    const NAMES: [&str; 32] = [
        "l00", "l01", "l02", "l03", "l04", "l05", "l06", "l07", "l08", "l09", "l10", "l11", "l12",
        "l13", "l14", "l15", "l16", "l17", "l18", "l19", "l20", "l21", "l22", "l23", "l24", "l25",
        "l26", "l27", "l28", "l29", "l30", "l31",
    ];
    NAMES[..n].iter().map(|n| (*n, "v".to_owned())).collect()
}

fn tags(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn rows() -> Vec<Row> {
    let long_name = "n".repeat(201);
    let max_name: &'static str = Box::leak("m".repeat(200).into_boxed_str());
    let long_label = "k".repeat(129);
    let long_value = "v".repeat(1025);
    let max_value = "v".repeat(1024);
    vec![
        Row {
            what: "empty metric name",
            json: j(json!({"name": ""})),
            json_want: Want::Refused("metric name is empty"),
            otlp: (String::new(), vec![], false),
            otlp_want: Want::Refused("metric with empty name"),
            statsd: ":1|g".into(),
            statsd_want: Err(RejectReason::EmptyName),
        },
        Row {
            what: "metric name of 201 bytes",
            json: j(json!({"name": long_name})),
            json_want: Want::Refused("metric name is 201 bytes, limit is 200"),
            otlp: (long_name.clone(), vec![], false),
            otlp_want: Want::Refused("metric name is 201 bytes, limit is 200"),
            statsd: format!("{long_name}:1|g"),
            statsd_want: Err(RejectReason::NameTooLong),
        },
        Row {
            what: "metric name of 200 bytes",
            json: j(json!({"name": max_name})),
            json_want: Want::Stored(max_name, vec![]),
            otlp: (max_name.to_owned(), vec![], false),
            otlp_want: Want::Stored(max_name, vec![]),
            statsd: format!("{max_name}:1|g"),
            statsd_want: Ok((max_name, vec![])),
        },
        Row {
            what: "invalid characters in the metric name",
            json: j(json!({"name": "my.metric-x/é"})),
            json_want: Want::Refused("is not a valid Prometheus metric name"),
            otlp: ("my.metric-x/é".into(), vec![], false),
            otlp_want: Want::Stored("my_metric_x__", vec![]),
            statsd: "my.metric-x/é:1|g".into(),
            statsd_want: Ok(("my_metric_x__", vec![])),
        },
        Row {
            what: "metric name starting with a digit",
            json: j(json!({"name": "9lives"})),
            json_want: Want::Refused("is not a valid Prometheus metric name"),
            otlp: ("9lives".into(), vec![], false),
            otlp_want: Want::Stored("_9lives", vec![]),
            statsd: "9lives:1|g".into(),
            statsd_want: Ok(("_9lives", vec![])),
        },
        Row {
            what: "empty label name",
            json: j(json!({"name": "row_empty_label", "labels": {"": "x"}})),
            json_want: Want::Refused("label name is empty"),
            otlp: (
                "row_empty_label".into(),
                vec![(String::new(), "x".into())],
                false,
            ),
            otlp_want: Want::Refused("label name is empty"),
            statsd: "row_empty_label:1|g|#:x".into(),
            statsd_want: Err(RejectReason::BadTag),
        },
        Row {
            what: "invalid characters in a label name",
            json: j(json!({"name": "row_label_chars", "labels": {"http.method": "GET"}})),
            json_want: Want::Refused("is not a valid Prometheus label name"),
            otlp: (
                "row_label_chars".into(),
                vec![("http.method".into(), "GET".into())],
                false,
            ),
            otlp_want: Want::Stored("row_label_chars", vec![("http_method", "GET".into())]),
            statsd: "row_label_chars:1|g|#http.method:GET".into(),
            statsd_want: Ok(("row_label_chars", vec![("http_method", "GET".into())])),
        },
        Row {
            what: "reserved label name (__ prefix)",
            json: j(json!({"name": "row_reserved", "labels": {"__name__": "x"}})),
            json_want: Want::Refused("is not a valid Prometheus label name"),
            otlp: (
                "row_reserved".into(),
                vec![("__name__".into(), "x".into())],
                false,
            ),
            otlp_want: Want::Refused("is not a valid Prometheus label name"),
            statsd: "row_reserved:1|g|#__name__:x".into(),
            statsd_want: Err(RejectReason::BadTag),
        },
        Row {
            what: "label name of 129 bytes",
            json: j(json!({"name": "row_long_label", "labels": {long_label.clone(): "x"}})),
            json_want: Want::Refused("label name is 129 bytes, limit is 128"),
            otlp: (
                "row_long_label".into(),
                vec![(long_label.clone(), "x".into())],
                false,
            ),
            otlp_want: Want::Refused("label name is 129 bytes, limit is 128"),
            statsd: format!("row_long_label:1|g|#{long_label}:x"),
            statsd_want: Err(RejectReason::TagTooLong),
        },
        Row {
            what: "label value of 1025 bytes",
            json: j(json!({"name": "row_long_value", "labels": {"k": long_value.clone()}})),
            json_want: Want::Refused("is 1025 bytes, limit is 1024"),
            otlp: (
                "row_long_value".into(),
                vec![("k".into(), long_value.clone())],
                false,
            ),
            otlp_want: Want::Refused("is 1025 bytes, limit is 1024"),
            statsd: format!("row_long_value:1|g|#k:{long_value}"),
            statsd_want: Err(RejectReason::TagTooLong),
        },
        Row {
            what: "label value of 1024 bytes",
            json: j(json!({"name": "row_max_value", "labels": {"k": max_value.clone()}})),
            json_want: Want::Stored("row_max_value", vec![("k", max_value.clone())]),
            otlp: (
                "row_max_value".into(),
                vec![("k".into(), max_value.clone())],
                false,
            ),
            otlp_want: Want::Stored("row_max_value", vec![("k", max_value.clone())]),
            statsd: format!("row_max_value:1|g|#k:{max_value}"),
            statsd_want: Ok(("row_max_value", vec![("k", max_value.clone())])),
        },
        Row {
            what: "33 labels",
            json: j(
                json!({"name": "row_many", "labels": many(33).into_iter().collect::<BTreeMap<_, _>>()}),
            ),
            json_want: Want::Refused("33 labels, limit is 32"),
            otlp: ("row_many".into(), many(33), false),
            otlp_want: Want::Refused("33 labels, limit is 32"),
            statsd: format!("row_many:1|g|#{}", tags(&many(33))),
            statsd_want: Err(RejectReason::TooManyTags),
        },
        Row {
            what: "32 labels",
            json: j(
                json!({"name": "row_32", "labels": many(32).into_iter().collect::<BTreeMap<_, _>>()}),
            ),
            json_want: Want::Stored("row_32", many_want(32)),
            otlp: ("row_32".into(), many(32), false),
            otlp_want: Want::Stored("row_32", many_want(32)),
            statsd: format!("row_32:1|g|#{}", tags(&many(32))),
            statsd_want: Ok(("row_32", many_want(32))),
        },
        Row {
            what: "duplicate label names (the last one wins)",
            // JSON objects with a repeated key: the last value wins (serde_json).
            json: r#"{"name":"row_dup","value":1,"type":"gauge","labels":{"a":"1","a":"2"}}"#
                .into(),
            json_want: Want::Stored("row_dup", vec![("a", "2".into())]),
            otlp: (
                "row_dup".into(),
                vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                false,
            ),
            otlp_want: Want::Stored("row_dup", vec![("a", "2".into())]),
            statsd: "row_dup:1|g|#a:1,a:2".into(),
            statsd_want: Ok(("row_dup", vec![("a", "2".into())])),
        },
        Row {
            what: "label le on a histogram",
            json: j(json!({"name": "row_le", "type": "histogram", "labels": {"le": "1"}})),
            json_want: Want::Refused("label name \"le\" is reserved on histograms"),
            otlp: ("row_le".into(), vec![("le".into(), "1".into())], true),
            otlp_want: Want::Refused("label name \"le\" is reserved on histograms"),
            statsd: "row_le:1|ms|#le:1".into(),
            statsd_want: Err(RejectReason::BadTag),
        },
        Row {
            what: "label le on a gauge",
            json: j(json!({"name": "row_le_gauge", "labels": {"le": "1"}})),
            json_want: Want::Stored("row_le_gauge", vec![("le", "1".into())]),
            otlp: (
                "row_le_gauge".into(),
                vec![("le".into(), "1".into())],
                false,
            ),
            otlp_want: Want::Stored("row_le_gauge", vec![("le", "1".into())]),
            statsd: "row_le_gauge:1|g|#le:1".into(),
            statsd_want: Ok(("row_le_gauge", vec![("le", "1".into())])),
        },
    ]
}

fn otlp_request(name: &str, attrs: &[(String, String)], histogram: bool) -> Vec<u8> {
    let attributes: Vec<KeyValue> = attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..Default::default()
        })
        .collect();
    let data = if histogram {
        metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes,
                count: 1,
                sum: Some(1.0),
                bucket_counts: vec![1, 0],
                explicit_bounds: vec![10.0],
                time_unix_nano: 1,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })
    } else {
        metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes,
                value: Some(number_data_point::Value::AsDouble(2.0)),
                time_unix_nano: 1,
                ..Default::default()
            }],
        })
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_owned(),
                    data: Some(data),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The gauge `name{labels}` holds `value` (each protocol writes its own value).
fn stored(srv: &Running, name: &str, labels: &[(&str, String)], value: f64) -> bool {
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    srv.state.registry().snapshot().gauge(name, &labels) == Some(value)
}

fn statsd_rejects(srv: &Running, reason: RejectReason) -> u64 {
    srv.state
        .registry()
        .snapshot()
        .counter(
            "abacus_ingest_rejects",
            &[("protocol", "statsd"), ("reason", reason.as_str())],
        )
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_and_label_rule_holds_for_json_otlp_and_statsd() {
    let srv = start(test_config()).await;
    let client = reqwest::Client::new();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for row in rows() {
        let what = row.what;
        // JSON.
        let r = client
            .post(srv.url("/metrics"))
            .header("content-type", "application/json")
            .body(row.json.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match &row.json_want {
            Want::Refused(msg) => {
                assert_eq!(status, 400, "JSON, {what}: {body}");
                let err = body["error"].as_str().unwrap();
                assert!(err.contains(msg), "JSON, {what}: {err:?} lacks {msg:?}");
            }
            Want::Stored(name, labels) => {
                assert_eq!(status, 200, "JSON, {what}: {body}");
                assert!(stored(&srv, name, labels, 1.0), "JSON, {what}");
            }
        }
        // OTLP/HTTP protobuf.
        let (name, attrs, hist) = &row.otlp;
        let r = client
            .post(format!("http://{}/v1/metrics", srv.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(otlp_request(name, attrs, *hist))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "OTLP, {what}");
        let resp = ExportMetricsServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
        match &row.otlp_want {
            Want::Refused(msg) => {
                let p = resp
                    .partial_success
                    .unwrap_or_else(|| panic!("OTLP, {what}: accepted"));
                assert_eq!(p.rejected_data_points, 1, "OTLP, {what}");
                assert!(
                    p.error_message.contains(msg),
                    "OTLP, {what}: {:?} lacks {msg:?}",
                    p.error_message
                );
            }
            Want::Stored(name, labels) => {
                assert!(resp.partial_success.is_none(), "OTLP, {what}: {resp:?}");
                assert!(stored(&srv, name, labels, 2.0), "OTLP, {what}");
            }
        }

        // StatsD.
        let before = row
            .statsd_want
            .as_ref()
            .err()
            .map(|r| statsd_rejects(&srv, *r));
        udp.send_to(row.statsd.as_bytes(), srv.statsd)
            .await
            .unwrap();
        match &row.statsd_want {
            Err(reason) => {
                let want = before.unwrap() + 1;
                poll(&format!("StatsD reject {reason} for {what}"), || {
                    let n = statsd_rejects(&srv, *reason);
                    async move { (n == want).then_some(()) }
                })
                .await;
            }
            Ok((name, labels)) => {
                // Gauge lines set the value 1 (JSON and OTLP used 1 and 2 on the same series).
                poll(&format!("StatsD, {what}"), || {
                    let l: Vec<(&str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let snap = srv.state.registry().snapshot();
                    let ok = snap.gauge(name, &l) == Some(1.0);
                    async move { ok.then_some(()) }
                })
                .await;
                // Make the next row's "gauge is 1" check meaningful.
                let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                srv.state.registry().set_gauge(name, &l, 0.0);
            }
        }
    }
    srv.stop().await.unwrap();
}

/// Percent-encodes every byte outside the unreserved set (RFC 3986).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Label values that need escaping somewhere.
const WEIRD: &[&str] = &[
    "quote\"inside",
    "back\\slash",
    "new\nline",
    "ünïcødé € 😀",
    "all \\\"\n\\n of them",
    "tab\tand,comma=equals{brace}",
];

/// The distinct values of label `v` over the samples of `family` (sorted).
fn values_of<T: Clone, V: openmetrics_parser::RenderableMetricValue + Clone>(
    families: &std::collections::HashMap<String, openmetrics_parser::MetricFamily<T, V>>,
    family: &str,
) -> Vec<String> {
    let fam = families
        .get(family)
        .unwrap_or_else(|| panic!("family {family} in {:?}", families.keys()));
    let mut v: Vec<String> = fam
        .iter_samples()
        .map(|s| {
            s.get_labelset()
                .unwrap()
                .get_label_value("v")
                .unwrap()
                .to_owned()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_with_quotes_backslashes_newlines_and_unicode_round_trip_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.storage = abacus_server::sinks::StorageConfig::in_dir(dir.path());
    let srv = start(config.clone()).await;
    let client = reqwest::Client::new();
    let mut want: Vec<String> = WEIRD.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    for v in WEIRD {
        for (name, ty) in [
            ("esc_g", "gauge"),
            ("esc_c", "counter"),
            ("esc_h", "histogram"),
        ] {
            let r = client
                .post(srv.url("/metrics"))
                .json(&json!({"name": name, "type": ty, "value": 3, "labels": {"v": v}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // StatsD framing cannot carry `\n` or `,` in a tag: the unicode and quote values only.
    udp.send_to("esc_s:1|c|#v:ünïcødé € 😀".as_bytes(), srv.statsd)
        .await
        .unwrap();

    // Prometheus text 0.0.4, by openmetrics-parser's Prometheus grammar.
    let text = client
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expo = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("text 0.0.4 parses: {e:?}\n{text}"));
    for family in ["esc_g", "esc_c_total", "esc_h"] {
        assert_eq!(
            values_of(&expo.families, family),
            want,
            "text 0.0.4, {family}"
        );
    }

    // OpenMetrics 1.0.
    let om = client
        .get(srv.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expo = openmetrics_parser::openmetrics::parse_openmetrics(&om)
        .unwrap_or_else(|e| panic!("OpenMetrics parses: {e:?}\n{om}"));
    for family in ["esc_g", "esc_c", "esc_h"] {
        assert_eq!(
            values_of(&expo.families, family),
            want,
            "OpenMetrics, {family}"
        );
    }

    // Remote-write encoding of the window, decoded again.
    let window = srv.state.registry().snapshot();
    let mut encoder = abacus_server::sinks::remote_write::encode::Encoder::new();
    let body = abacus_server::sinks::remote_write::encode::compress(&encoder.encode(&window));
    let req = abacus_server::sinks::remote_write::encode::decompress(&body).unwrap();
    let mut rw: Vec<String> = req
        .timeseries
        .iter()
        .filter(|ts| {
            ts.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "esc_g")
        })
        .filter_map(|ts| ts.labels.iter().find(|l| l.name == "v"))
        .map(|l| l.value.clone())
        .collect();
    rw.sort();
    assert_eq!(rw, want, "remote-write");

    // JSON query API: the label filter matches each value exactly (URL-encoded by reqwest).
    let state = srv.state.clone();
    poll("StatsD unicode tag", || {
        let n = state
            .registry()
            .snapshot()
            .counter("esc_s", &[("v", "ünïcødé € 😀")]);
        async move { (n == Some(1)).then_some(()) }
    })
    .await;
    srv.close_window().await;
    for v in WEIRD {
        for name in ["esc_g", "esc_c", "esc_h"] {
            let rows: Value = client
                .get(srv.url(&format!("/metrics/{name}?v={}", enc(v))))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(rows.as_array().unwrap().len(), 1, "{name} v={v:?}: {rows}");
            assert_eq!(rows[0]["count"], 1, "{name} v={v:?}: {rows}");
        }
    }
    let none: Value = client
        .get(srv.url(&format!("/metrics/esc_g?v={}", enc("quote\\\"inside"))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!([]), "an escaped spelling is another value");
    srv.stop().await.unwrap();

    // SQLite: a new server on the same data directory answers from the stored windows.
    let srv = start(config).await;
    for v in WEIRD {
        let rows: Value = client
            .get(srv.url(&format!("/metrics/esc_h?v={}", enc(v))))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1, "SQLite v={v:?}: {rows}");
        assert_eq!(rows[0]["count"], 1, "SQLite v={v:?}");
        assert_eq!(rows[0]["sum"], 3.0, "SQLite v={v:?}");
    }
    let s: Value = client
        .get(srv.url(&format!("/metrics/esc_s?v={}", enc("ünïcødé € 😀"))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s[0]["sum"], 1.0, "StatsD unicode tag value: {s}");
    srv.stop().await.unwrap();
}
