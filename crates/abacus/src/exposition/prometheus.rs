//! Prometheus text exposition (format 0.0.4) and OpenMetrics 1.0 text.
//!
//! * Counters: `<name>_total`. Gauges: `<name>`.
//! * Histograms: classic `<name>_bucket{le="..."}`, `<name>_sum`, `<name>_count`, with
//!   bucket counts derived from the exponential buckets at the configured boundaries
//!   (exact at powers of two, which are boundaries at every scale; see
//!   [`HistogramSnapshot::count_le`](crate::HistogramSnapshot::count_le)); a histogram
//!   with negative observations also gets the boundaries mirrored below zero, and no
//!   `_sum`/`_count` (OpenMetrics allows no sum with negative buckets, nor a count without
//!   a sum; the `+Inf` bucket holds the count).
//! * Units: time is exposed in seconds (a `latency` histogram in ms becomes
//!   `latency_seconds`, values divided by 1000), bytes get `_bytes`.
//! * Names are sanitised to `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names to
//!   `[a-zA-Z_][a-zA-Z0-9_]*` (other characters become `_`); label values are escaped
//!   (`\\`, `\"`, `\n`).
//!
//! ```
//! let registry = abacus::Registry::new();
//! registry.increment_counter("requests", &[("path", "/a\"b")], 3);
//! let text = abacus::exposition::prometheus::render(&registry.snapshot(), &Default::default());
//! assert_eq!(text, "# TYPE requests_total counter\nrequests_total{path=\"/a\\\"b\"} 3\n");
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::histogram::HistogramSnapshot;
use crate::snapshot::{SeriesSnapshot, Snapshot, Unit, Value};

/// Text format to render.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    #[default]
    Text004,
    /// `application/openmetrics-text; version=1.0.0` (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Rendering options.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Classic bucket boundaries for integer histograms, in the series' own unit
    /// (default: powers of two 1, 2, 4, … 65536, exact for integer data).
    pub integer_buckets: Vec<f64>,
    /// Classic bucket boundaries for float histograms, in the series' own unit
    /// (default: powers of two from 2^-10 to 2^16).
    pub float_buckets: Vec<f64>,
    /// Text format.
    pub format: Format,
    /// Prefix prepended to every metric name (sanitised as part of the name).
    pub prefix: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            integer_buckets: (0..=16).map(|e| f64::from(1u32 << e)).collect(),
            float_buckets: (-10..=16).map(|e| (f64::from(e)).exp2()).collect(),
            format: Format::Text004,
            prefix: String::new(),
        }
    }
}

/// Sanitises a metric name.
pub fn metric_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
        if ok {
            out.push(c);
        } else if i == 0 && c.is_ascii_digit() {
            out.push('_');
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Sanitises a label name.
pub fn label_name(raw: &str) -> String {
    let mut s = metric_name(raw).replace(':', "_");
    if s.starts_with("__") {
        // Names starting with `__` are reserved by Prometheus.
        s.insert(0, 'x');
    }
    s
}

/// Escapes a label value for the text format.
pub fn escape_label_value(raw: &str, out: &mut String) {
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn family_name(s: &SeriesSnapshot, prefix: &str) -> String {
    let mut name = metric_name(&format!("{prefix}{}", s.key.name()));
    if let Some(suffix) = s.unit.prometheus_suffix() {
        if !name.ends_with(suffix) {
            name.push('_');
            name.push_str(suffix);
        }
    }
    if matches!(s.value, Value::Counter(_) | Value::FloatCounter(_)) {
        // The family is the name without `_total`; samples carry the suffix.
        if let Some(stripped) = name.strip_suffix("_total") {
            name = stripped.to_owned();
        }
    }
    name
}

/// `{a="1",b="2"` without the closing brace, or empty.
fn label_prefix(s: &SeriesSnapshot) -> String {
    let mut out = String::new();
    for (i, (k, v)) in s.key.labels().iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(&label_name(k));
        out.push_str("=\"");
        escape_label_value(v, &mut out);
        out.push('"');
    }
    out
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    match (labels.is_empty(), extra) {
        (true, None) => {}
        (true, Some((k, v))) => {
            let _ = write!(out, "{{{k}=\"{v}\"}}");
        }
        (false, None) => {
            out.push_str(labels);
            out.push('}');
        }
        (false, Some((k, v))) => {
            out.push_str(labels);
            let _ = write!(out, ",{k}=\"{v}\"}}");
        }
    }
    out.push(' ');
    write_float(out, value);
    out.push('\n');
}

fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &HistogramSnapshot,
    unit: Unit,
    bounds: &[f64],
) {
    let to_base = unit.to_base();
    // With negative observations, the boundaries mirrored below zero come first and there
    // is no `_sum`/`_count` (the `+Inf` bucket is the count): OpenMetrics forbids a negative
    // sum without negative buckets, any sum with them (it would not be a counter), and a
    // count without a sum; strict parsers refuse all three.
    let negative = h.count > 0 && h.min < 0.0;
    let mirrored: Vec<f64>;
    let bounds = if negative {
        mirrored = bounds
            .iter()
            .rev()
            .filter(|b| **b > 0.0)
            .map(|b| -b)
            .chain(bounds.iter().copied())
            .collect();
        &mirrored[..]
    } else {
        bounds
    };
    let counts = h.count_le_many(bounds);
    let mut le = String::new();
    for (b, n) in bounds.iter().zip(counts) {
        le.clear();
        write_float(&mut le, b * to_base);
        write_sample(out, name, "_bucket", labels, Some(("le", &le)), n as f64);
    }
    write_sample(
        out,
        name,
        "_bucket",
        labels,
        Some(("le", "+Inf")),
        h.count as f64,
    );
    if !negative {
        write_sample(out, name, "_sum", labels, None, h.sum * to_base);
        write_sample(out, name, "_count", labels, None, h.count as f64);
    }
}

/// Renders a snapshot (normally cumulative: Prometheus expects counters since start).
pub fn render(snapshot: &Snapshot, opts: &RenderOptions) -> String {
    // Group by sanitised family name so each family's samples are contiguous and its TYPE
    // line appears once, even when two raw names sanitise to the same family.
    let mut families: BTreeMap<String, Vec<&SeriesSnapshot>> = BTreeMap::new();
    for s in &snapshot.series {
        families
            .entry(family_name(s, &opts.prefix))
            .or_default()
            .push(s);
    }
    let mut out = String::with_capacity(snapshot.series.len() * 128);
    for (name, series) in &families {
        let kind = match series[0].value {
            Value::Counter(_) | Value::FloatCounter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
        };
        let type_name = if kind == "counter" && opts.format == Format::Text004 {
            format!("{name}_total")
        } else {
            name.clone()
        };
        let _ = writeln!(out, "# TYPE {type_name} {kind}");
        for s in series {
            let labels = label_prefix(s);
            match &s.value {
                Value::Counter(n) if kind == "counter" => {
                    write_sample(&mut out, name, "_total", &labels, None, *n as f64)
                }
                Value::FloatCounter(x) if kind == "counter" => {
                    write_sample(&mut out, name, "_total", &labels, None, *x)
                }
                Value::Gauge(v) if kind == "gauge" => {
                    write_sample(&mut out, name, "", &labels, None, *v)
                }
                Value::Histogram(h) if kind == "histogram" => {
                    let bounds = if h.integers {
                        &opts.integer_buckets
                    } else {
                        &opts.float_buckets
                    };
                    write_histogram(&mut out, name, &labels, h, s.unit, bounds);
                }
                // A series whose kind differs from its family's first series would make the
                // family invalid; skip it (the registry refuses such kind conflicts anyway,
                // this only happens when two raw names sanitise to one family).
                _ => {}
            }
        }
    }
    if opts.format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}
