//! Quantiles against an exact oracle: every reported percentile is within the stated
//! relative error of the exact nearest-rank quantile of the recorded values.

use abacus::{HistogramSnapshot, Registry};
use proptest::prelude::*;

const QS: [f64; 8] = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0, 0.25];

/// Nearest-rank quantile of sorted `v`: the `ceil(q * n)`-th smallest (the first for q = 0).
fn exact(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

fn check(h: &HistogramSnapshot, values: &[f64]) -> Result<(), TestCaseError> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    prop_assert_eq!(h.count, values.len() as u64);
    prop_assert_eq!(h.min, sorted[0]);
    prop_assert_eq!(h.max, *sorted.last().unwrap());
    let bound = h.relative_error();
    if h.scale >= 4 {
        prop_assert!(bound < 0.025, "the default scale must give < 2.5%");
    }
    let got = h.quantiles(&QS);
    for (q, est) in QS.iter().zip(got) {
        let est = est.expect("non-empty");
        let truth = exact(&sorted, *q);
        if truth == 0.0 {
            prop_assert_eq!(est, 0.0, "zero is exact (q={})", q);
        } else {
            // 1e-9 covers the rounding of u64 -> f64 near u64::MAX.
            let err = ((est - truth) / truth).abs();
            prop_assert!(
                err <= bound + 1e-9,
                "q={} est={} exact={} err={} bound={}",
                q,
                est,
                truth,
                err,
                bound
            );
        }
    }
    Ok(())
}

fn record_u64(values: &[u64]) -> HistogramSnapshot {
    let r = Registry::new();
    let h = r.histogram("h", &[]);
    for &v in values {
        h.record(v);
    }
    r.snapshot().histogram("h", &[]).unwrap().clone()
}

fn record_f64(values: &[f64]) -> HistogramSnapshot {
    let r = Registry::new();
    let h = r.float_histogram("h", &[]);
    for &v in values {
        h.record_f64(v);
    }
    r.snapshot().histogram("h", &[]).unwrap().clone()
}

/// Values spread over the whole u64 range on a log scale, plus the extremes.
fn log_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u32..64, any::<u64>()).prop_map(|(bits, r)| if bits == 0 { 0 } else { r >> (64 - bits) }),
        1 => Just(0u64),
        1 => Just(1u64),
        1 => Just(u64::MAX),
        1 => u64::MAX - 1000..=u64::MAX,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn small_integers(values in prop::collection::vec(0u64..2000, 1..2000)) {
        let h = record_u64(&values);
        check(&h, &values.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
    }

    #[test]
    fn whole_u64_range(values in prop::collection::vec(log_u64(), 1..1000)) {
        let h = record_u64(&values);
        // The snapshot's min/max are f64, so compare against the f64 images of the values.
        check(&h, &values.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
    }

    #[test]
    fn single_value(v in log_u64()) {
        let h = record_u64(&[v]);
        for q in h.quantiles(&QS) {
            prop_assert_eq!(q, Some(v as f64));
        }
    }

    #[test]
    fn all_equal(v in log_u64(), n in 1usize..500) {
        let values = vec![v; n];
        let h = record_u64(&values);
        for q in h.quantiles(&QS) {
            prop_assert_eq!(q, Some(v as f64), "min == max pins every quantile");
        }
    }

    #[test]
    fn floats_of_both_signs(values in prop::collection::vec(
        prop_oneof![(-1e12f64..1e12), (-1.0f64..1.0), Just(0.0), (1e-30f64..1e-20)], 1..1500)) {
        let h = record_f64(&values);
        check(&h, &values)?;
    }

    #[test]
    fn lognormal_like_latencies(seed in any::<u64>(), n in 1usize..5000) {
        // Heavy-tailed values from a simple generator: exp of a sum of uniforms.
        let mut x = seed | 1;
        let values: Vec<u64> = (0..n).map(|_| {
            let mut s = 0.0;
            for _ in 0..4 {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                s += (x >> 11) as f64 / (1u64 << 53) as f64;
            }
            (s * 3.0).exp() as u64
        }).collect();
        let h = record_u64(&values);
        check(&h, &values.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
    }

    #[test]
    fn merging_shards_equals_recording_once(a in prop::collection::vec(0u64..100_000, 1..500),
                                            b in prop::collection::vec(0u64..100_000, 1..500)) {
        let mut ha = record_u64(&a);
        let hb = record_u64(&b);
        ha.merge(&hb);
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let h = record_u64(&all);
        prop_assert_eq!(&ha.positive, &h.positive);
        prop_assert_eq!(ha.count, h.count);
        prop_assert_eq!(ha.sum, h.sum);
        check(&ha, &all.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
    }

    #[test]
    fn classic_buckets_are_exact_at_integer_boundaries(values in prop::collection::vec(0u64..5000, 1..1000),
                                                       les in prop::collection::vec(0u64..6000, 1..20)) {
        let h = record_u64(&values);
        let mut les = les;
        les.sort_unstable();
        let bounds: Vec<f64> = les.iter().map(|&l| l as f64).collect();
        let counts = h.count_le_many(&bounds);
        for (le, got) in les.iter().zip(counts) {
            let truth = values.iter().filter(|&&v| v <= *le).count() as u64;
            // Exact at powers of two and below 2^scale; otherwise off by at most the
            // straddling bucket's population.
            if le.is_power_of_two() || *le < 16 {
                prop_assert_eq!(got, truth, "le={}", le);
            } else {
                let idx_lo = (*le as f64 / (1.0 + h.relative_error()).powi(2)) as u64;
                let idx_hi = (*le as f64 * (1.0 + h.relative_error()).powi(2)) as u64 + 1;
                let slack = values.iter().filter(|&&v| v >= idx_lo && v <= idx_hi).count() as u64;
                prop_assert!(got.abs_diff(truth) <= slack, "le={} got={} truth={}", le, got, truth);
            }
        }
    }

    #[test]
    fn downscaling_keeps_counts_and_loosens_error(values in prop::collection::vec(1u64..1_000_000, 1..500), by in 1i8..4) {
        let mut h = record_u64(&values);
        h.downscale(by);
        prop_assert_eq!(h.positive.iter().map(|b| b.1).sum::<u64>(), values.len() as u64);
        check(&h, &values.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
    }
}

#[test]
fn every_scale_meets_its_own_bound() {
    let values: Vec<u64> = (1..20_000u64).map(|i| i * i % 1_000_003 + 1).collect();
    for scale in 0..=8u8 {
        let r = Registry::builder().scale(scale).build().unwrap();
        let h = r.histogram("h", &[]);
        for &v in &values {
            h.record(v);
        }
        let snap = r.snapshot();
        let h = snap.histogram("h", &[]).unwrap();
        assert_eq!(h.scale, scale as i8);
        let floats: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        check(h, &floats).unwrap();
    }
    assert!(Registry::builder().scale(9).build().is_err());
}

/// Fuzzing regression (fuzz target `statsd_packet`, via a StatsD `@1e-300` sample rate):
/// weights adding up past `u64` made the snapshot's count overflow (a panic in debug
/// builds, a wrapped count in release). Counts now saturate at `u64::MAX`.
#[test]
fn weights_adding_up_past_u64_saturate_instead_of_overflowing() {
    let r = Registry::new();
    r.record_f64_n("h", &[], 1.0, u64::MAX);
    r.record_f64_n("h", &[], -1.0, u64::MAX);
    r.record_f64_n("h", &[], 0.0, 3);
    let snap = r.snapshot();
    let h = snap.histogram("h", &[]).expect("histogram recorded");
    assert_eq!(h.count, u64::MAX);
    assert_eq!(h.count_le(0.5), u64::MAX);
    assert_eq!(h.count_le(-0.5), u64::MAX);
    assert!(h.quantile(0.5).is_some());
    let mut merged = h.clone();
    merged.merge(h);
    assert_eq!((merged.count, merged.zero_count), (u64::MAX, 6));
    let text = abacus::exposition::prometheus::render(&snap, &Default::default());
    // The text format writes counts as floats: u64::MAX is 2^64 there. With negative
    // observations there is no `_count` (OpenMetrics), the `+Inf` bucket carries it.
    assert!(
        text.contains("\nh_bucket{le=\"+Inf\"} 18446744073709552000\n"),
        "{text}"
    );
}
