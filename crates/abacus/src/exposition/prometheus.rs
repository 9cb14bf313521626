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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::Registry;
use crate::histogram::{BoundIndex, HistogramView};
use crate::key::Key;
use crate::registry::{CollectScratch, MetricKind, Series, read_cumulative};
use crate::snapshot::{SeriesSnapshot, Snapshot, Unit, Value, ValueRef};

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

#[cfg(test)]
fn family_name(s: &SeriesSnapshot, prefix: &str) -> String {
    let counter = matches!(s.value, Value::Counter(_) | Value::FloatCounter(_));
    family_name_of(s.key.name(), s.unit, counter, prefix)
}

/// The sanitised family name of series `raw` with `unit` (`counter`: without `_total`).
fn family_name_of(raw: &str, unit: Unit, counter: bool, prefix: &str) -> String {
    let mut name = metric_name(&format!("{prefix}{raw}"));
    if let Some(suffix) = unit.prometheus_suffix() {
        if !name.ends_with(suffix) {
            name.push('_');
            name.push_str(suffix);
        }
    }
    if counter {
        // The family is the name without `_total`; samples carry the suffix.
        if let Some(stripped) = name.strip_suffix("_total") {
            name = stripped.to_owned();
        }
    }
    name
}

/// Whether `raw` is already a valid label name that [`label_name`] returns unchanged.
fn label_name_is_clean(raw: &str) -> bool {
    let b = raw.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    !raw.starts_with("__") && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Writes `{a="1",b="2"` (without the closing brace, nothing without labels) into `out`,
/// replacing its contents.
fn label_prefix_into(key: &Key, out: &mut String) {
    out.clear();
    for (i, (k, v)) in key.labels().iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        if label_name_is_clean(k) {
            out.push_str(k);
        } else {
            out.push_str(&label_name(k));
        }
        out.push_str("=\"");
        if v.bytes().any(|c| matches!(c, b'\\' | b'"' | b'\n')) {
            escape_label_value(v, out);
        } else {
            out.push_str(v);
        }
        out.push('"');
    }
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

/// Writes the count `n` as the text `write_float(n as f64)` gives: below 2^53 the `f64` is
/// the integer itself and `Display` prints its digits, which `itoa` writes directly.
fn write_count(out: &mut String, n: u64) {
    if n >= 1 << 53 {
        write_float(out, n as f64);
        return;
    }
    out.push_str(itoa::Buffer::new().format(n));
}

/// A sample line's value.
enum Sample {
    Count(u64),
    Float(f64),
}

/// Writes `name suffix {labels[,extra]} value\n`. `labels` is the output of
/// [`label_prefix_into`]; `extra` is a ready `k="v"}` label (the closing brace included).
fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<&str>,
    value: Sample,
) {
    out.push_str(name);
    out.push_str(suffix);
    match (labels.is_empty(), extra) {
        (true, None) => {}
        (true, Some(e)) => {
            out.push('{');
            out.push_str(e);
        }
        (false, None) => {
            out.push_str(labels);
            out.push('}');
        }
        (false, Some(e)) => {
            out.push_str(labels);
            out.push(',');
            out.push_str(e);
        }
    }
    out.push(' ');
    match value {
        Sample::Count(n) => write_count(out, n),
        Sample::Float(v) => write_float(out, v),
    }
    out.push('\n');
}

/// `le="<b>"}` for a boundary `b` already in base units.
fn le_label(b: f64) -> String {
    let mut le = String::from("le=\"");
    write_float(&mut le, b);
    le.push_str("\"}");
    le
}

/// Classic boundaries of one (value kind, unit) pair, prepared once per render: the `le`
/// label of each boundary (with the space before the value) and, per scale met, the
/// exponential bucket each boundary falls in.
struct Classic<'a> {
    bounds: &'a [f64],
    integers: bool,
    le: Vec<String>,
    index: Vec<(i8, BoundIndex)>,
}

impl<'a> Classic<'a> {
    fn new(bounds: &'a [f64], integers: bool, unit: Unit) -> Self {
        let to_base = unit.to_base();
        Classic {
            bounds,
            integers,
            le: bounds.iter().map(|b| le_label(b * to_base) + " ").collect(),
            index: Vec::new(),
        }
    }

    fn index(&mut self, scale: i8) -> &BoundIndex {
        let at = match self.index.iter().position(|(s, _)| *s == scale) {
            Some(at) => at,
            None => {
                let idx = BoundIndex::new(scale, self.integers, self.bounds);
                self.index.push((scale, idx));
                self.index.len() - 1
            }
        };
        &self.index[at].1
    }
}

/// Per-render state reused across series.
struct Scratch<'a> {
    classic: Vec<((bool, Unit), Classic<'a>)>,
    counts: Vec<u64>,
    /// `<name>_bucket{<labels>,` of the series being written.
    bucket: String,
}

fn write_histogram<'a>(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &HistogramView<'_>,
    unit: Unit,
    bounds: &'a [f64],
    scratch: &mut Scratch<'a>,
) {
    // With negative observations, the boundaries mirrored below zero come first and there
    // is no `_sum`/`_count` (the `+Inf` bucket is the count): OpenMetrics forbids a negative
    // sum without negative buckets, any sum with them (it would not be a counter), and a
    // count without a sum; strict parsers refuse all three.
    let negative = h.count > 0 && h.min < 0.0;
    if negative {
        let to_base = unit.to_base();
        let mirrored: Vec<f64> = bounds
            .iter()
            .rev()
            .filter(|b| **b > 0.0)
            .map(|b| -b)
            .chain(bounds.iter().copied())
            .collect();
        for (b, n) in mirrored.iter().zip(h.count_le_many(&mirrored)) {
            let le = le_label(b * to_base);
            write_sample(out, name, "_bucket", labels, Some(&le), Sample::Count(n));
        }
    } else {
        let key = (h.integers, unit);
        let at = match scratch.classic.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                scratch
                    .classic
                    .push((key, Classic::new(bounds, h.integers, unit)));
                scratch.classic.len() - 1
            }
        };
        let classic = &mut scratch.classic[at].1;
        // Same options for every histogram of a kind: the slice is the one cached.
        debug_assert!(std::ptr::eq(classic.bounds, bounds));
        let counts = &mut scratch.counts;
        counts.clear();
        h.count_le_indexed(classic.bounds, classic.index(h.scale), counts);
        // The text before `le` is the same on every bucket line of the series.
        let bucket = &mut scratch.bucket;
        bucket.clear();
        bucket.push_str(name);
        bucket.push_str("_bucket");
        if labels.is_empty() {
            bucket.push('{');
        } else {
            bucket.push_str(labels);
            bucket.push(',');
        }
        for (le, &n) in classic.le.iter().zip(counts.iter()) {
            out.push_str(bucket);
            out.push_str(le);
            write_count(out, n);
            out.push('\n');
        }
    }
    write_sample(
        out,
        name,
        "_bucket",
        labels,
        Some("le=\"+Inf\"}"),
        Sample::Count(h.count),
    );
    if !negative {
        let to_base = unit.to_base();
        write_sample(
            out,
            name,
            "_sum",
            labels,
            None,
            Sample::Float(h.sum * to_base),
        );
        write_sample(out, name, "_count", labels, None, Sample::Count(h.count));
    }
}

/// A family's sample type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn of_value(v: &Value) -> Kind {
        match v {
            Value::Counter(_) | Value::FloatCounter(_) => Kind::Counter,
            Value::Gauge(_) => Kind::Gauge,
            Value::Histogram(_) => Kind::Histogram,
        }
    }

    fn of_metric(k: MetricKind) -> Kind {
        match k {
            MetricKind::Counter | MetricKind::FloatCounter => Kind::Counter,
            MetricKind::Gauge => Kind::Gauge,
            MetricKind::Histogram | MetricKind::FloatHistogram => Kind::Histogram,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What grouping needs of a series before its value is read.
struct Head<'s> {
    key: &'s Key,
    unit: Unit,
    kind: Kind,
    /// An integer histogram (its classic boundaries are `integer_buckets`).
    integers: bool,
}

/// Reads the value of series `i` (an index into the heads) when its lines are written.
trait Values {
    fn read(&mut self, i: usize) -> ValueRef<'_>;
}

/// The values of a snapshot.
struct SnapshotValues<'s>(&'s [SeriesSnapshot]);

impl Values for SnapshotValues<'_> {
    fn read(&mut self, i: usize) -> ValueRef<'_> {
        self.0[i].value.as_ref()
    }
}

/// The cumulative values of a registry's series, read one at a time into a scratch.
struct RegistryValues<'s> {
    series: &'s [std::sync::Arc<Series>],
    scratch: CollectScratch,
}

impl Values for RegistryValues<'_> {
    fn read(&mut self, i: usize) -> ValueRef<'_> {
        read_cumulative(&self.series[i], &mut self.scratch)
    }
}

/// Bytes a series' lines take, roughly (to size the output once).
fn estimate(s: &Head<'_>, name_len: usize, opts: &RenderOptions) -> usize {
    let labels: usize = s
        .key
        .labels()
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    let line = name_len + labels + 16;
    match s.kind {
        Kind::Histogram => {
            let bounds = if s.integers {
                opts.integer_buckets.len()
            } else {
                opts.float_buckets.len()
            };
            (bounds + 3) * (line + 24)
        }
        _ => line + 24,
    }
}

/// Renders a snapshot (normally cumulative: Prometheus expects counters since start).
pub fn render(snapshot: &Snapshot, opts: &RenderOptions) -> String {
    let heads = snapshot.series.iter().map(|s| Head {
        key: &s.key,
        unit: s.unit,
        kind: Kind::of_value(&s.value),
        integers: matches!(&s.value, Value::Histogram(h) if h.integers),
    });
    render_from(heads, &mut SnapshotValues(&snapshot.series), opts)
}

/// Renders the cumulative state of `registry`: the same text as
/// `render(&registry.snapshot(), opts)`, without building the snapshot. Each series is
/// read (as the snapshot reads it) when its lines are written, into one scratch reused
/// for every series, so no per-series histogram is allocated.
///
/// ```
/// use abacus::exposition::prometheus::{render, render_registry};
/// let registry = abacus::Registry::new();
/// registry.record_latency("api", 12);
/// let opts = Default::default();
/// assert_eq!(render_registry(&registry, &opts), render(&registry.snapshot(), &opts));
/// ```
pub fn render_registry(registry: &Registry, opts: &RenderOptions) -> String {
    let (series, scratch) = registry.cumulative_walk();
    let heads = series.iter().map(|s| Head {
        key: &s.key,
        unit: s.unit,
        kind: Kind::of_metric(s.kind),
        integers: s.kind == MetricKind::Histogram,
    });
    let mut values = RegistryValues {
        series: &series,
        scratch,
    };
    render_from(heads, &mut values, opts)
}

/// Renders series `heads` (in order), reading their values from `values`.
fn render_from<'s>(
    heads: impl Iterator<Item = Head<'s>>,
    values: &mut impl Values,
    opts: &RenderOptions,
) -> String {
    // Group by sanitised family name so each family's samples are contiguous and its TYPE
    // line appears once, even when two raw names sanitise to the same family. The family
    // name is computed once per (raw name, unit, counter or not), not once per series.
    type RawFamily<'s> = (&'s str, Unit, bool);
    let mut by_raw: HashMap<RawFamily<'_>, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    // Per family: name, kind of its first series, and its series as (index, head).
    type Family<'s> = (String, Kind, Vec<(usize, Head<'s>)>);
    let mut families: Vec<Family<'s>> = Vec::new();
    let mut capacity = 16;
    for (i, s) in heads.enumerate() {
        let counter = s.kind == Kind::Counter;
        let slot = *by_raw
            .entry((s.key.name(), s.unit, counter))
            .or_insert_with(|| {
                let name = family_name_of(s.key.name(), s.unit, counter, &opts.prefix);
                *by_name.entry(name.clone()).or_insert_with(|| {
                    families.push((name, s.kind, Vec::new()));
                    families.len() - 1
                })
            });
        let family = &mut families[slot];
        capacity += estimate(&s, family.0.len(), opts);
        family.2.push((i, s));
    }
    let mut out = String::with_capacity(capacity);
    let mut labels = String::new();
    let mut scratch = Scratch {
        classic: Vec::new(),
        counts: Vec::new(),
        bucket: String::new(),
    };
    for &slot in by_name.values() {
        let (name, kind, series) = &families[slot];
        let kind = *kind;
        out.push_str("# TYPE ");
        out.push_str(name);
        if kind == Kind::Counter && opts.format == Format::Text004 {
            out.push_str("_total");
        }
        out.push(' ');
        out.push_str(kind.as_str());
        out.push('\n');
        for (i, s) in series {
            // A series whose kind differs from its family's first series would make the
            // family invalid; skip it (the registry refuses such kind conflicts anyway,
            // this only happens when two raw names sanitise to one family).
            if s.kind != kind {
                continue;
            }
            label_prefix_into(s.key, &mut labels);
            match values.read(*i) {
                ValueRef::Counter(n) => {
                    write_sample(&mut out, name, "_total", &labels, None, Sample::Count(n))
                }
                ValueRef::FloatCounter(x) => {
                    write_sample(&mut out, name, "_total", &labels, None, Sample::Float(x))
                }
                ValueRef::Gauge(v) => {
                    write_sample(&mut out, name, "", &labels, None, Sample::Float(v))
                }
                ValueRef::Histogram(h) => {
                    let bounds = if h.integers {
                        &opts.integer_buckets
                    } else {
                        &opts.float_buckets
                    };
                    write_histogram(&mut out, name, &labels, &h, s.unit, bounds, &mut scratch);
                }
            }
        }
    }
    if opts.format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    //! The renderer against the previous one, kept here verbatim as the reference: the
    //! output must be byte for byte the same.

    use super::*;
    use crate::histogram::HistogramSnapshot;
    use crate::key::Key;
    use crate::registry::MetricKind;
    use proptest::prelude::*;

    mod reference {
        use super::super::{Format, RenderOptions, escape_label_value, family_name, label_name};
        use crate::histogram::HistogramSnapshot;
        use crate::snapshot::{SeriesSnapshot, Snapshot, Unit, Value};
        use std::collections::BTreeMap;
        use std::fmt::Write;

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
        pub(super) fn render(snapshot: &Snapshot, opts: &RenderOptions) -> String {
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
    }

    const NAMES: [&str; 8] = [
        "latency",
        "requests_total",
        "9lives",
        "a.b-c",
        "",
        "latency_seconds",
        "x:y",
        "é",
    ];
    const LABEL_NAMES: [&str; 6] = ["service", "__meta", "a.b", "0x", "le_", "Ünï"];
    const LABEL_VALUES: [&str; 6] = ["api", "we\"ird", "back\\slash", "new\nline", "", "ünï"];

    fn histogram(values: &[i64], float: bool, big: bool) -> HistogramSnapshot {
        let r = crate::Registry::new();
        for &v in values {
            if float {
                r.record_f64("h", &[], v as f64 / 16.0);
            } else {
                r.record("h", &[], v.unsigned_abs());
            }
        }
        let mut h = r
            .snapshot()
            .histogram("h", &[])
            .cloned()
            .unwrap_or_else(|| HistogramSnapshot::empty(4, !float));
        if big {
            // Counts past 2^53, where the text is the `f64`'s.
            for b in &mut h.positive {
                b.1 = b.1.saturating_mul(1 << 53).saturating_add(7);
            }
            h.count = h
                .positive
                .iter()
                .chain(&h.negative)
                .fold(h.zero_count, |a, b| a.saturating_add(b.1));
        }
        h
    }

    fn value() -> impl Strategy<Value = (MetricKind, Value)> {
        prop_oneof![
            prop_oneof![any::<u64>(), 0u64..1000]
                .prop_map(|n| (MetricKind::Counter, Value::Counter(n))),
            any::<f64>().prop_map(|x| (MetricKind::FloatCounter, Value::FloatCounter(x))),
            prop_oneof![any::<f64>(), -10.0f64..10.0]
                .prop_map(|x| (MetricKind::Gauge, Value::Gauge(x))),
            (
                prop::collection::vec(prop_oneof![-5000i64..5000, 0i64..100], 0..200),
                any::<bool>(),
                prop::bool::weighted(0.1)
            )
                .prop_map(|(vs, float, big)| {
                    let kind = if float {
                        MetricKind::FloatHistogram
                    } else {
                        MetricKind::Histogram
                    };
                    (kind, Value::Histogram(histogram(&vs, float, big)))
                }),
        ]
    }

    fn series() -> impl Strategy<Value = SeriesSnapshot> {
        (
            0..NAMES.len(),
            prop::collection::vec((0..LABEL_NAMES.len(), 0..LABEL_VALUES.len()), 0..3),
            0..4usize,
            value(),
        )
            .prop_map(|(name, labels, unit, (kind, value))| {
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|&(k, v)| (LABEL_NAMES[k], LABEL_VALUES[v]))
                    .collect();
                SeriesSnapshot {
                    key: Key::new(NAMES[name], &labels),
                    kind,
                    unit: [Unit::None, Unit::Milliseconds, Unit::Seconds, Unit::Bytes][unit],
                    value,
                }
            })
    }

    fn options() -> impl Strategy<Value = RenderOptions> {
        (
            prop_oneof![
                Just(RenderOptions::default().integer_buckets),
                prop::collection::vec(
                    prop_oneof![
                        1.0f64..10_000.0,
                        (0u32..20).prop_map(|e| f64::from(1u32 << e))
                    ],
                    0..20
                ),
            ],
            prop_oneof![
                Just(RenderOptions::default().float_buckets),
                prop::collection::vec(-100.0f64..100.0, 0..20),
            ],
            any::<bool>(),
            prop_oneof![
                Just(String::new()),
                Just("app_".to_owned()),
                Just("9.x".to_owned())
            ],
        )
            .prop_map(|(mut integer_buckets, mut float_buckets, om, prefix)| {
                integer_buckets.sort_by(f64::total_cmp);
                float_buckets.sort_by(f64::total_cmp);
                RenderOptions {
                    integer_buckets,
                    float_buckets,
                    format: if om {
                        Format::OpenMetrics
                    } else {
                        Format::Text004
                    },
                    prefix,
                }
            })
    }

    /// One write into a registry: (name, labels, unit, what).
    #[derive(Clone, Debug)]
    enum Op {
        Counter(u64),
        FloatCounter(f64),
        Gauge(f64),
        /// Integer samples `(value, weight)`.
        Histogram(Vec<(u64, u64)>),
        /// Float samples `(value, weight)` (negative and tiny values included).
        FloatHistogram(Vec<(f64, u64)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let weight = prop_oneof![
            8 => Just(1u64),
            1 => 1u64..1000,
            // Buckets past 2^40 (the dense path's limit) and sums saturating u64.
            1 => prop_oneof![Just(1u64 << 40), Just(u64::MAX / 3), Just(u64::MAX)],
        ];
        prop_oneof![
            prop_oneof![any::<u64>(), 0u64..1000].prop_map(Op::Counter),
            (-1e6f64..1e6).prop_map(Op::FloatCounter),
            prop_oneof![any::<f64>(), -10.0f64..10.0].prop_map(Op::Gauge),
            prop::collection::vec(
                (
                    prop_oneof![0u64..100, 0u64..100_000, any::<u64>()],
                    weight.clone()
                ),
                0..60
            )
            .prop_map(Op::Histogram),
            prop::collection::vec(
                (
                    prop_oneof![
                        -100.0f64..100.0,
                        0.0f64..1.0,
                        Just(0.0),
                        Just(-1e-300),
                        Just(1e300),
                        -1e40f64..1e40
                    ],
                    weight
                ),
                0..60
            )
            .prop_map(Op::FloatHistogram),
        ]
    }

    fn apply(r: &crate::Registry, name: &str, labels: &[(&str, &str)], unit: Unit, op: &Op) {
        match op {
            Op::Counter(n) => r.increment_counter(name, labels, *n),
            Op::FloatCounter(x) => r.add_counter_f64(name, labels, *x),
            Op::Gauge(v) => r.set_gauge(name, labels, *v),
            Op::Histogram(samples) => {
                let h = r.histogram_with_unit(name, labels, unit);
                for &(v, n) in samples {
                    h.record_n(v, n);
                }
            }
            Op::FloatHistogram(samples) => {
                let h = r.float_histogram_with_unit(name, labels, unit);
                for &(v, n) in samples {
                    h.record_f64_n(v, n);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn output_is_the_reference_output(
            series in prop::collection::vec(series(), 0..12),
            opts in options(),
        ) {
            let snapshot = Snapshot {
                start: std::time::SystemTime::UNIX_EPOCH,
                end: std::time::SystemTime::UNIX_EPOCH,
                series,
            };
            prop_assert_eq!(render(&snapshot, &opts), reference::render(&snapshot, &opts));
        }

        /// `render_registry` (no snapshot; dense histogram views, and sparse ones for
        /// negative or huge counts) against the reference rendering of the snapshot.
        #[test]
        fn registry_output_is_the_reference_output(
            ops in prop::collection::vec(
                (
                    0..NAMES.len(),
                    prop::collection::vec((0..LABEL_NAMES.len(), 0..LABEL_VALUES.len()), 0..3),
                    0..4usize,
                    op(),
                ),
                0..16,
            ),
            scale in prop_oneof![Just(4u8), 0u8..9],
            opts in options(),
        ) {
            let r = crate::Registry::builder().scale(scale).build().expect("valid config");
            for (name, labels, unit, op) in &ops {
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|&(k, v)| (LABEL_NAMES[k], LABEL_VALUES[v]))
                    .collect();
                let unit = [Unit::None, Unit::Milliseconds, Unit::Seconds, Unit::Bytes][*unit];
                apply(&r, NAMES[*name], &labels, unit, op);
            }
            let expected = reference::render(&r.snapshot(), &opts);
            prop_assert_eq!(&render_registry(&r, &opts), &expected);
            // Twice: the scratch of the first call is gone, the registry is unchanged.
            prop_assert_eq!(&render_registry(&r, &opts), &expected);
            prop_assert_eq!(&render(&r.snapshot(), &opts), &expected);
        }

        #[test]
        fn counts_are_written_as_their_f64(n in prop_oneof![any::<u64>(), 0u64..1 << 54, (1u64 << 53) - 3..(1u64 << 53) + 3]) {
            let mut fast = String::new();
            write_count(&mut fast, n);
            prop_assert_eq!(fast, format!("{}", n as f64));
        }
    }
}
