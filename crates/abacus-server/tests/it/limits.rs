//! Limits and timeouts of the listeners, against a real server on loopback: slowloris
//! clients are cut off while a normal client keeps going, a huge body is refused before it
//! is read, deep JSON is a 400, oversize StatsD lines are counted. Timeouts are configured
//! short so the tests stay quick; nothing here asserts a duration.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{DEADLINE, Running, poll, start, test_config};

fn short_timeouts() -> abacus_server::Config {
    let mut c = test_config();
    c.limits.header_read_timeout_ms = 400;
    c.limits.request_timeout_ms = 800;
    c
}

/// The value of the first exposed sample of `family` carrying every `labels` pair.
async fn exposed(srv: &Running, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = reqwest::get(srv.url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sum of the closed windows of `name{service=...}` (count for counters).
async fn window_total(srv: &Running, name: &str, service: &str) -> f64 {
    let rows: Value = reqwest::get(srv.url(&format!("/metrics/{name}?service={service}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["sum"].as_f64().unwrap_or(0.0))
        .sum()
}

/// Reads until the peer closes (or errors); returns what was read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A slowloris client: sends a request line, then one header line every 50 ms, forever
/// (bounded by [`DEADLINE`]). Returns true once the server closed the connection.
async fn slowloris(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        if wr
            .write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            return;
        }
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            () = trickle => {}
            () = closed => {}
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_while_a_normal_client_keeps_succeeding() {
    const SLOW: usize = 40;
    const REQUESTS: u64 = 60;
    let srv = start(short_timeouts()).await;
    let addr = srv.http;
    let slow: Vec<_> = (0..SLOW).map(|_| tokio::spawn(slowloris(addr))).collect();
    // The normal client opens a fresh connection per request (no idle keep-alive
    // connection that the header-read timeout would also close and count).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for i in 0..REQUESTS {
        let r = client
            .post(srv.url("/metrics"))
            .body(format!(
                r#"{{"name":"steady","value":{},"labels":{{"service":"ok"}}}}"#,
                i + 1
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i} during the slowloris attack");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for s in slow {
        assert!(s.await.unwrap(), "a slowloris connection was not cut off");
    }
    let cut = poll("header timeouts counted", || async {
        exposed(
            &srv,
            "abacus_connections_cut_total",
            &[("listener", "http"), ("reason", "header_timeout")],
        )
        .await
        .filter(|&n| n >= SLOW as f64)
    })
    .await;
    assert_eq!(cut, SLOW as f64);
    srv.close_window().await;
    assert_eq!(
        window_total(&srv, "steady", "ok").await,
        (REQUESTS * (REQUESTS + 1) / 2) as f64
    );
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_the_request_timeout_is_a_408() {
    let srv = start(short_timeouts()).await;
    let mut s = TcpStream::connect(srv.http).await.unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        for _ in 0..400 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
    };
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            () = read => {}
            () = trickle => {}
        }
    })
    .await
    .expect("the slow body was not cut off");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    let n = poll("request timeout counted", || async {
        exposed(
            &srv,
            "abacus_connections_cut_total",
            &[("listener", "http"), ("reason", "request_timeout")],
        )
        .await
    })
    .await;
    assert_eq!(n, 1.0);
    // The server still serves.
    let r = reqwest::Client::new()
        .post(srv.url("/metrics"))
        .body(r#"{"name":"after","value":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await.unwrap();
}

/// Announces `declared` bytes (or chunked when `None`), streams up to 256 MiB of zeros
/// and returns (response head, bytes the client managed to write).
async fn push_huge(addr: SocketAddr, path: &str, declared: Option<u64>) -> (String, u64) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = match declared {
        Some(n) => format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
        ),
        None => format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
    };
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 << 10];
        let framed: Vec<u8> = if declared.is_some() {
            chunk.clone()
        } else {
            let mut f = format!("{:x}\r\n", chunk.len()).into_bytes();
            f.extend_from_slice(&chunk);
            f.extend_from_slice(b"\r\n");
            f
        };
        let mut written = 0u64;
        while written < 256 << 20 {
            if wr.write_all(&framed).await.is_err() {
                break;
            }
            written += chunk.len() as u64;
        }
        written
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head = tokio::time::timeout(DEADLINE, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("no answer to a huge body");
    drop(rd);
    writer.abort();
    let written = writer.await.unwrap_or(0);
    (head, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_413_without_being_read_whole() {
    let mut c = short_timeouts();
    c.limits.max_body_bytes = 1 << 20;
    c.limits.otlp_max_body_bytes = 1 << 20;
    let srv = start(c).await;
    for (addr, path) in [(srv.http, "/metrics"), (srv.otlp_http, "/v1/metrics")] {
        for declared in [Some(1u64 << 30), None] {
            let (head, written) = push_huge(addr, path, declared).await;
            assert!(
                head.starts_with("HTTP/1.1 413"),
                "{path} {declared:?}: {head}"
            );
            // The 256 MiB the client tried to send were not all taken in.
            assert!(written < 256 << 20, "{path} {declared:?}: wrote {written}");
        }
    }
    let r = reqwest::Client::new()
        .post(srv.url("/metrics"))
        .body(r#"{"name":"after","value":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_a_400_not_a_stack_overflow() {
    let srv = start(test_config()).await;
    let client = reqwest::Client::new();
    let depth = 100_000;
    let arrays = "[".repeat(depth) + &"]".repeat(depth);
    let objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
    let otlp_deep = format!("{{\"resourceMetrics\":{arrays}}}");
    // AnyValue is recursive in the OTLP schema: an attribute nested 30 000 array levels deep.
    let any_deep = format!(
        concat!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"m","gauge":{{"dataPoints":"#,
            r#"[{{"asInt":"1","attributes":[{{"key":"a","value":{}{}{}}}]}}]}}}}]}}]}}]}}"#
        ),
        r#"{"arrayValue":{"values":["#.repeat(30_000),
        r#"{"stringValue":"x"}"#,
        "]}}".repeat(30_000)
    );
    let cases = [
        (srv.url("/metrics"), arrays.clone()),
        (srv.url("/metrics"), objects.clone()),
        // NDJSON: a good line, then a deep one.
        (
            srv.url("/metrics"),
            format!("{{\"name\":\"nd\",\"value\":1}}\n{arrays}\n"),
        ),
        (srv.url("/latency"), arrays.clone()),
        (format!("http://{}/v1/metrics", srv.otlp_http), arrays),
        (format!("http://{}/v1/metrics", srv.otlp_http), otlp_deep),
        (format!("http://{}/v1/metrics", srv.otlp_http), any_deep),
    ];
    for (url, body) in cases {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{url}: {v}"
        );
    }
    // An unknown OTLP field is skipped (OTLP/JSON receivers ignore unknown fields);
    // serde_json skips values without recursing, so even 100 000 levels are no danger:
    // an empty export, accepted.
    let r = client
        .post(format!("http://{}/v1/metrics", srv.otlp_http))
        .header("content-type", "application/json")
        .body(objects)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Still alive, and good data is taken.
    let r = client
        .post(srv.url("/metrics"))
        .body(r#"{"name":"after_deep","value":3,"labels":{"service":"x"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.close_window().await;
    assert_eq!(window_total(&srv, "after_deep", "x").await, 3.0);
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_oversize_statsd_lines_is_counted_and_good_lines_beside_them_kept() {
    const DATAGRAMS: u64 = 400;
    const BATCH: u64 = 40;
    let srv = start(test_config()).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // One 20 000-byte line (over the 8 192-byte line limit) and one good line per datagram.
    let mut datagram = "x".repeat(20_000).into_bytes();
    datagram.extend_from_slice(b":1|c\nflood_ok:1|c|#service:udp");
    let mut sent = 0;
    while sent < DATAGRAMS {
        for _ in 0..BATCH {
            sock.send_to(&datagram, srv.statsd).await.unwrap();
        }
        sent += BATCH;
        // Pace on what the server received, so the socket buffer never overflows.
        poll("statsd datagrams received", || async {
            exposed(
                &srv,
                "abacus_ingest_requests_total",
                &[("protocol", "statsd")],
            )
            .await
            .filter(|&n| n >= sent as f64)
        })
        .await;
    }
    let rejects = exposed(
        &srv,
        "abacus_ingest_rejects_total",
        &[("protocol", "statsd"), ("reason", "line_too_long")],
    )
    .await;
    assert_eq!(rejects, Some(DATAGRAMS as f64));
    srv.close_window().await;
    assert_eq!(
        window_total(&srv, "flood_ok", "udp").await,
        DATAGRAMS as f64
    );
    srv.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_and_are_served_once_a_slot_frees() {
    let mut c = short_timeouts();
    c.limits.max_connections = 2;
    let srv = start(c).await;
    // Two idle connections hold both slots until the header-read timeout frees them.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(srv.http).await.unwrap());
    }
    // A third client is accepted by the kernel but served only after a slot frees.
    let r = reqwest::Client::new()
        .post(srv.url("/metrics"))
        .body(r#"{"name":"capped","value":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    for mut s in idle {
        // The held connections were closed by the server (header-read timeout).
        assert!(read_to_close(&mut s).await.is_empty());
    }
    let open = poll("open connections gauge", || async {
        exposed(&srv, "abacus_connections", &[("listener", "http")])
            .await
            .filter(|&n| n == 1.0)
    })
    .await;
    // The /metrics request reading the gauge is the one open connection.
    assert_eq!(open, 1.0);
    srv.stop().await.unwrap();
}
