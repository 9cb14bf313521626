//! # abacus
//!
//! High-throughput metrics aggregation: many threads record, one collector periodically
//! reads windows of aggregates and hands them to sinks.
//!
//! * **Counters** only go up (requests served, bytes sent).
//! * **Gauges** go up and down (connections open, queue depth).
//! * **Histograms** keep the distribution of a value (latency), from which p50, p95, p99
//!   and friends are read with a bounded relative error, plus the exact count, sum, min and
//!   max.
//!
//! Series are keyed by metric name and labels; [`Registry::record_latency`] is the
//! shorthand for the histogram `latency{service="..."}` in milliseconds.
//!
//! Recording is lock-free and contention-free on the steady path: each thread writes its
//! own shard of every series with plain atomic stores. See `DESIGN.md` for the model, the
//! memory bound and the measurements.
//!
//! ```
//! use std::time::Duration;
//! use abacus::{Registry, flush::{Flusher, MemorySink}};
//!
//! let registry = Registry::new();
//! let sink = MemorySink::new(16);
//! let flusher = Flusher::builder(registry.clone())
//!     .interval(Duration::from_secs(10))
//!     .sink(sink.clone())
//!     .spawn()
//!     .unwrap();
//! std::thread::scope(|s| {
//!     for t in 0..4 {
//!         let r = &registry;
//!         s.spawn(move || for i in 0..1000 { r.record_latency("api", i % 100 + t) });
//!     }
//! });
//! flusher.shutdown(); // flushes the last partial window
//! let total: u64 = sink.windows().iter()
//!     .filter_map(|w| w.histogram("latency", &[("service", "api")]).map(|h| h.count))
//!     .sum();
//! assert_eq!(total, 4000);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rustdoc::broken_intra_doc_links)]

mod error;
pub mod exposition;
pub mod flush;
mod handle;
pub mod histogram;
mod key;
#[cfg(feature = "metrics")]
pub mod recorder;
mod registry;
mod snapshot;
mod sync;

pub use error::{BuildError, SinkError};
pub use handle::{Counter, Gauge, Histogram, LocalHistogram};
pub use histogram::HistogramSnapshot;
pub use key::{Key, Label};
pub use registry::{
    MetricKind, OVERFLOW_LABEL_VALUE, Registry, RegistryBuilder, RegistryConfig, RegistryStats,
};
pub use snapshot::{SeriesSnapshot, Snapshot, Unit, Value};
