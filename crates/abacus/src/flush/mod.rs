//! Periodic flushing of delta windows to sinks.
//!
//! A [`Flusher`] owns a background thread that, every `interval`, takes
//! [`Registry::delta`] and hands the window to each [`Sink`]. [`Flusher::flush`] does the
//! same on demand; [`Flusher::shutdown`] (and `Drop`) stops the thread and flushes the last
//! partial window, so nothing recorded before shutdown is lost.
//!
//! Writers never wait for a flush: the flusher only reads the registry's atomics.

mod jsonl;
mod memory;
mod sink;
mod stdout;

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use jsonl::JsonLinesSink;
pub use memory::{CallbackSink, ChannelSink, MemorySink};
pub use sink::Sink;
pub use stdout::TableSink;

use crate::error::BuildError;
use crate::registry::Registry;
use crate::snapshot::Snapshot;
use crate::sync;

/// Configures and starts a [`Flusher`].
#[must_use]
pub struct FlusherBuilder {
    registry: Registry,
    interval: Duration,
    sinks: Vec<Box<dyn Sink>>,
}

impl std::fmt::Debug for FlusherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlusherBuilder")
            .field("interval", &self.interval)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl FlusherBuilder {
    /// Time between flushes (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Adds a sink; every window goes to every sink, in the order added.
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Builds the flusher without a background thread: call [`Flusher::flush`] yourself.
    ///
    /// # Errors
    /// [`BuildError::ZeroInterval`] if the interval is zero.
    pub fn build(self) -> Result<Flusher, BuildError> {
        if self.interval.is_zero() {
            return Err(BuildError::ZeroInterval);
        }
        Ok(Flusher {
            shared: Arc::new(Shared {
                registry: self.registry,
                sinks: Mutex::new(self.sinks),
                stop: Mutex::new(false),
                wake: Condvar::new(),
                stats: Mutex::new(FlushStats::default()),
            }),
            interval: self.interval,
            thread: None,
        })
    }

    /// Builds the flusher and starts its background thread.
    ///
    /// # Errors
    /// [`BuildError::ZeroInterval`], or [`BuildError::Spawn`] if the thread cannot start.
    pub fn spawn(self) -> Result<Flusher, BuildError> {
        let mut flusher = self.build()?;
        let shared = flusher.shared.clone();
        let interval = flusher.interval;
        let thread = std::thread::Builder::new()
            .name("abacus-flusher".into())
            .spawn(move || run(&shared, interval))
            .map_err(|e| BuildError::Spawn(e.to_string()))?;
        flusher.thread = Some(thread);
        Ok(flusher)
    }
}

/// Counters of the flusher itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Windows taken from the registry.
    pub windows: u64,
    /// Sink exports that failed (each is logged).
    pub sink_errors: u64,
    /// Duration of the last flush (read + all sinks).
    pub last_duration: Duration,
}

struct Shared {
    registry: Registry,
    /// Lock: taken by flushes only (background or manual), never by recording threads.
    sinks: Mutex<Vec<Box<dyn Sink>>>,
    /// Lock: the stop flag and its condition variable; flusher control only.
    stop: Mutex<bool>,
    wake: Condvar,
    /// Lock: flush statistics; flush path and readers of stats only.
    stats: Mutex<FlushStats>,
}

/// Flushes a registry's delta windows to sinks periodically. See the [module docs](self).
pub struct Flusher {
    shared: Arc<Shared>,
    interval: Duration,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("interval", &self.interval)
            .finish()
    }
}

fn run(shared: &Shared, interval: Duration) {
    let mut next = Instant::now() + interval;
    loop {
        {
            let mut stop = sync::lock_std(&shared.stop);
            loop {
                if *stop {
                    return;
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                stop = shared
                    .wake
                    .wait_timeout(stop, next - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        flush_once(shared);
        // Keep a steady cadence; after a long stall, skip the missed ticks.
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now + interval;
        }
    }
}

fn flush_once(shared: &Shared) -> Snapshot {
    let mut sinks = sync::lock_std(&shared.sinks);
    let started = Instant::now();
    let window = shared.registry.delta();
    let mut errors = 0;
    for sink in sinks.iter_mut() {
        if let Err(error) = sink.export(&window) {
            errors += 1;
            tracing::warn!(sink = sink.name(), %error, "Sink failed to export a window");
        }
    }
    let mut stats = sync::lock_std(&shared.stats);
    stats.windows += 1;
    stats.sink_errors += errors;
    stats.last_duration = started.elapsed();
    window
}

impl Flusher {
    /// Configures a flusher for `registry`.
    pub fn builder(registry: Registry) -> FlusherBuilder {
        FlusherBuilder {
            registry,
            interval: Duration::from_secs(10),
            sinks: Vec::new(),
        }
    }

    /// Flushes now, on the calling thread, and returns the window that was exported.
    pub fn flush(&self) -> Snapshot {
        flush_once(&self.shared)
    }

    /// The flusher's counters.
    pub fn stats(&self) -> FlushStats {
        *sync::lock_std(&self.shared.stats)
    }

    /// Stops the background thread, flushes the last partial window and shuts the sinks
    /// down. Called by `Drop` too.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        *sync::lock_std(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        let had_thread = self.thread.take().map(|t| t.join()).is_some();
        // The final window: everything recorded up to now.
        if had_thread || !sync::lock_std(&self.shared.sinks).is_empty() {
            flush_once(&self.shared);
        }
        let mut sinks = sync::lock_std(&self.shared.sinks);
        for sink in sinks.iter_mut() {
            if let Err(error) = sink.shutdown() {
                tracing::warn!(sink = sink.name(), %error, "Sink failed to shut down");
            }
        }
        sinks.clear();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if self.thread.is_some() || !sync::lock_std(&self.shared.sinks).is_empty() {
            self.stop();
        }
    }
}
