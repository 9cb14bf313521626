//! The registry: series storage, sharded per recording thread.
//!
//! # Concurrency model
//!
//! * Every recording thread owns a *shard* (a small integer taken from a pool on its first
//!   record and given back when it exits). For each series it records into, it has one
//!   [`Cell`](cell::Cell) that only it writes, with plain atomic loads and stores
//!   (no lock prefix, no contention: the cache line stays in that core's cache).
//! * The thread caches `Arc`s of its cells in thread-local maps keyed by service name,
//!   series key or series slot. Steady state: one thread-local access, one hash lookup (or
//!   an index for handles), then the stores. No lock.
//! * The series index (name + labels → series) is striped over 16 `RwLock`ed maps. It is
//!   read the first time a thread records into a series, and written when a series is
//!   created or evicted.
//! * The collector (snapshots, flushes) sums the cells of each series with Relaxed loads.
//!   Deltas are differences of cumulative reads, so writers never race a reset; only the
//!   window min/max are reset, with an atomic swap.

mod cell;
mod collect;
mod local;
#[cfg(all(test, loom))]
mod loom;
mod series;

use std::sync::Arc;
use std::time::SystemTime;

use hashbrown::HashMap;

pub use cell::MetricKind;
pub(crate) use cell::{Cell, CellRef};
pub(crate) use collect::{Collector, Scratch as CollectScratch, read_cumulative};
pub(crate) use local::ShardLease;
use local::{IdPool, LocalShard, thread_tag, with_current, with_local};
pub(crate) use series::Series;

use crate::error::BuildError;
use crate::handle::{Counter, Gauge, Histogram};
use crate::histogram::{DEFAULT_SCALE, HistogramSnapshot, index};
use crate::key::{BuildKeyHasher, Key, KeyRef};
use crate::snapshot::{Snapshot, Unit};
use crate::sync::{self, AtomicU64, AtomicUsize, Mutex, Ordering, RwLock};

/// Number of index stripes (a power of two).
const STRIPES: usize = 16;

/// Label value given to series that were refused because the registry is full.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

/// Registry configuration; see [`RegistryBuilder`].
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Maximum number of live series (overflow series not included). Default 10,000.
    pub max_series: usize,
    /// Maximum number of overflow series (one per metric name and kind). Default 1,000.
    pub max_overflow_series: usize,
    /// Evict a series after this many consecutive delta collections (flushes) without a
    /// sample; `0` disables eviction. Default 5.
    pub evict_after_idle: u32,
    /// Histogram scale (0..=8). Default 4: quantiles within 2.17%.
    pub scale: u8,
    /// Metric name that [`Registry::record_latency`] records into. Default `latency`.
    pub latency_metric: String,
    /// Threads a snapshot or flush of a large registry may use (at least 256 series per
    /// thread; smaller registries are read by the calling thread alone). Default: the
    /// available parallelism, at most 4.
    pub collect_threads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_series: 10_000,
            max_overflow_series: 1_000,
            evict_after_idle: 5,
            scale: DEFAULT_SCALE,
            latency_metric: "latency".to_owned(),
            collect_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        }
    }
}

/// Builds a [`Registry`], checking the configuration once.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RegistryBuilder {
    config: RegistryConfig,
}

impl RegistryBuilder {
    /// Maximum number of live series; further keys go to overflow series.
    pub fn max_series(mut self, n: usize) -> Self {
        self.config.max_series = n;
        self
    }

    /// Maximum number of overflow series.
    pub fn max_overflow_series(mut self, n: usize) -> Self {
        self.config.max_overflow_series = n;
        self
    }

    /// Evict series idle for `n` consecutive flushes (`0`: never).
    pub fn evict_after_idle(mut self, n: u32) -> Self {
        self.config.evict_after_idle = n;
        self
    }

    /// Histogram scale, `0..=8`.
    pub fn scale(mut self, scale: u8) -> Self {
        self.config.scale = scale;
        self
    }

    /// Metric name used by [`Registry::record_latency`].
    pub fn latency_metric(mut self, name: impl Into<String>) -> Self {
        self.config.latency_metric = name.into();
        self
    }

    /// Threads a snapshot or flush of a large registry may use, `1` to read on the calling
    /// thread only. Each extra thread takes a contiguous share of at least 256 series.
    pub fn collect_threads(mut self, n: usize) -> Self {
        self.config.collect_threads = n;
        self
    }

    /// Builds the registry.
    ///
    /// # Errors
    /// [`BuildError`] when the scale is out of range, `max_series` or `collect_threads` is
    /// zero or the latency metric name is empty.
    pub fn build(self) -> Result<Registry, BuildError> {
        let c = &self.config;
        if c.scale > index::MAX_SCALE as u8 {
            return Err(BuildError::Scale(c.scale));
        }
        if c.max_series == 0 {
            return Err(BuildError::ZeroMaxSeries);
        }
        if c.collect_threads == 0 {
            return Err(BuildError::ZeroCollectThreads);
        }
        if c.latency_metric.is_empty() {
            return Err(BuildError::EmptyLatencyMetric);
        }
        Ok(Registry::with_config(self.config))
    }
}

/// Counters of the registry's own behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RegistryStats {
    /// Live series, overflow series included.
    pub series: usize,
    /// Live overflow series.
    pub overflow_series: usize,
    /// Records routed to an overflow series because their key was refused.
    pub refused_records: u64,
    /// Series evicted after being idle.
    pub evicted_series: u64,
    /// Evicted series whose cells are still referenced by some thread.
    pub retiring_series: usize,
    /// Records dropped because the key exists with another kind.
    pub kind_conflicts: u64,
    /// Shard ids handed out: the peak number of concurrently recording threads.
    pub shards: usize,
}

type Index = HashMap<Key, Arc<Series>, BuildKeyHasher>;

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) config: RegistryConfig,
    pub(crate) created: SystemTime,
    /// Lock (each stripe): read on the first record of a thread into a series and by
    /// snapshots; written when a series is created or evicted. Never on the steady path.
    stripes: Box<[RwLock<Index>]>,
    series_count: AtomicUsize,
    overflow_count: AtomicUsize,
    next_series_id: AtomicU64,
    /// Lock: series creation and eviction only.
    slots: Mutex<IdPool>,
    /// Lock: a thread's first record into this registry, and thread exit.
    pub(crate) shards: Mutex<IdPool>,
    /// Bumped after each eviction; threads then sweep retired cells out of their caches.
    pub(crate) evict_epoch: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    conflicts: AtomicU64,
    /// Lock: taken by delta collections (flushes) only, so two flushes never interleave.
    pub(crate) collector: Mutex<Collector>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.id)
            .field("config", &self.config)
            .finish()
    }
}

static NEXT_REGISTRY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The aggregator: a set of series (counters, gauges, histograms) keyed by name and labels,
/// recorded from any number of threads without locks on the steady-state path.
///
/// Cloning is cheap and clones share the same series.
///
/// ```
/// let registry = abacus::Registry::new();
/// registry.record_latency("checkout", 12);
/// registry.increment_counter("requests", &[("service", "checkout")], 1);
/// let snap = registry.snapshot();
/// assert_eq!(snap.counter("requests", &[("service", "checkout")]), Some(1));
/// assert_eq!(snap.histogram("latency", &[("service", "checkout")]).unwrap().count, 1);
/// ```
#[derive(Clone, Debug)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// What a slow-path lookup found.
struct Resolved {
    series: Arc<Series>,
    /// False for overflow series reached by a refused key: caching it under the refused
    /// key would let a flood of keys grow the thread-local caches.
    cacheable: bool,
}

impl Registry {
    /// A registry with the default configuration.
    pub fn new() -> Registry {
        Registry::with_config(RegistryConfig::default())
    }

    /// A builder to configure limits, eviction and histogram resolution.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    fn with_config(config: RegistryConfig) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                // Relaxed: unique id generation only.
                id: NEXT_REGISTRY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                config,
                created: SystemTime::now(),
                stripes: (0..STRIPES)
                    .map(|_| RwLock::new(Index::default()))
                    .collect(),
                series_count: AtomicUsize::new(0),
                overflow_count: AtomicUsize::new(0),
                next_series_id: AtomicU64::new(1),
                slots: Mutex::new(IdPool::default()),
                shards: Mutex::new(IdPool::default()),
                evict_epoch: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                conflicts: AtomicU64::new(0),
                collector: Mutex::new(Collector::default()),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    // ----- recording by name -------------------------------------------------------------

    /// Records one latency sample for `service` into the histogram
    /// `latency{service="..."}` (unit: milliseconds).
    ///
    /// Steady state (the thread has recorded for this service before): one thread-local
    /// hash lookup and a handful of plain stores; no lock, no read-modify-write.
    #[inline]
    pub fn record_latency(&self, service: &str, latency_ms: u64) {
        // The front-table hit is all that is inlined here; everything else (a first record,
        // another registry, a sweep after evictions, a front miss) is `record_latency_slow`,
        // so this path saves and restores few registers.
        let hit = with_current(&self.inner, |local| {
            match local.recent_cell(service, local::recent_slot(service)) {
                Some(c) => {
                    c.observe_u64::<false>(latency_ms, 1);
                    true
                }
                None => false,
            }
        });
        match hit {
            Some(true) => {}
            Some(false) => self.record_latency_slow(service, latency_ms, true),
            None => self.record_latency_slow(service, latency_ms, false),
        }
    }

    /// `record_latency` past the front table: switching to this registry's shard and
    /// sweeping evicted cells when needed, then the per-thread map, then the registry.
    /// `front_missed`: the fast path already looked in this shard's front table and did
    /// not find `service`, so it is not looked up again (a sweep in between only removes
    /// entries).
    #[inline(never)]
    fn record_latency_slow(&self, service: &str, latency_ms: u64, front_missed: bool) {
        let inner = &self.inner;
        let done = with_local(inner, |local| {
            let slot = local::recent_slot(service);
            let front = if front_missed {
                None
            } else {
                local.recent_cell(service, slot)
            };
            match front {
                Some(c) => c.observe_u64::<false>(latency_ms, 1),
                None => self.record_latency_miss(local, service, slot, latency_ms),
            }
        });
        if done.is_none() {
            let labels = [("service", service)];
            let key = KeyRef::new(&inner.config.latency_metric, &labels);
            if let Some(r) = self.resolve(key, MetricKind::Histogram, Unit::Milliseconds, false) {
                r.series.shared().observe_u64::<true>(latency_ms, 1);
            }
        }
    }

    /// `record_latency` when the front cache misses: the per-thread map, then the registry.
    #[inline(never)]
    fn record_latency_miss(
        &self,
        local: &mut LocalShard,
        service: &str,
        slot: usize,
        latency_ms: u64,
    ) {
        if local.record_from_map(service, slot, latency_ms) {
            return;
        }
        let labels = [("service", service)];
        let key = KeyRef::new(&self.inner.config.latency_metric, &labels);
        if let Some((cell, cacheable)) = self.local_cell(
            local.shard(),
            key,
            MetricKind::Histogram,
            Unit::Milliseconds,
        ) {
            cell.observe_u64::<false>(latency_ms, 1);
            if cacheable {
                local.cache_latency(service, cell, slot);
            }
        }
    }

    /// Adds `n` to the counter `name{labels}`.
    pub fn increment_counter(&self, name: &str, labels: &[(&str, &str)], n: u64) {
        self.with_keyed(
            KeyRef::new(name, labels),
            MetricKind::Counter,
            Unit::None,
            |c, shared| {
                if shared {
                    c.add_u64::<true>(n)
                } else {
                    c.add_u64::<false>(n)
                }
            },
        );
    }

    /// Adds `x` (finite, non-negative) to the float counter `name{labels}`.
    pub fn add_counter_f64(&self, name: &str, labels: &[(&str, &str)], x: f64) {
        if !(x.is_finite() && x >= 0.0) {
            return;
        }
        self.with_keyed(
            KeyRef::new(name, labels),
            MetricKind::FloatCounter,
            Unit::None,
            |c, shared| {
                if shared {
                    c.add_f64::<true>(x)
                } else {
                    c.add_f64::<false>(x)
                }
            },
        );
    }

    /// Records the integer `v` into the histogram `name{labels}`.
    pub fn record(&self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.record_n(name, labels, v, 1);
    }

    /// Records `n` samples of the integer `v` into the histogram `name{labels}`.
    pub fn record_n(&self, name: &str, labels: &[(&str, &str)], v: u64, n: u64) {
        self.with_keyed(
            KeyRef::new(name, labels),
            MetricKind::Histogram,
            Unit::None,
            |c, shared| {
                if shared {
                    c.observe_u64::<true>(v, n)
                } else {
                    c.observe_u64::<false>(v, n)
                }
            },
        );
    }

    /// Records the float `v` into the float histogram `name{labels}`. Non-finite values are
    /// ignored.
    pub fn record_f64(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.record_f64_n(name, labels, v, 1);
    }

    /// Records `n` samples of the float `v` into the float histogram `name{labels}`.
    pub fn record_f64_n(&self, name: &str, labels: &[(&str, &str)], v: f64, n: u64) {
        if !v.is_finite() {
            return;
        }
        self.with_keyed(
            KeyRef::new(name, labels),
            MetricKind::FloatHistogram,
            Unit::None,
            |c, shared| {
                if shared {
                    c.observe_f64::<true>(v, n)
                } else {
                    c.observe_f64::<false>(v, n)
                }
            },
        );
    }

    /// Sets the gauge `name{labels}`.
    pub fn set_gauge(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        if let Some(r) = self.resolve(
            KeyRef::new(name, labels),
            MetricKind::Gauge,
            Unit::None,
            false,
        ) {
            r.series.gauge_set(v);
        }
    }

    /// Adds `d` (may be negative) to the gauge `name{labels}`.
    pub fn add_gauge(&self, name: &str, labels: &[(&str, &str)], d: f64) {
        if let Some(r) = self.resolve(
            KeyRef::new(name, labels),
            MetricKind::Gauge,
            Unit::None,
            false,
        ) {
            r.series.gauge_add(d);
        }
    }

    /// Merges a whole histogram (for example an OTLP exponential histogram delta) into the
    /// histogram `name{labels}`: bucket counts, sum and extremes. A finer `h` is mapped onto
    /// the registry's scale exactly; a coarser one keeps its own resolution (its counts land
    /// in the first sub-bucket of each of its buckets).
    pub fn merge_histogram(&self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let kind = if h.integers {
            MetricKind::Histogram
        } else {
            MetricKind::FloatHistogram
        };
        self.with_keyed(KeyRef::new(name, labels), kind, Unit::None, |c, shared| {
            if let Some(hist) = c.histogram() {
                if shared {
                    hist.add_snapshot::<true>(h)
                } else {
                    hist.add_snapshot::<false>(h)
                }
            }
        });
    }

    // ----- handles ------------------------------------------------------------------------

    /// A handle to the latency histogram of `service`: resolve once, then
    /// [`Histogram::record`] with no lookup.
    pub fn latency(&self, service: &str) -> Histogram {
        let labels = [("service", service)];
        let key = KeyRef::new(&self.inner.config.latency_metric, &labels);
        Histogram::new(self.handle(key, MetricKind::Histogram, Unit::Milliseconds))
    }

    /// A handle to the counter `name{labels}`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        Counter::new(self.handle(KeyRef::new(name, labels), MetricKind::Counter, Unit::None))
    }

    /// A handle to the float counter `name{labels}`.
    pub fn float_counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        Counter::new(self.handle(
            KeyRef::new(name, labels),
            MetricKind::FloatCounter,
            Unit::None,
        ))
    }

    /// A handle to the gauge `name{labels}`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Gauge {
        Gauge::new(self.handle(KeyRef::new(name, labels), MetricKind::Gauge, Unit::None))
    }

    /// A handle to the integer histogram `name{labels}`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        Histogram::new(self.handle(KeyRef::new(name, labels), MetricKind::Histogram, Unit::None))
    }

    /// A handle to the integer histogram `name{labels}` with a unit.
    pub fn histogram_with_unit(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        unit: Unit,
    ) -> Histogram {
        Histogram::new(self.handle(KeyRef::new(name, labels), MetricKind::Histogram, unit))
    }

    /// A handle to the float histogram `name{labels}`.
    pub fn float_histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        Histogram::new(self.handle(
            KeyRef::new(name, labels),
            MetricKind::FloatHistogram,
            Unit::None,
        ))
    }

    /// A handle to the float histogram `name{labels}` with a unit.
    pub fn float_histogram_with_unit(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        unit: Unit,
    ) -> Histogram {
        Histogram::new(self.handle(KeyRef::new(name, labels), MetricKind::FloatHistogram, unit))
    }

    fn handle(&self, key: KeyRef<'_>, kind: MetricKind, unit: Unit) -> Option<HandleTarget> {
        let r = self.resolve(key, kind, unit, true)?;
        Some(HandleTarget {
            registry: self.inner.clone(),
            series: r.series,
            cache: std::sync::OnceLock::new(),
        })
    }

    // ----- reading -------------------------------------------------------------------------

    /// Cumulative snapshot of every live series: counters since creation, histograms of all
    /// samples, gauges' current values. Does not disturb writers or the next delta.
    ///
    /// Consistency: each atomic is read once; a sample recorded concurrently may be
    /// partly visible (its bucket but not yet its sum). Evicted series are not included.
    pub fn snapshot(&self) -> Snapshot {
        collect::cumulative(self)
    }

    /// Every live series in the order of [`snapshot`](Self::snapshot)'s, with a scratch
    /// for [`read_cumulative`]: a reader that walks the registry instead of copying it.
    pub(crate) fn cumulative_walk(&self) -> (Vec<Arc<Series>>, CollectScratch) {
        (
            collect::sorted_series(self),
            CollectScratch::new(self.inner.config.scale),
        )
    }

    /// Delta snapshot: what was recorded since the previous `delta()` (the first call
    /// covers everything since creation). Used by the flusher; deltas of successive calls
    /// add up exactly to everything recorded. Also runs idle-series eviction.
    pub fn delta(&self) -> Snapshot {
        collect::delta(self)
    }

    /// The registry's own counters.
    pub fn stats(&self) -> RegistryStats {
        let inner = &self.inner;
        RegistryStats {
            // Relaxed (all loads below): statistics, read for their values only.
            series: inner.series_count.load(Ordering::Relaxed)
                + inner.overflow_count.load(Ordering::Relaxed),
            overflow_series: inner.overflow_count.load(Ordering::Relaxed),
            refused_records: inner.refused.load(Ordering::Relaxed),
            evicted_series: inner.evicted.load(Ordering::Relaxed),
            retiring_series: sync::lock(&inner.collector).zombies.len(),
            kind_conflicts: inner.conflicts.load(Ordering::Relaxed),
            shards: IdPool::high_water(&inner.shards),
        }
    }

    // ----- internals -----------------------------------------------------------------------

    /// Runs `op` on this thread's cell of `key` (or on the shared cell when thread-local
    /// storage cannot be used).
    #[inline]
    fn with_keyed(&self, key: KeyRef<'_>, kind: MetricKind, unit: Unit, op: impl Fn(&Cell, bool)) {
        let done = with_local(&self.inner, |local| {
            if let Some(c) = local.keyed.get(&key) {
                if !c.is_retired() {
                    op(c, false);
                    return true;
                }
                local.keyed.remove(&key);
            }
            match self.local_cell(local.shard(), key, kind, unit) {
                Some((cell, cacheable)) => {
                    op(&cell, false);
                    if cacheable {
                        local.keyed.insert(key.to_key(), cell);
                    }
                    true
                }
                None => true,
            }
        });
        if done.is_none() {
            if let Some(r) = self.resolve(key, kind, unit, false) {
                op(r.series.shared(), true);
            }
        }
    }

    /// This shard's cell of `key`, resolving (and creating) the series as needed.
    fn local_cell(
        &self,
        shard: usize,
        key: KeyRef<'_>,
        kind: MetricKind,
        unit: Unit,
    ) -> Option<(CellRef, bool)> {
        // A series can be evicted between lookup and cell creation; try again (the second
        // attempt creates a fresh series).
        for _ in 0..4 {
            let r = self.resolve(key, kind, unit, false)?;
            if let Some(cell) = r.series.cell(shard, self.inner.config.scale) {
                return Some((cell, r.cacheable));
            }
        }
        None
    }

    /// Finds or creates the series of `key`. With `for_handle`, counts a handle on it while
    /// the index lock is held, so eviction (which checks handles under the write lock)
    /// cannot race the new handle.
    fn resolve(
        &self,
        key: KeyRef<'_>,
        kind: MetricKind,
        unit: Unit,
        for_handle: bool,
    ) -> Option<Resolved> {
        let inner = &*self.inner;
        match inner.find_or_create(key, kind, unit, for_handle, false) {
            Ok(Some(series)) => Some(Resolved {
                series,
                cacheable: true,
            }),
            Ok(None) => {
                // Relaxed: statistics counter.
                inner.refused.fetch_add(1, Ordering::Relaxed);
                let overflow = inner.overflow_series(key, kind, unit, for_handle)?;
                Some(Resolved {
                    series: overflow,
                    cacheable: false,
                })
            }
            Err(()) => {
                // Relaxed: statistics counter.
                inner.conflicts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// What a handle points at.
#[derive(Debug)]
pub(crate) struct HandleTarget {
    pub(crate) registry: Arc<Inner>,
    pub(crate) series: Arc<Series>,
    /// The cell of the first thread that recorded through this handle value, tagged with
    /// that thread's unique tag. That thread owns the cell's shard for as long as it lives
    /// (the tag is killed before its shards are released), so only it may use the cache;
    /// other threads go through their thread-local slot cache. Clones start empty, so a
    /// clone per worker thread gives every worker the fast path.
    cache: std::sync::OnceLock<(u64, CellRef)>,
}

impl HandleTarget {
    /// This thread's cell from the handle's own cache, when this thread owns it: the
    /// no-lookup fast path (callers then record with the single-writer operations).
    #[inline(always)]
    pub(crate) fn cached_cell(&self) -> Option<&Cell> {
        match self.cache.get() {
            Some((tag, cell)) if *tag == thread_tag() => Some(cell),
            _ => None,
        }
    }

    /// Runs `op` on this thread's cell of the handle's series: from the handle's own cache
    /// when this thread owns it, else from the thread's slot cache.
    #[inline]
    pub(crate) fn with_cell(&self, op: impl Fn(&Cell, bool)) {
        match self.cached_cell() {
            Some(cell) => op(cell, false),
            None => self.with_cell_slow(op),
        }
    }

    #[inline(never)]
    pub(crate) fn with_cell_slow(&self, op: impl Fn(&Cell, bool)) {
        let series = &self.series;
        let done = with_local(&self.registry, |local| {
            if let Some(Some(c)) = local.by_slot.get(series.slot) {
                if c.series_id == series.id {
                    op(c, false);
                    if self.cache.get().is_none() {
                        let _ = self.cache.set((thread_tag(), c.clone()));
                    }
                    return true;
                }
            }
            let Some(cell) = series.cell(local.shard(), self.registry.config.scale) else {
                return false;
            };
            op(&cell, false);
            // Only inside `with_local`: the thread-local storage (and so the shard) is alive.
            let _ = self.cache.set((thread_tag(), cell.clone()));
            if local.by_slot.len() <= series.slot {
                local.by_slot.resize(series.slot + 1, None);
            }
            local.by_slot[series.slot] = Some(cell);
            true
        });
        if done != Some(true) {
            op(series.shared(), true);
        }
    }
}

impl HandleTarget {
    /// This thread's cell of the series, with the lease that keeps its shard owned by this
    /// thread while the caller holds it. `None` when the thread-local storage is gone (the
    /// thread is exiting) or borrowed.
    pub(crate) fn thread_cell(&self) -> Option<(CellRef, std::rc::Rc<local::ShardLease>)> {
        let series = &self.series;
        with_local(&self.registry, |local| {
            let cell = match local.by_slot.get(series.slot) {
                Some(Some(c)) if c.series_id == series.id => c.clone(),
                _ => {
                    // `None` only for an evicted series, which a live handle prevents.
                    let cell = series.cell(local.shard(), self.registry.config.scale)?;
                    if local.by_slot.len() <= series.slot {
                        local.by_slot.resize(series.slot + 1, None);
                    }
                    local.by_slot[series.slot] = Some(cell.clone());
                    cell
                }
            };
            Some((cell, local.lease.clone()))
        })
        .flatten()
    }

    /// Sum of the series' scalar cells (integer counters).
    pub(crate) fn scalar_total(&self) -> u64 {
        let cells = sync::read(&self.series.cells);
        cells.by_shard.iter().flatten().fold(
            self.series.shared_if_used().map_or(0, |c| c.scalar()),
            |acc, c| acc.wrapping_add(c.scalar()),
        )
    }
}

impl Clone for HandleTarget {
    fn clone(&self) -> Self {
        // Relaxed: the count only has to be exact; an existing handle already keeps the
        // series from eviction, so no ordering with the evictor is needed here.
        self.series.handles.fetch_add(1, Ordering::Relaxed);
        HandleTarget {
            registry: self.registry.clone(),
            series: self.series.clone(),
            cache: std::sync::OnceLock::new(),
        }
    }
}

impl Drop for HandleTarget {
    fn drop(&mut self) {
        // Relaxed: the evictor reads the count under the stripe write lock; a handle dropped
        // concurrently only delays eviction by one flush.
        self.series.handles.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn stripe(&self, hash: u64) -> &RwLock<Index> {
        &self.stripes[(hash >> 58) as usize & (STRIPES - 1)]
    }

    /// `Ok(None)`: refused (registry full). `Err(())`: the key exists with another kind.
    fn find_or_create(
        &self,
        key: KeyRef<'_>,
        kind: MetricKind,
        unit: Unit,
        for_handle: bool,
        overflow: bool,
    ) -> Result<Option<Arc<Series>>, ()> {
        let stripe = self.stripe(key.hash);
        let check = |s: &Arc<Series>| -> Result<Option<Arc<Series>>, ()> {
            if s.kind != kind {
                return Err(());
            }
            if for_handle {
                // Relaxed: the stripe lock held by the caller orders this with eviction.
                s.handles.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(s.clone()))
        };
        if let Some(s) = sync::read(stripe).get(&key) {
            return check(s);
        }
        let mut map = sync::write(stripe);
        if let Some(s) = map.get(&key) {
            return check(s);
        }
        let counter = if overflow {
            &self.overflow_count
        } else {
            &self.series_count
        };
        let limit = if overflow {
            self.config.max_overflow_series
        } else {
            self.config.max_series
        };
        // Relaxed: the limit is checked and raised by one CAS; series creation itself is
        // ordered by the stripe lock.
        if counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return Ok(None);
        }
        let series = self.new_series(key.to_key(), kind, unit, overflow);
        if for_handle {
            // Relaxed: not yet visible to anyone else.
            series.handles.store(1, Ordering::Relaxed);
        }
        map.insert(series.key.clone(), series.clone());
        Ok(Some(series))
    }

    /// The overflow series for a refused `key`: same name, labels replaced by
    /// `service="__overflow__"` (or `overflow="__overflow__"` when the key had no `service`
    /// label). If the overflow series are full too, `abacus_overflow{kind="..."}`.
    fn overflow_series(
        &self,
        key: KeyRef<'_>,
        kind: MetricKind,
        unit: Unit,
        for_handle: bool,
    ) -> Option<Arc<Series>> {
        let label = if key.labels.iter().any(|(k, _)| *k == "service") {
            "service"
        } else {
            "overflow"
        };
        let labels = [(label, OVERFLOW_LABEL_VALUE)];
        match self.find_or_create(KeyRef::new(key.name, &labels), kind, unit, for_handle, true) {
            Ok(Some(s)) => Some(s),
            Err(()) => None,
            Ok(None) => {
                let labels = [("kind", kind.as_str())];
                // The global fallback is exempt from limits: one per kind at most.
                let k = KeyRef::new("abacus_overflow", &labels);
                let stripe = self.stripe(k.hash);
                if let Some(s) = sync::read(stripe).get(&k) {
                    if for_handle {
                        // Relaxed: the stripe read lock held here orders this with eviction.
                        s.handles.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(s.clone());
                }
                let mut map = sync::write(stripe);
                let s = map
                    .entry(k.to_key())
                    .or_insert_with(|| self.new_series(k.to_key(), kind, unit, true));
                if for_handle {
                    // Relaxed: the stripe write lock held here orders this with eviction.
                    s.handles.fetch_add(1, Ordering::Relaxed);
                }
                Some(s.clone())
            }
        }
    }

    /// A new series with a fresh id and a free slot.
    fn new_series(&self, key: Key, kind: MetricKind, unit: Unit, overflow: bool) -> Arc<Series> {
        let slot = IdPool::acquire(&self.slots);
        // Relaxed: unique id generation only.
        let id = self.next_series_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Series::new(
            id,
            slot,
            key,
            kind,
            unit,
            self.config.scale,
            overflow,
        ))
    }

    /// Every live series (a consistent list per stripe), in creation order.
    ///
    /// Creation order is close to allocation order: a series, its cells and its first
    /// bucket groups are allocated together, so a collection that walks them in this order
    /// reads memory in a few forward streams the hardware prefetcher follows, where the
    /// index's hash order jumps at random (a 10,000-series snapshot: 34–46 ms in hash
    /// order, 22–31 ms in creation order, `hotloop snapshot 20 10000`).
    pub(crate) fn all_series(&self) -> Vec<Arc<Series>> {
        let mut all: Vec<(u64, Arc<Series>)> = self.index_entries().map(|s| (s.id, s)).collect();
        // Ids are unique: an unstable sort gives one order.
        all.sort_unstable_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, s)| s).collect()
    }

    /// Every live series in index order (consistent per stripe), for callers that sort
    /// them by another key.
    pub(crate) fn index_entries(&self) -> impl Iterator<Item = Arc<Series>> + '_ {
        self.stripes
            .iter()
            .flat_map(|stripe| sync::read(stripe).values().cloned().collect::<Vec<_>>())
    }

    /// Removes `series` from the index if it still has no handle. Called by the collector.
    pub(crate) fn try_evict(&self, series: &Arc<Series>) -> bool {
        let mut map = sync::write(self.stripe(series.key.hash64()));
        // Relaxed: handles are only added under a stripe lock, which we hold.
        if series.handles.load(Ordering::Relaxed) != 0 {
            return false;
        }
        if map.remove(&series.key).is_none() {
            return false;
        }
        drop(map);
        let counter = if series.overflow {
            &self.overflow_count
        } else {
            &self.series_count
        };
        // Relaxed: statistics / limit accounting.
        counter.fetch_sub(1, Ordering::Relaxed);
        IdPool::release(&self.slots, series.slot);
        // Relaxed: statistics counter.
        self.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Tells threads to sweep retired cells out of their caches.
    pub(crate) fn bump_evict_epoch(&self) {
        // Relaxed: a hint for the sweep, see `LocalShard::sweep_if_evicted`.
        self.evict_epoch.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{BuildError, Registry};

    /// The per-series, per-cell and per-thread constants of the memory formula in DESIGN.md
    /// ("Bounded memory") are upper bounds of these sizes.
    #[test]
    fn structure_sizes_stay_within_the_memory_formula() {
        use crossbeam_utils::CachePadded;
        use std::mem::size_of;
        assert!(size_of::<super::Series>() <= 256, "Series");
        assert!(size_of::<CachePadded<super::Cell>>() <= 512, "padded cell");
        assert!(size_of::<super::local::LocalShard>() <= 136, "TLS shard");
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let err = |b: super::RegistryBuilder| b.build().unwrap_err();
        assert_eq!(err(Registry::builder().scale(9)), BuildError::Scale(9));
        assert_eq!(
            err(Registry::builder().max_series(0)),
            BuildError::ZeroMaxSeries
        );
        assert_eq!(
            err(Registry::builder().collect_threads(0)),
            BuildError::ZeroCollectThreads
        );
        assert_eq!(
            err(Registry::builder().latency_metric("")),
            BuildError::EmptyLatencyMetric
        );
        assert!(Registry::builder().collect_threads(1).build().is_ok());
    }
}
