//! OTLP metrics ingest: body decoding ([`decode`]), conversion to samples
//! ([`convert`]), and cumulative→delta temporality handling
//! ([`temporality`]).
//!
//! Typical use by a server:
//! `decode::decode_request` → `convert::convert_request` (with one long-lived
//! `temporality::CumulativeToDelta`) → hand `samples` to the core and report
//! `rejected_data_points` / `error_message()` as OTLP partial success.

pub mod convert;
pub mod decode;
pub mod temporality;

/// Re-export of the `opentelemetry-proto` crate used for the OTLP types.
pub use opentelemetry_proto;
