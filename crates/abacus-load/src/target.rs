//! Where requests go and how each protocol encodes a batch of samples.
//!
//! Encoders are pure functions ([`json_body`], [`otlp_body`], [`statsd_packet`]); the
//! [`Sender`] owns the client or socket and classifies outcomes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use prost::Message as _;
use tokio::net::UdpSocket;

use crate::error::LoadError;
use crate::profile::SeriesKind;
use crate::stats::{ErrorKind, Outcome};

/// The protocol and address of the system under load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// abacus JSON API: `POST {base}/metrics` with a JSON array.
    Http {
        /// Base URL, e.g. `http://127.0.0.1:3001`.
        base_url: String,
    },
    /// OTLP/HTTP protobuf: `POST {url}` (e.g. `http://127.0.0.1:4318/v1/metrics`).
    Otlp {
        /// Full export URL.
        url: String,
    },
    /// StatsD over UDP: one datagram per request, one line per sample.
    Statsd {
        /// Daemon address.
        addr: SocketAddr,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Http { base_url } => write!(f, "http {base_url}/metrics"),
            Target::Otlp { url } => write!(f, "otlp {url}"),
            Target::Statsd { addr } => write!(f, "statsd udp://{addr}"),
        }
    }
}

/// One sample to send.
#[derive(Clone, Debug, PartialEq)]
pub struct OutSample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Kind.
    pub kind: SeriesKind,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// The JSON API body: an array of `{"name","value","labels","type"}`.
pub fn json_body(samples: &[OutSample<'_>]) -> Vec<u8> {
    let items: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "value": s.value,
                "labels": s.labels,
                "type": s.kind.as_str(),
            })
        })
        .collect();
    serde_json::to_vec(&items).unwrap_or_default()
}

/// StatsD lines with DogStatsD tags: histograms `|ms`, counters `|c`, gauges `|g`.
pub fn statsd_packet(samples: &[OutSample<'_>]) -> Vec<u8> {
    let mut out = String::new();
    for s in samples {
        if !out.is_empty() {
            out.push('\n');
        }
        let ty = match s.kind {
            SeriesKind::Histogram => "ms",
            SeriesKind::Counter => "c",
            SeriesKind::Gauge => "g",
        };
        out.push_str(&format!("{}:{}|{ty}", s.name, s.value));
        if !s.labels.is_empty() {
            out.push_str("|#");
            let tags: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            out.push_str(&tags.join(","));
        }
    }
    out.into_bytes()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An OTLP export request: delta sums for counters, gauges, and one-point delta
/// histograms (a single `+Inf` bucket, with exact count/sum/min/max) per sample.
pub fn otlp_body(samples: &[OutSample<'_>]) -> Vec<u8> {
    let now = now_nanos();
    let start = now.saturating_sub(1_000_000);
    let metrics = samples
        .iter()
        .map(|s| {
            let attributes: Vec<KeyValue> = s
                .labels
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v.clone())),
                    }),
                    ..KeyValue::default()
                })
                .collect();
            let number = NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(s.value)),
                ..NumberDataPoint::default()
            };
            let data = match s.kind {
                SeriesKind::Counter => metric::Data::Sum(Sum {
                    data_points: vec![number],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                }),
                SeriesKind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: vec![number],
                }),
                SeriesKind::Histogram => metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: 1,
                        sum: Some(s.value),
                        bucket_counts: vec![1],
                        explicit_bounds: vec![],
                        min: Some(s.value),
                        max: Some(s.value),
                        ..HistogramDataPoint::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            };
            Metric {
                name: s.name.to_owned(),
                data: Some(data),
                ..Metric::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
    .encode_to_vec()
}

/// Sends encoded batches to a [`Target`]; one per worker or shared (cheap to clone).
#[derive(Clone, Debug)]
pub enum Sender {
    /// JSON or OTLP over HTTP.
    Http {
        /// The client (connection pool shared by clones).
        client: reqwest::Client,
        /// Full URL to POST to.
        url: String,
        /// `Content-Type`.
        content_type: &'static str,
        /// Bearer token.
        token: Option<String>,
        /// Whether bodies are OTLP protobuf.
        otlp: bool,
    },
    /// StatsD datagrams.
    Statsd {
        /// Daemon address.
        addr: SocketAddr,
    },
}

/// What one send produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Outcome class.
    pub outcome: Outcome,
    /// Request bytes.
    pub sent: u64,
    /// Response bytes.
    pub received: u64,
    /// Time from send to the end of the response.
    pub latency: Duration,
}

impl Sender {
    /// A sender for `target`.
    ///
    /// # Errors
    /// [`LoadError::Target`] for a URL that is not `http://`, [`LoadError::Client`] when
    /// the HTTP client cannot be built.
    pub fn new(
        target: &Target,
        token: Option<String>,
        timeout: Duration,
        pool: usize,
    ) -> Result<Sender, LoadError> {
        let http = |url: &str, otlp: bool| -> Result<Sender, LoadError> {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(LoadError::Target {
                    target: url.to_owned(),
                    reason: "expected an http:// URL".into(),
                });
            }
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .pool_max_idle_per_host(pool)
                .build()
                .map_err(|e| LoadError::Client(e.to_string()))?;
            Ok(Sender::Http {
                client,
                url: url.to_owned(),
                content_type: if otlp {
                    "application/x-protobuf"
                } else {
                    "application/json"
                },
                token,
                otlp,
            })
        };
        match target {
            Target::Http { base_url } => http(
                &format!("{}/metrics", base_url.trim_end_matches('/')),
                false,
            ),
            Target::Otlp { url } => http(url, true),
            Target::Statsd { addr } => Ok(Sender::Statsd { addr: *addr }),
        }
    }

    /// Opens what a worker needs of its own (a UDP socket for StatsD).
    ///
    /// # Errors
    /// Socket errors.
    pub async fn socket(&self) -> Result<Option<UdpSocket>, LoadError> {
        match self {
            Sender::Http { .. } => Ok(None),
            Sender::Statsd { addr } => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).await?;
                s.connect(addr).await?;
                Ok(Some(s))
            }
        }
    }

    /// Encodes and sends `samples`.
    pub async fn send(&self, samples: &[OutSample<'_>], socket: Option<&UdpSocket>) -> Sent {
        match self {
            Sender::Http {
                client,
                url,
                content_type,
                token,
                otlp,
            } => {
                let body = if *otlp {
                    otlp_body(samples)
                } else {
                    json_body(samples)
                };
                let sent = body.len() as u64;
                let started = Instant::now();
                let mut req = client
                    .post(url)
                    .header("content-type", *content_type)
                    .body(body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let (outcome, received) = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(b) if status.is_success() => (Outcome::Success, b.len() as u64),
                            Ok(b) => (Outcome::Status(status.as_u16()), b.len() as u64),
                            Err(e) => (Outcome::Error(classify(&e)), 0),
                        }
                    }
                    Err(e) => (Outcome::Error(classify(&e)), 0),
                };
                Sent {
                    outcome,
                    sent,
                    received,
                    latency: started.elapsed(),
                }
            }
            Sender::Statsd { .. } => {
                let packet = statsd_packet(samples);
                let started = Instant::now();
                let outcome = match socket {
                    Some(s) => match s.send(&packet).await {
                        Ok(_) => Outcome::Success,
                        Err(_) => Outcome::Error(ErrorKind::Io),
                    },
                    None => Outcome::Error(ErrorKind::Io),
                };
                Sent {
                    outcome,
                    sent: packet.len() as u64,
                    received: 0,
                    latency: started.elapsed(),
                }
            }
        }
    }
}

fn classify(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::Body
    } else {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("service".to_owned(), "api".to_owned())])
    }

    #[test]
    fn json_body_is_an_array_of_typed_items() {
        let l = labels();
        let body = json_body(&[
            OutSample {
                name: "latency",
                kind: SeriesKind::Histogram,
                labels: &l,
                value: 12.0,
            },
            OutSample {
                name: "requests",
                kind: SeriesKind::Counter,
                labels: &l,
                value: 1.0,
            },
        ]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["type"], "histogram");
        assert_eq!(v[1]["labels"]["service"], "api");
        assert_eq!(v[1]["value"], 1.0);
    }

    #[test]
    fn statsd_packet_has_one_tagged_line_per_sample() {
        let l = labels();
        let p = statsd_packet(&[
            OutSample {
                name: "latency",
                kind: SeriesKind::Histogram,
                labels: &l,
                value: 12.0,
            },
            OutSample {
                name: "up",
                kind: SeriesKind::Gauge,
                labels: &BTreeMap::new(),
                value: 1.5,
            },
        ]);
        assert_eq!(
            String::from_utf8(p).unwrap(),
            "latency:12|ms|#service:api\nup:1.5|g"
        );
    }

    #[test]
    fn otlp_body_decodes_with_one_metric_per_sample() {
        let l = labels();
        let body = otlp_body(&[OutSample {
            name: "latency",
            kind: SeriesKind::Histogram,
            labels: &l,
            value: 7.0,
        }]);
        let req = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "latency");
        let Some(metric::Data::Histogram(h)) = &m.data else {
            panic!("not a histogram")
        };
        assert_eq!(h.data_points[0].count, 1);
        assert_eq!(h.data_points[0].sum, Some(7.0));
    }
}
