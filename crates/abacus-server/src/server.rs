//! Binding the listeners and running the daemon.
//!
//! [`Server::bind`] opens every enabled listener first (so a port clash fails start-up,
//! and tests can bind port 0 and read the addresses back); [`Server::run`] serves until
//! the shutdown future completes, then stops accepting, lets in-flight requests finish
//! (at most [`DRAIN_TIMEOUT`]), drains queued StatsD datagrams, closes the final partial
//! window and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::{self, AppState};
use crate::config::Config;
use crate::error::ServeError;
use crate::{otlp, statsd};

/// How long shutdown waits for in-flight requests before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    http: Option<TcpListener>,
    otlp_http: Option<TcpListener>,
    otlp_grpc: Option<TcpListener>,
    statsd: Option<UdpSocket>,
    /// The other sockets of the StatsD `SO_REUSEPORT` group, bound with `statsd`.
    statsd_more: Vec<UdpSocket>,
    statsd_recv_buffer: usize,
    statsd_tcp: Option<TcpListener>,
}

async fn bind_tcp(
    what: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, ServeError> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| ServeError::Bind { what, addr, source })
}

impl Server {
    /// Validates `config`, builds the state and binds every enabled listener.
    ///
    /// # Errors
    /// [`ServeError::Config`] / [`ServeError::Registry`] for invalid settings,
    /// [`ServeError::Bind`] when a listener cannot be opened.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let state = AppState::new(config)?;
        // Storage first: an unusable data directory fails start-up before any port is bound.
        let hub =
            crate::sinks::SinkHub::start(&state.config().storage, state.registry().clone()).await?;
        state.attach_sinks(std::sync::Arc::new(hub));
        let listen = state.config().listen.clone();
        let http = bind_tcp("HTTP API", listen.http).await?;
        let otlp_http = bind_tcp("OTLP/HTTP", listen.otlp_http).await?;
        let otlp_grpc = bind_tcp("OTLP/gRPC", listen.otlp_grpc).await?;
        let (statsd, statsd_recv_buffer) = match listen.statsd {
            None => (None, 0),
            Some(addr) => {
                let (sock, granted) =
                    statsd::bind(addr, state.config().limits.statsd_recv_buffer_bytes)
                        .and_then(|(s, g)| Ok((UdpSocket::from_std(s)?, g)))
                        .map_err(|source| ServeError::Bind {
                            what: "StatsD",
                            addr,
                            source,
                        })?;
                (Some(sock), granted)
            }
        };
        let statsd_more = statsd.as_ref().map_or_else(Vec::new, |first| {
            statsd::bind_more(first, state.config().limits.statsd_recv_buffer_bytes)
        });
        let statsd_tcp = bind_tcp("StatsD/TCP", listen.statsd_tcp).await?;
        Ok(Server {
            state,
            http,
            otlp_http,
            otlp_grpc,
            statsd,
            statsd_more,
            statsd_recv_buffer,
            statsd_tcp,
        })
    }

    /// Bound address of the HTTP API.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Bound address of the OTLP/HTTP receiver.
    pub fn otlp_http_addr(&self) -> Option<SocketAddr> {
        self.otlp_http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Bound address of the OTLP/gRPC receiver.
    pub fn otlp_grpc_addr(&self) -> Option<SocketAddr> {
        self.otlp_grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Bound address of the StatsD socket.
    pub fn statsd_addr(&self) -> Option<SocketAddr> {
        self.statsd.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Bound address of the StatsD TCP listener (off by default).
    pub fn statsd_tcp_addr(&self) -> Option<SocketAddr> {
        self.statsd_tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared state (registry, windows): for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes (or a listener fails), then drains and closes the
    /// final window.
    ///
    /// # Errors
    /// [`ServeError::Server`] when a server loop failed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let Server {
            state,
            http,
            otlp_http,
            otlp_grpc,
            statsd,
            statsd_more,
            statsd_recv_buffer,
            statsd_tcp,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks: JoinSet<Result<(), ServeError>> = JoinSet::new();

        let cfg = state.config();
        let limits = crate::listener::ConnLimits {
            max_connections: cfg.limits.max_connections,
            header_read_timeout: cfg.header_read_timeout(),
            request_timeout: cfg.request_timeout(),
        };
        let axum_listeners = [
            (http, app::router(state.clone()), "http", "HTTP API"),
            (
                otlp_http,
                otlp::http::router(state.clone()),
                "otlp_http",
                "OTLP/HTTP",
            ),
        ];
        for (listener, router, label, what) in axum_listeners {
            let Some(l) = listener else { continue };
            tracing::info!(addr = ?l.local_addr().ok(), "{what} listening");
            let stop = stopped(stop_rx.clone());
            let st = state.clone();
            tasks.spawn(async move {
                crate::listener::serve_http(l, router, limits, st, label, what, stop).await;
                Ok(())
            });
        }
        if let Some(l) = otlp_grpc {
            tracing::info!(addr = ?l.local_addr().ok(), "OTLP/gRPC listening");
            let svc = otlp::grpc::service(state.clone());
            let stop = stopped(stop_rx.clone());
            let incoming = crate::listener::limited_incoming(
                l,
                limits.max_connections,
                state.clone(),
                "otlp_grpc",
                stopped(stop_rx.clone()),
            );
            let (streams, header_list) = (
                cfg.limits.grpc_max_concurrent_streams,
                cfg.limits.grpc_max_header_list_bytes,
            );
            tasks.spawn(async move {
                tonic::transport::Server::builder()
                    .timeout(limits.request_timeout)
                    .max_concurrent_streams(streams)
                    .http2_max_header_list_size(header_list)
                    // A peer that stops answering pings is dropped (half-open connections).
                    .http2_keepalive_interval(Some(Duration::from_secs(30)))
                    .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await
                    .map_err(|e| ServeError::Server {
                        what: "OTLP/gRPC",
                        message: e.to_string(),
                    })
            });
        }
        if let Some(sock) = statsd {
            tracing::info!(
                addr = ?sock.local_addr().ok(),
                recv_buffer = statsd_recv_buffer,
                "StatsD listening"
            );
            let (st, rx) = (state.clone(), stop_rx.clone());
            let mut sockets = vec![sock];
            sockets.extend(statsd_more);
            tasks.spawn(async move {
                statsd::run(sockets, st, rx).await;
                Ok(())
            });
        }
        if let Some(l) = statsd_tcp {
            tracing::info!(addr = ?l.local_addr().ok(), "StatsD/TCP listening");
            let (st, rx) = (state.clone(), stop_rx.clone());
            tasks.spawn(async move {
                statsd::run_tcp(l, st, rx).await;
                Ok(())
            });
        }
        {
            let st = state.clone();
            let stop = stopped(stop_rx.clone());
            let window = st.config().window();
            tasks.spawn(async move {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + window, window);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let s = st.clone();
                            let _ = tokio::task::spawn_blocking(move || s.close_window()).await;
                        }
                        () = &mut stop => break,
                    }
                }
                Ok(())
            });
        }
        state.set_ready(true);

        // Serve until asked to stop, or until a server loop ends on its own (an error).
        let mut first_error = None;
        tokio::select! {
            () = shutdown => tracing::info!("shutting down"),
            Some(done) = tasks.join_next() => {
                first_error = flatten(done).err();
                tracing::error!(error = ?first_error, "a server loop stopped; shutting down");
            }
        }
        state.set_ready(false);
        let _ = stop_tx.send(true);
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = flatten(done) {
                    tracing::error!(error = %e, "server loop failed during shutdown");
                    first_error.get_or_insert(e);
                }
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!("in-flight requests did not finish in time; abandoning them");
            tasks.abort_all();
        }
        let st = state.clone();
        let last = tokio::task::spawn_blocking(move || st.close_window())
            .await
            .map(|w| w.series.len())
            .unwrap_or(0);
        tracing::info!(series = last, "final window flushed");
        // The final window is queued; wait until every sink wrote or spilled it.
        if let Some(sinks) = state.sinks() {
            sinks.shutdown().await;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn flatten(r: Result<Result<(), ServeError>, tokio::task::JoinError>) -> Result<(), ServeError> {
    r.map_err(|e| ServeError::Server {
        what: "task",
        message: e.to_string(),
    })?
}

/// Binds everything in `config` and serves until `shutdown` completes.
///
/// # Errors
/// See [`Server::bind`] and [`Server::run`].
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Server::bind(config).await?.run(shutdown).await
}
