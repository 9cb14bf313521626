//! The read side of a histogram: plain data that answers quantiles, merges and subtracts.

use serde::{Deserialize, Serialize};

use super::atomic::{Domain, key_f64};
use super::index::{IndexTable, bucket_lower, bucket_representative, bucket_upper, relative_error};

/// A point-in-time histogram: base-2 exponential buckets (OpenTelemetry
/// `ExponentialHistogram` / Prometheus native histogram layout) plus exact
/// count, sum, min and max.
///
/// Bucket `i` of `positive` holds values in `(b^i, b^(i+1)]` with `b = 2^(2^-scale)`;
/// bucket `i` of `negative` holds values in `[-b^(i+1), -b^i)`. Both lists are sorted by
/// index and hold only non-zero counts.
///
/// ```
/// let registry = abacus::Registry::new();
/// for v in 1..=100 {
///     registry.record_latency("api", v);
/// }
/// let snap = registry.snapshot();
/// let h = snap.histogram("latency", &[("service", "api")]).unwrap();
/// assert_eq!(h.count, 100);
/// assert_eq!(h.min, 1.0);
/// assert_eq!(h.max, 100.0);
/// let p50 = h.quantile(0.5).unwrap();
/// assert!((p50 - 50.0).abs() <= 50.0 * h.relative_error());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Resolution: `2^scale` buckets per power of two.
    pub scale: i8,
    /// Number of samples (zero bucket included).
    pub count: u64,
    /// Sum of the samples. Exact for integer histograms while it stays below 2^53.
    pub sum: f64,
    /// Smallest sample, `0.0` when `count == 0`.
    pub min: f64,
    /// Largest sample, `0.0` when `count == 0`.
    pub max: f64,
    /// Samples equal to zero.
    pub zero_count: u64,
    /// `(index, count)` of positive buckets, ascending index.
    pub positive: Vec<(i32, u64)>,
    /// `(index, count)` of negative buckets by magnitude, ascending index.
    pub negative: Vec<(i32, u64)>,
    /// Whether every recorded value was an integer (latencies in ms, sizes). Lets the
    /// classic-bucket conversion be exact at integer boundaries.
    pub integers: bool,
}

/// Accumulator of raw cumulative reads (possibly over several shards), before it is
/// turned into a [`HistogramSnapshot`]. Bucket counts are summed into dense arrays laid out
/// like the atomic groups, so merging shards needs no sorting; one accumulator is reused
/// for every series of a collection.
#[derive(Debug, Clone)]
pub(crate) struct RawHistogram {
    pub(crate) domain: Domain,
    pub(crate) scale: u8,
    pub(crate) zero: u64,
    pub(crate) sum_u64: u64,
    pub(crate) sum_f64: f64,
    pub(crate) min_key: u64,
    pub(crate) max_key: u64,
    /// Bucket index of dense slot 0.
    pub(crate) base: i32,
    pub(crate) group_len: usize,
    /// Dense counts by position, `[positive, negative]`.
    pub(crate) dense: [Vec<u64>; 2],
    /// Bit `g` set when group `g` of that sign holds counts.
    pub(crate) touched: [u64; 2],
}

/// Cumulative totals kept by the collector to compute the next delta.
#[derive(Debug, Clone, Default)]
pub(crate) struct HistogramTotals {
    pub(crate) zero: u64,
    pub(crate) sum_u64: u64,
    pub(crate) sum_f64: f64,
    pub(crate) positive: Vec<(i32, u64)>,
    pub(crate) negative: Vec<(i32, u64)>,
}

impl RawHistogram {
    /// An empty accumulator shaped like an atomic histogram of `domain` at `scale`.
    pub(crate) fn new(domain: Domain, scale: u8) -> Self {
        let (base, group_len, groups) = super::atomic::layout(domain, scale);
        let neg = if domain == Domain::F64 {
            groups * group_len
        } else {
            0
        };
        RawHistogram {
            domain,
            scale,
            zero: 0,
            sum_u64: 0,
            sum_f64: 0.0,
            min_key: u64::MAX,
            max_key: 0,
            base,
            group_len,
            dense: [vec![0; groups * group_len], vec![0; neg]],
            touched: [0, 0],
        }
    }

    /// Clears the scalars for the next series (`totals` already cleared the buckets).
    pub(crate) fn reset(&mut self) {
        self.zero = 0;
        self.sum_u64 = 0;
        self.sum_f64 = 0.0;
        self.min_key = u64::MAX;
        self.max_key = 0;
    }

    /// Takes the accumulated buckets as sorted sparse lists (clearing them) together with
    /// the scalar totals.
    pub(crate) fn totals(&mut self) -> HistogramTotals {
        let mut lists = [Vec::new(), Vec::new()];
        for (sign, list) in lists.iter_mut().enumerate() {
            let mut touched = std::mem::take(&mut self.touched[sign]);
            let mut nonzero = 0;
            let mut t = touched;
            while t != 0 {
                let start = t.trailing_zeros() as usize * self.group_len;
                t &= t - 1;
                nonzero += self.dense[sign][start..start + self.group_len]
                    .iter()
                    .filter(|&&n| n != 0)
                    .count();
            }
            list.reserve_exact(nonzero);
            while touched != 0 {
                let g = touched.trailing_zeros() as usize;
                touched &= touched - 1;
                let start = g * self.group_len;
                for (off, slot) in self.dense[sign][start..start + self.group_len]
                    .iter_mut()
                    .enumerate()
                {
                    if *slot != 0 {
                        list.push((self.base + (start + off) as i32, *slot));
                        *slot = 0;
                    }
                }
            }
        }
        let [positive, negative] = lists;
        HistogramTotals {
            zero: self.zero,
            sum_u64: self.sum_u64,
            sum_f64: self.sum_f64,
            positive,
            negative,
        }
    }

    /// Builds a snapshot of `totals` (cumulative or delta) with the extremes read into `self`.
    pub(crate) fn snapshot(&self, totals: HistogramTotals) -> HistogramSnapshot {
        let count = totals.count();
        let (min, max, sum) = match self.domain {
            Domain::U64 => (
                self.min_key as f64,
                self.max_key as f64,
                totals.sum_u64 as f64,
            ),
            Domain::F64 => (key_f64(self.min_key), key_f64(self.max_key), totals.sum_f64),
        };
        let mut snap = HistogramSnapshot {
            scale: self.scale as i8,
            count,
            sum,
            min,
            max,
            zero_count: totals.zero,
            positive: totals.positive,
            negative: totals.negative,
            integers: self.domain == Domain::U64,
        };
        snap.clamp_extremes();
        snap
    }
}

impl HistogramTotals {
    /// `self - earlier`, bucket by bucket. Counters are monotone, so the subtraction
    /// saturates only if a caller mixes up the order.
    pub(crate) fn minus(&self, earlier: &HistogramTotals) -> HistogramTotals {
        HistogramTotals {
            zero: self.zero.saturating_sub(earlier.zero),
            sum_u64: self.sum_u64.wrapping_sub(earlier.sum_u64),
            sum_f64: self.sum_f64 - earlier.sum_f64,
            positive: subtract(&self.positive, &earlier.positive),
            negative: subtract(&self.negative, &earlier.negative),
        }
    }

    /// Total observations, saturating at `u64::MAX` (bucket weights come from ingest, e.g.
    /// a StatsD sample rate or an OTLP point count, and may add up past `u64`).
    pub(crate) fn count(&self) -> u64 {
        self.positive
            .iter()
            .chain(&self.negative)
            .fold(self.zero, |acc, b| acc.saturating_add(b.1))
    }
}

fn subtract(now: &[(i32, u64)], before: &[(i32, u64)]) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(i, n) in now {
        while j < before.len() && before[j].0 < i {
            j += 1;
        }
        let prev = if j < before.len() && before[j].0 == i {
            before[j].1
        } else {
            0
        };
        let d = n.saturating_sub(prev);
        if d != 0 {
            out.push((i, d));
        }
    }
    out
}

fn merge_sorted(a: &[(i32, u64)], b: &[(i32, u64)]) -> Vec<(i32, u64)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j].0 < a[i].0 {
            out.push(b[j]);
            j += 1;
        } else {
            out.push((a[i].0, a[i].1.saturating_add(b[j].1)));
            i += 1;
            j += 1;
        }
    }
    out
}

/// The closed value range `[lo, hi]` that a bucket's samples lie in (as magnitudes).
fn range(scale: i8, index: i32) -> (f64, f64) {
    (bucket_lower(scale, index), bucket_upper(scale, index))
}

impl HistogramSnapshot {
    /// An empty histogram at `scale`.
    pub fn empty(scale: i8, integers: bool) -> Self {
        HistogramSnapshot {
            scale,
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            zero_count: 0,
            positive: Vec::new(),
            negative: Vec::new(),
            integers,
        }
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Mean of the samples, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The worst relative error of [`quantile`](Self::quantile) at this snapshot's scale.
    pub fn relative_error(&self) -> f64 {
        relative_error(self.scale)
    }

    /// The `q`-quantile (`0.0..=1.0`), `None` when empty or `q` is not in range.
    ///
    /// Defined as the nearest-rank sample: the `ceil(q * count)`-th smallest (the first for
    /// `q = 0`). The answer is within [`relative_error`](Self::relative_error) of that sample
    /// (2.17% at the default scale 4); zero is exact, and `q = 0` / `q = 1` return the
    /// exact min and max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles(&[q]).pop().flatten()
    }

    /// Several quantiles in one pass; `qs` need not be sorted.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let mut out = vec![None; qs.len()];
        if self.count == 0 {
            return out;
        }
        let mut order: Vec<usize> = (0..qs.len())
            .filter(|&i| (0.0..=1.0).contains(&qs[i]))
            .collect();
        order.sort_by(|&a, &b| qs[a].total_cmp(&qs[b]));
        let ranks: Vec<u64> = order
            .iter()
            .map(|&i| ((qs[i] * self.count as f64).ceil() as u64).clamp(1, self.count))
            .collect();
        // Buckets in ascending value order as (sign, index, count); the representative value
        // (two exponentials) is only computed for the buckets a quantile lands in.
        let neg = self.negative.iter().rev().map(|&(i, n)| (-1i8, i, n));
        let zero = (self.zero_count > 0).then_some((0i8, 0, self.zero_count));
        let pos = self.positive.iter().map(|&(i, n)| (1i8, i, n));
        let mut next = 0;
        let mut seen = 0u64;
        for (sign, index, n) in neg.chain(zero).chain(pos) {
            seen = seen.saturating_add(n);
            while next < order.len() && ranks[next] <= seen {
                let r = ranks[next];
                let v = if r == 1 {
                    self.min
                } else if r == self.count {
                    self.max
                } else {
                    self.representative(sign, index).clamp(self.min, self.max)
                };
                out[order[next]] = Some(v);
                next += 1;
            }
            if next == order.len() {
                break;
            }
        }
        out
    }

    /// The value reported for a sample in bucket `index` of `sign` (see `ordered`).
    fn representative(&self, sign: i8, index: i32) -> f64 {
        match sign {
            0 => 0.0,
            s if s < 0 => -bucket_representative(self.scale, index),
            _ => {
                let (lo, hi) = range(self.scale, index);
                // An integer bucket holding a single integer reports it exactly.
                if self.integers && lo.floor() + 1.0 == hi.floor() {
                    hi.floor()
                } else {
                    bucket_representative(self.scale, index)
                }
            }
        }
    }

    /// Number of samples `<= le`, as used for classic (cumulative `le`) buckets.
    ///
    /// Exact when `le` is a bucket boundary (every power of two is one at any scale), and
    /// for integer histograms whenever the bucket that straddles `le` holds integers on
    /// one side of `le` only (always the case below `2^scale`). Otherwise the straddling
    /// bucket is counted when its representative value is `<= le`.
    pub fn count_le(&self, le: f64) -> u64 {
        self.count_le_many(&[le])[0]
    }

    /// [`count_le`](Self::count_le) for several ascending boundaries in one pass (the
    /// result is cumulative, as classic `le` buckets are). Positive buckets are compared by
    /// index (one table lookup per boundary), so the cost is linear in buckets + boundaries.
    pub fn count_le_many(&self, bounds: &[f64]) -> Vec<u64> {
        let below_zero = self
            .negative
            .iter()
            .fold(0u64, |acc, b| acc.saturating_add(b.1));
        let table = IndexTable::get(self.scale.max(0) as u8);
        let mut out = Vec::with_capacity(bounds.len());
        let (mut i, mut prefix) = (0, 0u64);
        for &le in bounds {
            let total = if self.count == 0 || le.is_nan() {
                0
            } else if le >= self.max {
                self.count
            } else if le < 0.0 {
                self.count_le_negative(le)
            } else {
                let idx = if le.is_normal() {
                    table.index(le)
                } else {
                    i32::MIN
                };
                while i < self.positive.len() && self.positive[i].0 < idx {
                    prefix = prefix.saturating_add(self.positive[i].1);
                    i += 1;
                }
                let straddle = match self.positive.get(i) {
                    Some(&(j, n)) if j == idx && self.straddle_included(j, le) => n,
                    _ => 0,
                };
                below_zero
                    .saturating_add(self.zero_count)
                    .saturating_add(prefix)
                    .saturating_add(straddle)
            };
            out.push(total);
        }
        out
    }

    /// Whether positive bucket `index`, which contains `le`, counts as `<= le`.
    fn straddle_included(&self, index: i32, le: f64) -> bool {
        let (lo, hi) = range(self.scale, index);
        if hi <= le {
            true
        } else if self.integers {
            // Integers in (lo, hi]: all <= le iff floor(hi) <= le; none iff the first
            // integer above lo exceeds le.
            if hi.floor() <= le {
                true
            } else if lo.floor() + 1.0 > le {
                false
            } else {
                bucket_representative(self.scale, index) <= le
            }
        } else {
            bucket_representative(self.scale, index) <= le
        }
    }

    /// Samples `<= le` for a negative `le`: only negative buckets can qualify.
    fn count_le_negative(&self, le: f64) -> u64 {
        let mut total = 0;
        // Most negative first: descending magnitude.
        for &(i, n) in self.negative.iter().rev() {
            let (lo, hi) = range(self.scale, i);
            // Values in [-hi, -lo).
            if -lo <= le {
                total = u64::saturating_add(total, n);
            } else if -hi > le {
                break;
            } else if -bucket_representative(self.scale, i) <= le {
                total = u64::saturating_add(total, n);
            }
        }
        total
    }

    /// Merges `other` into `self`. Histograms of different scales are merged at the
    /// coarser of the two (OpenTelemetry's downscaling: index `i` becomes `i >> d`).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if other.count == 0 {
            // Still carry the sum (see `Value::is_zero` on sums racing a flush).
            self.sum += other.sum;
            return;
        }
        if other.scale < self.scale {
            self.downscale(self.scale - other.scale);
        }
        let mut other = other.clone();
        if other.scale > self.scale {
            other.downscale(other.scale - self.scale);
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.positive = merge_sorted(&self.positive, &other.positive);
        self.negative = merge_sorted(&self.negative, &other.negative);
        self.integers &= other.integers;
    }

    /// Lowers the resolution by `by` scale steps (each step merges pairs of buckets).
    pub fn downscale(&mut self, by: i8) {
        if by <= 0 {
            return;
        }
        let shift = by as u32;
        for list in [&mut self.positive, &mut self.negative] {
            let mut out: Vec<(i32, u64)> = Vec::with_capacity(list.len());
            for &(i, n) in list.iter() {
                let j = i >> shift;
                match out.last_mut() {
                    Some(last) if last.0 == j => last.1 = last.1.saturating_add(n),
                    _ => out.push((j, n)),
                }
            }
            *list = out;
        }
        self.scale -= by;
    }

    /// Keeps `min` and `max` consistent with the buckets. Window extremes are reset with an
    /// atomic swap at flush time, so a sample racing the flush can have its bucket in one
    /// window and its extreme in the other; clamping bounds the effect by the bucket width.
    pub(crate) fn clamp_extremes(&mut self) {
        if self.count == 0 {
            self.min = 0.0;
            self.max = 0.0;
            return;
        }
        // Value range of the lowest and highest non-empty buckets (only those two).
        let s = self.scale;
        let neg_range = |i: i32| (-bucket_upper(s, i), -bucket_lower(s, i));
        let pos_range = |i: i32| (bucket_lower(s, i), bucket_upper(s, i));
        let first = match (self.negative.last(), self.zero_count, self.positive.first()) {
            (Some(&(i, _)), _, _) => neg_range(i),
            (None, z, _) if z > 0 => (0.0, 0.0),
            (None, _, Some(&(i, _))) => pos_range(i),
            _ => return,
        };
        let last = match (self.positive.last(), self.zero_count, self.negative.first()) {
            (Some(&(i, _)), _, _) => pos_range(i),
            (None, z, _) if z > 0 => (0.0, 0.0),
            (None, _, Some(&(i, _))) => neg_range(i),
            _ => return,
        };
        if !(self.min >= first.0 && self.min <= first.1) {
            self.min = self.min.clamp(first.0, first.1);
        }
        if !(self.max >= last.0 && self.max <= last.1) {
            self.max = self.max.clamp(last.0, last.1);
        }
    }
}
