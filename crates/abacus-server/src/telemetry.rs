//! The server's own metrics, recorded into the same registry under the prefix `abacus_`
//! (and so exposed on `GET /metrics` and queryable like any other metric).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `abacus_ingest_requests` | counter | `protocol` (`http_json`, `otlp_http`, `otlp_grpc`, `statsd`): requests / packets received |
//! | `abacus_ingest_samples` | counter | `protocol`: samples applied |
//! | `abacus_ingest_rejects` | counter | `protocol`, `reason`: samples, lines, points or requests refused |
//! | `abacus_series` | gauge | live registry series (overflow series included) |
//! | `abacus_series_refused` | counter | records routed to overflow series because `max_series` was reached |
//! | `abacus_kind_conflicts` | counter | records dropped because their series exists with another kind |
//! | `abacus_window_store_series` | gauge | series held by the window store |

use std::sync::{Mutex, PoisonError};

use abacus::Registry;

use crate::windows::StoreStats;

/// Ingest protocol, the `protocol` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /metrics` and `POST /latency`.
    HttpJson,
    /// OTLP over HTTP.
    OtlpHttp,
    /// OTLP over gRPC.
    OtlpGrpc,
    /// StatsD over UDP.
    Statsd,
}

impl Protocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpJson => "http_json",
            Protocol::OtlpHttp => "otlp_http",
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::Statsd => "statsd",
        }
    }
}

/// Records the server's own metrics.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    /// Lock: window close only (registry counters seen at the previous close).
    last: Mutex<(u64, u64)>,
}

impl Telemetry {
    /// Telemetry recording into `registry`.
    pub fn new(registry: Registry) -> Telemetry {
        Telemetry {
            registry,
            last: Mutex::new((0, 0)),
        }
    }

    /// One request (or packet) received.
    pub fn request(&self, p: Protocol) {
        self.registry
            .increment_counter("abacus_ingest_requests", &[("protocol", p.as_str())], 1);
    }

    /// `n` samples applied.
    pub fn samples(&self, p: Protocol, n: u64) {
        if n > 0 {
            self.registry.increment_counter(
                "abacus_ingest_samples",
                &[("protocol", p.as_str())],
                n,
            );
        }
    }

    /// `n` rejects for `reason`.
    pub fn rejects(&self, p: Protocol, reason: &str, n: u64) {
        if n > 0 {
            self.registry.increment_counter(
                "abacus_ingest_rejects",
                &[("protocol", p.as_str()), ("reason", reason)],
                n,
            );
        }
    }

    /// Updates the registry and store gauges; called at each window close.
    pub fn window_closed(&self, store: StoreStats) {
        let stats = self.registry.stats();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let refused = stats.refused_records.saturating_sub(last.0);
        let conflicts = stats.kind_conflicts.saturating_sub(last.1);
        *last = (stats.refused_records, stats.kind_conflicts);
        drop(last);
        self.registry
            .set_gauge("abacus_series", &[], stats.series as f64);
        self.registry
            .set_gauge("abacus_window_store_series", &[], store.series as f64);
        if refused > 0 {
            self.registry
                .increment_counter("abacus_series_refused", &[], refused);
        }
        if conflicts > 0 {
            self.registry
                .increment_counter("abacus_kind_conflicts", &[], conflicts);
        }
    }
}
