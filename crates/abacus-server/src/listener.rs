//! Accept loops with limits: a cap on open connections per listener, an HTTP/1
//! header-read timeout (slowloris), a per-request timeout covering the body read, and a
//! graceful drain on shutdown.
//!
//! axum's own `serve` has no header-read timeout and no connection cap, so the HTTP
//! listeners (API and OTLP/HTTP) run on hyper's HTTP/1 connection builder directly. The
//! OTLP/gRPC listener keeps tonic's server (for its HTTP/2 settings) and gets the same
//! connection cap through [`limited_incoming`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tower::ServiceExt;

use crate::app::AppState;

/// Limits of one TCP listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    /// Open connections at most; accepting pauses while the cap is reached.
    pub max_connections: usize,
    /// HTTP/1 request head deadline (also between keep-alive requests).
    pub header_read_timeout: Duration,
    /// Body read plus handling of one request.
    pub request_timeout: Duration,
}

/// Counts a listener's open connections into `abacus_connections{listener}`.
struct OpenGauge {
    listener: &'static str,
    open: AtomicUsize,
    telemetry: Arc<dyn Fn(&'static str, usize) + Send + Sync>,
}

impl OpenGauge {
    fn change(&self, up: bool) {
        // Relaxed: a plain count; the gauge only needs the value after this change, and the
        // fetch_* result is that value for this thread (no other memory is published by it).
        let now = if up {
            self.open.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed) - 1
        };
        (self.telemetry)(self.listener, now);
    }
}

/// Waits for a free connection slot, then accepts. Returns `None` once `stop` completes.
/// Transient accept errors (a peer that reset before accept, `EMFILE`) are logged and
/// retried after a short pause instead of ending the loop.
async fn accept_limited(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stop: &mut Pin<&mut (impl Future<Output = ()> + ?Sized)>,
    what: &'static str,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.ok()?,
            () = stop.as_mut() => return None,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.as_mut() => return None,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, permit));
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what}: accept failed");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves `router` over HTTP/1 on `listener` until `stop` completes, then waits for the
/// open connections to finish their requests (the caller bounds that wait).
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    state: AppState,
    label: &'static str,
    what: &'static str,
    stop: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let st = state.clone();
    let gauge = Arc::new(OpenGauge {
        listener: label,
        open: AtomicUsize::new(0),
        telemetry: Arc::new(move |l, n| st.telemetry().connections(l, n)),
    });
    tokio::pin!(stop);
    let mut stop: Pin<&mut (dyn Future<Output = ()> + Send)> = stop;
    while let Some((stream, permit)) = accept_limited(&listener, &slots, &mut stop, what).await {
        let router = router.clone();
        let tel = state.clone();
        let timeout = limits.request_timeout;
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let router = router.clone();
            let tel = tel.clone();
            async move {
                let req = req.map(Body::new);
                match tokio::time::timeout(timeout, router.oneshot(req)).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        tel.telemetry().connection_cut(label, "request_timeout");
                        Ok::<_, Infallible>(request_timeout_response(timeout))
                    }
                }
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        let (gauge, tel) = (gauge.clone(), state.clone());
        gauge.change(true);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    tel.telemetry().connection_cut(label, "header_timeout");
                }
                tracing::debug!(error = %e, "{what}: connection ended with an error");
            }
            gauge.change(false);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn request_timeout_response(after: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "error": format!(
            "request not completed within {} ms (body read too slowly?)",
            after.as_millis()
        )
    });
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// A TCP stream holding one of its listener's connection slots until dropped.
#[derive(Debug)]
pub(crate) struct LimitedStream {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    _open: OpenGuard,
}

/// Decrements the open-connections gauge when the connection is dropped.
struct OpenGuard(Arc<OpenGauge>);

impl std::fmt::Debug for OpenGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenGuard")
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.change(false);
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::Connected::connect_info(&self.inner)
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Connections of `listener`, at most `max_connections` open at once, as a stream for
/// tonic's `serve_with_incoming_shutdown`. The accepting task ends when `stop` completes
/// (the stream then ends too).
pub(crate) fn limited_incoming(
    listener: TcpListener,
    max_connections: usize,
    state: AppState,
    label: &'static str,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<LimitedStream>> {
    let (tx, rx) = mpsc::channel(1);
    let gauge = Arc::new(OpenGauge {
        listener: label,
        open: AtomicUsize::new(0),
        telemetry: Arc::new(move |l, n| state.telemetry().connections(l, n)),
    });
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(max_connections));
        tokio::pin!(stop);
        let mut stop: Pin<&mut (dyn Future<Output = ()> + Send)> = stop;
        while let Some((stream, permit)) =
            accept_limited(&listener, &slots, &mut stop, "OTLP/gRPC").await
        {
            gauge.change(true);
            let conn = LimitedStream {
                inner: stream,
                _slot: permit,
                _open: OpenGuard(gauge.clone()),
            };
            if tx.send(Ok(conn)).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
