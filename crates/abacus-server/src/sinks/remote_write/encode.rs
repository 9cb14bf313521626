//! Pure encoding of windows into remote-write requests (no I/O): see the [module docs](super).

use std::collections::HashMap;

use abacus::exposition::prometheus::{RenderOptions, label_name, metric_name};
use abacus::{Snapshot, Value};
use prost::Message as _;

use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::sinks::unix_ms;

/// Per-series running totals are forgotten after this many windows without the series.
const FORGET_AFTER_WINDOWS: u64 = 1_000;

#[derive(Debug, Clone, Default)]
struct Running {
    last_window: u64,
    total: f64,
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
}

/// Turns windows into requests, keeping the running totals of counters and histograms.
#[derive(Debug)]
pub struct Encoder {
    integer_bounds: Vec<f64>,
    float_bounds: Vec<f64>,
    running: HashMap<String, Running>,
    windows: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        let o = RenderOptions::default();
        Encoder {
            integer_bounds: o.integer_buckets,
            float_bounds: o.float_buckets,
            running: HashMap::new(),
            windows: 0,
        }
    }
}

fn labels(name: String, key: &abacus::Key, extra: Option<(&str, String)>) -> Vec<Label> {
    let mut out = Vec::with_capacity(key.labels().len() + 2);
    out.push(Label {
        name: "__name__".to_owned(),
        value: name,
    });
    for (k, v) in key.labels() {
        out.push(Label {
            name: label_name(k),
            value: v.to_string(),
        });
    }
    if let Some((k, v)) = extra {
        out.push(Label {
            name: k.to_owned(),
            value: v,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_owned()
    } else {
        format!("{bound}")
    }
}

impl Encoder {
    /// A new encoder with the exposition's default bucket boundaries.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// The request for one window (advancing the running totals).
    pub fn encode(&mut self, window: &Snapshot) -> WriteRequest {
        self.windows += 1;
        let ts = i64::try_from(unix_ms(window.end)).unwrap_or(i64::MAX);
        let sample = |value: f64| {
            vec![Sample {
                value,
                timestamp: ts,
            }]
        };
        let mut out = Vec::with_capacity(window.series.len());
        for s in &window.series {
            let base = metric_name(s.key.name());
            let key = crate::sinks::series_key(&s.key);
            match &s.value {
                Value::Counter(_) | Value::FloatCounter(_) => {
                    let inc = match s.value {
                        Value::Counter(n) => n as f64,
                        Value::FloatCounter(x) => x,
                        _ => 0.0,
                    };
                    let r = self.running.entry(key).or_default();
                    r.last_window = self.windows;
                    r.total += inc;
                    let name = if base.ends_with("_total") {
                        base
                    } else {
                        format!("{base}_total")
                    };
                    out.push(TimeSeries {
                        labels: labels(name, &s.key, None),
                        samples: sample(r.total),
                    });
                }
                Value::Gauge(g) => out.push(TimeSeries {
                    labels: labels(base, &s.key, None),
                    samples: sample(*g),
                }),
                Value::Histogram(h) => {
                    let bounds = if h.integers {
                        &self.integer_bounds
                    } else {
                        &self.float_bounds
                    };
                    let counts = h.count_le_many(bounds);
                    let r = self.running.entry(key).or_default();
                    r.last_window = self.windows;
                    if r.buckets.len() != counts.len() {
                        r.buckets = vec![0; counts.len()];
                    }
                    for (acc, c) in r.buckets.iter_mut().zip(&counts) {
                        *acc += c;
                    }
                    r.count += h.count;
                    r.sum += h.sum;
                    for (b, c) in bounds.iter().zip(&r.buckets) {
                        out.push(TimeSeries {
                            labels: labels(format!("{base}_bucket"), &s.key, Some(("le", le(*b)))),
                            samples: sample(*c as f64),
                        });
                    }
                    out.push(TimeSeries {
                        labels: labels(
                            format!("{base}_bucket"),
                            &s.key,
                            Some(("le", le(f64::INFINITY))),
                        ),
                        samples: sample(r.count as f64),
                    });
                    out.push(TimeSeries {
                        labels: labels(format!("{base}_sum"), &s.key, None),
                        samples: sample(r.sum),
                    });
                    out.push(TimeSeries {
                        labels: labels(format!("{base}_count"), &s.key, None),
                        samples: sample(r.count as f64),
                    });
                }
            }
        }
        if self.windows % FORGET_AFTER_WINDOWS == 0 {
            let now = self.windows;
            self.running
                .retain(|_, r| now - r.last_window < FORGET_AFTER_WINDOWS);
        }
        WriteRequest { timeseries: out }
    }

    /// The HTTP body for one window: protobuf, then snappy (block format, as the protocol
    /// requires).
    pub fn encode_body(&mut self, window: &Snapshot) -> Vec<u8> {
        compress(&self.encode(window))
    }
}

/// Protobuf-encodes and snappy-compresses a request.
pub fn compress(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    // snap's block encoder only fails for inputs over ~4 GiB; fall back to an empty body
    // (rejected by the receiver, counted) rather than panic.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Inverse of [`compress`] (tests, the in-process receiver).
///
/// # Errors
/// A message when the body is not snappy or not a `WriteRequest`.
pub fn decompress(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abacus::Registry;

    fn find<'a>(
        req: &'a WriteRequest,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Option<&'a TimeSeries> {
        req.timeseries.iter().find(|t| {
            t.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == name)
                && extra
                    .iter()
                    .all(|(k, v)| t.labels.iter().any(|l| l.name == *k && l.value == *v))
        })
    }

    #[test]
    fn round_trip_through_snappy_and_prost_decode() {
        let reg = Registry::new();
        reg.increment_counter("http.requests", &[("svc", "a")], 3);
        reg.set_gauge("temp", &[("room", "x")], 21.5);
        let w = reg.delta();
        let mut enc = Encoder::new();
        let body = enc.encode_body(&w);
        let req = decompress(&body).unwrap();
        assert_eq!(req, Encoder::new().encode(&w));
        let c = find(&req, "http_requests_total", &[("svc", "a")]).unwrap();
        assert_eq!(c.samples[0].value, 3.0);
        assert_eq!(c.samples[0].timestamp, unix_ms(w.end) as i64);
        // Labels sorted by name, __name__ first (it sorts before lower-case letters).
        let names: Vec<_> = c.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "svc"]);
        assert_eq!(find(&req, "temp", &[]).unwrap().samples[0].value, 21.5);
        assert!(decompress(b"not snappy").is_err());
    }

    #[test]
    fn counters_and_histograms_accumulate_across_windows() {
        let reg = Registry::new();
        let mut enc = Encoder::new();
        let mut last = None;
        for i in 1..=3u64 {
            reg.increment_counter("jobs_total", &[], i);
            reg.record("lat", &[], 3);
            reg.record("lat", &[], 100);
            last = Some(enc.encode(&reg.delta()));
        }
        let req = last.unwrap();
        assert_eq!(find(&req, "jobs_total", &[]).unwrap().samples[0].value, 6.0);
        assert_eq!(find(&req, "lat_count", &[]).unwrap().samples[0].value, 6.0);
        assert_eq!(find(&req, "lat_sum", &[]).unwrap().samples[0].value, 309.0);
        let le4 = find(&req, "lat_bucket", &[("le", "4")]).unwrap();
        assert_eq!(le4.samples[0].value, 3.0);
        let inf = find(&req, "lat_bucket", &[("le", "+Inf")]).unwrap();
        assert_eq!(inf.samples[0].value, 6.0);
    }
}
