//! `abacus load`: drives an abacus server (or anything taking the same JSON, OTLP/HTTP
//! protobuf or StatsD) with a phased profile, and accounts for every request with the
//! abacus core itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), abacus_load::LoadError> {
//! use std::time::Duration;
//! use abacus_load::{LoadConfig, Target};
//!
//! let mut config = LoadConfig::new(Target::Http { base_url: "http://127.0.0.1:3001".into() });
//! config.profile.scale_to(Duration::from_secs(5));
//! let report = abacus_load::run(config).await?;
//! println!("{}", report.to_table());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod error;
pub mod profile;
pub mod progress;
pub mod report;
pub mod run;
pub mod stats;
pub mod target;

pub use error::{LoadError, ProfileError};
pub use profile::{ModeKind, Phase, Profile, SeriesKind, SeriesTemplate, ValueDist};
pub use report::{LatencySummary, PhaseReport, Report, TimePoint};
pub use run::{LoadConfig, LoadRun, run};
pub use stats::{Live, LoadStats};
pub use target::Target;
