//! The server's own metrics, recorded into the same registry under the prefix `abacus_`
//! (and so exposed on `GET /metrics` and queryable like any other metric).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `abacus_ingest_requests` | counter | `protocol` (`http_json`, `otlp_http`, `otlp_grpc`, `statsd`): requests / packets received |
//! | `abacus_ingest_samples` | counter | `protocol`: samples applied |
//! | `abacus_ingest_rejects` | counter | `protocol`, `reason`: samples, lines, points or requests refused |
//! | `abacus_series` | gauge | live registry series (overflow series included) |
//! | `abacus_series_refused` | counter | records routed to overflow series because `max_series` was reached |
//! | `abacus_kind_conflicts` | counter | records dropped because their series exists with another kind |
//! | `abacus_window_store_series` | gauge | series held by the window store |
//! | `abacus_flush_duration` | histogram, seconds | time to take a window's delta and hand it to the window store |
//! | `abacus_runtime_workers` | gauge | Tokio worker threads |
//! | `abacus_runtime_alive_tasks` | gauge | Tokio tasks alive |
//! | `abacus_runtime_global_queue_depth` | gauge | tasks waiting in the runtime's global (injection) queue |
//! | `abacus_runtime_busy_seconds` | counter | time the workers spent busy, summed over workers |
//! | `abacus_connections` | gauge | `listener` (`http`, `otlp_http`, `otlp_grpc`): open TCP connections, updated live |
//! | `abacus_connections_cut` | counter | `listener`, `reason` (`header_timeout`, `request_timeout`): connections / requests cut off by a timeout |
//!
//! Gauges and the runtime figures are sampled at each window close (so a window carries
//! the value at its end, and `GET /metrics` is at most one window old for them). The
//! runtime figures are the ones Tokio offers on stable Rust without `--cfg tokio_unstable`:
//! `num_workers`, `num_alive_tasks`, `global_queue_depth` and (on 64-bit targets)
//! `worker_total_busy_duration`. Per-worker queue depths, steal and poll counts and poll
//! time histograms need `tokio_unstable` and are not recorded.
//!
//! [`RotatingWriter`] writes logs to size-rotated files under a total cap
//! (`abacus serve --log-dir`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use abacus::{Registry, Unit};

use crate::windows::StoreStats;

/// Ingest protocol, the `protocol` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /metrics` and `POST /latency`.
    HttpJson,
    /// OTLP over HTTP.
    OtlpHttp,
    /// OTLP over gRPC.
    OtlpGrpc,
    /// StatsD over UDP.
    Statsd,
    /// StatsD over TCP (newline-delimited lines).
    StatsdTcp,
}

impl Protocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpJson => "http_json",
            Protocol::OtlpHttp => "otlp_http",
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::Statsd => "statsd",
            Protocol::StatsdTcp => "statsd_tcp",
        }
    }
}

/// Reject reasons that get a series at start-up (besides every StatsD parser reason).
const KNOWN_REJECTS: [&str; 11] = [
    "unauthorized",
    "body",
    "content_type",
    "invalid_json",
    "data_point",
    "fractional_counter",
    "set_full",
    "too_many_sets",
    "too_many_set_members",
    "bad_histogram",
    "too_many_connections",
];

const PROTOCOLS: [Protocol; 5] = [
    Protocol::HttpJson,
    Protocol::OtlpHttp,
    Protocol::OtlpGrpc,
    Protocol::Statsd,
    Protocol::StatsdTcp,
];

/// The server's own series, created at start-up and held by handles: they exist before any
/// flood can fill `max_series` (a series first needed afterwards would be routed to an
/// overflow series, and the server would lose count of its refusals), and a held handle
/// keeps them from idle eviction.
#[derive(Debug)]
struct Pinned {
    requests: [abacus::Counter; 5],
    samples: [abacus::Counter; 5],
    rejects: std::collections::HashMap<(&'static str, &'static str), abacus::Counter>,
    series_refused: abacus::Counter,
    kind_conflicts: abacus::Counter,
    cuts: std::collections::HashMap<(&'static str, &'static str), abacus::Counter>,
    connections: std::collections::HashMap<&'static str, abacus::Gauge>,
    /// Series written by name at window close; the handles only keep them alive.
    _gauges: Vec<abacus::Gauge>,
    _busy: abacus::Counter,
    _flush: abacus::Histogram,
}

impl Pinned {
    fn new(r: &Registry) -> Pinned {
        let per_protocol =
            |name: &str| PROTOCOLS.map(|p| r.counter(name, &[("protocol", p.as_str())]));
        let statsd_reasons = crate::ingest::statsd::parser::RejectReason::ALL.map(|x| x.as_str());
        let mut rejects = std::collections::HashMap::new();
        for p in PROTOCOLS {
            for reason in KNOWN_REJECTS.iter().chain(&statsd_reasons) {
                let labels = [("protocol", p.as_str()), ("reason", *reason)];
                rejects.insert(
                    (p.as_str(), *reason),
                    r.counter("abacus_ingest_rejects", &labels),
                );
            }
        }
        let listeners = ["http", "otlp_http", "otlp_grpc"];
        let mut cuts = std::collections::HashMap::new();
        let mut connections = std::collections::HashMap::new();
        for l in listeners {
            for reason in ["header_timeout", "request_timeout"] {
                let labels = [("listener", l), ("reason", reason)];
                cuts.insert((l, reason), r.counter("abacus_connections_cut", &labels));
            }
            connections.insert(l, r.gauge("abacus_connections", &[("listener", l)]));
        }
        Pinned {
            requests: per_protocol("abacus_ingest_requests"),
            samples: per_protocol("abacus_ingest_samples"),
            rejects,
            series_refused: r.counter("abacus_series_refused", &[]),
            kind_conflicts: r.counter("abacus_kind_conflicts", &[]),
            cuts,
            connections,
            _gauges: [
                "abacus_series",
                "abacus_window_store_series",
                "abacus_runtime_workers",
                "abacus_runtime_alive_tasks",
                "abacus_runtime_global_queue_depth",
            ]
            .iter()
            .map(|n| r.gauge(n, &[]))
            .collect(),
            _busy: r.float_counter("abacus_runtime_busy_seconds", &[]),
            _flush: r.float_histogram_with_unit("abacus_flush_duration", &[], Unit::Seconds),
        }
    }
}

fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::HttpJson => 0,
        Protocol::OtlpHttp => 1,
        Protocol::OtlpGrpc => 2,
        Protocol::Statsd => 3,
        Protocol::StatsdTcp => 4,
    }
}

/// Records the server's own metrics.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    pinned: Pinned,
    /// Lock: window close only (registry counters seen at the previous close).
    last: Mutex<(u64, u64)>,
    /// Lock: window close only (runtime busy time seen at the previous close).
    last_busy: Mutex<Duration>,
}

impl Telemetry {
    /// Telemetry recording into `registry`.
    pub fn new(registry: Registry) -> Telemetry {
        Telemetry {
            pinned: Pinned::new(&registry),
            registry,
            last: Mutex::new((0, 0)),
            last_busy: Mutex::new(Duration::ZERO),
        }
    }

    /// One request (or packet) received.
    pub fn request(&self, p: Protocol) {
        self.pinned.requests[protocol_index(p)].increment(1);
    }

    /// `n` samples applied.
    pub fn samples(&self, p: Protocol, n: u64) {
        if n > 0 {
            self.pinned.samples[protocol_index(p)].increment(n);
        }
    }

    /// `n` rejects for `reason`.
    pub fn rejects(&self, p: Protocol, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.pinned.rejects.get(&(p.as_str(), reason)) {
            Some(c) => c.increment(n),
            None => self.registry.increment_counter(
                "abacus_ingest_rejects",
                &[("protocol", p.as_str()), ("reason", reason)],
                n,
            ),
        }
    }

    /// `open` TCP connections on `listener` now (set on each accept and close).
    pub fn connections(&self, listener: &str, open: usize) {
        match self.pinned.connections.get(listener) {
            Some(g) => g.set(open as f64),
            None => self.registry.set_gauge(
                "abacus_connections",
                &[("listener", listener)],
                open as f64,
            ),
        }
    }

    /// A connection or request on `listener` cut off for `reason`.
    pub fn connection_cut(&self, listener: &str, reason: &str) {
        match self.pinned.cuts.get(&(listener, reason)) {
            Some(c) => c.increment(1),
            None => self.registry.increment_counter(
                "abacus_connections_cut",
                &[("listener", listener), ("reason", reason)],
                1,
            ),
        }
    }

    /// Updates the registry and store gauges; called at each window close.
    pub fn window_closed(&self, store: StoreStats) {
        let stats = self.registry.stats();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let refused = stats.refused_records.saturating_sub(last.0);
        let conflicts = stats.kind_conflicts.saturating_sub(last.1);
        *last = (stats.refused_records, stats.kind_conflicts);
        drop(last);
        self.registry
            .set_gauge("abacus_series", &[], stats.series as f64);
        self.registry
            .set_gauge("abacus_window_store_series", &[], store.series as f64);
        if refused > 0 {
            self.pinned.series_refused.increment(refused);
        }
        if conflicts > 0 {
            self.pinned.kind_conflicts.increment(conflicts);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.runtime(&handle.metrics());
        }
    }

    /// How long one window close took to read the registry and feed the window store.
    pub fn flush_duration(&self, d: Duration) {
        self.registry
            .float_histogram_with_unit("abacus_flush_duration", &[], Unit::Seconds)
            .record_f64(d.as_secs_f64());
    }

    /// Samples the Tokio runtime's stable metrics (see the module docs).
    pub fn runtime(&self, m: &tokio::runtime::RuntimeMetrics) {
        let r = &self.registry;
        r.set_gauge("abacus_runtime_workers", &[], m.num_workers() as f64);
        r.set_gauge(
            "abacus_runtime_alive_tasks",
            &[],
            m.num_alive_tasks() as f64,
        );
        r.set_gauge(
            "abacus_runtime_global_queue_depth",
            &[],
            m.global_queue_depth() as f64,
        );
        #[cfg(target_has_atomic = "64")]
        {
            let busy: Duration = (0..m.num_workers())
                .map(|w| m.worker_total_busy_duration(w))
                .sum();
            let mut last = self
                .last_busy
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let inc = busy.saturating_sub(*last);
            *last = busy;
            drop(last);
            r.add_counter_f64("abacus_runtime_busy_seconds", &[], inc.as_secs_f64());
        }
    }
}

/// `# HELP` text of the server's own families (as exposed: counters with `_total`).
pub fn help(family: &str) -> Option<&'static str> {
    Some(match family {
        "abacus_flush_duration_seconds" => {
            "Time to take a window's delta and feed the window store, in seconds."
        }
        "abacus_runtime_workers" => "Tokio worker threads.",
        "abacus_connections" => "Open TCP connections per listener.",
        "abacus_connections_cut" | "abacus_connections_cut_total" => {
            "Connections or requests cut off by a header-read or request timeout."
        }
        "abacus_runtime_alive_tasks" => "Tokio tasks alive.",
        "abacus_runtime_global_queue_depth" => "Tasks waiting in the Tokio global queue.",
        "abacus_runtime_busy_seconds" | "abacus_runtime_busy_seconds_total" => {
            "Time the Tokio workers spent busy, summed over workers, in seconds."
        }
        _ => return None,
    })
}

/// A log writer to size-rotated files with a cap on their total size.
///
/// Files are `<dir>/<prefix>.<seq>.log` with an increasing sequence number; a new file is
/// started when the next write would take the current one past `max_file_bytes` (a single
/// write larger than that still goes whole into a fresh file, so log lines are never split),
/// and at each rotation the oldest files are deleted until the older files plus a full
/// current file fit in `max_total_bytes`: the total never exceeds the cap (short of a single
/// oversized line). Each start continues after the highest existing sequence number.
///
/// Clones share the file (one `Mutex`, taken by logging threads for one write each).
/// Usable as a `tracing_subscriber` writer via `move || writer.clone()`.
#[derive(Clone, Debug)]
pub struct RotatingWriter {
    inner: Arc<Mutex<Rotating>>,
}

#[derive(Debug)]
struct Rotating {
    dir: PathBuf,
    prefix: String,
    max_file: u64,
    max_total: u64,
    seq: u64,
    file: File,
    size: u64,
}

fn seq_of(prefix: &str, name: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

impl Rotating {
    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{}.{seq:06}.log", self.prefix))
    }

    /// Existing log files, oldest first, with their sizes.
    fn files(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, PathBuf, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(seq) = name.to_str().and_then(|n| seq_of(prefix, n)) else {
                continue;
            };
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((seq, entry.path(), len));
        }
        out.sort_by_key(|f| f.0);
        Ok(out)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.seq += 1;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(self.seq))?;
        self.size = 0;
        self.enforce_total()
    }

    /// Deletes the oldest files (never the current one) until the older files plus a full
    /// current file fit under the cap, so the total stays under it until the next rotation.
    fn enforce_total(&mut self) -> io::Result<()> {
        let older: Vec<_> = Rotating::files(&self.dir, &self.prefix)?
            .into_iter()
            .filter(|f| f.0 < self.seq)
            .collect();
        let mut total: u64 = older.iter().map(|f| f.2).sum();
        for (_, path, len) in older {
            if total + self.max_file <= self.max_total {
                break;
            }
            std::fs::remove_file(&path)?;
            total -= len;
        }
        Ok(())
    }
}

impl RotatingWriter {
    /// Opens `<dir>/<prefix>.<seq>.log` (creating `dir`), continuing after existing files.
    ///
    /// # Errors
    /// I/O errors creating the directory or the file; `InvalidInput` when a limit is 0 or
    /// `max_total_bytes < max_file_bytes`.
    pub fn new(
        dir: impl Into<PathBuf>,
        prefix: &str,
        max_file_bytes: u64,
        max_total_bytes: u64,
    ) -> io::Result<RotatingWriter> {
        if max_file_bytes == 0 || max_total_bytes < max_file_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "log limits: need 0 < max file bytes <= max total bytes",
            ));
        }
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let seq = Rotating::files(&dir, prefix)?.last().map_or(0, |f| f.0 + 1);
        let path = dir.join(format!("{prefix}.{seq:06}.log"));
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut r = Rotating {
            dir,
            prefix: prefix.to_owned(),
            max_file: max_file_bytes,
            max_total: max_total_bytes,
            seq,
            file,
            size: 0,
        };
        r.enforce_total()?;
        Ok(RotatingWriter {
            inner: Arc::new(Mutex::new(r)),
        })
    }
}

impl Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut r = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if r.size > 0 && r.size + buf.len() as u64 > r.max_file {
            r.rotate()?;
        }
        r.file.write_all(buf)?;
        r.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .file
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "abacus-rotate-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn sizes(dir: &Path) -> Vec<u64> {
        Rotating::files(dir, "abacus")
            .unwrap()
            .iter()
            .map(|f| f.2)
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_the_total_under_the_cap() {
        let dir = tempdir("cap");
        let mut w = RotatingWriter::new(&dir, "abacus", 100, 350).unwrap();
        let line = [b'x'; 29]; // + newline = 30 bytes: 3 lines per 100-byte file
        for _ in 0..100 {
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
        }
        w.flush().unwrap();
        let s = sizes(&dir);
        assert!(s.iter().all(|&n| n <= 100), "{s:?}");
        assert!(s.iter().sum::<u64>() <= 350, "{s:?}");
        assert!(s.len() >= 3, "{s:?}");
        // Every remaining file holds whole lines.
        for f in Rotating::files(&dir, "abacus").unwrap() {
            let text = std::fs::read_to_string(&f.1).unwrap();
            assert!(text.lines().all(|l| l.len() == 29), "{text:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_continues_after_the_last_file_and_oversized_writes_stay_whole() {
        let dir = tempdir("restart");
        {
            let mut w = RotatingWriter::new(&dir, "abacus", 10, 1000).unwrap();
            w.write_all(b"first\n").unwrap();
        }
        let mut w = RotatingWriter::new(&dir, "abacus", 10, 1000).unwrap();
        w.write_all(b"second\n").unwrap();
        w.write_all(b"a line longer than ten bytes\n").unwrap();
        let files = Rotating::files(&dir, "abacus").unwrap();
        assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            std::fs::read_to_string(&files[2].1).unwrap(),
            "a line longer than ten bytes\n"
        );
        assert!(RotatingWriter::new(&dir, "abacus", 0, 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn self_telemetry_is_queryable_and_exposed_with_help() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let state = crate::AppState::new(crate::Config::default()).unwrap();
            for _ in 0..2 {
                let st = state.clone();
                tokio::task::spawn_blocking(move || st.close_window())
                    .await
                    .unwrap();
            }
            // The first close recorded the gauges; the second carried them into a window.
            let rows = state
                .windows()
                .query("abacus_runtime_workers", &[], None, None);
            assert_eq!(rows.last().unwrap().sum, 2.0);
            let flushes = state
                .windows()
                .query("abacus_flush_duration", &[], None, None);
            assert_eq!(flushes.iter().map(|r| r.count).sum::<u64>(), 1);
            let resp = crate::router(state)
                .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let text = String::from_utf8(body.to_vec()).unwrap();
            for family in [
                "abacus_runtime_workers",
                "abacus_runtime_alive_tasks",
                "abacus_runtime_global_queue_depth",
                "abacus_runtime_busy_seconds_total",
                "abacus_flush_duration_seconds",
            ] {
                let help = format!("# HELP {family} ");
                let line = text.lines().find(|l| l.starts_with(&help));
                let line = line.unwrap_or_else(|| panic!("no HELP for {family}:\n{text}"));
                assert!(!line.contains("Aggregated by abacus"), "{line}");
            }
        });
    }

    #[test]
    fn window_close_records_runtime_and_registry_gauges() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let registry = Registry::new();
        let t = Telemetry::new(registry.clone());
        rt.block_on(async {
            t.window_closed(StoreStats::default());
        });
        t.flush_duration(Duration::from_micros(250));
        let s = registry.snapshot();
        assert_eq!(s.gauge("abacus_runtime_workers", &[]), Some(2.0));
        assert!(s.gauge("abacus_runtime_alive_tasks", &[]).is_some());
        assert!(s.gauge("abacus_runtime_global_queue_depth", &[]).is_some());
        assert!(s.gauge("abacus_series", &[]).is_some());
        assert_eq!(s.histogram("abacus_flush_duration", &[]).unwrap().count, 1);
    }
}
