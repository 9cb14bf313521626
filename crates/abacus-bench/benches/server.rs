//! `abacus serve` ingest paths in-process, without sockets: what one request / datagram costs
//! the server between "bytes received" and "applied to the core registry".
//!
//! * `server/otlp_1000`: a 1,000-point OTLP `ExportMetricsServiceRequest` (4 services, 500
//!   delta counter points + 500 delta explicit-bucket histogram points, see
//!   `abacus_bench::server_load::otlp_request`): protobuf decode alone, convert + apply alone
//!   (`AppState::export_otlp`), and the whole path (`decode_request` + `export_otlp`, what the
//!   OTLP/HTTP handler does). Throughput is in points.
//! * `server/statsd`: one datagram of 40 lines, and one line per datagram (parse + apply, what
//!   the UDP receiver does per packet). Throughput is in lines.
//! * `server/json`: a `POST /metrics` array of 1,000 items, and a single object (parse +
//!   apply). Throughput is in items.
//! * `server/query`: what the read handlers do without the socket: `GET /services` for 100
//!   services (the pre-aggregated view plus its JSON body), and `GET /metrics/latency` for
//!   one service over 360 closed windows (an hour of 10 s windows: the store's query plus
//!   the JSON body).
//!
//! Run: `cargo bench -p abacus-bench --bench server`
#![forbid(unsafe_code)]

use std::hint::black_box;

use abacus_bench::server_load::{OTLP_POINTS, json_batch, json_item, otlp_body, statsd_packets};
use abacus_server::ingest::json::{JsonConfig, parse_metrics_body};
use abacus_server::ingest::otlp::decode::{DecodeLimits, decode_request};
use abacus_server::ingest::statsd::parser::{RejectCounts, StatsdConfig, parse_packet_into};
use abacus_server::telemetry::Protocol;
use abacus_server::{AppState, Config};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

fn state() -> AppState {
    AppState::new(Config::default()).expect("default config is valid")
}

fn otlp(c: &mut Criterion) {
    let mut group = c.benchmark_group("server/otlp_1000");
    group.throughput(Throughput::Elements(OTLP_POINTS as u64));
    let body = otlp_body();
    let limits = DecodeLimits::default();
    let st = state();
    let req = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
    assert!(
        st.export_otlp(Protocol::OtlpHttp, &req)
            .partial_success
            .is_none()
    );

    group.bench_function("decode", |b| {
        b.iter(|| ExportMetricsServiceRequest::decode(black_box(body.as_slice())).unwrap());
    });
    group.bench_function("convert_apply", |b| {
        b.iter(|| st.export_otlp(Protocol::OtlpHttp, black_box(&req)));
    });
    group.bench_function("decode_convert_apply", |b| {
        b.iter(|| {
            let req = decode_request(
                black_box(&body),
                Some("application/x-protobuf"),
                None,
                &limits,
            )
            .unwrap();
            st.export_otlp(Protocol::OtlpHttp, &req)
        });
    });
    group.finish();
}

/// What `statsd::Receiver::packet` does for one datagram.
fn statsd_packet(
    st: &AppState,
    cfg: &StatsdConfig,
    samples: &mut Vec<abacus_server::ingest::Sample>,
    data: &[u8],
) -> u64 {
    samples.clear();
    let mut rejects = RejectCounts::default();
    parse_packet_into(data, cfg, samples, &mut rejects);
    st.apply(Protocol::Statsd, samples).accepted
}

fn statsd(c: &mut Criterion) {
    let mut group = c.benchmark_group("server/statsd");
    let st = state();
    let cfg = StatsdConfig::default();
    let mut samples = Vec::new();
    for lines in [40usize, 1] {
        let packets = statsd_packets(256, lines);
        for p in &packets {
            assert_eq!(statsd_packet(&st, &cfg, &mut samples, p), lines as u64);
        }
        group.throughput(Throughput::Elements(lines as u64));
        let mut i = 0usize;
        group.bench_function(format!("{lines}_lines_per_packet"), |b| {
            b.iter(|| {
                let p = &packets[i & 255];
                i = i.wrapping_add(1);
                statsd_packet(&st, &cfg, &mut samples, black_box(p))
            });
        });
    }
    group.finish();
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("server/json");
    let st = state();
    let cfg = JsonConfig::default();
    let batch = json_batch(1000);
    let ingest = |body: &[u8]| {
        let samples = parse_metrics_body(body, &cfg).unwrap();
        st.apply(Protocol::HttpJson, &samples).accepted
    };
    assert_eq!(ingest(&batch), 1000);
    group.throughput(Throughput::Elements(1000));
    group.bench_function("batch_1000", |b| b.iter(|| ingest(black_box(&batch))));

    let items: Vec<Vec<u8>> = (0..256).map(|i| json_item(i).into_bytes()).collect();
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("single_item", |b| {
        b.iter(|| {
            let body = &items[i & 255];
            i = i.wrapping_add(1);
            ingest(black_box(body))
        });
    });
    group.finish();
}

fn query(c: &mut Criterion) {
    let mut group = c.benchmark_group("server/query");
    let config = Config {
        retention_secs: 3_600,
        ..Config::default()
    };
    let st = AppState::new(config).expect("valid config");
    let services: Vec<String> = (0..100).map(|i| format!("svc-{i:03}")).collect();
    for w in 0..360u64 {
        for (i, s) in services.iter().enumerate() {
            for v in 0..20u64 {
                st.registry()
                    .record_latency(s, 1 + (v * 37 + w + i as u64) % 500);
            }
            st.registry()
                .increment_counter("requests", &[("service", s.as_str())], 20);
        }
        st.close_window();
    }
    assert_eq!(st.services().view().len(), 100);
    group.bench_function("services_100", |b| {
        b.iter(|| {
            let view = st.services().view();
            serde_json::to_vec(&serde_json::json!({ "services": *view })).unwrap()
        });
    });
    let filter = vec![("service".to_owned(), "svc-042".to_owned())];
    assert_eq!(
        st.windows().query("latency", &filter, None, None).len(),
        360
    );
    group.bench_function("windows_360", |b| {
        b.iter(|| {
            let rows = st
                .windows()
                .query("latency", black_box(&filter), None, None);
            serde_json::to_vec(&rows).unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, otlp, statsd, json, query);
criterion_main!(benches);
