//! Shared server state and the HTTP API router.
//!
//! | method | path | auth | what |
//! |---|---|---|---|
//! | `POST` | `/metrics` | token | JSON ingest (object, array or NDJSON) |
//! | `POST` | `/latency` | token | latency ingest (`{"service","latency_ms"}`) |
//! | `GET` | `/metrics/{name}` | token | closed windows of a metric (see [`crate::query`]) |
//! | `GET` | `/services` | token | per-service health |
//! | `GET` | `/metrics` | token | Prometheus text / OpenMetrics of the live registry |
//! | `GET` | `/healthz` | open | liveness |
//! | `GET` | `/readyz` | open | readiness (503 while starting or draining) |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use abacus::flush::Flusher;
use abacus::{Registry, Snapshot};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;

use crate::apply::Applier;
use crate::config::Config;
use crate::error::{ApiError, ServeError};
use crate::ingest::json::{JsonConfig, parse_latency_body, parse_metrics_body};
use crate::ingest::otlp::convert::ConvertConfig;
use crate::ingest::otlp::decode::DecodeLimits;
use crate::ingest::otlp::temporality::{CumulativeToDelta, TemporalityConfig};
use crate::ingest::{Sample, SampleValue};
use crate::query;
use crate::telemetry::{Protocol, Telemetry};
use crate::windows::{ServiceBoard, WindowSink, WindowStore};

/// Everything the handlers share. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) applier: Applier,
    pub(crate) store: WindowStore,
    pub(crate) board: ServiceBoard,
    pub(crate) telemetry: Telemetry,
    pub(crate) json: JsonConfig,
    /// Lock: the cumulative→delta stream table, taken by an OTLP request at its first
    /// cumulative point and held to the end of its conversion (DELTA-only requests never
    /// take it).
    pub(crate) otlp_tracker: Mutex<CumulativeToDelta>,
    pub(crate) otlp_convert: ConvertConfig,
    pub(crate) otlp_limits: DecodeLimits,
    /// Flushed by [`AppState::close_window`] only (no background thread).
    flusher: Flusher,
    ready: AtomicBool,
    /// Storage sinks, attached once by `Server::bind` (absent in router-only tests).
    sinks: std::sync::OnceLock<Arc<crate::sinks::SinkHub>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Result of applying a batch of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Samples applied.
    pub accepted: u64,
    /// Samples refused (see [`crate::apply::ApplyReject`]).
    pub rejected: u64,
}

/// See [`AppState::apply_sink`].
pub(crate) struct ApplySink<'s> {
    state: &'s AppState,
    protocol: Protocol,
    applied: Applied,
    scratch: crate::apply::ExplicitScratch,
}

impl ApplySink<'_> {
    fn reject(&mut self, e: crate::apply::ApplyReject) {
        self.applied.rejected += 1;
        self.state
            .inner
            .telemetry
            .rejects(self.protocol, e.as_str(), 1);
    }

    /// Counts the accepted samples in the server's telemetry.
    pub(crate) fn finish(self) -> Applied {
        self.state
            .inner
            .telemetry
            .samples(self.protocol, self.applied.accepted);
        self.applied
    }
}

impl crate::ingest::otlp::convert::SampleSink for ApplySink<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: SampleValue) {
        let applier = &self.state.inner.applier;
        match applier.apply_parts_with(name, labels, &value, &mut self.scratch) {
            Ok(()) => self.applied.accepted += 1,
            Err(e) => self.reject(e),
        }
    }
}

impl AppState {
    /// Builds the registry, the window store and the (manual) flusher for `config`.
    ///
    /// # Errors
    /// [`ServeError::Config`] or [`ServeError::Registry`] for invalid settings.
    pub fn new(config: Config) -> Result<AppState, ServeError> {
        config.validate()?;
        let registry = Registry::builder()
            .max_series(config.max_series)
            .evict_after_idle(config.evict_after_idle())
            .build()?;
        let window = config.window();
        let retention = std::time::Duration::from_secs(config.retention_secs);
        let store = WindowStore::new(window, retention, config.max_series);
        let board = ServiceBoard::new(config.services.clone(), window, config.max_series);
        let flusher = Flusher::builder(registry.clone())
            .interval(window)
            .sink(WindowSink::new(store.clone(), board.clone()))
            .build()?;
        let json = JsonConfig {
            max_items: config.limits.max_items,
            ..JsonConfig::default()
        };
        let otlp_limits = DecodeLimits {
            max_body_bytes: config.limits.otlp_max_body_bytes,
            max_decompressed_bytes: config.limits.otlp_max_decompressed_bytes,
        };
        let tracker = CumulativeToDelta::new(
            TemporalityConfig {
                max_streams: config.max_series.saturating_mul(2),
                ..TemporalityConfig::default()
            },
            now_unix_nano(),
        );
        Ok(AppState {
            inner: Arc::new(Shared {
                applier: Applier::new(
                    registry.clone(),
                    config.max_series,
                    config.limits.max_set_members,
                )
                .with_max_set_members_total(config.limits.max_set_members_total),
                telemetry: Telemetry::new(registry),
                store,
                board,
                json,
                otlp_tracker: Mutex::new(tracker),
                otlp_convert: ConvertConfig::default(),
                otlp_limits,
                flusher,
                ready: AtomicBool::new(false),
                sinks: std::sync::OnceLock::new(),
                config,
            }),
        })
    }

    /// The live registry.
    pub fn registry(&self) -> &Registry {
        self.inner.applier.registry()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The closed windows.
    pub fn windows(&self) -> &WindowStore {
        &self.inner.store
    }

    /// The per-service view.
    pub fn services(&self) -> &ServiceBoard {
        &self.inner.board
    }

    /// Closes the current window now: StatsD sets become gauges, the server's gauges are
    /// updated, and the registry's delta goes to the window store. The server calls this
    /// every window length and once at shutdown; tests call it to avoid waiting. Blocking
    /// (takes the registry's delta); call it off the async executor.
    pub fn close_window(&self) -> Snapshot {
        let s = &self.inner;
        s.applier.close_sets();
        s.telemetry.window_closed(s.store.stats());
        let started = std::time::Instant::now();
        let window = s.flusher.flush();
        s.telemetry.flush_duration(started.elapsed());
        if let Some(sinks) = s.sinks.get() {
            sinks.dispatch(&window);
        }
        let horizon =
            now_unix_nano().saturating_sub(s.config.retention_secs.saturating_mul(1_000_000_000));
        s.otlp_tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expire_before(horizon);
        window
    }

    /// Attaches the storage sinks: every window closed from now on is handed to them, and
    /// `GET /metrics/{name}` reads history from SQLite. Returns false if sinks were already
    /// attached (the new hub is then not used).
    pub fn attach_sinks(&self, hub: Arc<crate::sinks::SinkHub>) -> bool {
        self.inner.sinks.set(hub).is_ok()
    }

    /// The storage sinks, once attached.
    pub fn sinks(&self) -> Option<&Arc<crate::sinks::SinkHub>> {
        self.inner.sinks.get()
    }

    /// Marks the server ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        // Relaxed: a flag read by health checks, no data published with it.
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Applies samples, counting them in the server's telemetry.
    pub fn apply(&self, protocol: Protocol, samples: &[Sample]) -> Applied {
        let mut sink = self.apply_sink(protocol);
        for s in samples {
            match self.inner.applier.apply(s) {
                Ok(()) => sink.applied.accepted += 1,
                Err(e) => sink.reject(e),
            }
        }
        sink.finish()
    }

    /// Parses one StatsD packet and applies its lines as they are parsed (borrowed names
    /// and labels where no sanitising is needed, see
    /// [`crate::ingest::statsd::parser::sink_packet`]); counts exactly like
    /// [`crate::ingest::statsd::parser::parse_packet_into`] followed by [`AppState::apply`].
    /// Parse rejects are added to `rejects` (not to the telemetry); `scratch` holds buffers
    /// reused between packets.
    pub fn apply_statsd(
        &self,
        protocol: Protocol,
        packet: &[u8],
        config: &crate::ingest::statsd::parser::StatsdConfig,
        scratch: &mut crate::ingest::statsd::parser::SinkScratch,
        rejects: &mut crate::ingest::statsd::parser::RejectCounts,
    ) -> Applied {
        let mut sink = self.apply_sink(protocol);
        crate::ingest::statsd::parser::sink_packet(packet, config, &mut sink, scratch, rejects);
        sink.finish()
    }

    /// Applies samples as a converter produces them, counting like [`AppState::apply`]
    /// once [`ApplySink::finish`] is called.
    pub(crate) fn apply_sink(&self, protocol: Protocol) -> ApplySink<'_> {
        ApplySink {
            state: self,
            protocol,
            applied: Applied::default(),
            scratch: crate::apply::ExplicitScratch::default(),
        }
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Whether `headers` carry the configured bearer token (always true without one).
    pub(crate) fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = self.inner.config.token.as_deref() else {
            return true;
        };
        let Some(value) = authorization else {
            return false;
        };
        let Some(given) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return false;
        };
        constant_time_eq(given, token.as_bytes())
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if state.authorized(auth) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// What a route needs before its handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `Authorization: Bearer <token>` when a token is configured.
    Token,
    /// Always open (health checks).
    Open,
}

/// The handler behind a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /metrics`.
    IngestMetrics,
    /// `POST /latency`.
    IngestLatency,
    /// `GET /metrics/{name}`.
    MetricWindows,
    /// `GET /services`.
    Services,
    /// `GET /metrics` (Prometheus / OpenMetrics text).
    Prometheus,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// OTLP/HTTP `POST /v1/metrics` (on the OTLP listener, see [`crate::otlp::http::ROUTES`]).
    OtlpExport,
}

/// One route of a router: the router is built from such a table, so a test walking the
/// table walks every route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// HTTP method (upper case).
    pub method: &'static str,
    /// Path pattern as axum takes it (`{name}` is a path parameter).
    pub path: &'static str,
    /// Token or open.
    pub access: Access,
    /// The handler.
    pub endpoint: Endpoint,
}

/// Every route of the HTTP API (see the module docs).
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/metrics",
        access: Access::Token,
        endpoint: Endpoint::IngestMetrics,
    },
    Route {
        method: "POST",
        path: "/latency",
        access: Access::Token,
        endpoint: Endpoint::IngestLatency,
    },
    Route {
        method: "GET",
        path: "/metrics/{name}",
        access: Access::Token,
        endpoint: Endpoint::MetricWindows,
    },
    Route {
        method: "GET",
        path: "/services",
        access: Access::Token,
        endpoint: Endpoint::Services,
    },
    Route {
        method: "GET",
        path: "/metrics",
        access: Access::Token,
        endpoint: Endpoint::Prometheus,
    },
    Route {
        method: "GET",
        path: "/healthz",
        access: Access::Open,
        endpoint: Endpoint::Healthz,
    },
    Route {
        method: "GET",
        path: "/readyz",
        access: Access::Open,
        endpoint: Endpoint::Readyz,
    },
];

fn handler(endpoint: Endpoint) -> MethodRouter<AppState> {
    match endpoint {
        Endpoint::IngestMetrics => post(ingest_metrics),
        Endpoint::IngestLatency => post(ingest_latency),
        Endpoint::MetricWindows => get(query::metric_windows),
        Endpoint::Services => get(query::services),
        Endpoint::Prometheus => get(query::prometheus),
        Endpoint::Healthz => get(healthz),
        Endpoint::Readyz => get(readyz),
        // Served by the OTLP/HTTP router only.
        Endpoint::OtlpExport => MethodRouter::new(),
    }
}

/// The HTTP API router (ingest, query, exposition, health), built from [`ROUTES`].
/// Unknown paths are 404 and unsupported methods 405, both with a JSON `error`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.inner.config.limits.max_body_bytes;
    let (mut protected, mut open) = (Router::new(), Router::new());
    for r in ROUTES {
        match r.access {
            Access::Token => protected = protected.route(r.path, handler(r.endpoint)),
            Access::Open => open = open.route(r.path, handler(r.endpoint)),
        }
    }
    let protected = protected
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(body_limit));
    open.merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such endpoint" })),
    )
        .into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({ "error": "method not allowed on this endpoint" })),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    // Relaxed: see `set_ready`.
    if state.inner.ready.load(Ordering::Relaxed) {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready" })),
        )
            .into_response()
    }
}

/// Accepts no content type, JSON and NDJSON (and `text/plain`, which `curl -d` sends).
fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or_default();
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json"
        | "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "text/plain"
        | "application/x-www-form-urlencoded" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(ct.to_owned())),
    }
}

fn ingest_json(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    parse: fn(&[u8], &JsonConfig) -> Result<Vec<Sample>, crate::ingest::json::JsonIngestError>,
) -> Result<Json<Applied>, ApiError> {
    let t = state.telemetry();
    t.request(Protocol::HttpJson);
    let result = check_json_content_type(headers)
        .and_then(|()| body.map_err(ApiError::from))
        .and_then(|body| parse(&body, &state.inner.json).map_err(ApiError::from));
    let samples = match result {
        Ok(s) => s,
        Err(e) => {
            let reason = match &e {
                ApiError::Body { .. } => "body",
                ApiError::UnsupportedMediaType(_) => "content_type",
                _ => "invalid_json",
            };
            t.rejects(Protocol::HttpJson, reason, 1);
            return Err(e);
        }
    };
    let applied = state.apply(Protocol::HttpJson, &samples);
    if applied.accepted == 0 && applied.rejected > 0 {
        return Err(ApiError::Unprocessable(format!(
            "none of the {} sample(s) could be applied (fractional increment of an integer counter, or a full set)",
            applied.rejected
        )));
    }
    Ok(Json(applied))
}

async fn ingest_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Applied>, ApiError> {
    ingest_json(&state, &headers, body, parse_metrics_body)
}

async fn ingest_latency(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Applied>, ApiError> {
    ingest_json(&state, &headers, body, parse_latency_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::statsd::parser::{
        RejectCounts, SinkScratch, StatsdConfig, parse_packet_into, sink_packet,
    };
    use proptest::prelude::*;

    fn state(max_set_members: usize) -> AppState {
        let mut config = Config::default();
        config.limits.max_set_members = max_set_members;
        AppState::new(config).expect("valid config")
    }

    /// Series sorted by key, with set gauges closed in.
    fn series(st: &AppState) -> Vec<abacus::SeriesSnapshot> {
        st.inner.applier.close_sets();
        let mut s = st.registry().snapshot().series;
        s.sort_by(|a, b| a.key.cmp(&b.key));
        s
    }

    /// Lines mixing clean and unclean names / tag keys with every limit and reject reason.
    fn line() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("hits".to_owned()),
            Just("lat".to_owned()),
            Just("api.req".to_owned()),
            Just("api_req".to_owned()),
            Just("1st".to_owned()),
            Just("_1st".to_owned()),
            Just("ns:sub".to_owned()),
            Just("naïve".to_owned()),
            Just("users".to_owned()),
            Just("a".repeat(200)),
            Just("a".repeat(201)),
            Just("a.".repeat(100)),
            Just(String::new()),
            "[a-z_.]{1,6}",
        ];
        let values = prop_oneof![
            Just("1"),
            Just("2"),
            Just("-1"),
            Just("+3"),
            Just("1.5"),
            Just("0"),
            Just("-0"),
            Just("1e308"),
            Just("abc"),
            Just("1:2:3"),
            Just("1:-1"),
            Just("alice"),
            Just("a:b"),
            Just(""),
        ];
        let kind = prop_oneof![
            Just("c"),
            Just("g"),
            Just("ms"),
            Just("h"),
            Just("d"),
            Just("s"),
            Just("x"),
        ];
        let rate = prop_oneof![
            Just(""),
            Just(""),
            Just("|@0.5"),
            Just("|@0.1"),
            Just("|@0.000001"),
            Just("|@0"),
            Just("|@2"),
        ];
        let tag = prop_oneof![
            Just("a:1".to_owned()),
            Just("a:2".to_owned()),
            Just("b:x".to_owned()),
            Just("le:1".to_owned()),
            Just("Le:1".to_owned()),
            Just("__x:1".to_owned()),
            Just("a.b:1".to_owned()),
            Just("a_b:2".to_owned()),
            Just("1a:x".to_owned()),
            Just("_:v".to_owned()),
            Just("k".to_owned()),
            Just(":v".to_owned()),
            Just("url:http://x".to_owned()),
            Just(format!("k:{}", "v".repeat(1025))),
            Just(format!("{}:v", "k".repeat(129))),
            Just(
                (0..33)
                    .map(|i| format!("t{i}:v"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Just(
                (0..33)
                    .map(|i| format!("t.{i}:v"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "[a-c.]{1,3}:[a-c]{0,2}",
        ];
        let tags = prop::collection::vec(tag, 0..4).prop_map(|t| {
            if t.is_empty() {
                String::new()
            } else {
                format!("|#{}", t.join(","))
            }
        });
        (name, values, kind, rate, tags, any::<bool>()).prop_map(|(n, v, k, r, t, swap)| {
            if swap {
                format!("{n}:{v}|{k}{t}{r}|c:container")
            } else {
                format!("{n}:{v}|{k}{r}{t}")
            }
        })
    }

    fn packets() -> impl Strategy<Value = Vec<String>> {
        let packet = prop::collection::vec(line(), 1..8).prop_map(|l| l.join("\n"));
        prop::collection::vec(packet, 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The borrowed StatsD path (`apply_statsd`) leaves exactly the state, counts and
        /// rejects of the owned one (`parse_packet_into` + `apply`), and hands the same
        /// samples to a sink.
        #[test]
        fn statsd_borrowed_path_matches_owned_path(packets in packets(), members in 1usize..4) {
            let config = StatsdConfig::default();
            let (owned_state, borrowed_state) = (state(members), state(members));
            for p in &packets {
                let mut samples = Vec::new();
                let mut owned_rejects = RejectCounts::default();
                let owned_lines =
                    parse_packet_into(p.as_bytes(), &config, &mut samples, &mut owned_rejects);
                let owned = owned_state.apply(Protocol::Statsd, &samples);

                let mut scratch = SinkScratch::default();
                let mut borrowed_rejects = RejectCounts::default();
                let borrowed = borrowed_state.apply_statsd(
                    Protocol::Statsd,
                    p.as_bytes(),
                    &config,
                    &mut scratch,
                    &mut borrowed_rejects,
                );
                prop_assert_eq!(owned, borrowed);
                prop_assert_eq!(&owned_rejects, &borrowed_rejects);

                let mut sunk = Vec::new();
                let mut sunk_rejects = RejectCounts::default();
                let sunk_lines =
                    sink_packet(p.as_bytes(), &config, &mut sunk, &mut scratch, &mut sunk_rejects);
                prop_assert_eq!(owned_lines, sunk_lines);
                prop_assert_eq!(&samples, &sunk);
                prop_assert_eq!(&owned_rejects, &sunk_rejects);
            }
            prop_assert_eq!(series(&owned_state), series(&borrowed_state));
        }
    }

    #[test]
    fn statsd_borrowed_path_matches_owned_path_on_edge_lines() {
        let lines = [
            "hits:1|c",
            "hits:1.5|c",
            "hits:1|c|@0.3",
            "hits:-0|c",
            "hits:1:-1|c",
            "hits:1e308|c|@0.0001",
            "api.hits:2|c|#a.b:1",
            "lat:5|ms|@0.25|#a:1,a:2,b:3",
            "lat:5|h|#le:1",
            "lat:5|g|#le:1",
            "lat:5|d|#Le:1,l.e:2",
            "temp:+4|g",
            "temp:-4|g",
            "temp:7|g|@0.5",
            "users:alice|s",
            "users:bob|s",
            "users:carol|s",
            "users:a:b|s|#k",
            "x:1|c|#__x:1",
            "x:1|c|#1a:1",
            "_e{1,1}:a|b",
        ];
        let config = StatsdConfig::default();
        let (a, b) = (state(2), state(2));
        for l in lines {
            let mut samples = Vec::new();
            let mut ra = RejectCounts::default();
            parse_packet_into(l.as_bytes(), &config, &mut samples, &mut ra);
            let applied_a = a.apply(Protocol::Statsd, &samples);
            let mut rb = RejectCounts::default();
            let applied_b = b.apply_statsd(
                Protocol::Statsd,
                l.as_bytes(),
                &config,
                &mut SinkScratch::default(),
                &mut rb,
            );
            assert_eq!(applied_a, applied_b, "{l}");
            assert_eq!(ra, rb, "{l}");
        }
        let (sa, sb) = (series(&a), series(&b));
        assert!(sa.len() > 10);
        assert_eq!(sa, sb);
    }
}
