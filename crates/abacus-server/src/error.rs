//! Errors of the server: [`ApiError`] for HTTP responses, [`ServeError`] for start-up and
//! the serving loop.

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::ConfigError;
use crate::ingest::json::JsonIngestError;
use crate::ingest::otlp::decode::DecodeError;

/// A request the API refuses. Client faults become a 4xx with the body
/// `{"error": "<message>"}` and are logged at debug level only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No or a wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The JSON ingest body was refused (400, or 413 for too many items).
    #[error(transparent)]
    Json(#[from] JsonIngestError),
    /// The OTLP body could not be decoded (400, 413 or 415).
    #[error(transparent)]
    Otlp(#[from] DecodeError),
    /// The body could not be read: too large (413) or broken (400).
    #[error("{message}")]
    Body {
        /// Status chosen by the body extractor.
        status: StatusCode,
        /// What went wrong.
        message: String,
    },
    /// The `Content-Type` is not accepted here (415).
    #[error("unsupported content type {0:?} (use application/json or application/x-ndjson)")]
    UnsupportedMediaType(String),
    /// A query parameter is malformed (400).
    #[error("invalid query parameter: {0}")]
    BadQuery(String),
    /// The samples were valid JSON but none could be applied (422).
    #[error("{0}")]
    Unprocessable(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        let code = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::BAD_REQUEST);
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Json(e) => code(e.status_code()),
            ApiError::Otlp(e) => code(e.status_code()),
            ApiError::Body { status, .. } => *status,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        ApiError::Body {
            status: r.status(),
            message: r.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry or flusher refused the configuration.
    #[error("invalid registry configuration: {0}")]
    Registry(#[from] abacus::BuildError),
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The storage sinks could not start (data directory, SQLite file).
    #[error(transparent)]
    Storage(#[from] crate::sinks::StorageError),
    /// A server loop failed.
    #[error("{what} server failed: {message}")]
    Server {
        /// Which server.
        what: &'static str,
        /// The failure.
        message: String,
    },
}
