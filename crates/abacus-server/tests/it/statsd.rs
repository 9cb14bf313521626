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

/// Several clients (so the kernel spreads them over the `SO_REUSEPORT` receivers): every
/// counter line arrives exactly once, and each client's gauge set followed by `+1` deltas in
/// separate datagrams ends at the exact value, which needs that client's datagrams applied
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_exact_totals_and_per_client_order() {
    const CLIENTS: usize = 16;
    const DELTAS: usize = 100;
    let srv = start(test_config()).await;
    let target = srv.statsd;
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.connect(target).unwrap();
                sock.send(format!("level{c}:100|g\nhits:1|c").as_bytes())
                    .unwrap();
                for _ in 0..DELTAS {
                    sock.send(format!("level{c}:+1|g\nhits:1|c").as_bytes())
                        .unwrap();
                }
            });
        }
    });
    let want_hits = (CLIENTS * (DELTAS + 1)) as u64;
    let state = srv.state.clone();
    poll("every statsd line", || {
        let done = state.registry().snapshot().counter("hits", &[]) == Some(want_hits);
        async move { done.then_some(()) }
    })
    .await;
    let snap = srv.state.registry().snapshot();
    for c in 0..CLIENTS {
        assert_eq!(
            snap.gauge(&format!("level{c}"), &[]),
            Some(100.0 + DELTAS as f64),
            "client {c}"
        );
    }
    srv.stop().await.unwrap();
}

/// StatsD over TCP: lines split across writes are joined, an over-long line is skipped to
/// its newline and counted, the last line needs no newline, and everything else arrives
/// exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lines_split_across_writes_arrive_exactly_and_overlong_lines_are_counted() {
    use std::io::Write as _;
    let srv = start(test_config()).await;
    let addr = srv
        .statsd_tcp
        .expect("statsd tcp listener in the test config");
    let long = format!("big:{}|c\n", "9".repeat(20_000));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let long = long.as_str();
            s.spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_nodelay(true).unwrap();
                for i in 0..250 {
                    // One line in two writes, the split inside the value.
                    c.write_all(b"tcp_hits:").unwrap();
                    c.write_all(format!("{}|c\ntcp_ms:{i}|ms\n", 1).as_bytes())
                        .unwrap();
                }
                c.write_all(long.as_bytes()).unwrap();
                c.write_all(b"tcp_gauge:7|g").unwrap(); // no trailing newline
            });
        }
    });
    let state = srv.state.clone();
    poll("every tcp line", || {
        let snap = state.registry().snapshot();
        let done = snap.counter("tcp_hits", &[]) == Some(1000)
            && snap.histogram("tcp_ms", &[]).map(|h| h.count) == Some(1000)
            && snap.gauge("tcp_gauge", &[]) == Some(7.0)
            && snap.counter(
                "abacus_ingest_rejects",
                &[("protocol", "statsd_tcp"), ("reason", "line_too_long")],
            ) == Some(4);
        async move { done.then_some(()) }
    })
    .await;
    let h = srv
        .state
        .registry()
        .snapshot()
        .histogram("tcp_ms", &[])
        .unwrap()
        .sum;
    assert_eq!(h, 4.0 * (0..250).sum::<u64>() as f64);
    srv.stop().await.unwrap();
}
