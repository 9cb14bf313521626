//! Handles: resolve a series once, then record with no lookup.

use std::rc::Rc;

use crate::registry::{CellRef, HandleTarget, ShardLease};

/// A counter handle. Cheap to clone; a no-op handle records nothing.
///
/// ```
/// let registry = abacus::Registry::new();
/// let requests = registry.counter("requests", &[("service", "api")]);
/// requests.increment(2);
/// assert_eq!(registry.snapshot().counter("requests", &[("service", "api")]), Some(2));
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Counter {
    target: Option<HandleTarget>,
}

impl Counter {
    pub(crate) fn new(target: Option<HandleTarget>) -> Counter {
        Counter { target }
    }

    /// A handle that records nothing (what a kind conflict yields, too).
    pub fn noop() -> Counter {
        Counter { target: None }
    }

    /// Adds `n` (integer counters; on a float counter, adds `n as f64`).
    #[inline]
    pub fn increment(&self, n: u64) {
        if let Some(t) = &self.target {
            let float = t.series.kind == crate::MetricKind::FloatCounter;
            t.with_cell(|c, shared| match (float, shared) {
                (false, false) => c.add_u64::<false>(n),
                (false, true) => c.add_u64::<true>(n),
                (true, false) => c.add_f64::<false>(n as f64),
                (true, true) => c.add_f64::<true>(n as f64),
            });
        }
    }

    /// The counter's current total over all shards (integer counters; `0` for a no-op).
    pub fn total(&self) -> u64 {
        self.target.as_ref().map_or(0, |t| t.scalar_total())
    }

    /// Adds a finite, non-negative `x` to a float counter (rounded on an integer counter).
    pub fn add_f64(&self, x: f64) {
        if !(x.is_finite() && x >= 0.0) {
            return;
        }
        if let Some(t) = &self.target {
            if t.series.kind == crate::MetricKind::Counter {
                self.increment(x.round() as u64);
                return;
            }
            t.with_cell(|c, shared| {
                if shared {
                    c.add_f64::<true>(x)
                } else {
                    c.add_f64::<false>(x)
                }
            });
        }
    }
}

/// A gauge handle: a value that goes up and down. Gauges are one shared atomic per series
/// (a `set` from any thread must replace the value), so they cost one atomic store or CAS.
///
/// ```
/// let registry = abacus::Registry::new();
/// let conns = registry.gauge("connections", &[]);
/// conns.add(3.0);
/// conns.sub(1.0);
/// assert_eq!(registry.snapshot().gauge("connections", &[]), Some(2.0));
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Gauge {
    target: Option<HandleTarget>,
}

impl Gauge {
    pub(crate) fn new(target: Option<HandleTarget>) -> Gauge {
        Gauge { target }
    }

    /// A handle that records nothing.
    pub fn noop() -> Gauge {
        Gauge { target: None }
    }

    /// Sets the value.
    pub fn set(&self, v: f64) {
        if let Some(t) = &self.target {
            t.series.gauge_set(v);
        }
    }

    /// Adds `d`.
    pub fn add(&self, d: f64) {
        if let Some(t) = &self.target {
            t.series.gauge_add(d);
        }
    }

    /// Subtracts `d`.
    pub fn sub(&self, d: f64) {
        self.add(-d);
    }

    /// The current value (`0.0` for a no-op handle).
    pub fn get(&self) -> f64 {
        self.target.as_ref().map_or(0.0, |t| t.series.gauge_value())
    }
}

/// A histogram handle.
///
/// ```
/// let registry = abacus::Registry::new();
/// let api = registry.latency("api");
/// for ms in [3, 5, 8] {
///     api.record(ms);
/// }
/// let snap = registry.snapshot();
/// let h = snap.histogram("latency", &[("service", "api")]).unwrap();
/// assert_eq!((h.count, h.sum, h.min, h.max), (3, 16.0, 3.0, 8.0));
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Histogram {
    target: Option<HandleTarget>,
    /// Copied from the series so the hot path does not load it through the series.
    float: bool,
}

impl Histogram {
    pub(crate) fn new(target: Option<HandleTarget>) -> Histogram {
        let float = target
            .as_ref()
            .is_some_and(|t| t.series.kind == crate::MetricKind::FloatHistogram);
        Histogram { target, float }
    }

    /// A handle that records nothing.
    pub fn noop() -> Histogram {
        Histogram {
            target: None,
            float: false,
        }
    }

    /// Records one integer sample.
    #[inline(always)]
    pub fn record(&self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` samples of the integer `v`.
    #[inline(always)]
    pub fn record_n(&self, v: u64, n: u64) {
        if let Some(t) = &self.target {
            if !self.float {
                if let Some(c) = t.cached_cell() {
                    // The fast path: this thread's own cell, plain stores.
                    c.observe_u64::<false>(v, n);
                    return;
                }
            }
        }
        self.record_n_slow(v, n);
    }

    #[cold]
    #[inline(never)]
    fn record_n_slow(&self, v: u64, n: u64) {
        let Some(t) = &self.target else { return };
        if self.float {
            t.with_cell(|c, shared| {
                if shared {
                    c.observe_f64::<true>(v as f64, n)
                } else {
                    c.observe_f64::<false>(v as f64, n)
                }
            });
        } else {
            t.with_cell_slow(|c, shared| {
                if shared {
                    c.observe_u64::<true>(v, n)
                } else {
                    c.observe_u64::<false>(v, n)
                }
            });
        }
    }

    /// Records `n` samples of the float `v`.
    #[inline]
    pub fn record_f64_n(&self, v: f64, n: u64) {
        if let Some(t) = &self.target {
            t.with_cell(|c, shared| {
                if shared {
                    c.observe_f64::<true>(v, n)
                } else {
                    c.observe_f64::<false>(v, n)
                }
            });
        }
    }

    /// Records one float sample (rounded to a non-negative integer on an integer histogram;
    /// non-finite values are ignored).
    #[inline]
    pub fn record_f64(&self, v: f64) {
        if let Some(t) = &self.target {
            t.with_cell(|c, shared| {
                if shared {
                    c.observe_f64::<true>(v, 1)
                } else {
                    c.observe_f64::<false>(v, 1)
                }
            });
        }
    }

    /// Records the time elapsed since `start`, in milliseconds.
    pub fn record_since(&self, start: std::time::Instant) {
        self.record(start.elapsed().as_millis().min(u128::from(u64::MAX)) as u64);
    }

    /// This handle bound to the calling thread: [`LocalHistogram::record`] goes straight
    /// to the thread's own cell, with none of the checks a `Send` handle needs to find out
    /// which thread is calling. For a worker thread that records through the same handle
    /// for its whole life.
    pub fn local(&self) -> LocalHistogram {
        let fast = match &self.target {
            Some(t) if !self.float => t.thread_cell(),
            _ => None,
        };
        LocalHistogram {
            fast,
            handle: self.clone(),
        }
    }
}

/// A histogram handle bound to one thread ([`Histogram::local`]); it cannot be sent to or
/// shared with another thread.
///
/// It holds the thread's own cell of the series, so `record` is the single-writer update
/// of that cell and nothing else. It also keeps the thread's shard of the registry reserved
/// while it lives (even past the thread's thread-local storage), so no other thread can
/// take over that shard and write the same cell.
///
/// ```
/// let registry = abacus::Registry::new();
/// let api = registry.latency("api").local();
/// for ms in [3, 5, 8] {
///     api.record(ms);
/// }
/// let h = registry.snapshot();
/// assert_eq!(h.histogram("latency", &[("service", "api")]).unwrap().count, 3);
/// ```
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// needs_send(abacus::Registry::new().latency("api").local());
/// ```
#[derive(Debug)]
#[must_use]
pub struct LocalHistogram {
    /// This thread's cell and the lease on its shard. `None` for float histograms, no-op
    /// handles and a thread whose thread-local storage is gone: `handle` records then.
    fast: Option<(CellRef, Rc<ShardLease>)>,
    handle: Histogram,
}

impl LocalHistogram {
    /// Records one integer sample.
    #[inline(always)]
    pub fn record(&self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` samples of the integer `v`.
    #[inline(always)]
    pub fn record_n(&self, v: u64, n: u64) {
        match &self.fast {
            Some((cell, _)) => cell.observe_u64::<false>(v, n),
            None => self.handle.record_n(v, n),
        }
    }

    /// Records one float sample (see [`Histogram::record_f64`]).
    pub fn record_f64(&self, v: f64) {
        self.handle.record_f64(v);
    }

    /// Records the time elapsed since `start`, in milliseconds.
    pub fn record_since(&self, start: std::time::Instant) {
        self.record(start.elapsed().as_millis().min(u128::from(u64::MAX)) as u64);
    }

    /// The `Send` handle this one was made from.
    pub fn handle(&self) -> &Histogram {
        &self.handle
    }
}
