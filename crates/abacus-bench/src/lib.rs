//! Benchmark harness comparing peer metrics libraries on the workloads abacus
//! is measured on.
//!
//! The pieces:
//!
//! * [`Workload`] / [`Inputs`]: deterministic, pre-generated record sequences
//!   (service index + latency) so every [`Target`] sees identical inputs.
//! * [`Target`] / [`HandleSet`]: the adapter a metrics implementation provides.
//!   Adding abacus means writing one more `impl Target` (see `peers` for
//!   examples) and one line in `benches/peers.rs`.
//! * [`run_by_name`] / [`run_cached`] / [`run_threads`]: the multi-thread
//!   driver used from criterion's `iter_custom`.
//!
//! # Dispatch
//!
//! Everything on the timed path is generic (`fn run_by_name<T: Target>`), and
//! the cached-handle type is an associated type, so there is no dynamic
//! dispatch inside the timed loop unless a library itself uses it internally
//! (e.g. `metrics::Histogram` is an `Arc<dyn HistogramFn>`; that cost is
//! inherent to the library and is measured on purpose).
//!
//! # Threads
//!
//! The driver spawns scoped threads (`std::thread::scope`) per criterion
//! sample rather than keeping a persistent pool. Spawning is kept out of the
//! timed region: every worker waits on a start [`Barrier`] and then reads its
//! own start `Instant`; it reads its end `Instant` right after its last
//! record. The reported duration is `max(end) - min(start)` across workers,
//! i.e. the wall time during which records were being made. Thread spawn,
//! barrier release latency for the *caller* and thread join/teardown are all
//! excluded. (A persistent pool would need a second "end" barrier to hand
//! back control; per-thread timestamps make that unnecessary, and scoped
//! threads let workers borrow the target and inputs without `Arc`.)
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod peers;
pub mod server_load;

/// Length of every pre-generated record sequence. Power of two so the
/// per-thread cursor can wrap with a mask.
pub const SEQ_LEN: usize = 1 << 16;
const SEQ_MASK: usize = SEQ_LEN - 1;

/// Histogram bucket upper bounds (ms) used by every peer that takes explicit
/// buckets: 1, 2, 4, ..., 16384 (15 bounds; latencies are 1..=10_000 ms).
pub const LATENCY_BUCKETS_MS: [f64; 15] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
    16384.0,
];

/// Name of the histogram metric every peer records into.
pub const METRIC_NAME: &str = "latency";
/// Name of the single label every peer attaches.
pub const LABEL_KEY: &str = "service";

/// The workloads abacus is measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// 100 services, drawn uniformly.
    Uniform100,
    /// 10,000 services, drawn Zipf with s = 1.1 (hot keys scattered over the
    /// name space by a seeded permutation).
    Zipf10k,
    /// Every record goes to one service (maximum contention on one series).
    OneHot,
}

impl Workload {
    /// All workloads, in bench order.
    pub const ALL: [Workload; 3] = [Workload::Uniform100, Workload::Zipf10k, Workload::OneHot];

    /// Short name used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Uniform100 => "uniform100",
            Workload::Zipf10k => "zipf10k",
            Workload::OneHot => "onehot",
        }
    }

    /// Number of distinct services (series) in the workload.
    pub fn service_count(self) -> usize {
        match self {
            Workload::Uniform100 => 100,
            Workload::Zipf10k => 10_000,
            Workload::OneHot => 1,
        }
    }

    /// Pre-generates the inputs for this workload with the default seed.
    pub fn inputs(self) -> Inputs {
        Inputs::generate(self, DEFAULT_SEED)
    }
}

/// Seed used by [`Workload::inputs`].
pub const DEFAULT_SEED: u64 = 0xABAC_0500_2025_0001;

/// One pre-generated record: which service, and the latency to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Index into [`Inputs::services`].
    pub service: u32,
    /// Latency in milliseconds, 1..=10_000.
    pub latency_ms: u64,
}

/// Pre-generated, immutable inputs shared by every target and thread.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The workload these inputs were generated for.
    pub workload: Workload,
    /// Service names, `svc-00000` ..; index = [`Op::service`].
    pub services: Vec<String>,
    /// Exactly [`SEQ_LEN`] records.
    pub ops: Vec<Op>,
}

impl Inputs {
    /// Deterministically generates inputs for `workload` from `seed`.
    pub fn generate(workload: Workload, seed: u64) -> Inputs {
        let n = workload.service_count();
        let services: Vec<String> = (0..n).map(|i| format!("svc-{i:05}")).collect();
        let mut rng = SplitMix64(seed);

        let ops = match workload {
            Workload::Uniform100 => (0..SEQ_LEN)
                .map(|_| rng.below(n as u64) as u32)
                .collect::<Vec<_>>(),
            Workload::OneHot => vec![0; SEQ_LEN],
            Workload::Zipf10k => {
                let zipf = ZipfTable::new(n, 1.1);
                // rank -> service index, so the hottest key is not svc-00000.
                let mut perm: Vec<u32> = (0..n as u32).collect();
                for i in (1..n).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    perm.swap(i, j);
                }
                (0..SEQ_LEN).map(|_| perm[zipf.sample(&mut rng)]).collect()
            }
        };
        let ops = ops
            .into_iter()
            .map(|service| Op {
                service,
                latency_ms: lognormal_latency_ms(&mut rng),
            })
            .collect();
        Inputs {
            workload,
            services,
            ops,
        }
    }

    /// The record sequence as a fixed-size array (lets the compiler drop the
    /// bounds check on the masked index).
    pub fn ops_array(&self) -> &[Op; SEQ_LEN] {
        self.ops
            .as_slice()
            .try_into()
            .expect("Inputs::ops has SEQ_LEN entries")
    }

    /// Starting cursor of worker `thread` out of `threads`: workers start at
    /// evenly spaced offsets of the shared sequence and wrap around it.
    pub fn offset(thread: usize, threads: usize) -> usize {
        thread * (SEQ_LEN / threads.max(1))
    }
}

/// Log-normal-ish latency: median ~50 ms, sigma 1.2, clamped to 1..=10_000.
fn lognormal_latency_ms(rng: &mut SplitMix64) -> u64 {
    // Box-Muller; u1 in (0, 1] so ln() is finite.
    let u1 = 1.0 - rng.next_f64();
    let u2 = rng.next_f64();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let v = (50f64.ln() + 1.2 * z).exp();
    (v.round() as u64).clamp(1, 10_000)
}

/// Inverse-CDF table for a Zipf distribution over ranks `0..n`.
struct ZipfTable {
    cdf: Vec<f64>,
}

impl ZipfTable {
    fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        ZipfTable { cdf }
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Small, fast, seedable PRNG (SplitMix64); good enough for input generation.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n > 0), via 128-bit multiply (bias negligible here).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A metrics implementation under test.
///
/// Implementations must be cheap to share across threads (`&self` only).
/// All series for the workload's services should be recordable by name
/// without any prior registration; [`Target::handles`] may register them.
pub trait Target: Send + Sync {
    /// Pre-resolved per-service handles (see [`HandleSet`]).
    type Handles: HandleSet;

    /// Stable name used in benchmark ids (e.g. `"prometheus"`).
    fn name(&self) -> &'static str;

    /// Records one latency for `service`, resolving the series by name on
    /// every call, the way the library's docs show for dynamic labels.
    fn record_by_name(&self, service: &str, latency_ms: u64);

    /// Resolves a handle for every service, in order; `services[i]` must be
    /// recordable via `handles.record(i, ..)`. Called outside timed regions.
    fn handles(&self, services: &[String]) -> Self::Handles;

    /// Number of values recorded so far into `service`'s series, read back
    /// through the library's own export/read path (`None` if the series does
    /// not exist). Used by tests to check an adapter really records; never
    /// called on a timed path. May run [`Target::maintain`]-like work.
    fn recorded_count(&self, service: &str) -> Option<u64>;

    /// Housekeeping run after each timed sample, outside the timed region
    /// (e.g. draining buffered samples so memory stays bounded). Default:
    /// nothing.
    fn maintain(&self) {}
}

/// Cached, pre-resolved series handles for one [`Target`].
pub trait HandleSet {
    /// Records one latency into the series for `services[idx]` (as passed to
    /// [`Target::handles`]).
    fn record(&self, idx: usize, latency_ms: u64);
}

/// Runs `body(thread_index)` on `threads` scoped threads, all released by one
/// start barrier, and returns the wall time from the earliest worker start to
/// the latest worker end. Thread spawn and join are not included.
pub fn run_threads<F>(threads: usize, body: F) -> Duration
where
    F: Fn(usize) + Sync,
{
    assert!(threads > 0, "need at least one thread");
    let start = Barrier::new(threads);
    let body = &body;
    let start = &start;
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    body(t);
                    (t0, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench worker panicked"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("threads > 0");
    let last = spans.iter().map(|s| s.1).max().expect("threads > 0");
    last - first
}

/// Each of `threads` workers makes `iters` by-name records, walking the shared
/// sequence from its own offset. Returns wall time (see [`run_threads`]);
/// total records = `iters * threads`.
pub fn run_by_name<T: Target>(target: &T, inputs: &Inputs, threads: usize, iters: u64) -> Duration {
    let ops = inputs.ops_array();
    let services = inputs.services.as_slice();
    run_threads(threads, |t| {
        let mut i = Inputs::offset(t, threads);
        for _ in 0..iters {
            let op = ops[i & SEQ_MASK];
            target.record_by_name(&services[op.service as usize], op.latency_ms);
            i = i.wrapping_add(1);
        }
    })
}

/// Like [`run_by_name`] but records through pre-resolved `handles` (created by
/// `target.handles(&inputs.services)`).
pub fn run_cached<H: HandleSet + Sync>(
    handles: &H,
    inputs: &Inputs,
    threads: usize,
    iters: u64,
) -> Duration {
    let ops = inputs.ops_array();
    run_threads(threads, |t| {
        let mut i = Inputs::offset(t, threads);
        for _ in 0..iters {
            let op = ops[i & SEQ_MASK];
            handles.record(op.service as usize, op.latency_ms);
            i = i.wrapping_add(1);
        }
    })
}

/// Which path a [`Pool`] job exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// [`Target::record_by_name`].
    ByName,
    /// The worker's own [`Target::handles`].
    Cached,
}

/// How long a worker records in one run.
#[derive(Clone)]
enum Budget {
    /// This many records.
    Records(u64),
    /// Until the flag is set.
    Until(Arc<AtomicBool>),
}

/// Records a time-bounded worker makes between two looks at its stop flag.
const CHUNK: u64 = 1024;

enum Job {
    /// Wait on the barrier (one party per worker of the run), then record.
    Run(Mode, Budget, Arc<Barrier>),
    Stop,
}

/// CPUs a pool of `threads` workers pins its workers to, in worker order: none for one
/// worker; for more, worker `t` gets the `t`-th CPU this process may run on (wrapping).
///
/// Why: each run wakes its workers, and the kernel often wakes a worker on the CPU that is
/// already running another one; the two then share one CPU for a millisecond or more until
/// the load balancer moves one. Measured with two unpinned workers and runs of 15–40 ms on
/// the 2-vCPU reference machine: the second worker started up to 4 ms after the first,
/// which the wall time of a run (earliest start to latest end) charges to the code under
/// test; pinned, the start gap stayed under 0.1 ms but for one run in a hundred. Long-lived
/// recording threads of a real service are not woken again and again like this. One worker
/// is left unpinned: any idle CPU will do, and the scheduler finds one.
/// `ABACUS_BENCH_PIN=0` turns pinning off.
pub fn pin_plan(threads: usize) -> Vec<Option<usize>> {
    let pin = threads > 1 && std::env::var("ABACUS_BENCH_PIN").map_or(true, |v| v != "0");
    let cpus = if pin { allowed_cpus() } else { Vec::new() };
    (0..threads)
        .map(|t| (!cpus.is_empty()).then(|| cpus[t % cpus.len()]))
        .collect()
}

/// CPUs this process may run on (empty when that cannot be read).
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pins the calling thread to `cpu`; a failure leaves it unpinned (measured as before).
fn pin_current_thread(cpu: usize) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        // Pid 0: the calling thread.
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Persistent worker threads for one target, workload and thread count.
///
/// Real services record from long-lived threads, and each worker resolves its own
/// handles once (the way per-thread handle clones are used), so the pool keeps its threads
/// for the whole benchmark group: thread-local state (abacus's shards and caches, the
/// allocator's arenas) is warm after the first sample, as it is in production. Creating
/// threads per sample would charge thread-local set-up to every sample. Workers of a pool of
/// two or more are pinned to CPUs (see [`pin_plan`]).
pub struct Pool {
    jobs: Vec<Sender<Job>>,
    done: Receiver<Span>,
    workers: Vec<JoinHandle<()>>,
}

/// One worker's part of a run: when it started and ended, and how many records it made.
type Span = (Instant, Instant, u64);

impl Pool {
    /// Starts `threads` workers; each resolves its own handles before the first job.
    pub fn new<T>(target: Arc<T>, inputs: Arc<Inputs>, threads: usize) -> Pool
    where
        T: Target + 'static,
        T::Handles: 'static,
    {
        assert!(threads > 0, "need at least one thread");
        let (done_tx, done) = channel();
        let mut jobs = Vec::new();
        let mut workers = Vec::new();
        for (t, cpu) in pin_plan(threads).into_iter().enumerate() {
            let (tx, rx) = channel::<Job>();
            jobs.push(tx);
            let (target, inputs, done_tx) = (target.clone(), inputs.clone(), done_tx.clone());
            workers.push(std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                let handles = target.handles(&inputs.services);
                let ops = inputs.ops_array();
                let services = inputs.services.as_slice();
                while let Ok(Job::Run(mode, budget, start)) = rx.recv() {
                    start.wait();
                    let t0 = Instant::now();
                    let mut i = Inputs::offset(t, threads);
                    let mut record = |n: u64| {
                        for _ in 0..n {
                            let op = ops[i & SEQ_MASK];
                            match mode {
                                Mode::ByName => target
                                    .record_by_name(&services[op.service as usize], op.latency_ms),
                                Mode::Cached => handles.record(op.service as usize, op.latency_ms),
                            }
                            i = i.wrapping_add(1);
                        }
                    };
                    let made = match budget {
                        Budget::Records(n) => {
                            record(n);
                            n
                        }
                        Budget::Until(stop) => {
                            let mut made = 0;
                            // Relaxed: a stop signal only; seeing it a chunk late lengthens
                            // the run by records that are counted and timed.
                            while !stop.load(Ordering::Relaxed) {
                                record(CHUNK);
                                made += CHUNK;
                            }
                            made
                        }
                    };
                    if done_tx.send((t0, Instant::now(), made)).is_err() {
                        return;
                    }
                }
            }));
        }
        Pool {
            jobs,
            done,
            workers,
        }
    }

    /// Number of workers.
    pub fn threads(&self) -> usize {
        self.jobs.len()
    }

    /// Every worker makes `iters` records in `mode`; returns the wall time from the earliest
    /// worker start to the latest worker end.
    pub fn run(&self, mode: Mode, iters: u64) -> Duration {
        let all: Vec<usize> = (0..self.jobs.len()).collect();
        self.run_on(mode, iters, &all)
    }

    /// Like [`Pool::run`], but only the listed workers record (the others stay idle).
    pub fn run_on(&self, mode: Mode, iters: u64, workers: &[usize]) -> Duration {
        self.start(mode, Budget::Records(iters), workers);
        self.finish(workers).0
    }

    /// The listed workers record for about `time`, each as fast as it can; returns the
    /// records made and the wall time from the earliest worker start to the latest end.
    /// Throughput measured this way is what the process achieves, not how soon its slowest
    /// worker would finish an equal share of a fixed amount of work.
    pub fn run_for(&self, mode: Mode, time: Duration, workers: &[usize]) -> (u64, Duration) {
        let stop = Arc::new(AtomicBool::new(false));
        self.start(mode, Budget::Until(stop.clone()), workers);
        std::thread::sleep(time);
        // Relaxed: see the workers' load.
        stop.store(true, Ordering::Relaxed);
        let (wall, made) = self.finish(workers);
        (made, wall)
    }

    fn start(&self, mode: Mode, budget: Budget, workers: &[usize]) {
        assert!(!workers.is_empty(), "need at least one worker");
        let start = Arc::new(Barrier::new(workers.len()));
        for &w in workers {
            self.jobs[w]
                .send(Job::Run(mode, budget.clone(), start.clone()))
                .expect("bench worker alive");
        }
    }

    /// Waits for the listed workers: wall time (earliest start to latest end) and records.
    fn finish(&self, workers: &[usize]) -> (Duration, u64) {
        let spans: Vec<Span> = workers
            .iter()
            .map(|_| self.done.recv().expect("bench worker alive"))
            .collect();
        let first = spans.iter().map(|s| s.0).min().expect("workers > 0");
        let last = spans.iter().map(|s| s.1).max().expect("workers > 0");
        (last - first, spans.iter().map(|s| s.2).sum())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for j in &self.jobs {
            let _ = j.send(Job::Stop);
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_deterministic_and_in_range() {
        for w in Workload::ALL {
            let a = w.inputs();
            let b = w.inputs();
            assert_eq!(a.ops, b.ops);
            assert_eq!(a.ops.len(), SEQ_LEN);
            assert_eq!(a.services.len(), w.service_count());
            assert!(
                a.ops
                    .iter()
                    .all(|o| (o.service as usize) < a.services.len())
            );
            assert!(a.ops.iter().all(|o| (1..=10_000).contains(&o.latency_ms)));
        }
        assert_eq!(Workload::Zipf10k.inputs().services[42], "svc-00042");
    }

    #[test]
    fn zipf_is_skewed() {
        let inputs = Workload::Zipf10k.inputs();
        let mut counts = vec![0u32; inputs.services.len()];
        for op in &inputs.ops {
            counts[op.service as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        // With s = 1.1 over 10k ranks the top key takes roughly 15% of draws.
        let top = f64::from(counts[0]) / SEQ_LEN as f64;
        assert!((0.10..0.20).contains(&top), "top share {top}");
        let distinct = counts.iter().filter(|&&c| c > 0).count();
        assert!(distinct > 2_000, "distinct {distinct}");
    }

    #[test]
    fn latencies_look_lognormal() {
        let inputs = Workload::Uniform100.inputs();
        let mut l: Vec<u64> = inputs.ops.iter().map(|o| o.latency_ms).collect();
        l.sort_unstable();
        let median = l[l.len() / 2];
        assert!((40..=60).contains(&median), "median {median}");
    }

    /// Every adapter records by name and through handles into the same
    /// series, and the library's own read path sees every record.
    fn check_adapter<T: Target>(target: &T) {
        let inputs = Workload::Uniform100.inputs();
        // Handles are resolved on the thread that uses them, as the pool's workers do (some
        // handle types are bound to their thread). Counts are read once both threads have
        // their handles (resolving may record, e.g. to register a series).
        let resolved = std::sync::Barrier::new(3);
        let counted = std::sync::Barrier::new(3);
        let before = std::thread::scope(|s| {
            for t in 0..2 {
                let (inputs, resolved, counted) = (&inputs, &resolved, &counted);
                s.spawn(move || {
                    let handles = target.handles(&inputs.services);
                    resolved.wait();
                    counted.wait();
                    let mut i = Inputs::offset(t, 2);
                    for _ in 0..1000 {
                        let op = inputs.ops[i & SEQ_MASK];
                        handles.record(op.service as usize, op.latency_ms);
                        i = i.wrapping_add(1);
                    }
                });
            }
            resolved.wait();
            let before: Vec<u64> = inputs
                .services
                .iter()
                .map(|s| target.recorded_count(s).unwrap_or(0))
                .collect();
            counted.wait();
            before
        });
        let _ = run_by_name(target, &inputs, 2, 1000);
        target.maintain();
        let mut expected = before;
        for t in 0..2 {
            for k in 0..2000 {
                let op = inputs.ops[(Inputs::offset(t, 2) + k % 1000) & SEQ_MASK];
                expected[op.service as usize] += 1;
            }
        }
        for (i, s) in inputs.services.iter().enumerate() {
            assert_eq!(
                target.recorded_count(s),
                Some(expected[i]),
                "{}: series {s}",
                target.name()
            );
        }
        assert_eq!(target.recorded_count("no-such-service"), None);
    }

    #[test]
    fn adapters_record_into_the_right_series() {
        check_adapter(&peers::Abacus::new());
        check_adapter(&peers::Baseline::new());
        check_adapter(&peers::MetricsRs::new());
        check_adapter(&peers::Prom::new());
        check_adapter(&peers::PromClient::new());
        check_adapter(&peers::Otel::new());
    }

    #[test]
    fn otel_keeps_10k_series_apart() {
        let target = peers::Otel::new();
        let inputs = Workload::Zipf10k.inputs();
        let _ = target.handles(&inputs.services);
        let points = target.histogram_points();
        assert_eq!(points.len(), inputs.services.len());
        assert!(points.iter().all(|(attrs, count)| {
            *count == 1 && attrs.len() == 1 && attrs[0].key.as_str() == LABEL_KEY
        }));
    }

    #[test]
    fn pool_counts_every_record_in_both_modes() {
        let inputs = Arc::new(Workload::Uniform100.inputs());
        let target = Arc::new(peers::Abacus::new());
        let pool = Pool::new(target.clone(), inputs.clone(), 2);
        let _ = pool.run(Mode::ByName, 1000);
        let _ = pool.run(Mode::Cached, 1000);
        let _ = pool.run_on(Mode::ByName, 300, &[1]);
        let _ = pool.run_on(Mode::Cached, 200, &[0]);
        let (made, _) = pool.run_for(Mode::ByName, Duration::from_millis(5), &[0, 1]);
        let (made_alone, _) = pool.run_for(Mode::Cached, Duration::from_millis(5), &[1]);
        assert!(made >= 2 * CHUNK && made % CHUNK == 0, "{made}");
        assert!(
            made_alone >= CHUNK && made_alone % CHUNK == 0,
            "{made_alone}"
        );
        drop(pool);
        let total: u64 = inputs
            .services
            .iter()
            .map(|s| target.recorded_count(s).unwrap_or(0))
            .sum();
        assert_eq!(total, 4500 + made + made_alone);
    }

    #[test]
    fn driver_counts_every_record() {
        let inputs = Workload::Uniform100.inputs();
        for threads in [1, 2, 4] {
            let target = peers::Baseline::new();
            let _ = run_by_name(&target, &inputs, threads, 1000);
            let handles = target.handles(&inputs.services);
            let _ = run_cached(&handles, &inputs, threads, 500);
            assert_eq!(target.total_count(), 1500 * threads as u64);
        }
    }
}
