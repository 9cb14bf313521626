//! Mapping of values to base-2 exponential bucket indexes.
//!
//! The scheme is the one of OpenTelemetry's `ExponentialHistogram` and of
//! Prometheus native histograms: at scale `s` the base is `b = 2^(2^-s)` and
//! bucket `i` holds the values in `(b^i, b^(i+1)]` (upper bound inclusive).
//! Indexes are therefore directly exportable and mergeable with any other
//! producer of that format.
//!
//! Computing `ceil(log_b(v)) - 1` with a floating-point logarithm costs
//! 10-20 ns. Instead we read the exponent `e` and the 52-bit mantissa `m` of
//! the `f64` representation: `v = 2^e * (1 + m / 2^52)`. Within one octave
//! the sub-bucket is the number of boundaries `2^(k/2^s)` that `1 + m/2^52`
//! exceeds, found with one table lookup on the top `s + 2` mantissa bits and
//! one comparison (a table cell is narrower than the narrowest sub-bucket,
//! so it straddles at most one boundary).

use std::sync::OnceLock;

/// Smallest supported scale.
pub const MIN_SCALE: i8 = 0;
/// Largest supported scale (the finest resolution Prometheus native histograms accept).
pub const MAX_SCALE: i8 = 8;

const MANTISSA_BITS: u32 = 52;
const MANTISSA_MASK: u64 = (1 << MANTISSA_BITS) - 1;

/// Per-scale lookup tables, built once on first use.
///
/// A value is `2^e * (1 + f)` with the fraction `f` in `[0, 1)` held as a 64-bit fixed-point
/// number (`frac = f * 2^64`). Integers get `e` and `frac` from a leading-zero count and a
/// shift, floats from their exponent and mantissa bits: no floating-point math on the hot
/// path.
#[derive(Debug)]
pub(crate) struct IndexTable {
    scale: u32,
    /// `scale + log2(GROUP_OCTAVES)`.
    group_shift: u32,
    /// `64 - lookup_bits`, with `lookup_bits = scale + 2`: shift that extracts the table cell.
    cell_shift: u32,
    /// For each table cell, the number of sub-bucket boundaries strictly below the cell start.
    /// Fixed size (the largest scale's `2^(8+2)` cells) so that indexing with a mask needs no
    /// bounds check on the hot path. Inline, not boxed: one dependent load less per record
    /// (the table is a static, its address is a constant offset from the histogram's pointer).
    guess: [u16; GUESS_LEN],
    /// `boundary[k]` = fraction of `2^(k / 2^scale)` for `k` in `0..2^scale`, then `u64::MAX`
    /// sentinels, so `boundary[j + 1]` is always valid. Fixed size, as `guess`.
    boundary: [u64; BOUNDARY_LEN],
    /// `small[v]` = position of the integer `v` in `1..SMALL_LEN` in the `U64` domain
    /// (`index_u64(v) + 2^scale`, i.e. relative to the domain's lowest bucket). Latencies in
    /// milliseconds are nearly always below `SMALL_LEN`: one load replaces the leading-zero
    /// count, two table loads and the boundary comparison. `small[0]` is unused (zero has
    /// its own counter).
    small: [u16; SMALL_LEN],
}

/// Integers below this get their bucket position from [`IndexTable::small`]: 8 KiB per
/// scale, of which a workload touches only the lines of the values it records.
pub(crate) const SMALL_LEN: usize = 4096;

const GUESS_LEN: usize = 1 << (MAX_SCALE as usize + 2);
const BOUNDARY_LEN: usize = 2 << MAX_SCALE as usize;

static TABLES: [OnceLock<IndexTable>; (MAX_SCALE as usize) + 1] =
    [const { OnceLock::new() }; (MAX_SCALE as usize) + 1];

impl IndexTable {
    /// The shared table for `scale` (clamped to `MAX_SCALE`).
    #[inline]
    pub(crate) fn get(scale: u8) -> &'static IndexTable {
        let scale = scale.min(MAX_SCALE as u8);
        TABLES[scale as usize].get_or_init(|| IndexTable::build(u32::from(scale)))
    }

    fn build(scale: u32) -> IndexTable {
        let per_octave = 1usize << scale;
        let mut boundary = [u64::MAX; BOUNDARY_LEN];
        for (k, slot) in boundary.iter_mut().enumerate().take(per_octave) {
            let b = (k as f64 / per_octave as f64).exp2();
            // The 52 mantissa bits, as the top of a 64-bit fraction.
            *slot = (b.to_bits() & MANTISSA_MASK) << (64 - MANTISSA_BITS);
        }
        let lookup_bits = scale + 2;
        let cells = 1usize << lookup_bits;
        let cell_shift = 64 - lookup_bits;
        let mut guess = [0u16; GUESS_LEN];
        for (cell, g) in guess.iter_mut().enumerate().take(cells) {
            let start = (cell as u64) << cell_shift;
            *g = boundary[1..per_octave]
                .iter()
                .filter(|&&b| b < start)
                .count() as u16;
        }
        let mut table = IndexTable {
            scale,
            group_shift: scale + super::atomic::GROUP_OCTAVES.trailing_zeros(),
            cell_shift,
            guess,
            boundary,
            small: [0; SMALL_LEN],
        };
        for v in 1..SMALL_LEN {
            // Positions are < 2^16: log2(4096) * 2^8 + 2^8 at the largest scale.
            table.small[v] = (table.index_u64(v as u64) + (1 << scale)) as u16;
        }
        table
    }

    /// Position of the integer `v >= 1` in the `U64` domain: `index_u64(v) + 2^scale`.
    #[inline(always)]
    pub(crate) fn position_u64(&self, v: u64) -> usize {
        if v < SMALL_LEN as u64 {
            usize::from(self.small[v as usize])
        } else {
            (self.index_u64(v) + (1 << self.scale)) as usize
        }
    }

    /// The scale this table was built for.
    pub(crate) fn scale(&self) -> u32 {
        self.scale
    }

    /// log2 of the length of a histogram's bucket group at this table's scale (a group
    /// spans [`GROUP_OCTAVES`](super::atomic::GROUP_OCTAVES) octaves).
    #[inline(always)]
    pub(crate) fn group_shift(&self) -> u32 {
        self.group_shift
    }

    /// Bucket index of `2^exp * (1 + frac / 2^64)`.
    #[inline]
    fn index_parts(&self, exp: i32, frac: u64) -> i32 {
        if frac == 0 {
            // Exact power of two: it is the inclusive upper bound of the previous bucket.
            return (exp << self.scale) - 1;
        }
        // The masks never change the value (cell < 2^(scale+2), j < 2^scale); they let the
        // compiler drop the bounds checks.
        let cell = (frac >> self.cell_shift) as usize & (GUESS_LEN - 1);
        let mut j = self.guess[cell] as usize;
        if frac > self.boundary[(j + 1) & (BOUNDARY_LEN - 1)] {
            j += 1;
        }
        (exp << self.scale) + j as i32
    }

    /// Bucket index of an integer `v >= 1`.
    #[inline]
    pub(crate) fn index_u64(&self, v: u64) -> i32 {
        let lz = v.leading_zeros();
        // `v << lz` has its top bit set; one more shift drops it, leaving the fraction.
        let frac = (v << lz) << 1;
        self.index_parts(63 - lz as i32, frac)
    }

    /// Bucket index of a finite, strictly positive, normal `v`.
    #[inline]
    pub(crate) fn index(&self, v: f64) -> i32 {
        let bits = v.to_bits();
        let exp = ((bits >> MANTISSA_BITS) & 0x7ff) as i32 - 1023;
        self.index_parts(exp, (bits & MANTISSA_MASK) << (64 - MANTISSA_BITS))
    }
}

/// Lower (exclusive) bound of bucket `index` at `scale`: `2^(index / 2^scale)`.
///
/// Built from the exponent and the per-scale fraction table (no `exp2` call) for scales
/// `0..=8` and normal results; other cases use `exp2`.
pub fn bucket_lower(scale: i8, index: i32) -> f64 {
    if (0..=MAX_SCALE).contains(&scale) {
        let table = IndexTable::get(scale as u8);
        let exp = index >> scale;
        if (-1022..=1023).contains(&exp) {
            let k = (index & ((1 << scale) - 1)) as usize;
            let mantissa = table.boundary[k] >> (64 - MANTISSA_BITS);
            return f64::from_bits((((exp + 1023) as u64) << MANTISSA_BITS) | mantissa);
        }
    }
    bucket_lower_slow(scale, index)
}

/// Out-of-line so the compiler cannot speculate the `exp2` calls into callers' loops
/// (`exp2` is treated as a cheap pure intrinsic and was hoisted out of the fast path).
#[cold]
#[inline(never)]
fn bucket_lower_slow(scale: i8, index: i32) -> f64 {
    (f64::from(index) / f64::from(scale).exp2()).exp2()
}

/// Upper (inclusive) bound of bucket `index` at `scale`.
pub fn bucket_upper(scale: i8, index: i32) -> f64 {
    bucket_lower(scale, index.saturating_add(1))
}

/// The value reported for any sample in bucket `index`: the point `2LU/(L+U)` that
/// minimises the worst relative error over `(L, U]`, which is then `(b-1)/(b+1)`.
pub fn bucket_representative(scale: i8, index: i32) -> f64 {
    let lower = bucket_lower(scale, index);
    let upper = bucket_upper(scale, index);
    2.0 * lower * upper / (lower + upper)
}

/// Worst-case relative error of a value reported from a bucket at `scale`: `(b-1)/(b+1)`
/// with `b = 2^(2^-scale)`. Scale 4 gives 2.17%, scale 3 4.33%, scale 5 1.08%.
pub fn relative_error(scale: i8) -> f64 {
    let base = (1.0 / f64::from(1u32 << scale.max(0))).exp2();
    (base - 1.0) / (base + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference mapping through the logarithm, with exact handling of powers of two.
    fn reference_index(scale: u32, v: f64) -> i32 {
        let bits = v.to_bits();
        if bits & MANTISSA_MASK == 0 {
            let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
            return (exp << scale) - 1;
        }
        (v.log2() * f64::from(1u32 << scale)).ceil() as i32 - 1
    }

    #[test]
    fn index_matches_logarithm_for_all_scales() {
        for scale in 0..=MAX_SCALE as u8 {
            let table = IndexTable::get(scale);
            let mut v = 1.0e-30_f64;
            while v < 1.0e30 {
                assert_eq!(
                    table.index(v),
                    reference_index(u32::from(scale), v),
                    "scale {scale} value {v}"
                );
                v *= 1.000_731;
            }
            for i in 1..5000u64 {
                let v = i as f64;
                assert_eq!(table.index(v), reference_index(u32::from(scale), v));
                assert_eq!(table.index_u64(i), reference_index(u32::from(scale), v));
            }
            let mut v = 1u64;
            while v < (1u64 << 53) {
                assert_eq!(
                    table.index_u64(v),
                    table.index(v as f64),
                    "scale {scale} value {v}"
                );
                v = v * 3 + 1;
            }
        }
    }

    #[test]
    fn small_positions_match_the_index() {
        for scale in 0..=MAX_SCALE as u8 {
            let table = IndexTable::get(scale);
            for v in (1..SMALL_LEN as u64 + 64).chain([u64::MAX, 1 << 40, (1 << 40) + 1]) {
                assert_eq!(
                    table.position_u64(v) as i64,
                    i64::from(table.index_u64(v)) + (1 << scale),
                    "scale {scale} value {v}"
                );
            }
        }
    }

    #[test]
    fn table_bounds_match_exp2() {
        for scale in 0..=MAX_SCALE {
            for index in -3000..3000 {
                let exact = (f64::from(index) / f64::from(1u32 << scale)).exp2();
                if !exact.is_normal() {
                    continue;
                }
                let got = bucket_lower(scale, index);
                assert!(
                    ((got - exact) / exact).abs() < 1e-15,
                    "scale {scale} index {index}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn every_value_lies_inside_its_bucket() {
        for scale in 0..=MAX_SCALE {
            let table = IndexTable::get(scale as u8);
            for v in [1.0, 1.5, 2.0, 3.0, 1000.0, 123_456.7, 1e-9, 1.8e19] {
                let idx = table.index(v);
                let (lo, hi) = (bucket_lower(scale, idx), bucket_upper(scale, idx));
                assert!(
                    lo < v * (1.0 + 1e-12) && v <= hi * (1.0 + 1e-12),
                    "{v} not in ({lo}, {hi}] at {scale}"
                );
            }
        }
    }

    #[test]
    fn powers_of_two_are_inclusive_upper_bounds() {
        let table = IndexTable::get(4);
        assert_eq!(table.index(1.0), -1);
        assert_eq!(table.index(2.0), 15);
        assert_eq!(table.index(1024.0), 10 * 16 - 1);
        assert_eq!(table.index(0.5), -16 - 1);
    }

    #[test]
    fn default_scale_error_bound_is_below_two_and_a_half_percent() {
        assert!(relative_error(4) < 0.025);
        assert!(relative_error(3) > 0.025);
    }
}
