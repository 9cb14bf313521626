//! The load tool against a real in-process abacus server on loopback port 0: its own
//! counts must equal what the server says it received, exactly.

use std::time::Duration;

use abacus_load::{LoadConfig, ModeKind, Phase, Profile, Target};
use abacus_server::config::Listen;
use abacus_server::{Config, Server};
use serde_json::Value;

struct Srv {
    http: std::net::SocketAddr,
    otlp: std::net::SocketAddr,
    statsd: std::net::SocketAddr,
    state: abacus_server::AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), abacus_server::ServeError>>,
}

async fn start() -> Srv {
    let config = Config {
        listen: Listen::loopback_ephemeral(),
        window_ms: 3_600_000,
        // No files: history from earlier runs in ./abacus-data would be merged into queries.
        storage: abacus_server::sinks::StorageConfig::disabled(),
        retention_secs: 7_200,
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    Srv {
        http: server.http_addr().unwrap(),
        otlp: server.otlp_http_addr().unwrap(),
        statsd: server.statsd_addr().unwrap(),
        state: server.state().clone(),
        stop: tx,
        task: tokio::spawn(server.run(async {
            let _ = rx.await;
        })),
    }
}

impl Srv {
    async fn close_window(&self) {
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || st.close_window())
            .await
            .unwrap();
    }
    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("http://{}{path}", self.http))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    /// Sum of a field over all windows of `name`.
    async fn total(&self, name: &str, field: &str) -> f64 {
        let rows = self.get(&format!("/metrics/{name}")).await;
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_f64().unwrap())
            .sum()
    }
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn short_profile(secs: f64) -> Profile {
    Profile {
        phases: vec![
            Phase::new("ramp_up", secs * 0.3, 1, 8),
            Phase::new("herd", secs * 0.2, 24, 24),
            Phase::new("ramp_down", secs * 0.5, 8, 1),
        ],
        ..Profile::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_counts_match_the_server_exactly() {
    let srv = start().await;
    let mut config = LoadConfig::new(Target::Http {
        base_url: format!("http://{}", srv.http),
    });
    config.profile = short_profile(1.5);
    config.profile.batch = 2;
    config.max_requests = Some(20_000);
    let report = abacus_load::run(config).await.unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.failures, 0, "{}", report.to_table());
    assert_eq!(report.requests, report.successes);
    srv.close_window().await;
    // Requests: the server's own ingest counter.
    let received = srv
        .get("/metrics/abacus_ingest_requests?protocol=http_json")
        .await;
    let server_requests: f64 = received
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sum"].as_f64().unwrap())
        .sum();
    assert_eq!(server_requests as u64, report.requests);
    // Samples, per metric: histogram counts and counter increases.
    let latency = srv.total("latency", "count").await as u64;
    assert_eq!(latency, report.samples_sent["latency"]);
    assert_eq!(latency, report.successes * 2);
    let requests = srv.total("requests", "sum").await as u64;
    assert_eq!(requests, report.samples_sent["requests"]);
    let errors = srv.total("errors", "sum").await as u64;
    assert_eq!(
        errors,
        report.samples_sent.get("errors").copied().unwrap_or(0)
    );
    // The time series adds up to the totals.
    let summed: u64 = report.timeline.iter().map(|p| p.requests).sum();
    assert_eq!(summed, report.requests);
    assert!(report.latency_ms.p99.is_some());
    // Every request is attributed to exactly one phase.
    let by_phase: u64 = report.phases.iter().map(|p| p.requests).sum();
    assert_eq!(by_phase, report.requests);
    assert_eq!(report.phases[1].name, "herd");
    assert!(report.phases[1].requests > 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_and_rate_mode_counts_match_the_server_exactly() {
    let srv = start().await;
    let mut config = LoadConfig::new(Target::Otlp {
        url: format!("http://{}/v1/metrics", srv.otlp),
    });
    config.profile = short_profile(1.0);
    config.profile.mode = ModeKind::Rate;
    config.profile.rate = 300.0;
    config.profile.max_in_flight = 16;
    let report = abacus_load::run(config).await.unwrap();
    assert!(report.requests > 100, "{}", report.to_table());
    assert_eq!(report.failures, 0, "{}", report.to_table());
    srv.close_window().await;
    assert_eq!(
        srv.total("latency", "count").await as u64,
        report.samples_sent["latency"]
    );
    assert_eq!(
        srv.total("requests", "sum").await as u64,
        report.samples_sent["requests"]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_datagrams_arrive_and_max_requests_bounds_the_run() {
    let srv = start().await;
    let mut config = LoadConfig::new(Target::Statsd { addr: srv.statsd });
    config.profile = short_profile(5.0);
    config.max_requests = Some(300);
    let report = abacus_load::run(config).await.unwrap();
    assert_eq!(report.requests, 300);
    assert!(report.duration_secs < 5.0);
    // UDP has no acknowledgement: wait until the server has applied every datagram.
    let want = report.samples_sent["latency"];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        srv.close_window().await;
        let got = srv.total("latency", "count").await as u64;
        if got == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "statsd: {got} of {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_gives_connect_errors_not_a_hang() {
    // Bind then drop: a loopback port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = LoadConfig::new(Target::Http {
        base_url: format!("http://127.0.0.1:{port}"),
    });
    config.profile = short_profile(0.3);
    config.max_requests = Some(50);
    let report = abacus_load::run(config).await.unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.successes, 0);
    assert_eq!(report.errors_by_kind.get("connect"), Some(&report.requests));
}
