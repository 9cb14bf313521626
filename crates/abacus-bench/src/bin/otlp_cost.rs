//! Cost of the server's OTLP/HTTP protobuf path in-process, for instruction counts:
//! `decode_request` + `AppState::export_otlp` of the 1,000-point benchmark body, `N` times
//! (default 200) after 20 warm-up requests, on one thread, with the `abacus` binary's
//! allocator (mimalloc).
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='otlp_cost::measured' target/release/otlp_cost 50
//! ```
//! then `Ir / (50 × 1,000)` is the instructions per point.

use std::hint::black_box;

use abacus_bench::server_load::{OTLP_POINTS, otlp_body};
use abacus_server::ingest::otlp::decode::{DecodeLimits, decode_request};
use abacus_server::telemetry::Protocol;
use abacus_server::{AppState, Config};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[inline(never)]
fn measured(st: &AppState, body: &[u8], limits: &DecodeLimits, n: usize) {
    for _ in 0..n {
        let req = decode_request(
            black_box(body),
            Some("application/x-protobuf"),
            None,
            limits,
        )
        .expect("benchmark body decodes");
        let resp = st.export_otlp(Protocol::OtlpHttp, &req);
        assert!(resp.partial_success.is_none());
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(200, |a| a.parse().expect("N is a number"));
    let st = AppState::new(Config::default()).expect("default config is valid");
    let body = otlp_body();
    let limits = DecodeLimits::default();
    measured(&st, &body, &limits, 20);
    let t = std::time::Instant::now();
    measured(&st, &body, &limits, n);
    let el = t.elapsed();
    println!(
        "{n} requests of {OTLP_POINTS} points: {:.3} s, {:.0} ns/point, {:.0} points/s (1 thread)",
        el.as_secs_f64(),
        el.as_nanos() as f64 / (n * OTLP_POINTS) as f64,
        (n * OTLP_POINTS) as f64 / el.as_secs_f64()
    );
}
