//! Socket-free ingest layer: parsers and converters that turn wire formats
//! (StatsD/DogStatsD, HTTP JSON, OTLP) into a neutral [`Sample`] model.
//!
//! Nothing in this module touches sockets or the core `abacus` crate; every
//! entry point is a pure function (or a struct with explicit state, for the
//! OTLP cumulative→delta conversion) so it can be unit-tested and fuzzed.
//!
//! # Conventions shared by all parsers
//!
//! * **Metric names** produced by every parser match the Prometheus metric
//!   name grammar `[a-zA-Z_:][a-zA-Z0-9_:]*` and are at most
//!   [`Limits::max_name_len`] bytes. The JSON API *rejects* names outside the
//!   grammar; StatsD and OTLP *sanitise* them with [`sanitize_metric_name`]
//!   (every other character becomes `_`, e.g. `http.server.duration` →
//!   `http_server_duration`), because dotted names are idiomatic there.
//! * **Label names** match `[a-zA-Z_][a-zA-Z0-9_]*` (same rule: JSON rejects,
//!   StatsD tags / OTLP attributes are sanitised with [`sanitize_label_name`]).
//! * **Labels** in a [`Sample`] are sorted by name and unique (for duplicates
//!   the *last* occurrence in the input wins), at most [`Limits::max_labels`].
//! * **Histograms** may not carry the label `le` (reserved for the bucket bound in the
//!   exposition; see [`check_histogram_labels`]).
//! * **Values** are always finite (`NaN`/`±inf` are rejected).

pub mod json;
pub mod otlp;
pub mod statsd;

/// One measurement destined for the core aggregator.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (Prometheus grammar, see module docs). Unit-less: any unit
    /// is whatever the producer used (e.g. `latency` from `/latency` is ms).
    pub name: String,
    /// Label pairs `(name, value)`, sorted by name, names unique.
    pub labels: Vec<(String, String)>,
    /// What to do with the series.
    pub value: SampleValue,
}

impl Sample {
    /// An owned sample from borrowed parts (`labels` already normalised).
    #[must_use]
    pub fn from_refs(name: &str, labels: &[(&str, &str)], value: SampleValue) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }
}

/// The operation a [`Sample`] applies to its series.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    /// Monotonic counter increment (a delta, always `>= 0` and finite), in the
    /// metric's own unit.
    Counter(f64),
    /// Set the gauge to this absolute value (finite), in the metric's unit.
    Gauge(f64),
    /// Add this relative change (finite, may be negative) to the gauge.
    GaugeAdd(f64),
    /// Record `value` (finite, metric's unit) into a histogram `count` times
    /// (`count >= 1`; larger than 1 for sampled StatsD timers).
    Observe {
        /// The observed value.
        value: f64,
        /// How many times it was observed.
        count: u64,
    },
    /// An OTLP exponential histogram, already converted to a delta.
    ExpHistogram(ExpHistogramDelta),
    /// An OTLP explicit-bucket histogram, already converted to a delta.
    ExplicitHistogram(ExplicitHistogramDelta),
    /// Add a member to a (StatsD) set; the set counts distinct members.
    SetMember(String),
}

/// One side (positive or negative) of an exponential histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpBuckets {
    /// Bucket index of `counts[0]`. Bucket `i` covers the magnitude range
    /// `(base^i, base^(i+1)]` with `base = 2^(2^-scale)`.
    pub offset: i32,
    /// Number of observations per bucket (delta), starting at `offset`.
    pub counts: Vec<u64>,
}

impl ExpBuckets {
    /// Sum of all bucket counts, `None` on `u64` overflow.
    #[must_use]
    pub fn total(&self) -> Option<u64> {
        self.counts
            .iter()
            .try_fold(0u64, |acc, c| acc.checked_add(*c))
    }
}

/// Delta of an OTLP exponential histogram (base-2 exponential buckets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpHistogramDelta {
    /// Resolution: bucket boundaries are powers of `2^(2^-scale)`; valid
    /// range is `-10..=20`.
    pub scale: i32,
    /// Number of observations whose magnitude is `<= zero_threshold`.
    pub zero_count: u64,
    /// Width of the zero bucket, in the metric's unit (`>= 0`).
    pub zero_threshold: f64,
    /// Buckets of positive observations.
    pub positive: ExpBuckets,
    /// Buckets of negative observations (indexed by magnitude).
    pub negative: ExpBuckets,
    /// Total number of observations (`zero_count + positive + negative`).
    pub count: u64,
    /// Sum of the observations in the metric's unit, if known.
    pub sum: Option<f64>,
    /// Minimum observation in this delta, if known (metric's unit).
    pub min: Option<f64>,
    /// Maximum observation in this delta, if known (metric's unit).
    pub max: Option<f64>,
}

/// Delta of an OTLP explicit-bucket histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExplicitHistogramDelta {
    /// Strictly increasing finite upper bounds (inclusive) in the metric's
    /// unit. Bucket `i` is `(bounds[i-1], bounds[i]]`; the last bucket is
    /// `(bounds[last], +inf)`.
    pub bounds: Vec<f64>,
    /// Observations per bucket; `counts.len() == bounds.len() + 1`, or empty
    /// when the producer sent only count/sum.
    pub counts: Vec<u64>,
    /// Total number of observations (equals the sum of `counts` if present).
    pub count: u64,
    /// Sum of observations in the metric's unit, if known.
    pub sum: Option<f64>,
    /// Minimum observation in this delta, if known (metric's unit).
    pub min: Option<f64>,
    /// Maximum observation in this delta, if known (metric's unit).
    pub max: Option<f64>,
}

/// Size limits shared by all parsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum metric name length in bytes (after sanitisation). Default 200.
    pub max_name_len: usize,
    /// Maximum number of labels per sample. Default 32.
    pub max_labels: usize,
    /// Maximum label name length in bytes. Default 128.
    pub max_label_name_len: usize,
    /// Maximum label value length in bytes. Default 1024.
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_name_len: 200,
            max_labels: 32,
            max_label_name_len: 128,
            max_label_value_len: 1024,
        }
    }
}

/// Why a name or label set failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The metric name is empty.
    #[error("metric name is empty")]
    EmptyName,
    /// The metric name is longer than the limit.
    #[error("metric name is {len} bytes, limit is {max}")]
    NameTooLong {
        /// Actual length in bytes.
        len: usize,
        /// Limit in bytes.
        max: usize,
    },
    /// The metric name contains characters outside `[a-zA-Z0-9_:]` or starts
    /// with a digit.
    #[error("metric name {0:?} is not a valid Prometheus metric name")]
    InvalidName(String),
    /// A label name is empty.
    #[error("label name is empty")]
    EmptyLabelName,
    /// A label name contains invalid characters, starts with a digit, or uses
    /// the reserved `__` prefix.
    #[error("label name {0:?} is not a valid Prometheus label name")]
    InvalidLabelName(String),
    /// A label name is longer than the limit.
    #[error("label name is {len} bytes, limit is {max}")]
    LabelNameTooLong {
        /// Actual length in bytes.
        len: usize,
        /// Limit in bytes.
        max: usize,
    },
    /// A label value is longer than the limit.
    #[error("value of label {name:?} is {len} bytes, limit is {max}")]
    LabelValueTooLong {
        /// The label name.
        name: String,
        /// Actual length in bytes.
        len: usize,
        /// Limit in bytes.
        max: usize,
    },
    /// Too many labels.
    #[error("{count} labels, limit is {max}")]
    TooManyLabels {
        /// Number of distinct labels.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// A value is NaN or infinite.
    #[error("value is not finite")]
    NonFinite,
    /// A histogram carries the label `le`, which the Prometheus exposition adds to every
    /// bucket (a second `le` would make the exposition invalid).
    #[error("label name \"le\" is reserved on histograms (it holds the bucket bound)")]
    ReservedHistogramLabel,
}

/// Label name reserved on histograms: the exposition writes it on every `_bucket` sample.
pub const HISTOGRAM_BUCKET_LABEL: &str = "le";

/// Refuses the label [`HISTOGRAM_BUCKET_LABEL`] on a histogram sample's (normalised) labels.
///
/// # Errors
/// [`ValidationError::ReservedHistogramLabel`].
pub fn check_histogram_labels(labels: &[(String, String)]) -> Result<(), ValidationError> {
    if labels.iter().any(|(k, _)| k == HISTOGRAM_BUCKET_LABEL) {
        return Err(ValidationError::ReservedHistogramLabel);
    }
    Ok(())
}

/// [`check_histogram_labels`] on borrowed labels.
///
/// # Errors
/// [`ValidationError::ReservedHistogramLabel`].
pub fn check_histogram_label_refs(labels: &[(&str, &str)]) -> Result<(), ValidationError> {
    if labels.iter().any(|(k, _)| *k == HISTOGRAM_BUCKET_LABEL) {
        return Err(ValidationError::ReservedHistogramLabel);
    }
    Ok(())
}

/// True if `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
#[must_use]
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// True if `name` matches `[a-zA-Z_][a-zA-Z0-9_]*` and does not start with
/// the reserved `__` prefix.
#[must_use]
pub fn is_valid_label_name(name: &str) -> bool {
    if name.starts_with("__") {
        return false;
    }
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    sanitize_into(name, allow_colon, &mut out);
    out
}

fn sanitize_into(name: &str, allow_colon: bool, out: &mut String) {
    if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.push('_');
    }
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') {
            out.push(c);
        } else {
            out.push('_');
        }
    }
}

/// Whether [`sanitize_label_name`] returns `name` unchanged (the caller can borrow it).
#[must_use]
pub fn label_name_is_sanitized(name: &str) -> bool {
    !name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether [`sanitize_metric_name`] returns `name` unchanged.
#[must_use]
pub fn metric_name_is_sanitized(name: &str) -> bool {
    !name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Map an arbitrary non-empty string onto the Prometheus metric name grammar:
/// every character outside `[a-zA-Z0-9_:]` (including each non-ASCII `char`)
/// becomes `_`, and a leading digit gets a `_` prefix. The empty string stays
/// empty (callers reject it).
#[must_use]
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// [`sanitize_metric_name`] appended to `out` (reuse one buffer instead of allocating).
pub fn sanitize_metric_name_into(name: &str, out: &mut String) {
    sanitize_into(name, true, out);
}

/// Like [`sanitize_metric_name`] but for label names (`:` is replaced too).
/// A leading `__` is kept; it is reserved in Prometheus, so callers that care
/// should check [`is_valid_label_name`] afterwards.
#[must_use]
pub fn sanitize_label_name(name: &str) -> String {
    sanitize(name, false)
}

/// Validate a metric name against [`Limits`] and the Prometheus grammar.
///
/// # Errors
/// Returns the first problem found.
pub fn validate_metric_name(name: &str, limits: &Limits) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::EmptyName);
    }
    if name.len() > limits.max_name_len {
        return Err(ValidationError::NameTooLong {
            len: name.len(),
            max: limits.max_name_len,
        });
    }
    if !is_valid_metric_name(name) {
        return Err(ValidationError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Sort labels by name, drop duplicate names (the last occurrence wins), and
/// check label-name grammar, lengths and count.
///
/// # Errors
/// Returns the first problem found.
pub fn normalize_labels(
    mut labels: Vec<(String, String)>,
    limits: &Limits,
) -> Result<Vec<(String, String)>, ValidationError> {
    // Stable sort keeps input order among equal names; keep the last one.
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    // In place: of a run of equal names keep the last (`dedup_by` drops `later` after
    // it has been swapped into the kept slot).
    labels.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            std::mem::swap(later, kept);
            true
        } else {
            false
        }
    });
    check_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), limits)?;
    Ok(labels)
}

/// The checks [`normalize_labels`] and [`normalize_label_refs`] make on sorted, deduplicated
/// labels: their number, then each name and value, in order.
fn check_labels<'a>(
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if labels.len() > limits.max_labels {
        return Err(ValidationError::TooManyLabels {
            count: labels.len(),
            max: limits.max_labels,
        });
    }
    for (name, value) in labels {
        if name.is_empty() {
            return Err(ValidationError::EmptyLabelName);
        }
        if name.len() > limits.max_label_name_len {
            return Err(ValidationError::LabelNameTooLong {
                len: name.len(),
                max: limits.max_label_name_len,
            });
        }
        if !is_valid_label_name(name) {
            return Err(ValidationError::InvalidLabelName(name.to_owned()));
        }
        if value.len() > limits.max_label_value_len {
            return Err(ValidationError::LabelValueTooLong {
                name: name.to_owned(),
                len: value.len(),
                max: limits.max_label_value_len,
            });
        }
    }
    Ok(())
}

/// Borrowed label pairs, on the stack for up to 8 labels.
pub type LabelRefs<'a> = smallvec::SmallVec<[(&'a str, &'a str); 8]>;

/// [`normalize_labels`] on borrowed labels, in place: the same order, the same rule for
/// duplicate names (the last occurrence wins), the same checks and errors.
///
/// # Errors
/// Returns the first problem found.
pub fn normalize_label_refs(
    labels: &mut LabelRefs<'_>,
    limits: &Limits,
) -> Result<(), ValidationError> {
    // Stable sort keeps input order among equal names; keep the last one.
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let mut kept = 0;
    for i in 0..labels.len() {
        if kept > 0 && labels[kept - 1].0 == labels[i].0 {
            labels[kept - 1] = labels[i];
        } else {
            labels[kept] = labels[i];
            kept += 1;
        }
    }
    labels.truncate(kept);
    check_labels(labels.iter().copied(), limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn metric_name_grammar_accepts_prometheus_names_and_rejects_others() {
        assert!(is_valid_metric_name("http_requests_total"));
        assert!(is_valid_metric_name(":recording:rule"));
        assert!(is_valid_metric_name("_x1"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name("a.b"));
        assert!(!is_valid_metric_name("a-b"));
        assert!(!is_valid_metric_name("é"));
    }

    #[test]
    fn label_name_grammar_rejects_colon_and_reserved_prefix() {
        assert!(is_valid_label_name("host"));
        assert!(is_valid_label_name("_x"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name("__name__"));
        assert!(!is_valid_label_name("9a"));
    }

    #[test]
    fn sanitize_replaces_dots_and_prefixes_leading_digit() {
        assert_eq!(
            sanitize_metric_name("http.server.duration"),
            "http_server_duration"
        );
        assert_eq!(sanitize_metric_name("1xx"), "_1xx");
        assert_eq!(sanitize_metric_name("a:b-c"), "a:b_c");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_metric_name("ça"), "_a");
        assert!(is_valid_metric_name(&sanitize_metric_name("x.y/z é")));
    }

    #[test]
    fn validate_metric_name_enforces_length_limit() {
        let limits = Limits::default();
        let long = "a".repeat(201);
        assert_eq!(
            validate_metric_name(&long, &limits),
            Err(ValidationError::NameTooLong { len: 201, max: 200 })
        );
        assert!(validate_metric_name(&"a".repeat(200), &limits).is_ok());
        assert_eq!(
            validate_metric_name("", &limits),
            Err(ValidationError::EmptyName)
        );
    }

    #[test]
    fn normalize_labels_sorts_and_last_duplicate_wins() {
        let out = normalize_labels(l(&[("b", "1"), ("a", "2"), ("b", "3")]), &Limits::default());
        assert_eq!(out, Ok(l(&[("a", "2"), ("b", "3")])));
    }

    #[test]
    fn normalize_labels_rejects_too_many_labels() {
        let many: Vec<(String, String)> =
            (0..33).map(|i| (format!("l{i}"), String::new())).collect();
        assert!(matches!(
            normalize_labels(many, &Limits::default()),
            Err(ValidationError::TooManyLabels { count: 33, max: 32 })
        ));
    }

    #[test]
    fn normalize_labels_rejects_long_values_and_bad_names() {
        let limits = Limits::default();
        assert!(matches!(
            normalize_labels(l(&[("a", &"x".repeat(1025))]), &limits),
            Err(ValidationError::LabelValueTooLong { .. })
        ));
        assert!(matches!(
            normalize_labels(l(&[("a-b", "x")]), &limits),
            Err(ValidationError::InvalidLabelName(_))
        ));
        assert!(matches!(
            normalize_labels(l(&[("", "x")]), &limits),
            Err(ValidationError::EmptyLabelName)
        ));
    }

    #[test]
    fn exp_buckets_total_detects_overflow() {
        let b = ExpBuckets {
            offset: 0,
            counts: vec![u64::MAX, 1],
        };
        assert_eq!(b.total(), None);
        let b = ExpBuckets {
            offset: 0,
            counts: vec![2, 3],
        };
        assert_eq!(b.total(), Some(5));
    }

    proptest::proptest! {
        #[test]
        fn borrowed_label_normalisation_matches_the_owned_one(
            pairs in proptest::collection::vec(("[a-c_.:1-]{0,3}", "[xy]{0,3}"), 0..12),
            max_labels in 0usize..8,
            max_value in 0usize..4,
        ) {
            let limits = Limits { max_labels, max_label_value_len: max_value, ..Limits::default() };
            let owned: Vec<(String, String)> = pairs.clone();
            let mut refs: LabelRefs<'_> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let want = normalize_labels(owned, &limits);
            let got = normalize_label_refs(&mut refs, &limits).map(|()| {
                refs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>()
            });
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn already_sanitized_names_are_recognised(name in "[a-z0-9_:.\\-é]{0,6}") {
            proptest::prop_assert_eq!(label_name_is_sanitized(&name), sanitize_label_name(&name) == name);
            proptest::prop_assert_eq!(metric_name_is_sanitized(&name), sanitize_metric_name(&name) == name);
        }
    }
}
