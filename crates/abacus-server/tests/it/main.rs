//! Integration tests of the server: in-process router tests (`tower::ServiceExt::oneshot`)
//! and real servers on `127.0.0.1` port 0 driven by real clients (reqwest, the
//! OpenTelemetry Rust exporters, cadence). One binary, submodules per area.

mod access;
mod common;
mod hostile;
mod limits;
mod names;
mod otlp;
mod router;
mod sockets;
mod statsd;
mod storage;
