//! Helpers: start a real server on ephemeral loopback ports, poll with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use abacus_server::config::Listen;
use abacus_server::{AppState, Config, ServeError, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A configuration on ephemeral loopback ports with a window long enough that tests close
/// windows themselves (`close_window`).
pub fn test_config() -> Config {
    Config {
        listen: Listen::loopback_ephemeral(),
        window_ms: 3_600_000,
        retention_secs: 7_200,
        // No files from tests that do not ask for storage.
        storage: abacus_server::sinks::StorageConfig::disabled(),
        ..Config::default()
    }
}

pub struct Running {
    pub http: SocketAddr,
    pub otlp_http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub statsd: SocketAddr,
    pub statsd_tcp: Option<SocketAddr>,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

pub async fn start(config: Config) -> Running {
    let server = Server::bind(config).await.expect("bind");
    let (tx, rx) = oneshot::channel::<()>();
    Running {
        http: server.http_addr().expect("http"),
        otlp_http: server.otlp_http_addr().expect("otlp http"),
        otlp_grpc: server.otlp_grpc_addr().expect("otlp grpc"),
        statsd: server.statsd_addr().expect("statsd"),
        statsd_tcp: server.statsd_tcp_addr(),
        state: server.state().clone(),
        stop: Some(tx),
        task: tokio::spawn(server.run(async {
            let _ = rx.await;
        })),
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Closes the current window (as the window timer would).
    pub async fn close_window(&self) {
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || st.close_window())
            .await
            .expect("close window");
    }

    /// Graceful shutdown; returns the server's result.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("shutdown within the deadline")
            .expect("server task")
    }
}

/// Polls `f` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
