//! StatsD / DogStatsD packets: `parse_packet` and `parse_packet_into` agree, every
//! non-blank line is either accepted or rejected exactly once, accepted samples keep the
//! parser's promises, and applying them to a registry never panics.
#![no_main]

use abacus_fuzz::{apply_all, check_sample, fresh_applier};
use abacus_server::ingest::statsd::{
    RejectCounts, StatsdConfig, parse_line, parse_packet, parse_packet_into,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = StatsdConfig {
        max_line_len: 512,
        max_values_per_line: 8,
        ..StatsdConfig::default()
    };
    let outcome = parse_packet(data, &config);
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count();

    let mut samples = Vec::new();
    let mut rejects = RejectCounts::default();
    let accepted = parse_packet_into(data, &config, &mut samples, &mut rejects);
    assert_eq!(samples, outcome.samples, "the two packet parsers disagree");
    assert_eq!(rejects.total(), outcome.rejects.len() as u64);
    assert_eq!(
        accepted + outcome.rejects.len(),
        lines,
        "a line was lost or counted twice"
    );

    // Per line: a parsed line yields one sample per value (a set line: one member).
    let mut expected = 0;
    for line in data
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
    {
        if let Ok(parsed) = parse_line(line, &config) {
            let mut out = Vec::new();
            if let Ok(n) = parsed.to_samples(&config, &mut out) {
                assert_eq!(n, out.len());
                assert_eq!(n, parsed.values.len());
                assert!(n >= 1 && n <= config.max_values_per_line);
                expected += n;
            } else {
                assert!(out.is_empty(), "a rejected line appended samples");
            }
        }
    }
    assert_eq!(expected, outcome.samples.len());

    for s in &outcome.samples {
        check_sample(s, &config.limits);
    }
    apply_all(&fresh_applier(), &outcome.samples);
});
