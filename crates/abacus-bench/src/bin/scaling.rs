//! Two-thread scaling of abacus on every peer-bench workload, measured so that this VM's
//! drifts cancel out. For each workload (uniform100, zipf10k, onehot) and mode (by name,
//! cached thread-bound handles), one pool of two persistent workers (the same [`Pool`] the
//! criterion peer bench uses, pinned to one CPU each) records into one registry. A round runs
//! worker 0 alone, worker 1 alone, then both at once (or the reverse), a fraction of a second
//! apart, and gives one ratio: `throughput(both) / mean(throughput(each alone))`. The table
//! shows the median and the range over the rounds.
//!
//! Why the same two threads for both sides: a thread's speed alone depends on where its
//! memory landed. With 10 pools of one worker each, recording `uniform100` by name into 10
//! registries, one or two workers in most runs recorded about 25 % slower than the others
//! (82–84 against 105–112 M records/s, and steadily so across rounds), even pinned to the
//! same CPU; which ones changed from run to run. Comparing a 2-thread pool with another,
//! 1-thread pool put that lottery into the ratio (1.59× in one run, 2.6× in another), when the
//! question is what running at the same time costs the same threads. Rounds go over every row
//! in turn, so a slow spell of the host lands in one round of several rows instead of every
//! round of one row.
//!
//! Each round also runs a control the same way: [`Private`], whose "record" adds the latency
//! to a counter of the calling thread's own (thread-local) array, indexed like abacus's
//! cells. Its 2-thread scaling is what this VM gives two threads that share nothing; a row
//! where abacus trails the control points at the code, a round where both drop points at the
//! host (vCPUs on hyperthread siblings, another guest, clock frequency).
//!
//! Each run lasts a fixed time (40 ms by default) and counts the records its workers made:
//! throughput is what the process achieves, not how soon the slower of two workers would
//! finish an equal share of a fixed amount of work.
//!
//! `cargo run --release -p abacus-bench --bin scaling [-- --rounds R --millis T]`
//! (defaults: 15 rounds, runs of 40 ms).
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use abacus_bench::peers::Abacus;
use abacus_bench::{HandleSet, Inputs, Mode, Pool, Target, Workload};

thread_local! {
    /// The control's per-thread counters, one per service.
    static PRIVATE: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Control target: every thread adds into its own thread-local counters (nothing shared).
struct Private;

/// The control's handles: just the index.
struct PrivateHandles;

#[inline]
fn private_add(idx: usize, v: u64) {
    PRIVATE.with_borrow_mut(|a| {
        if idx >= a.len() {
            a.resize(idx + 1, 0);
        }
        a[idx] = a[idx].wrapping_add(v);
    });
}

impl HandleSet for PrivateHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        private_add(idx, latency_ms);
    }
}

impl Target for Private {
    type Handles = PrivateHandles;

    fn name(&self) -> &'static str {
        "private"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        // The name's last byte picks the counter: by-name work without a map.
        private_add(
            usize::from(*service.as_bytes().last().unwrap_or(&0)),
            latency_ms,
        );
    }

    fn handles(&self, _services: &[String]) -> PrivateHandles {
        PrivateHandles
    }

    fn recorded_count(&self, _service: &str) -> Option<u64> {
        None
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One target's 2-worker pool and the ratios of its rounds.
struct Pair {
    pool: Pool,
    /// Per round: the two workers' solo rates, averaged.
    r1: Vec<f64>,
    /// Per round: both workers at once.
    r2: Vec<f64>,
    ratio: Vec<f64>,
    /// Time of each run.
    time: Duration,
}

impl Pair {
    fn new<T: Target + 'static>(target: T, inputs: &Arc<Inputs>, time: Duration) -> Pair
    where
        T::Handles: 'static,
    {
        Pair {
            pool: Pool::new(Arc::new(target), inputs.clone(), 2),
            r1: Vec::new(),
            r2: Vec::new(),
            ratio: Vec::new(),
            time,
        }
    }

    /// One round: worker 0 alone, worker 1 alone and both together, in this order or the
    /// reverse.
    fn round(&mut self, mode: Mode, forward: bool) {
        let mut runs: [&[usize]; 3] = [&[0], &[1], &[0, 1]];
        if !forward {
            runs.reverse();
        }
        let (mut solo, mut both) = (0.0, 0.0);
        for workers in runs {
            let (made, wall) = self.pool.run_for(mode, self.time, workers);
            let rate = made as f64 / wall.as_secs_f64();
            if workers.len() == 1 {
                solo += rate / 2.0;
            } else {
                both = rate;
            }
        }
        self.r1.push(solo);
        self.r2.push(both);
        self.ratio.push(both / solo);
    }

    /// Median ratio and its range.
    fn ratios(&self) -> (f64, f64, f64) {
        let (lo, hi) = self
            .ratio
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        (median(&mut self.ratio.clone()), lo, hi)
    }
}

/// One row of the table: a workload and mode, abacus and the control.
struct Row {
    workload: Workload,
    mode: Mode,
    mode_name: &'static str,
    abacus: Pair,
    control: Pair,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = arg(&args, "--rounds", 15).max(1);
    let time = Duration::from_millis(arg(&args, "--millis", 40).max(1));
    let mut rows = Vec::new();
    for workload in Workload::ALL {
        let inputs = Arc::new(workload.inputs());
        for (mode, mode_name) in [(Mode::ByName, "by_name"), (Mode::Cached, "cached")] {
            let abacus = Pair::new(Abacus::new(), &inputs, time);
            let control = Pair::new(Private, &inputs, time);
            // Warm-up: series created, caches filled.
            for pair in [&abacus, &control] {
                pair.pool.run(mode, 1_000_000);
            }
            rows.push(Row {
                workload,
                mode,
                mode_name,
                abacus,
                control,
            });
        }
    }
    // Rounds go over every row in turn, so a slow spell of the host (they last about a
    // second here) lands in one round of several rows instead of every round of one row.
    for round in 0..rounds {
        for row in &mut rows {
            // Alternate the order of the runs, so a drift inside a round favours neither.
            let forward = round % 2 == 0;
            row.abacus.round(row.mode, forward);
            row.control.round(row.mode, !forward);
        }
    }
    println!(
        "| workload | mode | 1 thread (each worker alone, mean), M rec/s (median) | 2 threads, M rec/s (median) | 2t ÷ 1t median | min – max over {rounds} rounds | control 2t ÷ 1t median (min – max) |"
    );
    println!("|---|---|---:|---:|---:|---|---|");
    for row in &mut rows {
        let (m, lo, hi) = row.abacus.ratios();
        let (cm, clo, chi) = row.control.ratios();
        println!(
            "| {} | {} | {:.1} | {:.1} | **{m:.2}×** | {lo:.2} – {hi:.2} | {cm:.2}× ({clo:.2} – {chi:.2}) |",
            row.workload.name(),
            row.mode_name,
            median(&mut row.abacus.r1) / 1e6,
            median(&mut row.abacus.r2) / 1e6,
        );
    }
}
