//! The spill: windows a remote sink could not deliver, kept in the local SQLite file (one
//! table `spill_<sink>` per sink) until the store is back, then replayed oldest first and
//! deleted.
//!
//! A spilled entry is the sink's prepared payload (the bytes it would have sent), so a replay
//! sends exactly what the first attempt would have, and stateful encodings (cumulative
//! counters for remote-write) are not recomputed out of order.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::StorageError;

/// One spilled window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spilled {
    /// Position in the spill (strictly increasing, also across restarts).
    pub seq: i64,
    /// Start of the window, Unix ms (for logs).
    pub window_start_ms: u64,
    /// The prepared payload.
    pub payload: Vec<u8>,
}

/// The spill table of one sink. Blocking; remote sinks call it through `spawn_blocking`.
#[derive(Debug)]
pub struct Spill {
    conn: Connection,
    table: String,
    max: u64,
    len: u64,
}

/// Opens `path` with the settings every connection of ours uses: WAL, a busy timeout (several
/// connections share the file), `synchronous=NORMAL` (durable across process crashes; the
/// last transactions may be lost on power loss, which WAL keeps consistent), a larger cache.
pub(crate) fn open(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 64 MiB page cache (default 2 MiB): a window upserts one row per series, spread over the
    // whole primary-key B-tree, so the cache must hold the tree's inner pages.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

impl Spill {
    /// Opens (creating if needed) the spill table of `sink` in the SQLite file `path`, holding
    /// at most `max` windows.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the file cannot be opened or the table created.
    pub fn open(path: &Path, sink: &str, max: u64) -> Result<Spill, StorageError> {
        if !sink.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StorageError::Config(format!("bad sink name {sink:?}")));
        }
        let conn = open(path)?;
        let table = format!("spill_{sink}");
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                window_start INTEGER NOT NULL,
                payload BLOB NOT NULL
            )"
        ))?;
        let len: i64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(Spill {
            conn,
            table,
            max: max.max(1),
            len: u64::try_from(len).unwrap_or(0),
        })
    }

    /// Windows in the spill.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the spill is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a window; when the spill then holds more than its bound, the oldest entries
    /// are deleted. Returns how many were deleted that way (dropped windows).
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn push(&mut self, window_start_ms: u64, payload: &[u8]) -> Result<u64, StorageError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO {} (window_start, payload) VALUES (?1, ?2)",
                self.table
            ),
            params![i64::try_from(window_start_ms).unwrap_or(i64::MAX), payload],
        )?;
        let mut dropped = 0;
        if self.len + 1 > self.max {
            let excess = self.len + 1 - self.max;
            dropped = tx.execute(
                &format!(
                    "DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t} ORDER BY seq LIMIT ?1)",
                    t = self.table
                ),
                params![i64::try_from(excess).unwrap_or(i64::MAX)],
            )? as u64;
        }
        tx.commit()?;
        self.len = self.len + 1 - dropped;
        Ok(dropped)
    }

    /// The oldest spilled window, if any.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn oldest(&self) -> Result<Option<Spilled>, StorageError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT seq, window_start, payload FROM {} ORDER BY seq LIMIT 1",
                    self.table
                ),
                [],
                |r| {
                    Ok(Spilled {
                        seq: r.get(0)?,
                        window_start_ms: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        payload: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Deletes a delivered entry.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`].
    pub fn remove(&mut self, seq: i64) -> Result<(), StorageError> {
        let n = self.conn.execute(
            &format!("DELETE FROM {} WHERE seq = ?1", self.table),
            params![seq],
        )?;
        self.len = self.len.saturating_sub(n as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_order_is_push_order_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut s = Spill::open(&path, "rw", 100).unwrap();
        for i in 0..5u64 {
            assert_eq!(s.push(i * 1000, &[i as u8]).unwrap(), 0);
        }
        drop(s);
        let mut s = Spill::open(&path, "rw", 100).unwrap();
        assert_eq!(s.len(), 5);
        let mut seen = Vec::new();
        while let Some(e) = s.oldest().unwrap() {
            seen.push((e.window_start_ms, e.payload[0]));
            s.remove(e.seq).unwrap();
        }
        assert_eq!(
            seen,
            (0..5).map(|i| (i * 1000, i as u8)).collect::<Vec<_>>()
        );
        assert!(s.is_empty());
        // Sequence numbers keep increasing after the table was emptied.
        s.push(9, b"x").unwrap();
        assert!(s.oldest().unwrap().unwrap().seq > 5);
    }

    #[test]
    fn bound_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::open(&dir.path().join("a.db"), "dyn", 3).unwrap();
        let mut dropped = 0;
        for i in 0..5u64 {
            dropped += s.push(i, &[i as u8]).unwrap();
        }
        assert_eq!((dropped, s.len()), (2, 3));
        assert_eq!(s.oldest().unwrap().unwrap().payload, vec![2]);
    }

    #[test]
    fn sinks_have_separate_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut a = Spill::open(&path, "a", 10).unwrap();
        let b = Spill::open(&path, "b", 10).unwrap();
        a.push(1, b"1").unwrap();
        assert_eq!((a.len(), b.len()), (1, 0));
        assert!(b.oldest().unwrap().is_none());
        assert!(Spill::open(&path, "x; DROP", 10).is_err());
    }
}
