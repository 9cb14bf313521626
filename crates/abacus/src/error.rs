//! Errors of the library.

/// A configuration refused by [`RegistryBuilder::build`](crate::RegistryBuilder::build) or
/// [`FlusherBuilder::spawn`](crate::flush::FlusherBuilder::spawn).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The histogram scale is outside `0..=8`.
    #[error("histogram scale {0} is out of range (use 0..=8; 4 gives 2.17% error)")]
    Scale(u8),
    /// `max_series` is zero.
    #[error("max_series must be at least 1")]
    ZeroMaxSeries,
    /// `collect_threads` is zero.
    #[error("collect_threads must be at least 1")]
    ZeroCollectThreads,
    /// The latency metric name is empty.
    #[error("latency metric name must not be empty")]
    EmptyLatencyMetric,
    /// The flush interval is zero.
    #[error("flush interval must be greater than zero")]
    ZeroInterval,
    /// The flusher thread could not be started.
    #[error("could not start the flusher thread: {0}")]
    Spawn(String),
}

/// A sink failed to export a window.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing to the underlying writer failed.
    #[error("sink i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising the window failed.
    #[error("could not serialise the window: {0}")]
    Encode(#[from] serde_json::Error),
    /// The receiving side is gone (channel closed).
    #[error("sink receiver is closed")]
    Closed,
    /// Any other failure, described.
    #[error("{0}")]
    Other(String),
}
