//! The poller against a real in-process server on loopback port 0.

use abacus_server::config::Listen;
use abacus_server::{Config, Server};
use abacus_top::app::{Event, State, update};
use abacus_top::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_reads_services_and_their_latency_windows() {
    let config = Config {
        listen: Listen::loopback_ephemeral(),
        window_ms: 3_600_000,
        // No files: history from earlier runs in ./abacus-data would be merged into queries.
        storage: abacus_server::sinks::StorageConfig::disabled(),
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let http = server.http_addr().unwrap();
    let state = server.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let http_client = reqwest::Client::new();
    let r = http_client
        .post(format!("http://{http}/latency"))
        .body(r#"[{"service":"api","latency_ms":10},{"service":"api","latency_ms":90},{"service":"web","latency_ms":5}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.close_window())
        .await
        .unwrap();

    let client = Client::new(&format!("http://{http}"), None).unwrap();
    let poll = client.poll().await.unwrap();
    assert_eq!(poll.services.len(), 2);
    let api = &poll.services["api"];
    assert_eq!(api.last.latency_count, 2);
    assert_eq!(api.history.len(), 1);
    assert_eq!(api.history[0].count, 2);
    assert_eq!(api.max(), Some(90.0));
    let mut s = State::new("x");
    update(&mut s, Event::Data(Ok(poll)));
    assert_eq!(s.visible().len(), 2);

    let _ = tx.send(());
    task.await.unwrap().unwrap();
    // Once the server is gone, a poll is an error message, not a panic.
    let err = client.poll().await.unwrap_err();
    assert!(err.contains(&http.to_string()), "{err}");
}
