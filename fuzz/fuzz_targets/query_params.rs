//! Query strings of `GET /metrics/{name}`: URL-decoded the way axum does, split by
//! `WindowQuery::parse`, then run against a small window store; rows respect `[from, to)`.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use abacus::Registry;
use abacus_server::query::WindowQuery;
use abacus_server::windows::WindowStore;
use axum::extract::Query;
use axum::http::Uri;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static WindowStore {
    static STORE: OnceLock<WindowStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = WindowStore::new(Duration::from_secs(10), Duration::from_secs(3600), 100);
        let r = Registry::new();
        for w in 0..3u32 {
            for host in ["a", "b", "é \"x\""] {
                r.record_f64("m", &[("host", host), ("dc", "eu")], f64::from(w + 1));
                r.increment_counter("c", &[("host", host)], u64::from(w) + 1);
                r.set_gauge("g", &[("host", host)], f64::from(w));
            }
            store.ingest(&r.delta());
        }
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/metrics/m?{raw}").parse::<Uri>() else {
        return;
    };
    let Ok(Query(params)) = Query::<Vec<(String, String)>>::try_from_uri(&uri) else {
        return;
    };
    let Ok(q) = WindowQuery::parse(&params) else {
        assert!(params.iter().any(|(k, _)| k == "from" || k == "to"));
        return;
    };
    let times = params
        .iter()
        .filter(|(k, _)| k == "from" || k == "to")
        .count();
    assert_eq!(q.filters.len() + times, params.len());
    assert!(q.from.is_none_or(f64::is_finite) && q.to.is_none_or(f64::is_finite));
    for name in ["m", "c", "g"] {
        let rows = store().query(name, &q.filters, q.from, q.to);
        for w in rows.windows(2) {
            // Windows are keyed by their exact start; the fixture's three windows are taken
            // within microseconds, so two may share a millisecond.
            assert!(w[0].start_ms <= w[1].start_ms, "rows not oldest first");
        }
        for row in &rows {
            if let Some(from) = q.from {
                assert!(
                    row.start_ms as f64 >= (from * 1000.0).floor(),
                    "{row:?} before from={from}"
                );
            }
            if let Some(to) = q.to {
                assert!(
                    (row.start_ms as f64) < (to * 1000.0).max(0.0),
                    "{row:?} not before to={to}"
                );
            }
            assert!(row.count >= 1);
        }
    }
});
