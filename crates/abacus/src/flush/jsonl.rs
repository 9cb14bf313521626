use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::Sink;
use crate::error::SinkError;
use crate::snapshot::{Snapshot, Value};

/// Writes one JSON object per window, one per line.
///
/// Each line: `{"start_unix_ms", "end_unix_ms", "series": [...]}`; each series has `name`,
/// `labels`, `kind`, `unit` and either `value` (counters, gauges) or `count`, `sum`, `min`,
/// `max`, `p50`, `p90`, `p95`, `p99`, `p999` and the exponential buckets (`scale`,
/// `zero_count`, `positive`, `negative` as `[index, count]` pairs) for histograms.
#[derive(Debug)]
pub struct JsonLinesSink<W: Write + Send> {
    out: W,
}

impl JsonLinesSink<BufWriter<File>> {
    /// Appends to the file at `path`, creating it.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, SinkError> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLinesSink {
            out: BufWriter::new(f),
        })
    }
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// A JSON-lines sink on any writer.
    pub fn new(out: W) -> Self {
        JsonLinesSink { out }
    }
}

#[derive(Serialize)]
struct WindowLine<'a> {
    start_unix_ms: u64,
    end_unix_ms: u64,
    series: Vec<SeriesLine<'a>>,
}

#[derive(Serialize)]
struct SeriesLine<'a> {
    name: &'a str,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    kind: crate::MetricKind,
    unit: crate::Unit,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    histogram: Option<HistLine<'a>>,
}

#[derive(Serialize)]
struct HistLine<'a> {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    p50: Option<f64>,
    p90: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    scale: i8,
    zero_count: u64,
    positive: &'a [(i32, u64)],
    negative: &'a [(i32, u64)],
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError> {
        let series = window
            .series
            .iter()
            .map(|s| {
                let (value, histogram) = match &s.value {
                    Value::Counter(n) => (Some(*n as f64), None),
                    Value::FloatCounter(x) | Value::Gauge(x) => (Some(*x), None),
                    Value::Histogram(h) => {
                        let q = h.quantiles(&[0.5, 0.9, 0.95, 0.99, 0.999]);
                        (
                            None,
                            Some(HistLine {
                                count: h.count,
                                sum: h.sum,
                                min: h.min,
                                max: h.max,
                                p50: q[0],
                                p90: q[1],
                                p95: q[2],
                                p99: q[3],
                                p999: q[4],
                                scale: h.scale,
                                zero_count: h.zero_count,
                                positive: &h.positive,
                                negative: &h.negative,
                            }),
                        )
                    }
                };
                SeriesLine {
                    name: s.key.name(),
                    labels: s.key.labels().iter().map(|(k, v)| (&**k, &**v)).collect(),
                    kind: s.kind,
                    unit: s.unit,
                    value,
                    histogram,
                }
            })
            .collect();
        let line = WindowLine {
            start_unix_ms: unix_ms(window.start),
            end_unix_ms: unix_ms(window.end),
            series,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.out.flush()?)
    }
}
