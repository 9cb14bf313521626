//! OTLP.
