//! The SQLite sink: a blocking loop on Tokio's blocking pool, draining its queue into
//! [`Store`], with retries on a busy or failing database and periodic retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use abacus::Snapshot;
use tokio::sync::mpsc;

use super::{Store, encode};
use crate::sinks::SinkCounters;
use crate::sinks::retry::Backoff;

/// Attempts at writing one window before it is dropped (SQLite is local: failing this often
/// means a full disk or a broken file, not an outage to wait out).
const ATTEMPTS: u32 = 5;
/// How often expired rows are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Runs until the queue is closed and drained. Once `closing` is set (shutdown), a failed write
/// is not retried, so a failing disk cannot hold the shutdown past its timeout with windows
/// left uncounted in the queue: every window ends written or counted as dropped.
pub(crate) fn run(
    mut store: Store,
    mut rx: mpsc::Receiver<Arc<Snapshot>>,
    counters: Arc<SinkCounters>,
    mut backoff: Backoff,
    retention: Duration,
    closing: Arc<AtomicBool>,
) {
    let mut last_retention: Option<Instant> = None;
    while let Some(window) = rx.blocking_recv() {
        let rows = encode::rows(&window);
        let mut done = false;
        for attempt in 1..=ATTEMPTS {
            match store.write(&rows) {
                Ok(()) => {
                    backoff.reset();
                    counters.written(1);
                    done = true;
                    break;
                }
                Err(error) => {
                    counters.retried();
                    tracing::warn!(sink = "sqlite", attempt, %error, "Write failed");
                    // Relaxed: see `SinkHub::shutdown`; a late read costs one more retry.
                    if attempt == ATTEMPTS || closing.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(backoff.next_delay());
                }
            }
        }
        if !done {
            counters.dropped("write_error", 1);
        }
        if !retention.is_zero() && last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(Instant::now());
            let horizon = SystemTime::now()
                .checked_sub(retention)
                .map_or(0, crate::sinks::unix_ms);
            match store.delete_before(horizon) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sink = "sqlite", rows = n, "Expired rows deleted"),
                Err(error) => tracing::warn!(sink = "sqlite", %error, "Retention failed"),
            }
        }
    }
}
