//! The write side of a histogram: atomics that one thread (or, on the shared fallback
//! path, several) updates, and that the collector reads without stopping writers.

use std::sync::OnceLock;

use super::index::IndexTable;
use super::snapshot::{HistogramSnapshot, RawHistogram};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

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
pub(crate) const GROUP_OCTAVES: usize = 4;

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

/// `[positive, negative]` group tables of the `F64` domain, and the negative table's
/// allocated-groups mask (the positive one is [`AtomicHistogram::present`]).
#[derive(Debug)]
struct WideGroups {
    groups: [Box<[OnceLock<Group>]>; 2],
    negative_present: AtomicU64,
}

// One bit per group in the allocated-groups masks.
const _: () = assert!(U64_OCTAVES.div_ceil(GROUP_OCTAVES) <= 64);
const _: () = assert!(F64_OCTAVES.div_ceil(GROUP_OCTAVES) <= 64);

/// The mask of a sign without groups (negative values of the `U64` domain): never set.
static NO_GROUPS: AtomicU64 = AtomicU64::new(0);

/// One sign's group table and its allocated-groups mask.
#[derive(Clone, Copy)]
struct Sign<'a> {
    groups: &'a [OnceLock<Group>],
    present: &'a AtomicU64,
}

/// Groups of the `U64` domain, stored inline in the histogram (one pointer less on the
/// hot path).
const U64_GROUPS: usize = U64_OCTAVES.div_ceil(GROUP_OCTAVES);

/// Lazily allocated bucket storage for one sign: one `OnceLock` per group of octaves, and
/// `present`, the bitmask of the groups allocated so far (a hint for readers, see
/// [`new_group`]).
///
/// Invariant: a group once set is never replaced. `OnceLock::get` is an Acquire load that
/// pairs with the Release of the initialising store, so a reader that sees a group sees it
/// zeroed or later.
#[inline]
fn group_counter<'a>(
    groups: &'a [OnceLock<Group>],
    present: &AtomicU64,
    p: usize,
    group_shift: u32,
) -> &'a AtomicU64 {
    let group_len = 1usize << group_shift;
    let last = groups.len() - 1;
    let (g, off) = match p >> group_shift {
        g if g <= last => (g, p & (group_len - 1)),
        // Above the range (F64 magnitudes >= 2^128): the top bucket.
        _ => (last, group_len - 1),
    };
    let group = group_or_init(&groups[g], present, g, group_len);
    &group[off]
}

/// Group `g` of a table, allocated on first use. The fast path is a `get()`: calling
/// `get_or_init` directly made every record build its closure's captures on the stack
/// (`hotloop local` under callgrind: 60 instructions per record against 50).
#[inline(always)]
fn group_or_init<'a>(
    slot: &'a OnceLock<Group>,
    present: &AtomicU64,
    g: usize,
    len: usize,
) -> &'a Group {
    match slot.get() {
        Some(group) => group,
        None => init_group(slot, present, g, len),
    }
}

#[cold]
#[inline(never)]
fn init_group<'a>(
    slot: &'a OnceLock<Group>,
    present: &AtomicU64,
    g: usize,
    len: usize,
) -> &'a Group {
    slot.get_or_init(|| new_group(present, g, len))
}

/// A zeroed group `g` of `len` counters; marks it in `present` first.
///
/// Readers walk the set bits of `present` instead of probing every `OnceLock` of the table
/// (17 of them, 7 cache lines, in the `U64` domain), then `get()` each marked group. A bit
/// set before its group is published makes that `get()` return `None`, and the group is
/// read by the next collection, as if it had been allocated just after this one.
fn new_group(present: &AtomicU64, g: usize, len: usize) -> Group {
    // Relaxed: a hint only; the group itself is published by the OnceLock (Release) and
    // read through `get()` (Acquire). fetch_or: writers of the shared cell may allocate
    // two groups at once.
    present.fetch_or(1 << g, Ordering::Relaxed);
    (0..len).map(|_| AtomicU64::new(0)).collect()
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
// `repr(C)`: what a record of a typical latency reads (sum, extremes, the group shift,
// and the pointers of groups 0-2, values up to 2,048) comes first. In a cell, which is
// 128-byte aligned, that is the cell's first 128 bytes: one pair of lines, which the L2
// adjacent-line prefetcher fetches together. `zero`, `present` and `base`, which a record
// of a positive integer does not read, come after the group pointers. Measured against the
// previous order (zero and present first, groups from byte 80 of the cell, group 2 on the
// next pair), alternated criterion runs of `core/record/zipf10k`: local handle 12.3-12.9
// ns against 13.7-14.1 ns, `record_latency` 30.1-32.4 against 31.0-34.3 ns.
#[repr(C)]
pub(crate) struct AtomicHistogram {
    /// `U64`: wrapping sum of values. `F64`: `f64` bits of the sum.
    sum: AtomicU64,
    /// Window minimum as an order key (`u64::MAX` when empty); reset by the collector with `swap`.
    min: AtomicU64,
    /// Window maximum as an order key (`0` when empty); reset by the collector with `swap`.
    max: AtomicU64,
    /// The index table of `scale` (a static). The record path reads the group shift from
    /// it too, so that the cell's first line has room for the groups' slots.
    table: &'static IndexTable,
    /// Positive buckets of the `U64` domain.
    narrow: [OnceLock<Group>; U64_GROUPS],
    /// log2 of the group length `GROUP_OCTAVES << scale` (also in `table`).
    group_shift: u8,
    scale: u8,
    domain: Domain,
    /// `U64` domain: the lowest and highest bucket positions ever recorded (`u16::MAX`
    /// and 0 while empty). A collection reads only the counters between them (see
    /// [`Self::widen`]). Positions fit: at most `65 << 8` at scale 8. Read and written
    /// only when a value is a new window extreme.
    low: AtomicU16,
    high: AtomicU16,
    /// Samples equal to zero (or below the zero threshold in the `F64` domain).
    zero: AtomicU64,
    /// Bit `g` set when positive group `g` has been allocated (see [`new_group`]). A
    /// collection reads it instead of probing the 17 group slots (7 cache lines).
    present: AtomicU64,
    /// `[positive, negative]` buckets of the `F64` domain.
    wide: Option<Box<WideGroups>>,
}

impl AtomicHistogram {
    /// Index of the domain's lowest bucket: positions are `index - base`. Computed, not
    /// stored: a field would take the cell past 512 bytes (see `Cell`'s name).
    fn base(&self) -> i32 {
        let min_octave = match self.domain {
            Domain::U64 => U64_MIN_OCTAVE,
            Domain::F64 => F64_MIN_OCTAVE,
        };
        min_octave << self.scale
    }

    pub(crate) fn new(domain: Domain, scale: u8) -> Self {
        let scale = IndexTable::get(scale).scale();
        let wide = match domain {
            Domain::U64 => None,
            Domain::F64 => Some(Box::new(WideGroups {
                groups: [new_groups(F64_OCTAVES), new_groups(F64_OCTAVES)],
                negative_present: AtomicU64::new(0),
            })),
        };
        AtomicHistogram {
            domain,
            scale: scale as u8,
            group_shift: (scale + GROUP_OCTAVES.trailing_zeros()) as u8,
            table: IndexTable::get(scale as u8),
            zero: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            present: AtomicU64::new(0),
            low: AtomicU16::new(u16::MAX),
            high: AtomicU16::new(0),
            narrow: [const { OnceLock::new() }; U64_GROUPS],
            wide,
        }
    }

    /// Counter of bucket `index` (at this histogram's scale) in `sign`; indexes above the
    /// range land in the top bucket, below it `None` (zero).
    #[inline]
    fn counter_at<'a>(&self, sign: Sign<'a>, index: i32) -> Option<&'a AtomicU64> {
        let p = index.checked_sub(self.base())?;
        if p < 0 || sign.groups.is_empty() {
            return None;
        }
        Some(group_counter(
            sign.groups,
            sign.present,
            p as usize,
            u32::from(self.group_shift),
        ))
    }

    /// The index table of this histogram's scale (a static, hot in cache).
    #[inline(always)]
    fn table(&self) -> &'static IndexTable {
        self.table
    }

    /// The counter of a scalar cell (counters keep their value in `sum`).
    #[inline(always)]
    pub(crate) fn scalar(&self) -> &AtomicU64 {
        &self.sum
    }

    /// Where each field a record of a value up to 2,048 reads ends (an address), for the
    /// layout test in `registry::cell`.
    #[cfg(test)]
    pub(crate) fn record_path_ends(&self) -> Vec<(&'static str, usize)> {
        fn end<T>(field: &T) -> usize {
            field as *const T as usize + std::mem::size_of::<T>()
        }
        // Values up to 2,048 are in groups 0-2 at the default scale.
        assert_eq!(self.table().position_u64(2048) >> self.group_shift, 2);
        assert_eq!(self.table().position_u64(2049) >> self.group_shift, 3);
        vec![
            ("sum", end(&self.sum)),
            ("min", end(&self.min)),
            ("max", end(&self.max)),
            ("table", end(&self.table)),
            ("group 2", end(&self.narrow[2])),
        ]
    }

    /// Positive and negative bucket groups of either domain. Decided by `domain`, on the
    /// first cache line, so the `U64` domain never reads `wide`.
    fn signs(&self) -> [Sign<'_>; 2] {
        match (self.domain, &self.wide) {
            (Domain::F64, Some(w)) => [
                Sign {
                    groups: &w.groups[0],
                    present: &self.present,
                },
                Sign {
                    groups: &w.groups[1],
                    present: &w.negative_present,
                },
            ],
            _ => [
                Sign {
                    groups: &self.narrow,
                    present: &self.present,
                },
                Sign {
                    groups: &[],
                    present: &NO_GROUPS,
                },
            ],
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
        let [positive, negative] = self.signs();
        for &(i, n) in &h.positive {
            match self.counter_at(positive, map(i)) {
                Some(c) => {
                    bump::<SHARED>(c, n);
                    if self.domain == Domain::U64 {
                        self.widen_position(map(i).saturating_sub(self.base()));
                    }
                }
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
                self.update_extremes_u64(h.min.max(0.0).round() as u64);
                self.update_extremes_u64(h.max.max(0.0).round() as u64);
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
                self.update_extremes(f64_key(h.min), || ());
                self.update_extremes(f64_key(h.max), || ());
            }
        }
    }

    /// Updates the window extremes with `key`, calling `on_new` when it is a new minimum
    /// or maximum.
    #[inline(always)]
    fn update_extremes(&self, key: u64, on_new: impl Fn()) {
        // Relaxed loads first: a read-modify-write only when the value is a new extreme,
        // which after the first samples of a window is rare. fetch_min/fetch_max (not a
        // store) because the collector resets these with `swap` concurrently.
        // Relaxed: min/max are independent values, no other data is published through them.
        if key < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(key, Ordering::Relaxed);
            on_new();
        }
        // Relaxed: as above.
        if key > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(key, Ordering::Relaxed);
            on_new();
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
            let table = self.table();
            let p = table.position_u64(v);
            // Always in range for integers: no clamp needed (the bounds check stays, it is
            // one well-predicted branch). The shift comes from the (static, hot) table, not
            // from this histogram's second line.
            let shift = table.group_shift();
            let (g, len) = (p >> shift, 1usize << shift);
            let group = group_or_init(&self.narrow[g], &self.present, g, len);
            bump::<SHARED>(&group[p & (len - 1)], n);
        }
        bump::<SHARED>(&self.sum, v.wrapping_mul(n));
        self.update_extremes_u64(v);
    }

    /// [`Self::update_extremes`] of the `U64` domain: a new window extreme also widens the
    /// all-time position range, so the range always covers the window's extremes and,
    /// positions being monotone in values, every value recorded.
    #[inline(always)]
    fn update_extremes_u64(&self, v: u64) {
        self.update_extremes(v, || self.widen(v));
    }

    /// Widens the all-time position range (`low`, `high`) to the bucket of `v`.
    ///
    /// Called only when `v` is a new window extreme (the first samples of a window), so
    /// the recording path pays nothing in the steady state: every other value lies
    /// between the window's extremes, whose positions the range already covers.
    ///
    /// A reader may see a count before its widening; it then skips that count once and
    /// finds it on its next read. The range only grows, so a count once read is read
    /// every time after.
    #[cold]
    #[inline(never)]
    fn widen(&self, v: u64) {
        // Zero has no bucket, but as a window minimum it stands for every value above it:
        // the range then starts at the lowest position.
        let p = if v == 0 {
            0
        } else {
            self.table().position_u64(v)
        };
        self.widen_position(p as i32);
    }

    /// Widens the all-time position range to position `p` (clamped to the domain, as the
    /// counters are).
    fn widen_position(&self, p: i32) {
        let top = (U64_GROUPS << self.group_shift) - 1;
        let p = p.clamp(0, top as i32) as u16;
        // Relaxed: a hint for readers (above); RMW because writers of the shared cell may
        // widen at once.
        if p < self.low.load(Ordering::Relaxed) {
            self.low.fetch_min(p, Ordering::Relaxed);
        }
        // Relaxed: as above.
        if p > self.high.load(Ordering::Relaxed) {
            self.high.fetch_max(p, Ordering::Relaxed);
        }
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
        let [positive, negative] = self.signs();
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
        self.update_extremes(f64_key(v), || ());
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
        let len = 1usize << self.group_shift;
        // The positions to read: in the `U64` domain only the all-time range (see
        // `widen`); every position otherwise.
        let (low, high) = match self.domain {
            // Relaxed: hints (see `widen`); each counter is then read on its own.
            Domain::U64 => (
                usize::from(self.low.load(Ordering::Relaxed)),
                usize::from(self.high.load(Ordering::Relaxed)),
            ),
            Domain::F64 => (0, usize::MAX),
        };
        for (sign, Sign { groups, present }) in self.signs().into_iter().enumerate() {
            // Relaxed: a hint; each marked group is then read through `get()` (Acquire).
            let mut bits = present.load(Ordering::Relaxed);
            // Gather the allocated groups first, then read them together (see `add_groups`):
            // the loads of different groups are independent, so their cache misses overlap
            // instead of being paid one group after another.
            let mut ready: [(usize, &[AtomicU64]); 8] = [(0, &[]); 8];
            let mut n = 0;
            while bits != 0 {
                let g = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(group) = groups.get(g).and_then(OnceLock::get) else {
                    continue;
                };
                // The group's counters within the range, and their dense position.
                let first = low.saturating_sub(g * len);
                let Some(last) = high.checked_sub(g * len).map(|l| l.min(len - 1)) else {
                    continue;
                };
                if first > last {
                    continue;
                }
                acc.touched[sign] |= 1 << g;
                ready[n] = (g * len + first, &group[first..=last]);
                n += 1;
                if n == ready.len() {
                    add_groups(&ready[..n], &mut acc.dense[sign]);
                    n = 0;
                }
            }
            add_groups(&ready[..n], &mut acc.dense[sign]);
        }
    }
}

/// Adds runs of counters (dense position of the first, counters) into `dense`.
///
/// Two passes, for memory-level parallelism: the counters are cold (one collection reads
/// megabytes), so the first pass loads one counter per cache line of every run (every 8th
/// and the last, as a run need not be line-aligned; values discarded), which puts all their
/// misses in flight at once with little work between them; the second pass adds every
/// counter, now cached, in one straight loop per run. Reading the line heads twice is
/// cheaper than the per-line loops that read each counter once (callgrind, `hotloop
/// snapshot`: 7,300 -> 5,800 instructions per series), and dropping the first pass made the
/// 10k-series snapshot slower (interleaved runs: 34-51 ms against 34-42 ms).
fn add_groups(runs: &[(usize, &[AtomicU64])], dense: &mut [u64]) {
    const LINE: usize = 8;
    let mut touch = 0u64;
    for &(_, run) in runs {
        for line in run.iter().step_by(LINE) {
            // Relaxed: value discarded; only the cache line is wanted.
            touch |= line.load(Ordering::Relaxed);
        }
        if let Some(last) = run.last() {
            // Relaxed: as above (a run need not be line-aligned: one more line).
            touch |= last.load(Ordering::Relaxed);
        }
    }
    std::hint::black_box(touch);
    for &(at, run) in runs {
        for (slot, counter) in dense[at..at + run.len()].iter_mut().zip(run) {
            // Relaxed: monotone counter, read for its value only.
            *slot += counter.load(Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AtomicHistogram, Domain, OnceLock};
    use crate::histogram::{HistogramSnapshot, RawHistogram};
    use std::sync::atomic::Ordering;

    /// Every non-zero counter as `(sign, position, count)`, read from every allocated group
    /// without looking at the position range.
    fn every_counter(h: &AtomicHistogram) -> Vec<(usize, usize, u64)> {
        let len = 1usize << h.group_shift;
        let mut out = Vec::new();
        for (sign, s) in h.signs().into_iter().enumerate() {
            for (g, group) in s.groups.iter().enumerate() {
                for (k, c) in group.get().into_iter().flat_map(|g| g.iter()).enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n != 0 {
                        out.push((sign, g * len + k, n));
                    }
                }
            }
        }
        out
    }

    /// The non-zero counters as a collection reads them.
    fn collected(h: &AtomicHistogram, reset_extremes: bool) -> Vec<(usize, usize, u64)> {
        let mut acc = RawHistogram::new(h.domain, h.scale);
        h.read_into(&mut acc, reset_extremes);
        let mut out = Vec::new();
        for (sign, dense) in acc.dense.iter().enumerate() {
            for (p, &n) in dense.iter().enumerate() {
                if n != 0 {
                    out.push((sign, p, n));
                }
            }
        }
        out
    }

    /// Values over the whole range, lower every round (so that later rounds record new
    /// lows after a read has reset the window): small integers, both sides of every power
    /// of two, and (for floats) negatives and magnitudes far below and above 1.
    fn values(domain: Domain, round: u64) -> Vec<f64> {
        let mut v: Vec<f64> = (0..300).map(|i| (i * 7 + 40 - 10 * round) as f64).collect();
        for k in (0..64).rev() {
            let p = 2f64.powi(k);
            v.extend([p, p * 1.3 + round as f64, p * 1.7]);
        }
        v.push(u64::MAX as f64);
        if domain == Domain::F64 {
            let more: Vec<f64> = v.iter().map(|x| -x).collect();
            v.extend(more);
            for k in -140..140 {
                let p = 2f64.powi(k) * (1.0 + round as f64 / 8.0);
                v.extend([p, -p / 3.0]);
            }
            v.extend([1e300, -1e300, f64::MIN_POSITIVE]);
        }
        v
    }

    /// The position range never hides a count: at every scale, in both domains, from the
    /// single-writer and the shared (read-modify-write) paths, across window resets (a
    /// value inside the range widens nothing) and across reads (values recorded after a
    /// read, below everything before, are found by the next one), a collection sees exactly
    /// the counters of an unrestricted read of every group, and all the samples recorded.
    #[test]
    fn the_position_range_hides_no_count() {
        for domain in [Domain::U64, Domain::F64] {
            for scale in 0..=8u8 {
                let h = AtomicHistogram::new(domain, scale);
                let mut recorded = 0u64;
                for round in 0..4u64 {
                    let n = round + 1;
                    // Mid-range values first: after a window reset they widen nothing.
                    let mut vs = values(domain, round);
                    let half = vs.len() / 2;
                    vs.rotate_left(half);
                    for v in vs {
                        match (domain, round % 2 == 0) {
                            (Domain::U64, true) => h.record_u64::<false>(v as u64, n),
                            (Domain::U64, false) => h.record_u64::<true>(v as u64, n),
                            (Domain::F64, true) => h.record_f64::<false>(v, n),
                            (Domain::F64, false) => h.record_f64::<true>(v, n),
                        }
                        recorded += n;
                    }
                    let all = every_counter(&h);
                    let reset = round % 2 == 1;
                    assert_eq!(collected(&h, reset), all, "{domain:?} scale {scale}");
                    let zero = h.zero.load(Ordering::Relaxed);
                    let buckets: u64 = all.iter().map(|&(_, _, n)| n).sum();
                    assert_eq!(zero + buckets, recorded, "{domain:?} scale {scale}");
                }
            }
        }
    }

    /// A merged histogram whose extremes do not match its buckets (min and max left at
    /// zero, buckets out of order) still widens the range to every bucket it adds, and
    /// values recorded afterwards between those buckets are read too.
    #[test]
    fn merged_buckets_widen_the_range() {
        let h = AtomicHistogram::new(Domain::U64, 4);
        let merged = HistogramSnapshot {
            scale: 4,
            count: 3,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            zero_count: 0,
            positive: vec![(150, 2), (20, 1)],
            negative: vec![],
            integers: true,
        };
        h.add_snapshot::<false>(&merged);
        for v in [7, 40, 300] {
            h.record_u64::<false>(v, 1);
        }
        let all = every_counter(&h);
        assert_eq!(all.iter().map(|&(_, _, n)| n).sum::<u64>(), 6);
        assert_eq!(collected(&h, true), all);
        assert_eq!(collected(&h, false), all);
    }

    /// A zero as the window minimum stands for every value above it: values recorded
    /// after it between zero and the maximum are read (found by proptest as `[0, 636, 1]`).
    #[test]
    fn a_zero_minimum_keeps_small_values_in_range() {
        let h = AtomicHistogram::new(Domain::U64, 4);
        for round in [[0, 636, 1], [0, 5_000, 3], [9, 0, 2]] {
            for v in round {
                h.record_u64::<false>(v, 1);
            }
            let all = every_counter(&h);
            assert_eq!(collected(&h, false), all);
            assert_eq!(collected(&h, true), all);
        }
    }

    /// The allocated-groups mask names exactly the groups allocated.
    #[test]
    fn present_mask_names_the_allocated_groups() {
        let h = AtomicHistogram::new(Domain::U64, 4);
        for v in [1, 1_000, 1 << 40, u64::MAX] {
            h.record_u64::<false>(v, 1);
        }
        let [positive, _] = h.signs();
        let allocated = positive
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| OnceLock::get(g).is_some())
            .fold(0u64, |m, (g, _)| m | 1 << g);
        assert_eq!(positive.present.load(Ordering::Relaxed), allocated);
        assert_eq!(allocated.count_ones(), 4);
    }
}
