//! OTLP/HTTP receiver: `POST /v1/metrics` on its own listener.
//!
//! Request bodies are protobuf (`application/x-protobuf`, the default) or OTLP/JSON
//! (`application/json`), optionally `Content-Encoding: gzip`. The response uses the
//! request's encoding. Errors are `{"error": "..."}` with 400 / 401 / 413 / 415.

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;

use crate::app::AppState;
use crate::error::ApiError;
use crate::ingest::otlp::decode::{BodyFormat, body_format, decode_request};
use crate::telemetry::Protocol;

/// Every route of the OTLP/HTTP router (all need the token when one is configured).
pub const ROUTES: &[crate::app::Route] = &[crate::app::Route {
    method: "POST",
    path: "/v1/metrics",
    access: crate::app::Access::Token,
    endpoint: crate::app::Endpoint::OtlpExport,
}];

/// The OTLP/HTTP router, built from [`ROUTES`]. The token is checked before the body is
/// read; unknown paths are 404 and other methods 405, with a JSON `error`.
pub fn router(state: AppState) -> Router {
    let limit = state.config().limits.otlp_max_body_bytes;
    let mut router = Router::new();
    for r in ROUTES {
        debug_assert_eq!(r.endpoint, crate::app::Endpoint::OtlpExport);
        router = router.route(r.path, post(export));
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(limit))
        .fallback(crate::app::not_found)
        .method_not_allowed_fallback(crate::app::method_not_allowed)
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if state.authorized(auth) {
        next.run(req).await
    } else {
        let t = state.telemetry();
        t.request(Protocol::OtlpHttp);
        t.rejects(Protocol::OtlpHttp, "unauthorized", 1);
        ApiError::Unauthorized.into_response()
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let t = state.telemetry();
    t.request(Protocol::OtlpHttp);
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let decoded = body.map_err(ApiError::from).and_then(|body| {
        decode_request(
            &body,
            content_type,
            header_str(&headers, header::CONTENT_ENCODING),
            &state.inner.otlp_limits,
        )
        .map_err(ApiError::from)
    });
    let req = match decoded {
        Ok(r) => r,
        Err(e) => {
            t.rejects(Protocol::OtlpHttp, "body", 1);
            return Err(e);
        }
    };
    let resp = state.export_otlp(Protocol::OtlpHttp, &req);
    Ok(match body_format(content_type) {
        Ok(BodyFormat::Json) => axum::Json(resp).into_response(),
        _ => {
            let mut r = resp.encode_to_vec().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            r
        }
    })
}
