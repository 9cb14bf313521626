//! OTLP/HTTP JSON bodies, identity and gzip: decode within the limits, convert through the
//! cumulative-to-delta tracker (twice, so the second pass yields deltas), apply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    abacus_fuzz::otlp::run(data, Some("application/json"));
});
