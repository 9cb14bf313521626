//! The embedded SQLite window store (on by default): every closed window, one row per
//! series, in `<data_dir>/abacus.db` (WAL mode), idempotent on `(series, window_start)`, with
//! periodic retention. [`History`] reads it back for `GET /metrics/{name}` beyond what memory
//! holds. Row layout: see [`encode`].

pub mod encode;
pub mod sink;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::{Connection, params};

use super::StorageError;
use super::spill::open;
use crate::windows::{WindowRow, merge_windows};
use encode::{Row, StoredRow};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS windows (
    series       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    labels       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    unit         TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    sum          REAL    NOT NULL,
    min          REAL,
    max          REAL,
    buckets      TEXT,
    PRIMARY KEY (series, window_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS windows_by_name ON windows (name, window_start);
CREATE INDEX IF NOT EXISTS windows_by_end ON windows (window_end);
";

/// Most rows one history query loads (newest first); beyond that the oldest windows are left
/// out, so a query over a long retention cannot exhaust memory. Narrow with `from` / `to`.
pub const MAX_HISTORY_ROWS: usize = 1_000_000;

/// Write side of the window table. Blocking; owned by the SQLite sink thread.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the file cannot be opened or the schema created.
    pub fn open(path: &Path) -> Result<Store, StorageError> {
        let conn = open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Writes the rows of one window in one transaction; a row already present for the same
    /// `(series, window_start)` is replaced (so a retried window is stored once).
    ///
    /// # Errors
    /// [`StorageError::Sqlite`]; nothing is written then.
    pub fn write(&mut self, rows: &[Row]) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO windows
                 (series, window_start, window_end, name, labels, kind, unit, count, sum, min, max, buckets)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for r in rows {
                st.execute(params![
                    r.series,
                    r.window_start,
                    r.window_end,
                    r.name,
                    r.labels,
                    r.kind,
                    r.unit,
                    r.count,
                    r.sum,
                    r.min,
                    r.max,
                    r.buckets
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes rows whose window ended before `horizon_ms`; returns how many.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn delete_before(&mut self, horizon_ms: u64) -> Result<usize, StorageError> {
        Ok(self.conn.execute(
            "DELETE FROM windows WHERE window_end < ?1",
            params![i64::try_from(horizon_ms).unwrap_or(i64::MAX)],
        )?)
    }

    /// Number of rows (tests, benchmarks).
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn len(&self) -> Result<u64, StorageError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM windows", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Whether the table is empty.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.len()? == 0)
    }
}

/// Read side: stored windows for the query API. Cloning shares one connection.
#[derive(Clone, Debug)]
pub struct History {
    /// Lock: taken by one query at a time (from `spawn_blocking`); the sink thread writes
    /// through its own connection, WAL lets both proceed.
    conn: Arc<Mutex<Connection>>,
}

impl History {
    /// Opens a read connection to the database at `path` (creating the schema if needed).
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn open(path: &Path) -> Result<History, StorageError> {
        let conn = open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(History {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Stored windows of `name` starting before `before` (the oldest window memory holds;
    /// `None`: no bound), merged like [`crate::windows::WindowStore::query`]. Blocking.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] or [`StorageError::Corrupt`].
    pub fn query(
        &self,
        name: &str,
        filters: &[(String, String)],
        from: Option<f64>,
        to: Option<f64>,
        before: Option<SystemTime>,
    ) -> Result<Vec<WindowRow>, StorageError> {
        let lo = from.map_or(i64::MIN, |f| (f * 1000.0).max(0.0) as i64);
        let mut hi = to.map_or(i64::MAX, |t| (t * 1000.0).max(0.0) as i64);
        if let Some(b) = before {
            hi = hi.min(i64::try_from(super::unix_ms(b)).unwrap_or(i64::MAX));
        }
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut st = conn.prepare_cached(
            "SELECT name, labels, window_start, window_end, kind, count, sum, min, max, buckets
             FROM windows WHERE name = ?1 AND window_start >= ?2 AND window_start < ?3
             ORDER BY window_start DESC LIMIT ?4",
        )?;
        let limit = i64::try_from(MAX_HISTORY_ROWS).unwrap_or(i64::MAX);
        let rows = st.query_map(params![name, lo, hi, limit], |r| {
            Ok(StoredRow {
                name: r.get(0)?,
                labels: r.get(1)?,
                window_start: r.get(2)?,
                window_end: r.get(3)?,
                kind: r.get(4)?,
                count: r.get(5)?,
                sum: r.get(6)?,
                min: r.get(7)?,
                max: r.get(8)?,
                buckets: r.get(9)?,
            })
        })?;
        let mut decoded = Vec::new();
        for r in rows {
            decoded.push(encode::decode(&r?)?);
        }
        if decoded.len() >= MAX_HISTORY_ROWS {
            // The oldest window loaded may be partial: leave it out rather than show it wrong.
            if let Some(oldest) = decoded.last().map(|(_, w)| w.start) {
                decoded.retain(|(_, w)| w.start != oldest);
            }
            tracing::warn!(
                metric = name,
                rows = MAX_HISTORY_ROWS,
                "History query truncated to the newest rows; narrow it with from/to"
            );
        }
        Ok(merge_windows(
            decoded.iter().map(|(k, w)| (k, w)),
            filters,
            None,
            None,
        ))
    }
}

#[cfg(test)]
mod tests;
