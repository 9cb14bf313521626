//! StatsD over a real UDP socket with the `cadence` client.

use std::net::UdpSocket;

use cadence::prelude::*;
use cadence::{StatsdClient, UdpMetricSink};

use crate::common::{poll, start, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cadence_counts_timers_gauges_and_sets_arrive_exactly() {
    let srv = start(test_config()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink = UdpMetricSink::from(srv.statsd, socket).unwrap();
    let client = StatsdClient::from_sink("app", sink);
    for _ in 0..100 {
        client.count("hits", 2).unwrap();
    }
    client
        .count_with_tags("tagged", 5)
        .with_tag("route", "/a")
        .send();
    for ms in [10u64, 20, 30] {
        client.time("db", ms).unwrap();
    }
    client.gauge("queue", 42u64).unwrap();
    for user in [1i64, 2, 2, 3] {
        client.set("users", user).unwrap();
    }
    // A line the parser refuses is counted, not applied.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"broken|line", srv.statsd).unwrap();

    let state = srv.state.clone();
    poll("all statsd samples", || {
        let snap = state.registry().snapshot();
        let done = snap.counter("app_hits", &[]) == Some(200)
            && snap.counter("app_tagged", &[("route", "/a")]) == Some(5)
            && snap.histogram("app_db", &[]).map(|h| h.count) == Some(3)
            && snap.gauge("app_queue", &[]) == Some(42.0)
            && snap
                .counter(
                    "abacus_ingest_rejects",
                    &[("protocol", "statsd"), ("reason", "missing_type")],
                )
                .or_else(|| {
                    snap.series
                        .iter()
                        .find(|s| {
                            s.key.name() == "abacus_ingest_rejects"
                                && s.key.label("protocol") == Some("statsd")
                        })
                        .map(|_| 1)
                })
                .is_some();
        async move { done.then_some(()) }
    })
    .await;
    srv.close_window().await;
    let users = srv.state.windows().query("app_users", &[], None, None);
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].sum, 3.0, "distinct set members in the window");
    let db = srv.state.windows().query("app_db", &[], None, None);
    assert_eq!((db[0].count, db[0].sum), (3, 60.0));
    srv.stop().await.unwrap();
}
