//! abacus's own hot paths on one persistent thread (the single-thread targets),
//! and snapshot / percentile cost. Peers are in `peers.rs`; a plain relaxed `fetch_add`
//! runs in the same groups as a yardstick for this machine's speed at the time.
//!
//! Run: `cargo bench -p abacus-bench --bench core`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use abacus::Registry;
use abacus_bench::{SEQ_LEN, Workload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MASK: usize = SEQ_LEN - 1;

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/record");
    group.throughput(Throughput::Elements(1));

    let yardstick = AtomicU64::new(0);
    group.bench_function("yardstick_fetch_add_relaxed", |b| {
        b.iter(|| yardstick.fetch_add(black_box(1), Ordering::Relaxed));
    });

    for workload in Workload::ALL {
        let inputs = workload.inputs();
        let registry = Registry::builder().max_series(20_000).build().unwrap();
        let handles: Vec<_> = inputs
            .services
            .iter()
            .map(|s| registry.latency(s))
            .collect();
        // Warm this thread's caches: steady state, as in a long-running service.
        for op in &inputs.ops {
            registry.record_latency(&inputs.services[op.service as usize], op.latency_ms);
            handles[op.service as usize].record(op.latency_ms);
        }
        let mut i = 0usize;
        group.bench_function(format!("{}/record_latency", workload.name()), |b| {
            b.iter(|| {
                let op = inputs.ops[i & MASK];
                i = i.wrapping_add(1);
                registry.record_latency(&inputs.services[op.service as usize], op.latency_ms);
            });
        });
        group.bench_function(format!("{}/handle", workload.name()), |b| {
            b.iter(|| {
                let op = inputs.ops[i & MASK];
                i = i.wrapping_add(1);
                handles[op.service as usize].record(op.latency_ms);
            });
        });
        let locals: Vec<_> = handles.iter().map(|h| h.local()).collect();
        group.bench_function(format!("{}/local_handle", workload.name()), |b| {
            b.iter(|| {
                let op = inputs.ops[i & MASK];
                i = i.wrapping_add(1);
                locals[op.service as usize].record(op.latency_ms);
            });
        });
    }
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/snapshot");
    let inputs = Workload::Zipf10k.inputs();
    for series in [1_000usize, 10_000] {
        // No eviction: repeated deltas over idle series would otherwise evict them all.
        let registry = Registry::builder()
            .max_series(20_000)
            .evict_after_idle(0)
            .build()
            .unwrap();
        // 100 samples per series from 2 threads (2 shards per series).
        std::thread::scope(|s| {
            for t in 0..2 {
                let (registry, inputs) = (&registry, &inputs);
                s.spawn(move || {
                    for k in 0..50 {
                        for (n, name) in inputs.services.iter().take(series).enumerate() {
                            registry.record_latency(
                                name,
                                inputs.ops[(n * 50 + k + t) & MASK].latency_ms,
                            );
                        }
                    }
                });
            }
        });
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(format!("{series}_series/cumulative_p50_p95_p99"), |b| {
            b.iter(|| {
                let snap = registry.snapshot();
                let mut acc = 0.0;
                for s in &snap.series {
                    if let Some(h) = s.histogram() {
                        acc += h
                            .quantiles(&[0.5, 0.95, 0.99])
                            .iter()
                            .flatten()
                            .sum::<f64>();
                    }
                }
                black_box(acc)
            });
        });
        group.bench_function(format!("{series}_series/delta"), |b| {
            b.iter(|| black_box(registry.delta()));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = record, snapshot
}
criterion_main!(benches);
