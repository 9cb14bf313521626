//! The write side of a histogram: atomics that one thread (or, on the shared fallback
//! path, several) updates, and that the collector reads without stopping writers.

use std::sync::OnceLock;

use super::index::IndexTable;
use super::snapshot::{HistogramSnapshot, RawHistogram};
use std::sync::atomic::{AtomicU64, Ordering};

/// The value type a histogram records. It decides the index range and how `sum` is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Non-negative integers (latencies in ms, sizes). `sum` is an exact `u64`, wrapping.
    U64,
    /// Any finite `f64`, negative values included. `sum` holds `f64` bits.
    F64,
}

/// Octaves per lazily allocated group of buckets: `4 * 2^scale` counters (512 bytes at the
/// default scale). Latency distributions usually span a few consecutive octaves, so a
/// handful of groups are touched; the pointer table stays small and the hot path does one
/// lookup.
const GROUP_OCTAVES: usize = 4;

/// Octaves covered by the `F64` domain: exponents `-128..128`. Magnitudes at or below
/// `2^-128` count as zero (the zero threshold); magnitudes of `2^128` and above land in
/// the top bucket (min and max stay exact).
const F64_MIN_OCTAVE: i32 = -128;
const F64_OCTAVES: usize = 256;
/// The `U64` domain: value 1 is in octave -1 (its bucket is `(2^-1/2^s, 1]`), `u64::MAX`
/// is in octave 63.
const U64_MIN_OCTAVE: i32 = -1;
const U64_OCTAVES: usize = 65;

type Group = Box<[AtomicU64]>;

/// `[positive, negative]` group tables of the `F64` domain.
type WideGroups = Box<[Box<[OnceLock<Group>]>; 2]>;

/// Groups of the `U64` domain, stored inline in the histogram (one pointer less on the
/// hot path).
const U64_GROUPS: usize = U64_OCTAVES.div_ceil(GROUP_OCTAVES);

/// Lazily allocated bucket storage for one sign: one `OnceLock` per group of octaves.
///
/// Invariant: a group once set is never replaced. `OnceLock::get` is an Acquire load that
/// pairs with the Release of the initialising store, so a reader that sees a group sees it
/// zeroed or later.
#[inline]
fn group_counter(
    groups: &[OnceLock<Group>],
    p: usize,
    group_shift: u32,
    group_len: usize,
) -> &AtomicU64 {
    let last = groups.len() - 1;
    let (g, off) = match p >> group_shift {
        g if g <= last => (g, p & (group_len - 1)),
        // Above the range (F64 magnitudes >= 2^128): the top bucket.
        _ => (last, group_len - 1),
    };
    let group = groups[g].get_or_init(|| (0..group_len).map(|_| AtomicU64::new(0)).collect());
    &group[off]
}

fn new_groups(octaves: usize) -> Box<[OnceLock<Group>]> {
    (0..octaves.div_ceil(GROUP_OCTAVES))
        .map(|_| OnceLock::new())
        .collect()
}

/// `(base index, group length, groups per sign)` of the bucket layout of `domain` at
/// `scale`; the read side mirrors it in dense arrays.
pub(crate) fn layout(domain: Domain, scale: u8) -> (i32, usize, usize) {
    let scale = u32::from(scale.min(super::index::MAX_SCALE as u8));
    let (min_octave, octaves) = match domain {
        Domain::U64 => (U64_MIN_OCTAVE, U64_OCTAVES),
        Domain::F64 => (F64_MIN_OCTAVE, F64_OCTAVES),
    };
    (
        min_octave << scale,
        GROUP_OCTAVES << scale,
        octaves.div_ceil(GROUP_OCTAVES),
    )
}

/// Adds `n` to `counter`.
///
/// Single-writer mode (`SHARED == false`) is a plain load and store: only the thread that
/// owns the shard writes this counter, so no read-modify-write is needed, and the collector
/// only reads. The shared fallback path uses `fetch_add`.
#[inline]
fn bump<const SHARED: bool>(counter: &AtomicU64, n: u64) {
    if SHARED {
        // Relaxed: a pure sum; nothing else is published through it.
        counter.fetch_add(n, Ordering::Relaxed);
    } else {
        // Relaxed: single writer per shard (handover between threads is ordered by the
        // shard pool's mutex); readers want a value, no other data is published through it.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// Order-preserving map of an `f64` to `u64`, so `fetch_min`/`fetch_max` work on floats.
#[inline]
pub(crate) fn f64_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Inverse of [`f64_key`].
#[inline]
pub(crate) fn key_f64(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

/// A histogram's atomics. See the module docs of [`crate::histogram`].
#[derive(Debug)]
// `repr(C)`: the fields every record touches (sum, extremes, zero, layout) share the first
// cache line; the group pointers follow.
#[repr(C)]
pub(crate) struct AtomicHistogram {
    /// Samples equal to zero (or below the zero threshold in the `F64` domain).
    zero: AtomicU64,
    /// `U64`: wrapping sum of values. `F64`: `f64` bits of the sum.
    sum: AtomicU64,
    /// Window minimum as an order key (`u64::MAX` when empty); reset by the collector with `swap`.
    min: AtomicU64,
    /// Window maximum as an order key (`0` when empty); reset by the collector with `swap`.
    max: AtomicU64,
    /// Index of the domain's lowest bucket: positions are `index - base`.
    base: i32,
    /// `GROUP_OCTAVES << scale` and its log2.
    group_len: u32,
    group_shift: u8,
    scale: u8,
    domain: Domain,
    /// The index table of `scale` (a static). After the fields above, which fill the
    /// cell's first cache line, and before the group pointers, which it shares a line with.
    table: &'static IndexTable,
    /// Positive buckets of the `U64` domain.
    narrow: [OnceLock<Group>; U64_GROUPS],
    /// `[positive, negative]` buckets of the `F64` domain.
    wide: Option<WideGroups>,
}

impl AtomicHistogram {
    pub(crate) fn new(domain: Domain, scale: u8) -> Self {
        let scale = IndexTable::get(scale).scale();
        let (wide, min_octave) = match domain {
            Domain::U64 => (None, U64_MIN_OCTAVE),
            Domain::F64 => (
                Some(Box::new([new_groups(F64_OCTAVES), new_groups(F64_OCTAVES)])),
                F64_MIN_OCTAVE,
            ),
        };
        AtomicHistogram {
            domain,
            scale: scale as u8,
            table: IndexTable::get(scale as u8),
            base: min_octave << scale,
            group_shift: (scale + GROUP_OCTAVES.trailing_zeros()) as u8,
            group_len: (GROUP_OCTAVES << scale) as u32,
            zero: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            narrow: [const { OnceLock::new() }; U64_GROUPS],
            wide,
        }
    }

    /// Counter of bucket `index` (at this histogram's scale); indexes above the range land
    /// in the top bucket, below it `None` (zero).
    #[inline]
    fn counter_at<'a>(&self, groups: &'a [OnceLock<Group>], index: i32) -> Option<&'a AtomicU64> {
        let p = index.checked_sub(self.base)?;
        if p < 0 || groups.is_empty() {
            return None;
        }
        Some(group_counter(
            groups,
            p as usize,
            u32::from(self.group_shift),
            self.group_len as usize,
        ))
    }

    /// The index table of this histogram's scale (a static, hot in cache).
    #[inline]
    fn table(&self) -> &'static IndexTable {
        self.table
    }

    /// Positive and negative bucket groups of either domain.
    fn signs(&self) -> (&[OnceLock<Group>], &[OnceLock<Group>]) {
        match &self.wide {
            Some(w) => (&w[0], &w[1]),
            None => (&self.narrow, &[]),
        }
    }

    /// Adds a whole histogram: bucket counts (re-indexed to this scale), sum and extremes.
    pub(crate) fn add_snapshot<const SHARED: bool>(&self, h: &HistogramSnapshot) {
        if h.count == 0 {
            return;
        }
        let ours = self.table().scale() as i32;
        let theirs = i32::from(h.scale);
        let map = |i: i32| -> i32 {
            if theirs >= ours {
                i >> (theirs - ours).min(31)
            } else {
                i.saturating_mul(1 << (ours - theirs).min(30))
            }
        };
        bump::<SHARED>(&self.zero, h.zero_count);
        let (positive, negative) = self.signs();
        for &(i, n) in &h.positive {
            match self.counter_at(positive, map(i)) {
                Some(c) => bump::<SHARED>(c, n),
                None => bump::<SHARED>(&self.zero, n),
            }
        }
        for &(i, n) in &h.negative {
            let c = self.counter_at(negative, map(i));
            bump::<SHARED>(c.unwrap_or(&self.zero), n);
        }
        match self.domain {
            Domain::U64 => {
                bump::<SHARED>(&self.sum, h.sum.max(0.0).round() as u64);
                self.update_extremes(h.min.max(0.0).round() as u64);
                self.update_extremes(h.max.max(0.0).round() as u64);
            }
            Domain::F64 => {
                if SHARED {
                    // Relaxed: CAS loop only prevents lost updates.
                    let _ = self
                        .sum
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                            Some((f64::from_bits(b) + h.sum).to_bits())
                        });
                } else {
                    // Relaxed: single writer.
                    let b = self.sum.load(Ordering::Relaxed);
                    self.sum
                        .store((f64::from_bits(b) + h.sum).to_bits(), Ordering::Relaxed);
                }
                self.update_extremes(f64_key(h.min));
                self.update_extremes(f64_key(h.max));
            }
        }
    }

    #[inline]
    fn update_extremes(&self, key: u64) {
        // Relaxed loads first: a read-modify-write only when the value is a new extreme,
        // which after the first samples of a window is rare. fetch_min/fetch_max (not a
        // store) because the collector resets these with `swap` concurrently.
        // Relaxed: min/max are independent values, no other data is published through them.
        if key < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(key, Ordering::Relaxed);
        }
        // Relaxed: as above.
        if key > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(key, Ordering::Relaxed);
        }
    }

    /// Records `n` samples of the integer `v` (domain `U64`).
    #[inline(always)]
    pub(crate) fn record_u64<const SHARED: bool>(&self, v: u64, n: u64) {
        debug_assert_eq!(self.domain, Domain::U64);
        if v == 0 {
            bump::<SHARED>(&self.zero, n);
        } else {
            // Integers >= 1 are always in range: position = index + 2^scale >= 0, which is
            // `index - base` in the `U64` domain (`base = -2^scale`).
            let p = self.table().position_u64(v);
            // Always in range for integers: no clamp needed (the bounds check stays, it is
            // one well-predicted branch).
            let len = self.group_len as usize;
            let group = self.narrow[p >> self.group_shift]
                .get_or_init(|| (0..len).map(|_| AtomicU64::new(0)).collect());
            bump::<SHARED>(&group[p & (len - 1)], n);
        }
        bump::<SHARED>(&self.sum, v.wrapping_mul(n));
        self.update_extremes(v);
    }

    /// Records `n` samples of the float `v` (domain `F64`). Non-finite values are the
    /// caller's to refuse; they are ignored here.
    #[inline]
    pub(crate) fn record_f64<const SHARED: bool>(&self, v: f64, n: u64) {
        if !v.is_finite() {
            return;
        }
        if self.domain == Domain::U64 {
            // An integer histogram asked for a float: round to the nearest non-negative integer.
            self.record_u64::<SHARED>(v.max(0.0).round() as u64, n);
            return;
        }
        let (positive, negative) = self.signs();
        let counter = if v > 0.0 {
            self.counter_at(positive, self.table().index(v))
        } else if v < 0.0 {
            self.counter_at(negative, self.table().index(-v))
        } else {
            None
        };
        bump::<SHARED>(counter.unwrap_or(&self.zero), n);
        let add = v * n as f64;
        if SHARED {
            // Relaxed: the sum is independent; the CAS loop only guarantees no lost update.
            let _ = self
                .sum
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some((f64::from_bits(bits) + add).to_bits())
                });
        } else {
            // Relaxed: single writer, as in `bump`.
            let bits = self.sum.load(Ordering::Relaxed);
            self.sum
                .store((f64::from_bits(bits) + add).to_bits(), Ordering::Relaxed);
        }
        self.update_extremes(f64_key(v));
    }

    /// Adds the cumulative totals of this histogram to `acc` and takes the window
    /// extremes. With `reset_extremes`, min and max are swapped back to empty so the next
    /// window starts fresh (only the collector does this).
    ///
    /// Consistency: each counter is read once with a Relaxed load; a sample being recorded
    /// concurrently may be visible in its bucket but not yet in `sum` (or the reverse). Counts
    /// are never lost: what is not visible now is visible to the next read.
    pub(crate) fn read_into(&self, acc: &mut RawHistogram, reset_extremes: bool) {
        // Relaxed: monotone single-writer counter, read for its value only.
        acc.zero = acc.zero.wrapping_add(self.zero.load(Ordering::Relaxed));
        // Relaxed: as above.
        let sum = self.sum.load(Ordering::Relaxed);
        match self.domain {
            Domain::U64 => acc.sum_u64 = acc.sum_u64.wrapping_add(sum),
            Domain::F64 => acc.sum_f64 += f64::from_bits(sum),
        }
        let (min, max) = if reset_extremes {
            // Relaxed swaps: RMW so no concurrent fetch_min/fetch_max is lost; ordering with
            // the bucket reads is not needed (extremes are clamped to the buckets later).
            (
                self.min.swap(u64::MAX, Ordering::Relaxed),
                self.max.swap(0, Ordering::Relaxed),
            )
        } else {
            // Relaxed: value reads only.
            (
                self.min.load(Ordering::Relaxed),
                self.max.load(Ordering::Relaxed),
            )
        };
        acc.min_key = acc.min_key.min(min);
        acc.max_key = acc.max_key.max(max);
        let (positive, negative) = self.signs();
        for (sign, groups) in [positive, negative].into_iter().enumerate() {
            // Gather the allocated groups first, then read them together (see `add_groups`):
            // the loads of different groups are independent, so their cache misses overlap
            // instead of being paid one group after another.
            let mut present: [(usize, &[AtomicU64]); 8] = [(0, &[]); 8];
            let mut n = 0;
            for (g, group) in groups.iter().enumerate() {
                let Some(group) = group.get() else { continue };
                acc.touched[sign] |= 1 << g;
                present[n] = (g, group);
                n += 1;
                if n == present.len() {
                    add_groups(&present[..n], &mut acc.dense[sign]);
                    n = 0;
                }
            }
            add_groups(&present[..n], &mut acc.dense[sign]);
        }
    }
}

/// Adds the counters of `groups` (group index, counters) into `dense`.
///
/// Two passes, for memory-level parallelism: the groups are cold (one collection reads
/// megabytes), so the first pass loads one counter per cache line of every group (the first
/// of each 8 and the last, as an allocation need not be line-aligned; values discarded),
/// which puts all their misses in flight at once with little work between them; the second
/// pass adds every counter, now cached, in one straight loop per group. Reading the line
/// heads twice is cheaper than the per-line loops that read each counter once (callgrind,
/// `hotloop snapshot`: 7,300 -> 5,800 instructions per series), and dropping the first
/// pass made the 10k-series snapshot slower (interleaved runs: 34-51 ms against 34-42 ms).
fn add_groups(groups: &[(usize, &[AtomicU64])], dense: &mut [u64]) {
    const LINE: usize = 8;
    let Some(&(_, first)) = groups.first() else {
        return;
    };
    let len = first.len();
    let mut touch = 0u64;
    for &(_, group) in groups {
        for line in (0..len).step_by(LINE) {
            // Relaxed: value discarded; only the cache line is wanted.
            touch |= group[line].load(Ordering::Relaxed);
        }
        // Relaxed: as above (an allocation need not be line-aligned: one more line).
        touch |= group[len - 1].load(Ordering::Relaxed);
    }
    std::hint::black_box(touch);
    for &(g, group) in groups {
        let dense = &mut dense[g * len..(g + 1) * len];
        for (slot, counter) in dense.iter_mut().zip(group) {
            // Relaxed: monotone counter, read for its value only.
            *slot += counter.load(Ordering::Relaxed);
        }
    }
}
