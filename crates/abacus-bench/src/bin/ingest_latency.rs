//! Per-sample ingestion latency inside `abacus serve`, without sockets: parse + apply of one
//! StatsD line (one line per datagram; `statsd_line` is the receivers' borrowed path,
//! `statsd_line_owned` the owned `parse_packet_into` + `apply` path) and of one `POST /metrics` JSON object, each timed on
//! its own with `std::time::Instant` over `--iters` iterations (default 1,000,000, after
//! 100,000 warm-up iterations); the nanoseconds go into an abacus histogram, whose quantiles
//! (±2.17 %) are printed. The cost of the two `Instant::now()` calls is measured the same way
//! and printed on its own row (it is included in the other rows).
//!
//! `cargo run --release -p abacus-bench --bin ingest_latency [-- --iters N]`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use abacus::Registry;
use abacus_bench::server_load::{json_item, statsd_packets};
use abacus_server::ingest::json::{JsonConfig, parse_metrics_body};
use abacus_server::ingest::statsd::parser::{
    RejectCounts, SinkScratch, StatsdConfig, parse_packet_into,
};
use abacus_server::telemetry::Protocol;
use abacus_server::{AppState, Config};

fn measure(reg: &Registry, name: &str, iters: usize, mut f: impl FnMut(usize)) {
    for i in 0..iters / 10 {
        f(i);
    }
    let h = reg.histogram("latency_ns", &[("case", name)]);
    for i in 0..iters {
        let t = Instant::now();
        f(i);
        let ns = t.elapsed().as_nanos();
        h.record(u64::try_from(ns).unwrap_or(u64::MAX));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);

    let reg = Registry::builder().build().expect("registry");
    let st = AppState::new(Config::default()).expect("default config is valid");

    measure(&reg, "instant_pair_only", iters, |i| {
        black_box(i);
    });

    let cfg = StatsdConfig::default();
    let packets = statsd_packets(1024, 1);
    let mut samples = Vec::new();
    let mut scratch = SinkScratch::default();
    // What the StatsD receivers run: each line applied as it is parsed, names and tags
    // borrowed from the datagram.
    measure(&reg, "statsd_line", iters, |i| {
        let mut rejects = RejectCounts::default();
        black_box(st.apply_statsd(
            Protocol::Statsd,
            black_box(&packets[i & 1023]),
            &cfg,
            &mut scratch,
            &mut rejects,
        ));
    });
    // The owned path (`parse_packet_into` + `apply`) the receivers used before, for comparison.
    measure(&reg, "statsd_line_owned", iters, |i| {
        samples.clear();
        let mut rejects = RejectCounts::default();
        parse_packet_into(
            black_box(&packets[i & 1023]),
            &cfg,
            &mut samples,
            &mut rejects,
        );
        black_box(st.apply(Protocol::Statsd, &samples));
    });

    let jcfg = JsonConfig::default();
    let items: Vec<Vec<u8>> = (0..1024).map(|i| json_item(i).into_bytes()).collect();
    measure(&reg, "json_sample", iters, |i| {
        let s = parse_metrics_body(black_box(&items[i & 1023]), &jcfg).expect("valid item");
        black_box(st.apply(Protocol::HttpJson, &s));
    });

    let snap = reg.snapshot();
    println!("| case | iterations | mean ns | p50 ns | p99 ns | p99.9 ns | max ns |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for case in [
        "instant_pair_only",
        "statsd_line",
        "statsd_line_owned",
        "json_sample",
    ] {
        let h = snap
            .histogram("latency_ns", &[("case", case)])
            .expect("recorded");
        let q = |x: f64| h.quantile(x).unwrap_or(f64::NAN);
        println!(
            "| {case} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            h.count,
            h.mean().unwrap_or(f64::NAN),
            q(0.5),
            q(0.99),
            q(0.999),
            h.max
        );
    }
}
