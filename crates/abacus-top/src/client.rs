//! Polls the query API: `GET /services` for the list and each service's last window, then
//! `GET /metrics/latency?service=S&from=...` for its recent windows (max and the trend).
//! Results go into a channel as [`Event::Data`](crate::app::Event::Data).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::app::Event;
use crate::error::TopError;

/// How many windows of history the client asks for per service.
pub const HISTORY: usize = 60;

/// One closed window of a service's latency (`GET /metrics/{name}` row).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct WindowPoint {
    /// Window start, Unix ms.
    pub start_ms: u64,
    /// Window end, Unix ms.
    pub end_ms: u64,
    /// Samples.
    pub count: u64,
    /// Largest sample.
    pub max: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl WindowPoint {
    /// Samples per second.
    pub fn rate(&self) -> f64 {
        let secs = self.end_ms.saturating_sub(self.start_ms) as f64 / 1000.0;
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }
}

/// The last window of a service as `GET /services` reports it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Span {
    /// Window start, Unix ms.
    #[serde(default)]
    pub start_ms: u64,
    /// Requests (request counter), if any.
    #[serde(default)]
    pub requests: Option<f64>,
    /// Errors (error counter), if any.
    #[serde(default)]
    pub errors: Option<f64>,
    /// Latency samples.
    #[serde(default)]
    pub latency_count: u64,
    /// Requests per second.
    #[serde(default)]
    pub rate: f64,
    /// Errors / requests.
    #[serde(default)]
    pub error_share: Option<f64>,
    /// Median latency.
    #[serde(default)]
    pub p50: Option<f64>,
    /// 95th percentile.
    #[serde(default)]
    pub p95: Option<f64>,
    /// 99th percentile.
    #[serde(default)]
    pub p99: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ServiceEntry {
    service: String,
    last_window: Span,
}

#[derive(Debug, Deserialize)]
struct ServicesBody {
    #[serde(default)]
    window_seconds: f64,
    services: Vec<ServiceEntry>,
}

/// One service: its last window and its recent latency windows (oldest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceData {
    /// The `service` label.
    pub name: String,
    /// Last closed window.
    pub last: Span,
    /// Recent windows of `latency{service}`.
    pub history: Vec<WindowPoint>,
}

impl ServiceData {
    /// Largest latency of the last window.
    pub fn max(&self) -> Option<f64> {
        self.history
            .last()
            .filter(|w| w.start_ms == self.last.start_ms)
            .and_then(|w| w.max)
    }

    /// Requests in the last window (latency samples without a request counter).
    pub fn count(&self) -> f64 {
        self.last.requests.unwrap_or(self.last.latency_count as f64)
    }
}

/// Everything one poll returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Poll {
    /// Window length of the server.
    pub window_seconds: f64,
    /// Services by name.
    pub services: BTreeMap<String, ServiceData>,
    /// When the poll completed.
    pub at: Option<SystemTime>,
}

/// A query-API client.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:3001`).
    ///
    /// # Errors
    /// [`TopError::Client`] when the HTTP client cannot be built.
    pub fn new(base: &str, token: Option<String>) -> Result<Client, TopError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TopError::Client(e.to_string()))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {path}: HTTP {status}"));
        }
        resp.json().await.map_err(|e| format!("GET {path}: {e}"))
    }

    /// One poll: the services and their recent latency windows.
    ///
    /// # Errors
    /// A message for the status line (connection refused, HTTP status, bad JSON).
    pub async fn poll(&self) -> Result<Poll, String> {
        let body: ServicesBody = self.get("/services").await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let from = (now - body.window_seconds.max(1.0) * (HISTORY as f64 + 1.0)).max(0.0);
        let mut services = BTreeMap::new();
        for s in body.services {
            let path = format!(
                "/metrics/latency?service={}&from={from:.0}",
                encode(&s.service)
            );
            let mut history: Vec<WindowPoint> = self.get(&path).await.unwrap_or_default();
            if history.len() > HISTORY {
                history.drain(..history.len() - HISTORY);
            }
            services.insert(
                s.service.clone(),
                ServiceData {
                    name: s.service,
                    last: s.last_window,
                    history,
                },
            );
        }
        Ok(Poll {
            window_seconds: body.window_seconds,
            services,
            at: Some(SystemTime::now()),
        })
    }

    /// Polls every `interval` into `tx` until the receiver is dropped.
    pub async fn run(self, interval: Duration, tx: mpsc::Sender<Event>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = self.poll().await;
            if let Err(e) = &result {
                tracing::debug!(error = %e, "Poll failed");
            }
            if tx.send(Event::Data(result)).await.is_err() {
                return;
            }
        }
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(encode("api-v1.x_y~"), "api-v1.x_y~");
    }

    #[test]
    fn window_rate_is_count_per_second() {
        let w = WindowPoint {
            start_ms: 0,
            end_ms: 2000,
            count: 10,
            ..WindowPoint::default()
        };
        assert_eq!(w.rate(), 5.0);
    }
}
