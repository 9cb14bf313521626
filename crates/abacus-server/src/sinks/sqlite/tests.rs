use std::time::{Duration, UNIX_EPOCH};

use abacus::{Registry, Snapshot};

use super::*;

fn window(reg: &Registry, start_ms: u64, len_ms: u64) -> Snapshot {
    let mut w = reg.delta();
    w.start = UNIX_EPOCH + Duration::from_millis(start_ms);
    w.end = UNIX_EPOCH + Duration::from_millis(start_ms + len_ms);
    w
}

#[test]
fn stored_windows_load_back_merged_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abacus.db");
    let mut store = Store::open(&path).unwrap();
    let reg = Registry::new();
    for i in 0..3u64 {
        reg.increment_counter("req", &[("svc", "a")], 10 + i);
        reg.increment_counter("req", &[("svc", "b")], 1);
        reg.record_f64("lat", &[("svc", "a")], 5.0);
        store
            .write(&encode::rows(&window(&reg, 1_000_000 + i * 1000, 1000)))
            .unwrap();
    }
    assert_eq!(store.len().unwrap(), 9);
    let h = History::open(&path).unwrap();
    let rows = h.query("req", &[], None, None, None).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter().map(|r| r.sum).collect::<Vec<_>>(),
        vec![11.0, 12.0, 13.0]
    );
    assert_eq!(rows[0].start_ms, 1_000_000);
    let a = h
        .query("req", &[("svc".into(), "b".into())], None, None, None)
        .unwrap();
    assert_eq!(a.iter().map(|r| r.sum).sum::<f64>(), 3.0);
    let lat = h.query("lat", &[], None, None, None).unwrap();
    assert_eq!((lat[0].count, lat[0].kind), (1, "histogram"));
    // Bounds: [from, to) in seconds, and `before` (memory's oldest window) exclusive.
    assert_eq!(
        h.query("req", &[], Some(1001.0), None, None).unwrap().len(),
        2
    );
    assert_eq!(
        h.query("req", &[], None, Some(1001.0), None).unwrap().len(),
        1
    );
    let before = UNIX_EPOCH + Duration::from_millis(1_002_000);
    assert_eq!(
        h.query("req", &[], None, None, Some(before)).unwrap().len(),
        2
    );
}

#[test]
fn writing_a_window_twice_stores_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abacus.db");
    let mut store = Store::open(&path).unwrap();
    let reg = Registry::new();
    reg.increment_counter("req", &[], 5);
    let rows = encode::rows(&window(&reg, 5000, 1000));
    store.write(&rows).unwrap();
    store.write(&rows).unwrap();
    drop(store);
    // Reopening finds the same single row.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.len().unwrap(), 1);
    let rows = History::open(&path)
        .unwrap()
        .query("req", &[], None, None, None)
        .unwrap();
    assert_eq!((rows.len(), rows[0].sum), (1, 5.0));
}

#[test]
fn retention_deletes_rows_that_ended_before_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("abacus.db")).unwrap();
    let reg = Registry::new();
    for i in 0..10u64 {
        reg.set_gauge("g", &[], i as f64);
        store
            .write(&encode::rows(&window(&reg, i * 1000, 1000)))
            .unwrap();
    }
    // Windows end at 1000, 2000, ..., 10000: those ending before 5000 go.
    assert_eq!(store.delete_before(5000).unwrap(), 4);
    assert_eq!(store.len().unwrap(), 6);
    assert_eq!(store.delete_before(5000).unwrap(), 0);
}

#[test]
fn wal_mode_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("abacus.db")).unwrap();
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
