//! Cumulative → delta conversion for OTLP streams.
//!
//! The core aggregator consumes deltas. OTLP producers usually send
//! CUMULATIVE sums and histograms, so [`CumulativeToDelta`] keeps the last
//! point of every stream, keyed by [`StreamKey`] (resource attributes, scope,
//! metric name, point attributes and point kind), and subtracts.
//!
//! # Rules
//!
//! * **Reset detection.** A point is a *reset* if its `start_time_unix_nano`
//!   differs from the stored one (when both are non-zero), or if anything
//!   decreased (sum value, histogram count, any bucket, zero count), or if
//!   the explicit bounds / zero threshold changed. On a reset the new point's
//!   full value is the delta (the producer restarted from zero).
//! * **Out-of-order points** (`time_unix_nano` older than the stored point,
//!   same start time) are dropped as [`DeltaOutcome::Stale`]; otherwise they
//!   would look like a reset and be double counted.
//! * **First point of a stream.** Its full value is emitted as the delta only
//!   if its start time is known (non-zero), is not before the moment the
//!   converter was created (`created_unix_nano`, so nothing from before this
//!   process started can be counted twice after a restart), and is later than
//!   the start time of every stream evicted so far (so a stream that was
//!   evicted and comes back is not counted twice). Otherwise the point only
//!   establishes the baseline ([`DeltaOutcome::Baseline`]). This prefers
//!   under-counting one interval to double counting. Note this compares the
//!   producer's clock with the caller's; large clock skew makes the rule fall
//!   back to baseline-only (skew one way) or full emission (the other way).
//! * **Exponential histograms with different scales** are compared at the
//!   smaller (coarser) scale: the finer one is downscaled (bucket index
//!   `i → i >> d`) before bucket-wise subtraction; the delta is at that scale.
//! * **min/max** of a cumulative histogram cannot be turned into the min/max
//!   of an interval, so deltas carry `min = max = None`, except when the full
//!   point is emitted (first point / reset), where the point's own min/max
//!   are exact. `sum` is subtracted when both points have one, else `None`.
//! * **Bounded state.** At most [`TemporalityConfig::max_streams`] streams are
//!   tracked. When full, a new stream either evicts the least recently
//!   updated one ([`EvictionPolicy::EvictLeastRecentlyUsed`], the default) or
//!   is refused ([`EvictionPolicy::RefuseNew`], [`DeltaOutcome::Refused`]).
//!   [`TemporalityStats`] counts evictions, refusals and resets.
//!   [`CumulativeToDelta::expire_before`] drops idle streams.
//!
//! DELTA points do not go through this module; they pass straight through in
//! [`convert`](super::convert).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ingest::{ExpBuckets, ExpHistogramDelta, ExplicitHistogramDelta};

/// Which kind of point a stream carries (part of the stream identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// Monotonic sum.
    Sum,
    /// Explicit-bucket histogram.
    Histogram,
    /// Exponential histogram.
    ExpHistogram,
}

/// Identity of a cumulative stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Point kind.
    pub kind: StreamKind,
    /// All resource attributes, stringified, sorted by key.
    pub resource: Vec<(String, String)>,
    /// Instrumentation scope name.
    pub scope_name: String,
    /// Instrumentation scope version.
    pub scope_version: String,
    /// Metric name as sent (unsanitised).
    pub metric: String,
    /// Data point attributes, stringified, sorted by key (unsanitised).
    pub attributes: Vec<(String, String)>,
}

/// The value of a cumulative point (input) or of a delta (output).
#[derive(Debug, Clone, PartialEq)]
pub enum CumulativeValue {
    /// Monotonic sum value.
    Sum(f64),
    /// Explicit-bucket histogram (same shape as a delta).
    Histogram(ExplicitHistogramDelta),
    /// Exponential histogram (same shape as a delta).
    ExpHistogram(ExpHistogramDelta),
}

/// A cumulative data point.
#[derive(Debug, Clone, PartialEq)]
pub struct CumulativePoint {
    /// Start of the cumulative interval, Unix ns; 0 = unknown.
    pub start_time_unix_nano: u64,
    /// Time of the observation, Unix ns.
    pub time_unix_nano: u64,
    /// The cumulative value.
    pub value: CumulativeValue,
}

/// What [`CumulativeToDelta::update`] made of a point.
#[derive(Debug, Clone, PartialEq)]
pub enum DeltaOutcome {
    /// Apply this delta.
    Delta(CumulativeValue),
    /// First point of a stream whose history is unknown: stored, nothing to
    /// apply.
    Baseline,
    /// Older than the stored point; ignored.
    Stale,
    /// The stream table is full and the policy refuses new streams.
    Refused,
}

/// What to do when a new stream arrives and the table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Evict the stream that was updated least recently.
    #[default]
    EvictLeastRecentlyUsed,
    /// Keep existing streams and refuse the new one.
    RefuseNew,
}

/// Configuration of [`CumulativeToDelta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalityConfig {
    /// Maximum number of tracked streams (at least 1 is used). Default 100 000.
    pub max_streams: usize,
    /// Policy when full.
    pub policy: EvictionPolicy,
}

impl Default for TemporalityConfig {
    fn default() -> Self {
        Self {
            max_streams: 100_000,
            policy: EvictionPolicy::default(),
        }
    }
}

/// Counters describing the converter's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemporalityStats {
    /// Streams evicted to make room.
    pub streams_evicted: u64,
    /// New streams refused because the table was full.
    pub streams_refused: u64,
    /// Streams removed by [`CumulativeToDelta::expire_before`].
    pub streams_expired: u64,
    /// Resets detected.
    pub resets: u64,
    /// Points that only established a baseline.
    pub baselines: u64,
    /// Out-of-order points dropped.
    pub stale_points: u64,
}

#[derive(Debug)]
struct Entry {
    point: CumulativePoint,
    tick: u64,
}

/// Bounded per-stream state turning cumulative points into deltas.
#[derive(Debug)]
pub struct CumulativeToDelta {
    config: TemporalityConfig,
    streams: HashMap<Arc<StreamKey>, Entry>,
    lru: BTreeMap<u64, Arc<StreamKey>>,
    tick: u64,
    created_unix_nano: u64,
    eviction_watermark_unix_nano: u64,
    stats: TemporalityStats,
}

impl CumulativeToDelta {
    /// A new converter. `now_unix_nano` is the current wall-clock time; see
    /// the module docs for how it decides about first points.
    #[must_use]
    pub fn new(config: TemporalityConfig, now_unix_nano: u64) -> Self {
        Self {
            config,
            streams: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            created_unix_nano: now_unix_nano,
            eviction_watermark_unix_nano: 0,
            stats: TemporalityStats::default(),
        }
    }

    /// Number of tracked streams.
    #[must_use]
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True if no stream is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Counters since creation.
    #[must_use]
    pub fn stats(&self) -> TemporalityStats {
        self.stats
    }

    /// Drop every stream whose last point is older than `time_unix_nano`;
    /// returns how many were dropped.
    pub fn expire_before(&mut self, time_unix_nano: u64) -> usize {
        let mut removed = Vec::new();
        self.streams.retain(|_, e| {
            let keep = e.point.time_unix_nano >= time_unix_nano;
            if !keep {
                removed.push((e.tick, e.point.start_time_unix_nano));
            }
            keep
        });
        for (tick, start) in &removed {
            self.lru.remove(tick);
            self.eviction_watermark_unix_nano = self.eviction_watermark_unix_nano.max(*start);
        }
        self.stats.streams_expired += removed.len() as u64;
        removed.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Feed one cumulative point of stream `key`.
    pub fn update(&mut self, key: &StreamKey, point: CumulativePoint) -> DeltaOutcome {
        let tick = self.next_tick();
        if let Some(entry) = self.streams.get_mut(key) {
            let prev = &entry.point;
            let same_start = prev.start_time_unix_nano == point.start_time_unix_nano
                || prev.start_time_unix_nano == 0
                || point.start_time_unix_nano == 0;
            if same_start && point.time_unix_nano < prev.time_unix_nano {
                self.stats.stale_points += 1;
                return DeltaOutcome::Stale;
            }
            let delta = if same_start {
                subtract(&point.value, &prev.value)
            } else {
                None
            };
            let delta = delta.unwrap_or_else(|| {
                self.stats.resets += 1;
                point.value.clone()
            });
            let old_tick = entry.tick;
            entry.tick = tick;
            entry.point = point;
            if let Some(k) = self.lru.remove(&old_tick) {
                self.lru.insert(tick, k);
            }
            return DeltaOutcome::Delta(delta);
        }

        // New stream.
        let capacity = self.config.max_streams.max(1);
        if self.streams.len() >= capacity {
            match self.config.policy {
                EvictionPolicy::RefuseNew => {
                    self.stats.streams_refused += 1;
                    return DeltaOutcome::Refused;
                }
                EvictionPolicy::EvictLeastRecentlyUsed => {
                    let evicted = self
                        .lru
                        .pop_first()
                        .and_then(|(_, old)| self.streams.remove(&old));
                    if let Some(e) = evicted {
                        self.eviction_watermark_unix_nano = self
                            .eviction_watermark_unix_nano
                            .max(e.point.start_time_unix_nano);
                        self.stats.streams_evicted += 1;
                    }
                }
            }
        }
        let start = point.start_time_unix_nano;
        let emit_full = start != 0
            && start >= self.created_unix_nano
            && start > self.eviction_watermark_unix_nano;
        let outcome = if emit_full {
            DeltaOutcome::Delta(point.value.clone())
        } else {
            self.stats.baselines += 1;
            DeltaOutcome::Baseline
        };
        let key = Arc::new(key.clone());
        self.lru.insert(tick, Arc::clone(&key));
        self.streams.insert(key, Entry { point, tick });
        outcome
    }
}

/// `cur - prev`, or `None` if that is not a valid delta (reset).
fn subtract(cur: &CumulativeValue, prev: &CumulativeValue) -> Option<CumulativeValue> {
    match (cur, prev) {
        (CumulativeValue::Sum(c), CumulativeValue::Sum(p)) => {
            if c < p {
                None
            } else {
                Some(CumulativeValue::Sum(c - p))
            }
        }
        (CumulativeValue::Histogram(c), CumulativeValue::Histogram(p)) => {
            subtract_explicit(c, p).map(CumulativeValue::Histogram)
        }
        (CumulativeValue::ExpHistogram(c), CumulativeValue::ExpHistogram(p)) => {
            subtract_exp(c, p).map(CumulativeValue::ExpHistogram)
        }
        _ => None,
    }
}

fn sub_sum(c: Option<f64>, p: Option<f64>) -> Option<f64> {
    match (c, p) {
        (Some(c), Some(p)) => Some(c - p).filter(|v| v.is_finite()),
        _ => None,
    }
}

fn subtract_explicit(
    c: &ExplicitHistogramDelta,
    p: &ExplicitHistogramDelta,
) -> Option<ExplicitHistogramDelta> {
    if c.bounds != p.bounds || c.counts.len() != p.counts.len() {
        return None;
    }
    let counts = c
        .counts
        .iter()
        .zip(&p.counts)
        .map(|(c, p)| c.checked_sub(*p))
        .collect::<Option<Vec<u64>>>()?;
    Some(ExplicitHistogramDelta {
        bounds: c.bounds.clone(),
        counts,
        count: c.count.checked_sub(p.count)?,
        sum: sub_sum(c.sum, p.sum),
        min: None,
        max: None,
    })
}

/// Merge buckets to a scale `by` steps coarser (index `i → i >> by`).
#[must_use]
pub fn downscale_buckets(b: &ExpBuckets, by: u32) -> ExpBuckets {
    if by == 0 || b.counts.is_empty() {
        return b.clone();
    }
    let by = by.min(40);
    let offset = i64::from(b.offset);
    let start = offset >> by;
    let last = (offset + b.counts.len() as i64 - 1) >> by;
    let len = usize::try_from(last - start + 1).unwrap_or(0);
    let mut counts = vec![0u64; len];
    for (i, c) in b.counts.iter().enumerate() {
        let idx = ((offset + i as i64) >> by) - start;
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| counts.get_mut(i)) {
            *slot = slot.saturating_add(*c);
        }
    }
    ExpBuckets {
        // `start` lies between `offset >> by` bounds, so it fits in i32.
        offset: i32::try_from(start).unwrap_or(b.offset),
        counts,
    }
}

/// Bucket-wise `cur - prev` over cur's index range; `None` if any prev
/// bucket is larger (including non-zero prev buckets outside cur's range).
fn subtract_buckets(cur: &ExpBuckets, prev: &ExpBuckets) -> Option<ExpBuckets> {
    let co = i64::from(cur.offset);
    let po = i64::from(prev.offset);
    let clen = cur.counts.len() as i64;
    for (j, p) in prev.counts.iter().enumerate() {
        let idx = po + j as i64;
        if *p != 0 && (idx < co || idx >= co + clen) {
            return None;
        }
    }
    let counts = cur
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = usize::try_from(co + i as i64 - po)
                .ok()
                .and_then(|j| prev.counts.get(j))
                .copied()
                .unwrap_or(0);
            c.checked_sub(p)
        })
        .collect::<Option<Vec<u64>>>()?;
    Some(ExpBuckets {
        offset: cur.offset,
        counts,
    })
}

fn subtract_exp(c: &ExpHistogramDelta, p: &ExpHistogramDelta) -> Option<ExpHistogramDelta> {
    if c.zero_threshold.to_bits() != p.zero_threshold.to_bits() {
        return None;
    }
    let scale = c.scale.min(p.scale);
    let dc = u32::try_from(c.scale - scale).ok()?;
    let dp = u32::try_from(p.scale - scale).ok()?;
    let positive = subtract_buckets(
        &downscale_buckets(&c.positive, dc),
        &downscale_buckets(&p.positive, dp),
    )?;
    let negative = subtract_buckets(
        &downscale_buckets(&c.negative, dc),
        &downscale_buckets(&p.negative, dp),
    )?;
    Some(ExpHistogramDelta {
        scale,
        zero_count: c.zero_count.checked_sub(p.zero_count)?,
        zero_threshold: c.zero_threshold,
        positive,
        negative,
        count: c.count.checked_sub(p.count)?,
        sum: sub_sum(c.sum, p.sum),
        min: None,
        max: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_000_000_000_000;

    fn key(name: &str, kind: StreamKind) -> StreamKey {
        StreamKey {
            kind,
            resource: vec![("service.name".into(), "api".into())],
            scope_name: "scope".into(),
            scope_version: "1".into(),
            metric: name.into(),
            attributes: vec![],
        }
    }

    fn sum(start: u64, time: u64, v: f64) -> CumulativePoint {
        CumulativePoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: CumulativeValue::Sum(v),
        }
    }

    fn tracker() -> CumulativeToDelta {
        CumulativeToDelta::new(TemporalityConfig::default(), T0)
    }

    #[test]
    fn first_point_started_before_converter_only_sets_baseline() {
        let mut t = tracker();
        let k = key("a", StreamKind::Sum);
        assert_eq!(
            t.update(&k, sum(T0 - 10, T0 + 1, 5.0)),
            DeltaOutcome::Baseline
        );
        assert_eq!(
            t.update(&k, sum(T0 - 10, T0 + 2, 8.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(3.0))
        );
        assert_eq!(t.stats().baselines, 1);
    }

    #[test]
    fn first_point_with_unknown_start_only_sets_baseline() {
        let mut t = tracker();
        assert_eq!(
            t.update(&key("a", StreamKind::Sum), sum(0, T0 + 1, 5.0)),
            DeltaOutcome::Baseline
        );
    }

    #[test]
    fn first_point_started_after_converter_emits_full_value() {
        let mut t = tracker();
        assert_eq!(
            t.update(&key("a", StreamKind::Sum), sum(T0 + 5, T0 + 6, 5.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(5.0))
        );
    }

    #[test]
    fn decreased_sum_is_a_reset_and_new_value_is_the_delta() {
        let mut t = tracker();
        let k = key("a", StreamKind::Sum);
        t.update(&k, sum(T0 - 10, T0 + 1, 50.0));
        assert_eq!(
            t.update(&k, sum(T0 - 10, T0 + 2, 4.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(4.0))
        );
        assert_eq!(t.stats().resets, 1);
    }

    #[test]
    fn changed_start_time_is_a_reset_even_if_value_grew() {
        let mut t = tracker();
        let k = key("a", StreamKind::Sum);
        t.update(&k, sum(T0 - 10, T0 + 1, 5.0));
        assert_eq!(
            t.update(&k, sum(T0 + 1, T0 + 2, 7.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(7.0))
        );
    }

    #[test]
    fn out_of_order_point_is_dropped_as_stale() {
        let mut t = tracker();
        let k = key("a", StreamKind::Sum);
        t.update(&k, sum(T0 - 10, T0 + 5, 5.0));
        assert_eq!(t.update(&k, sum(T0 - 10, T0 + 3, 4.0)), DeltaOutcome::Stale);
        assert_eq!(
            t.update(&k, sum(T0 - 10, T0 + 6, 6.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(1.0))
        );
    }

    #[test]
    fn streams_with_different_attributes_are_independent() {
        let mut t = tracker();
        let a = key("m", StreamKind::Sum);
        let mut b = a.clone();
        b.attributes = vec![("x".into(), "1".into())];
        t.update(&a, sum(T0 - 1, T0 + 1, 10.0));
        t.update(&b, sum(T0 - 1, T0 + 1, 100.0));
        assert_eq!(
            t.update(&a, sum(T0 - 1, T0 + 2, 11.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(1.0))
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn full_table_evicts_least_recently_updated_stream() {
        let cfg = TemporalityConfig {
            max_streams: 2,
            policy: EvictionPolicy::EvictLeastRecentlyUsed,
        };
        let mut t = CumulativeToDelta::new(cfg, T0);
        let (a, b, c) = (
            key("a", StreamKind::Sum),
            key("b", StreamKind::Sum),
            key("c", StreamKind::Sum),
        );
        t.update(&a, sum(T0 - 1, T0 + 1, 1.0));
        t.update(&b, sum(T0 - 1, T0 + 1, 1.0));
        t.update(&a, sum(T0 - 1, T0 + 2, 2.0)); // a is now most recent
        t.update(&c, sum(T0 - 1, T0 + 2, 1.0)); // evicts b
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().streams_evicted, 1);
        assert_eq!(
            t.update(&a, sum(T0 - 1, T0 + 3, 3.0)),
            DeltaOutcome::Delta(CumulativeValue::Sum(1.0))
        );
        // b comes back: it must not be double counted.
        assert_eq!(
            t.update(&b, sum(T0 - 1, T0 + 3, 5.0)),
            DeltaOutcome::Baseline
        );
    }

    #[test]
    fn evicted_stream_that_returns_is_not_double_counted_even_if_started_after_creation() {
        let cfg = TemporalityConfig {
            max_streams: 1,
            policy: EvictionPolicy::EvictLeastRecentlyUsed,
        };
        let mut t = CumulativeToDelta::new(cfg, T0);
        let (a, b) = (key("a", StreamKind::Sum), key("b", StreamKind::Sum));
        assert!(matches!(
            t.update(&a, sum(T0 + 1, T0 + 2, 5.0)),
            DeltaOutcome::Delta(_)
        ));
        t.update(&b, sum(T0 + 1, T0 + 2, 1.0)); // evicts a
        assert_eq!(
            t.update(&a, sum(T0 + 1, T0 + 3, 9.0)),
            DeltaOutcome::Baseline
        );
    }

    #[test]
    fn refuse_new_policy_keeps_existing_streams_and_counts_refusals() {
        let cfg = TemporalityConfig {
            max_streams: 1,
            policy: EvictionPolicy::RefuseNew,
        };
        let mut t = CumulativeToDelta::new(cfg, T0);
        t.update(&key("a", StreamKind::Sum), sum(T0 - 1, T0 + 1, 1.0));
        assert_eq!(
            t.update(&key("b", StreamKind::Sum), sum(T0 - 1, T0 + 1, 1.0)),
            DeltaOutcome::Refused
        );
        assert_eq!(t.stats().streams_refused, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expire_before_drops_idle_streams() {
        let mut t = tracker();
        t.update(&key("a", StreamKind::Sum), sum(T0 - 1, T0 + 1, 1.0));
        t.update(&key("b", StreamKind::Sum), sum(T0 - 1, T0 + 10, 1.0));
        assert_eq!(t.expire_before(T0 + 5), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().streams_expired, 1);
        // The LRU index stays consistent: filling up and evicting still works.
        assert_eq!(t.lru.len(), 1);
    }

    fn hist(counts: Vec<u64>, sum: f64) -> CumulativeValue {
        CumulativeValue::Histogram(ExplicitHistogramDelta {
            bounds: vec![1.0, 5.0],
            count: counts.iter().sum(),
            counts,
            sum: Some(sum),
            min: Some(0.5),
            max: Some(9.0),
        })
    }

    #[test]
    fn explicit_histogram_delta_is_bucket_wise_without_min_max() {
        let mut t = tracker();
        let k = key("h", StreamKind::Histogram);
        let p = |time, v| CumulativePoint {
            start_time_unix_nano: T0 - 1,
            time_unix_nano: time,
            value: v,
        };
        t.update(&k, p(T0 + 1, hist(vec![1, 2, 3], 10.0)));
        let out = t.update(&k, p(T0 + 2, hist(vec![2, 2, 5], 15.0)));
        assert_eq!(
            out,
            DeltaOutcome::Delta(CumulativeValue::Histogram(ExplicitHistogramDelta {
                bounds: vec![1.0, 5.0],
                counts: vec![1, 0, 2],
                count: 3,
                sum: Some(5.0),
                min: None,
                max: None,
            }))
        );
    }

    #[test]
    fn explicit_histogram_bucket_decrease_is_a_reset_keeping_min_max() {
        let mut t = tracker();
        let k = key("h", StreamKind::Histogram);
        let p = |time, v| CumulativePoint {
            start_time_unix_nano: T0 - 1,
            time_unix_nano: time,
            value: v,
        };
        t.update(&k, p(T0 + 1, hist(vec![1, 2, 3], 10.0)));
        let out = t.update(&k, p(T0 + 2, hist(vec![5, 1, 3], 10.0)));
        assert_eq!(out, DeltaOutcome::Delta(hist(vec![5, 1, 3], 10.0)));
    }

    #[test]
    fn explicit_histogram_bounds_change_is_a_reset() {
        let mut t = tracker();
        let k = key("h", StreamKind::Histogram);
        t.update(
            &k,
            CumulativePoint {
                start_time_unix_nano: T0 - 1,
                time_unix_nano: T0 + 1,
                value: hist(vec![1, 2, 3], 10.0),
            },
        );
        let mut changed = ExplicitHistogramDelta {
            bounds: vec![2.0, 5.0],
            counts: vec![3, 3, 3],
            count: 9,
            sum: Some(20.0),
            min: None,
            max: None,
        };
        let out = t.update(
            &k,
            CumulativePoint {
                start_time_unix_nano: T0 - 1,
                time_unix_nano: T0 + 2,
                value: CumulativeValue::Histogram(changed.clone()),
            },
        );
        changed.min = None;
        assert_eq!(
            out,
            DeltaOutcome::Delta(CumulativeValue::Histogram(changed))
        );
        assert_eq!(t.stats().resets, 1);
    }

    fn exp(scale: i32, offset: i32, counts: Vec<u64>, zero: u64) -> ExpHistogramDelta {
        let total: u64 = counts.iter().sum::<u64>() + zero;
        ExpHistogramDelta {
            scale,
            zero_count: zero,
            zero_threshold: 0.0,
            positive: ExpBuckets { offset, counts },
            negative: ExpBuckets::default(),
            count: total,
            sum: Some(total as f64),
            min: None,
            max: None,
        }
    }

    #[test]
    fn downscale_merges_adjacent_buckets_including_negative_indices() {
        let b = ExpBuckets {
            offset: -3,
            counts: vec![1, 2, 3, 4, 5],
        }; // indices -3..=1
        let d = downscale_buckets(&b, 1); // -3>>1=-2, -2>>1=-1, -1>>1=-1, 0>>1=0, 1>>1=0
        assert_eq!(
            d,
            ExpBuckets {
                offset: -2,
                counts: vec![1, 5, 9]
            }
        );
        assert_eq!(downscale_buckets(&b, 0), b);
    }

    #[test]
    fn exp_histogram_same_scale_subtracts_bucket_wise_with_different_offsets() {
        let mut t = tracker();
        let k = key("e", StreamKind::ExpHistogram);
        let p = |time, v| CumulativePoint {
            start_time_unix_nano: T0 - 1,
            time_unix_nano: time,
            value: CumulativeValue::ExpHistogram(v),
        };
        t.update(&k, p(T0 + 1, exp(2, 5, vec![1, 1], 1)));
        match t.update(&k, p(T0 + 2, exp(2, 4, vec![3, 2, 1, 1], 2))) {
            DeltaOutcome::Delta(CumulativeValue::ExpHistogram(d)) => {
                assert_eq!(d.scale, 2);
                assert_eq!(
                    d.positive,
                    ExpBuckets {
                        offset: 4,
                        counts: vec![3, 1, 0, 1]
                    }
                );
                assert_eq!(d.zero_count, 1);
                assert_eq!(d.count, 6);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exp_histogram_scale_change_downscales_finer_point() {
        let mut t = tracker();
        let k = key("e", StreamKind::ExpHistogram);
        let p = |time, v| CumulativePoint {
            start_time_unix_nano: T0 - 1,
            time_unix_nano: time,
            value: CumulativeValue::ExpHistogram(v),
        };
        // Scale 3, indices 4,5 -> at scale 2 both are index 2.
        t.update(&k, p(T0 + 1, exp(3, 4, vec![1, 1], 0)));
        match t.update(&k, p(T0 + 2, exp(2, 2, vec![5, 1], 0))) {
            DeltaOutcome::Delta(CumulativeValue::ExpHistogram(d)) => {
                assert_eq!(d.scale, 2);
                assert_eq!(
                    d.positive,
                    ExpBuckets {
                        offset: 2,
                        counts: vec![3, 1]
                    }
                );
                assert_eq!(d.count, 4);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exp_histogram_with_vanished_bucket_is_a_reset() {
        let mut t = tracker();
        let k = key("e", StreamKind::ExpHistogram);
        let p = |time, v| CumulativePoint {
            start_time_unix_nano: T0 - 1,
            time_unix_nano: time,
            value: CumulativeValue::ExpHistogram(v),
        };
        t.update(&k, p(T0 + 1, exp(0, 0, vec![1, 1], 0)));
        let cur = exp(0, 1, vec![5], 0);
        assert_eq!(
            t.update(&k, p(T0 + 2, cur.clone())),
            DeltaOutcome::Delta(CumulativeValue::ExpHistogram(cur))
        );
    }

    #[test]
    fn same_name_with_different_kind_is_a_separate_stream() {
        let mut t = tracker();
        t.update(&key("x", StreamKind::Sum), sum(T0 - 1, T0 + 1, 1.0));
        assert_eq!(
            t.update(
                &key("x", StreamKind::Histogram),
                CumulativePoint {
                    start_time_unix_nano: T0 - 1,
                    time_unix_nano: T0 + 1,
                    value: hist(vec![1, 1, 1], 1.0)
                }
            ),
            DeltaOutcome::Baseline
        );
    }

    proptest! {
        #[test]
        fn arbitrary_sum_sequences_never_panic_and_deltas_are_non_negative(
            points in proptest::collection::vec((0u64..4, 0u64..10, 0u32..1000, 0usize..3), 0..64),
            max_streams in 1usize..4,
        ) {
            let cfg = TemporalityConfig { max_streams, policy: EvictionPolicy::EvictLeastRecentlyUsed };
            let mut t = CumulativeToDelta::new(cfg, 3);
            for (start, time, v, k) in points {
                let k = key(["a", "b", "c"][k], StreamKind::Sum);
                if let DeltaOutcome::Delta(CumulativeValue::Sum(d)) = t.update(&k, sum(start, time, f64::from(v))) {
                    prop_assert!(d >= 0.0);
                }
                prop_assert!(t.len() <= max_streams);
                prop_assert_eq!(t.lru.len(), t.len());
            }
        }

        #[test]
        fn arbitrary_exp_histograms_never_panic(
            points in proptest::collection::vec(
                (-10i32..=20, any::<i32>(), proptest::collection::vec(0u64..100, 0..8), 0u64..5),
                0..16,
            )
        ) {
            let mut t = tracker();
            let k = key("e", StreamKind::ExpHistogram);
            for (i, (scale, offset, counts, zero)) in points.into_iter().enumerate() {
                let offset = offset.min(i32::MAX - 8);
                let out = t.update(&k, CumulativePoint {
                    start_time_unix_nano: T0 - 1,
                    time_unix_nano: T0 + i as u64,
                    value: CumulativeValue::ExpHistogram(exp(scale, offset, counts, zero)),
                });
                if let DeltaOutcome::Delta(CumulativeValue::ExpHistogram(d)) = out {
                    let total = d.zero_count + d.positive.total().unwrap_or(0) + d.negative.total().unwrap_or(0);
                    prop_assert_eq!(total, d.count);
                }
            }
        }
    }
}
