//! Query handlers.
//!
//! * `GET /metrics/{name}?from=&to=&<label>=<value>...` → JSON array of
//!   [`WindowRow`](crate::windows::WindowRow), oldest first. `from` / `to` are Unix
//!   seconds (window start in `[from, to)`); every other parameter is a label filter, and
//!   the series of `name` that carry all filter labels are merged per window. An unknown
//!   name gives `[]` (data may simply not have arrived yet).
//! * `GET /services` → `{"window_seconds": f64, "services": [ServiceHealth...]}`.
//! * `GET /metrics` → Prometheus text 0.0.4, or OpenMetrics 1.0 when `Accept` names
//!   `application/openmetrics-text`.

use abacus::exposition::prometheus::{Format, RenderOptions, render_registry};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::query::WindowQuery;
use crate::windows::WindowRow;

pub(crate) async fn metric_windows(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<WindowRow>>, ApiError> {
    // A name that does not percent-decode to UTF-8 (`/metrics/%FF`) is a 400 with a JSON
    // error like every other bad request, not axum's plain-text rejection.
    let Path(name) = name.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let Query(params) = params.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let WindowQuery { from, to, filters } =
        WindowQuery::parse(&params).map_err(|e| ApiError::BadQuery(e.0))?;
    // Windows older than the oldest one memory holds come from SQLite (after a restart, or
    // beyond the in-memory retention); memory answers from there on, so none is repeated.
    // Memory first, with its oldest window read under the same lock: a window closing
    // while SQLite is queried cannot then drop out of both answers.
    let (memory, before) = state
        .windows()
        .query_and_earliest(&name, &filters, from, to);
    let mut rows = Vec::new();
    if let Some(history) = state.sinks().and_then(|s| s.history()).cloned() {
        let (n, f) = (name.clone(), filters.clone());
        match tokio::task::spawn_blocking(move || history.query(&n, &f, from, to, before)).await {
            Ok(Ok(r)) => rows = r,
            Ok(Err(error)) => tracing::warn!(%error, metric = %name, "Cannot read stored windows"),
            Err(error) => tracing::warn!(%error, metric = %name, "Stored-window query failed"),
        }
    }
    rows.extend(memory);
    Ok(Json(rows))
}

pub(crate) async fn services(State(state): State<AppState>) -> Json<serde_json::Value> {
    let view = state.services().view();
    Json(serde_json::json!({
        "window_seconds": state.config().window().as_secs_f64(),
        "services": *view,
    }))
}

/// Help text of a metric family (the server's own metrics are described; others say where
/// they came from).
fn help_for(family: &str) -> &'static str {
    match family {
        "abacus_ingest_requests" | "abacus_ingest_requests_total" => {
            "Ingest requests (HTTP, OTLP) or packets (StatsD) received, by protocol."
        }
        "abacus_ingest_samples" | "abacus_ingest_samples_total" => {
            "Samples applied to the registry, by protocol."
        }
        "abacus_ingest_rejects" | "abacus_ingest_rejects_total" => {
            "Requests, lines, data points or samples refused, by protocol and reason."
        }
        "abacus_series" => "Live registry series, overflow series included.",
        "abacus_series_refused" | "abacus_series_refused_total" => {
            "Records routed to overflow series because max_series was reached."
        }
        "abacus_kind_conflicts" | "abacus_kind_conflicts_total" => {
            "Records dropped because their series exists with another kind."
        }
        "abacus_window_store_series" => "Series held by the window store.",
        "abacus_sink_written_windows" | "abacus_sink_written_windows_total" => {
            "Windows a storage sink's store acknowledged, by sink."
        }
        "abacus_sink_retries" | "abacus_sink_retries_total" => {
            "Failed write attempts of a storage sink (retried or spilled), by sink."
        }
        "abacus_sink_spilled_windows" | "abacus_sink_spilled_windows_total" => {
            "Windows a remote sink spilled to the local SQLite file while its store was down."
        }
        "abacus_sink_dropped_windows" | "abacus_sink_dropped_windows_total" => {
            "Windows a sink lost because a configured bound was exceeded, by sink and reason."
        }
        "abacus_sink_queue_depth" => "Windows waiting in a sink's in-memory queue.",
        "abacus_sink_spill_depth" => "Windows waiting in a remote sink's spill table.",
        _ => {
            crate::telemetry::help(family).unwrap_or("Aggregated by abacus from ingested samples.")
        }
    }
}

/// Adds a `# HELP` line before every `# TYPE` line (`promtool check metrics` warns about
/// families without help text, and the core renderer emits none).
fn with_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(family) = rest.split_whitespace().next() {
                out.push_str("# HELP ");
                out.push_str(family);
                out.push(' ');
                out.push_str(help_for(family));
                out.push('\n');
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub(crate) async fn prometheus(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Text004
    };
    let options = RenderOptions {
        format,
        ..RenderOptions::default()
    };
    let text = with_help(&render_registry(state.registry(), &options));
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}
