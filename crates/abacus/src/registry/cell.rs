//! Per-shard storage of one series: the only memory a recording thread writes.

use crossbeam_utils::CachePadded;

use crate::histogram::RawHistogram;
use crate::histogram::atomic::{AtomicHistogram, Domain};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};

/// What a series measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Monotonic integer sum.
    Counter,
    /// Monotonic floating-point sum (OTLP double sums, sampled StatsD counters).
    FloatCounter,
    /// A value that goes up and down (`set`, `add`, `sub`).
    Gauge,
    /// Distribution of non-negative integers (latencies in ms, sizes).
    Histogram,
    /// Distribution of floating-point values.
    FloatHistogram,
}

impl MetricKind {
    /// Lower-case name, as used in JSON and in the Prometheus `# TYPE` line family.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::FloatCounter => "float_counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::FloatHistogram => "float_histogram",
        }
    }
}

/// The atomics of one series in one shard.
///
/// The histogram is stored inline, not boxed: one dependent load less on every record.
/// The price is that counter cells are as large as histogram cells (about 400 bytes per
/// series and shard, see the memory formula in DESIGN.md).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
// `repr(u8)`: the tag comes first, on the same cache line as the histogram's hot fields
// (the default layout put it at the end, a separate line read on every collection).
#[repr(u8)]
pub(crate) enum CellData {
    /// Counter value (`u64`) or float counter (`f64` bits).
    Scalar(AtomicU64),
    Histogram(AtomicHistogram),
    /// Gauges live on the series itself: a `set` from any thread must replace the value.
    None,
}

/// One series' storage in one shard.
///
/// Written by exactly one thread at a time (the shard owner) with plain loads and stores,
/// except the series' `shared` cell, which is written with read-modify-write operations.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Cell {
    /// Set once by the collector when the series is evicted. A writer that sees it drops
    /// its cached reference and re-resolves the key; a write that races the flag is still
    /// collected, because the collector keeps reading retired cells until it holds the only
    /// reference to them. First, so that it shares a cache line with the tag of `data` and
    /// the histogram's hot fields (`repr(C)`).
    retired: AtomicBool,
    pub(crate) data: CellData,
    pub(crate) series_id: u64,
}

/// Cells are cache-line padded so two threads' cells never share a line.
pub(crate) type CellRef = Arc<CachePadded<Cell>>;

impl Cell {
    pub(crate) fn new(series_id: u64, kind: MetricKind, scale: u8) -> Cell {
        let data = match kind {
            MetricKind::Counter | MetricKind::FloatCounter => CellData::Scalar(AtomicU64::new(0)),
            MetricKind::Histogram => CellData::Histogram(AtomicHistogram::new(Domain::U64, scale)),
            MetricKind::FloatHistogram => {
                CellData::Histogram(AtomicHistogram::new(Domain::F64, scale))
            }
            MetricKind::Gauge => CellData::None,
        };
        Cell {
            series_id,
            retired: AtomicBool::new(false),
            data,
        }
    }

    pub(crate) fn new_ref(series_id: u64, kind: MetricKind, scale: u8) -> CellRef {
        Arc::new(CachePadded::new(Cell::new(series_id, kind, scale)))
    }

    #[inline]
    pub(crate) fn is_retired(&self) -> bool {
        // Relaxed: a hint to stop using the cell. Correctness does not depend on seeing it
        // promptly: writes after retirement are still collected (see `retired`).
        self.retired.load(Ordering::Relaxed)
    }

    pub(crate) fn retire(&self) {
        // Relaxed: see `is_retired`.
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Adds `n` to a counter cell.
    #[inline]
    pub(crate) fn add_u64<const SHARED: bool>(&self, n: u64) {
        if let CellData::Scalar(v) = &self.data {
            if SHARED {
                // Relaxed: a pure sum, nothing is published through it.
                v.fetch_add(n, Ordering::Relaxed);
            } else {
                // Relaxed: single writer per shard (hand-over ordered by the shard pool
                // mutex); the collector only reads the value.
                v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
            }
        }
    }

    /// Adds `x` to a float-counter cell.
    #[inline]
    pub(crate) fn add_f64<const SHARED: bool>(&self, x: f64) {
        if let CellData::Scalar(v) = &self.data {
            if SHARED {
                // Relaxed: the CAS loop only prevents lost updates; no data is published.
                let _ = v.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((f64::from_bits(b) + x).to_bits())
                });
            } else {
                // Relaxed: single writer, as in `add_u64`.
                let b = v.load(Ordering::Relaxed);
                v.store((f64::from_bits(b) + x).to_bits(), Ordering::Relaxed);
            }
        }
    }

    #[inline(always)]
    pub(crate) fn observe_u64<const SHARED: bool>(&self, v: u64, n: u64) {
        if let CellData::Histogram(h) = &self.data {
            h.record_u64::<SHARED>(v, n);
        }
    }

    #[inline]
    pub(crate) fn observe_f64<const SHARED: bool>(&self, v: f64, n: u64) {
        if let CellData::Histogram(h) = &self.data {
            h.record_f64::<SHARED>(v, n);
        }
    }

    /// Raw scalar bits (counter value or float-counter bits).
    pub(crate) fn scalar(&self) -> u64 {
        match &self.data {
            // Relaxed: monotone value, read for itself only.
            CellData::Scalar(v) => v.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    pub(crate) fn read_histogram(&self, acc: &mut RawHistogram, reset_extremes: bool) {
        if let CellData::Histogram(h) = &self.data {
            h.read_into(acc, reset_extremes);
        }
    }

    pub(crate) fn histogram(&self) -> Option<&AtomicHistogram> {
        match &self.data {
            CellData::Histogram(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Cell, MetricKind};

    /// The layout the record path is tuned for (see `AtomicHistogram`'s `repr(C)`): cells
    /// are 128-byte aligned, and everything a record of a value up to 2,048 reads lies in
    /// the cell's first 128 bytes, one pair of cache lines.
    #[test]
    fn a_typical_record_reads_the_cells_first_128_bytes() {
        let cell = Cell::new_ref(1, MetricKind::Histogram, 4);
        let start = &**cell as *const Cell as usize;
        assert_eq!(start % 128, 0, "cells are 128-byte aligned");
        let h = cell.histogram().unwrap();
        for (field, end) in h.record_path_ends() {
            assert!(
                end - start <= 128,
                "{field} ends at byte {} of the cell",
                end - start
            );
        }
    }
}
