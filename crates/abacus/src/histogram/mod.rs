//! Mergeable base-2 exponential histograms.
//!
//! Write side: [`atomic`] keeps one counter per bucket, allocated lazily an octave at a
//! time, plus sum, min and max. Read side: [`HistogramSnapshot`] is plain data that
//! answers quantiles, merges (across shards, windows and instances) and converts to
//! classic `le` buckets.
//!
//! # Accuracy and cost by scale
//!
//! | scale | buckets per ×2 | worst relative error | bytes per touched octave |
//! |------:|---------------:|---------------------:|-------------------------:|
//! | 2     | 4              | 8.6%                 | 32                       |
//! | 3     | 8              | 4.3%                 | 64                       |
//! | **4** (default) | 16   | **2.17%**            | 128                      |
//! | 5     | 32             | 1.08%                | 256                      |
//! | 6     | 64             | 0.54%                | 512                      |
//! | 8     | 256            | 0.14%                | 2048                     |

pub(crate) mod atomic;
pub mod index;
mod snapshot;

pub use snapshot::HistogramSnapshot;
pub(crate) use snapshot::{BoundIndex, HistogramTotals, HistogramView, RawHistogram};

/// The default scale: 16 buckets per power of two, quantiles within 2.17%.
pub const DEFAULT_SCALE: u8 = 4;
