//! Per-shard storage of one series: the only memory a recording thread writes.

use crossbeam_utils::CachePadded;

use crate::histogram::RawHistogram;
use crate::histogram::atomic::{AtomicHistogram, Domain};
use crate::registry::local::short_eq;
use crate::sync::{Arc, AtomicBool, Ordering};

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

/// What a cell holds, after its name on the cell's first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CellKind {
    /// Counter value (`u64`) or float counter (`f64` bits), kept in the histogram's `sum`.
    Scalar,
    Histogram,
    /// Gauges live on the series itself: a `set` from any thread must replace the value.
    None,
}

/// One series' storage in one shard.
///
/// Written by exactly one thread at a time (the shard owner) with plain loads and stores,
/// except the series' `shared` cell, which is written with read-modify-write operations.
///
/// The histogram is stored inline, not boxed: one dependent load less on every record.
/// Every kind has one (a counter keeps its value in the histogram's `sum`), so the kind is
/// one byte instead of an enum tag padded to eight, which leaves room for the name on the
/// first line. The price is that counter cells are as large as histogram cells (see the
/// memory formula in DESIGN.md).
///
/// Layout (`repr(C)`, and the histogram's own): the flag, the kind and the name take the
/// first 24 bytes, then come the histogram's hot fields, so that a `record_latency` hit's
/// name comparison and the record of a value up to 128 read one 128-byte-aligned pair of
/// cache lines (a test pins it).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Cell {
    /// Set once by the collector when the series is evicted. A writer that sees it drops
    /// its cached reference and re-resolves the key; a write that races the flag is still
    /// collected, because the collector keeps reading retired cells until it holds the only
    /// reference to them.
    retired: AtomicBool,
    kind: CellKind,
    /// The series' label value when it has exactly one label (`service` for
    /// `record_latency`): what the thread's `record_latency` front table compares a name
    /// with, on the line the record writes anyway.
    name: ShortName,
    hist: AtomicHistogram,
    pub(crate) series_id: u64,
}

/// Longest label value a cell keeps in its [`ShortName`].
pub(crate) const SHORT_NAME: usize = 21;

/// A series' single label value, up to [`SHORT_NAME`] bytes, inline: its length, then its
/// bytes. A length byte of `u8::MAX` stands for none (several labels, or a longer value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShortName([u8; SHORT_NAME + 1]);

impl ShortName {
    /// No name: matches nothing.
    pub(crate) const NONE: ShortName = ShortName([u8::MAX; SHORT_NAME + 1]);

    /// `value`'s name, or [`ShortName::NONE`] when it is longer than [`SHORT_NAME`] bytes.
    pub(crate) fn new(value: &str) -> ShortName {
        let b = value.as_bytes();
        if b.len() > SHORT_NAME {
            return ShortName::NONE;
        }
        let mut n = [0; SHORT_NAME + 1];
        n[0] = b.len() as u8;
        n[1..=b.len()].copy_from_slice(b);
        ShortName(n)
    }

    /// Whether this is `name`.
    #[inline(always)]
    pub(crate) fn is(&self, name: &str) -> bool {
        let b = name.as_bytes();
        let n = usize::from(self.0[0]);
        n == b.len() && short_eq(&self.0[1..=n.min(SHORT_NAME)], b)
    }
}

/// Cells are cache-line padded so two threads' cells never share a line.
pub(crate) type CellRef = Arc<CachePadded<Cell>>;

impl Cell {
    pub(crate) fn new(series_id: u64, kind: MetricKind, scale: u8, name: ShortName) -> Cell {
        let (kind, domain) = match kind {
            MetricKind::Counter | MetricKind::FloatCounter => (CellKind::Scalar, Domain::U64),
            MetricKind::Histogram => (CellKind::Histogram, Domain::U64),
            MetricKind::FloatHistogram => (CellKind::Histogram, Domain::F64),
            MetricKind::Gauge => (CellKind::None, Domain::U64),
        };
        Cell {
            retired: AtomicBool::new(false),
            kind,
            name,
            // A `U64` histogram allocates nothing until it records.
            hist: AtomicHistogram::new(domain, scale),
            series_id,
        }
    }

    pub(crate) fn new_ref(series_id: u64, kind: MetricKind, scale: u8, name: ShortName) -> CellRef {
        Arc::new(CachePadded::new(Cell::new(series_id, kind, scale, name)))
    }

    /// Whether this cell's series has the single label value `name` (see [`ShortName`]).
    #[inline(always)]
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.name.is(name)
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
        if self.kind == CellKind::Scalar {
            let v = self.hist.scalar();
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
        if self.kind == CellKind::Scalar {
            let v = self.hist.scalar();
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
        if self.kind == CellKind::Histogram {
            self.hist.record_u64::<SHARED>(v, n);
        }
    }

    #[inline]
    pub(crate) fn observe_f64<const SHARED: bool>(&self, v: f64, n: u64) {
        if self.kind == CellKind::Histogram {
            self.hist.record_f64::<SHARED>(v, n);
        }
    }

    /// Raw scalar bits (counter value or float-counter bits).
    pub(crate) fn scalar(&self) -> u64 {
        match self.kind {
            // Relaxed: monotone value, read for itself only.
            CellKind::Scalar => self.hist.scalar().load(Ordering::Relaxed),
            _ => 0,
        }
    }

    pub(crate) fn read_histogram(&self, acc: &mut RawHistogram, reset_extremes: bool) {
        if self.kind == CellKind::Histogram {
            self.hist.read_into(acc, reset_extremes);
        }
    }

    pub(crate) fn histogram(&self) -> Option<&AtomicHistogram> {
        (self.kind == CellKind::Histogram).then_some(&self.hist)
    }
}

#[cfg(test)]
mod tests {
    use super::{Cell, MetricKind, SHORT_NAME, ShortName};

    /// The layout the record path is tuned for (see `AtomicHistogram`'s `repr(C)`): cells
    /// are 128-byte aligned, and the name a `record_latency` hit compares and everything a
    /// record of a value up to 128 reads lie in the cell's first 128 bytes, one pair of
    /// cache lines.
    #[test]
    fn a_typical_record_reads_the_cells_first_128_bytes() {
        let cell = Cell::new_ref(1, MetricKind::Histogram, 4, ShortName::new("checkout"));
        let start = &**cell as *const Cell as usize;
        assert_eq!(start % 128, 0, "cells are 128-byte aligned");
        let name_end = &cell.name as *const ShortName as usize + size_of::<ShortName>();
        let h = cell.histogram().unwrap();
        for (field, end) in h.record_path_ends().into_iter().chain([("name", name_end)]) {
            assert!(
                end - start <= 128,
                "{field} ends at byte {} of the cell",
                end - start
            );
        }
    }

    #[test]
    fn short_names_match_exactly() {
        let long = "x".repeat(SHORT_NAME + 1);
        let at_limit = "y".repeat(SHORT_NAME);
        for name in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "svc-00042",
            "checkoutservice",
            &at_limit,
        ] {
            let n = ShortName::new(name);
            assert!(n.is(name), "{name:?}");
            for other in [
                "",
                "a",
                "b",
                "abd",
                "svc-00043",
                "checkoutservicf",
                "ab\0",
                &long,
            ] {
                if other != name {
                    assert!(!n.is(other), "{name:?} matched {other:?}");
                }
            }
        }
        // Too long to keep: matches nothing, not even itself.
        assert_eq!(ShortName::new(&long), ShortName::NONE);
        for name in ["", "a", &long, &at_limit] {
            assert!(!ShortName::NONE.is(name), "{name:?}");
        }
    }
}
