//! Point-in-time views of a registry: cumulative (everything since start) or delta (one
//! flush window).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::histogram::HistogramSnapshot;
use crate::key::Key;
use crate::registry::MetricKind;

/// Unit of a series' values. Exposition converts time to base units (seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Dimensionless or unknown.
    #[default]
    None,
    /// Milliseconds (`record_latency` uses this).
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    /// Suffix Prometheus expects on a metric name in this unit (base units).
    pub fn prometheus_suffix(self) -> Option<&'static str> {
        match self {
            Unit::None => None,
            Unit::Milliseconds | Unit::Seconds => Some("seconds"),
            Unit::Bytes => Some("bytes"),
        }
    }

    /// Factor from this unit to its base unit.
    pub fn to_base(self) -> f64 {
        match self {
            Unit::Milliseconds => 1e-3,
            _ => 1.0,
        }
    }
}

/// The value of one series in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// Integer counter: total (cumulative) or increase (delta).
    Counter(u64),
    /// Floating-point counter: total or increase.
    FloatCounter(f64),
    /// Gauge: the current value in both kinds of snapshot.
    Gauge(f64),
    /// Histogram (integer or float): all samples (cumulative) or the window's (delta).
    Histogram(HistogramSnapshot),
}

/// A [`Value`] with the histogram borrowed: what the renderer reads, from a snapshot or
/// straight from the registry.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ValueRef<'a> {
    Counter(u64),
    FloatCounter(f64),
    Gauge(f64),
    Histogram(crate::histogram::HistogramView<'a>),
}

impl Value {
    /// The value with the histogram borrowed.
    pub(crate) fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Counter(n) => ValueRef::Counter(*n),
            Value::FloatCounter(x) => ValueRef::FloatCounter(*x),
            Value::Gauge(v) => ValueRef::Gauge(*v),
            Value::Histogram(h) => ValueRef::Histogram(h.view()),
        }
    }

    /// Whether a delta value carries no change (zero increase, empty histogram).
    pub fn is_zero(&self) -> bool {
        match self {
            Value::Counter(n) => *n == 0,
            Value::FloatCounter(x) => *x == 0.0,
            Value::Gauge(_) => false,
            // A window can carry a sum without a count: a sample racing the flush may have its
            // bucket read in one window and its sum in the next. Such a window is not empty.
            Value::Histogram(h) => h.count == 0 && h.sum == 0.0,
        }
    }

    /// Adds `other` into `self` when both are of the same kind (used to fold in the
    /// residue of evicted series). Gauges take `other`'s value.
    pub(crate) fn absorb(&mut self, other: &Value) {
        match (self, other) {
            (Value::Counter(a), Value::Counter(b)) => *a += b,
            (Value::FloatCounter(a), Value::FloatCounter(b)) => *a += b,
            (Value::Gauge(a), Value::Gauge(b)) => *a = *b,
            (Value::Histogram(a), Value::Histogram(b)) => a.merge(b),
            _ => {}
        }
    }
}

/// One series in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesSnapshot {
    /// Name and labels.
    #[serde(with = "key_serde")]
    pub key: Key,
    /// Kind of the series.
    pub kind: MetricKind,
    /// Unit of the values.
    pub unit: Unit,
    /// The value.
    pub value: Value,
}

impl SeriesSnapshot {
    /// The histogram, if this is a histogram series.
    pub fn histogram(&self) -> Option<&HistogramSnapshot> {
        match &self.value {
            Value::Histogram(h) => Some(h),
            _ => None,
        }
    }
}

/// A set of series at one point in time, or over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Start of the window (cumulative snapshots: when the registry was created).
    pub start: SystemTime,
    /// End of the window: when it was read.
    pub end: SystemTime,
    /// The series, in a deterministic order (by key hash; sort by [`Key`] for display).
    pub series: Vec<SeriesSnapshot>,
}

impl Snapshot {
    /// The series with exactly this name and labels (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&SeriesSnapshot> {
        self.series.iter().find(|s| s.key.matches(name, labels))
    }

    /// The histogram with exactly this name and labels.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<&HistogramSnapshot> {
        self.get(name, labels).and_then(SeriesSnapshot::histogram)
    }

    /// The integer counter with exactly this name and labels.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.get(name, labels)?.value {
            Value::Counter(n) => Some(n),
            _ => None,
        }
    }

    /// The gauge with exactly this name and labels.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.get(name, labels)?.value {
            Value::Gauge(v) => Some(v),
            _ => None,
        }
    }

    /// Length of the window in seconds (at least one microsecond, to divide by).
    pub fn seconds(&self) -> f64 {
        self.end
            .duration_since(self.start)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            .max(1e-6)
    }
}

mod key_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    use crate::key::Key;

    #[derive(Serialize, Deserialize)]
    struct Repr {
        name: String,
        labels: BTreeMap<String, String>,
    }

    pub(super) fn serialize<S: Serializer>(key: &Key, s: S) -> Result<S::Ok, S::Error> {
        Repr {
            name: key.name().to_owned(),
            labels: key
                .labels()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let r = Repr::deserialize(d)?;
        let labels: Vec<(&str, &str)> = r
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Ok(Key::new(&r.name, &labels))
    }
}
