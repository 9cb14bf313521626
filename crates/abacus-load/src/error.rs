//! Errors of the load generator.

/// A profile that cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The TOML text does not parse, or has unknown keys.
    #[error("invalid profile TOML: {0}")]
    Toml(String),
    /// A field is out of range.
    #[error("invalid profile: {0}")]
    Invalid(String),
}

/// Starting a load run failed (requests that fail while running are results, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// See [`ProfileError`].
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The target URL or address is not usable.
    #[error("invalid target {target:?}: {reason}")]
    Target {
        /// What was given.
        target: String,
        /// Why it is refused.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A local socket could not be opened (StatsD).
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The core registry or flusher refused its configuration.
    #[error("metrics recorder: {0}")]
    Recorder(#[from] abacus::BuildError),
    /// A worker task panicked or was cancelled.
    #[error("a load worker failed: {0}")]
    Worker(String),
}
