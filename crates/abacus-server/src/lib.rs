//! The abacus daemon as a library: ingest (HTTP JSON, OTLP HTTP/gRPC, StatsD UDP) into one
//! core [`abacus::Registry`], closed windows for the query API, per-service health and the
//! Prometheus exposition. The `abacus` binary (`abacus serve`) is a thin wrapper around
//! [`serve`] / [`Server`].
//!
//! ```no_run
//! # async fn run() -> Result<(), abacus_server::ServeError> {
//! let mut config = abacus_server::Config::default();
//! config.listen = abacus_server::config::Listen::loopback_ephemeral();
//! let server = abacus_server::Server::bind(config).await?;
//! println!("HTTP API on {:?}", server.http_addr());
//! server.run(std::future::pending()).await // or any shutdown future, e.g. a signal
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod app;
pub mod apply;
pub mod config;
pub mod error;
pub mod ingest;
mod listener;
pub mod otlp;
pub mod query;
pub mod server;
pub mod sinks;
pub mod statsd;
pub mod telemetry;
pub mod windows;

pub use app::{AppState, router};
pub use config::Config;
pub use error::{ApiError, ServeError};
pub use server::{Server, serve};
