//! Exposition formats.

pub mod prometheus;
