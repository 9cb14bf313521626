//! A real server on loopback port 0 with a real HTTP client.

use serde_json::Value;

use crate::common::{poll, start, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_json_ingest_then_query_over_a_real_socket() {
    let srv = start(test_config()).await;
    let client = reqwest::Client::new();
    // Ready once running.
    poll("readyz", || {
        let c = client.clone();
        let url = srv.url("/readyz");
        async move { c.get(url).send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    let r = client
        .post(srv.url("/latency"))
        .header("content-type", "application/json")
        .body(r#"[{"service":"web","latency_ms":10},{"service":"web","latency_ms":20},{"service":"web","latency_ms":30}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad = client
        .post(srv.url("/metrics"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let err: Value = bad.json().await.unwrap();
    assert!(err["error"].is_string());
    srv.close_window().await;
    let rows: Value = client
        .get(srv.url("/metrics/latency?service=web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows[0]["count"], 3);
    assert_eq!(rows[0]["sum"], 60.0);
    assert_eq!(rows[0]["min"], 10.0);
    assert_eq!(rows[0]["max"], 30.0);
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_final_partial_window() {
    let srv = start(test_config()).await;
    let state = srv.state.clone();
    let r = reqwest::Client::new()
        .post(srv.url("/metrics"))
        .body(r#"{"name":"late","value":7}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(state.windows().query("late", &[], None, None).is_empty());
    srv.stop().await.unwrap();
    let rows = state.windows().query("late", &[], None, None);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sum, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_on_the_timer() {
    let mut config = test_config();
    config.window_ms = 100;
    config.retention_secs = 60;
    let srv = start(config).await;
    reqwest::Client::new()
        .post(srv.url("/metrics"))
        .body(r#"{"name":"tick","value":1}"#)
        .send()
        .await
        .unwrap();
    let state = srv.state.clone();
    let rows = poll("a timer-closed window", || {
        let rows = state.windows().query("tick", &[], None, None);
        async move { (!rows.is_empty()).then_some(rows) }
    })
    .await;
    assert_eq!(rows[0].count, 1);
    srv.stop().await.unwrap();
}
