//! OTLP with the OpenTelemetry Rust SDK exporters (HTTP protobuf and gRPC) and a
//! hand-written OTLP/JSON body.

use std::net::SocketAddr;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use serde_json::Value;

use crate::common::{start, test_config};

/// Records known values through an SDK meter provider and flushes twice (two exports).
fn record_and_flush(exporter: MetricExporter) {
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("checkout").build())
        .build();
    let meter = provider.meter("abacus-test");
    let orders = meter.u64_counter("orders").build();
    let duration = meter
        .f64_histogram("request.duration")
        .with_boundaries(vec![10.0, 50.0, 100.0])
        .build();
    let eu = [KeyValue::new("region", "eu")];
    orders.add(5, &eu);
    for v in [5.0, 20.0] {
        duration.record(v, &eu);
    }
    provider.force_flush().expect("first export");
    orders.add(7, &eu);
    for v in [70.0, 200.0] {
        duration.record(v, &eu);
    }
    provider.force_flush().expect("second export");
    provider.shutdown().expect("shutdown");
}

async fn check_read_back(srv: &crate::common::Running) {
    let labels = [("region", "eu"), ("service", "checkout")];
    let snap = srv.state.registry().snapshot();
    assert_eq!(
        snap.counter("orders", &labels),
        Some(12),
        "{:#?}",
        snap.series
    );
    let h = snap
        .histogram("request_duration", &labels)
        .expect("histogram");
    assert_eq!(h.count, 4);
    assert_eq!(h.sum, 295.0);
    srv.close_window().await;
    let rows = srv.state.windows().query(
        "request_duration",
        &[("service".into(), "checkout".into())],
        None,
        None,
    );
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].count, rows[0].sum), (4, 295.0));
    let orders = srv.state.windows().query("orders", &[], None, None);
    assert_eq!(orders[0].sum, 12.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_exporter_values_read_back_exactly() {
    let srv = start(test_config()).await;
    let url = format!("http://{}/v1/metrics", srv.otlp_http);
    tokio::task::spawn_blocking(move || {
        let exporter = MetricExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_temporality(Temporality::Delta)
            .build()
            .expect("exporter");
        record_and_flush(exporter);
    })
    .await
    .unwrap();
    check_read_back(&srv).await;
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_exporter_with_cumulative_temporality_reads_back_exactly() {
    let srv = start(test_config()).await;
    let endpoint = format!("http://{}", srv.otlp_grpc);
    tokio::task::spawn_blocking(move || {
        let exporter = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_temporality(Temporality::Cumulative)
            .build()
            .expect("exporter");
        record_and_flush(exporter);
    })
    .await
    .unwrap();
    check_read_back(&srv).await;
    srv.stop().await.unwrap();
}

fn json_body(now_nanos: u128) -> String {
    let t = now_nanos.to_string();
    serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
            "scopeMetrics": [{"metrics": [
                {"name": "queue.depth", "gauge": {"dataPoints": [{"asDouble": 7.5, "timeUnixNano": t}]}},
                {"name": "bad.sum", "sum": {"isMonotonic": true, "aggregationTemporality": 0,
                    "dataPoints": [{"asInt": "3", "timeUnixNano": t}]}}
            ]}]
        }]
    })
    .to_string()
}

async fn post_json(addr: SocketAddr, body: String) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/metrics"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_reports_rejected_points_as_partial_success() {
    let srv = start(test_config()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (status, resp) = post_json(srv.otlp_http, json_body(now)).await;
    assert_eq!(status, 200, "{resp}");
    let rejected = &resp["partialSuccess"]["rejectedDataPoints"];
    assert!(rejected == 1 || rejected == "1", "{resp}");
    assert_eq!(
        srv.state
            .registry()
            .snapshot()
            .gauge("queue_depth", &[("service", "js")]),
        Some(7.5)
    );
    let (status, resp) = post_json(srv.otlp_http, "{not json".into()).await;
    assert_eq!(status, 400);
    assert!(resp["error"].is_string());
    srv.stop().await.unwrap();
}
