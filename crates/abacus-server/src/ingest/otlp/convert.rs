//! `ExportMetricsServiceRequest` → [`Sample`]s.
//!
//! # Mapping
//!
//! | OTLP | temporality | sample |
//! |---|---|---|
//! | Gauge | – | [`SampleValue::Gauge`] |
//! | Sum, monotonic | DELTA | [`SampleValue::Counter`] (negative → rejected) |
//! | Sum, monotonic | CUMULATIVE | delta via [`CumulativeToDelta`] → [`SampleValue::Counter`] |
//! | Sum, non-monotonic | DELTA | [`SampleValue::GaugeAdd`] |
//! | Sum, non-monotonic | CUMULATIVE | [`SampleValue::Gauge`] (the value *is* the current level) |
//! | Histogram | DELTA / CUMULATIVE (→ delta) | [`SampleValue::ExplicitHistogram`] |
//! | ExponentialHistogram | DELTA / CUMULATIVE (→ delta) | [`SampleValue::ExpHistogram`] |
//! | Summary | – | gauges `<name>_sum`, `<name>_count`, and `<name>{quantile="q"}` per quantile |
//!
//! Points with `AGGREGATION_TEMPORALITY_UNSPECIFIED` are rejected. Points
//! flagged `NO_RECORDED_VALUE` (staleness markers) are skipped silently (not
//! counted as rejected). Cumulative points that only establish a baseline or
//! are stale produce no sample and are not rejected; points refused because
//! the stream table is full *are* counted as rejected. Exemplars are ignored.
//! `asInt` values are converted to `f64` (exact up to 2^53).
//!
//! Summary quantile labels use Rust's shortest round-trip `f64` formatting
//! (`0.99`, `0.5`, `1`), the same as the Prometheus text format for these
//! values. Summary gauges are absolute values (summaries are not deltas).
//!
//! # Names and labels
//!
//! * Metric names are sanitised with
//!   [`sanitize_metric_name`]: `.`, `-`,
//!   `/` etc. become `_` (`http.server.duration` → `http_server_duration`).
//!   No unit suffix is appended. Empty or (after sanitisation) too long names
//!   reject all points of the metric.
//! * The resource attribute `service.name` becomes the label `service`. Other
//!   resource attributes are *not* turned into labels (they are
//!   high-cardinality, e.g. `process.pid`), but they do identify streams for
//!   the cumulative→delta state. Scope attributes are ignored.
//! * Data point attributes become labels with sanitised keys (`http.method`
//!   → `http_method`); a point attribute named `service` overrides the
//!   resource's. Values are stringified: strings as-is, ints in decimal,
//!   bools `true`/`false`, doubles with shortest round-trip formatting, bytes
//!   as lowercase hex, an empty value as `""`, and arrays / kvlists as compact
//!   JSON (`["a",1]`, `{"k":"v"}`). A key that sanitises to a reserved
//!   `__`-prefixed or empty name, or any label limit violation, rejects the
//!   point; so does the label `le` on a histogram point.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, ExponentialHistogramDataPoint, HistogramDataPoint,
    Metric, NumberDataPoint, SummaryDataPoint, exponential_histogram_data_point, metric,
    number_data_point,
};

use super::temporality::{
    CumulativePoint, CumulativeToDelta, CumulativeValue, DeltaOutcome, StreamKey, StreamKind,
};
use crate::ingest::{
    ExpBuckets, ExpHistogramDelta, ExplicitHistogramDelta, LabelRefs, Limits, Sample, SampleValue,
    check_histogram_label_refs, label_name_is_sanitized, normalize_label_refs, normalize_labels,
    sanitize_label_name, sanitize_metric_name,
};

/// Label that receives the resource attribute `service.name`.
pub const SERVICE_LABEL: &str = "service";
/// Resource attribute mapped to [`SERVICE_LABEL`].
pub const SERVICE_NAME_ATTRIBUTE: &str = "service.name";
/// At most this many distinct error messages are kept in [`ConvertOutput`].
pub const MAX_ERROR_MESSAGES: usize = 10;

/// Conversion configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertConfig {
    /// Name / label limits.
    pub limits: Limits,
    /// Maximum buckets per explicit histogram point or per side of an
    /// exponential histogram point. Default 4096.
    pub max_buckets: usize,
}

impl Default for ConvertConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_buckets: 4096,
        }
    }
}

/// Result of [`convert_request`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvertOutput {
    /// Accepted samples in input order.
    pub samples: Vec<Sample>,
    /// Number of rejected data points (for `partial_success.rejected_data_points`).
    pub rejected_data_points: u64,
    /// The first [`MAX_ERROR_MESSAGES`] rejection messages.
    pub errors: Vec<String>,
}

impl ConvertOutput {
    /// Message for `partial_success.error_message`: empty when nothing was
    /// rejected.
    #[must_use]
    pub fn error_message(&self) -> String {
        if self.rejected_data_points == 0 && self.errors.is_empty() {
            return String::new();
        }
        format!(
            "{} data point(s) rejected: {}",
            self.rejected_data_points,
            self.errors.join("; ")
        )
    }

    fn reject(&mut self, points: usize, message: impl FnOnce() -> String) {
        self.rejected_data_points = self.rejected_data_points.saturating_add(points as u64);
        if self.errors.len() < MAX_ERROR_MESSAGES {
            self.errors.push(message());
        }
    }
}

/// Receives the samples of a conversion as they are produced, in input order.
pub trait SampleSink {
    /// One accepted sample; `labels` are normalised (sorted by name, names unique).
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: SampleValue);
}

/// Collects owned [`Sample`]s (what [`convert_request`] returns).
impl SampleSink for Vec<Sample> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: SampleValue) {
        self.push(Sample::from_refs(name, labels, value));
    }
}

/// Stringify an OTLP attribute value (see module docs).
#[must_use]
pub fn any_value_to_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(other @ (any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))) => {
            any_to_json(Some(other)).to_string()
        }
        // Any future variant: stringify its debug form rather than fail.
        #[allow(unreachable_patterns)]
        Some(other) => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn any_to_json(v: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => J::from(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::from(d.to_string()), J::Number)
        }
        Some(any_value::Value::BytesValue(b)) => J::from(hex(b)),
        Some(any_value::Value::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|v| any_to_json(v.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        any_to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
        #[allow(unreachable_patterns)]
        Some(other) => J::from(format!("{other:?}")),
    }
}

fn stringify_attributes(attrs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = attrs
        .iter()
        .map(|kv| (kv.key.clone(), any_value_to_string(kv.value.as_ref())))
        .collect();
    out.sort();
    out
}

/// Context shared by the points of one metric.
struct MetricCtx<'a> {
    name: String,
    raw_name: &'a str,
    service: Option<&'a str>,
    resource: &'a [(String, String)],
    scope_name: &'a str,
    scope_version: &'a str,
}

impl MetricCtx<'_> {
    fn labels(&self, attrs: &[KeyValue], limits: &Limits) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::with_capacity(attrs.len() + 1);
        if let Some(s) = self.service {
            labels.push((SERVICE_LABEL.to_owned(), s.to_owned()));
        }
        for kv in attrs {
            labels.push((
                sanitize_label_name(&kv.key),
                any_value_to_string(kv.value.as_ref()),
            ));
        }
        normalize_labels(labels, limits).map_err(|e| format!("metric {:?}: {e}", self.raw_name))
    }

    fn key(&self, kind: StreamKind, attrs: &[KeyValue]) -> StreamKey {
        StreamKey {
            kind,
            resource: self.resource.to_vec(),
            scope_name: self.scope_name.to_owned(),
            scope_version: self.scope_version.to_owned(),
            metric: self.raw_name.to_owned(),
            attributes: stringify_attributes(attrs),
        }
    }

    fn err(&self, msg: &str) -> String {
        format!("metric {:?}: {msg}", self.raw_name)
    }
}

/// At most this many sanitised attribute keys are remembered per request (keys that need
/// sanitising past that are sanitised per point).
const MAX_MEMO_KEYS: usize = 64;

/// Where one label name or value of the current point comes from.
#[derive(Clone, Copy)]
enum Src {
    /// `attrs[i].key`, already a valid label name.
    AttrKey(usize),
    /// `attrs[i]`'s string value.
    AttrStr(usize),
    /// A sanitised key remembered for the request.
    Memo(usize),
    /// A string made for this point.
    Scratch(usize),
    /// [`SERVICE_LABEL`].
    ServiceKey,
    /// The resource's `service.name`.
    Service,
}

/// Builds the labels of a point as borrowed strings: attribute keys that are valid label
/// names and string values are borrowed from the request, sanitised keys are made once per
/// request, and only other values (ints, bools, ...) are stringified per point. Same
/// labels as [`MetricCtx::labels`].
#[derive(Default)]
struct Labeler {
    /// `(raw key, sanitised key)` of the request's keys that needed sanitising.
    keys: Vec<(String, String)>,
    /// Strings made for the current point.
    scratch: Vec<String>,
    srcs: Vec<(Src, Src)>,
}

impl Labeler {
    /// First step for a point: work out where every label comes from.
    fn prepare(&mut self, service: bool, attrs: &[KeyValue]) {
        self.scratch.clear();
        self.srcs.clear();
        if service {
            self.srcs.push((Src::ServiceKey, Src::Service));
        }
        for (i, kv) in attrs.iter().enumerate() {
            let key = if label_name_is_sanitized(&kv.key) {
                Src::AttrKey(i)
            } else if let Some(j) = self.keys.iter().position(|(raw, _)| *raw == kv.key) {
                Src::Memo(j)
            } else if self.keys.len() < MAX_MEMO_KEYS {
                self.keys
                    .push((kv.key.clone(), sanitize_label_name(&kv.key)));
                Src::Memo(self.keys.len() - 1)
            } else {
                self.scratch.push(sanitize_label_name(&kv.key));
                Src::Scratch(self.scratch.len() - 1)
            };
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(_)) => Src::AttrStr(i),
                _ => {
                    self.scratch.push(any_value_to_string(kv.value.as_ref()));
                    Src::Scratch(self.scratch.len() - 1)
                }
            };
            self.srcs.push((key, value));
        }
    }

    /// Second step: the normalised labels of the point [`Labeler::prepare`] saw.
    fn labels<'x>(
        &'x self,
        ctx: &MetricCtx<'x>,
        attrs: &'x [KeyValue],
        limits: &Limits,
    ) -> Result<LabelRefs<'x>, String> {
        let get = |src: Src| -> &'x str {
            match src {
                Src::AttrKey(i) => &attrs[i].key,
                Src::AttrStr(i) => match attrs[i].value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s,
                    _ => "",
                },
                Src::Memo(j) => &self.keys[j].1,
                Src::Scratch(j) => &self.scratch[j],
                Src::ServiceKey => SERVICE_LABEL,
                Src::Service => ctx.service.unwrap_or_default(),
            }
        };
        let mut labels: LabelRefs<'x> = self.srcs.iter().map(|&(k, v)| (get(k), get(v))).collect();
        normalize_label_refs(&mut labels, limits)
            .map_err(|e| format!("metric {:?}: {e}", ctx.raw_name))?;
        Ok(labels)
    }
}

fn refs(labels: &[(String, String)]) -> LabelRefs<'_> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn no_recorded_value(flags: u32) -> bool {
    flags & (DataPointFlags::NoRecordedValueMask as u32) != 0
}

#[allow(clippy::cast_precision_loss)]
fn number_value(p: &NumberDataPoint) -> Result<f64, &'static str> {
    let v = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => return Err("data point has no value"),
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err("value is not finite")
    }
}

fn finite_opt(v: Option<f64>, what: &str) -> Result<Option<f64>, String> {
    match v {
        Some(x) if !x.is_finite() => Err(format!("{what} is not finite")),
        other => Ok(other),
    }
}

fn explicit_from_point(
    p: &HistogramDataPoint,
    max_buckets: usize,
) -> Result<ExplicitHistogramDelta, String> {
    if p.bucket_counts.len() > max_buckets {
        return Err(format!("more than {max_buckets} buckets"));
    }
    if !p.bucket_counts.is_empty() || !p.explicit_bounds.is_empty() {
        if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            return Err("bucket_counts must have explicit_bounds + 1 entries".to_owned());
        }
        if p.explicit_bounds.iter().any(|b| !b.is_finite()) {
            return Err("explicit bounds must be finite".to_owned());
        }
        if p.explicit_bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err("explicit bounds must be strictly increasing".to_owned());
        }
        let total = p
            .bucket_counts
            .iter()
            .try_fold(0u64, |a, c| a.checked_add(*c))
            .ok_or("bucket counts overflow")?;
        if total != p.count {
            return Err(format!(
                "count {} does not equal the sum of bucket counts {total}",
                p.count
            ));
        }
    }
    Ok(ExplicitHistogramDelta {
        bounds: p.explicit_bounds.clone(),
        counts: p.bucket_counts.clone(),
        count: p.count,
        sum: finite_opt(p.sum, "sum")?,
        min: finite_opt(p.min, "min")?,
        max: finite_opt(p.max, "max")?,
    })
}

fn buckets(
    b: Option<&exponential_histogram_data_point::Buckets>,
    max_buckets: usize,
) -> Result<ExpBuckets, String> {
    let Some(b) = b else {
        return Ok(ExpBuckets::default());
    };
    if b.bucket_counts.len() > max_buckets {
        return Err(format!("more than {max_buckets} buckets"));
    }
    let last = i64::from(b.offset) + b.bucket_counts.len() as i64;
    if last > i64::from(i32::MAX) {
        return Err("bucket index overflows i32".to_owned());
    }
    Ok(ExpBuckets {
        offset: b.offset,
        counts: b.bucket_counts.clone(),
    })
}

fn exp_from_point(
    p: &ExponentialHistogramDataPoint,
    max_buckets: usize,
) -> Result<ExpHistogramDelta, String> {
    if !(-10..=20).contains(&p.scale) {
        return Err(format!("scale {} outside -10..=20", p.scale));
    }
    if !p.zero_threshold.is_finite() || p.zero_threshold < 0.0 {
        return Err("zero_threshold must be finite and >= 0".to_owned());
    }
    let positive = buckets(p.positive.as_ref(), max_buckets)?;
    let negative = buckets(p.negative.as_ref(), max_buckets)?;
    let total = positive
        .total()
        .and_then(|t| t.checked_add(negative.total()?))
        .and_then(|t| t.checked_add(p.zero_count))
        .ok_or("bucket counts overflow")?;
    if total != p.count {
        return Err(format!(
            "count {} does not equal zero_count + bucket counts {total}",
            p.count
        ));
    }
    Ok(ExpHistogramDelta {
        scale: p.scale,
        zero_count: p.zero_count,
        zero_threshold: p.zero_threshold,
        positive,
        negative,
        count: p.count,
        sum: finite_opt(p.sum, "sum")?,
        min: finite_opt(p.min, "min")?,
        max: finite_opt(p.max, "max")?,
    })
}

/// How to handle a temporality value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Temporality {
    Delta,
    Cumulative,
}

fn temporality(t: i32) -> Option<Temporality> {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => Some(Temporality::Delta),
        Ok(AggregationTemporality::Cumulative) => Some(Temporality::Cumulative),
        _ => None,
    }
}

/// The cumulative→delta table of one conversion: borrowed for the whole request, or a
/// shared table locked at the request's first cumulative point and held to its end (a
/// request of DELTA points only never takes the lock, so such requests convert in
/// parallel).
enum Tracker<'a> {
    Owned(&'a mut CumulativeToDelta),
    Shared {
        table: &'a Mutex<CumulativeToDelta>,
        guard: Option<MutexGuard<'a, CumulativeToDelta>>,
    },
}

impl Tracker<'_> {
    fn get(&mut self) -> &mut CumulativeToDelta {
        match self {
            Tracker::Owned(t) => t,
            Tracker::Shared { table, guard } => {
                guard.get_or_insert_with(|| table.lock().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }
}

/// Turns a cumulative point of a stream into its delta (`None`: nothing to apply yet).
fn cumulative(
    tracker: &mut Tracker<'_>,
    ctx: &MetricCtx<'_>,
    kind: StreamKind,
    attrs: &[KeyValue],
    (start_time_unix_nano, time_unix_nano): (u64, u64),
    value: CumulativeValue,
) -> Result<Option<CumulativeValue>, String> {
    let key = ctx.key(kind, attrs);
    let point = CumulativePoint {
        start_time_unix_nano,
        time_unix_nano,
        value,
    };
    match tracker.get().update(&key, point) {
        DeltaOutcome::Delta(v) => Ok(Some(v)),
        DeltaOutcome::Baseline | DeltaOutcome::Stale => Ok(None),
        DeltaOutcome::Refused => Err(ctx.err("too many cumulative streams, point refused")),
    }
}

struct Converter<'a, S: SampleSink> {
    tracker: Tracker<'a>,
    config: &'a ConvertConfig,
    out: ConvertOutput,
    labeler: Labeler,
    sink: &'a mut S,
}

impl<S: SampleSink> Converter<'_, S> {
    fn metric(&mut self, ctx: &MetricCtx<'_>, m: &Metric) {
        match &m.data {
            None => self.out.reject(0, || {
                ctx.err("metric has no data (or malformed data in OTLP/JSON)")
            }),
            Some(metric::Data::Gauge(g)) => {
                for p in &g.data_points {
                    let r = self.gauge_point(ctx, p);
                    self.settle(r);
                }
            }
            Some(metric::Data::Sum(s)) => {
                let t = temporality(s.aggregation_temporality);
                for p in &s.data_points {
                    let r = self.sum_point(ctx, p, t, s.is_monotonic);
                    self.settle(r);
                }
            }
            Some(metric::Data::Histogram(h)) => {
                let t = temporality(h.aggregation_temporality);
                for p in &h.data_points {
                    let r = self.histogram_point(ctx, p, t);
                    self.settle(r);
                }
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                let t = temporality(h.aggregation_temporality);
                for p in &h.data_points {
                    let r = self.exp_point(ctx, p, t);
                    self.settle(r);
                }
            }
            Some(metric::Data::Summary(s)) => {
                for p in &s.data_points {
                    let r = self.summary_point(ctx, p);
                    self.settle(r);
                }
            }
        }
    }

    fn settle(&mut self, r: Result<(), String>) {
        if let Err(msg) = r {
            self.out.reject(1, || msg);
        }
    }

    fn gauge_point(&mut self, ctx: &MetricCtx<'_>, p: &NumberDataPoint) -> Result<(), String> {
        if no_recorded_value(p.flags) {
            return Ok(());
        }
        let v = number_value(p).map_err(|e| ctx.err(e))?;
        self.labeler.prepare(ctx.service.is_some(), &p.attributes);
        let labels = self
            .labeler
            .labels(ctx, &p.attributes, &self.config.limits)?;
        self.sink.sample(&ctx.name, &labels, SampleValue::Gauge(v));
        Ok(())
    }

    fn sum_point(
        &mut self,
        ctx: &MetricCtx<'_>,
        p: &NumberDataPoint,
        t: Option<Temporality>,
        monotonic: bool,
    ) -> Result<(), String> {
        if no_recorded_value(p.flags) {
            return Ok(());
        }
        let t = t.ok_or_else(|| ctx.err("aggregation temporality unspecified"))?;
        let v = number_value(p).map_err(|e| ctx.err(e))?;
        self.labeler.prepare(ctx.service.is_some(), &p.attributes);
        let labels = self
            .labeler
            .labels(ctx, &p.attributes, &self.config.limits)?;
        let value = match (t, monotonic) {
            (Temporality::Delta, true) => {
                if v < 0.0 {
                    return Err(ctx.err("monotonic delta sum is negative"));
                }
                SampleValue::Counter(v + 0.0)
            }
            (Temporality::Delta, false) => SampleValue::GaugeAdd(v),
            (Temporality::Cumulative, false) => SampleValue::Gauge(v),
            (Temporality::Cumulative, true) => {
                if v < 0.0 {
                    return Err(ctx.err("monotonic cumulative sum is negative"));
                }
                let times = (p.start_time_unix_nano, p.time_unix_nano);
                match cumulative(
                    &mut self.tracker,
                    ctx,
                    StreamKind::Sum,
                    &p.attributes,
                    times,
                    CumulativeValue::Sum(v),
                )? {
                    Some(CumulativeValue::Sum(d)) => SampleValue::Counter(d),
                    _ => return Ok(()),
                }
            }
        };
        self.sink.sample(&ctx.name, &labels, value);
        Ok(())
    }

    fn histogram_point(
        &mut self,
        ctx: &MetricCtx<'_>,
        p: &HistogramDataPoint,
        t: Option<Temporality>,
    ) -> Result<(), String> {
        if no_recorded_value(p.flags) {
            return Ok(());
        }
        let t = t.ok_or_else(|| ctx.err("aggregation temporality unspecified"))?;
        let h = explicit_from_point(p, self.config.max_buckets).map_err(|e| ctx.err(&e))?;
        self.labeler.prepare(ctx.service.is_some(), &p.attributes);
        let labels = self
            .labeler
            .labels(ctx, &p.attributes, &self.config.limits)?;
        check_histogram_label_refs(&labels).map_err(|e| ctx.err(&e.to_string()))?;
        let h = match t {
            Temporality::Delta => h,
            Temporality::Cumulative => {
                let times = (p.start_time_unix_nano, p.time_unix_nano);
                match cumulative(
                    &mut self.tracker,
                    ctx,
                    StreamKind::Histogram,
                    &p.attributes,
                    times,
                    CumulativeValue::Histogram(h),
                )? {
                    Some(CumulativeValue::Histogram(d)) => d,
                    _ => return Ok(()),
                }
            }
        };
        self.sink
            .sample(&ctx.name, &labels, SampleValue::ExplicitHistogram(h));
        Ok(())
    }

    fn exp_point(
        &mut self,
        ctx: &MetricCtx<'_>,
        p: &ExponentialHistogramDataPoint,
        t: Option<Temporality>,
    ) -> Result<(), String> {
        if no_recorded_value(p.flags) {
            return Ok(());
        }
        let t = t.ok_or_else(|| ctx.err("aggregation temporality unspecified"))?;
        let h = exp_from_point(p, self.config.max_buckets).map_err(|e| ctx.err(&e))?;
        self.labeler.prepare(ctx.service.is_some(), &p.attributes);
        let labels = self
            .labeler
            .labels(ctx, &p.attributes, &self.config.limits)?;
        check_histogram_label_refs(&labels).map_err(|e| ctx.err(&e.to_string()))?;
        let h = match t {
            Temporality::Delta => h,
            Temporality::Cumulative => {
                let times = (p.start_time_unix_nano, p.time_unix_nano);
                match cumulative(
                    &mut self.tracker,
                    ctx,
                    StreamKind::ExpHistogram,
                    &p.attributes,
                    times,
                    CumulativeValue::ExpHistogram(h),
                )? {
                    Some(CumulativeValue::ExpHistogram(d)) => d,
                    _ => return Ok(()),
                }
            }
        };
        self.sink
            .sample(&ctx.name, &labels, SampleValue::ExpHistogram(h));
        Ok(())
    }

    #[allow(clippy::cast_precision_loss)]
    fn summary_point(&mut self, ctx: &MetricCtx<'_>, p: &SummaryDataPoint) -> Result<(), String> {
        if no_recorded_value(p.flags) {
            return Ok(());
        }
        if !p.sum.is_finite() {
            return Err(ctx.err("summary sum is not finite"));
        }
        for q in &p.quantile_values {
            if !(0.0..=1.0).contains(&q.quantile) || !q.value.is_finite() {
                return Err(ctx.err("summary quantile outside [0, 1] or value not finite"));
            }
        }
        let limits = &self.config.limits;
        let sum_name = format!("{}_sum", ctx.name);
        let count_name = format!("{}_count", ctx.name);
        if sum_name.len() > limits.max_name_len || count_name.len() > limits.max_name_len {
            return Err(ctx.err("name too long for _sum/_count suffix"));
        }
        let labels = ctx.labels(&p.attributes, limits)?;
        let mut quantiles = Vec::with_capacity(p.quantile_values.len());
        for q in &p.quantile_values {
            let mut l = labels.clone();
            l.push(("quantile".to_owned(), q.quantile.to_string()));
            let l = normalize_labels(l, limits).map_err(|e| ctx.err(&e.to_string()))?;
            quantiles.push((l, q.value));
        }
        self.sink
            .sample(&sum_name, &refs(&labels), SampleValue::Gauge(p.sum));
        self.sink.sample(
            &count_name,
            &refs(&labels),
            SampleValue::Gauge(p.count as f64),
        );
        for (l, v) in &quantiles {
            self.sink
                .sample(&ctx.name, &refs(l), SampleValue::Gauge(*v));
        }
        Ok(())
    }
}

fn point_count(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    }
}

/// Convert a whole export request. Cumulative streams go through `tracker`.
/// Never fails as a whole: invalid points are counted in
/// [`ConvertOutput::rejected_data_points`] (OTLP partial success).
pub fn convert_request(
    req: &ExportMetricsServiceRequest,
    tracker: &mut CumulativeToDelta,
    config: &ConvertConfig,
) -> ConvertOutput {
    let mut samples = Vec::new();
    let mut out = convert(req, Tracker::Owned(tracker), config, &mut samples);
    out.samples = samples;
    out
}

/// [`convert_request`] with a table shared between concurrent requests: locked only from
/// the first cumulative point of `req` to the end of the conversion.
pub fn convert_request_shared(
    req: &ExportMetricsServiceRequest,
    tracker: &Mutex<CumulativeToDelta>,
    config: &ConvertConfig,
) -> ConvertOutput {
    let mut samples = Vec::new();
    let mut out = convert_request_shared_into(req, tracker, config, &mut samples);
    out.samples = samples;
    out
}

/// [`convert_request_shared`] handing each sample to `sink` as soon as it is converted
/// instead of collecting them (the returned [`ConvertOutput::samples`] is empty). The
/// table's lock, once taken, is held while `sink` runs, up to the end of the request.
pub fn convert_request_shared_into<S: SampleSink>(
    req: &ExportMetricsServiceRequest,
    tracker: &Mutex<CumulativeToDelta>,
    config: &ConvertConfig,
    sink: &mut S,
) -> ConvertOutput {
    let tracker = Tracker::Shared {
        table: tracker,
        guard: None,
    };
    convert(req, tracker, config, sink)
}

fn convert<S: SampleSink>(
    req: &ExportMetricsServiceRequest,
    tracker: Tracker<'_>,
    config: &ConvertConfig,
    sink: &mut S,
) -> ConvertOutput {
    let mut conv = Converter {
        tracker,
        config,
        out: ConvertOutput::default(),
        labeler: Labeler::default(),
        sink,
    };
    for rm in &req.resource_metrics {
        let resource_attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource = stringify_attributes(resource_attrs);
        let service = resource_attrs
            .iter()
            .find(|kv| kv.key == SERVICE_NAME_ATTRIBUTE)
            .map(|kv| any_value_to_string(kv.value.as_ref()));
        for sm in &rm.scope_metrics {
            let (scope_name, scope_version) = sm
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for m in &sm.metrics {
                let name = sanitize_metric_name(&m.name);
                if name.is_empty() {
                    conv.out
                        .reject(point_count(m), || "metric with empty name".to_owned());
                    continue;
                }
                if name.len() > config.limits.max_name_len {
                    conv.out.reject(point_count(m), || {
                        format!(
                            "metric name is {} bytes, limit is {}",
                            name.len(),
                            config.limits.max_name_len
                        )
                    });
                    continue;
                }
                let ctx = MetricCtx {
                    name,
                    raw_name: &m.name,
                    service: service.as_deref(),
                    resource: &resource,
                    scope_name,
                    scope_version,
                };
                conv.metric(&ctx, m);
            }
        }
    }
    conv.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::otlp::temporality::TemporalityConfig;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
        summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000_000_000;
    const CUM: i32 = AggregationTemporality::Cumulative as i32;
    const DELTA: i32 = AggregationTemporality::Delta as i32;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn req(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("api")), kv("host.name", s("h1"))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn metric(name: &str, data: metric::Data) -> Metric {
        Metric {
            name: name.into(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn num(v: f64, start: u64, time: u64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn tracker() -> CumulativeToDelta {
        CumulativeToDelta::new(TemporalityConfig::default(), T0)
    }

    fn run(r: &ExportMetricsServiceRequest) -> ConvertOutput {
        convert_request(r, &mut tracker(), &ConvertConfig::default())
    }

    fn svc() -> Vec<(String, String)> {
        vec![("service".into(), "api".into())]
    }

    #[test]
    fn gauge_becomes_gauge_with_service_label_and_sanitised_name() {
        let out = run(&req(vec![metric(
            "system.cpu.utilization",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(
                    0.5,
                    0,
                    T0,
                    vec![kv("cpu.id", any_value::Value::IntValue(3))],
                )],
            }),
        )]));
        assert_eq!(out.rejected_data_points, 0);
        assert_eq!(
            out.samples,
            vec![Sample {
                name: "system_cpu_utilization".into(),
                labels: vec![
                    ("cpu_id".into(), "3".into()),
                    ("service".into(), "api".into())
                ],
                value: SampleValue::Gauge(0.5),
            }]
        );
        assert_eq!(out.error_message(), "");
    }

    #[test]
    fn int_gauge_value_is_converted_to_f64() {
        let mut p = num(0.0, 0, T0, vec![]);
        p.value = Some(number_data_point::Value::AsInt(-7));
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![p],
            }),
        )]));
        assert_eq!(out.samples[0].value, SampleValue::Gauge(-7.0));
    }

    fn sum_metric(name: &str, t: i32, mono: bool, points: Vec<NumberDataPoint>) -> Metric {
        metric(
            name,
            metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: t,
                is_monotonic: mono,
            }),
        )
    }

    #[test]
    fn monotonic_delta_sum_becomes_counter() {
        let out = run(&req(vec![sum_metric(
            "req",
            DELTA,
            true,
            vec![num(3.0, T0, T0 + 1, vec![])],
        )]));
        assert_eq!(out.samples[0].value, SampleValue::Counter(3.0));
    }

    #[test]
    fn negative_monotonic_delta_sum_is_rejected() {
        let out = run(&req(vec![sum_metric(
            "req",
            DELTA,
            true,
            vec![num(-3.0, T0, T0 + 1, vec![])],
        )]));
        assert!(out.samples.is_empty());
        assert_eq!(out.rejected_data_points, 1);
        assert!(out.error_message().contains("negative"));
    }

    #[test]
    fn non_monotonic_sums_become_gauge_add_or_gauge() {
        let out = run(&req(vec![
            sum_metric("a", DELTA, false, vec![num(-2.0, T0, T0 + 1, vec![])]),
            sum_metric("b", CUM, false, vec![num(-2.0, T0, T0 + 1, vec![])]),
        ]));
        assert_eq!(out.samples[0].value, SampleValue::GaugeAdd(-2.0));
        assert_eq!(out.samples[1].value, SampleValue::Gauge(-2.0));
    }

    #[test]
    fn monotonic_cumulative_sum_becomes_counter_deltas_across_requests() {
        let mut t = tracker();
        let cfg = ConvertConfig::default();
        let first = convert_request(
            &req(vec![sum_metric(
                "req",
                CUM,
                true,
                vec![num(10.0, T0 - 5, T0 + 1, vec![])],
            )]),
            &mut t,
            &cfg,
        );
        assert!(
            first.samples.is_empty(),
            "started before tracker: baseline only"
        );
        assert_eq!(first.rejected_data_points, 0);
        let second = convert_request(
            &req(vec![sum_metric(
                "req",
                CUM,
                true,
                vec![num(14.0, T0 - 5, T0 + 2, vec![])],
            )]),
            &mut t,
            &cfg,
        );
        assert_eq!(second.samples[0].value, SampleValue::Counter(4.0));
        assert_eq!(second.samples[0].labels, svc());
    }

    #[test]
    fn unspecified_temporality_is_rejected() {
        let out = run(&req(vec![sum_metric(
            "req",
            0,
            true,
            vec![num(1.0, T0, T0, vec![])],
        )]));
        assert_eq!(out.rejected_data_points, 1);
    }

    #[test]
    fn non_finite_and_missing_values_are_rejected_but_other_points_survive() {
        let mut missing = num(1.0, 0, T0, vec![]);
        missing.value = None;
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![
                    num(f64::NAN, 0, T0, vec![]),
                    missing,
                    num(1.0, 0, T0, vec![]),
                ],
            }),
        )]));
        assert_eq!(out.rejected_data_points, 2);
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.errors.len(), 2);
    }

    #[test]
    fn no_recorded_value_points_are_skipped_silently() {
        let mut p = num(f64::NAN, 0, T0, vec![]);
        p.flags = DataPointFlags::NoRecordedValueMask as u32;
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![p],
            }),
        )]));
        assert!(out.samples.is_empty());
        assert_eq!(out.rejected_data_points, 0);
    }

    fn hist_point(bounds: Vec<f64>, counts: Vec<u64>, start: u64, time: u64) -> HistogramDataPoint {
        HistogramDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: counts.iter().sum(),
            sum: Some(12.0),
            bucket_counts: counts,
            explicit_bounds: bounds,
            min: Some(0.1),
            max: Some(9.0),
            ..Default::default()
        }
    }

    #[test]
    fn delta_histogram_becomes_explicit_histogram_sample() {
        let out = run(&req(vec![metric(
            "http.server.duration",
            metric::Data::Histogram(Histogram {
                data_points: vec![hist_point(vec![1.0, 5.0], vec![1, 2, 3], T0, T0 + 1)],
                aggregation_temporality: DELTA,
            }),
        )]));
        assert_eq!(
            out.samples[0].value,
            SampleValue::ExplicitHistogram(ExplicitHistogramDelta {
                bounds: vec![1.0, 5.0],
                counts: vec![1, 2, 3],
                count: 6,
                sum: Some(12.0),
                min: Some(0.1),
                max: Some(9.0),
            })
        );
        assert_eq!(out.samples[0].name, "http_server_duration");
    }

    #[test]
    fn cumulative_histogram_started_after_tracker_emits_full_first_point() {
        let out = run(&req(vec![metric(
            "h",
            metric::Data::Histogram(Histogram {
                data_points: vec![hist_point(vec![1.0], vec![1, 2], T0 + 1, T0 + 2)],
                aggregation_temporality: CUM,
            }),
        )]));
        assert!(
            matches!(out.samples[0].value, SampleValue::ExplicitHistogram(ref h) if h.count == 3)
        );
    }

    #[test]
    fn inconsistent_histograms_are_rejected() {
        let mut bad_count = hist_point(vec![1.0], vec![1, 2], T0, T0);
        bad_count.count = 7;
        let bad_len = hist_point(vec![1.0, 2.0], vec![1, 2], T0, T0);
        let unsorted = hist_point(vec![2.0, 1.0], vec![1, 2, 3], T0, T0);
        let inf_bound = hist_point(vec![f64::INFINITY], vec![1, 2], T0, T0);
        let mut nan_sum = hist_point(vec![1.0], vec![1, 2], T0, T0);
        nan_sum.sum = Some(f64::NAN);
        let out = run(&req(vec![metric(
            "h",
            metric::Data::Histogram(Histogram {
                data_points: vec![bad_count, bad_len, unsorted, inf_bound, nan_sum],
                aggregation_temporality: DELTA,
            }),
        )]));
        assert_eq!(out.rejected_data_points, 5);
        assert!(out.samples.is_empty());
    }

    #[test]
    fn histogram_without_buckets_is_accepted_as_count_and_sum_only() {
        let mut p = hist_point(vec![], vec![], T0, T0);
        p.count = 4;
        let out = run(&req(vec![metric(
            "h",
            metric::Data::Histogram(Histogram {
                data_points: vec![p],
                aggregation_temporality: DELTA,
            }),
        )]));
        assert!(
            matches!(out.samples[0].value, SampleValue::ExplicitHistogram(ref h) if h.count == 4 && h.counts.is_empty())
        );
    }

    fn exp_point(
        scale: i32,
        offset: i32,
        counts: Vec<u64>,
        zero: u64,
    ) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            start_time_unix_nano: T0,
            time_unix_nano: T0 + 1,
            count: counts.iter().sum::<u64>() + zero,
            sum: Some(3.0),
            scale,
            zero_count: zero,
            positive: Some(exponential_histogram_data_point::Buckets {
                offset,
                bucket_counts: counts,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn delta_exponential_histogram_becomes_exp_histogram_sample() {
        let out = run(&req(vec![metric(
            "e",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![exp_point(3, -2, vec![1, 0, 4], 2)],
                aggregation_temporality: DELTA,
            }),
        )]));
        assert_eq!(
            out.samples[0].value,
            SampleValue::ExpHistogram(ExpHistogramDelta {
                scale: 3,
                zero_count: 2,
                zero_threshold: 0.0,
                positive: ExpBuckets {
                    offset: -2,
                    counts: vec![1, 0, 4]
                },
                negative: ExpBuckets::default(),
                count: 7,
                sum: Some(3.0),
                min: None,
                max: None,
            })
        );
    }

    #[test]
    fn invalid_exponential_histograms_are_rejected() {
        let mut bad_count = exp_point(0, 0, vec![1], 0);
        bad_count.count = 3;
        let bad_scale = exp_point(21, 0, vec![1], 0);
        let overflow = exp_point(0, i32::MAX, vec![1, 1], 0);
        let too_many = exp_point(0, 0, vec![0; 5000], 0);
        let out = run(&req(vec![metric(
            "e",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![bad_count, bad_scale, overflow, too_many],
                aggregation_temporality: DELTA,
            }),
        )]));
        assert_eq!(out.rejected_data_points, 4);
    }

    #[test]
    fn summary_becomes_sum_count_and_quantile_gauges() {
        let out = run(&req(vec![metric(
            "rpc.latency",
            metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 10,
                    sum: 55.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 4.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 9.5,
                        },
                    ],
                    time_unix_nano: T0,
                    ..Default::default()
                }],
            }),
        )]));
        let got: Vec<_> = out
            .samples
            .into_iter()
            .map(|s| (s.name, s.labels, s.value))
            .collect();
        let q = |q: &str| {
            vec![
                ("quantile".to_owned(), q.to_owned()),
                ("service".to_owned(), "api".to_owned()),
            ]
        };
        assert_eq!(
            got,
            vec![
                ("rpc_latency_sum".into(), svc(), SampleValue::Gauge(55.0)),
                ("rpc_latency_count".into(), svc(), SampleValue::Gauge(10.0)),
                ("rpc_latency".into(), q("0.5"), SampleValue::Gauge(4.0)),
                ("rpc_latency".into(), q("0.99"), SampleValue::Gauge(9.5)),
            ]
        );
    }

    #[test]
    fn attribute_values_are_stringified_including_arrays_and_kvlists_as_json() {
        let arr = any_value::Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(s("a")),
                },
                AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                },
            ],
        });
        let kvl = any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("k", s("v"))],
        });
        let attrs = vec![
            kv("b", any_value::Value::BoolValue(true)),
            kv("d", any_value::Value::DoubleValue(1.5)),
            kv("x", any_value::Value::BytesValue(vec![0xde, 0xad])),
            kv("arr", arr),
            kv("kv", kvl),
            KeyValue {
                key: "empty".into(),
                value: None,
                ..Default::default()
            },
        ];
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(1.0, 0, T0, attrs)],
            }),
        )]));
        let labels: std::collections::BTreeMap<_, _> =
            out.samples[0].labels.iter().cloned().collect();
        assert_eq!(labels["b"], "true");
        assert_eq!(labels["d"], "1.5");
        assert_eq!(labels["x"], "dead");
        assert_eq!(labels["arr"], r#"["a",1]"#);
        assert_eq!(labels["kv"], r#"{"k":"v"}"#);
        assert_eq!(labels["empty"], "");
    }

    #[test]
    fn point_service_attribute_overrides_resource_service_name() {
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(1.0, 0, T0, vec![kv("service", s("other"))])],
            }),
        )]));
        assert_eq!(
            out.samples[0].labels,
            vec![("service".to_owned(), "other".to_owned())]
        );
    }

    #[test]
    fn reserved_or_too_many_attributes_reject_the_point() {
        let many: Vec<KeyValue> = (0..40).map(|i| kv(&format!("a{i}"), s("v"))).collect();
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: vec![
                    num(1.0, 0, T0, many),
                    num(1.0, 0, T0, vec![kv("__x", s("v"))]),
                ],
            }),
        )]));
        assert_eq!(out.rejected_data_points, 2);
    }

    #[test]
    fn empty_or_long_metric_names_reject_all_their_points() {
        let points = vec![num(1.0, 0, T0, vec![]), num(2.0, 0, T0, vec![])];
        let out = run(&req(vec![
            metric(
                "",
                metric::Data::Gauge(Gauge {
                    data_points: points.clone(),
                }),
            ),
            metric(
                &"x".repeat(201),
                metric::Data::Gauge(Gauge {
                    data_points: points,
                }),
            ),
        ]));
        assert_eq!(out.rejected_data_points, 4);
        assert!(out.samples.is_empty());
    }

    #[test]
    fn metric_without_data_is_reported_without_counting_points() {
        let out = run(&req(vec![Metric {
            name: "m".into(),
            ..Default::default()
        }]));
        assert_eq!(out.rejected_data_points, 0);
        assert_eq!(out.errors.len(), 1);
    }

    #[test]
    fn refused_cumulative_stream_counts_as_rejected() {
        let mut t = CumulativeToDelta::new(
            TemporalityConfig {
                max_streams: 1,
                policy: crate::ingest::otlp::temporality::EvictionPolicy::RefuseNew,
            },
            T0,
        );
        let out = convert_request(
            &req(vec![sum_metric(
                "req",
                CUM,
                true,
                vec![
                    num(1.0, T0 - 1, T0, vec![kv("a", s("1"))]),
                    num(1.0, T0 - 1, T0, vec![kv("a", s("2"))]),
                ],
            )]),
            &mut t,
            &ConvertConfig::default(),
        );
        assert_eq!(out.rejected_data_points, 1);
        assert!(out.error_message().contains("refused"));
    }

    #[test]
    fn error_messages_are_capped() {
        let points: Vec<_> = (0..20).map(|_| num(f64::NAN, 0, T0, vec![])).collect();
        let out = run(&req(vec![metric(
            "g",
            metric::Data::Gauge(Gauge {
                data_points: points,
            }),
        )]));
        assert_eq!(out.rejected_data_points, 20);
        assert_eq!(out.errors.len(), MAX_ERROR_MESSAGES);
    }

    #[test]
    fn borrowed_labels_equal_the_owned_ones_past_the_key_memo() {
        // One request-long labeler over points whose keys need sanitising (more distinct
        // keys than the memo holds), collide after sanitising (`a.b` / `a_b`, last wins),
        // are reserved, or carry non-string values.
        let limits = Limits::default();
        let resource = Vec::new();
        let mut labeler = Labeler::default();
        for service in [Some("api"), None] {
            let ctx = MetricCtx {
                name: "m".to_owned(),
                raw_name: "m",
                service,
                resource: &resource,
                scope_name: "",
                scope_version: "",
            };
            for i in 0..(MAX_MEMO_KEYS * 2) {
                let attrs = vec![
                    kv(&format!("k.{i}"), s("v")),
                    kv("a.b", any_value::Value::IntValue(i as i64)),
                    kv("a_b", s("last")),
                    kv("service", s(if i % 3 == 0 { "other" } else { "api" })),
                    kv(&format!("k.{}", i / 2), any_value::Value::BoolValue(true)),
                    kv(if i % 7 == 0 { "__x" } else { "ok" }, s("1")),
                ];
                labeler.prepare(ctx.service.is_some(), &attrs);
                let got = labeler.labels(&ctx, &attrs, &limits).map(|l| {
                    l.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<Vec<_>>()
                });
                assert_eq!(got, ctx.labels(&attrs, &limits), "point {i}");
            }
        }
        assert_eq!(labeler.keys.len(), MAX_MEMO_KEYS);
    }

    proptest! {
        #[test]
        fn arbitrary_protobuf_request_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            use prost::Message as _;
            if let Ok(r) = ExportMetricsServiceRequest::decode(bytes.as_slice()) {
                let out = run(&r);
                for s in &out.samples {
                    prop_assert!(crate::ingest::is_valid_metric_name(&s.name));
                }
            }
        }

        #[test]
        fn arbitrary_number_points_never_panic(
            pts in proptest::collection::vec((any::<f64>(), any::<u64>(), any::<u64>(), 0i32..3, any::<bool>()), 0..32)
        ) {
            let mut t = tracker();
            let metrics: Vec<Metric> = pts.iter().map(|(v, st, ti, temp, mono)| {
                sum_metric("m", *temp, *mono, vec![num(*v, *st, *ti, vec![])])
            }).collect();
            let out = convert_request(&req(metrics), &mut t, &ConvertConfig::default());
            for s in &out.samples {
                if let SampleValue::Counter(c) = s.value { prop_assert!(c >= 0.0 && c.is_finite()); }
            }
        }
    }
}
