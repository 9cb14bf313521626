//! The remote-write sender: one HTTP POST per window.

use std::time::Duration;

use abacus::Snapshot;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::encode::Encoder;
use crate::sinks::queue::{Backend, SendError};
use crate::sinks::{RemoteWriteConfig, StorageError};

/// Remote-write backend for [`crate::sinks::queue::run_remote`].
#[derive(Debug)]
pub struct RemoteWrite {
    client: reqwest::Client,
    url: String,
    encoder: Encoder,
}

impl RemoteWrite {
    /// A sender to `config.url`.
    ///
    /// # Errors
    /// [`StorageError::Config`] when the HTTP client cannot be built.
    pub fn new(config: &RemoteWriteConfig) -> Result<RemoteWrite, StorageError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StorageError::Config(format!("remote-write {what}: {e}"))
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| bad("header name", &e))?;
            let value =
                HeaderValue::try_from(value.as_str()).map_err(|e| bad("header value", &e))?;
            headers.insert(name, value);
        }
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|e| bad("bearer token", &e))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.timeout_ms.clamp(1, 2_000)))
            .build()
            .map_err(|e| StorageError::Config(format!("remote-write client: {e}")))?;
        Ok(RemoteWrite {
            client,
            url: config.url.clone(),
            encoder: Encoder::new(),
        })
    }
}

impl Backend for RemoteWrite {
    fn name(&self) -> &'static str {
        "remote_write"
    }

    fn prepare(&mut self, window: &Snapshot) -> Result<Vec<u8>, String> {
        Ok(self.encoder.encode_body(window))
    }

    async fn send(&mut self, payload: &[u8]) -> Result<(), SendError> {
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header("User-Agent", concat!("abacus/", env!("CARGO_PKG_VERSION")))
            .body(payload.to_vec())
            .send()
            .await
            .map_err(|e| SendError::Retryable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let msg = format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        );
        // Like Prometheus' own sender: 5xx and 429 are retried, other 4xx are not.
        if status.is_server_error() || status.as_u16() == 429 {
            Err(SendError::Retryable(msg))
        } else {
            Err(SendError::Rejected(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_client_builds_and_an_unreachable_store_is_retryable() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        for url in ["https://127.0.0.1:1/api/v1/write", "http://127.0.0.1:1/w"] {
            let mut rw = RemoteWrite::new(&RemoteWriteConfig {
                url: url.to_owned(),
                timeout_ms: 1_000,
                ..Default::default()
            })
            .unwrap();
            let err = rw.send(b"x").await.unwrap_err();
            assert!(matches!(err, SendError::Retryable(_)), "{url}: {err}");
        }
    }
}
