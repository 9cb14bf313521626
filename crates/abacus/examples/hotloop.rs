//! A tight recording loop on one thread, for profilers (`perf record`, `valgrind
//! --tool=callgrind`): `hotloop handle|latency N`.
use abacus::Registry;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "handle".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    let registry = Registry::new();
    let h = registry.latency("hot");
    if mode == "snapshot" {
        // 10,000 series x 2 shards x 100 samples, then `n` snapshots with percentiles.
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let registry = &registry;
                s.spawn(move || {
                    let mut x = 0x9e37_79b9_u64 + t;
                    for i in 0..1_000_000u64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        registry.record_latency(
                            &format!("svc-{}", i % 10_000),
                            1 + (x % 1000) * (1 + x % 7),
                        );
                    }
                });
            }
        });
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(registry.snapshot());
        }
        println!(
            "{:?} per cumulative snapshot of 10k series",
            started.elapsed() / n as u32
        );
        let snap = registry.snapshot();
        let started = std::time::Instant::now();
        let mut acc = 0.0;
        for _ in 0..n {
            for s in &snap.series {
                if let Some(h) = s.histogram() {
                    acc += h
                        .quantiles(&[0.5, 0.95, 0.99])
                        .iter()
                        .flatten()
                        .sum::<f64>();
                }
            }
        }
        println!(
            "{:?} per p50/p95/p99 of 10k series ({acc})",
            started.elapsed() / n as u32
        );
        let started = std::time::Instant::now();
        let mut acc = 0.0;
        for _ in 0..n {
            let snap = registry.snapshot();
            for s in &snap.series {
                if let Some(h) = s.histogram() {
                    acc += h
                        .quantiles(&[0.5, 0.95, 0.99])
                        .iter()
                        .flatten()
                        .sum::<f64>();
                }
            }
        }
        println!(
            "{:?} per snapshot+percentiles of 10k series ({acc})",
            started.elapsed() / n as u32
        );
        return;
    }
    if mode == "spread" || mode == "spread-latency" {
        // 10,000 series, uniformly random access: memory-bound behaviour.
        let names: Vec<String> = (0..10_000).map(|i| format!("svc-{i:05}")).collect();
        let handles: Vec<_> = names.iter().map(|s| registry.latency(s)).collect();
        let mut x = 0x9e37_79b9_u64;
        for (i, h) in handles.iter().enumerate() {
            h.record(1 + i as u64 % 100);
            registry.record_latency(&names[i], 1 + i as u64 % 100);
        }
        let started = std::time::Instant::now();
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % 10_000) as usize;
            if mode == "spread" {
                handles[i].record(1 + (x >> 32) % 5000);
            } else {
                registry.record_latency(&names[i], 1 + (x >> 32) % 5000);
            }
        }
        println!(
            "{:.1} ns/op",
            started.elapsed().as_nanos() as f64 / n as f64
        );
        let plain: Vec<[std::sync::atomic::AtomicU64; 8]> =
            (0..10_000).map(|_| Default::default()).collect();
        let started = std::time::Instant::now();
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = &plain[(x % 10_000) as usize][(x >> 40) as usize % 8];
            c.store(
                c.load(std::sync::atomic::Ordering::Relaxed) + 1,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        println!(
            "yardstick: one random line of 640 KB: {:.1} ns/op",
            started.elapsed().as_nanos() as f64 / n as f64
        );
        return;
    }
    let handle = mode == "handle";
    let mut x = 0x9e37_79b9_u64;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = 1 + (x & 1023);
        if handle {
            h.record(v);
        } else {
            registry.record_latency("hot", v);
        }
    }
    println!(
        "{:?}",
        registry
            .snapshot()
            .histogram("latency", &[("service", "hot")])
            .map(|h| h.count)
    );
}
