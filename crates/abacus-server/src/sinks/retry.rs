//! Exponential backoff with jitter ("equal jitter" in the AWS architecture blog's
//! "Exponential Backoff and Jitter"): the n-th delay is uniform in `[c/2, c]` with
//! `c = min(max, initial · 2^n)`, so senders that failed together do not retry together, and
//! a dead store is never retried in a tight loop.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Delay generator for one retrying sender. Not shared between tasks.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Delays starting at `initial`, doubling, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        // Seed from the std hasher's per-process random keys: no RNG crate needed for jitter.
        let seed = RandomState::new().hash_one(0x6a09_e667_u64) | 1;
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: seed,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay: uniform in `[ceiling/2, ceiling]` ("equal jitter", so a delay is never
    /// near zero and a dead store is not hammered), then the ceiling doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(0.5 + 0.5 * unit)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_inside_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut last_ceiling = Duration::ZERO;
        for _ in 0..10 {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(d <= c && d >= c / 2, "{d:?} outside [{:?}, {c:?}]", c / 2);
            assert!(c >= last_ceiling);
            last_ceiling = c;
        }
        assert_eq!(last_ceiling, Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let ds: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(ds.len() > 10);
    }
}
