//! Storage and export sinks: every closed window goes to each configured sink through its own
//! bounded queue, off the ingest path.
//!
//! ```text
//! close_window ──► SinkHub::dispatch ──try_send──► [queue] ──► sqlite thread  ──► windows table
//!                                      ├─try_send──► [queue] ──► dynamodb task  ──► BatchWriteItem
//!                                      └─try_send──► [queue] ──► remote-write task ──► POST snappy(protobuf)
//!                                                                  │ store down
//!                                                                  ▼
//!                                                          spill_<sink> table (same SQLite file),
//!                                                          replayed oldest first on recovery
//! ```
//!
//! * `dispatch` never blocks: a full queue (the sink cannot even keep up with spilling) drops
//!   the window for that sink only, counted in `abacus_sink_dropped_windows{reason="queue_full"}`
//!   and logged.
//! * A remote sink retries a window with exponential backoff and full jitter
//!   ([`retry::Backoff`]); after [`StorageConfig::attempts_before_spill`] failed attempts it
//!   spills the window to SQLite and stays in "outage" mode: later windows are appended to the
//!   spill (so order is kept) until the replay loop has delivered the spill, oldest first.
//!   The spill is bounded by [`StorageConfig::max_spill_windows`]; beyond that the oldest
//!   spilled windows are dropped (`reason="spill_full"`). A store that answers "bad request"
//!   for a window drops it at once (`reason="rejected"`): retrying cannot help.
//! * Writes are idempotent: SQLite upserts on `(series, window_start)`, DynamoDB items are
//!   keyed by series and window start, remote-write samples carry the window end as their
//!   timestamp (a receiver that deduplicates, like VictoriaMetrics with
//!   `-dedup.minScrapeInterval`, drops a repeated delivery).
//! * On shutdown the hub closes the queues; each sink drains what is queued (one attempt per
//!   window for remote sinks, then spill; SQLite does not retry a failed write then, it counts
//!   the window as dropped) before [`SinkHub::shutdown`] returns.
//! * A `kill -9` loses the open window and the closed windows not yet committed to SQLite
//!   (see the server README, "Durability"; `tests/reliability/kill9.sh`).
//!
//! Metrics, recorded into the server's registry (so on `GET /metrics`), label `sink`:
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `abacus_sink_written_windows` | counter | windows the store acknowledged |
//! | `abacus_sink_retries` | counter | failed attempts that were retried |
//! | `abacus_sink_spilled_windows` | counter | windows written to the spill table |
//! | `abacus_sink_dropped_windows` | counter | windows lost, label `reason` |
//! | `abacus_sink_queue_depth` | gauge | windows waiting in the in-memory queue |
//! | `abacus_sink_spill_depth` | gauge | windows waiting in the spill table |

#[cfg(feature = "remote-sinks")]
pub mod dynamodb;
pub mod queue;
#[cfg(feature = "remote-sinks")]
pub mod remote_write;
pub mod retry;
pub mod spill;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::time::Duration;

use abacus::{MetricKind, Snapshot};
use serde::{Deserialize, Serialize};

pub use queue::{SinkCounters, SinkHub};

/// Why the storage layer could not start or a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The data directory cannot be created or written.
    #[error(
        "data directory {path} is not usable: cannot create or write a file there (permissions, read-only or full filesystem; check --data-dir)"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SQLite file cannot be opened or its tables created at start-up (e.g. the data
    /// directory's filesystem is full or read-only).
    #[error(
        "cannot open the SQLite file {path} (is the data directory's filesystem full or read-only? check --data-dir)"
    )]
    Open {
        /// The SQLite file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// SQLite refused an operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be decoded.
    #[error("corrupt stored window: {0}")]
    Corrupt(String),
    /// A sink's configuration is invalid.
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

/// Storage and export configuration (TOML table `[storage]`).
///
/// ```toml
/// [storage]
/// data_dir = "./abacus-data"      # SQLite file abacus.db (windows + spill tables)
/// queue_windows = 256             # per-sink in-memory queue
/// max_spill_windows = 1000000     # per remote sink; oldest dropped beyond
/// attempts_before_spill = 3
/// retry_initial_ms = 100
/// retry_max_ms = 5000
/// shutdown_timeout_ms = 15000
///
/// [storage.sqlite]
/// enabled = true
/// retention_secs = 604800         # rows older than this are deleted (0 keeps everything)
///
/// [storage.dynamodb]              # absent: off
/// table = "metrics-service"
/// endpoint = "http://127.0.0.1:8000"   # optional; default: the AWS endpoint of the region
/// region = "us-east-1"                 # optional; default: AWS_REGION / profile
///
/// [storage.remote_write]          # absent: off
/// url = "http://127.0.0.1:8428/api/v1/write"
/// timeout_ms = 5000
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the SQLite file (`abacus.db`); created if absent. Default `./abacus-data`.
    pub data_dir: PathBuf,
    /// Windows each sink's in-memory queue holds. Default 256.
    pub queue_windows: usize,
    /// Windows each remote sink may keep in its spill table. Default 1 000 000.
    pub max_spill_windows: u64,
    /// Failed attempts at one window before a remote sink spills it. Default 3.
    pub attempts_before_spill: u32,
    /// First retry delay in milliseconds (doubles per attempt, full jitter). Default 100.
    pub retry_initial_ms: u64,
    /// Largest retry delay in milliseconds. Default 5 000.
    pub retry_max_ms: u64,
    /// How long shutdown waits for the sinks to drain or spill. Default 15 000.
    pub shutdown_timeout_ms: u64,
    /// The embedded SQLite window store.
    pub sqlite: SqliteConfig,
    /// DynamoDB export; `None` is off.
    pub dynamodb: Option<DynamoDbConfig>,
    /// Prometheus remote-write export; `None` is off.
    pub remote_write: Option<RemoteWriteConfig>,
}

/// `[storage.sqlite]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// Store every closed window in SQLite (and read history from it). Default true. The
    /// file is still used for spill tables when this is off and a remote sink is on.
    pub enabled: bool,
    /// Rows whose window ended longer ago than this are deleted; 0 keeps all. Default 7 days.
    pub retention_secs: u64,
}

/// `[storage.dynamodb]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamoDbConfig {
    /// Table name (created if absent, on-demand billing). Default `metrics-service`.
    pub table: String,
    /// Endpoint override (dynalite, DynamoDB Local); default from the AWS environment.
    pub endpoint: Option<String>,
    /// Region; default from the AWS environment (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Timeout of one request in milliseconds. Default 5 000.
    pub timeout_ms: u64,
}

/// `[storage.remote_write]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Receiver URL, e.g. `http://127.0.0.1:8428/api/v1/write`.
    pub url: String,
    /// Timeout of one request in milliseconds. Default 5 000.
    pub timeout_ms: u64,
    /// Sent as `Authorization: Bearer <token>` on every request (a Mimir/Cortex gateway,
    /// a hosted Prometheus). Default none.
    pub bearer_token: Option<String>,
    /// Extra headers on every request, e.g. `X-Scope-OrgID` (the tenant of a multi-tenant
    /// Mimir, Cortex or Thanos receiver). Default none.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./abacus-data"),
            queue_windows: 256,
            max_spill_windows: 1_000_000,
            attempts_before_spill: 3,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            shutdown_timeout_ms: 15_000,
            sqlite: SqliteConfig::default(),
            dynamodb: None,
            remote_write: None,
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            enabled: true,
            retention_secs: 7 * 24 * 3600,
        }
    }
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        DynamoDbConfig {
            table: "metrics-service".to_owned(),
            endpoint: None,
            region: None,
            timeout_ms: 5_000,
        }
    }
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: String::new(),
            timeout_ms: 5_000,
            bearer_token: None,
            headers: std::collections::BTreeMap::new(),
        }
    }
}

impl StorageConfig {
    /// Storage with every sink off and the SQLite file in `dir` (tests, embedding).
    pub fn in_dir(dir: impl AsRef<Path>) -> StorageConfig {
        StorageConfig {
            data_dir: dir.as_ref().to_path_buf(),
            ..StorageConfig::default()
        }
    }

    /// Storage with nothing on: no file is created.
    pub fn disabled() -> StorageConfig {
        StorageConfig {
            sqlite: SqliteConfig {
                enabled: false,
                ..SqliteConfig::default()
            },
            ..StorageConfig::default()
        }
    }

    /// Whether any sink (and so the SQLite file) is in use.
    pub fn any_enabled(&self) -> bool {
        self.sqlite.enabled || self.dynamodb.is_some() || self.remote_write.is_some()
    }

    /// Path of the SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("abacus.db")
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`StorageError::Config`] naming the first bad value.
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |m: &str| Err(StorageError::Config(m.to_owned()));
        if self.queue_windows == 0 {
            return bad("queue_windows must be at least 1");
        }
        if self.attempts_before_spill == 0 {
            return bad("attempts_before_spill must be at least 1");
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return bad("retry_initial_ms must be > 0 and <= retry_max_ms");
        }
        if let Some(rw) = &self.remote_write {
            if !(rw.url.starts_with("http://") || rw.url.starts_with("https://")) {
                return bad("remote_write.url must be an http:// or https:// URL");
            }
        }
        if let Some(d) = &self.dynamodb {
            if d.table.is_empty() {
                return bad("dynamodb.table must not be empty");
            }
        }
        Ok(())
    }

    pub(crate) fn backoff(&self) -> retry::Backoff {
        retry::Backoff::new(
            Duration::from_millis(self.retry_initial_ms),
            Duration::from_millis(self.retry_max_ms),
        )
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The canonical series key: `name{a="x",b="y"}` with labels sorted by name (the core
/// [`abacus::Key`] display form), used as SQLite primary key part and DynamoDB partition key.
pub fn series_key(key: &abacus::Key) -> String {
    key.to_string()
}

/// The part of a window the sinks store: the series the in-memory window store keeps too
/// (a counter with no increase and an empty histogram carry nothing; gauges always do).
pub fn storable(window: &Snapshot) -> Snapshot {
    Snapshot {
        start: window.start,
        end: window.end,
        series: window
            .series
            .iter()
            .filter(|s| !(s.value.is_zero() && s.kind != MetricKind::Gauge))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn storage_defaults_to_sqlite_only_in_abacus_data() {
        let c = Config::from_toml_str("").unwrap();
        assert!(c.storage.sqlite.enabled);
        assert!(c.storage.dynamodb.is_none() && c.storage.remote_write.is_none());
        assert_eq!(
            c.storage.db_path(),
            std::path::Path::new("./abacus-data/abacus.db")
        );
    }

    #[test]
    fn several_sinks_from_toml() {
        let c = Config::from_toml_str(
            r#"
[storage]
data_dir = "/var/lib/abacus"
queue_windows = 8
[storage.sqlite]
retention_secs = 60
[storage.dynamodb]
endpoint = "http://127.0.0.1:8000"
[storage.remote_write]
url = "http://127.0.0.1:8428/api/v1/write"
"#,
        )
        .unwrap();
        let s = &c.storage;
        assert_eq!(s.queue_windows, 8);
        assert_eq!(s.sqlite.retention_secs, 60);
        let d = s.dynamodb.as_ref().unwrap();
        assert_eq!(d.table, "metrics-service");
        assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(s.remote_write.as_ref().unwrap().url.ends_with("/write"));
    }

    #[test]
    fn bad_storage_values_are_refused() {
        assert!(Config::from_toml_str("[storage]\nqueue_windows = 0").is_err());
        assert!(Config::from_toml_str("[storage.remote_write]\nurl = \"ftp://x\"").is_err());
        assert!(Config::from_toml_str("[storage.dynamodb]\ntable = \"\"").is_err());
        assert!(Config::from_toml_str("[storage]\nbogus = 1").is_err());
    }
}
