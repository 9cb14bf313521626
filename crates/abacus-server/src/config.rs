//! Server configuration: plain serde structs, loadable from TOML.
//!
//! Command-line flags and environment variables are the binary's business; it builds a
//! [`Config`] (optionally starting from a TOML file, see [`Config::from_toml_str`]).
//!
//! ```toml
//! window_ms = 10000          # length of one aggregation window
//! retention_secs = 3600      # how long closed windows are kept for the query API
//! max_series = 10000         # live series in the registry (and in the window store)
//! token = "s3cret"           # optional bearer token for ingest and query endpoints
//!
//! [listen]                   # "off" disables a listener
//! http = "127.0.0.1:3001"
//! otlp_http = "127.0.0.1:4318"
//! otlp_grpc = "127.0.0.1:4317"
//! statsd = "off"
//! statsd_tcp = "127.0.0.1:8125"   # StatsD over TCP (default off)
//!
//! [limits]
//! max_body_bytes = 4194304          # JSON ingest bodies
//! otlp_max_body_bytes = 16777216    # OTLP bodies as received
//! otlp_max_decompressed_bytes = 67108864
//! max_set_members = 10000           # distinct members per StatsD set per window
//! max_set_members_total = 100000    # members of all StatsD sets together per window
//! statsd_recv_buffer_bytes = 4194304
//! header_read_timeout_ms = 10000    # HTTP/1: a request head (or an idle keep-alive) must arrive in time
//! request_timeout_ms = 30000        # body read + handling of one request (HTTP 408 / gRPC DEADLINE_EXCEEDED)
//! max_connections = 1024            # open connections per TCP listener; more wait in the backlog
//! grpc_max_concurrent_streams = 128 # HTTP/2 streams per gRPC connection
//! grpc_max_header_list_bytes = 16384
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML text could not be parsed or has unknown / mistyped keys.
    #[error("invalid configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Complete server configuration. Every field has a default (see [`Config::default`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses per protocol.
    pub listen: Listen,
    /// Length of one aggregation window in milliseconds. Default 10 000.
    pub window_ms: u64,
    /// How long closed windows are kept, in seconds. Default 3 600.
    pub retention_secs: u64,
    /// Maximum number of live series in the registry; also bounds the window store.
    /// Default 10 000.
    pub max_series: usize,
    /// Evict a registry series after this many windows without a sample; `0` never evicts.
    /// Default: `None`, meaning the retention in windows (`retention / window`).
    pub evict_after_idle_windows: Option<u32>,
    /// Bearer token required on ingest and query endpoints (`Authorization: Bearer ...`,
    /// gRPC metadata `authorization`). Health endpoints stay open. Default: none.
    pub token: Option<String>,
    /// Size limits.
    pub limits: BodyLimits,
    /// Metric names the `/services` view is built from.
    pub services: ServicesConfig,
    /// Storage and export sinks (`[storage]`, see [`crate::sinks::StorageConfig`]).
    pub storage: crate::sinks::StorageConfig,
}

/// Listen addresses; `None` (TOML: `"off"`) disables that listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// HTTP API (ingest, query, Prometheus, health). Default `127.0.0.1:3001`.
    #[serde(with = "addr_or_off")]
    pub http: Option<SocketAddr>,
    /// OTLP over HTTP (`POST /v1/metrics`). Default `127.0.0.1:4318`.
    #[serde(with = "addr_or_off")]
    pub otlp_http: Option<SocketAddr>,
    /// OTLP over gRPC (`MetricsService/Export`). Default `127.0.0.1:4317`.
    #[serde(with = "addr_or_off")]
    pub otlp_grpc: Option<SocketAddr>,
    /// StatsD / DogStatsD over UDP. Default `127.0.0.1:8125`.
    #[serde(with = "addr_or_off")]
    pub statsd: Option<SocketAddr>,
    /// StatsD / DogStatsD over TCP, newline-delimited lines. Default off.
    #[serde(with = "addr_or_off")]
    pub statsd_tcp: Option<SocketAddr>,
}

/// Size limits of the ingest paths, and connection limits and timeouts of the listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BodyLimits {
    /// Largest JSON ingest body (`POST /metrics`, `POST /latency`). Default 4 MiB.
    pub max_body_bytes: usize,
    /// Largest JSON ingest batch in items. Default 10 000.
    pub max_items: usize,
    /// Largest OTLP body as received. Default 16 MiB.
    pub otlp_max_body_bytes: usize,
    /// Largest OTLP body after gzip decompression. Default 64 MiB.
    pub otlp_max_decompressed_bytes: usize,
    /// Distinct members kept per StatsD set per window (more are counted as rejects).
    /// Default 10 000.
    pub max_set_members: usize,
    /// Distinct members of all StatsD sets together per window (more are counted as rejects,
    /// reason `too_many_set_members`). Default 100 000.
    pub max_set_members_total: usize,
    /// Requested `SO_RCVBUF` of the StatsD socket. Default 4 MiB (the kernel may cap it at
    /// `net.core.rmem_max`).
    pub statsd_recv_buffer_bytes: usize,
    /// HTTP/1 listeners: time allowed to receive a request head, counted from the first
    /// read (and between requests on a keep-alive connection); a client trickling headers
    /// (slowloris) or idling is disconnected after it. Default 10 000 ms.
    pub header_read_timeout_ms: u64,
    /// Time allowed for one request once its head arrived: reading the body and answering.
    /// Past it HTTP answers 408 (JSON error) and gRPC `DEADLINE_EXCEEDED`. Default 30 000 ms.
    pub request_timeout_ms: u64,
    /// Open connections per TCP listener (HTTP API, OTLP/HTTP, OTLP/gRPC). When reached,
    /// the listener stops accepting until one closes (new clients wait in the kernel
    /// backlog). Default 1 024.
    pub max_connections: usize,
    /// HTTP/2 concurrent streams per OTLP/gRPC connection. Default 128.
    pub grpc_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list on the OTLP/gRPC listener, in bytes. Default 16 KiB.
    pub grpc_max_header_list_bytes: u32,
}

/// Metric names behind `GET /services` (all keyed by the label `service`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    /// Latency histogram (default `latency`, the one `POST /latency` writes).
    pub latency_metric: String,
    /// Request counter (default `requests`).
    pub requests_metric: String,
    /// Error counter (default `errors`).
    pub errors_metric: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Listen::default(),
            window_ms: 10_000,
            retention_secs: 3_600,
            max_series: 10_000,
            evict_after_idle_windows: None,
            token: None,
            limits: BodyLimits::default(),
            services: ServicesConfig::default(),
            storage: crate::sinks::StorageConfig::default(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        let local = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        Listen {
            http: local(3001),
            otlp_http: local(4318),
            otlp_grpc: local(4317),
            statsd: local(8125),
            statsd_tcp: None,
        }
    }
}

impl Listen {
    /// Every listener on `127.0.0.1` port 0 (the OS picks free ports): for tests.
    pub fn loopback_ephemeral() -> Listen {
        let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        Listen {
            http: any,
            otlp_http: any,
            otlp_grpc: any,
            statsd: any,
            statsd_tcp: any,
        }
    }

    /// Enabled addresses that are not loopback (exposed beyond this machine).
    pub fn non_loopback(&self) -> Vec<SocketAddr> {
        [
            self.http,
            self.otlp_http,
            self.otlp_grpc,
            self.statsd,
            self.statsd_tcp,
        ]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback())
        .collect()
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_body_bytes: 4 << 20,
            max_items: 10_000,
            otlp_max_body_bytes: 16 << 20,
            otlp_max_decompressed_bytes: 64 << 20,
            max_set_members: 10_000,
            max_set_members_total: 100_000,
            statsd_recv_buffer_bytes: 4 << 20,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 1_024,
            grpc_max_concurrent_streams: 128,
            grpc_max_header_list_bytes: 16 << 10,
        }
    }
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            latency_metric: "latency".to_owned(),
            requests_metric: "requests".to_owned(),
            errors_metric: "errors".to_owned(),
        }
    }
}

impl Config {
    /// Parses a TOML document; missing keys keep their defaults, unknown keys are errors.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] for syntax errors and unknown or mistyped keys,
    /// [`ConfigError::Invalid`] for out-of-range values.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.window_ms == 0 {
            return bad("window_ms must be greater than zero");
        }
        if self.retention_secs.saturating_mul(1000) < self.window_ms {
            return bad("retention_secs must cover at least one window");
        }
        if self.max_series == 0 {
            return bad("max_series must be at least 1");
        }
        if self.token.as_deref() == Some("") {
            return bad("token must not be empty (omit it to disable authentication)");
        }
        if self.limits.max_body_bytes == 0 || self.limits.otlp_max_body_bytes == 0 {
            return bad("body limits must be greater than zero");
        }
        let l = &self.limits;
        if l.header_read_timeout_ms == 0 || l.request_timeout_ms == 0 {
            return bad("header_read_timeout_ms and request_timeout_ms must be greater than zero");
        }
        if l.max_connections == 0 || l.grpc_max_concurrent_streams == 0 {
            return bad("max_connections and grpc_max_concurrent_streams must be at least 1");
        }
        if l.grpc_max_header_list_bytes < 1024 {
            return bad("grpc_max_header_list_bytes must be at least 1024");
        }
        self.storage
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// [`BodyLimits::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.header_read_timeout_ms)
    }

    /// [`BodyLimits::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.request_timeout_ms)
    }

    /// Number of closed windows kept per series (`retention / window`, at least 1).
    pub fn windows_retained(&self) -> usize {
        let n = self.retention_secs.saturating_mul(1000) / self.window_ms.max(1);
        usize::try_from(n).unwrap_or(usize::MAX).max(1)
    }

    /// Idle windows before a registry series is evicted.
    pub fn evict_after_idle(&self) -> u32 {
        self.evict_after_idle_windows
            .unwrap_or_else(|| u32::try_from(self.windows_retained()).unwrap_or(u32::MAX))
    }
}

/// `Option<SocketAddr>` as a string, `"off"` (or `""`) meaning `None`.
mod addr_or_off {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        a: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(D::Error::custom)
    }

    pub(crate) fn parse(s: &str) -> Result<Option<SocketAddr>, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:3001 or \"off\""))
    }
}

/// Parses a listen address as the TOML file does: `host:port`, or `off` to disable.
///
/// # Errors
/// A message when the text is neither.
pub fn parse_listen_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    addr_or_off::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_defaults() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.http.unwrap().port(), 3001);
        assert_eq!(c.windows_retained(), 360);
        assert_eq!(c.evict_after_idle(), 360);
    }

    #[test]
    fn off_disables_a_listener_and_values_override_defaults() {
        let c = Config::from_toml_str(
            "window_ms = 500\ntoken = \"t\"\n[listen]\nstatsd = \"off\"\nhttp = \"0.0.0.0:80\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.statsd, None);
        assert_eq!(c.listen.http, Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(c.listen.non_loopback().len(), 1);
        assert_eq!(c.window_ms, 500);
        assert_eq!(c.token.as_deref(), Some("t"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(Config::from_toml_str("windw_ms = 5").is_err());
        assert!(Config::from_toml_str("window_ms = 0").is_err());
        assert!(Config::from_toml_str("[listen]\nhttp = \"nowhere\"").is_err());
        assert!(Config::from_toml_str("token = \"\"").is_err());
        assert!(Config::from_toml_str("[limits]\nheader_read_timeout_ms = 0").is_err());
        assert!(Config::from_toml_str("[limits]\nmax_connections = 0").is_err());
        let c = Config::from_toml_str("[limits]\nrequest_timeout_ms = 1500").unwrap();
        assert_eq!(c.request_timeout(), Duration::from_millis(1500));
    }
}
