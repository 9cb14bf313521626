use std::io::Write;
use std::time::UNIX_EPOCH;

use super::Sink;
use crate::error::SinkError;
use crate::snapshot::{Snapshot, Value};

/// Writes each window as a readable table: one row per histogram series (service, count,
/// rate, min, p50, p95, p99, max), then counters and gauges.
///
/// ```
/// use abacus::flush::{Sink, TableSink};
/// let registry = abacus::Registry::new();
/// registry.record_latency("api", 7);
/// let mut out = Vec::new();
/// TableSink::new(&mut out).export(&registry.delta()).unwrap();
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.contains("api"));
/// ```
#[derive(Debug)]
pub struct TableSink<W: Write + Send> {
    out: W,
}

impl TableSink<std::io::Stdout> {
    /// A table sink on standard output.
    pub fn stdout() -> Self {
        TableSink {
            out: std::io::stdout(),
        }
    }
}

impl<W: Write + Send> TableSink<W> {
    /// A table sink on any writer.
    pub fn new(out: W) -> Self {
        TableSink { out }
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The row label of a series: its `service` label when that is the only label of a
/// latency series, `name{labels}` otherwise.
fn row_name(s: &crate::SeriesSnapshot) -> String {
    match (s.key.labels(), s.key.label("service")) {
        ([_], Some(service)) => format!("{} {}", s.key.name(), service),
        _ => s.key.to_string(),
    }
}

/// Renders `window` as the table text (also used by the demo and the CLI).
pub(crate) fn render_table(window: &Snapshot) -> String {
    use std::fmt::Write as _;
    let secs = window.seconds();
    let end = window
        .end
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut t = String::new();
    let _ = writeln!(t, "-- window {secs:.1}s ending at {end:.3} (unix) --");
    let hist: Vec<_> = window
        .series
        .iter()
        .filter(|s| s.histogram().is_some())
        .collect();
    if !hist.is_empty() {
        let width = hist
            .iter()
            .map(|s| row_name(s).len())
            .max()
            .unwrap_or(7)
            .max(7);
        let _ = writeln!(
            t,
            "{:<width$} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "series", "count", "rate/s", "min", "p50", "p95", "p99", "max"
        );
        for s in hist {
            let Some(h) = s.histogram() else { continue };
            let q = h.quantiles(&[0.5, 0.95, 0.99]);
            let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), fmt_num);
            let _ = writeln!(
                t,
                "{:<width$} {:>10} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
                row_name(s),
                h.count,
                h.count as f64 / secs,
                fmt_num(h.min),
                f(q[0]),
                f(q[1]),
                f(q[2]),
                fmt_num(h.max),
            );
        }
    }
    let mut others: Vec<_> = window
        .series
        .iter()
        .filter(|s| s.histogram().is_none())
        .collect();
    others.sort_by(|a, b| a.key.cmp(&b.key));
    for s in others {
        match &s.value {
            Value::Counter(n) => {
                let _ = writeln!(t, "{} {} (+{:.1}/s)", s.key, n, *n as f64 / secs);
            }
            Value::FloatCounter(x) => {
                let _ = writeln!(t, "{} {} (+{:.1}/s)", s.key, fmt_num(*x), x / secs);
            }
            Value::Gauge(v) => {
                let _ = writeln!(t, "{} = {}", s.key, fmt_num(*v));
            }
            Value::Histogram(_) => {}
        }
    }
    t
}

impl<W: Write + Send> Sink for TableSink<W> {
    fn name(&self) -> &'static str {
        "table"
    }

    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError> {
        self.out.write_all(render_table(window).as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.out.flush()?)
    }
}
