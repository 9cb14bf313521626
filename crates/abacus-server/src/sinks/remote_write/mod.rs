//! Prometheus remote-write v1 export (protobuf + snappy block format), on when
//! `--remote-write-url` is given.
//!
//! What a window becomes (decided here; the brief left it open):
//!
//! * **Counters** are sent as **cumulative totals** named `<name>_total`: the encoder adds each
//!   window's increase to a running total per series, so `rate()` / `increase()` work as on
//!   a scraped counter. The totals live in memory: after a restart they start again from 0,
//!   which PromQL treats as an ordinary counter reset.
//! * **Gauges** are sent as they were at the window's close.
//! * **Histograms** are sent as **classic cumulative histograms**: `<name>_bucket{le=..}`,
//!   `<name>_sum`, `<name>_count`, with the same `le` boundaries as the `/metrics` exposition
//!   (powers of two; 1..65536 for integer histograms, 2^-10..2^16 for float ones) plus `+Inf`,
//!   also accumulated across windows.
//! * Values keep the unit they were recorded in (no ms → s conversion) and names are only
//!   sanitised to the Prometheus charset.
//! * Every sample's timestamp is the **window end** (Unix ms). One window = one request.
//!
//! The cumulative state is advanced when a window is *prepared* (in window order), and the
//! prepared bytes are what is retried or spilled, so a replay after an outage sends exactly
//! the samples the first attempt would have.

pub mod encode;
pub mod proto;
pub mod sink;
