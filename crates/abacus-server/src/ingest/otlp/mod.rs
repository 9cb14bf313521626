//! OTLP metrics ingest: body decoding, conversion to samples, and
//! cumulative→delta temporality handling.

pub mod temporality;
