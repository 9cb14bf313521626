//! Storage sinks with real files and a real (in-process) remote-write receiver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abacus_server::sinks::StorageConfig;
use abacus_server::sinks::remote_write::encode::decompress;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use crate::common::{poll, start, test_config};

async fn push_counter(client: &reqwest::Client, url: &str, name: &str, v: u64) {
    let r = client
        .post(url)
        .body(format!(
            r#"{{"name":"{name}","value":{v},"type":"counter"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn sums(client: &reqwest::Client, url: &str) -> Vec<(u64, f64)> {
    let rows: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["start_ms"].as_u64().unwrap(), r["sum"].as_f64().unwrap()))
        .collect()
}

/// Closes windows at least 2 ms apart so no two share a start millisecond.
async fn close(srv: &crate::common::Running) {
    tokio::time::sleep(Duration::from_millis(3)).await;
    srv.close_window().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.storage = StorageConfig::in_dir(dir.path());
    let client = reqwest::Client::new();

    let srv = start(config.clone()).await;
    for v in [5, 7] {
        push_counter(&client, &srv.url("/metrics"), "req", v).await;
        close(&srv).await;
    }
    push_counter(&client, &srv.url("/metrics"), "req", 9).await;
    // The last window (9) is closed by the shutdown itself and must reach SQLite.
    srv.stop().await.unwrap();
    assert!(dir.path().join("abacus.db").exists());

    let srv = start(config).await;
    push_counter(&client, &srv.url("/metrics"), "req", 11).await;
    close(&srv).await;
    let got = sums(&client, &srv.url("/metrics/req")).await;
    assert_eq!(
        got.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![5.0, 7.0, 9.0, 11.0],
        "{got:?}"
    );
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
    // The same once the new window has also been written to SQLite.
    let state = srv.state.clone();
    poll("sqlite sink caught up", || {
        let s = state.clone();
        async move {
            let c = &s.sinks().unwrap().counters()[0];
            (c.written_total() >= 1).then_some(())
        }
    })
    .await;
    let again = sums(&client, &srv.url("/metrics/req")).await;
    assert_eq!(again, got);
    // Time bounds apply to history too.
    let from = got[1].0 as f64 / 1000.0;
    let bounded = sums(&client, &srv.url(&format!("/metrics/req?from={from}"))).await;
    assert_eq!(bounded.len(), 3);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn unwritable_data_dir_fails_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut config = test_config();
    config.storage = StorageConfig::in_dir(file.join("sub"));
    let err = abacus_server::Server::bind(config).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("data directory") && msg.contains("not-a-dir"),
        "{msg}"
    );
}

#[derive(Default)]
struct Receiver {
    /// Requests still to refuse with 503.
    fail_next: usize,
    refused: usize,
    /// `req_total` samples received: timestamp → values.
    samples: BTreeMap<i64, Vec<f64>>,
    order: Vec<i64>,
    /// Headers every request must carry (refused with 401 otherwise, and counted).
    require: Vec<(&'static str, &'static str)>,
    unauthorized: usize,
}

async fn receive(
    State(rx): State<Arc<Mutex<Receiver>>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut r = rx.lock().unwrap();
    let carried = |(k, v): &(&str, &str)| headers.get(*k).is_some_and(|h| h == *v);
    if !r.require.iter().all(carried) {
        r.unauthorized += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if r.fail_next > 0 {
        r.fail_next -= 1;
        r.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(req) = decompress(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for ts in req.timeseries {
        if ts
            .labels
            .iter()
            .any(|l| l.name == "__name__" && l.value == "req_total")
        {
            for s in ts.samples {
                r.samples.entry(s.timestamp).or_default().push(s.value);
                r.order.push(s.timestamp);
            }
        }
    }
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_outage_spills_then_every_window_arrives_once_in_order() {
    // The receiver wants a tenant header and a bearer token, as a Mimir gateway would.
    let receiver = Arc::new(Mutex::new(Receiver {
        fail_next: 25,
        require: vec![
            ("authorization", "Bearer rw-secret"),
            ("x-scope-orgid", "tenant-1"),
        ],
        ..Receiver::default()
    }));
    let app = axum::Router::new()
        .route("/api/v1/write", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx_task = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.storage = StorageConfig::in_dir(dir.path());
    config.storage.sqlite.enabled = false;
    config.storage.retry_initial_ms = 5;
    config.storage.retry_max_ms = 40;
    config.storage.attempts_before_spill = 2;
    config.storage.remote_write = Some(abacus_server::sinks::RemoteWriteConfig {
        url: format!("http://{addr}/api/v1/write"),
        timeout_ms: 2_000,
        bearer_token: Some("rw-secret".into()),
        headers: [("X-Scope-OrgID".to_owned(), "tenant-1".to_owned())].into(),
    });
    let srv = start(config).await;
    let client = reqwest::Client::new();
    let mut sent = 0;
    for v in 1..=20u64 {
        push_counter(&client, &srv.url("/metrics"), "req", v).await;
        sent += v;
        close(&srv).await;
    }
    let state = srv.state.clone();
    poll("all windows delivered", || {
        let r = receiver.clone();
        async move { (r.lock().unwrap().samples.len() >= 20).then_some(()) }
    })
    .await;
    let c = state.sinks().unwrap().counters()[0].clone();
    srv.stop().await.unwrap();
    let r = receiver.lock().unwrap();
    assert_eq!(r.refused, 25);
    assert_eq!(
        r.unauthorized, 0,
        "every request carried the token and tenant"
    );
    assert_eq!(r.samples.len(), 20, "one sample per window");
    assert!(r.samples.values().all(|v| v.len() == 1), "no duplicates");
    assert!(r.order.windows(2).all(|w| w[0] < w[1]), "replayed in order");
    // Cumulative totals: the last one is everything sent.
    let totals: Vec<f64> = r.samples.values().map(|v| v[0]).collect();
    assert_eq!(totals.last().copied(), Some(sent as f64));
    assert!(totals.windows(2).all(|w| w[0] < w[1]));
    assert!(c.spilled_total() > 0, "the outage was long enough to spill");
    assert_eq!(c.dropped_total(), 0);
    assert_eq!(c.spill_depth(), 0);
    rx_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sink_never_blocks_ingest_and_its_windows_are_spilled_at_shutdown() {
    // Nothing listens on this port: connection refused on every attempt.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.storage = StorageConfig::in_dir(dir.path());
    config.storage.retry_initial_ms = 5;
    config.storage.retry_max_ms = 20;
    config.storage.remote_write = Some(abacus_server::sinks::RemoteWriteConfig {
        url: format!("http://{addr}/api/v1/write"),
        timeout_ms: 500,
        ..Default::default()
    });
    let srv = start(config.clone()).await;
    let client = reqwest::Client::new();
    for v in 1..=5u64 {
        push_counter(&client, &srv.url("/metrics"), "req", v).await;
        close(&srv).await;
    }
    push_counter(&client, &srv.url("/metrics"), "req", 6).await;
    let state = srv.state.clone();
    // SQLite (the other sink) kept up meanwhile.
    let sums_now = sums(&client, &srv.url("/metrics/req")).await;
    assert_eq!(sums_now.len(), 5);
    srv.stop().await.unwrap();
    let hub = state.sinks().unwrap();
    let rw = hub
        .counters()
        .iter()
        .find(|c| c.name() == "remote_write")
        .unwrap();
    let sqlite = hub
        .counters()
        .iter()
        .find(|c| c.name() == "sqlite")
        .unwrap();
    assert_eq!(rw.written_total(), 0);
    assert_eq!(rw.dropped_total(), 0);
    // Six windows with `req` plus possibly telemetry-only ones: all spilled, none lost.
    assert!(rw.spill_depth() >= 6, "{}", rw.spill_depth());
    assert_eq!(sqlite.written_total(), rw.spill_depth());
    // Still there for the next run.
    let spill =
        abacus_server::sinks::spill::Spill::open(&config.storage.db_path(), "remote_write", 100)
            .unwrap();
    assert_eq!(spill.len(), rw.spill_depth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_fills_only_its_own_queue_and_overflow_is_counted() {
    // A receiver that takes 3 s per request.
    let app = axum::Router::new().route(
        "/w",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::NO_CONTENT
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx_task = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::in_dir(dir.path());
    cfg.queue_windows = 2;
    cfg.shutdown_timeout_ms = 500;
    cfg.remote_write = Some(abacus_server::sinks::RemoteWriteConfig {
        url: format!("http://{addr}/w"),
        timeout_ms: 10_000,
        ..Default::default()
    });
    let reg = abacus::Registry::new();
    let hub = abacus_server::sinks::SinkHub::start(&cfg, reg.clone())
        .await
        .unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..10u64 {
        reg.increment_counter("c", &[], i + 1);
        let mut w = reg.delta();
        w.start += Duration::from_millis(i);
        let t = std::time::Instant::now();
        hub.dispatch(&w);
        slowest = slowest.max(t.elapsed());
        // Paced so SQLite (same queue bound) keeps up; the slow store cannot.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        slowest < Duration::from_millis(50),
        "dispatch blocked: {slowest:?}"
    );
    let by_name = |n: &str| {
        hub.counters()
            .iter()
            .find(|c| c.name() == n)
            .unwrap()
            .clone()
    };
    let (sqlite, rw) = (by_name("sqlite"), by_name("remote_write"));
    // SQLite keeps up with all ten; the slow sink overflows its queue of 2 (one more is in
    // flight), and each overflow is counted.
    poll("sqlite wrote all windows", || {
        let s = sqlite.clone();
        async move { (s.written_total() == 10).then_some(()) }
    })
    .await;
    assert!(rw.dropped_total() >= 6, "{}", rw.dropped_total());
    assert_eq!(sqlite.dropped_total(), 0);
    let text = abacus::exposition::prometheus::render(&reg.snapshot(), &Default::default());
    assert!(
        text.contains(
            "abacus_sink_dropped_windows_total{reason=\"queue_full\",sink=\"remote_write\"}"
        ),
        "{text}"
    );
    hub.shutdown().await;
    rx_task.abort();
}

/// SQLite failing at runtime (a trigger makes every insert fail, as a full or read-only disk
/// would, without needing a mount): each failed window is retried, then dropped and counted;
/// ingest, queries and the remote-write sink are unaffected; writes resume once SQLite works.
/// The real disk faults (ENOSPC, an ext4 forced read-only) are in
/// tests/reliability/diskfault.sh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_failures_are_counted_and_remote_write_still_gets_every_window() {
    let receiver = Arc::new(Mutex::new(Receiver::default()));
    let app = axum::Router::new()
        .route("/api/v1/write", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx_task = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.storage = StorageConfig::in_dir(dir.path());
    config.storage.retry_initial_ms = 1;
    config.storage.retry_max_ms = 2;
    config.storage.remote_write = Some(abacus_server::sinks::RemoteWriteConfig {
        url: format!("http://{addr}/api/v1/write"),
        timeout_ms: 2_000,
        ..Default::default()
    });
    let db = config.storage.db_path();
    let srv = start(config).await;
    let state = srv.state.clone();
    let counters = state.sinks().unwrap().counters().to_vec();
    let sqlite = counters
        .iter()
        .find(|c| c.name() == "sqlite")
        .unwrap()
        .clone();
    let remote = counters
        .iter()
        .find(|c| c.name() == "remote_write")
        .unwrap()
        .clone();
    let client = reqwest::Client::new();
    let step = async |v: u64| {
        push_counter(&client, &srv.url("/metrics"), "req", v).await;
        close(&srv).await;
    };
    // One window per value: 1 before the failure, 2..=6 during it, 7 and 8 after.
    let (sent, windows) = ((1..=8u64).sum::<u64>(), 8u64);
    step(1).await;
    let sq = sqlite.clone();
    poll("first window in SQLite", || {
        let sq = sq.clone();
        async move { (sq.written_total() == 1).then_some(()) }
    })
    .await;

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_writes BEFORE INSERT ON windows
         BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;",
    )
    .unwrap();
    for v in 2..=6 {
        step(v).await;
    }
    let sq = sqlite.clone();
    poll("5 failed windows dropped", || {
        let sq = sq.clone();
        async move { (sq.dropped_total() == 5).then_some(()) }
    })
    .await;
    // Queries still answer: memory holds the last 4 windows (retention / window + 2 with
    // test_config), older ones come from SQLite, where window 1 is and the dropped window 2
    // (no longer in memory) is not.
    let during = sums(&client, &srv.url("/metrics/req")).await;
    assert_eq!(
        during.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![1.0, 3.0, 4.0, 5.0, 6.0]
    );

    conn.execute_batch("DROP TRIGGER fail_writes").unwrap();
    for v in 7..=8 {
        step(v).await;
    }
    let (sq, rw) = (sqlite.clone(), remote.clone());
    poll("writes resume, remote-write has every window", || {
        let (sq, rw) = (sq.clone(), rw.clone());
        async move { (sq.written_total() == 3 && rw.written_total() == windows).then_some(()) }
    })
    .await;
    assert_eq!(sqlite.dropped_total(), 5);
    assert_eq!(sqlite.retries_total(), 25, "5 attempts per failed window");
    srv.stop().await.unwrap();

    let stored: Vec<(i64, f64)> = conn
        .prepare("SELECT window_start, sum FROM windows WHERE name = 'req' ORDER BY window_start")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        stored.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![1.0, 7.0, 8.0]
    );
    assert_eq!(remote.dropped_total(), 0);
    let r = receiver.lock().unwrap();
    assert_eq!(r.samples.len() as u64, windows, "one sample per window");
    assert_eq!(
        r.samples.values().last().map(|v| v[0]),
        Some(sent as f64),
        "cumulative total = everything sent"
    );
    rx_task.abort();
}
