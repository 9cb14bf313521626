//! Tight recording loops for profilers (`perf record -e cpu-clock`, `valgrind
//! --tool=callgrind`): `hotloop handle|local|latency|spread|spread-latency|snapshot|snapshot-ab|render|
//! render-registry|render-snapshot N`.
use std::time::Instant;

use abacus::Registry;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A log-normal-ish latency in ms (median 50, 1..=10,000) from one random word: the exp of
/// a sum of four 16-bit uniforms.
fn lognormal_ms(r: u64) -> u64 {
    let g: f64 = (0..4)
        .map(|k| ((r >> (k * 16)) & 0xffff) as f64 / 65536.0)
        .sum();
    (50.0 * ((g - 2.0) * 2.1).exp()).clamp(1.0, 10_000.0) as u64
}

/// The sum of p50, p95 and p99 over every histogram of `snap` (what the criterion snapshot
/// bench computes).
fn quantile_sum(snap: &abacus::Snapshot) -> f64 {
    snap.series
        .iter()
        .filter_map(|s| s.histogram())
        .map(|h| {
            h.quantiles(&[0.5, 0.95, 0.99])
                .iter()
                .flatten()
                .sum::<f64>()
        })
        .sum()
}

/// One hot series through a handle.
#[inline(never)]
fn run_handle(registry: &Registry, n: u64) {
    let h = registry.latency("hot");
    let mut x = 0x9e37_79b9_u64;
    for _ in 0..n {
        h.record(1 + (xorshift(&mut x) & 1023));
    }
}

/// One hot series through a thread-bound handle.
#[inline(never)]
fn run_local(registry: &Registry, n: u64, service: &str) {
    let h = registry.latency(service).local();
    let mut x = 0x9e37_79b9_u64;
    for _ in 0..n {
        h.record(1 + (xorshift(&mut x) & 1023));
    }
}

/// One hot series by name.
#[inline(never)]
fn run_latency(registry: &Registry, n: u64) {
    let mut x = 0x9e37_79b9_u64;
    for _ in 0..n {
        registry.record_latency("hot", 1 + (xorshift(&mut x) & 1023));
    }
}

/// 10,000 series (or the third argument), uniformly random access: memory-bound behaviour.
/// With `ZIPF=1` in the environment, services are drawn Zipf(1.1) instead.
#[inline(never)]
fn run_spread(registry: &Registry, n: u64, by_name: bool) {
    let services: usize = std::env::args()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let names: Vec<String> = (0..services).map(|i| format!("svc-{i:05}")).collect();
    let handles: Vec<_> = names.iter().map(|s| registry.latency(s)).collect();
    for (i, h) in handles.iter().enumerate() {
        h.record(1 + i as u64 % 100);
        registry.record_latency(&names[i], 1 + i as u64 % 100);
    }
    let mut x = 0x9e37_79b9_u64;
    let zipf = std::env::var("ZIPF").is_ok_and(|v| v == "1");
    // Zipf(1.1) by inverse CDF over a pre-drawn sequence, so the timed loop does not sample.
    let cdf: Vec<f64> = (1..=services)
        .scan(0.0, |acc, k| {
            *acc += (k as f64).powf(-1.1);
            Some(*acc)
        })
        .collect();
    let seq: Vec<u32> = (0..65_536)
        .map(|_| {
            let r = xorshift(&mut x);
            if zipf {
                let u = (r >> 11) as f64 / (1u64 << 53) as f64 * cdf[services - 1];
                cdf.partition_point(|&c| c < u).min(services - 1) as u32
            } else {
                (r % services as u64) as u32
            }
        })
        .collect();
    let started = Instant::now();
    for k in 0..n {
        let r = xorshift(&mut x);
        let i = seq[k as usize & 65_535] as usize;
        if by_name {
            registry.record_latency(&names[i], 1 + (r >> 32) % 5000);
        } else {
            handles[i].record(1 + (r >> 32) % 5000);
        }
    }
    println!(
        "{:.1} ns/op",
        started.elapsed().as_nanos() as f64 / n as f64
    );
}

/// Nanoseconds this thread has spent on a CPU (`/proc/thread-self/schedstat`; 0 elsewhere).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `f` `n` times; the fastest and the median run, in wall-clock time and in on-CPU
/// time (the machine is shared: on-CPU time leaves out the waits for a core).
fn timed(n: u32, mut f: impl FnMut()) -> String {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..n.max(1) {
        let (started, c0) = (Instant::now(), cpu_ns());
        f();
        cpu.push(std::time::Duration::from_nanos(cpu_ns() - c0));
        wall.push(started.elapsed());
    }
    wall.sort();
    cpu.sort();
    let mid = wall.len() / 2;
    format!(
        "wall min {:?} median {:?}, cpu min {:?} median {:?}",
        wall[0], wall[mid], cpu[0], cpu[mid]
    )
}

/// 10,000 series x 2 shards x 100 log-normal samples (median 50 ms), then `n` snapshots.
#[inline(never)]
fn run_snapshot(registry: &Registry, n: u32) {
    let series: u64 = std::env::args()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let names: Vec<String> = (0..series).map(|i| format!("svc-{i:05}")).collect();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (registry, names) = (registry, &names);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_u64 + t;
                for i in 0..1_000_000u64 {
                    let v = lognormal_ms(xorshift(&mut x));
                    registry.record_latency(&names[(i % series) as usize], v);
                }
            });
        }
    });
    println!(
        "cumulative snapshot of {series} series: {}",
        timed(n, || drop(std::hint::black_box(registry.snapshot())))
    );
    let snap = registry.snapshot();
    println!(
        "p50/p95/p99 of {series} series: {}",
        timed(n, || {
            std::hint::black_box(quantile_sum(&snap));
        })
    );
    println!(
        "delta snapshot of {series} series: {}",
        timed(n, || drop(std::hint::black_box(registry.delta())))
    );
}

/// `snapshot-ab N SERIES`: 2 threads x 50 log-normal samples per series (the criterion
/// snapshot bench's shape), recorded in lockstep into two registries
/// (one collecting on the calling thread, one on up to `COLLECT_THREADS`, default 2), whose
/// memory is therefore interleaved alike; then `n` rounds alternating a cumulative snapshot
/// plus p50/p95/p99 of every series (the criterion bench's loop) between the two.
#[inline(never)]
fn run_snapshot_ab(n: u32) {
    let series: u64 = std::env::args()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let threads = std::env::var("COLLECT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let build = |t: usize| {
        Registry::builder()
            .collect_threads(t)
            .build()
            .expect("valid registry configuration")
    };
    let (one, many) = (build(1), build(threads));
    let names: Vec<String> = (0..series).map(|i| format!("svc-{i:05}")).collect();
    // Both threads hold their shards until both are done, so that each series gets two
    // cells even when the threads do not overlap (under valgrind, which runs one at a time).
    let done = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (one, many, names, done) = (&one, &many, &names, &done);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_u64 + t;
                // 50 samples per series and thread, as the criterion bench records.
                for i in 0..50 * series {
                    let v = lognormal_ms(xorshift(&mut x));
                    let name = &names[(i % series) as usize];
                    one.record_latency(name, v);
                    many.record_latency(name, v);
                }
                done.wait();
            });
        }
    });
    let measure = |registry: &Registry| {
        let started = Instant::now();
        let snap = registry.snapshot();
        std::hint::black_box(quantile_sum(&snap));
        drop(snap);
        started.elapsed()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..n.max(1) {
        a.push(measure(&one));
        b.push(measure(&many));
    }
    a.sort();
    b.sort();
    let mid = a.len() / 2;
    println!(
        "snapshot + p50/p95/p99 of {series} series, 1 thread: min {:?} median {:?}; up to {threads}: min {:?} median {:?}",
        a[0], a[mid], b[0], b[mid]
    );
}

/// Fills `registry` with the `render` bench's shape — 10,000 series x 100 log-normal-ish
/// samples from one thread — and returns that bench's render options.
fn fill_render_shape(registry: &Registry) -> abacus::exposition::prometheus::RenderOptions {
    use abacus::exposition::prometheus::RenderOptions;
    let names: Vec<String> = (0..10_000).map(|i| format!("svc-{i:05}")).collect();
    let handles: Vec<_> = names.iter().map(|s| registry.latency(s)).collect();
    let mut x = 0x9e37_79b9_u64;
    for _ in 0..100 {
        for h in &handles {
            h.record(lognormal_ms(xorshift(&mut x)));
        }
    }
    RenderOptions {
        integer_buckets: (0..15).map(|e| f64::from(1u32 << e)).collect(),
        ..RenderOptions::default()
    }
}

/// 10,000 series x 100 samples from one thread (the `render` bench's shape), then `n`
/// cumulative snapshots, renders of one snapshot and delta snapshots, timed separately.
#[inline(never)]
fn run_render(registry: &Registry, n: u32) {
    use abacus::exposition::prometheus::{render, render_registry};
    let opts = fill_render_shape(registry);
    println!(
        "cumulative snapshot: {}",
        timed(n, || drop(std::hint::black_box(registry.snapshot())))
    );
    let snap = registry.snapshot();
    println!(
        "render: {} ({} bytes)",
        timed(n, || drop(std::hint::black_box(render(&snap, &opts)))),
        render(&snap, &opts).len()
    );
    println!(
        "snapshot + render: {}",
        timed(n, || {
            drop(std::hint::black_box(render(&registry.snapshot(), &opts)))
        })
    );
    println!(
        "render_registry: {}",
        timed(n, || {
            drop(std::hint::black_box(render_registry(registry, &opts)))
        })
    );
    println!(
        "delta snapshot: {}",
        timed(n, || drop(std::hint::black_box(registry.delta())))
    );
}

/// As `render`, but only `n` [`render_registry`](abacus::exposition::prometheus::render_registry)
/// calls after the fill (for `valgrind --tool=callgrind --toggle-collect=*render_only*`).
#[inline(never)]
fn run_render_only(registry: &Registry, n: u32, fused: bool) {
    use abacus::exposition::prometheus::{render, render_registry};
    let opts = fill_render_shape(registry);
    let label = if fused {
        "render_registry"
    } else {
        "snapshot + render"
    };
    println!(
        "{label}: {}",
        timed(n, || {
            if fused {
                drop(std::hint::black_box(render_registry(registry, &opts)))
            } else {
                drop(std::hint::black_box(render(&registry.snapshot(), &opts)))
            }
        })
    );
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "handle".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    // `COLLECT_THREADS=1` reads snapshots on the calling thread only.
    let mut builder = Registry::builder();
    if let Some(t) = std::env::var("COLLECT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.collect_threads(t);
    }
    let registry = builder.build().expect("valid registry configuration");
    match mode.as_str() {
        "handle" => run_handle(&registry, n),
        "local" => run_local(&registry, n, "hot"),
        "latency" => run_latency(&registry, n),
        "spread" => run_spread(&registry, n, false),
        "spread-latency" => run_spread(&registry, n, true),
        "snapshot" => run_snapshot(&registry, n as u32),
        "snapshot-ab" => run_snapshot_ab(n as u32),
        "render" => run_render(&registry, n as u32),
        "render-registry" => run_render_only(&registry, n as u32, true),
        "render-snapshot" => run_render_only(&registry, n as u32, false),
        "latency2" | "handle2" | "local2" | "local2-apart" | "local2-registries" => {
            // Two threads, same series (`local2-apart`: one series each): compare with one
            // thread's time for `n`.
            let started = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2 {
                    let registry = &registry;
                    let mode = mode.clone();
                    s.spawn(move || match mode.as_str() {
                        "latency2" => run_latency(registry, n),
                        "handle2" => run_handle(registry, n),
                        "local2" => run_local(registry, n, "hot"),
                        "local2-apart" => {
                            run_local(registry, n, if t == 0 { "hot" } else { "cold" })
                        }
                        _ => run_local(&Registry::new(), n, "hot"),
                    });
                }
            });
            println!("2 threads x {n}: {:?}", started.elapsed());
        }
        other => eprintln!("unknown mode {other}"),
    }
}
