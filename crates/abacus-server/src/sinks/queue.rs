//! The fan-out: [`SinkHub`] hands each closed window to every sink's bounded queue, and
//! [`run_remote`] is the task behind a remote sink's queue (retry, spill, replay).

// Without the remote sinks (fuzz builds) the retry / spill / replay machinery is unused.
#![cfg_attr(not(feature = "remote-sinks"), allow(dead_code, unused_variables))]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use abacus::{Registry, Snapshot};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::retry::Backoff;
use super::spill::Spill;
use super::sqlite::History;
use super::{StorageConfig, StorageError, unix_ms};

/// Counters of one sink: kept as atomics (for tests and the shutdown log) and recorded into
/// the server's registry as `abacus_sink_*{sink="<name>"}`.
#[derive(Debug)]
pub struct SinkCounters {
    name: &'static str,
    registry: Registry,
    // Relaxed everywhere below: independent statistics, nothing is published through them.
    written: AtomicU64,
    retries: AtomicU64,
    spilled: AtomicU64,
    dropped: AtomicU64,
    spill_depth: AtomicU64,
}

impl SinkCounters {
    pub(crate) fn new(name: &'static str, registry: Registry) -> Arc<SinkCounters> {
        Arc::new(SinkCounters {
            name,
            registry,
            written: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            spill_depth: AtomicU64::new(0),
        })
    }

    /// The sink's name (`sqlite`, `dynamodb`, `remote_write`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn count(&self, metric: &str, n: u64) {
        if n > 0 {
            self.registry
                .increment_counter(metric, &[("sink", self.name)], n);
        }
    }

    pub(crate) fn written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        self.count("abacus_sink_written_windows", n);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.count("abacus_sink_retries", 1);
    }

    pub(crate) fn spilled(&self) {
        self.spilled.fetch_add(1, Ordering::Relaxed);
        self.count("abacus_sink_spilled_windows", 1);
    }

    pub(crate) fn dropped(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.registry.increment_counter(
            "abacus_sink_dropped_windows",
            &[("sink", self.name), ("reason", reason)],
            n,
        );
        tracing::warn!(sink = self.name, reason, windows = n, "Dropped windows");
    }

    pub(crate) fn set_queue_depth(&self, depth: usize) {
        self.registry.set_gauge(
            "abacus_sink_queue_depth",
            &[("sink", self.name)],
            depth as f64,
        );
    }

    pub(crate) fn set_spill_depth(&self, depth: u64) {
        self.spill_depth.store(depth, Ordering::Relaxed);
        self.registry.set_gauge(
            "abacus_sink_spill_depth",
            &[("sink", self.name)],
            depth as f64,
        );
    }

    /// Windows the store acknowledged.
    pub fn written_total(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Failed attempts.
    pub fn retries_total(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Windows written to the spill.
    pub fn spilled_total(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }
    /// Windows lost.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Windows currently spilled.
    pub fn spill_depth(&self) -> u64 {
        self.spill_depth.load(Ordering::Relaxed)
    }
}

struct Slot {
    counters: Arc<SinkCounters>,
    tx: mpsc::Sender<Arc<Snapshot>>,
    task: JoinHandle<()>,
}

/// Every configured sink, each behind its own bounded queue. See the [module docs](super).
pub struct SinkHub {
    /// Lock: taken by `dispatch` (once per window close) and by `shutdown`; never by ingest.
    slots: Mutex<Vec<Slot>>,
    counters: Vec<Arc<SinkCounters>>,
    history: Option<History>,
    closing: Arc<AtomicBool>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for SinkHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHub")
            .field(
                "sinks",
                &self.counters.iter().map(|c| c.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Settings of a remote sink's task.
#[derive(Debug, Clone)]
pub(crate) struct RemoteSettings {
    pub(crate) attempts_before_spill: u32,
    pub(crate) backoff: Backoff,
}

impl SinkHub {
    /// Opens the data directory and starts every sink enabled in `config`, recording their
    /// counters into `registry`. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StorageError::DataDir`] when the directory cannot be created or written,
    /// [`StorageError::Open`] when the database cannot be opened (full or read-only disk),
    /// [`StorageError::Config`] for an invalid sink configuration.
    pub async fn start(
        config: &StorageConfig,
        registry: Registry,
    ) -> Result<SinkHub, StorageError> {
        config.validate()?;
        let closing = Arc::new(AtomicBool::new(false));
        let mut hub = SinkHub {
            slots: Mutex::new(Vec::new()),
            counters: Vec::new(),
            history: None,
            closing: closing.clone(),
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        };
        if !config.any_enabled() {
            return Ok(hub);
        }
        prepare_data_dir(&config.data_dir)?;
        let db = config.db_path();
        // Name the file in any SQLite error while opening (a nearly full disk passes the
        // directory probe but fails here).
        let opening = |e: StorageError| match e {
            StorageError::Sqlite(source) => StorageError::Open {
                path: db.clone(),
                source,
            },
            e => e,
        };
        let remote = RemoteSettings {
            attempts_before_spill: config.attempts_before_spill,
            backoff: config.backoff(),
        };
        let mut slots = Vec::new();
        if config.sqlite.enabled {
            let store = super::sqlite::Store::open(&db).map_err(opening)?;
            hub.history = Some(History::open(&db).map_err(opening)?);
            let counters = SinkCounters::new("sqlite", registry.clone());
            let (tx, rx) = mpsc::channel(config.queue_windows);
            let retention = Duration::from_secs(config.sqlite.retention_secs);
            let (c, b, cl) = (counters.clone(), config.backoff(), closing.clone());
            let task = tokio::task::spawn_blocking(move || {
                super::sqlite::sink::run(store, rx, c, b, retention, cl);
            });
            slots.push(Slot { counters, tx, task });
        }
        #[cfg(not(feature = "remote-sinks"))]
        if config.remote_write.is_some() || config.dynamodb.is_some() {
            return Err(StorageError::Config(
                "this build has no remote sinks (feature `remote-sinks` is off)".to_owned(),
            ));
        }
        #[cfg(feature = "remote-sinks")]
        if let Some(rw) = &config.remote_write {
            let backend = super::remote_write::sink::RemoteWrite::new(rw)?;
            slots.push(
                spawn_remote(backend, &db, config, &registry, remote.clone(), &closing)
                    .map_err(opening)?,
            );
        }
        #[cfg(feature = "remote-sinks")]
        if let Some(d) = &config.dynamodb {
            let backend = super::dynamodb::sink::DynamoDb::connect(d).await?;
            slots.push(
                spawn_remote(backend, &db, config, &registry, remote.clone(), &closing)
                    .map_err(opening)?,
            );
        }
        hub.counters = slots.iter().map(|s| s.counters.clone()).collect();
        for s in &hub.counters {
            tracing::info!(sink = s.name, db = %db.display(), "Sink started");
        }
        hub.slots = Mutex::new(slots);
        Ok(hub)
    }

    /// The durable window history (when the SQLite sink is on).
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// The counters of every sink.
    pub fn counters(&self) -> &[Arc<SinkCounters>] {
        &self.counters
    }

    /// Hands a closed window to every sink. Never blocks: a sink whose queue is full loses
    /// this window (counted as dropped, `reason="queue_full"`), the others are unaffected.
    pub fn dispatch(&self, window: &Snapshot) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.is_empty() {
            return;
        }
        let w = super::storable(window);
        if w.series.is_empty() {
            return;
        }
        let w = Arc::new(w);
        for s in slots.iter() {
            match s.tx.try_send(w.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => s.counters.dropped("queue_full", 1),
                Err(mpsc::error::TrySendError::Closed(_)) => s.counters.dropped("closed", 1),
            }
            s.counters
                .set_queue_depth(s.tx.max_capacity() - s.tx.capacity());
        }
    }

    /// Closes the queues and waits (at most the configured shutdown timeout) until every sink
    /// has written or spilled what was queued. Windows dispatched afterwards are dropped.
    pub async fn shutdown(&self) {
        // Relaxed: read by the sink tasks after they see the closed channel or between
        // windows; a late read only means one more full retry cycle before spilling.
        self.closing.store(true, Ordering::Relaxed);
        let slots = std::mem::take(&mut *self.slots.lock().unwrap_or_else(PoisonError::into_inner));
        let deadline = Instant::now() + self.shutdown_timeout;
        for Slot { counters, tx, task } in slots {
            drop(tx);
            match tokio::time::timeout_at(deadline, task).await {
                Ok(_) => tracing::info!(
                    sink = counters.name,
                    written = counters.written_total(),
                    spilled = counters.spilled_total(),
                    spill_depth = counters.spill_depth(),
                    dropped = counters.dropped_total(),
                    "Sink stopped"
                ),
                Err(_) => tracing::error!(
                    sink = counters.name,
                    "Sink did not drain before the shutdown timeout; queued windows are lost"
                ),
            }
        }
    }
}

fn prepare_data_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    let err = |source| StorageError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Probe: SQLite would only fail later, on the first write, with a less helpful message.
    let probe = dir.join(".abacus-write-test");
    std::fs::write(&probe, b"ok").map_err(err)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn spawn_remote<B: Backend>(
    backend: B,
    db: &std::path::Path,
    config: &StorageConfig,
    registry: &Registry,
    settings: RemoteSettings,
    closing: &Arc<AtomicBool>,
) -> Result<Slot, StorageError> {
    let name = backend.name();
    let spill = Spill::open(db, name, config.max_spill_windows)?;
    let counters = SinkCounters::new(name, registry.clone());
    counters.set_spill_depth(spill.len());
    if !spill.is_empty() {
        tracing::info!(
            sink = name,
            windows = spill.len(),
            "Spilled windows from a previous run will be replayed"
        );
    }
    let (tx, rx) = mpsc::channel(config.queue_windows);
    let task = tokio::spawn(run_remote(
        backend,
        rx,
        spill,
        counters.clone(),
        settings,
        closing.clone(),
    ));
    Ok(Slot { counters, tx, task })
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The store is unreachable or overloaded: retry later.
    #[error("{0}")]
    Retryable(String),
    /// The store refused this payload for good (a 4xx): retrying cannot help.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// A remote store, as the sink task sees it.
pub trait Backend: Send + 'static {
    /// Sink name: the `sink` label and the spill table suffix.
    fn name(&self) -> &'static str;
    /// Turns a window into the bytes to send (and to spill). Called once per window, in
    /// window order, so it may keep state (cumulative totals).
    ///
    /// # Errors
    /// A message when the window cannot be encoded (it is then dropped).
    fn prepare(&mut self, window: &Snapshot) -> Result<Vec<u8>, String>;
    /// Sends one prepared payload. Must be idempotent: the same payload may be sent twice.
    fn send(&mut self, payload: &[u8]) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Entries replayed per turn before the queue is looked at again.
const REPLAY_BATCH: usize = 64;

type SharedSpill = Arc<Mutex<Spill>>;

async fn with_spill<R: Send + 'static>(
    spill: &SharedSpill,
    f: impl FnOnce(&mut Spill) -> Result<R, StorageError> + Send + 'static,
) -> Result<R, StorageError> {
    let spill = spill.clone();
    tokio::task::spawn_blocking(move || {
        f(&mut spill.lock().unwrap_or_else(PoisonError::into_inner))
    })
    .await
    .map_err(|e| StorageError::Corrupt(format!("spill task failed: {e}")))?
}

/// The task behind a remote sink's queue. Ends when the queue is closed and drained.
pub(crate) async fn run_remote<B: Backend>(
    mut backend: B,
    mut rx: mpsc::Receiver<Arc<Snapshot>>,
    spill: Spill,
    counters: Arc<SinkCounters>,
    settings: RemoteSettings,
    closing: Arc<AtomicBool>,
) {
    let name = backend.name();
    let mut spill_len = spill.len();
    let spill: SharedSpill = Arc::new(Mutex::new(spill));
    let mut backoff = settings.backoff.clone();
    let mut next_replay = Instant::now();
    let mut outage_logged = false;
    loop {
        // Relaxed: see `SinkHub::shutdown`.
        let is_closing = closing.load(Ordering::Relaxed);
        tokio::select! {
            biased;
            msg = rx.recv() => {
                let Some(window) = msg else { break };
                let start_ms = unix_ms(window.start);
                let payload = match backend.prepare(&window) {
                    Ok(p) => p,
                    Err(error) => {
                        tracing::error!(sink = name, %error, "Cannot encode window");
                        counters.dropped("encode", 1);
                        continue;
                    }
                };
                if spill_len == 0 {
                    let attempts = if is_closing { 1 } else { settings.attempts_before_spill };
                    if deliver(&mut backend, &payload, attempts, &mut backoff, &counters).await {
                        outage_logged = false;
                        continue;
                    }
                    next_replay = Instant::now() + backoff.next_delay();
                }
                if !outage_logged {
                    tracing::warn!(sink = name, window_start_ms = start_ms, "Store unreachable; spilling windows to SQLite");
                    outage_logged = true;
                }
                match with_spill(&spill, move |s| Ok((s.push(start_ms, &payload)?, s.len()))).await {
                    Ok((dropped, len)) => {
                        counters.spilled();
                        counters.dropped("spill_full", dropped);
                        spill_len = len;
                        counters.set_spill_depth(len);
                    }
                    Err(error) => {
                        tracing::error!(sink = name, %error, "Cannot spill window");
                        counters.dropped("spill_error", 1);
                    }
                }
            }
            () = tokio::time::sleep_until(next_replay), if spill_len > 0 && !is_closing => {
                match replay(&mut backend, &spill, &counters, &mut backoff).await {
                    Ok(len) => {
                        spill_len = len;
                        if len == 0 {
                            tracing::info!(sink = name, "Spill replayed; store reachable again");
                            outage_logged = false;
                        } else if backoff.attempts() > 0 {
                            next_replay = Instant::now() + backoff.next_delay();
                        }
                    }
                    Err(error) => {
                        tracing::error!(sink = name, %error, "Cannot read the spill");
                        next_replay = Instant::now() + backoff.next_delay();
                    }
                }
                counters.set_spill_depth(spill_len);
            }
        }
    }
}

/// Up to `attempts` tries with backoff. True when the payload is done with (written, or
/// rejected and dropped), false when it should be spilled.
async fn deliver<B: Backend>(
    backend: &mut B,
    payload: &[u8],
    attempts: u32,
    backoff: &mut Backoff,
    counters: &SinkCounters,
) -> bool {
    for attempt in 1..=attempts {
        match backend.send(payload).await {
            Ok(()) => {
                backoff.reset();
                counters.written(1);
                return true;
            }
            Err(SendError::Rejected(error)) => {
                tracing::error!(sink = backend.name(), %error, "Store rejected a window");
                counters.dropped("rejected", 1);
                return true;
            }
            Err(SendError::Retryable(error)) => {
                counters.retried();
                tracing::debug!(sink = backend.name(), attempt, %error, "Write failed");
                if attempt < attempts {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
    false
}

/// Sends the oldest spilled windows (at most [`REPLAY_BATCH`]), deleting each once written.
/// Stops at the first retryable failure (leaving `backoff` advanced). Returns the spill length.
async fn replay<B: Backend>(
    backend: &mut B,
    spill: &SharedSpill,
    counters: &SinkCounters,
    backoff: &mut Backoff,
) -> Result<u64, StorageError> {
    for _ in 0..REPLAY_BATCH {
        let Some(entry) = with_spill(spill, |s| s.oldest()).await? else {
            break;
        };
        match backend.send(&entry.payload).await {
            Ok(()) => {
                backoff.reset();
                counters.written(1);
            }
            Err(SendError::Rejected(error)) => {
                tracing::error!(sink = backend.name(), %error, "Store rejected a spilled window");
                counters.dropped("rejected", 1);
            }
            Err(SendError::Retryable(error)) => {
                counters.retried();
                tracing::debug!(sink = backend.name(), %error, "Replay failed");
                // Make sure the caller waits before the next attempt.
                if backoff.attempts() == 0 {
                    backoff.next_delay();
                }
                break;
            }
        }
        let seq = entry.seq;
        with_spill(spill, move |s| s.remove(seq)).await?;
    }
    with_spill(spill, |s| Ok(s.len())).await
}
