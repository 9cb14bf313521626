//! StatsD and DogStatsD line / packet parser.
//!
//! # Accepted grammar
//!
//! A packet is split on `\n`; a trailing `\r` and surrounding ASCII whitespace
//! are stripped from each line, and empty lines are skipped (not rejected).
//! Each line is
//!
//! ```text
//! <name>:<value>[:<value>...]|<type>[|@<rate>][|#<tag>[,<tag>...]][|c:<container>][|T<unix ts>][|<other>]
//! ```
//!
//! * `<type>`: `c` counter, `g` gauge, `ms` timer, `h` histogram,
//!   `d` distribution, `s` set (case-sensitive).
//! * Counters: the value must be finite and `>= 0` (a negative increment is
//!   rejected with [`RejectReason::NegativeCounter`], since the core's counter
//!   is monotonic). With `@rate` the increment is divided by the rate.
//! * Gauges: a value starting with `+` or `-` is a relative change
//!   ([`SampleValue::GaugeAdd`]); otherwise it sets the gauge. (As in Etsy
//!   StatsD, a negative absolute gauge cannot be expressed directly.) The
//!   sample rate is ignored for gauges and sets.
//! * `ms`, `h`, `d` all become [`SampleValue::Observe`]; with `@rate` the
//!   observation is counted `round(1/rate)` times (at least once).
//! * Sets: the *whole* text after the first `:` is one member (so members may
//!   contain `:`; multi-value does not apply to sets).
//! * Multi-value (DogStatsD ≥ 1.1): `name:1:2:3|ms` yields one sample per
//!   value, up to [`StatsdConfig::max_values_per_line`]; disable with
//!   [`StatsdConfig::multi_value`] (then `1:2` is a [`RejectReason::BadValue`]).
//! * `@rate`: finite, [`MIN_SAMPLE_RATE`]` <= rate <= 1`, else
//!   [`RejectReason::BadSampleRate`] (a smaller rate would weigh one line up to
//!   `u64::MAX` observations);
//!   if given several times the last one wins.
//! * `#tags`: comma-separated `key:value` (value may contain `:`); a tag
//!   without `:` has value `""`; empty entries are skipped; several `#` fields
//!   are concatenated. Keys are sanitised with
//!   [`sanitize_label_name`].
//! * `c:<container id>`, `T<timestamp>` and any other unknown field are
//!   tolerated and ignored (forward compatibility with new DogStatsD fields).
//! * Names are sanitised with
//!   [`sanitize_metric_name`] (`.` → `_`).
//! * DogStatsD events (`_e{...`) and service checks (`_sc|...`) are rejected
//!   as [`RejectReason::Unsupported`].
//!
//! A rejected line never affects other lines of the same packet.

use crate::ingest::otlp::convert::SampleSink;
use crate::ingest::{LabelRefs, Limits, Sample, SampleValue, ValidationError};
use crate::ingest::{
    check_histogram_label_refs, label_name_is_sanitized, metric_name_is_sanitized,
};
use crate::ingest::{is_valid_label_name, normalize_label_refs, normalize_labels};
use crate::ingest::{sanitize_label_name, sanitize_metric_name, sanitize_metric_name_into};

/// Smallest accepted `@rate`: a timer line then counts as at most 10^6 observations and a
/// counter increment is multiplied by at most 10^6. (Fuzzing found that `@1e-300` made one
/// line worth `u64::MAX` observations, which overflowed the histogram's count.)
pub const MIN_SAMPLE_RATE: f64 = 1e-6;

/// Parser configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdConfig {
    /// Name / label limits.
    pub limits: Limits,
    /// Maximum length of one line in bytes (after stripping `\r`). Default 8192.
    pub max_line_len: usize,
    /// Accept DogStatsD multi-value lines (`name:1:2|ms`). Default `true`.
    pub multi_value: bool,
    /// Maximum number of values in a multi-value line. Default 64.
    pub max_values_per_line: usize,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_line_len: 8192,
            multi_value: true,
            max_values_per_line: 64,
        }
    }
}

/// Why a line was rejected. [`RejectReason::as_str`] is stable and meant for
/// per-reason counters (e.g. a `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line exceeds [`StatsdConfig::max_line_len`].
    LineTooLong,
    /// No `:` separator, or an empty value.
    MissingValue,
    /// No `|<type>` field.
    MissingType,
    /// The name before `:` is empty.
    EmptyName,
    /// The (sanitised) name exceeds the name length limit.
    NameTooLong,
    /// A value is not a finite number (or is empty in a multi-value list).
    BadValue,
    /// The type field is not one of `c g ms h d s`.
    UnknownType,
    /// `@rate` is not a number in `[MIN_SAMPLE_RATE, 1]`.
    BadSampleRate,
    /// A counter increment is negative.
    NegativeCounter,
    /// A tag has an empty key, a key reserved by Prometheus (`__` prefix), or the key `le`
    /// on a timer / histogram / distribution.
    BadTag,
    /// More distinct tags than the label limit.
    TooManyTags,
    /// A tag key or value exceeds the label length limits.
    TagTooLong,
    /// More values than [`StatsdConfig::max_values_per_line`].
    TooManyValues,
    /// A DogStatsD event or service check, which this ingest does not handle.
    Unsupported,
}

impl RejectReason {
    /// Number of variants (size of [`RejectCounts`]).
    pub const COUNT: usize = 15;

    /// Every variant, in declaration order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::InvalidUtf8,
        Self::LineTooLong,
        Self::MissingValue,
        Self::MissingType,
        Self::EmptyName,
        Self::NameTooLong,
        Self::BadValue,
        Self::UnknownType,
        Self::BadSampleRate,
        Self::NegativeCounter,
        Self::BadTag,
        Self::TooManyTags,
        Self::TagTooLong,
        Self::TooManyValues,
        Self::Unsupported,
    ];

    /// Stable snake_case identifier, suitable as a metric label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::LineTooLong => "line_too_long",
            Self::MissingValue => "missing_value",
            Self::MissingType => "missing_type",
            Self::EmptyName => "empty_name",
            Self::NameTooLong => "name_too_long",
            Self::BadValue => "bad_value",
            Self::UnknownType => "unknown_type",
            Self::BadSampleRate => "bad_sample_rate",
            Self::NegativeCounter => "negative_counter",
            Self::BadTag => "bad_tag",
            Self::TooManyTags => "too_many_tags",
            Self::TagTooLong => "tag_too_long",
            Self::TooManyValues => "too_many_values",
            Self::Unsupported => "unsupported",
        }
    }

    /// Position of this variant in [`RejectReason::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-reason counters of rejected lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectCounts {
    counts: [u64; RejectReason::COUNT],
}

impl RejectCounts {
    /// Count one rejected line.
    pub fn record(&mut self, reason: RejectReason) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(1);
    }

    /// Number of lines rejected for `reason`.
    #[must_use]
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Total number of rejected lines.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, c)| *c > 0)
    }
}

/// StatsD metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `c`
    Counter,
    /// `g`
    Gauge,
    /// `ms`
    Timer,
    /// `h`
    Histogram,
    /// `d` (DogStatsD distribution)
    Distribution,
    /// `s`
    Set,
}

impl MetricType {
    fn from_bytes(s: &str) -> Option<Self> {
        Some(match s {
            "c" => Self::Counter,
            "g" => Self::Gauge,
            "ms" => Self::Timer,
            "h" => Self::Histogram,
            "d" => Self::Distribution,
            "s" => Self::Set,
            _ => return None,
        })
    }
}

/// One parsed value of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatsdValue<'a> {
    /// A plain finite number.
    Number(f64),
    /// A gauge value with an explicit `+`/`-` sign (relative change).
    Relative(f64),
    /// A set member.
    Member(&'a str),
}

/// A syntactically valid line, borrowing from the input packet.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsdLine<'a> {
    /// The raw (unsanitised, non-empty) metric name.
    pub name: &'a str,
    /// The metric type.
    pub metric_type: MetricType,
    /// One or more values.
    pub values: Vec<StatsdValue<'a>>,
    /// Sample rate in `[MIN_SAMPLE_RATE, 1]`, if given.
    pub sample_rate: Option<f64>,
    /// Raw DogStatsD tags `(key, value)`; `value` is `""` for bare tags.
    pub tags: Vec<(&'a str, &'a str)>,
}

fn parse_number(s: &str) -> Result<f64, RejectReason> {
    if s.is_empty() {
        return Err(RejectReason::BadValue);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(RejectReason::BadValue),
    }
}

/// Parse one line (without its `\n`) into a borrowed [`StatsdLine`]. Checks
/// syntax, number formats, the sample rate and the line length; name / tag
/// limits are checked by [`StatsdLine::to_samples`].
///
/// The line is trimmed of ASCII whitespace (including a trailing `\r`) first.
///
/// # Errors
/// The [`RejectReason`] for a malformed line.
pub fn parse_line<'a>(
    line: &'a [u8],
    config: &StatsdConfig,
) -> Result<StatsdLine<'a>, RejectReason> {
    let line = line.trim_ascii();
    if line.len() > config.max_line_len {
        return Err(RejectReason::LineTooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| RejectReason::InvalidUtf8)?;
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(RejectReason::Unsupported);
    }

    let mut fields = line.split('|');
    let head = fields.next().unwrap_or_default();
    let (name, raw_values) = head.split_once(':').ok_or(RejectReason::MissingValue)?;
    if name.is_empty() {
        return Err(RejectReason::EmptyName);
    }
    if raw_values.is_empty() {
        return Err(RejectReason::MissingValue);
    }
    let type_field = fields.next().ok_or(RejectReason::MissingType)?;
    let metric_type = MetricType::from_bytes(type_field).ok_or(RejectReason::UnknownType)?;

    let mut sample_rate = None;
    let mut tags = Vec::new();
    for field in fields {
        if let Some(rate) = field.strip_prefix('@') {
            match rate.parse::<f64>() {
                Ok(r) if (MIN_SAMPLE_RATE..=1.0).contains(&r) => sample_rate = Some(r),
                _ => return Err(RejectReason::BadSampleRate),
            }
        } else if let Some(tag_list) = field.strip_prefix('#') {
            for tag in tag_list.split(',') {
                if tag.is_empty() {
                    continue;
                }
                let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
                if k.is_empty() {
                    return Err(RejectReason::BadTag);
                }
                tags.push((k, v));
            }
        }
        // `c:<container id>`, `T<timestamp>` and unknown fields are ignored.
    }

    let mut values = Vec::new();
    if metric_type == MetricType::Set {
        values.push(StatsdValue::Member(raw_values));
    } else {
        for (i, raw) in raw_values.split(':').enumerate() {
            if i > 0 && !config.multi_value {
                return Err(RejectReason::BadValue);
            }
            if i >= config.max_values_per_line {
                return Err(RejectReason::TooManyValues);
            }
            let v = parse_number(raw)?;
            let relative = matches!(raw.as_bytes().first(), Some(b'+' | b'-'));
            values.push(if metric_type == MetricType::Gauge && relative {
                StatsdValue::Relative(v)
            } else {
                StatsdValue::Number(v)
            });
        }
    }

    Ok(StatsdLine {
        name,
        metric_type,
        values,
        sample_rate,
        tags,
    })
}

impl StatsdLine<'_> {
    /// Convert into samples appended to `out` (one per value). Sanitises the
    /// name and tag keys, applies the sample rate and checks limits. On error
    /// nothing is appended.
    ///
    /// # Errors
    /// The [`RejectReason`] for a line that violates a limit or semantic rule.
    pub fn to_samples(
        &self,
        config: &StatsdConfig,
        out: &mut Vec<Sample>,
    ) -> Result<usize, RejectReason> {
        let limits = &config.limits;
        let name = sanitize_metric_name(self.name);
        if name.len() > limits.max_name_len {
            return Err(RejectReason::NameTooLong);
        }
        let mut labels = Vec::with_capacity(self.tags.len());
        for (k, v) in &self.tags {
            let key = sanitize_label_name(k);
            if !is_valid_label_name(&key) {
                return Err(RejectReason::BadTag);
            }
            labels.push((key, (*v).to_owned()));
        }
        let labels = normalize_labels(labels, limits).map_err(tag_reject)?;
        if matches!(
            self.metric_type,
            MetricType::Timer | MetricType::Histogram | MetricType::Distribution
        ) && crate::ingest::check_histogram_labels(&labels).is_err()
        {
            return Err(RejectReason::BadTag);
        }

        let rate = self.sample_rate.unwrap_or(1.0);
        let mut converted = Vec::with_capacity(self.values.len());
        for v in &self.values {
            let value = sample_value(self.metric_type, *v, rate)?;
            converted.push(Sample {
                name: name.clone(),
                labels: labels.clone(),
                value,
            });
        }
        let n = converted.len();
        out.extend(converted);
        Ok(n)
    }
}

/// The [`RejectReason`] of a label normalisation error.
fn tag_reject(e: ValidationError) -> RejectReason {
    match e {
        ValidationError::TooManyLabels { .. } => RejectReason::TooManyTags,
        ValidationError::LabelNameTooLong { .. } | ValidationError::LabelValueTooLong { .. } => {
            RejectReason::TagTooLong
        }
        _ => RejectReason::BadTag,
    }
}

/// What [`StatsdLine::sink_borrowed`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Borrowed {
    /// The line was accepted; this many samples went to the sink.
    Sunk(usize),
    /// A tag key needs sanitising: nothing was done, use [`StatsdLine::to_samples`].
    NeedsSanitizing,
}

impl StatsdLine<'_> {
    /// [`StatsdLine::to_samples`] without owned samples, for a line whose tag keys are
    /// already clean (sanitising leaves them unchanged): hands each sample to `sink` with
    /// the labels borrowed from the line and the name borrowed from it too, or, when it
    /// needs sanitising (`api.requests`), sanitised into `name_buf` (reused, so no
    /// allocation per line). Same checks, in the same order, with the same
    /// [`RejectReason`]s and the same samples as `to_samples`; on error nothing reaches
    /// `sink`.
    ///
    /// # Errors
    /// The [`RejectReason`] for a line that violates a limit or semantic rule.
    pub fn sink_borrowed(
        &self,
        config: &StatsdConfig,
        name_buf: &mut String,
        sink: &mut impl SampleSink,
    ) -> Result<Borrowed, RejectReason> {
        // Decided before any check, so a line that falls back gets every check (and
        // their order) from `to_samples`.
        if !self.tags.iter().all(|(k, _)| label_name_is_sanitized(k)) {
            return Ok(Borrowed::NeedsSanitizing);
        }
        let limits = &config.limits;
        let name = if metric_name_is_sanitized(self.name) {
            self.name
        } else {
            name_buf.clear();
            sanitize_metric_name_into(self.name, name_buf);
            name_buf.as_str()
        };
        if name.len() > limits.max_name_len {
            return Err(RejectReason::NameTooLong);
        }
        let mut labels: LabelRefs<'_> = LabelRefs::with_capacity(self.tags.len());
        for &(k, v) in &self.tags {
            if !is_valid_label_name(k) {
                return Err(RejectReason::BadTag);
            }
            labels.push((k, v));
        }
        normalize_label_refs(&mut labels, limits).map_err(tag_reject)?;
        if matches!(
            self.metric_type,
            MetricType::Timer | MetricType::Histogram | MetricType::Distribution
        ) && check_histogram_label_refs(&labels).is_err()
        {
            return Err(RejectReason::BadTag);
        }

        let rate = self.sample_rate.unwrap_or(1.0);
        // Only counters can fail per value; check them all first (in order, like
        // `to_samples`) so a rejected line sends nothing.
        if self.metric_type == MetricType::Counter {
            for v in &self.values {
                sample_value(self.metric_type, *v, rate)?;
            }
        }
        for v in &self.values {
            // Cannot fail here: only counter values can, and they were all checked above.
            let value = sample_value(self.metric_type, *v, rate)?;
            sink.sample(name, &labels, value);
        }
        Ok(Borrowed::Sunk(self.values.len()))
    }
}

/// The sample of one value of a line of type `metric_type` sampled at `rate`. Only a
/// counter value can be refused: negative, or not finite once scaled by the rate.
fn sample_value(
    metric_type: MetricType,
    v: StatsdValue<'_>,
    rate: f64,
) -> Result<SampleValue, RejectReason> {
    Ok(match (metric_type, v) {
        (_, StatsdValue::Member(m)) => SampleValue::SetMember(m.to_owned()),
        (MetricType::Counter, StatsdValue::Number(n) | StatsdValue::Relative(n)) => {
            if n < 0.0 {
                return Err(RejectReason::NegativeCounter);
            }
            let scaled = n / rate + 0.0; // `+ 0.0` turns -0.0 into 0.0
            if !scaled.is_finite() {
                return Err(RejectReason::BadValue);
            }
            SampleValue::Counter(scaled)
        }
        (MetricType::Gauge, StatsdValue::Relative(n)) => SampleValue::GaugeAdd(n),
        (MetricType::Gauge, StatsdValue::Number(n)) => SampleValue::Gauge(n),
        (
            MetricType::Timer | MetricType::Histogram | MetricType::Distribution,
            StatsdValue::Number(n) | StatsdValue::Relative(n),
        ) => SampleValue::Observe {
            value: n,
            count: observe_count(rate),
        },
        // A set line always carries `Member`, handled above.
        (MetricType::Set, StatsdValue::Number(n) | StatsdValue::Relative(n)) => {
            SampleValue::SetMember(n.to_string())
        }
    })
}

/// `round(1/rate)`, at least 1. `rate` is in `[MIN_SAMPLE_RATE, 1]`, so at most 10^6.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn observe_count(rate: f64) -> u64 {
    ((1.0 / rate).round() as u64).max(1)
}

/// A rejected line of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineReject {
    /// 0-based index of the line in the packet (counting empty lines).
    pub line: usize,
    /// Why it was rejected.
    pub reason: RejectReason,
}

/// Result of [`parse_packet`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PacketOutcome {
    /// Samples of all accepted lines, in input order.
    pub samples: Vec<Sample>,
    /// One entry per rejected line.
    pub rejects: Vec<LineReject>,
}

fn for_each_line(packet: &[u8], mut f: impl FnMut(usize, &[u8])) {
    for (i, line) in packet.split(|b| *b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        f(i, line);
    }
}

fn parse_one(
    line: &[u8],
    config: &StatsdConfig,
    out: &mut Vec<Sample>,
) -> Result<usize, RejectReason> {
    parse_line(line, config)?.to_samples(config, out)
}

/// Parse a whole packet (lines separated by `\n`) and collect samples and
/// per-line rejects.
#[must_use]
pub fn parse_packet(packet: &[u8], config: &StatsdConfig) -> PacketOutcome {
    let mut outcome = PacketOutcome::default();
    for_each_line(packet, |i, line| {
        if let Err(reason) = parse_one(line, config, &mut outcome.samples) {
            outcome.rejects.push(LineReject { line: i, reason });
        }
    });
    outcome
}

/// Allocation-friendly variant of [`parse_packet`] for the hot path: appends
/// samples to `samples`, counts rejects per reason in `rejects`, and returns
/// the number of accepted lines.
pub fn parse_packet_into(
    packet: &[u8],
    config: &StatsdConfig,
    samples: &mut Vec<Sample>,
    rejects: &mut RejectCounts,
) -> usize {
    let mut accepted = 0;
    for_each_line(packet, |_, line| match parse_one(line, config, samples) {
        Ok(_) => accepted += 1,
        Err(reason) => rejects.record(reason),
    });
    accepted
}

/// Buffers [`sink_packet`] reuses between packets (keep one per receiver).
#[derive(Debug, Default)]
pub struct SinkScratch {
    /// A sanitised metric name.
    name: String,
    /// The owned samples of a line whose tag keys need sanitising.
    samples: Vec<Sample>,
}

/// [`parse_packet_into`] handing the samples to `sink` line by line, in input order:
/// lines with clean tag keys go through [`StatsdLine::sink_borrowed`] (no owned
/// [`Sample`]; a name that needs sanitising is sanitised into `scratch`), the others
/// through [`StatsdLine::to_samples`] into `scratch` and then to `sink`. `sink` sees the same samples, in the same order, and `rejects` the
/// same counts as with `parse_packet_into`. Returns the number of accepted lines.
pub fn sink_packet(
    packet: &[u8],
    config: &StatsdConfig,
    sink: &mut impl SampleSink,
    scratch: &mut SinkScratch,
    rejects: &mut RejectCounts,
) -> usize {
    let mut accepted = 0;
    for_each_line(packet, |_, line| {
        let result = parse_line(line, config).and_then(|l| {
            match l.sink_borrowed(config, &mut scratch.name, sink)? {
                Borrowed::Sunk(n) => Ok(n),
                Borrowed::NeedsSanitizing => {
                    let owned = &mut scratch.samples;
                    owned.clear();
                    let n = l.to_samples(config, owned)?;
                    for s in owned.drain(..) {
                        let labels: LabelRefs<'_> = s
                            .labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        sink.sample(&s.name, &labels, s.value);
                    }
                    Ok(n)
                }
            }
        });
        match result {
            Ok(_) => accepted += 1,
            Err(reason) => rejects.record(reason),
        }
    });
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> StatsdConfig {
        StatsdConfig::default()
    }

    fn one(line: &str) -> Result<Vec<Sample>, RejectReason> {
        let mut out = Vec::new();
        parse_one(line.as_bytes(), &cfg(), &mut out)?;
        Ok(out)
    }

    fn value(line: &str) -> SampleValue {
        let s = one(line).expect("line should parse");
        assert_eq!(s.len(), 1);
        s[0].value.clone()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn counter_line_yields_counter_increment() {
        let s = one("hits:3|c").unwrap();
        assert_eq!(
            s,
            vec![Sample {
                name: "hits".into(),
                labels: vec![],
                value: SampleValue::Counter(3.0)
            }]
        );
    }

    #[test]
    fn counter_sample_rate_scales_increment() {
        assert_eq!(value("hits:1|c|@0.1"), SampleValue::Counter(10.0));
        assert_eq!(value("hits:2|c|@0.5"), SampleValue::Counter(4.0));
    }

    #[test]
    fn negative_counter_is_rejected() {
        assert_eq!(one("hits:-1|c"), Err(RejectReason::NegativeCounter));
    }

    #[test]
    fn negative_zero_counter_becomes_positive_zero() {
        match value("hits:-0|c") {
            SampleValue::Counter(v) => assert!(v == 0.0 && v.is_sign_positive()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gauge_without_sign_sets_absolute_value() {
        assert_eq!(value("temp:21.5|g"), SampleValue::Gauge(21.5));
    }

    #[test]
    fn gauge_with_sign_is_relative_change() {
        assert_eq!(value("temp:+4|g"), SampleValue::GaugeAdd(4.0));
        assert_eq!(value("temp:-4.5|g"), SampleValue::GaugeAdd(-4.5));
    }

    #[test]
    fn gauge_ignores_sample_rate() {
        assert_eq!(value("temp:7|g|@0.5"), SampleValue::Gauge(7.0));
    }

    #[test]
    fn timer_histogram_and_distribution_become_observations() {
        for t in ["ms", "h", "d"] {
            assert_eq!(
                value(&format!("lat:12.5|{t}")),
                SampleValue::Observe {
                    value: 12.5,
                    count: 1
                }
            );
        }
    }

    #[test]
    fn sampled_timer_counts_observation_inverse_rate_times() {
        assert_eq!(
            value("lat:5|ms|@0.25"),
            SampleValue::Observe {
                value: 5.0,
                count: 4
            }
        );
        assert_eq!(
            value("lat:5|ms|@0.3"),
            SampleValue::Observe {
                value: 5.0,
                count: 3
            }
        );
        assert_eq!(
            value("lat:5|ms|@0.9"),
            SampleValue::Observe {
                value: 5.0,
                count: 1
            }
        );
    }

    #[test]
    fn set_line_yields_member_including_colons() {
        assert_eq!(
            value("users:alice|s"),
            SampleValue::SetMember("alice".into())
        );
        assert_eq!(value("users:a:b|s"), SampleValue::SetMember("a:b".into()));
    }

    #[test]
    fn dogstatsd_tags_become_sorted_labels_and_bare_tag_has_empty_value() {
        let s = one("req:1|c|#route:/api,env:prod,canary").unwrap();
        assert_eq!(
            s[0].labels,
            labels(&[("canary", ""), ("env", "prod"), ("route", "/api")])
        );
    }

    #[test]
    fn tag_value_may_contain_colons() {
        let s = one("req:1|c|#url:http://x").unwrap();
        assert_eq!(s[0].labels, labels(&[("url", "http://x")]));
    }

    #[test]
    fn duplicate_tag_keys_keep_last_value() {
        let s = one("req:1|c|#a:1,a:2").unwrap();
        assert_eq!(s[0].labels, labels(&[("a", "2")]));
    }

    #[test]
    fn tag_keys_and_names_are_sanitised() {
        let s = one("api.req-count:1|c|#http.method:GET").unwrap();
        assert_eq!(s[0].name, "api_req_count");
        assert_eq!(s[0].labels, labels(&[("http_method", "GET")]));
    }

    #[test]
    fn empty_tag_entries_are_skipped() {
        let s = one("req:1|c|#,a:1,,").unwrap();
        assert_eq!(s[0].labels, labels(&[("a", "1")]));
        let s = one("req:1|c|#").unwrap();
        assert!(s[0].labels.is_empty());
    }

    #[test]
    fn tag_with_empty_key_is_rejected() {
        assert_eq!(one("req:1|c|#:v"), Err(RejectReason::BadTag));
    }

    #[test]
    fn tag_with_reserved_prefix_is_rejected() {
        assert_eq!(one("req:1|c|#__name__:x"), Err(RejectReason::BadTag));
    }

    #[test]
    fn too_many_tags_are_rejected() {
        let tags: Vec<String> = (0..33).map(|i| format!("t{i}:v")).collect();
        assert_eq!(
            one(&format!("req:1|c|#{}", tags.join(","))),
            Err(RejectReason::TooManyTags)
        );
    }

    #[test]
    fn overlong_tag_value_is_rejected() {
        assert_eq!(
            one(&format!("req:1|c|#a:{}", "x".repeat(1025))),
            Err(RejectReason::TagTooLong)
        );
    }

    #[test]
    fn container_id_timestamp_and_unknown_fields_are_ignored() {
        let s = one("req:1|c|@0.5|#a:b|c:abc123|T1656581400|e:future").unwrap();
        assert_eq!(s[0].value, SampleValue::Counter(2.0));
        assert_eq!(s[0].labels, labels(&[("a", "b")]));
    }

    #[test]
    fn multi_value_line_yields_one_sample_per_value() {
        let s = one("lat:1:2:3|ms|#a:b").unwrap();
        let vals: Vec<_> = s.iter().map(|s| s.value.clone()).collect();
        assert_eq!(
            vals,
            vec![
                SampleValue::Observe {
                    value: 1.0,
                    count: 1
                },
                SampleValue::Observe {
                    value: 2.0,
                    count: 1
                },
                SampleValue::Observe {
                    value: 3.0,
                    count: 1
                },
            ]
        );
        assert!(s.iter().all(|s| s.labels == labels(&[("a", "b")])));
    }

    #[test]
    fn multi_value_can_be_disabled() {
        let c = StatsdConfig {
            multi_value: false,
            ..cfg()
        };
        let mut out = Vec::new();
        assert_eq!(
            parse_one(b"lat:1:2|ms", &c, &mut out),
            Err(RejectReason::BadValue)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn multi_value_over_limit_is_rejected() {
        let c = StatsdConfig {
            max_values_per_line: 2,
            ..cfg()
        };
        let mut out = Vec::new();
        assert_eq!(
            parse_one(b"lat:1:2:3|ms", &c, &mut out),
            Err(RejectReason::TooManyValues)
        );
    }

    #[test]
    fn multi_value_with_one_negative_counter_rejects_whole_line() {
        let mut out = Vec::new();
        assert_eq!(
            parse_one(b"c:1:-1|c", &cfg(), &mut out),
            Err(RejectReason::NegativeCounter)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn malformed_lines_map_to_specific_reasons() {
        let cases = [
            ("novalue", RejectReason::MissingValue),
            ("name:|c", RejectReason::MissingValue),
            ("name:1", RejectReason::MissingType),
            (":1|c", RejectReason::EmptyName),
            ("name:abc|c", RejectReason::BadValue),
            ("name:1::2|ms", RejectReason::BadValue),
            ("name:nan|g", RejectReason::BadValue),
            ("name:inf|g", RejectReason::BadValue),
            ("name:1|x", RejectReason::UnknownType),
            ("name:1||c", RejectReason::UnknownType),
            ("name:1|C", RejectReason::UnknownType),
            ("name:1|c|@0", RejectReason::BadSampleRate),
            ("name:1|c|@1.5", RejectReason::BadSampleRate),
            ("name:1|c|@-0.5", RejectReason::BadSampleRate),
            ("name:1|c|@abc", RejectReason::BadSampleRate),
            ("_e{5,4}:title|text", RejectReason::Unsupported),
            ("_sc|check|0", RejectReason::Unsupported),
        ];
        for (line, reason) in cases {
            assert_eq!(one(line), Err(reason), "line {line:?}");
        }
    }

    #[test]
    fn huge_counter_divided_by_tiny_rate_is_rejected_as_bad_value() {
        assert_eq!(one("c:1e308|c|@0.0001"), Err(RejectReason::BadValue));
    }

    /// Fuzzing regression (fuzz target `statsd_packet`): `@1e-300` weighed one timer line
    /// `u64::MAX` observations, and two such lines overflowed the histogram count.
    #[test]
    fn sample_rate_below_the_minimum_is_rejected_and_the_minimum_weighs_a_million() {
        for line in ["x:1|ms|@1e-300", "x:1|c|@5e-324", "x:1|h|@0.00000099"] {
            assert_eq!(one(line), Err(RejectReason::BadSampleRate), "{line}");
        }
        assert_eq!(
            value("x:1|ms|@0.000001"),
            SampleValue::Observe {
                value: 1.0,
                count: 1_000_000
            }
        );
        let SampleValue::Counter(c) = value("x:2|c|@1e-6") else {
            panic!("a counter")
        };
        assert!((c - 2e6).abs() < 1e-6, "{c}");
    }

    #[test]
    fn overlong_name_is_rejected() {
        assert_eq!(
            one(&format!("{}:1|c", "a".repeat(201))),
            Err(RejectReason::NameTooLong)
        );
    }

    #[test]
    fn overlong_line_is_rejected() {
        let c = StatsdConfig {
            max_line_len: 10,
            ..cfg()
        };
        let mut out = Vec::new();
        assert_eq!(
            parse_one(b"abcdefgh:1|c", &c, &mut out),
            Err(RejectReason::LineTooLong)
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut out = Vec::new();
        assert_eq!(
            parse_one(b"a\xff:1|c", &cfg(), &mut out),
            Err(RejectReason::InvalidUtf8)
        );
    }

    #[test]
    fn packet_skips_empty_lines_crlf_and_trailing_newline() {
        let out = parse_packet(b"a:1|c\r\n\n  \nb:2|g\r\n", &cfg());
        assert!(out.rejects.is_empty());
        let names: Vec<_> = out.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn bad_line_does_not_affect_good_lines_in_same_packet() {
        let out = parse_packet(b"a:1|c\nbad\nb:2|x\nc:3|ms", &cfg());
        let names: Vec<_> = out.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(
            out.rejects,
            vec![
                LineReject {
                    line: 1,
                    reason: RejectReason::MissingValue
                },
                LineReject {
                    line: 2,
                    reason: RejectReason::UnknownType
                },
            ]
        );
    }

    #[test]
    fn parse_packet_into_counts_rejects_per_reason() {
        let mut samples = Vec::new();
        let mut rejects = RejectCounts::default();
        let accepted =
            parse_packet_into(b"a:1|c\nx\ny\nz:1|q\n", &cfg(), &mut samples, &mut rejects);
        assert_eq!(accepted, 1);
        assert_eq!(samples.len(), 1);
        assert_eq!(rejects.get(RejectReason::MissingValue), 2);
        assert_eq!(rejects.get(RejectReason::UnknownType), 1);
        assert_eq!(rejects.total(), 3);
        let listed: Vec<_> = rejects.iter().collect();
        assert_eq!(
            listed,
            vec![
                (RejectReason::MissingValue, 2),
                (RejectReason::UnknownType, 1)
            ]
        );
    }

    #[test]
    fn parse_line_borrows_name_and_tags_from_input() {
        let input = b"my.metric:1|c|#k:v".to_vec();
        let line = parse_line(&input, &cfg()).unwrap();
        assert_eq!(line.name, "my.metric");
        assert_eq!(line.tags, vec![("k", "v")]);
        assert_eq!(line.metric_type, MetricType::Counter);
    }

    #[test]
    fn reject_reason_strings_are_unique_and_indices_match_all() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.as_str()));
            assert_eq!(r.to_string(), r.as_str());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_packet_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let out = parse_packet(&bytes, &cfg());
            for s in &out.samples {
                prop_assert!(crate::ingest::is_valid_metric_name(&s.name));
            }
        }

        #[test]
        fn statsd_like_packet_never_panics(s in "[a-z.:|@#,0-9+\\-ecmsghdT\n\r]{0,200}") {
            let mut samples = Vec::new();
            let mut rejects = RejectCounts::default();
            let accepted = parse_packet_into(s.as_bytes(), &cfg(), &mut samples, &mut rejects);
            let lines = s.split('\n').filter(|l| !l.trim_ascii().is_empty()).count();
            prop_assert_eq!(accepted as u64 + rejects.total(), lines as u64);
        }

        #[test]
        fn well_formed_counter_roundtrips(name in "[a-z][a-z0-9_]{0,20}", v in 0u32..1_000_000) {
            let out = parse_packet(format!("{name}:{v}|c").as_bytes(), &cfg());
            prop_assert_eq!(out.samples.len(), 1);
            prop_assert_eq!(&out.samples[0].value, &SampleValue::Counter(f64::from(v)));
        }
    }
}
