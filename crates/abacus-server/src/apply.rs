//! Applying [`Sample`]s to the core [`Registry`].
//!
//! | sample | registry call | series kind |
//! |---|---|---|
//! | `Counter(x)` | `increment_counter` if the name's counters are integral, else `add_counter_f64` | `Counter` / `FloatCounter` |
//! | `Gauge(v)` | `set_gauge` | `Gauge` |
//! | `GaugeAdd(d)` | `add_gauge` | `Gauge` |
//! | `Observe { value, count }` | `record_f64_n` | `FloatHistogram` |
//! | `ExpHistogram` | `merge_histogram` (exact at scales ≥ the registry's) | `FloatHistogram` |
//! | `ExplicitHistogram` | `merge_histogram` of an approximation (below) | `FloatHistogram` |
//! | `SetMember(m)` | per-window set; at window close `set_gauge(#members)` | `Gauge` |
//!
//! # One kind per metric name
//!
//! The registry keeps one kind per series and drops records of another kind, so every
//! path above must choose the same kind for a given name:
//!
//! * **Observations** always go to a *float* histogram, whatever the value: integer
//!   histograms would refuse the first fractional latency (StatsD `12.5|ms`), and a float
//!   histogram answers quantiles with the same relative error. (The only cost is that the
//!   Prometheus classic buckets are not exact at integer boundaries.)
//! * **Counters** are integer counters unless the *first* increment seen for the name is
//!   fractional; the choice is remembered per name (in a map bounded by `max_series`, past
//!   which new names default to float counters). A fractional increment for an integer
//!   counter cannot be represented and is rejected ([`ApplyReject::FractionalCounter`]).
//!
//! # Explicit-bucket histograms
//!
//! OTLP explicit buckets only say how many observations fell in `(bounds[i-1], bounds[i]]`.
//! Each bucket's count is placed at one representative value: the midpoint of a finite
//! bucket, clamped into the point's `[min, max]` when known; the first bucket `(-inf, b0]`
//! at `min` when known, else `b0`; the overflow bucket `(b_last, +inf)` at `max` when known,
//! else `b_last`. Count, and sum/min/max when the producer sent them, stay exact; a quantile
//! read back can be off by up to half the width of the explicit bucket it falls in (plus
//! the registry's own 2.17 %). When the sum is missing it is estimated from the
//! representatives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use abacus::{HistogramSnapshot, Registry};
use smallvec::SmallVec;

use crate::ingest::{ExpBuckets, ExpHistogramDelta, ExplicitHistogramDelta, Sample, SampleValue};

/// Why a sample was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyReject {
    /// A fractional increment for a counter whose name is an integer counter.
    #[error("fractional increment for an integer counter")]
    FractionalCounter,
    /// The per-window set already holds the maximum number of members.
    #[error("set is full for this window")]
    SetFull,
    /// Too many distinct sets in this window (bounded by `max_series`).
    #[error("too many sets in this window")]
    TooManySets,
    /// A histogram could not be represented (scale out of range, empty buckets with a count).
    #[error("histogram cannot be represented")]
    BadHistogram,
    /// All sets together already hold the maximum number of members for this window.
    #[error("too many set members in this window")]
    TooManySetMembers,
}

impl ApplyReject {
    /// Stable label value for telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyReject::FractionalCounter => "fractional_counter",
            ApplyReject::SetFull => "set_full",
            ApplyReject::TooManySets => "too_many_sets",
            ApplyReject::BadHistogram => "bad_histogram",
            ApplyReject::TooManySetMembers => "too_many_set_members",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterRepr {
    Integer,
    Float,
}

type SetKey = (String, Vec<(String, String)>);

/// Applies samples to a registry. Cheap to share (`&self` everywhere).
#[derive(Debug)]
pub struct Applier {
    registry: Registry,
    /// Lock: read on every counter sample, written once per new counter name.
    counter_kinds: RwLock<HashMap<String, CounterRepr>>,
    max_names: usize,
    /// Lock: set members only (StatsD `|s`), and window close.
    sets: Mutex<HashMap<SetKey, HashSet<String>>>,
    max_sets: usize,
    max_set_members: usize,
    /// Members of all sets together per window (the sets' memory bound).
    max_set_members_total: usize,
    /// Members held by all sets; changed only under the `sets` lock.
    set_members_total: AtomicUsize,
}

impl Applier {
    /// An applier writing into `registry`; `max_names` bounds the counter-kind memo and the
    /// number of sets per window, `max_set_members` the members of one set.
    pub fn new(registry: Registry, max_names: usize, max_set_members: usize) -> Applier {
        Applier {
            registry,
            counter_kinds: RwLock::new(HashMap::new()),
            max_names,
            sets: Mutex::new(HashMap::new()),
            max_sets: max_names,
            max_set_members,
            max_set_members_total: usize::MAX,
            set_members_total: AtomicUsize::new(0),
        }
    }

    /// Bounds the members of all sets together per window (default: no bound beyond
    /// `max_names × max_set_members`).
    #[must_use]
    pub fn with_max_set_members_total(mut self, n: usize) -> Applier {
        self.max_set_members_total = n;
        self
    }

    /// The registry samples go to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Applies one sample.
    ///
    /// # Errors
    /// [`ApplyReject`] when the sample cannot be represented; nothing is recorded then.
    pub fn apply(&self, sample: &Sample) -> Result<(), ApplyReject> {
        // On the stack for up to 8 labels: one heap allocation less per sample.
        let labels: SmallVec<[(&str, &str); 8]> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.apply_parts(&sample.name, &labels, &sample.value)
    }

    /// [`Applier::apply`] of the sample `name{labels} value` given as borrowed parts
    /// (`labels` normalised like [`Sample::labels`]).
    ///
    /// # Errors
    /// [`ApplyReject`] when the sample cannot be represented; nothing is recorded then.
    pub fn apply_parts(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        value: &SampleValue,
    ) -> Result<(), ApplyReject> {
        self.apply_parts_with(name, labels, value, &mut ExplicitScratch::default())
    }

    /// [`Applier::apply_parts`] reusing `scratch` between explicit histograms (keep one per
    /// request or thread; the result does not depend on it).
    ///
    /// # Errors
    /// [`ApplyReject`] when the sample cannot be represented; nothing is recorded then.
    pub fn apply_parts_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        value: &SampleValue,
        scratch: &mut ExplicitScratch,
    ) -> Result<(), ApplyReject> {
        let r = &self.registry;
        match value {
            SampleValue::Counter(x) => self.counter(name, labels, *x)?,
            SampleValue::Gauge(v) => r.set_gauge(name, labels, *v),
            SampleValue::GaugeAdd(d) => r.add_gauge(name, labels, *d),
            SampleValue::Observe { value, count } => {
                r.record_f64_n(name, labels, *value, (*count).max(1));
            }
            SampleValue::ExpHistogram(h) => {
                let snap = exp_to_snapshot(h).ok_or(ApplyReject::BadHistogram)?;
                r.merge_histogram(name, labels, &snap);
            }
            SampleValue::ExplicitHistogram(h) => {
                let snap = explicit_into_snapshot(h, self.registry.config().scale, scratch)
                    .ok_or(ApplyReject::BadHistogram)?;
                r.merge_histogram(name, labels, snap);
            }
            SampleValue::SetMember(m) => self.set_member(name, labels, m)?,
        }
        Ok(())
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)], x: f64) -> Result<(), ApplyReject> {
        let integral = x.fract() == 0.0 && x >= 0.0 && x <= u64::MAX as f64;
        let known = self
            .counter_kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied();
        let repr = match known {
            Some(r) => r,
            None => {
                let mut kinds = self
                    .counter_kinds
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let fresh = if integral {
                    CounterRepr::Integer
                } else {
                    CounterRepr::Float
                };
                if kinds.len() < self.max_names {
                    *kinds.entry(name.to_owned()).or_insert(fresh)
                } else {
                    kinds.get(name).copied().unwrap_or(CounterRepr::Float)
                }
            }
        };
        match repr {
            CounterRepr::Integer if integral => {
                self.registry.increment_counter(name, labels, x as u64);
                Ok(())
            }
            CounterRepr::Integer => Err(ApplyReject::FractionalCounter),
            CounterRepr::Float => {
                self.registry.add_counter_f64(name, labels, x);
                Ok(())
            }
        }
    }

    fn set_member(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        member: &str,
    ) -> Result<(), ApplyReject> {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        let key: SetKey = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let len = sets.len();
        if let Some(set) = sets.get(&key) {
            if set.contains(member) {
                return Ok(());
            }
            if set.len() >= self.max_set_members {
                return Err(ApplyReject::SetFull);
            }
        } else if len >= self.max_sets {
            return Err(ApplyReject::TooManySets);
        }
        // Relaxed: only read and written under the `sets` lock, which orders it.
        let total = self.set_members_total.load(Ordering::Relaxed);
        if total >= self.max_set_members_total {
            return Err(ApplyReject::TooManySetMembers);
        }
        self.set_members_total.store(total + 1, Ordering::Relaxed);
        sets.entry(key).or_default().insert(member.to_owned());
        Ok(())
    }

    /// Closes the window of every StatsD set: sets the gauge `name{labels}` to the number of
    /// distinct members seen since the previous close and forgets the members. Call right
    /// before taking the registry's delta, so the gauge lands in the window it describes.
    /// Returns the number of sets closed.
    pub fn close_sets(&self) -> usize {
        let sets = {
            let mut guard = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            // Relaxed: reset under the `sets` lock, which orders it with every member insert.
            self.set_members_total.store(0, Ordering::Relaxed);
            std::mem::take(&mut *guard)
        };
        for ((name, labels), members) in &sets {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.registry.set_gauge(name, &labels, members.len() as f64);
        }
        sets.len()
    }
}

/// `ExpBuckets` → sparse `(index, count)` pairs without zero counts.
fn sparse(b: &ExpBuckets) -> Vec<(i32, u64)> {
    b.counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .filter_map(|(i, c)| {
            let i = i32::try_from(i).ok()?;
            Some((b.offset.checked_add(i)?, *c))
        })
        .collect()
}

/// Converts an OTLP exponential histogram delta. Scales above the core's maximum are
/// downscaled exactly; scales below 0 are re-indexed at scale 0.
pub(crate) fn exp_to_snapshot(h: &ExpHistogramDelta) -> Option<HistogramSnapshot> {
    if h.count == 0 {
        return Some(HistogramSnapshot::empty(0, false));
    }
    let max_scale = i32::from(abacus::histogram::index::MAX_SCALE);
    let mut snap = HistogramSnapshot {
        scale: i8::try_from(h.scale.clamp(0, max_scale)).ok()?,
        count: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        zero_count: h.zero_count,
        positive: sparse(&h.positive),
        negative: sparse(&h.negative),
        integers: false,
    };
    if h.scale < 0 {
        // Coarser than the core can describe: bucket i at scale s < 0 starts where bucket
        // i * 2^-s starts at scale 0; its count goes there (within the coarse bucket's
        // error, like the core's own merge of coarser histograms).
        let shift = u32::try_from(-h.scale).ok().filter(|s| *s <= 10)?;
        for list in [&mut snap.positive, &mut snap.negative] {
            for b in list.iter_mut() {
                b.0 = b.0.checked_mul(1 << shift)?;
            }
        }
    }
    if h.scale > max_scale {
        snap.scale = i8::try_from(h.scale).ok()?;
        snap.downscale(i8::try_from(h.scale - max_scale).ok()?);
    }
    let bucketed: u64 = snap.zero_count
        + snap.positive.iter().map(|b| b.1).sum::<u64>()
        + snap.negative.iter().map(|b| b.1).sum::<u64>();
    if bucketed == 0 {
        return None;
    }
    snap.count = bucketed;
    let s = snap.scale;
    let rep = abacus::histogram::index::bucket_representative;
    let lowest = snap
        .negative
        .last()
        .map(|b| -abacus::histogram::index::bucket_upper(s, b.0))
        .or_else(|| (snap.zero_count > 0).then_some(0.0))
        .or_else(|| {
            snap.positive
                .first()
                .map(|b| abacus::histogram::index::bucket_lower(s, b.0))
        })
        .unwrap_or(0.0);
    let highest = snap
        .positive
        .last()
        .map(|b| abacus::histogram::index::bucket_upper(s, b.0))
        .or_else(|| (snap.zero_count > 0).then_some(0.0))
        .or_else(|| {
            snap.negative
                .first()
                .map(|b| -abacus::histogram::index::bucket_lower(s, b.0))
        })
        .unwrap_or(0.0);
    snap.min = h.min.unwrap_or(lowest);
    snap.max = h.max.unwrap_or(highest);
    snap.sum = h.sum.unwrap_or_else(|| {
        snap.positive
            .iter()
            .map(|&(i, n)| rep(s, i) * n as f64)
            .sum::<f64>()
            - snap
                .negative
                .iter()
                .map(|&(i, n)| rep(s, i) * n as f64)
                .sum::<f64>()
    });
    Some(snap)
}

/// Index of the bucket `(b^i, b^(i+1)]` holding the magnitude `v > 0` at `scale`.
fn bucket_index(scale: i8, v: f64) -> i32 {
    let factor = f64::from(1u32 << scale.clamp(0, 30));
    let mut i = (v.log2() * factor).ceil() as i32 - 1;
    // Correct the floating-point estimate against the exact bounds.
    if v <= abacus::histogram::index::bucket_lower(scale, i) {
        i -= 1;
    } else if v > abacus::histogram::index::bucket_upper(scale, i) {
        i += 1;
    }
    i
}

/// Reusable state for explicit histograms: the snapshot's bucket lists, and the bucket
/// index of every finite bucket's midpoint for the last bounds seen (producers send the same
/// bounds on every point of a metric, so the `log2` per bucket is done once).
#[derive(Debug, Default)]
pub struct ExplicitScratch {
    snap: Option<HistogramSnapshot>,
    bounds: Vec<f64>,
    scale: i8,
    /// `mid_index[i - 1]`: `bucket_index(scale, |mid of (bounds[i-1], bounds[i]]|)`, for a
    /// non-zero midpoint.
    mid_index: Vec<i32>,
}

impl ExplicitScratch {
    /// Bucket indices of the midpoints of `bounds` at `scale`, from the memo when `bounds`
    /// equals the previous ones.
    fn mid_indices(&mut self, bounds: &[f64], scale: i8) -> &[i32] {
        if self.scale != scale || self.bounds.as_slice() != bounds {
            self.scale = scale;
            self.bounds.clear();
            self.bounds.extend_from_slice(bounds);
            self.mid_index.clear();
            self.mid_index.extend(bounds.windows(2).map(|w| {
                let mid = (w[0] + w[1]) / 2.0;
                if mid == 0.0 || !mid.is_finite() {
                    0
                } else {
                    bucket_index(scale, mid.abs())
                }
            }));
        }
        &self.mid_index
    }
}

/// Converts an explicit-bucket histogram delta (see the module docs for the error).
#[cfg(test)]
pub(crate) fn explicit_to_snapshot(
    h: &ExplicitHistogramDelta,
    scale: u8,
) -> Option<HistogramSnapshot> {
    explicit_into_snapshot(h, scale, &mut ExplicitScratch::default()).cloned()
}

/// Converts an explicit-bucket histogram delta into `scratch`'s snapshot.
pub(crate) fn explicit_into_snapshot<'s>(
    h: &ExplicitHistogramDelta,
    scale: u8,
    scratch: &'s mut ExplicitScratch,
) -> Option<&'s HistogramSnapshot> {
    let scale = i8::try_from(scale).ok()?;
    let mut snap = scratch
        .snap
        .take()
        .unwrap_or_else(|| HistogramSnapshot::empty(scale, false));
    let mut pos = std::mem::take(&mut snap.positive);
    let mut neg = std::mem::take(&mut snap.negative);
    pos.clear();
    neg.clear();
    snap = HistogramSnapshot {
        positive: Vec::new(),
        negative: Vec::new(),
        ..HistogramSnapshot::empty(scale, false)
    };
    let ok = fill_explicit(h, scale, scratch, &mut snap, &mut pos, &mut neg);
    snap.positive = pos;
    snap.negative = neg;
    let snap = scratch.snap.insert(snap);
    ok.then_some(&*snap)
}

/// The body of [`explicit_into_snapshot`]: `snap` is empty at `scale`, `pos` and `neg` are
/// empty; false when the histogram cannot be represented.
fn fill_explicit(
    h: &ExplicitHistogramDelta,
    scale: i8,
    scratch: &mut ExplicitScratch,
    snap: &mut HistogramSnapshot,
    pos: &mut Vec<(i32, u64)>,
    neg: &mut Vec<(i32, u64)>,
) -> bool {
    if h.count == 0 {
        return true;
    }
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    // One representative value `v` for `n` observations; `idx` is its bucket index when
    // already known.
    let mut add = |v: f64, n: u64, idx: Option<i32>| -> bool {
        if !v.is_finite() {
            return false;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v * n as f64;
        snap.count += n;
        if v == 0.0 {
            snap.zero_count += n;
        } else if v > 0.0 {
            pos.push((idx.unwrap_or_else(|| bucket_index(scale, v)), n));
        } else {
            neg.push((idx.unwrap_or_else(|| bucket_index(scale, -v)), n));
        }
        true
    };
    if h.counts.is_empty() {
        // Only count/sum: put everything at the mean (or min/max when that is all we know).
        let at = h
            .sum
            .map(|s| s / h.count as f64)
            .or(h.max)
            .or(h.min)
            .unwrap_or(0.0);
        if !add(at, h.count, None) {
            return false;
        }
    } else {
        if h.counts.len() != h.bounds.len() + 1 {
            return false;
        }
        let mids = scratch.mid_indices(&h.bounds, scale);
        let last = h.counts.len() - 1;
        for (i, &n) in h.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let (v, idx) = if h.bounds.is_empty() {
                (h.sum.map(|s| s / h.count as f64).unwrap_or(0.0), None)
            } else if i == 0 {
                (h.min.unwrap_or(h.bounds[0]).min(h.bounds[0]), None)
            } else if i == last {
                (
                    h.max.unwrap_or(h.bounds[last - 1]).max(h.bounds[last - 1]),
                    None,
                )
            } else {
                let mid = (h.bounds[i - 1] + h.bounds[i]) / 2.0;
                let lo = h.min.unwrap_or(f64::NEG_INFINITY);
                let hi = h.max.unwrap_or(f64::INFINITY);
                let v = if lo <= hi { mid.clamp(lo, hi) } else { mid };
                // The memo holds the index of `|mid|`; a clamped value is looked up afresh.
                let idx = (v == mid && v != 0.0).then(|| mids[i - 1]);
                (v, idx)
            };
            if !add(v, n, idx) {
                return false;
            }
        }
    }
    for list in [&mut *pos, &mut *neg] {
        list.sort_unstable_by_key(|b| b.0);
        list.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 += b.1;
                true
            } else {
                false
            }
        });
    }
    snap.min = h.min.unwrap_or(min);
    snap.max = h.max.unwrap_or(max);
    snap.sum = h.sum.unwrap_or(sum);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: SampleValue) -> Sample {
        Sample::from_refs(name, labels, value)
    }

    fn applier() -> Applier {
        Applier::new(Registry::new(), 100, 3)
    }

    #[test]
    fn integral_counters_stay_integer_and_fractions_are_rejected() {
        let a = applier();
        a.apply(&sample("hits", &[], SampleValue::Counter(2.0)))
            .unwrap();
        a.apply(&sample("hits", &[("a", "b")], SampleValue::Counter(3.0)))
            .unwrap();
        assert_eq!(
            a.apply(&sample("hits", &[], SampleValue::Counter(0.5))),
            Err(ApplyReject::FractionalCounter)
        );
        let s = a.registry().snapshot();
        assert_eq!(s.counter("hits", &[]), Some(2));
        assert_eq!(s.counter("hits", &[("a", "b")]), Some(3));
    }

    #[test]
    fn first_fractional_counter_makes_the_name_float() {
        let a = applier();
        a.apply(&sample("bytes", &[], SampleValue::Counter(0.5)))
            .unwrap();
        a.apply(&sample("bytes", &[], SampleValue::Counter(2.0)))
            .unwrap();
        let s = a.registry().snapshot();
        assert_eq!(
            s.get("bytes", &[]).unwrap().value,
            abacus::Value::FloatCounter(2.5)
        );
    }

    #[test]
    fn observations_go_to_one_float_histogram() {
        let a = applier();
        a.apply(&sample(
            "lat",
            &[],
            SampleValue::Observe {
                value: 12.0,
                count: 2,
            },
        ))
        .unwrap();
        a.apply(&sample(
            "lat",
            &[],
            SampleValue::Observe {
                value: 12.5,
                count: 1,
            },
        ))
        .unwrap();
        let s = a.registry().snapshot();
        let h = s.histogram("lat", &[]).unwrap();
        assert_eq!(h.count, 3);
        assert_eq!(h.sum, 36.5);
        assert_eq!((h.min, h.max), (12.0, 12.5));
    }

    #[test]
    fn gauges_set_and_add() {
        let a = applier();
        a.apply(&sample("q", &[], SampleValue::Gauge(5.0))).unwrap();
        a.apply(&sample("q", &[], SampleValue::GaugeAdd(-2.0)))
            .unwrap();
        assert_eq!(a.registry().snapshot().gauge("q", &[]), Some(3.0));
    }

    #[test]
    fn sets_count_distinct_members_per_window_and_are_bounded() {
        let a = applier();
        for m in ["x", "y", "x", "z"] {
            a.apply(&sample("users", &[], SampleValue::SetMember(m.into())))
                .unwrap();
        }
        assert_eq!(
            a.apply(&sample("users", &[], SampleValue::SetMember("w".into()))),
            Err(ApplyReject::SetFull)
        );
        assert_eq!(a.close_sets(), 1);
        assert_eq!(a.registry().snapshot().gauge("users", &[]), Some(3.0));
        a.apply(&sample("users", &[], SampleValue::SetMember("x".into())))
            .unwrap();
        a.close_sets();
        assert_eq!(a.registry().snapshot().gauge("users", &[]), Some(1.0));
    }

    #[test]
    fn all_sets_together_are_bounded_per_window() {
        let a = Applier::new(Registry::new(), 100, 3).with_max_set_members_total(4);
        let member =
            |set: &str, m: &str| a.apply(&sample(set, &[], SampleValue::SetMember(m.into())));
        for (set, m) in [("a", "1"), ("a", "2"), ("b", "1"), ("c", "1")] {
            member(set, m).unwrap();
        }
        // A member already held is no new memory; a fifth distinct one is refused.
        member("a", "1").unwrap();
        assert_eq!(member("d", "1"), Err(ApplyReject::TooManySetMembers));
        assert_eq!(member("a", "3"), Err(ApplyReject::TooManySetMembers));
        // Sets a, b, c (the refused "d" was not created).
        assert_eq!(a.close_sets(), 3);
        assert_eq!(a.registry().snapshot().gauge("a", &[]), Some(2.0));
        // The next window starts with room again.
        member("d", "1").unwrap();
        assert_eq!(a.close_sets(), 1);
        assert_eq!(a.registry().snapshot().gauge("d", &[]), Some(1.0));
    }

    #[test]
    fn exponential_histograms_merge_exactly() {
        let a = applier();
        let h = ExpHistogramDelta {
            scale: 4,
            zero_count: 1,
            zero_threshold: 0.0,
            positive: ExpBuckets {
                offset: 0,
                counts: vec![2, 0, 3],
            },
            negative: ExpBuckets::default(),
            count: 6,
            sum: Some(10.0),
            min: Some(0.0),
            max: Some(1.2),
        };
        a.apply(&sample("e", &[], SampleValue::ExpHistogram(h)))
            .unwrap();
        let s = a.registry().snapshot();
        let got = s.histogram("e", &[]).unwrap();
        assert_eq!(got.count, 6);
        assert_eq!(got.zero_count, 1);
        assert_eq!(got.positive, vec![(0, 2), (2, 3)]);
        assert_eq!(got.sum, 10.0);
    }

    #[test]
    fn explicit_buckets_keep_count_sum_and_land_in_their_bucket() {
        let h = ExplicitHistogramDelta {
            bounds: vec![10.0, 20.0],
            counts: vec![1, 2, 1],
            count: 4,
            sum: Some(70.0),
            min: Some(5.0),
            max: Some(30.0),
        };
        let snap = explicit_to_snapshot(&h, 4).unwrap();
        assert_eq!(snap.count, 4);
        assert_eq!(snap.sum, 70.0);
        assert_eq!((snap.min, snap.max), (5.0, 30.0));
        let p50 = snap.quantile(0.5).unwrap();
        assert!((10.0..=20.0).contains(&p50), "{p50}");
        assert_eq!(snap.count_le(10.0), 1);
    }

    #[test]
    fn reused_explicit_scratch_gives_the_same_snapshots_as_a_fresh_one() {
        let h = |bounds: &[f64], counts: &[u64], min: Option<f64>, max: Option<f64>| {
            ExplicitHistogramDelta {
                bounds: bounds.to_vec(),
                counts: counts.to_vec(),
                count: counts.iter().sum(),
                sum: None,
                min,
                max,
            }
        };
        let cases = [
            h(&[1.0, 5.0, 10.0], &[1, 2, 3, 4], Some(0.5), Some(20.0)),
            // Same bounds, clamped midpoints (min/max inside the finite buckets).
            h(&[1.0, 5.0, 10.0], &[0, 2, 3, 0], Some(4.0), Some(6.0)),
            h(&[1.0, 5.0, 10.0], &[1, 2, 3, 4], None, None),
            // Other bounds of the same length, negative and zero midpoints.
            h(&[-4.0, -1.0, 1.0], &[1, 1, 1, 1], None, None),
            h(&[-2.0, 2.0], &[1, 5, 1], Some(-3.0), Some(3.0)),
            h(&[1.0, 5.0, 10.0], &[1, 2, 3, 4], Some(0.5), Some(20.0)),
            // Non-finite midpoint: refused either way.
            h(&[1e308, f64::MAX], &[0, 1, 0], None, None),
            h(&[], &[], Some(1.0), Some(1.0)),
            h(&[3.0, 7.0], &[0, 0, 0], None, None),
            h(&[1.0, 5.0], &[1, 2], None, None),
        ];
        for scale in [0u8, 4, 8] {
            let mut scratch = ExplicitScratch::default();
            for (i, c) in cases.iter().enumerate() {
                let fresh = explicit_to_snapshot(c, scale);
                let reused = explicit_into_snapshot(c, scale, &mut scratch).cloned();
                assert_eq!(reused, fresh, "case {i} at scale {scale}");
            }
        }
    }

    #[test]
    fn bucket_index_matches_bounds() {
        for v in [0.001, 0.5, 1.0, 1.5, 2.0, 3.0, 1000.0, 1e9] {
            let i = bucket_index(4, v);
            assert!(v > abacus::histogram::index::bucket_lower(4, i), "{v}");
            assert!(v <= abacus::histogram::index::bucket_upper(4, i), "{v}");
        }
    }
}
