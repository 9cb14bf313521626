//! Read side of the HTTP API: windows of one metric, per-service health and the
//! Prometheus exposition of the live registry.

mod handlers;

pub(crate) use handlers::{metric_windows, prometheus, services};
