//! Reading the registry: cumulative snapshots, delta snapshots and idle-series eviction.
//!
//! # Eviction without losing samples
//!
//! A series idle for `evict_after_idle` flushes is removed from the index, its cells are
//! marked retired and moved, with the series, to the collector's *retiring* list. Threads
//! still holding a cached `Arc` of a retired cell may write to it once more before they
//! notice the flag; every delta collection reads the retiring cells again and reports what
//! arrived since. A retiring entry is freed only once `Arc::try_unwrap` succeeds on every
//! cell and on the series, which proves no other thread can still write there (the
//! unwrap's Acquire pairs with the Release of the other holders' drops). The last read
//! happens after that proof, so nothing written is ever missed.

use std::sync::Arc;
use std::time::SystemTime;

use super::series::{Series, Totals};
use super::{CellRef, Registry};
use crate::histogram::RawHistogram;
use crate::histogram::atomic::Domain;
use crate::registry::MetricKind;
use crate::snapshot::{SeriesSnapshot, Snapshot, Value, ValueRef};
use crate::sync::{self, Ordering};

/// An evicted series whose cells may still be referenced by recording threads.
#[derive(Debug)]
pub(crate) struct Retiring {
    pub(crate) series: Arc<Series>,
    pub(crate) cells: Vec<CellRef>,
}

/// State of the delta collector (behind the registry's `collector` lock).
#[derive(Debug, Default)]
pub(crate) struct Collector {
    pub(crate) zombies: Vec<Retiring>,
    /// End of the previous delta window.
    last: Option<SystemTime>,
}

fn domain(kind: MetricKind) -> Domain {
    if kind == MetricKind::FloatHistogram {
        Domain::F64
    } else {
        Domain::U64
    }
}

fn is_histogram(kind: MetricKind) -> bool {
    matches!(kind, MetricKind::Histogram | MetricKind::FloatHistogram)
}

/// Accumulators reused for every series of one collection (one per histogram domain).
#[derive(Debug)]
pub(crate) struct Scratch {
    scale: u8,
    integer: Option<RawHistogram>,
    float: Option<RawHistogram>,
}

impl Scratch {
    pub(crate) fn new(scale: u8) -> Self {
        Scratch {
            scale,
            integer: None,
            float: None,
        }
    }

    fn raw(&mut self, kind: MetricKind) -> &mut RawHistogram {
        let d = domain(kind);
        let scale = self.scale;
        let slot = if d == Domain::F64 {
            &mut self.float
        } else {
            &mut self.integer
        };
        slot.get_or_insert_with(|| RawHistogram::new(d, scale))
    }
}

/// Cumulative totals of `cells` plus the shared cell. For histograms, the window extremes
/// are left in `scratch` for [`to_value`].
fn read_totals(
    series: &Series,
    cells: &[Option<CellRef>],
    scratch: &mut Scratch,
    reset_extremes: bool,
) -> Totals {
    match series.kind {
        MetricKind::Counter => {
            let mut n = series.shared_if_used().map_or(0, |c| c.scalar());
            for c in cells.iter().flatten() {
                n = n.wrapping_add(c.scalar());
            }
            Totals::Scalar(n)
        }
        MetricKind::FloatCounter => {
            let mut x = series
                .shared_if_used()
                .map_or(0.0, |c| f64::from_bits(c.scalar()));
            for c in cells.iter().flatten() {
                x += f64::from_bits(c.scalar());
            }
            Totals::Scalar(x.to_bits())
        }
        // Relaxed: value read only.
        MetricKind::Gauge => Totals::Scalar(series.gauge.load(Ordering::Relaxed)),
        MetricKind::Histogram | MetricKind::FloatHistogram => {
            Totals::Histogram(read_histogram(series, cells, scratch, reset_extremes).totals())
        }
    }
}

/// Sums the histogram cells of `series` into the scratch accumulator of its kind.
fn read_histogram<'s>(
    series: &Series,
    cells: &[Option<CellRef>],
    scratch: &'s mut Scratch,
    reset_extremes: bool,
) -> &'s mut RawHistogram {
    let raw = scratch.raw(series.kind);
    raw.reset();
    if let Some(c) = series.shared_if_used() {
        c.read_histogram(raw, reset_extremes);
    }
    for c in cells.iter().flatten() {
        c.read_histogram(raw, reset_extremes);
    }
    raw
}

/// Turns totals (cumulative or delta) into a public value; histogram extremes come from
/// `scratch` (the last [`read_totals`] of this kind).
fn to_value(series: &Series, totals: Totals, scratch: &mut Scratch) -> Value {
    match (series.kind, totals) {
        (MetricKind::Counter, Totals::Scalar(n)) => Value::Counter(n),
        (MetricKind::FloatCounter, Totals::Scalar(b)) => Value::FloatCounter(f64::from_bits(b)),
        (MetricKind::Gauge, Totals::Scalar(b)) => Value::Gauge(f64::from_bits(b)),
        (kind, Totals::Histogram(t)) => Value::Histogram(scratch.raw(kind).snapshot(t)),
        _ => Value::Counter(0),
    }
}

fn minus(kind: MetricKind, now: &Totals, before: &Totals) -> Totals {
    match (now, before) {
        (Totals::Scalar(a), Totals::Scalar(b)) => match kind {
            MetricKind::Counter => Totals::Scalar(a.wrapping_sub(*b)),
            MetricKind::FloatCounter => {
                Totals::Scalar((f64::from_bits(*a) - f64::from_bits(*b)).to_bits())
            }
            _ => Totals::Scalar(*a),
        },
        (Totals::Histogram(a), Totals::Histogram(b)) => Totals::Histogram(a.minus(b)),
        _ => now.clone(),
    }
}

/// The order of every snapshot and of [`sorted_series`]: key hash, then key. Hashes are
/// compared first, without touching the keys' strings.
fn series_order<K: Ord>(a: (u64, K), b: (u64, K)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1))
}

/// Snapshots made by one collecting thread, each to be taken once by [`sort_series`].
type Part = Vec<Option<SeriesSnapshot>>;

/// Orders the snapshots of all `parts` by key hash, then key: deterministic and cheap (a
/// `u64` compare instead of string compares); equal keys end up adjacent. Small
/// `(hash, part, position)` entries are sorted and each snapshot (about 150 bytes) is moved
/// once, instead of sorting (and first concatenating) the snapshots themselves.
fn sort_series(mut parts: Vec<Part>) -> Vec<SeriesSnapshot> {
    let mut order: Vec<(u64, u32, u32)> = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for (p, part) in parts.iter().enumerate() {
        for (i, s) in part.iter().enumerate() {
            if let Some(s) = s {
                order.push((s.key.hash64(), p as u32, i as u32));
            }
        }
    }
    let key = |&(_, p, i): &(u64, u32, u32)| parts[p as usize][i as usize].as_ref().map(|s| &s.key);
    order.sort_unstable_by(|a, b| series_order((a.0, key(a)), (b.0, key(b))));
    order
        .into_iter()
        .filter_map(|(_, p, i)| parts[p as usize][i as usize].take())
        .collect()
}

fn snapshot_of(series: &Series, value: Value) -> SeriesSnapshot {
    SeriesSnapshot {
        key: series.key.clone(),
        kind: series.kind,
        unit: series.unit,
        value,
    }
}

/// Series per collecting thread: below twice this, a collection runs on the calling thread
/// alone. A thread costs tens of microseconds to start; 256 series take about a quarter of a
/// millisecond.
const SERIES_PER_THREAD: usize = 256;

/// Runs `work` over contiguous shares of `all` on up to `threads` threads (the calling
/// thread takes the first share) and returns the results in share order. Shares are
/// contiguous in creation order, so each thread reads its own forward streams of memory.
/// A thread that cannot be started leaves its share to the calling thread.
fn in_shares<T: Send>(
    all: &[Arc<Series>],
    threads: usize,
    work: impl Fn(&[Arc<Series>]) -> T + Sync,
) -> Vec<T> {
    // Loom models stay on one thread (their registries are far below the threshold).
    let n = if cfg!(loom) {
        1
    } else {
        threads.min(all.len() / SERIES_PER_THREAD).max(1)
    };
    if n == 1 {
        return vec![work(all)];
    }
    let mut shares = all.chunks(all.len().div_ceil(n));
    let first = shares.next().unwrap_or(&[]);
    let work = &work;
    std::thread::scope(|scope| {
        let spawned: Vec<_> = shares
            .map(|share| {
                std::thread::Builder::new()
                    .name("abacus-collect".into())
                    .spawn_scoped(scope, move || work(share))
                    .map_err(|_| share)
            })
            .collect();
        let mut out = vec![work(first)];
        for s in spawned {
            out.push(match s {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(share) => work(share),
            });
        }
        out
    })
}

/// The cumulative snapshot of one series.
fn cumulative_one(series: &Series, scratch: &mut Scratch) -> SeriesSnapshot {
    let totals = match read_current(series, scratch) {
        Some(totals) => totals,
        None => Totals::Histogram(scratch.raw(series.kind).totals()),
    };
    snapshot_of(series, to_value(series, totals, scratch))
}

/// Reads the cumulative state of one series: a scalar kind's totals, or `None` for a
/// histogram, which is left in its `scratch` accumulator with the all-time extremes
/// merged in (shared by [`cumulative`] and [`read_cumulative`]).
fn read_current(series: &Series, scratch: &mut Scratch) -> Option<Totals> {
    // Read lock held while reading: writers only take this lock to add a shard's cell.
    let cells = sync::read(&series.cells);
    if !is_histogram(series.kind) {
        return Some(read_totals(series, &cells.by_shard, scratch, false));
    }
    let raw = read_histogram(series, &cells.by_shard, scratch, false);
    drop(cells);
    let st = sync::lock(&series.state);
    raw.min_key = raw.min_key.min(st.min_key);
    raw.max_key = raw.max_key.max(st.max_key);
    None
}

pub(crate) fn cumulative(registry: &Registry) -> Snapshot {
    let inner = &*registry.inner;
    let all = inner.all_series();
    let parts = in_shares(&all, inner.config.collect_threads, |share| {
        let mut scratch = Scratch::new(inner.config.scale);
        share
            .iter()
            .map(|series| Some(cumulative_one(series, &mut scratch)))
            .collect::<Part>()
    });
    let out = sort_series(parts);
    Snapshot {
        start: inner.created,
        end: SystemTime::now(),
        series: out,
    }
}

/// Every live series in the order of [`cumulative`]'s snapshot (key hash, then key), for
/// readers that walk the registry with [`read_cumulative`] instead of taking a snapshot.
pub(crate) fn sorted_series(registry: &Registry) -> Vec<Arc<Series>> {
    let mut all: Vec<(u64, Arc<Series>)> = registry
        .inner
        .index_entries()
        .map(|s| (s.key.hash64(), s))
        .collect();
    // Keys are unique in the index, so the order is the snapshot's.
    all.sort_unstable_by(|a, b| series_order((a.0, &a.1.key), (b.0, &b.1.key)));
    all.into_iter().map(|(_, s)| s).collect()
}

/// The cumulative value of one series, as [`cumulative`] reads it, with a histogram left
/// in `scratch` and borrowed from there (no snapshot, no allocation).
pub(crate) fn read_cumulative<'s>(series: &Series, scratch: &'s mut Scratch) -> ValueRef<'s> {
    let Some(totals) = read_current(series, scratch) else {
        return ValueRef::Histogram(scratch.raw(series.kind).view());
    };
    match to_value(series, totals, scratch) {
        Value::Counter(n) => ValueRef::Counter(n),
        Value::FloatCounter(x) => ValueRef::FloatCounter(x),
        Value::Gauge(v) => ValueRef::Gauge(v),
        // Scalar kinds only here.
        Value::Histogram(_) => ValueRef::Counter(0),
    }
}

/// Delta of one series since the collector's previous read; updates the collector state.
/// Returns the value and whether anything happened in the window.
fn series_delta(
    series: &Series,
    cells: &[Option<CellRef>],
    scratch: &mut Scratch,
) -> (Value, bool) {
    let mut st = sync::lock(&series.state);
    let delta = match &mut st.prev {
        // Histograms: the delta is taken against `prev` as it is refilled in place.
        Totals::Histogram(prev) if is_histogram(series.kind) => {
            Totals::Histogram(read_histogram(series, cells, scratch, true).delta_into(prev))
        }
        _ => {
            let totals = read_totals(series, cells, scratch, true);
            let delta = minus(series.kind, &totals, &st.prev);
            st.prev = totals;
            delta
        }
    };
    let active = match (&delta, series.kind) {
        (Totals::Scalar(b), MetricKind::Gauge) => {
            let changed = *b != st.last_gauge;
            st.last_gauge = *b;
            changed
        }
        (Totals::Scalar(b), MetricKind::FloatCounter) => f64::from_bits(*b) != 0.0,
        (Totals::Scalar(n), _) => *n != 0,
        (Totals::Histogram(h), _) => h.count() != 0 || h.sum_u64 != 0 || h.sum_f64 != 0.0,
    };
    if matches!(delta, Totals::Histogram(_)) {
        let raw = scratch.raw(series.kind);
        st.min_key = st.min_key.min(raw.min_key);
        st.max_key = st.max_key.max(raw.max_key);
    }
    (to_value(series, delta, scratch), active)
}

/// The delta of one series (pushed to `out` unless empty), and its eviction once idle for
/// long enough (pushed to `retiring`).
fn delta_one(
    inner: &super::Inner,
    series: &Arc<Series>,
    scratch: &mut Scratch,
    out: &mut Part,
    retiring: &mut Vec<Retiring>,
) {
    let cells = sync::read(&series.cells);
    let (value, active) = series_delta(series, &cells.by_shard, scratch);
    drop(cells);
    let idle_limit = inner.config.evict_after_idle;
    let evict = {
        let mut st = sync::lock(&series.state);
        st.idle = if active { 0 } else { st.idle.saturating_add(1) };
        // A gauge moved with add/sub holds a level: evicting it would lose the level, so
        // it only goes when it is back at zero.
        // Relaxed: flag read once per flush.
        let holds_level = series.kind == MetricKind::Gauge
            && series.gauge_relative.load(Ordering::Relaxed)
            && series.gauge_value() != 0.0;
        idle_limit > 0 && st.idle >= idle_limit && !holds_level
    };
    if series.kind == MetricKind::Gauge || !value.is_zero() {
        out.push(Some(snapshot_of(series, value)));
    }
    if evict && inner.try_evict(series) {
        let mut cells = sync::write(&series.cells);
        cells.evicted = true;
        let taken: Vec<CellRef> = cells.by_shard.drain(..).flatten().collect();
        drop(cells);
        for c in &taken {
            c.retire();
        }
        if let Some(c) = series.shared_if_used() {
            c.retire();
        }
        retiring.push(Retiring {
            series: series.clone(),
            cells: taken,
        });
    }
}

pub(crate) fn delta(registry: &Registry) -> Snapshot {
    let inner = &*registry.inner;
    let mut collector = sync::lock(&inner.collector);
    let now = SystemTime::now();
    let start = collector.last.unwrap_or(inner.created);
    collector.last = Some(now);

    let all = inner.all_series();
    let parts = in_shares(&all, inner.config.collect_threads, |share| {
        let mut scratch = Scratch::new(inner.config.scale);
        let (mut out, mut retiring) = (Vec::new(), Vec::new());
        for series in share {
            delta_one(inner, series, &mut scratch, &mut out, &mut retiring);
        }
        (out, retiring)
    });
    let mut outs = Vec::with_capacity(parts.len() + 1);
    let mut evicted_any = false;
    for (part, retiring) in parts {
        outs.push(part);
        evicted_any |= !retiring.is_empty();
        collector.zombies.extend(retiring);
    }
    if evicted_any {
        inner.bump_evict_epoch();
    }
    let mut scratch = Scratch::new(inner.config.scale);
    let mut residues = Vec::new();
    collect_retiring(&mut collector, &mut scratch, &mut residues);
    outs.push(residues);
    let out = sort_series(outs);
    // Residues of retiring series can share a key with a live series created since: merge.
    let mut merged: Vec<SeriesSnapshot> = Vec::with_capacity(out.len());
    for s in out {
        match merged.last_mut() {
            Some(last) if last.key == s.key && last.kind == s.kind => last.value.absorb(&s.value),
            _ => merged.push(s),
        }
    }
    Snapshot {
        start,
        end: now,
        series: merged,
    }
}

/// Reads every retiring series once more and frees those nobody else references.
pub(crate) fn collect_retiring(collector: &mut Collector, scratch: &mut Scratch, out: &mut Part) {
    let zombies = std::mem::take(&mut collector.zombies);
    let mut keep = Vec::new();
    for z in zombies {
        let Retiring { mut series, cells } = z;
        // First try to prove exclusivity, then read: a successful unwrap orders every other
        // holder's writes before our read.
        let mut exclusive = true;
        let mut still_shared = Vec::new();
        let mut owned = Vec::new();
        for c in cells {
            match crate::sync::Arc::try_unwrap(c) {
                Ok(cell) => owned.push(crate::sync::Arc::new(cell)),
                Err(c) => {
                    exclusive = false;
                    still_shared.push(c);
                }
            }
        }
        // `get_mut` succeeds only when no other `Arc` exists (with an Acquire that pairs with
        // their drops): then no one can still write the series' shared cell either.
        let series_exclusive = exclusive && Arc::get_mut(&mut series).is_some();
        let all: Vec<Option<CellRef>> = owned
            .iter()
            .chain(still_shared.iter())
            .cloned()
            .map(Some)
            .collect();
        let (value, active) = series_delta(&series, &all, scratch);
        drop(all);
        if active {
            out.push(Some(snapshot_of(&series, value)));
        }
        if !series_exclusive {
            let mut cells = owned;
            cells.extend(still_shared);
            keep.push(Retiring { series, cells });
        }
    }
    collector.zombies = keep;
}
