//! Measures resident memory (RSS) of the registry for the figures in BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p abacus --example memory -- series    # 10,000 series from 2 threads
//! cargo run --release -p abacus --example memory -- wide      # same, values spread over 1 ms .. 60 s
//! cargo run --release -p abacus --example memory -- points    # 1,000,000 recorded points
//! ```

use abacus::Registry;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "series".into());
    let before = rss_kib();
    let registry = Registry::builder()
        .max_series(10_000)
        .build()
        .expect("valid config");
    let names: Vec<String> = (0..10_000).map(|i| format!("service-{i:05}")).collect();
    match mode.as_str() {
        "series" | "wide" => {
            // 10,000 latency series, each recorded from 2 threads, 100 samples per thread.
            // `series`: log-normal latencies (median ~50 ms, sigma ~1.2, like the benches).
            // `wide`: spread over 1 ms .. 60 s so every series touches many octaves.
            let wide = mode == "wide";
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (registry, names) = (&registry, &names);
                    s.spawn(move || {
                        let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ t;
                        for round in 0..100u64 {
                            for name in names {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let v = if wide {
                                    1 + (x % 60_000) / (1 + round % 64)
                                } else {
                                    // Sum of 4 uniforms ~ normal; exp gives log-normal.
                                    let g: f64 = (0..4)
                                        .map(|k| ((x >> (k * 16)) & 0xffff) as f64 / 65536.0)
                                        .sum();
                                    (50.0 * ((g - 2.0) * 2.1).exp()).clamp(1.0, 10_000.0) as u64
                                };
                                registry.record_latency(name, v);
                            }
                        }
                    });
                }
            });
        }
        "points" => {
            // 1,000,000 points over 1,000 services, one thread, plus a delta flush.
            let mut x = 0x9e37_79b9_u64;
            for i in 0..1_000_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                registry.record_latency(&names[(i % 1000) as usize], 1 + x % 5_000);
            }
        }
        other => {
            eprintln!("unknown mode {other}: use `series` or `points`");
            std::process::exit(2);
        }
    }
    let after_record = rss_kib();
    let window = registry.delta();
    let after_flush = rss_kib();
    let buckets: usize = window
        .series
        .iter()
        .filter_map(|s| s.histogram())
        .map(|h| h.positive.len())
        .sum();
    drop(window);
    println!(
        "mode={mode} series={} shards={} buckets_in_window={buckets} rss_before={:.1}MiB rss_after_record={:.1}MiB rss_after_flush={:.1}MiB (registry+window {:.1}MiB)",
        registry.stats().series,
        registry.stats().shards,
        before as f64 / 1024.0,
        after_record as f64 / 1024.0,
        after_flush as f64 / 1024.0,
        (after_flush - before) as f64 / 1024.0,
    );
}
