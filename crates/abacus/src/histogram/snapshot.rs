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
    /// Scratch for one sign's sparse list, as long as a sign's dense array: the touched
    /// groups are written into it without a branch per slot (see [`Self::gather`]).
    sparse: Vec<(i32, u64)>,
    /// Scratch for the negative sparse list while `sparse` holds the positive one (see
    /// [`Self::view`]); as long as the negative dense array (empty for `U64`).
    sparse_negative: Vec<(i32, u64)>,
    /// Scratch for one sign's delta list.
    delta: Vec<(i32, u64)>,
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
            sparse: vec![(0, 0); groups * group_len],
            sparse_negative: vec![(0, 0); neg],
            delta: Vec::new(),
        }
    }

    /// Clears the scalars for the next series, and the buckets if a [`Self::view`] left
    /// them in place (`totals`, `delta_into` and a sparse view clear them as they go).
    pub(crate) fn reset(&mut self) {
        for sign in 0..2 {
            let mut bits = std::mem::take(&mut self.touched[sign]);
            while bits != 0 {
                let start = bits.trailing_zeros() as usize * self.group_len;
                bits &= bits - 1;
                self.dense[sign][start..start + self.group_len].fill(0);
            }
        }
        self.zero = 0;
        self.sum_u64 = 0;
        self.sum_f64 = 0.0;
        self.min_key = u64::MAX;
        self.max_key = 0;
    }

    /// [`gather_into`] of `sign` into the scratch list.
    fn gather(&mut self, sign: usize, clear: bool) -> usize {
        let (base, len) = (self.base, self.group_len);
        gather_into(
            &mut self.dense[sign],
            &mut self.touched[sign],
            base,
            len,
            clear,
            &mut self.sparse,
        )
    }

    /// Takes the accumulated buckets as sorted sparse lists (clearing them) together with
    /// the scalar totals.
    pub(crate) fn totals(&mut self) -> HistogramTotals {
        let n = self.gather(0, true);
        let positive = self.sparse[..n].to_vec();
        let n = self.gather(1, true);
        let negative = self.sparse[..n].to_vec();
        HistogramTotals {
            zero: self.zero,
            sum_u64: self.sum_u64,
            sum_f64: self.sum_f64,
            positive,
            negative,
        }
    }

    /// The accumulated cumulative totals as a [`HistogramView`] over this accumulator:
    /// what [`Self::totals`] then [`Self::snapshot`] give, with the same clamped extremes,
    /// without allocating. Positive-only histograms whose counts cannot overflow (every
    /// bucket below 2^40) are viewed in place, dense, and their buckets are cleared by the
    /// next [`Self::reset`]; others are gathered into the scratch lists.
    pub(crate) fn view(&mut self) -> HistogramView<'_> {
        let scale = self.scale as i8;
        let (min, max, sum) = self.extremes_and_sum(self.sum_u64, self.sum_f64);
        let integers = self.domain == Domain::U64;
        if self.touched[1] == 0 && self.zero < 1 << 62 {
            if let Some((span, base, total)) = self.dense_positive() {
                let counts = &self.dense[0][span];
                let count = self.zero + total;
                let first = counts.first().map(|_| base);
                let last = counts.len().checked_sub(1).map(|l| base + l as i32);
                let (min, max) = clamped_extremes(
                    scale,
                    count,
                    self.zero,
                    (first, last),
                    (None, None),
                    (min, max),
                );
                return HistogramView {
                    scale,
                    count,
                    sum,
                    min,
                    max,
                    zero_count: self.zero,
                    buckets: Buckets::Dense { counts, base },
                    integers,
                };
            }
        }
        let (base, len) = (self.base, self.group_len);
        let [dense_positive, dense_negative] = &mut self.dense;
        let [touched_positive, touched_negative] = &mut self.touched;
        let n = gather_into(
            dense_positive,
            touched_positive,
            base,
            len,
            true,
            &mut self.sparse,
        );
        let positive = &self.sparse[..n];
        let n = gather_into(
            dense_negative,
            touched_negative,
            base,
            len,
            true,
            &mut self.sparse_negative,
        );
        let negative = &self.sparse_negative[..n];
        let count = positive
            .iter()
            .chain(negative)
            .fold(self.zero, |acc, b| acc.saturating_add(b.1));
        let (min, max) = clamped_extremes(
            scale,
            count,
            self.zero,
            (positive.first().map(|b| b.0), positive.last().map(|b| b.0)),
            (negative.first().map(|b| b.0), negative.last().map(|b| b.0)),
            (min, max),
        );
        HistogramView {
            scale,
            count,
            sum,
            min,
            max,
            zero_count: self.zero,
            buckets: Buckets::Sparse { positive, negative },
            integers,
        }
    }

    /// The positions of the positive dense counts from the first to the last non-zero
    /// bucket, the bucket index of the first, and their total; `None` if a bucket holds 2^40 or more (then
    /// sums of up to 2^16 buckets could pass 2^56, and the sparse path, which saturates,
    /// is taken).
    fn dense_positive(&self) -> Option<(std::ops::Range<usize>, i32, u64)> {
        let touched = self.touched[0];
        if touched == 0 {
            return Some((0..0, self.base, 0));
        }
        let len = self.group_len;
        let lo = touched.trailing_zeros() as usize * len;
        let hi = (64 - touched.leading_zeros() as usize) * len;
        let span = &self.dense[0][lo..hi];
        // One pass, no early exit: vectorises.
        let (total, any) = span
            .iter()
            .fold((0u64, 0u64), |(t, o), &n| (t.wrapping_add(n), o | n));
        if any >= 1 << 40 || span.len() > 1 << 16 {
            return None;
        }
        let Some(first) = span.iter().position(|&n| n != 0) else {
            return Some((0..0, self.base, 0));
        };
        let last = span.iter().rposition(|&n| n != 0).unwrap_or(first);
        Some((
            lo + first..lo + last + 1,
            self.base + (lo + first) as i32,
            total,
        ))
    }

    /// The accumulated totals minus `prev` (as [`HistogramTotals::minus`]), replacing `prev`
    /// with the accumulated totals and clearing the buckets. `prev`'s lists are refilled in
    /// place, so a series whose bucket count did not grow needs no allocation, and an idle
    /// series (empty delta) none at all.
    pub(crate) fn delta_into(&mut self, prev: &mut HistogramTotals) -> HistogramTotals {
        let mut lists = [Vec::new(), Vec::new()];
        for (sign, delta) in lists.iter_mut().enumerate() {
            let n = self.gather(sign, true);
            let now = &self.sparse[..n];
            let before = if sign == 0 {
                &mut prev.positive
            } else {
                &mut prev.negative
            };
            self.delta.clear();
            subtract_into(now, before, &mut self.delta);
            // Exact size: snapshots can be held (a flush queue), so no slack.
            *delta = self.delta.to_vec();
            before.clear();
            before.extend_from_slice(now);
        }
        let [positive, negative] = lists;
        let delta = HistogramTotals {
            zero: self.zero.saturating_sub(prev.zero),
            sum_u64: self.sum_u64.wrapping_sub(prev.sum_u64),
            sum_f64: self.sum_f64 - prev.sum_f64,
            positive,
            negative,
        };
        prev.zero = self.zero;
        prev.sum_u64 = self.sum_u64;
        prev.sum_f64 = self.sum_f64;
        delta
    }

    /// `(min, max, sum)` as `f64`s: the extremes read into `self`, the sum of the domain.
    fn extremes_and_sum(&self, sum_u64: u64, sum_f64: f64) -> (f64, f64, f64) {
        match self.domain {
            Domain::U64 => (self.min_key as f64, self.max_key as f64, sum_u64 as f64),
            Domain::F64 => (key_f64(self.min_key), key_f64(self.max_key), sum_f64),
        }
    }

    /// Builds a snapshot of `totals` (cumulative or delta) with the extremes read into `self`.
    pub(crate) fn snapshot(&self, totals: HistogramTotals) -> HistogramSnapshot {
        let count = totals.count();
        let (min, max, sum) = self.extremes_and_sum(totals.sum_u64, totals.sum_f64);
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

/// Writes the non-zero slots of the touched groups of one sign's `dense` array into `out`,
/// in index order, and returns how many there are; with `clear`, also zeroes those groups
/// and their touched bits. Every slot is written and the length advances only past
/// non-zero ones: no branch per slot (the zero/non-zero pattern of sparse data is
/// unpredictable).
fn gather_into(
    dense: &mut [u64],
    touched: &mut u64,
    base: i32,
    len: usize,
    clear: bool,
    out: &mut [(i32, u64)],
) -> usize {
    let mut bits = *touched;
    if clear {
        *touched = 0;
    }
    let mut n = 0;
    while bits != 0 {
        let start = bits.trailing_zeros() as usize * len;
        bits &= bits - 1;
        let group = &mut dense[start..start + len];
        // Only from the first to the last non-zero slot: the edge groups of a distribution
        // are mostly empty, and finding the edges costs a few instructions per slot where
        // the copy below costs about twelve.
        if let Some(first) = group.iter().position(|&c| c != 0) {
            let end = group.iter().rposition(|&c| c != 0).unwrap_or(first) + 1;
            let index = base + (start + first) as i32;
            for (off, &count) in group[first..end].iter().enumerate() {
                out[n] = (index + off as i32, count);
                n += usize::from(count != 0);
            }
        }
        if clear {
            group.fill(0);
        }
    }
    n
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
    subtract_into(now, before, &mut out);
    out
}

/// Appends the non-zero `now - before` of every bucket of `now` to `out`.
fn subtract_into(now: &[(i32, u64)], before: &[(i32, u64)], out: &mut Vec<(i32, u64)>) {
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

/// `(min, max)` clamped to the value ranges of the lowest and highest non-empty buckets
/// (see [`HistogramSnapshot::clamp_extremes`]); `(0, 0)` when `count` is zero.
/// `positive` and `negative` are the (lowest, highest) indexes of non-empty buckets.
fn clamped_extremes(
    scale: i8,
    count: u64,
    zero_count: u64,
    positive: (Option<i32>, Option<i32>),
    negative: (Option<i32>, Option<i32>),
    (mut min, mut max): (f64, f64),
) -> (f64, f64) {
    if count == 0 {
        return (0.0, 0.0);
    }
    // Value range of the lowest and highest non-empty buckets (only those two).
    let s = scale;
    let neg_range = |i: i32| (-bucket_upper(s, i), -bucket_lower(s, i));
    let pos_range = |i: i32| (bucket_lower(s, i), bucket_upper(s, i));
    let first = match (negative.1, zero_count, positive.0) {
        (Some(i), _, _) => neg_range(i),
        (None, z, _) if z > 0 => (0.0, 0.0),
        (None, _, Some(i)) => pos_range(i),
        _ => return (min, max),
    };
    let last = match (positive.1, zero_count, negative.0) {
        (Some(i), _, _) => pos_range(i),
        (None, z, _) if z > 0 => (0.0, 0.0),
        (None, _, Some(i)) => neg_range(i),
        _ => return (min, max),
    };
    if !(min >= first.0 && min <= first.1) {
        min = min.clamp(first.0, first.1);
    }
    if !(max >= last.0 && max <= last.1) {
        max = max.clamp(last.0, last.1);
    }
    (min, max)
}

/// The rank `ceil(q * count)` of quantile `q` (in `0..=1`) among `count` samples, clamped
/// to `1..=count`; `ceil` by truncation and one comparison (no libm call). Floats from 2^52
/// up are integers, so their truncation is exact.
fn ceil_rank(q: f64, count: u64) -> u64 {
    let x = q * count as f64;
    let t = x as u64;
    let rank = if (t as f64) < x {
        t.saturating_add(1)
    } else {
        t
    };
    rank.clamp(1, count)
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
        // The usual handful of quantiles are ordered on the stack (no allocation).
        let mut small = [0usize; 8];
        let mut large = Vec::new();
        let order: &mut [usize] = if qs.len() <= small.len() {
            &mut small[..qs.len()]
        } else {
            large.resize(qs.len(), 0);
            &mut large
        };
        let mut len = 0;
        for (i, q) in qs.iter().enumerate() {
            if (0.0..=1.0).contains(q) {
                order[len] = i;
                len += 1;
            }
        }
        let order = &mut order[..len];
        order.sort_unstable_by(|&a, &b| qs[a].total_cmp(&qs[b]));
        let rank = |i: usize| ceil_rank(qs[i], self.count);
        // Buckets in ascending value order (negative, zero, positive); the representative
        // value (two exponentials) is only computed for the buckets a quantile lands in.
        let Some(&first) = order.first() else {
            return out;
        };
        let (mut next, mut seen, mut r) = (0, 0u64, rank(first));
        // One plain loop per part (a loop over a chain tests which part is current on every
        // bucket, and a closure kept out of line spills the walk's state): 3x fewer
        // instructions per bucket.
        macro_rules! visit {
            ($sign:expr, $index:expr, $n:expr) => {
                seen = seen.saturating_add($n);
                while r <= seen {
                    let v = if r == 1 {
                        self.min
                    } else if r == self.count {
                        self.max
                    } else {
                        self.representative($sign, $index).clamp(self.min, self.max)
                    };
                    out[order[next]] = Some(v);
                    next += 1;
                    if next == order.len() {
                        return out;
                    }
                    r = rank(order[next]);
                }
            };
        }
        for &(index, n) in self.negative.iter().rev() {
            visit!(-1, index, n);
        }
        if self.zero_count > 0 {
            visit!(0, 0, self.zero_count);
        }
        // Positive buckets, four at a time while the next rank lies beyond them (most of
        // the walk; 1,066 -> 980 instructions per 3-quantile call on `hotloop snapshot`'s
        // 10,000 series), then one by one.
        let mut chunks = self.positive.chunks_exact(4);
        for chunk in chunks.by_ref() {
            let total = chunk.iter().fold(seen, |acc, b| acc.saturating_add(b.1));
            if total < r {
                seen = total;
                continue;
            }
            for &(index, n) in chunk {
                visit!(1, index, n);
            }
        }
        for &(index, n) in chunks.remainder() {
            visit!(1, index, n);
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
                // An integer bucket holding a single integer reports it exactly. Both bounds
                // are positive, so truncation is `floor` (without a libm call); above 2^64
                // the casts saturate and the bucket is far wider than one integer.
                let (lo_int, hi_int) = (lo as u64, hi as u64);
                if self.integers && lo_int.checked_add(1) == Some(hi_int) {
                    hi_int as f64
                } else {
                    // `bucket_representative`, from the bounds already at hand.
                    2.0 * lo * hi / (lo + hi)
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
        self.view().count_le_many(bounds)
    }

    /// The snapshot as a [`HistogramView`] (bucket lists borrowed).
    pub(crate) fn view(&self) -> HistogramView<'_> {
        HistogramView {
            scale: self.scale,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            zero_count: self.zero_count,
            buckets: Buckets::Sparse {
                positive: &self.positive,
                negative: &self.negative,
            },
            integers: self.integers,
        }
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
        let ends = |l: &[(i32, u64)]| (l.first().map(|b| b.0), l.last().map(|b| b.0));
        (self.min, self.max) = clamped_extremes(
            self.scale,
            self.count,
            self.zero_count,
            ends(&self.positive),
            ends(&self.negative),
            (self.min, self.max),
        );
    }
}

/// What [`HistogramView::count_le_indexed`] needs of ascending boundaries beyond their
/// values; it depends on the scale, the value kind and the boundaries only, so a renderer
/// computes it once for every histogram of that shape.
#[derive(Debug)]
pub(crate) struct BoundIndex {
    scale: i8,
    integers: bool,
    /// The positive bucket index each boundary falls in (`i32::MIN` for a boundary that is
    /// not a normal number).
    index: Vec<i32>,
    /// Whether that bucket, when non-empty, counts as `<= le` (see `straddle_included`);
    /// `false` where it is never asked (negative, NaN or non-normal boundaries).
    include: Vec<bool>,
}

impl BoundIndex {
    pub(crate) fn new(scale: i8, integers: bool, bounds: &[f64]) -> Self {
        let table = IndexTable::get(scale.max(0) as u8);
        let index: Vec<i32> = bounds
            .iter()
            .map(|&le| {
                if le.is_normal() {
                    table.index(le.abs())
                } else {
                    i32::MIN
                }
            })
            .collect();
        let include = bounds
            .iter()
            .zip(&index)
            .map(|(&le, &idx)| {
                le >= 0.0 && idx != i32::MIN && straddle_included(scale, integers, idx, le)
            })
            .collect();
        BoundIndex {
            scale,
            integers,
            index,
            include,
        }
    }
}

/// Whether positive bucket `index` at `scale`, which contains `le`, counts as `<= le`.
fn straddle_included(scale: i8, integers: bool, index: i32, le: f64) -> bool {
    let (lo, hi) = range(scale, index);
    if hi <= le {
        true
    } else if integers {
        // Integers in (lo, hi]: all <= le iff floor(hi) <= le; none iff the first
        // integer above lo exceeds le.
        if hi.floor() <= le {
            true
        } else if lo.floor() + 1.0 > le {
            false
        } else {
            bucket_representative(scale, index) <= le
        }
    } else {
        bucket_representative(scale, index) <= le
    }
}

/// A histogram with borrowed bucket lists: the fields of a [`HistogramSnapshot`], as
/// produced by a snapshot or read straight from a collection's scratch (the renderer's
/// path that builds no snapshot). The classic-bucket conversion lives here, so both
/// paths share it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HistogramView<'a> {
    pub(crate) scale: i8,
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) zero_count: u64,
    pub(crate) buckets: Buckets<'a>,
    pub(crate) integers: bool,
}

/// The buckets of a [`HistogramView`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Buckets<'a> {
    /// Non-zero `(index, count)` lists, ascending index (as in [`HistogramSnapshot`]).
    Sparse {
        positive: &'a [(i32, u64)],
        negative: &'a [(i32, u64)],
    },
    /// Positive buckets only, by position: `counts[p]` is bucket `base + p`; the first and
    /// last are non-zero, and the counts add up to less than 2^57 (no sum can saturate).
    Dense { counts: &'a [u64], base: i32 },
}

impl HistogramView<'_> {
    /// As [`HistogramSnapshot::count_le_many`].
    pub(crate) fn count_le_many(&self, bounds: &[f64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds.len());
        let at = BoundIndex::new(self.scale, self.integers, bounds);
        self.count_le_indexed(bounds, &at, &mut out);
        out
    }

    /// [`HistogramSnapshot::count_le_many`] with the boundaries' [`BoundIndex`] given (at
    /// this view's scale and value kind), appending to `out`.
    pub(crate) fn count_le_indexed(&self, bounds: &[f64], at: &BoundIndex, out: &mut Vec<u64>) {
        debug_assert_eq!(bounds.len(), at.index.len());
        debug_assert_eq!((at.scale, at.integers), (self.scale, self.integers));
        let (positive, negative) = match self.buckets {
            Buckets::Sparse { positive, negative } => (positive, negative),
            Buckets::Dense { counts, base } => {
                self.count_le_dense(counts, base, bounds, at, out);
                return;
            }
        };
        let below_zero = negative.iter().fold(0u64, |acc, b| acc.saturating_add(b.1));
        let (mut i, mut prefix) = (0, 0u64);
        for ((&le, &idx), &include) in bounds.iter().zip(&at.index).zip(&at.include) {
            let total = if self.count == 0 || le.is_nan() {
                0
            } else if le >= self.max {
                self.count
            } else if le < 0.0 {
                self.count_le_negative(le)
            } else {
                while i < positive.len() && positive[i].0 < idx {
                    prefix = prefix.saturating_add(positive[i].1);
                    i += 1;
                }
                let straddle = match positive.get(i) {
                    Some(&(j, n)) if j == idx && include => n,
                    _ => 0,
                };
                below_zero
                    .saturating_add(self.zero_count)
                    .saturating_add(prefix)
                    .saturating_add(straddle)
            };
            out.push(total);
        }
    }

    /// [`Self::count_le_indexed`] over [`Buckets::Dense`]: the same totals, step by step
    /// (no negative buckets; `prefix` is the sum of the buckets below the highest boundary
    /// index so far, and only a boundary at that index can count its straddling bucket, as
    /// in the sparse walk). No sum can saturate there, so plain additions are exact.
    fn count_le_dense(
        &self,
        counts: &[u64],
        base: i32,
        bounds: &[f64],
        at: &BoundIndex,
        out: &mut Vec<u64>,
    ) {
        let (mut p, mut prefix) = (0usize, 0u64);
        for ((&le, &idx), &include) in bounds.iter().zip(&at.index).zip(&at.include) {
            let total = if self.count == 0 || le.is_nan() {
                0
            } else if le >= self.max {
                self.count
            } else if le < 0.0 {
                0
            } else {
                // Position of `idx`, clamped to the span (below it: nothing is smaller).
                let pos = (i64::from(idx) - i64::from(base)).clamp(0, counts.len() as i64) as usize;
                if pos > p {
                    prefix += counts[p..pos].iter().sum::<u64>();
                    p = pos;
                }
                let straddle = match counts.get(p) {
                    Some(&n) if n != 0 && idx >= base && pos == p && include => n,
                    _ => 0,
                };
                self.zero_count + prefix + straddle
            };
            out.push(total);
        }
    }

    /// Whether positive bucket `index`, which contains `le`, counts as `<= le`.
    #[cfg(test)]
    fn straddle_included(&self, index: i32, le: f64) -> bool {
        straddle_included(self.scale, self.integers, index, le)
    }

    /// Samples `<= le` for a negative `le`: only negative buckets can qualify.
    fn count_le_negative(&self, le: f64) -> u64 {
        let Buckets::Sparse { negative, .. } = self.buckets else {
            return 0;
        };
        let mut total = 0;
        // Most negative first: descending magnitude.
        for &(i, n) in negative.iter().rev() {
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
}

#[cfg(test)]
mod tests {
    //! The fast paths against the simple computations they replaced.

    use super::*;
    use proptest::prelude::*;

    /// The previous `quantiles`: heap-allocated order and ranks, stable sort.
    fn quantiles_reference(h: &HistogramSnapshot, qs: &[f64]) -> Vec<Option<f64>> {
        let mut out = vec![None; qs.len()];
        if h.count == 0 {
            return out;
        }
        let mut order: Vec<usize> = (0..qs.len())
            .filter(|&i| (0.0..=1.0).contains(&qs[i]))
            .collect();
        order.sort_by(|&a, &b| qs[a].total_cmp(&qs[b]));
        let ranks: Vec<u64> = order
            .iter()
            .map(|&i| ((qs[i] * h.count as f64).ceil() as u64).clamp(1, h.count))
            .collect();
        let neg = h.negative.iter().rev().map(|&(i, n)| (-1i8, i, n));
        let zero = (h.zero_count > 0).then_some((0i8, 0, h.zero_count));
        let pos = h.positive.iter().map(|&(i, n)| (1i8, i, n));
        let mut next = 0;
        let mut seen = 0u64;
        for (sign, index, n) in neg.chain(zero).chain(pos) {
            seen = seen.saturating_add(n);
            while next < order.len() && ranks[next] <= seen {
                let r = ranks[next];
                let v = if r == 1 {
                    h.min
                } else if r == h.count {
                    h.max
                } else {
                    h.representative(sign, index).clamp(h.min, h.max)
                };
                out[order[next]] = Some(v);
                next += 1;
            }
        }
        out
    }

    /// Snapshots whose buckets do not add up to `count` (built by hand or deserialised)
    /// get some answer for every quantile, and never a panic, from the walk.
    #[test]
    fn inconsistent_counts_do_not_panic() {
        let qs = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];
        for (count, zero) in [(1, 0), (3, 5), (1_000, 0), (u64::MAX, 7), (10, 10)] {
            let h = HistogramSnapshot {
                scale: 4,
                count,
                sum: 0.0,
                min: -3.0,
                max: 90.0,
                zero_count: zero,
                positive: vec![(2, 4), (40, 0), (100, 3)],
                negative: vec![(1, 2), (9, 1)],
                integers: false,
            };
            assert_eq!(h.quantiles(&qs).len(), qs.len());
        }
    }

    /// The previous `representative` of a positive bucket (libm `floor`, bounds computed
    /// twice) against the current one, over every bucket of the integer range and past it.
    #[test]
    fn positive_representatives_match_the_floor_formula() {
        for scale in 0..=crate::histogram::index::MAX_SCALE {
            for integers in [true, false] {
                let mut h = HistogramSnapshot::empty(scale, integers);
                h.count = 1;
                for index in -(4 << scale)..(70 << scale) {
                    let (lo, hi) = range(scale, index);
                    let expected = if integers && lo.floor() + 1.0 == hi.floor() {
                        hi.floor()
                    } else {
                        bucket_representative(scale, index)
                    };
                    let got = h.representative(1, index);
                    assert_eq!(
                        got.to_bits(),
                        expected.to_bits(),
                        "scale {scale} index {index}"
                    );
                }
            }
        }
    }

    /// The previous `count_le_many`: one table lookup per boundary and histogram.
    fn count_le_reference(h: &HistogramSnapshot, bounds: &[f64]) -> Vec<u64> {
        let below_zero = h
            .negative
            .iter()
            .fold(0u64, |acc, b| acc.saturating_add(b.1));
        let table = IndexTable::get(h.scale.max(0) as u8);
        let (mut i, mut prefix) = (0, 0u64);
        let mut out = Vec::new();
        for &le in bounds {
            let total = if h.count == 0 || le.is_nan() {
                0
            } else if le >= h.max {
                h.count
            } else if le < 0.0 {
                h.view().count_le_negative(le)
            } else {
                let idx = if le.is_normal() {
                    table.index(le)
                } else {
                    i32::MIN
                };
                while i < h.positive.len() && h.positive[i].0 < idx {
                    prefix = prefix.saturating_add(h.positive[i].1);
                    i += 1;
                }
                let straddle = match h.positive.get(i) {
                    Some(&(j, n)) if j == idx && h.view().straddle_included(j, le) => n,
                    _ => 0,
                };
                below_zero
                    .saturating_add(h.zero_count)
                    .saturating_add(prefix)
                    .saturating_add(straddle)
            };
            out.push(total);
        }
        out
    }

    /// A histogram of `values` (both signs when `float`), through an atomic histogram.
    fn histogram(values: &[i64], float: bool, scale: u8) -> HistogramSnapshot {
        let domain = if float { Domain::F64 } else { Domain::U64 };
        let atomic = super::super::atomic::AtomicHistogram::new(domain, scale);
        for &v in values {
            if float {
                atomic.record_f64::<false>(v as f64 / 8.0, 1);
            } else {
                atomic.record_u64::<false>(v.unsigned_abs(), 1);
            }
        }
        let mut raw = RawHistogram::new(domain, scale);
        atomic.read_into(&mut raw, false);
        let totals = raw.totals();
        raw.snapshot(totals)
    }

    fn values() -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(
            prop_oneof![-100_000i64..100_000, -50i64..50, Just(0i64), 1i64..1 << 40],
            0..300,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn ceil_rank_is_the_clamped_ceiling(
            q in prop_oneof![0.0f64..=1.0, Just(0.0), Just(0.5), Just(0.999), Just(1.0)],
            count in prop_oneof![1u64..100, 1u64..=u64::MAX, Just(u64::MAX), Just(1 << 53)],
        ) {
            let expected = ((q * count as f64).ceil() as u64).clamp(1, count);
            prop_assert_eq!(ceil_rank(q, count), expected);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn quantiles_match_the_reference(
            values in values(),
            float in any::<bool>(),
            scale in 0u8..=8,
            qs in prop::collection::vec(prop_oneof![0.0f64..=1.0, Just(0.0), Just(1.0), -1.0f64..2.0], 0..12),
        ) {
            let h = histogram(&values, float, scale);
            prop_assert_eq!(h.quantiles(&qs), quantiles_reference(&h, &qs));
        }

        #[test]
        fn indexed_classic_counts_match_the_reference(
            values in values(),
            float in any::<bool>(),
            scale in 0u8..=8,
            mut bounds in prop::collection::vec(prop_oneof![
                -1000.0f64..1000.0,
                (0u32..20).prop_map(|e| f64::from(1u32 << e)),
                (1u32..5000).prop_map(f64::from),
                Just(0.0),
                Just(f64::MIN_POSITIVE / 4.0),
            ], 0..30),
        ) {
            bounds.sort_by(f64::total_cmp);
            let h = histogram(&values, float, scale);
            prop_assert_eq!(h.count_le_many(&bounds), count_le_reference(&h, &bounds));
        }

        #[test]
        fn gathered_totals_and_deltas_match_sparse_subtraction(
            first in values(),
            second in values(),
            float in any::<bool>(),
            scale in 0u8..=8,
        ) {
            let domain = if float { Domain::F64 } else { Domain::U64 };
            let atomic = super::super::atomic::AtomicHistogram::new(domain, scale);
            let record = |vs: &[i64]| {
                for &v in vs {
                    if float {
                        atomic.record_f64::<false>(v as f64 / 8.0, 1);
                    } else {
                        atomic.record_u64::<false>(v.unsigned_abs(), 1);
                    }
                }
            };
            let mut raw = RawHistogram::new(domain, scale);
            let mut prev = HistogramTotals::default();
            let mut reference_prev = HistogramTotals::default();
            for vs in [&first, &second, &first] {
                record(vs);
                // Reference: sparse totals, then `minus`.
                raw.reset();
                atomic.read_into(&mut raw, false);
                let totals = raw.totals();
                // The gathered lists are the non-zero dense slots, in index order.
                let mut dense = std::collections::BTreeMap::new();
                for &(i, n) in &totals.positive {
                    prop_assert!(n != 0);
                    prop_assert!(dense.insert(i, n).is_none());
                }
                prop_assert_eq!(totals.positive.iter().map(|b| b.0).collect::<Vec<_>>(),
                    dense.keys().copied().collect::<Vec<_>>());
                let expected = totals.minus(&reference_prev);
                reference_prev = totals;
                // Fast path: delta against `prev` refilled in place.
                raw.reset();
                atomic.read_into(&mut raw, false);
                let delta = raw.delta_into(&mut prev);
                prop_assert_eq!(&delta.positive, &expected.positive);
                prop_assert_eq!(&delta.negative, &expected.negative);
                prop_assert_eq!(delta.zero, expected.zero);
                prop_assert_eq!(delta.sum_u64, expected.sum_u64);
                prop_assert_eq!(delta.sum_f64.to_bits(), expected.sum_f64.to_bits());
                prop_assert_eq!(&prev.positive, &reference_prev.positive);
                prop_assert_eq!(&prev.negative, &reference_prev.negative);
                prop_assert_eq!(prev.zero, reference_prev.zero);
                // The accumulator is left clear for the next series.
                prop_assert!(raw.dense.iter().all(|d| d.iter().all(|&n| n == 0)));
                prop_assert_eq!(raw.touched, [0, 0]);
            }
        }
    }
}
