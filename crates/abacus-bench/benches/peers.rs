//! Peer metrics libraries on abacus's record workloads.
//!
//! Groups: `peers/<workload>/t<threads>`; functions: `<target>/<by_name|cached>`.
//! Throughput is `iters * threads` elements per sample, so criterion's
//! `thrpt` is aggregate records/s across all threads.
//!
//! Run: `cargo bench -p abacus-bench --bench peers`
//! (filter e.g. `-- 'peers/zipf10k/t2/prometheus'`).
#![forbid(unsafe_code)]

use std::time::Duration;

use abacus_bench::peers::{Abacus, Baseline, MetricsRs, Otel, Prom, PromClient};
use std::sync::Arc;

use abacus_bench::{Inputs, Mode, Pool, Target, Workload};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};

/// Thread counts measured (the reference machine has 2 cores: 4 threads
/// measures behaviour under oversubscription/preemption).
const THREADS: [usize; 3] = [1, 2, 4];

/// Benchmarks one target in both modes on one workload/thread count.
///
/// A fresh target is built per group so series from other workloads don't
/// linger. All series are registered (via `handles`) before anything is
/// timed, so `by_name` measures steady-state lookups, not first inserts.
fn bench_target<T: Target + 'static>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    target: T,
    inputs: &Arc<Inputs>,
    threads: usize,
) {
    let target = Arc::new(target);
    // Register every series before anything is timed, so `by_name` measures steady-state
    // lookups, not first inserts.
    let _ = target.handles(&inputs.services);
    target.maintain();
    let name = target.name();
    let pool = Pool::new(target.clone(), inputs.clone(), threads);
    for (mode, label) in [(Mode::ByName, "by_name"), (Mode::Cached, "cached")] {
        group.bench_function(BenchmarkId::new(name, label), |b| {
            b.iter_custom(|iters| {
                let d = pool.run(mode, iters);
                target.maintain();
                d
            });
        });
    }
}

fn peers(c: &mut Criterion) {
    for workload in Workload::ALL {
        let inputs = Arc::new(workload.inputs());
        for threads in THREADS {
            let mut group = c.benchmark_group(format!("peers/{}/t{threads}", workload.name()));
            group.throughput(Throughput::Elements(threads as u64));

            bench_target(&mut group, Baseline::new(), &inputs, threads);
            bench_target(&mut group, MetricsRs::new(), &inputs, threads);
            bench_target(&mut group, Prom::new(), &inputs, threads);
            bench_target(&mut group, PromClient::new(), &inputs, threads);
            bench_target(&mut group, Otel::new(), &inputs, threads);
            bench_target(&mut group, Abacus::new(), &inputs, threads);

            group.finish();
        }
    }
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
    targets = peers
}
criterion_main!(benches);
