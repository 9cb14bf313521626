//! Socket-level ingest load for `abacus serve` (and the Etsy StatsD daemon), loopback only,
//! bounded in time. Prints one Markdown table row per measurement on stdout.
//!
//! ```text
//! ingest_load otlp   --url http://127.0.0.1:4318/v1/metrics --api http://127.0.0.1:3001 [--secs 5] [--conns 4] [--threads 1]
//! ingest_load json   --url http://127.0.0.1:3001/metrics    --api http://127.0.0.1:3001 [--secs 5] [--conns 4] [--items 1000]
//! ingest_load statsd --addr 127.0.0.1:8125 (--api http://127.0.0.1:3001 | --etsy-admin 127.0.0.1:8126)
//!                    --rates 100000,200000 [--lines-per-packet 40] [--secs 3] [--sources 4] [--label NAME]
//! ```
//!
//! * `otlp` / `json`: `--conns` connections (one HTTP/1.1 client each) post the same
//!   pre-encoded body back to back for `--secs`; points acknowledged = points in 200 responses
//!   minus `rejected_data_points` (OTLP) / the `accepted` field (JSON). The server's own
//!   `abacus_ingest_samples_total{protocol=...}` is read before and after to confirm.
//! * `statsd`: one sender thread paces datagrams to each target rate in `--rates` (lines/s,
//!   ascending) for `--secs`, round-robin over `--sources` client sockets (as that many
//!   client processes would send), then waits until the receiver's count stops moving; lines
//!   counted by the receiver (abacus: `abacus_ingest_samples_total{protocol="statsd"}`, Etsy:
//!   `statsd.metrics_received` from the management `counters` command) are compared with
//!   lines sent, next to the `RcvbufErrors` delta of `/proc/net/snmp`. Stops after the first
//!   step that lost lines.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abacus_bench::server_load::{
    OTLP_POINTS, etsy_counter, json_batch, otlp_body, prometheus_value, statsd_packets,
    udp_rcvbuf_errors,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args(Vec<String>);

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    fn req(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("missing {name} (see the module docs)"))
    }
}

async fn abacus_samples(client: &reqwest::Client, api: &str, protocol: &str) -> f64 {
    let text = client
        .get(format!("{api}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("GET /metrics body");
    prometheus_value(
        &text,
        "abacus_ingest_samples_total",
        &format!("protocol=\"{protocol}\""),
    )
    .unwrap_or(0.0)
}

#[derive(Clone, Copy)]
enum HttpKind {
    Otlp,
    Json,
}

async fn http_load(kind: HttpKind, a: &Args) {
    let url = a.req("--url").to_owned();
    let api = a.req("--api").to_owned();
    let secs = a.num("--secs", 5);
    let conns = a.num("--conns", 4) as usize;
    let items = a.num("--items", 1000) as usize;
    let (body, points, content_type, protocol) = match kind {
        HttpKind::Otlp => (
            otlp_body(),
            OTLP_POINTS as u64,
            "application/x-protobuf",
            "otlp_http",
        ),
        HttpKind::Json => (
            json_batch(items),
            items as u64,
            "application/json",
            "http_json",
        ),
    };
    let body = bytes::Bytes::from(body);
    let probe = reqwest::Client::new();
    let before = abacus_samples(&probe, &api, protocol).await;
    let acked = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, body) = (url.clone(), body.clone());
        let (acked, requests, failures) = (acked.clone(), requests.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            while Instant::now() < deadline {
                let resp = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                    _ => None,
                };
                let Some(resp) = ok else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let n = match kind {
                    HttpKind::Otlp => {
                        let rejected = ExportMetricsServiceResponse::decode(resp.as_ref())
                            .ok()
                            .and_then(|r| r.partial_success)
                            .map_or(0, |p| p.rejected_data_points.max(0) as u64);
                        points.saturating_sub(rejected)
                    }
                    HttpKind::Json => serde_json::from_slice::<serde_json::Value>(&resp)
                        .ok()
                        .and_then(|v| v["accepted"].as_u64())
                        .unwrap_or(0),
                };
                requests.fetch_add(1, Ordering::Relaxed);
                acked.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = abacus_samples(&probe, &api, protocol).await;
    let acked = acked.load(Ordering::Relaxed);
    let requests = requests.load(Ordering::Relaxed);
    println!(
        "| {protocol} | {points} points/body, {} bytes, {conns} conns, {secs} s | {requests} | {} | {acked} | {:.0} | {:.0} | {:.0} |",
        body.len(),
        failures.load(Ordering::Relaxed),
        after - before,
        acked as f64 / elapsed,
        requests as f64 / elapsed,
    );
}

/// Sends `packets` (cycled) at `pps` for `secs`; returns (packets sent, send errors, seconds).
fn blast(
    target: SocketAddr,
    packets: &[Vec<u8>],
    pps: u64,
    secs: u64,
    sources: usize,
) -> (u64, u64, f64) {
    // Several source sockets (ports), as several client processes would have: a receiver
    // that spreads senders over sockets (`SO_REUSEPORT`) sees more than one flow.
    let socks: Vec<UdpSocket> = (0..sources.max(1))
        .map(|_| {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
            sock.connect(target).expect("connect sender");
            sock
        })
        .collect();
    let total = pps * secs;
    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    while sent < total {
        let due = ((start.elapsed().as_nanos() * u128::from(pps)) / 1_000_000_000) as u64;
        let due = due.min(total);
        if sent >= due {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        while sent < due {
            let p = &packets[(sent as usize) % packets.len()];
            if socks[(sent as usize) % socks.len()].send(p).is_err() {
                errors += 1;
            }
            sent += 1;
        }
    }
    (sent, errors, start.elapsed().as_secs_f64())
}

enum Counter {
    Abacus {
        client: reqwest::Client,
        api: String,
    },
    Etsy {
        admin: String,
    },
}

impl Counter {
    async fn lines(&self) -> f64 {
        match self {
            Counter::Abacus { client, api } => abacus_samples(client, api, "statsd").await,
            Counter::Etsy { admin } => {
                let mut s = tokio::net::TcpStream::connect(admin.as_str())
                    .await
                    .expect("connect to the Etsy statsd management port");
                s.write_all(b"counters\n").await.expect("write");
                let mut out = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    out.extend_from_slice(&buf[..n]);
                    if n == 0 || out.windows(3).any(|w| w == b"END") {
                        break;
                    }
                }
                etsy_counter(&String::from_utf8_lossy(&out), "statsd.metrics_received")
                    .unwrap_or(0.0)
            }
        }
    }

    /// Polls until the count stops moving (two equal reads 200 ms apart) or `expect` is
    /// reached, at most 10 s.
    async fn settled(&self, expect: f64) -> f64 {
        let mut last = self.lines().await;
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut same = 0;
        while last < expect && same < 2 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.lines().await;
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        last
    }
}

async fn statsd_load(a: &Args) {
    let addr: SocketAddr = a.req("--addr").parse().expect("--addr");
    let secs = a.num("--secs", 3);
    let lpp = a.num("--lines-per-packet", 40).max(1);
    let sources = a.num("--sources", 4).max(1) as usize;
    let label = a.get("--label").unwrap_or("abacus").to_owned();
    let rates: Vec<u64> = a
        .req("--rates")
        .split(',')
        .map(|r| r.trim().parse().expect("--rates: comma-separated lines/s"))
        .collect();
    let counter = match (a.get("--api"), a.get("--etsy-admin")) {
        (Some(api), _) => Counter::Abacus {
            client: reqwest::Client::new(),
            api: api.to_owned(),
        },
        (None, Some(admin)) => Counter::Etsy {
            admin: admin.to_owned(),
        },
        _ => panic!("--api or --etsy-admin"),
    };
    let packets = Arc::new(statsd_packets(4096, lpp as usize));
    let bytes = packets[0].len();
    for rate in rates {
        let pps = (rate / lpp).max(1);
        let before = counter.lines().await;
        let rcvbuf_before = udp_rcvbuf_errors();
        let p = packets.clone();
        let (sent, send_errors, took) =
            tokio::task::spawn_blocking(move || blast(addr, &p, pps, secs, sources))
                .await
                .expect("sender");
        let lines_sent = sent * lpp;
        let counted = counter.settled(before + lines_sent as f64).await - before;
        let rcvbuf = udp_rcvbuf_errors() - rcvbuf_before;
        let lost = lines_sent as f64 - counted;
        let achieved = lines_sent as f64 / took;
        let lossless = lost <= 0.0 && rcvbuf == 0 && send_errors == 0;
        let verdict = match (lossless, achieved < 0.97 * rate as f64) {
            (true, false) => "lossless",
            (true, true) => "lossless, sender-limited",
            (false, _) => "LOSS",
        };
        println!(
            "| {label} | {lpp} | ~{bytes} | {rate} | {achieved:.0} | {lines_sent} | {counted:.0} | {:.3} % | {rcvbuf} | {send_errors} | {verdict} |",
            100.0 * lost.max(0.0) / lines_sent as f64,
        );
        if !lossless {
            break;
        }
    }
}

fn main() {
    let a = Args(std::env::args().collect());
    let threads = a.num("--threads", 1).max(1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        match a.0.get(1).map(String::as_str) {
            Some("otlp") => http_load(HttpKind::Otlp, &a).await,
            Some("json") => http_load(HttpKind::Json, &a).await,
            Some("statsd") => statsd_load(&a).await,
            _ => eprintln!("usage: ingest_load otlp|json|statsd ... (see the module docs)"),
        }
    });
}
