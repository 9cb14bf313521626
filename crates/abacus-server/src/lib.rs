//! Socket-free ingest layer of the abacus server.
#![forbid(unsafe_code)]

pub mod ingest;
