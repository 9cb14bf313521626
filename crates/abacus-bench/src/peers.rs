//! [`Target`](crate::Target) adapters for the peer libraries.
//!
//! Each adapter follows the library's documented usage for a histogram with
//! a dynamic `service` label. Where the library needs an owned label value to
//! look a series up by name (`metrics`, `prometheus-client`, OpenTelemetry),
//! the by-name path allocates it on every call: that is what a caller holding
//! a `&str` service name has to do with those APIs, so it is part of the
//! measured cost.
//!
//! To add abacus: create `abacus.rs` here with an `Abacus` type implementing
//! `Target`, re-export it below, and add one `bench_target(..)` line in
//! `benches/peers.rs` (marked `ABACUS:`).

mod abacus;
mod baseline;
mod metrics_rs;
mod otel;
mod prom;
mod prom_client;

pub use abacus::{Abacus, AbacusHandles};
pub use baseline::{Baseline, BaselineHandles, Stats};
pub use metrics_rs::{MetricsRs, MetricsRsHandles};
pub use otel::{Otel, OtelHandles};
pub use prom::{Prom, PromHandles};
pub use prom_client::{PromClient, PromClientHandles, ServiceLabels};
