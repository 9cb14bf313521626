//! Several threads record latencies for several services; the flusher prints a table of
//! each window to stdout until Ctrl-C or `--duration` seconds.
//!
//! ```text
//! cargo run --release -p abacus --example demo -- --duration 10 --interval 2 --threads 4
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abacus::Registry;
use abacus::flush::{Flusher, TableSink};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let duration = arg(&args, "--duration", 0);
    let interval = arg(&args, "--interval", 1).max(1);
    let threads = arg(&args, "--threads", 4).max(1);
    let services = ["checkout", "search", "login", "cart", "payments"];

    let registry = Registry::new();
    let flusher = Flusher::builder(registry.clone())
        .interval(Duration::from_secs(interval))
        .sink(TableSink::stdout())
        .spawn()
        .expect("interval is non-zero");

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Ctrl-C: stop the workers; the final partial window is flushed below.
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .expect("install Ctrl-C handler");
    }
    let recorded = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (registry, stop, recorded) = (&registry, &stop, &recorded);
            s.spawn(move || {
                // A small xorshift generator: latencies roughly log-uniform, 1 ms .. 2 s,
                // with a slow tail for `payments`.
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (t + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let service = services[(x % services.len() as u64) as usize];
                        let base = 1u64 << ((x >> 8) % 8);
                        let tail = if service == "payments" && (x >> 40) % 50 == 0 {
                            1500
                        } else {
                            0
                        };
                        registry.record_latency(service, base + (x >> 20) % base + tail);
                    }
                    n += 1000;
                    // Pace the demo to about 200k samples/s per thread so the output is readable.
                    std::thread::sleep(Duration::from_millis(5));
                    if duration > 0 && started.elapsed() >= Duration::from_secs(duration) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                recorded.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    flusher.shutdown();
    println!(
        "recorded {} samples in {:.1}s; registry stats: {:?}",
        recorded.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        registry.stats()
    );
}
