//! A series: its identity, its per-shard cells and the collector's bookkeeping.

use crate::histogram::HistogramTotals;
use crate::key::Key;
use crate::registry::cell::{Cell, CellRef, MetricKind, ShortName};
use crate::snapshot::Unit;
use crate::sync::{self, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, RwLock};

/// Cells of a series, one per shard that has recorded into it.
#[derive(Debug, Default)]
pub(crate) struct SeriesCells {
    /// Set (under the write lock) when the series is evicted; no cell is created afterwards.
    pub(crate) evicted: bool,
    /// Indexed by shard id.
    pub(crate) by_shard: Vec<Option<CellRef>>,
}

/// Totals the collector last reported, to compute the next delta.
#[derive(Debug, Clone)]
pub(crate) enum Totals {
    Scalar(u64),
    Histogram(HistogramTotals),
}

/// State only the collector touches.
#[derive(Debug)]
pub(crate) struct CollectState {
    pub(crate) prev: Totals,
    /// All-time extremes as order keys (merged from every window).
    pub(crate) min_key: u64,
    pub(crate) max_key: u64,
    /// Consecutive delta collections without a sample.
    pub(crate) idle: u32,
    /// Gauge bits at the previous collection (gauge idleness is "value unchanged").
    pub(crate) last_gauge: u64,
}

#[derive(Debug)]
pub(crate) struct Series {
    /// Unique for the registry's lifetime, never reused.
    pub(crate) id: u64,
    /// Dense index for the handle cache; reused after eviction (the cache checks `id`).
    pub(crate) slot: usize,
    pub(crate) key: Key,
    pub(crate) kind: MetricKind,
    pub(crate) unit: Unit,
    pub(crate) overflow: bool,
    /// Lock: taken for writing by a thread recording into this series for the first time
    /// from its shard (once per thread and series) and by eviction; for reading by the
    /// collector and by that first-time path. Never on the steady-state recording path.
    pub(crate) cells: RwLock<SeriesCells>,
    /// Fallback cell written with read-modify-write operations, for callers that cannot use
    /// their thread-local shard (thread-local storage being torn down, or re-entrancy).
    /// Allocated on first use (rare), so it costs a pointer until then.
    shared: std::sync::OnceLock<CellRef>,
    scale: u8,
    /// Gauge value (`f64` bits); unused for other kinds.
    pub(crate) gauge: AtomicU64,
    /// Whether `add`/`sub` was ever used on this gauge: such gauges hold a level that
    /// eviction would lose, so they are only evicted at zero.
    pub(crate) gauge_relative: AtomicBool,
    /// Live handles; a series with handles is never evicted.
    pub(crate) handles: AtomicUsize,
    /// Lock: taken only by the collector (delta and cumulative reads), never by writers.
    pub(crate) state: Mutex<CollectState>,
}

impl Series {
    pub(crate) fn new(
        id: u64,
        slot: usize,
        key: Key,
        kind: MetricKind,
        unit: Unit,
        scale: u8,
        overflow: bool,
    ) -> Series {
        let prev = match kind {
            MetricKind::Histogram | MetricKind::FloatHistogram => {
                Totals::Histogram(HistogramTotals::default())
            }
            _ => Totals::Scalar(0),
        };
        Series {
            id,
            slot,
            key,
            kind,
            unit,
            overflow,
            cells: RwLock::new(SeriesCells::default()),
            shared: std::sync::OnceLock::new(),
            scale,
            gauge: AtomicU64::new(0f64.to_bits()),
            gauge_relative: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            state: Mutex::new(CollectState {
                prev,
                min_key: u64::MAX,
                max_key: 0,
                idle: 0,
                last_gauge: 0f64.to_bits(),
            }),
        }
    }

    /// This shard's cell, created on first use. `None` if the series was evicted meanwhile
    /// (the caller then resolves the key again).
    pub(crate) fn cell(&self, shard: usize, scale: u8) -> Option<CellRef> {
        {
            let cells = sync::read(&self.cells);
            if cells.evicted {
                return None;
            }
            if let Some(Some(c)) = cells.by_shard.get(shard) {
                return Some(c.clone());
            }
        }
        let mut cells = sync::write(&self.cells);
        if cells.evicted {
            return None;
        }
        if cells.by_shard.len() <= shard {
            cells.by_shard.resize(shard + 1, None);
        }
        let c = cells.by_shard[shard]
            .get_or_insert_with(|| Cell::new_ref(self.id, self.kind, scale, self.short_name()));
        Some(c.clone())
    }

    /// The name its cells carry: the value of its only label, if it has exactly one.
    fn short_name(&self) -> ShortName {
        match self.key.labels() {
            [(_, value)] => ShortName::new(value),
            _ => ShortName::NONE,
        }
    }

    /// The shared fallback cell, created on first use.
    pub(crate) fn shared(&self) -> &CellRef {
        self.shared
            .get_or_init(|| Cell::new_ref(self.id, self.kind, self.scale, self.short_name()))
    }

    /// The shared fallback cell if it was ever used.
    pub(crate) fn shared_if_used(&self) -> Option<&CellRef> {
        self.shared.get()
    }

    /// Sets the gauge.
    pub(crate) fn gauge_set(&self, v: f64) {
        // Relaxed: last-writer-wins value; nothing else is published through it.
        self.gauge.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds to the gauge.
    pub(crate) fn gauge_add(&self, d: f64) {
        // Relaxed: a flag read by the collector only to decide eviction.
        if !self.gauge_relative.load(Ordering::Relaxed) {
            // Relaxed: as above.
            self.gauge_relative.store(true, Ordering::Relaxed);
        }
        // Relaxed: the CAS loop only prevents lost updates between concurrent adds.
        let _ = self
            .gauge
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + d).to_bits())
            });
    }

    pub(crate) fn gauge_value(&self) -> f64 {
        // Relaxed: value read only.
        f64::from_bits(self.gauge.load(Ordering::Relaxed))
    }
}
