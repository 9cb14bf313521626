//! Running a profile: the controller, the workers, the rate dispatcher.
//!
//! * Concurrency mode: `peak` worker tasks are spawned; a controller publishes the active
//!   count on a `watch` channel every [`CONTROL_TICK`], and worker `i` sends back to back
//!   while `i < active`, otherwise it waits for the next change.
//! * Rate mode: a dispatcher wakes every millisecond and starts the requests that are due
//!   (`elapsed × rate`), each under a semaphore permit; when no permit is free the send is
//!   skipped and counted as `missed` (so the achieved rate shows coordinated omission
//!   instead of hiding it). The phases only give the duration.
//!
//! Both stop at the end of the profile, on [`LoadRun::stop`], or when `max_requests` have
//! been started; in-flight requests are then awaited (each is bounded by the timeout).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::LoadError;
use crate::profile::{ModeKind, Profile, SeriesTemplate};
use crate::report::Report;
use crate::stats::{Live, LoadStats};
use crate::target::{OutSample, Sender, Target};

/// How often the controller re-reads the profile.
pub const CONTROL_TICK: Duration = Duration::from_millis(50);

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Where to send.
    pub target: Target,
    /// Phases, mode, series.
    pub profile: Profile,
    /// Bearer token for the HTTP API.
    pub token: Option<String>,
    /// Per-request timeout (HTTP).
    pub timeout: Duration,
    /// Stop after starting this many requests.
    pub max_requests: Option<u64>,
    /// Length of the time-series windows (1 s by default).
    pub window: Duration,
    /// Seed of the value generator (runs are reproducible up to scheduling).
    pub seed: u64,
}

impl LoadConfig {
    /// Defaults: the seed-002 profile, 10 s timeout, 1 s windows.
    pub fn new(target: Target) -> LoadConfig {
        LoadConfig {
            target,
            profile: Profile::default(),
            token: None,
            timeout: Duration::from_secs(10),
            max_requests: None,
            window: Duration::from_secs(1),
            seed: 0x5eed,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Control {
    active: usize,
    /// Index of the phase in force.
    phase: usize,
    stopped: bool,
}

/// Request budget (`max_requests`).
#[derive(Debug)]
struct Budget {
    remaining: Option<AtomicU64>,
    exhausted: AtomicBool,
}

impl Budget {
    fn take(&self) -> bool {
        let Some(r) = &self.remaining else {
            return true;
        };
        // Relaxed: a standalone count; nothing else is published through it.
        let ok = r
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            // Relaxed: a stop hint polled by the controller.
            self.exhausted.store(true, Ordering::Relaxed);
        }
        ok
    }

    fn exhausted(&self) -> bool {
        // Relaxed: see `take`.
        self.exhausted.load(Ordering::Relaxed)
    }
}

/// A small xorshift generator: values and probabilities, no dependency.
#[derive(Clone, Copy, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The series templates and the shared label-cycle position.
#[derive(Debug)]
struct Generator {
    series: Vec<SeriesTemplate>,
    batch: usize,
    step: AtomicU64,
    empty: BTreeMap<String, String>,
}

impl Generator {
    /// Samples of the next `batch` steps, and how many of each template they hold.
    fn next<'a>(&'a self, rng: &mut Rng, out: &mut Vec<OutSample<'a>>, counts: &mut [u64]) {
        out.clear();
        counts.iter_mut().for_each(|c| *c = 0);
        // Relaxed: a cycling index; only its uniqueness matters.
        let first = self.step.fetch_add(self.batch as u64, Ordering::Relaxed);
        for step in first..first + self.batch as u64 {
            for (i, t) in self.series.iter().enumerate() {
                if t.probability < 1.0 && rng.unit() >= t.probability {
                    continue;
                }
                let labels = if t.labels.is_empty() {
                    &self.empty
                } else {
                    &t.labels[(step % t.labels.len() as u64) as usize]
                };
                out.push(OutSample {
                    name: &t.name,
                    kind: t.kind,
                    labels,
                    value: t.value.sample(rng.unit()),
                });
                counts[i] += 1;
            }
        }
    }
}

/// A run in progress.
#[derive(Debug)]
pub struct LoadRun {
    stats: LoadStats,
    control: Arc<watch::Sender<Control>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Report, LoadError>>,
}

/// Shared by the driver and the workers.
#[derive(Debug)]
struct Ctx {
    sender: Sender,
    stats: LoadStats,
    gen_: Generator,
    budget: Budget,
    seed: u64,
}

async fn send_one(ctx: &Ctx, phase: usize, rng: &mut Rng, socket: Option<&tokio::net::UdpSocket>) {
    let mut samples = Vec::with_capacity(ctx.gen_.batch * ctx.gen_.series.len());
    let mut counts = vec![0u64; ctx.gen_.series.len()];
    ctx.gen_.next(rng, &mut samples, &mut counts);
    let r = ctx.sender.send(&samples, socket).await;
    ctx.stats.record(phase, &r, &counts);
}

async fn worker(
    id: usize,
    ctx: Arc<Ctx>,
    mut ctl: watch::Receiver<Control>,
) -> Result<(), LoadError> {
    let socket = ctx.sender.socket().await?;
    let mut rng = Rng::new(ctx.seed ^ (id as u64 + 1));
    loop {
        let c = *ctl.borrow_and_update();
        if c.stopped {
            return Ok(());
        }
        if id >= c.active {
            if ctl.changed().await.is_err() {
                return Ok(());
            }
            continue;
        }
        if !ctx.budget.take() {
            return Ok(());
        }
        send_one(&ctx, c.phase, &mut rng, socket.as_ref()).await;
    }
}

impl LoadRun {
    /// Validates the configuration and starts the run on the current Tokio runtime.
    ///
    /// # Errors
    /// [`LoadError::Profile`], [`LoadError::Target`], [`LoadError::Client`],
    /// [`LoadError::Recorder`].
    pub fn start(config: LoadConfig) -> Result<LoadRun, LoadError> {
        config.profile.validate()?;
        let (stats, flusher) = LoadStats::new(&config.profile, config.window)?;
        let pool = match config.profile.mode {
            ModeKind::Concurrency => config.profile.peak(),
            ModeKind::Rate => config.profile.max_in_flight,
        };
        let sender = Sender::new(&config.target, config.token.clone(), config.timeout, pool)?;
        let ctx = Arc::new(Ctx {
            sender,
            stats: stats.clone(),
            gen_: Generator {
                series: config.profile.series.clone(),
                batch: config.profile.batch,
                step: AtomicU64::new(0),
                empty: BTreeMap::new(),
            },
            budget: Budget {
                remaining: config.max_requests.map(AtomicU64::new),
                exhausted: AtomicBool::new(false),
            },
            seed: config.seed,
        });
        let (tx, rx) = watch::channel(Control::default());
        let control = Arc::new(tx);
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (control, stop) = (control.clone(), stop.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = match config.profile.mode {
                    ModeKind::Concurrency => {
                        drive_concurrency(&config.profile, &ctx, &control, rx, &stop).await
                    }
                    ModeKind::Rate => drive_rate(&config.profile, &ctx, &stop).await,
                };
                let elapsed = started.elapsed();
                // The flusher's shutdown joins its thread and flushes the last window.
                let _ = tokio::task::spawn_blocking(move || flusher.shutdown()).await;
                result?;
                Ok(Report::build(
                    &config.target,
                    &config.profile,
                    &ctx.stats,
                    elapsed,
                ))
            })
        };
        Ok(LoadRun {
            stats,
            control,
            stop,
            task,
        })
    }

    /// Totals so far and the last second's rate and p99.
    pub fn live(&self) -> Live {
        self.stats.live()
    }

    /// The run's accounting.
    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the run to end early (in-flight requests still complete and count).
    pub fn stop(&self) {
        // Relaxed: a stop hint polled by the driver.
        self.stop.store(true, Ordering::Relaxed);
        self.control.send_modify(|c| c.stopped = true);
    }

    /// Waits for the end and returns the report.
    ///
    /// # Errors
    /// [`LoadError::Worker`] when a task failed, or a worker's setup error.
    pub async fn finish(self) -> Result<Report, LoadError> {
        self.task
            .await
            .map_err(|e| LoadError::Worker(e.to_string()))?
    }
}

/// Runs `config` to completion.
///
/// # Errors
/// See [`LoadRun::start`] and [`LoadRun::finish`].
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    LoadRun::start(config)?.finish().await
}

async fn drive_concurrency(
    profile: &Profile,
    ctx: &Arc<Ctx>,
    control: &watch::Sender<Control>,
    rx: watch::Receiver<Control>,
    stop: &AtomicBool,
) -> Result<(), LoadError> {
    let mut workers = JoinSet::new();
    for id in 0..profile.peak() {
        workers.spawn(worker(id, ctx.clone(), rx.clone()));
    }
    drop(rx);
    let started = Instant::now();
    let mut tick = tokio::time::interval(CONTROL_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failed = None;
    loop {
        // Relaxed: see `LoadRun::stop`.
        if stop.load(Ordering::Relaxed) || ctx.budget.exhausted() {
            break;
        }
        let Some((index, phase, active)) = profile.locate(started.elapsed()) else {
            break;
        };
        control.send_if_modified(|c| {
            let changed = c.active != active || c.phase != index;
            c.active = active;
            c.phase = index;
            if changed {
                tracing::debug!(phase = %phase.name, active, "Concurrency changed");
            }
            changed
        });
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = workers.join_next() => {
                // A worker ends early only on a setup error or an exhausted budget.
                if let Err(e) = flatten(done) {
                    failed = Some(e);
                    break;
                }
            }
        }
    }
    control.send_modify(|c| {
        c.stopped = true;
        c.active = 0;
    });
    while let Some(done) = workers.join_next().await {
        if let Err(e) = flatten(done) {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn drive_rate(profile: &Profile, ctx: &Arc<Ctx>, stop: &AtomicBool) -> Result<(), LoadError> {
    let permits = Arc::new(Semaphore::new(profile.max_in_flight));
    let socket = Arc::new(ctx.sender.socket().await?);
    let mut tasks = JoinSet::new();
    let total = profile.total();
    let started = Instant::now();
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    'outer: loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        // Relaxed: see `LoadRun::stop`.
        if elapsed >= total || stop.load(Ordering::Relaxed) {
            break;
        }
        let due = (elapsed.as_secs_f64() * profile.rate) as u64;
        while issued < due {
            issued += 1;
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    if !ctx.budget.take() {
                        break 'outer;
                    }
                    let (ctx, socket) = (ctx.clone(), socket.clone());
                    let mut rng = Rng::new(ctx.seed ^ issued);
                    let phase = profile.locate(elapsed).map_or(0, |p| p.0);
                    tasks.spawn(async move {
                        send_one(&ctx, phase, &mut rng, socket.as_ref().as_ref()).await;
                        drop(permit);
                    });
                }
                Err(_) => ctx.stats.record_missed(),
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| LoadError::Worker(e.to_string()))?;
    }
    Ok(())
}

fn flatten(r: Result<Result<(), LoadError>, tokio::task::JoinError>) -> Result<(), LoadError> {
    r.map_err(|e| LoadError::Worker(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn generator_cycles_label_sets_and_counts_per_template() {
        let p = Profile::default();
        let g = Generator {
            series: p.series.clone(),
            batch: 3,
            step: AtomicU64::new(0),
            empty: BTreeMap::new(),
        };
        let mut rng = Rng::new(1);
        let (mut out, mut counts) = (Vec::new(), vec![0; 3]);
        g.next(&mut rng, &mut out, &mut counts);
        assert_eq!(counts[0], 3);
        assert_eq!(counts[1], 3);
        let services: Vec<&str> = out
            .iter()
            .filter(|s| s.name == "latency")
            .map(|s| s.labels["service"].as_str())
            .collect();
        assert_eq!(services, ["checkout", "search", "login"]);
        assert_eq!(out.len() as u64, counts.iter().sum::<u64>());
    }

    #[test]
    fn budget_stops_at_the_limit() {
        let b = Budget {
            remaining: Some(AtomicU64::new(2)),
            exhausted: AtomicBool::new(false),
        };
        assert!(b.take() && b.take());
        assert!(!b.take());
        assert!(b.exhausted());
    }
}
