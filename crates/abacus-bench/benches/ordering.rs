//! Memory-ordering cost of a hot counter: `fetch_add(Relaxed)` vs
//! `fetch_add(SeqCst)` vs a single-writer `load(Relaxed)` + `store(Relaxed)`,
//! at 1 and 2 threads, with per-thread counters (each in its own
//! `CachePadded`), per-thread counters packed adjacently (false sharing), and
//! one shared counter.
//!
//! The single-writer load+store variant is only correct when each counter has
//! exactly one writer, so it is not run on the shared counter.
//!
//! Run: `cargo bench -p abacus-bench --bench ordering`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use abacus_bench::run_threads;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;

#[derive(Clone, Copy, Debug)]
enum Op {
    FetchAddRelaxed,
    FetchAddSeqCst,
    LoadStoreRelaxed,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::FetchAddRelaxed => "fetch_add_relaxed",
            Op::FetchAddSeqCst => "fetch_add_seqcst",
            Op::LoadStoreRelaxed => "load_store_relaxed",
        }
    }
}

#[inline(always)]
fn bump(c: &AtomicU64, op: Op) {
    match op {
        Op::FetchAddRelaxed => {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Op::FetchAddSeqCst => {
            c.fetch_add(1, Ordering::SeqCst);
        }
        Op::LoadStoreRelaxed => {
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }
}

/// Runs `iters` bumps per thread; `pick(t)` selects thread `t`'s counter.
/// `op` is matched once outside the loop so each loop is monomorphic.
fn run<'a>(
    threads: usize,
    iters: u64,
    op: Op,
    pick: impl Fn(usize) -> &'a AtomicU64 + Sync,
) -> Duration {
    run_threads(threads, |t| {
        let c = black_box(pick(t));
        match op {
            Op::FetchAddRelaxed => (0..iters).for_each(|_| bump(c, Op::FetchAddRelaxed)),
            Op::FetchAddSeqCst => (0..iters).for_each(|_| bump(c, Op::FetchAddSeqCst)),
            Op::LoadStoreRelaxed => (0..iters).for_each(|_| bump(c, Op::LoadStoreRelaxed)),
        }
    })
}

fn ordering(c: &mut Criterion) {
    const OPS: [Op; 3] = [
        Op::FetchAddRelaxed,
        Op::FetchAddSeqCst,
        Op::LoadStoreRelaxed,
    ];
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("ordering/t{threads}"));
        group.throughput(Throughput::Elements(threads as u64));

        let padded: Vec<CachePadded<AtomicU64>> = (0..threads)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect();
        let adjacent: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
        let shared = CachePadded::new(AtomicU64::new(0));

        for op in OPS {
            group.bench_function(BenchmarkId::new(op.name(), "per_thread_padded"), |b| {
                b.iter_custom(|iters| run(threads, iters, op, |t| &*padded[t]));
            });
            if threads > 1 {
                group.bench_function(BenchmarkId::new(op.name(), "per_thread_adjacent"), |b| {
                    b.iter_custom(|iters| run(threads, iters, op, |t| &adjacent[t]));
                });
            }
            if !matches!(op, Op::LoadStoreRelaxed) {
                group.bench_function(BenchmarkId::new(op.name(), "shared"), |b| {
                    b.iter_custom(|iters| run(threads, iters, op, |_| &*shared));
                });
            }
        }
        group.finish();
        black_box((&padded, &adjacent, &shared));
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = ordering
}
criterion_main!(benches);
