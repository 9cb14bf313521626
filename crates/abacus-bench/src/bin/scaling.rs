//! Two-thread scaling of abacus on every peer-bench workload, measured so that this VM's
//! drifting per-thread speed cancels out: for each workload (uniform100, zipf10k, onehot)
//! and mode (by name, cached thread-bound handles), a 1-thread and a 2-thread pool of
//! persistent workers (the same [`Pool`] the criterion peer bench uses) record into one
//! registry, and their runs alternate, round after round. Each round gives one ratio,
//! `throughput(2 threads) / throughput(1 thread)`, from two runs taken a fraction of a second
//! apart; the table shows the median and the range over the rounds.
//!
//! `cargo run --release -p abacus-bench --bin scaling [-- --rounds R --iters N]`
//! (defaults: 9 rounds, 4,000,000 records per thread per run).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use abacus_bench::peers::Abacus;
use abacus_bench::{Mode, Pool, Workload};

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = arg(&args, "--rounds", 9).max(1);
    let iters = arg(&args, "--iters", 4_000_000).max(1);
    println!(
        "| workload | mode | 1 thread, M rec/s (median) | 2 threads, M rec/s (median) | 2t ÷ 1t median | min – max over {rounds} rounds |"
    );
    println!("|---|---|---:|---:|---:|---|");
    for workload in Workload::ALL {
        let inputs = Arc::new(workload.inputs());
        for (mode, mode_name) in [(Mode::ByName, "by_name"), (Mode::Cached, "cached")] {
            let target = Arc::new(Abacus::new());
            let one = Pool::new(target.clone(), inputs.clone(), 1);
            let two = Pool::new(target, inputs.clone(), 2);
            // Warm-up: series created, caches filled, on both pools.
            one.run(mode, iters / 4);
            two.run(mode, iters / 4);
            let rate = |d: Duration, threads: u64| (iters * threads) as f64 / d.as_secs_f64();
            let (mut r1, mut r2, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                // Alternate which pool goes first, so a drift inside a round favours neither.
                let (a, b) = if round % 2 == 0 {
                    let a = one.run(mode, iters);
                    (a, two.run(mode, iters))
                } else {
                    let b = two.run(mode, iters);
                    (one.run(mode, iters), b)
                };
                let (x1, x2) = (rate(a, 1), rate(b, 2));
                r1.push(x1);
                r2.push(x2);
                ratio.push(x2 / x1);
            }
            let (lo, hi) = ratio
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            println!(
                "| {} | {mode_name} | {:.1} | {:.1} | **{:.2}×** | {lo:.2} – {hi:.2} |",
                workload.name(),
                median(&mut r1) / 1e6,
                median(&mut r2) / 1e6,
                median(&mut ratio),
            );
        }
    }
}
