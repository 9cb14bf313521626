//! Exposition rendering: 10,000 histogram series (`service` label, 100
//! samples each, [`LATENCY_BUCKETS_MS`](abacus_bench::LATENCY_BUCKETS_MS)
//! buckets), time to render the Prometheus text format.
//!
//! Run: `cargo bench -p abacus-bench --bench render`
#![forbid(unsafe_code)]

use std::time::Duration;

use abacus_bench::peers::{Abacus, MetricsRs, Prom, PromClient};
use abacus_bench::{Target, Workload};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SERIES: usize = 10_000;
const SAMPLES_PER_SERIES: usize = 100;

/// Fills `target` with SERIES series x SAMPLES_PER_SERIES samples, using the
/// Zipf10k service names and its latency sequence.
fn fill<T: Target>(target: &T) {
    let inputs = Workload::Zipf10k.inputs();
    assert_eq!(inputs.services.len(), SERIES);
    let handles = target.handles(&inputs.services);
    let mut lat = inputs.ops.iter().map(|o| o.latency_ms).cycle();
    for _ in 0..SAMPLES_PER_SERIES {
        for idx in 0..SERIES {
            abacus_bench::HandleSet::record(&handles, idx, lat.next().expect("cycle"));
        }
    }
    target.maintain();
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render/10k_series");
    group.throughput(Throughput::Elements(SERIES as u64));

    // metrics-exporter-prometheus 0.18: PrometheusHandle::render().
    // The first render drains the buffered samples into the histograms; do it
    // before timing so every timed render sees the same steady state.
    let m = MetricsRs::new();
    fill(&m);
    let out = m.handle().render();
    assert!(out.contains("latency_bucket{service=\"svc-09999\""));
    group.bench_function("metrics_prometheus", |b| {
        b.iter(|| black_box(m.handle().render()));
    });

    // prometheus 0.14: Registry::gather() + TextEncoder.
    let p = Prom::new();
    fill(&p);
    group.bench_function("prometheus", |b| {
        b.iter(|| {
            let families = p.registry().gather();
            black_box(
                prometheus::TextEncoder::new()
                    .encode_to_string(&families)
                    .expect("encode"),
            )
        });
    });

    // prometheus-client 0.25: encoding::text::encode.
    let pc = PromClient::new();
    fill(&pc);
    group.bench_function("prometheus_client", |b| {
        b.iter(|| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, pc.registry()).expect("encode");
            black_box(s)
        });
    });

    // abacus: cumulative snapshot + Prometheus text, same classic buckets as the peers.
    let a = Abacus::new();
    fill(&a);
    assert!(
        a.render()
            .contains("latency_seconds_bucket{service=\"svc-09999\"")
    );
    group.bench_function("abacus", |b| b.iter(|| black_box(a.render())));

    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = render
}
criterion_main!(benches);
