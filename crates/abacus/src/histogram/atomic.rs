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

/// Chunks per first-level block. A chunk holds one octave (`2^scale` buckets).
const BLOCK: usize = 16;

/// Octaves covered by the `F64` domain: exponents `-128..128`. Magnitudes at or below
/// `2^-128` count as zero (the zero threshold); magnitudes of `2^128` and above land in
/// the top bucket (min and max stay exact).
const F64_MIN_OCTAVE: i32 = -128;
const F64_OCTAVES: usize = 256;
/// The `U64` domain: value 1 is in octave -1 (its bucket is `(2^-1/2^s, 1]`), `u64::MAX`
/// rounds to `2^64`, the upper bound of octave 63.
const U64_MIN_OCTAVE: i32 = -1;
const U64_OCTAVES: usize = 65;

type Chunk = Box<[AtomicU64]>;
type Block = Box<[OnceLock<Chunk>]>;

/// Lazily allocated, two-level bucket storage for one sign.
///
/// Memory is only spent on the octaves that were recorded: a latency histogram whose
/// values span 1 ms to 10 s touches 14 octaves.
#[derive(Debug)]
struct Buckets {
    /// Invariant: `blocks[b]` once set is never replaced; each chunk inside likewise.
    /// Initialisation goes through `OnceLock`, whose `get` is an Acquire load pairing
    /// with the Release of the initialising store, so a reader that sees a chunk sees
    /// it zeroed or later.
    blocks: Box<[OnceLock<Block>]>,
}

impl Buckets {
    fn new(octaves: usize) -> Self {
        let n = octaves.div_ceil(BLOCK);
        Buckets {
            blocks: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn counter(&self, octave: usize, slot: usize, per_octave: usize) -> &AtomicU64 {
        let block = self.blocks[octave / BLOCK]
            .get_or_init(|| (0..BLOCK).map(|_| OnceLock::new()).collect());
        let chunk = block[octave % BLOCK]
            .get_or_init(|| (0..per_octave).map(|_| AtomicU64::new(0)).collect());
        &chunk[slot]
    }
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
pub(crate) struct AtomicHistogram {
    table: &'static IndexTable,
    domain: Domain,
    /// Samples equal to zero (or below the zero threshold in the `F64` domain).
    zero: AtomicU64,
    /// `U64`: wrapping sum of values. `F64`: `f64` bits of the sum.
    sum: AtomicU64,
    /// Window minimum as an order key (`u64::MAX` when empty); reset by the collector with `swap`.
    min: AtomicU64,
    /// Window maximum as an order key (`0` when empty); reset by the collector with `swap`.
    max: AtomicU64,
    positive: Buckets,
    negative: Option<Buckets>,
}

impl AtomicHistogram {
    pub(crate) fn new(domain: Domain, scale: u8) -> Self {
        let (positive, negative) = match domain {
            Domain::U64 => (Buckets::new(U64_OCTAVES), None),
            Domain::F64 => (Buckets::new(F64_OCTAVES), Some(Buckets::new(F64_OCTAVES))),
        };
        AtomicHistogram {
            table: IndexTable::get(scale),
            domain,
            zero: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            positive,
            negative,
        }
    }

    #[inline]
    fn min_octave(&self) -> i32 {
        match self.domain {
            Domain::U64 => U64_MIN_OCTAVE,
            Domain::F64 => F64_MIN_OCTAVE,
        }
    }

    #[inline]
    fn octaves(&self) -> usize {
        match self.domain {
            Domain::U64 => U64_OCTAVES,
            Domain::F64 => F64_OCTAVES,
        }
    }

    /// Counter of the bucket of magnitude `m > 0`, or `None` if `m` is below the zero threshold.
    #[inline]
    fn bucket_for<'a>(&self, buckets: &'a Buckets, m: f64) -> Option<&'a AtomicU64> {
        self.counter_at(buckets, self.table.index(m))
    }

    /// Counter of bucket `index` (at this histogram's scale); indexes above the range land
    /// in the top bucket, below it `None` (zero).
    #[inline]
    fn counter_at<'a>(&self, buckets: &'a Buckets, index: i32) -> Option<&'a AtomicU64> {
        let scale = self.table.scale();
        let octave = (index >> scale) - self.min_octave();
        if octave < 0 {
            return None;
        }
        let per_octave = 1usize << scale;
        let (octave, slot) = if octave as usize >= self.octaves() {
            (self.octaves() - 1, per_octave - 1)
        } else {
            (octave as usize, (index as usize) & (per_octave - 1))
        };
        Some(buckets.counter(octave, slot, per_octave))
    }

    /// Adds a whole histogram: bucket counts (re-indexed to this scale), sum and extremes.
    pub(crate) fn add_snapshot<const SHARED: bool>(&self, h: &HistogramSnapshot) {
        if h.count == 0 {
            return;
        }
        let ours = self.table.scale() as i32;
        let theirs = i32::from(h.scale);
        let map = |i: i32| -> i32 {
            if theirs >= ours {
                i >> (theirs - ours).min(31)
            } else {
                i.saturating_mul(1 << (ours - theirs).min(30))
            }
        };
        bump::<SHARED>(&self.zero, h.zero_count);
        for &(i, n) in &h.positive {
            match self.counter_at(&self.positive, map(i)) {
                Some(c) => bump::<SHARED>(c, n),
                None => bump::<SHARED>(&self.zero, n),
            }
        }
        for &(i, n) in &h.negative {
            let c = self
                .negative
                .as_ref()
                .and_then(|neg| self.counter_at(neg, map(i)));
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
    #[inline]
    pub(crate) fn record_u64<const SHARED: bool>(&self, v: u64, n: u64) {
        debug_assert_eq!(self.domain, Domain::U64);
        if v == 0 {
            bump::<SHARED>(&self.zero, n);
        } else if let Some(c) = self.bucket_for(&self.positive, v as f64) {
            bump::<SHARED>(c, n);
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
        let counter = if v > 0.0 {
            self.bucket_for(&self.positive, v)
        } else if v < 0.0 {
            self.negative
                .as_ref()
                .and_then(|neg| self.bucket_for(neg, -v))
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
        let per_octave = 1usize << self.table.scale();
        read_buckets(
            &self.positive,
            self.min_octave(),
            per_octave,
            &mut acc.positive_scratch,
        );
        if let Some(neg) = &self.negative {
            read_buckets(
                neg,
                self.min_octave(),
                per_octave,
                &mut acc.negative_scratch,
            );
        }
    }
}

/// Appends `(index, count)` of every allocated, non-zero bucket, ordered by index.
fn read_buckets(buckets: &Buckets, min_octave: i32, per_octave: usize, out: &mut Vec<(i32, u64)>) {
    for (b, block) in buckets.blocks.iter().enumerate() {
        let Some(block) = block.get() else { continue };
        for (c, chunk) in block.iter().enumerate() {
            let Some(chunk) = chunk.get() else { continue };
            let octave = (b * BLOCK + c) as i32 + min_octave;
            let base = octave * per_octave as i32;
            for (slot, counter) in chunk.iter().enumerate() {
                // Relaxed: monotone counter, value only.
                let n = counter.load(Ordering::Relaxed);
                if n != 0 {
                    out.push((base + slot as i32, n));
                }
            }
        }
    }
}
