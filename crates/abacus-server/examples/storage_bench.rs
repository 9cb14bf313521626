//! Measures how many windows per second each storage sink sustains, and HTTP ingest
//! throughput with every sink on versus none. Figures go to STORAGE-RESULTS.md.
//!
//! ```text
//! cargo run --release -p abacus-server --example storage_bench -- sinks [SERIES] [SECS]
//! cargo run --release -p abacus-server --example storage_bench -- ingest [SECS]
//! ```
//!
//! `SERIES=N` sets the number of distinct series the ingest run writes (default 500).
//! `DYNAMODB_ENDPOINT=http://127.0.0.1:PORT` (e.g. dynalite) adds DynamoDB to both;
//! `REMOTE_WRITE_URL=http://127.0.0.1:8428/api/v1/write` uses a real receiver instead of the
//! built-in no-op one.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime};

use abacus::{Registry, Snapshot};
use abacus_server::sinks::queue::Backend;
use abacus_server::sinks::sqlite::{Store, encode};
use abacus_server::sinks::{DynamoDbConfig, RemoteWriteConfig, StorageConfig};

fn window(series: usize, i: u64) -> Snapshot {
    let reg = Registry::new();
    for s in 0..series {
        let host = format!("h{s}");
        if s % 5 == 4 {
            for v in 0..20u64 {
                reg.record("lat", &[("host", &host)], 1 + (v * 37 + i) % 500);
            }
        } else {
            reg.increment_counter("req", &[("host", &host), ("code", "200")], 1 + i);
        }
    }
    let mut w = reg.delta();
    // Distinct window starts so every write is a new row.
    w.start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i);
    w.end = w.start + Duration::from_secs(1);
    w
}

fn report(what: &str, n: u64, series: usize, t: Duration) {
    let wps = n as f64 / t.as_secs_f64();
    println!(
        "{what:<28} {n:>6} windows in {:>6.2} s = {wps:>9.1} windows/s = {:>10.0} series-rows/s",
        t.as_secs_f64(),
        wps * series as f64
    );
}

async fn noop_receiver() -> String {
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(|_b: axum::body::Bytes| async { axum::http::StatusCode::NO_CONTENT }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/api/v1/write")
}

async fn bench_backend<B: Backend>(what: &str, mut b: B, windows: &[Snapshot], secs: f64) {
    let series = windows[0].series.len();
    let t = Instant::now();
    let mut n = 0u64;
    for w in windows.iter().cycle() {
        let p = b.prepare(w).unwrap();
        if let Err(e) = b.send(&p).await {
            println!("{what}: send failed: {e}");
            return;
        }
        n += 1;
        if t.elapsed().as_secs_f64() > secs {
            break;
        }
    }
    report(what, n, series, t.elapsed());
}

async fn sinks(series: usize, secs: f64) {
    let windows: Vec<Snapshot> = (0..50).map(|i| window(series, i)).collect();
    println!(
        "window = {series} series ({} counters, {} histograms of 20 samples)",
        series - series / 5,
        series / 5
    );
    // Encoders alone.
    let t = Instant::now();
    let mut n = 0;
    let mut enc = abacus_server::sinks::remote_write::encode::Encoder::new();
    while t.elapsed().as_secs_f64() < secs.min(2.0) {
        std::hint::black_box(enc.encode_body(&windows[n % windows.len()]));
        n += 1;
    }
    report("remote-write encode only", n as u64, series, t.elapsed());
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < secs.min(2.0) {
        std::hint::black_box(encode::rows(&windows[n % windows.len()]));
        n += 1;
    }
    report("sqlite rows encode only", n as u64, series, t.elapsed());

    // SQLite: real file, WAL, one transaction per window.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("abacus.db")).unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        let mut w = windows[(n % 50) as usize].clone();
        w.start += Duration::from_secs(1000 * (n / 50));
        store.write(&encode::rows(&w)).unwrap();
        n += 1;
    }
    report("sqlite (write, WAL)", n, series, t.elapsed());

    let url = match std::env::var("REMOTE_WRITE_URL") {
        Ok(u) => u,
        Err(_) => noop_receiver().await,
    };
    let rw = abacus_server::sinks::remote_write::sink::RemoteWrite::new(&RemoteWriteConfig {
        url: url.clone(),
        timeout_ms: 5000,
        ..Default::default()
    })
    .unwrap();
    bench_backend(
        &format!("remote-write -> {}", short(&url)),
        rw,
        &windows,
        secs,
    )
    .await;

    if let Ok(ep) = std::env::var("DYNAMODB_ENDPOINT") {
        let d = abacus_server::sinks::dynamodb::sink::DynamoDb::connect(&DynamoDbConfig {
            endpoint: Some(ep),
            table: "bench".into(),
            ..DynamoDbConfig::default()
        })
        .await
        .unwrap();
        bench_backend("dynamodb (dynalite)", d, &windows, secs).await;
    }
}

fn short(url: &str) -> &str {
    if url.contains("8428") || std::env::var("REMOTE_WRITE_URL").is_ok() {
        "receiver"
    } else {
        "no-op axum"
    }
}

async fn ingest(secs: f64) {
    let rw_url = match std::env::var("REMOTE_WRITE_URL") {
        Ok(u) => u,
        Err(_) => noop_receiver().await,
    };
    // WINDOW_MS (default: the server's default window) and ROUNDS of off/on pairs,
    // alternated so drift in the machine's load hits both sides alike.
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let window_ms = env("WINDOW_MS", abacus_server::Config::default().window_ms);
    let rounds = env("ROUNDS", 1).max(1);
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for with_sinks in (0..rounds).flat_map(|_| [false, true]) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = abacus_server::Config {
            listen: abacus_server::config::Listen::loopback_ephemeral(),
            window_ms,
            ..abacus_server::Config::default()
        };
        config.listen.statsd = None;
        config.listen.otlp_grpc = None;
        config.listen.otlp_http = None;
        config.storage = if with_sinks {
            let mut s = StorageConfig::in_dir(dir.path());
            s.remote_write = Some(RemoteWriteConfig {
                url: rw_url.clone(),
                timeout_ms: 5000,
                ..Default::default()
            });
            if let Ok(ep) = std::env::var("DYNAMODB_ENDPOINT") {
                s.dynamodb = Some(DynamoDbConfig {
                    endpoint: Some(ep),
                    table: "bench-ingest".into(),
                    ..DynamoDbConfig::default()
                });
            }
            s
        } else {
            StorageConfig::disabled()
        };
        let server = abacus_server::Server::bind(config).await.unwrap();
        let url = format!("http://{}/metrics", server.http_addr().unwrap());
        let state = server.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        // 100 samples per request over SERIES (env, default 500) series: 4/5 counters, 1/5
        // histograms.
        let nseries: u64 = std::env::var("SERIES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        let body = |k: u64| {
            let items: Vec<String> = (0..100u64)
                .map(|j| {
                    let s = (k * 100 + j) % nseries;
                    if s % 5 == 4 {
                        format!(r#"{{"name":"lat","value":{},"labels":{{"host":"h{s}"}}}}"#, 1 + j)
                    } else {
                        format!(
                            r#"{{"name":"req","value":1,"type":"counter","labels":{{"host":"h{s}"}}}}"#
                        )
                    }
                })
                .collect();
            format!("[{}]", items.join(","))
        };
        let client = reqwest::Client::new();
        let t = Instant::now();
        let mut workers = Vec::new();
        for w in 0..4u64 {
            let (c, u) = (client.clone(), url.clone());
            let bodies: Vec<String> = (0..100).map(|k| body(w * 100 + k)).collect();
            workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut k = 0;
                while t.elapsed().as_secs_f64() < secs {
                    let r = c
                        .post(&u)
                        .body(bodies[k % 10].clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    n += 100;
                    k += 1;
                }
                n
            }));
        }
        let mut samples = 0;
        for w in workers {
            samples += w.await.unwrap();
        }
        let el = t.elapsed();
        let _ = tx.send(());
        task.await.unwrap().unwrap();
        let written: Vec<String> = state
            .sinks()
            .map(|h| {
                h.counters()
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: {} written, {} dropped",
                            c.name(),
                            c.written_total(),
                            c.dropped_total()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rate = samples as f64 / el.as_secs_f64();
        rates[usize::from(with_sinks)].push(rate);
        println!(
            "ingest, sinks {:<4}: {:>9.0} samples/s over {:.1} s, {window_ms} ms windows  [{}]",
            if with_sinks { "on" } else { "off" },
            rate,
            el.as_secs_f64(),
            written.join("; ")
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "median of {rounds}: sinks off {off:.0}, on {on:.0} samples/s: on/off = {:.3} ({:+.1} %)",
        on / off,
        100.0 * (on / off - 1.0)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sinks") => {
            let series = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
            sinks(series, secs).await;
        }
        Some("ingest") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10.0);
            ingest(secs).await;
        }
        _ => eprintln!("usage: storage_bench sinks [SERIES] [SECS] | ingest [SECS]"),
    }
}
