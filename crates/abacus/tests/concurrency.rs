//! Concurrency: exact totals under contention, snapshots during writes, conservation
//! across flush boundaries and evictions, thread churn, overflow.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use abacus::flush::{CallbackSink, Flusher};
use abacus::{Registry, Snapshot, Value};

const THREADS: u64 = 4;

/// A flusher every `interval` whose windows are summed into the returned totals.
fn summing_flusher(registry: &Registry, interval: Duration) -> (Flusher, Arc<Mutex<Totals>>) {
    let totals = Arc::new(Mutex::new(Totals::default()));
    let sink_totals = totals.clone();
    let flusher = Flusher::builder(registry.clone())
        .interval(interval)
        .sink(CallbackSink(move |w: &Snapshot| {
            add_window(&mut sink_totals.lock().unwrap(), w)
        }))
        .spawn()
        .unwrap();
    (flusher, totals)
}

/// The next word of a xorshift64 sequence.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Totals per key accumulated over delta windows.
#[derive(Default, Debug)]
struct Totals {
    count: u64,
    sum: u64,
    counters: u64,
}

fn add_window(t: &mut Totals, w: &Snapshot) {
    for s in &w.series {
        match &s.value {
            Value::Histogram(h) => {
                t.count += h.count;
                t.sum += h.sum as u64;
            }
            Value::Counter(n) => t.counters += n,
            _ => {}
        }
    }
}

#[test]
fn record_latency_totals_are_exact_under_contention() {
    let registry = Registry::new();
    let per_thread = 200_000u64;
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (registry, barrier) = (&registry, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    let service = format!("svc-{}", i % 10);
                    registry.record_latency(&service, i % 1000 + t);
                }
            });
        }
    });
    let snap = registry.snapshot();
    for svc in 0..10u64 {
        let h = snap
            .histogram("latency", &[("service", &format!("svc-{svc}"))])
            .unwrap();
        assert_eq!(h.count, THREADS * per_thread / 10);
        // Exact sum: thread t records (i % 1000) + t for i ≡ svc (mod 10).
        let mut expect = 0u64;
        for t in 0..THREADS {
            for i in (svc..per_thread).step_by(10) {
                expect += i % 1000 + t;
            }
        }
        assert_eq!(h.sum as u64, expect, "service {svc}");
        assert_eq!(h.min, svc as f64);
        assert_eq!(h.max, (990 + svc + THREADS - 1) as f64);
    }
}

#[test]
fn all_threads_on_one_hot_series_sum_exactly() {
    let registry = Registry::new();
    let handle = registry.latency("hot");
    let counter = registry.counter("hits", &[("service", "hot")]);
    let per_thread = 300_000u64;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (registry, handle, counter) = (&registry, handle.clone(), counter.clone());
            s.spawn(move || {
                for i in 0..per_thread {
                    handle.record(i % 7);
                    registry.record_latency("hot", 1);
                    counter.increment(2);
                    registry.increment_counter("hits", &[("service", "hot")], 1);
                }
            });
        }
    });
    let snap = registry.snapshot();
    let h = snap.histogram("latency", &[("service", "hot")]).unwrap();
    assert_eq!(h.count, 2 * THREADS * per_thread);
    assert_eq!(
        snap.counter("hits", &[("service", "hot")]),
        Some(3 * THREADS * per_thread)
    );
    assert_eq!(counter.total(), 3 * THREADS * per_thread);
}

#[test]
fn snapshots_during_writes_never_go_backwards() {
    let registry = Registry::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (registry, stop) = (&registry, &stop);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    registry.record_latency("a", i % 500 + t);
                    registry.increment_counter("n", &[], 1);
                    i += 1;
                }
            });
        }
        let mut last_count = 0;
        let mut last_counter = 0;
        for _ in 0..300 {
            let snap = registry.snapshot();
            if let Some(h) = snap.histogram("latency", &[("service", "a")]) {
                assert!(h.count >= last_count, "histogram count went backwards");
                let buckets: u64 = h.zero_count + h.positive.iter().map(|b| b.1).sum::<u64>();
                assert_eq!(h.count, buckets, "count is the sum of the buckets");
                assert!(h.min <= h.max);
                last_count = h.count;
            }
            if let Some(n) = snap.counter("n", &[]) {
                assert!(n >= last_counter);
                last_counter = n;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn delta_windows_add_up_to_everything_recorded_across_many_flushes() {
    let registry = Registry::new();
    let totals = Arc::new(Mutex::new(Totals::default()));
    let windows = Arc::new(AtomicU64::new(0));
    let flusher = {
        let (totals, windows) = (totals.clone(), windows.clone());
        Flusher::builder(registry.clone())
            .interval(Duration::from_millis(2))
            .sink(CallbackSink(move |w: &Snapshot| {
                add_window(&mut totals.lock().unwrap(), w);
                windows.fetch_add(1, Ordering::Relaxed);
            }))
            .spawn()
            .unwrap()
    };
    let per_thread = 400_000u64;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let registry = &registry;
            s.spawn(move || {
                let h = registry.histogram("h", &[("t", "shared")]);
                for i in 0..per_thread {
                    registry.record_latency(["a", "b", "c"][(i % 3) as usize], i % 100);
                    h.record(t);
                    registry.increment_counter("c", &[], 1);
                }
            });
        }
    });
    flusher.shutdown();
    let t = totals.lock().unwrap();
    assert!(
        windows.load(Ordering::Relaxed) > 5,
        "the test must span many flushes"
    );
    assert_eq!(t.count, 2 * THREADS * per_thread);
    assert_eq!(t.counters, THREADS * per_thread);
    let latency_sum: u64 = THREADS * (0..per_thread).map(|i| i % 100).sum::<u64>();
    let handle_sum: u64 = (0..THREADS).map(|t| t * per_thread).sum();
    assert_eq!(t.sum, latency_sum + handle_sum);
}

#[test]
fn eviction_racing_writers_loses_nothing() {
    // Series are evicted after one idle flush while writers keep touching them sporadically,
    // so writes race retirement constantly.
    let registry = Registry::builder().evict_after_idle(1).build().unwrap();
    let (flusher, totals) = summing_flusher(&registry, Duration::from_micros(200));
    let per_thread = 60_000u64;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let registry = &registry;
            s.spawn(move || {
                let mut x = 0x1234_5678_u64 + t;
                for i in 0..per_thread {
                    xorshift(&mut x);
                    let svc = format!("s{}", x % 64);
                    registry.record_latency(&svc, 3);
                    registry.increment_counter(&svc, &[], 1);
                    if i % 512 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
            });
        }
    });
    flusher.shutdown();
    let stats = registry.stats();
    assert!(
        stats.evicted_series > 0,
        "eviction must have happened: {stats:?}"
    );
    let t = totals.lock().unwrap();
    assert_eq!(t.count, THREADS * per_thread);
    assert_eq!(t.sum, 3 * THREADS * per_thread);
    assert_eq!(t.counters, THREADS * per_thread);
}

#[test]
fn short_lived_threads_reuse_shards_and_keep_their_data() {
    let registry = Registry::new();
    for round in 0..64u64 {
        std::thread::scope(|s| {
            for _ in 0..2 {
                let registry = &registry;
                s.spawn(move || {
                    for _ in 0..1000 {
                        registry.record_latency("churn", round);
                    }
                });
            }
        });
    }
    let snap = registry.snapshot();
    assert_eq!(
        snap.histogram("latency", &[("service", "churn")])
            .unwrap()
            .count,
        128_000
    );
    // 128 threads ran, two at a time. A thread hands its shard back in its thread-local
    // destructor, which may run just after `scope` returns, so allow some slack; without
    // reuse this would be 128.
    assert!(registry.stats().shards <= 16, "{:?}", registry.stats());
}

#[test]
fn refused_keys_go_to_the_overflow_series_and_are_counted() {
    let registry = Registry::builder().max_series(10).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let registry = &registry;
            s.spawn(move || {
                for i in 0..10_000u64 {
                    registry.record_latency(&format!("svc-{}", (i + t) % 100), 5);
                }
            });
        }
    });
    let snap = registry.snapshot();
    let total: u64 = snap
        .series
        .iter()
        .filter_map(|s| s.histogram())
        .map(|h| h.count)
        .sum();
    assert_eq!(total, 20_000, "nothing recorded is dropped");
    let overflow = snap
        .histogram("latency", &[("service", abacus::OVERFLOW_LABEL_VALUE)])
        .unwrap();
    let stats = registry.stats();
    assert_eq!(stats.series, 11);
    assert_eq!(stats.refused_records, overflow.count);
    assert!(overflow.count >= 20_000 * 90 / 100 - 100);
}

#[test]
fn concurrent_gauge_adds_and_subs_are_exact() {
    let registry = Registry::new();
    let g = registry.gauge("inflight", &[]);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let g = g.clone();
            s.spawn(move || {
                for _ in 0..50_000 {
                    g.add(1.0);
                    if t % 2 == 0 {
                        g.sub(1.0);
                    }
                }
            });
        }
    });
    assert_eq!(
        registry.snapshot().gauge("inflight", &[]),
        Some((THREADS / 2 * 50_000) as f64)
    );
}

#[test]
fn series_with_live_handles_are_never_evicted() {
    let registry = Registry::builder().evict_after_idle(1).build().unwrap();
    let h = registry.latency("kept");
    h.record(1);
    registry.record_latency("dropped", 1);
    for _ in 0..3 {
        registry.delta();
    }
    let snap = registry.snapshot();
    assert!(snap.histogram("latency", &[("service", "kept")]).is_some());
    assert!(
        snap.histogram("latency", &[("service", "dropped")])
            .is_none()
    );
    h.record(2);
    let w = registry.delta();
    assert_eq!(
        w.histogram("latency", &[("service", "kept")])
            .unwrap()
            .count,
        1
    );
}

#[test]
fn metrics_facade_records_into_the_registry() {
    let registry = Registry::new();
    let recorder = abacus::recorder::AbacusRecorder::new(registry.clone());
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_histogram!("req_time", metrics::Unit::Seconds, "request time");
        for i in 0..100 {
            metrics::histogram!("req_time", "service" => "api").record(f64::from(i) / 100.0);
            metrics::counter!("reqs", "service" => "api", "code" => "200").increment(1);
        }
        metrics::gauge!("temp").set(21.5);
        metrics::gauge!("temp").increment(0.5);
        metrics::counter!("abs").absolute(40);
        metrics::counter!("abs").absolute(30);
    });
    let snap = registry.snapshot();
    let h = snap.histogram("req_time", &[("service", "api")]).unwrap();
    assert_eq!(h.count, 100);
    assert!((h.sum - 49.5).abs() < 1e-9);
    assert_eq!(h.max, 0.99);
    assert_eq!(
        snap.get("req_time", &[("service", "api")]).unwrap().unit,
        abacus::Unit::Seconds
    );
    assert_eq!(
        snap.counter("reqs", &[("code", "200"), ("service", "api")]),
        Some(100)
    );
    assert_eq!(snap.gauge("temp", &[]), Some(22.0));
    assert_eq!(snap.counter("abs", &[]), Some(40));
}

#[test]
fn handles_on_the_global_overflow_series_are_counted_on_every_path() {
    let registry = Registry::builder()
        .max_series(1)
        .max_overflow_series(1)
        .evict_after_idle(1)
        .build()
        .unwrap();
    registry.record_latency("a", 1); // the one live series
    registry.increment_counter("b", &[("service", "x")], 1); // the one overflow series
    // Name `c` is refused and its overflow series too: the global fallback takes it.
    let first = registry.counter("c", &[("service", "y")]); // creates it (write path)
    let second = registry.counter("c", &[("service", "z")]); // finds it (read path)
    first.increment(1);
    second.increment(2);
    let snap = registry.snapshot();
    assert_eq!(
        snap.counter("abacus_overflow", &[("kind", "counter")]),
        Some(3)
    );
    drop(first);
    drop(second);
    // With every handle gone the idle series can be evicted (an uncounted handle would
    // have wrapped the count and pinned it forever).
    for _ in 0..3 {
        registry.delta();
    }
    assert!(
        registry
            .snapshot()
            .get("abacus_overflow", &[("kind", "counter")])
            .is_none()
    );
}

#[test]
fn local_handles_by_name_and_send_handles_on_one_series_sum_exactly() {
    let registry = Registry::new();
    let handle = registry.latency("hot");
    let per_thread = 200_000u64;
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (registry, handle, barrier) = (&registry, handle.clone(), &barrier);
            s.spawn(move || {
                // Each thread binds its own local handle, to the shared series and to one
                // of its own, and mixes it with the other two paths into the same cell.
                let local = handle.local();
                let own = registry.latency(&format!("own-{t}")).local();
                barrier.wait();
                for i in 0..per_thread {
                    local.record(i % 5000);
                    own.record_n(i % 3, 2);
                    if i % 4 == 0 {
                        handle.record(1);
                        registry.record_latency("hot", 2);
                    }
                }
            });
        }
    });
    let snap = registry.snapshot();
    let h = snap.histogram("latency", &[("service", "hot")]).unwrap();
    assert_eq!(h.count, THREADS * (per_thread + per_thread / 2));
    let local_sum: u64 = (0..per_thread).map(|i| i % 5000).sum();
    assert_eq!(h.sum as u64, THREADS * (local_sum + per_thread / 4 * 3));
    assert_eq!((h.min, h.max), (0.0, 4999.0));
    for t in 0..THREADS {
        let own = snap
            .histogram("latency", &[("service", &format!("own-{t}"))])
            .unwrap();
        assert_eq!(own.count, 2 * per_thread);
        assert_eq!(
            own.sum as u64,
            2 * (0..per_thread).map(|i| i % 3).sum::<u64>()
        );
    }
}

#[test]
fn local_handles_of_exited_threads_keep_their_data_and_shards_are_reused() {
    let registry = Registry::new();
    let handle = registry.latency("churn");
    for round in 0..32u64 {
        std::thread::scope(|s| {
            for _ in 0..2 {
                let handle = handle.clone();
                s.spawn(move || {
                    let local = handle.local();
                    for _ in 0..1000 {
                        local.record(round);
                    }
                });
            }
        });
    }
    let h = registry.snapshot();
    let h = h.histogram("latency", &[("service", "churn")]).unwrap();
    assert_eq!(h.count, 64_000);
    assert_eq!(h.sum as u64, 2000 * (0..32).sum::<u64>());
    assert!(registry.stats().shards <= 16, "{:?}", registry.stats());
}

#[test]
fn record_latency_front_cache_never_confuses_names() {
    let registry = Registry::builder().max_series(25_000).build().unwrap();
    // One buffer, so every name is passed at the same address: the front cache's slot is
    // the same and only the byte comparison tells the names apart.
    let mut name = String::with_capacity(64);
    let names = [
        "a",
        "b",
        "ab",
        "ba",
        "api",
        "apj",
        "checkout-service",
        "checkout-servicf",
        // 21 bytes (the longest name a cell keeps for the front cache), then 22 and 23 (too
        // long: such names always go through the thread's map), each with a twin that
        // differs in the last byte only.
        "productcatalogservic1",
        "productcatalogservic2",
        "productcatalogservice1",
        "productcatalogservice2",
        "recommendationservice-x",
        "recommendationservice-y",
        "",
    ];
    for round in 0..3u64 {
        for (i, n) in names.iter().enumerate() {
            name.clear();
            name.push_str(n);
            registry.record_latency(&name, 100 * round + i as u64 + 1);
        }
    }
    // Many names at many addresses, more than the front table's 16,384 slots: slots
    // collide and entries are replaced.
    let many: Vec<String> = (0..20_000).map(|i| format!("svc-{i}")).collect();
    for _ in 0..3 {
        for (i, n) in many.iter().enumerate() {
            registry.record_latency(n, i as u64);
        }
    }
    let snap = registry.snapshot();
    for (i, n) in names.iter().enumerate() {
        let h = snap.histogram("latency", &[("service", n)]).unwrap();
        assert_eq!(h.count, 3, "{n}");
        assert_eq!(h.sum as u64, 3 * (i as u64 + 1) + 300, "{n}");
    }
    for (i, n) in many.iter().enumerate() {
        let h = snap.histogram("latency", &[("service", n)]).unwrap();
        assert_eq!((h.count, h.sum as u64), (3, 3 * i as u64), "{n}");
    }
}

#[test]
fn parallel_collection_under_eviction_races_loses_nothing() {
    // 3,000 series: above the size at which snapshots and flushes split the series among
    // several threads. Series go idle after one flush and are evicted while writers keep
    // coming back to them.
    let registry = Registry::builder()
        .evict_after_idle(1)
        .collect_threads(4)
        .build()
        .unwrap();
    let (flusher, totals) = summing_flusher(&registry, Duration::from_millis(1));
    let per_thread = 60_000u64;
    let names: Vec<String> = (0..3_000).map(|i| format!("s{i}")).collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (registry, names) = (&registry, &names);
            s.spawn(move || {
                let mut x = 0x9abc_def0_u64 + t;
                for i in 0..per_thread {
                    xorshift(&mut x);
                    let svc = &names[(x % 3_000) as usize];
                    registry.record_latency(svc, x % 1_000);
                    registry.increment_counter(svc, &[], 1);
                    if i % 4_096 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            });
        }
    });
    flusher.shutdown();
    let stats = registry.stats();
    assert!(
        stats.evicted_series > 0,
        "eviction must have happened: {stats:?}"
    );
    // The same draws, summed directly.
    let mut expected_sum = 0;
    for t in 0..THREADS {
        let mut x = 0x9abc_def0_u64 + t;
        for _ in 0..per_thread {
            xorshift(&mut x);
            expected_sum += x % 1_000;
        }
    }
    let t = totals.lock().unwrap();
    assert_eq!(t.count, THREADS * per_thread);
    assert_eq!(t.sum, expected_sum);
    assert_eq!(t.counters, THREADS * per_thread);
}

#[test]
fn parallel_and_serial_collection_give_the_same_snapshots() {
    let build = |threads: usize| {
        Registry::builder()
            .collect_threads(threads)
            .evict_after_idle(0)
            .build()
            .unwrap()
    };
    let (serial, parallel) = (build(1), build(3));
    let names: Vec<String> = (0..2_500).map(|i| format!("svc-{i}")).collect();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (serial, parallel, names) = (&serial, &parallel, &names);
            s.spawn(move || {
                for (i, name) in names.iter().enumerate() {
                    for k in 0..(1 + i as u64 % 7) {
                        let v = (i as u64 * 31 + k * 17 + t) % 5_000;
                        serial.record_latency(name, v);
                        parallel.record_latency(name, v);
                    }
                    serial.increment_counter(name, &[("t", "x")], t + 1);
                    parallel.increment_counter(name, &[("t", "x")], t + 1);
                }
            });
        }
    });
    let (a, b) = (serial.snapshot(), parallel.snapshot());
    assert_eq!(a.series.len(), 5_000);
    assert_eq!(a.series, b.series, "cumulative snapshots differ");
    let (a, b) = (serial.delta(), parallel.delta());
    assert_eq!(a.series, b.series, "first deltas differ");
    for (i, name) in names.iter().enumerate().take(600) {
        serial.record_latency(name, i as u64);
        parallel.record_latency(name, i as u64);
    }
    let (a, b) = (serial.delta(), parallel.delta());
    assert_eq!(a.series.len(), 600);
    assert_eq!(a.series, b.series, "second deltas differ");
}
