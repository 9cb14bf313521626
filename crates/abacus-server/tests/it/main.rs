//! Integration tests of the server: in-process router tests (`tower::ServiceExt::oneshot`)
//! and real servers on `127.0.0.1` port 0 driven by real clients (reqwest, the
//! OpenTelemetry Rust exporters, cadence). One binary, submodules per area.

mod common;
mod limits;
mod otlp;
mod router;
mod sockets;
mod statsd;
mod storage;
