//! Pure mapping between windows and rows of the `windows` table (no I/O).
//!
//! | column | content |
//! |---|---|
//! | `series` | canonical key `name{a="x",b="y"}` (labels sorted), part of the primary key |
//! | `window_start`, `window_end` | Unix ms; `(series, window_start)` is the primary key |
//! | `name`, `labels` | metric name and labels as a JSON object (to rebuild the key) |
//! | `kind` | `counter`, `float_counter`, `gauge`, `histogram` (the value's kind) |
//! | `unit` | `none`, `milliseconds`, `seconds`, `bytes` |
//! | `count` | histogram samples; the increase of an integer counter; 1 for others |
//! | `sum` | histogram sum, counter increase, gauge value |
//! | `min`, `max` | histogram min / max (NULL for other kinds or an empty histogram) |
//! | `buckets` | histograms only: JSON `{"scale":s,"zero":z,"int":b,"pos":[[i,c]..],"neg":[[i,c]..]}` |

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abacus::{HistogramSnapshot, Key, Snapshot, Value};
use serde::{Deserialize, Serialize};

use crate::sinks::{StorageError, series_key, unix_ms};
use crate::windows::{ClosedWindow, WindowValue};

/// One row of the `windows` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Canonical series key.
    pub series: String,
    /// Metric name.
    pub name: String,
    /// Labels as a JSON object.
    pub labels: String,
    /// Window start, Unix ms.
    pub window_start: i64,
    /// Window end, Unix ms.
    pub window_end: i64,
    /// Value kind.
    pub kind: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// See the module docs.
    pub count: i64,
    /// See the module docs.
    pub sum: f64,
    /// Histogram minimum.
    pub min: Option<f64>,
    /// Histogram maximum.
    pub max: Option<f64>,
    /// Histogram buckets, JSON.
    pub buckets: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Buckets {
    scale: i8,
    zero: u64,
    int: bool,
    pos: Vec<(i32, u64)>,
    neg: Vec<(i32, u64)>,
}

fn ms_i64(t: SystemTime) -> i64 {
    i64::try_from(unix_ms(t)).unwrap_or(i64::MAX)
}

fn unit_str(u: abacus::Unit) -> &'static str {
    match u {
        abacus::Unit::None => "none",
        abacus::Unit::Milliseconds => "milliseconds",
        abacus::Unit::Seconds => "seconds",
        abacus::Unit::Bytes => "bytes",
    }
}

/// The rows of one window, one per series.
pub fn rows(window: &Snapshot) -> Vec<Row> {
    let (start, end) = (ms_i64(window.start), ms_i64(window.end));
    window
        .series
        .iter()
        .map(|s| {
            let labels: BTreeMap<&str, &str> =
                s.key.labels().iter().map(|(k, v)| (&**k, &**v)).collect();
            let mut row = Row {
                series: series_key(&s.key),
                name: s.key.name().to_owned(),
                labels: serde_json::to_string(&labels).unwrap_or_else(|_| "{}".to_owned()),
                window_start: start,
                window_end: end,
                kind: "counter",
                unit: unit_str(s.unit),
                count: 1,
                sum: 0.0,
                min: None,
                max: None,
                buckets: None,
            };
            match &s.value {
                Value::Counter(n) => {
                    row.count = i64::try_from(*n).unwrap_or(i64::MAX);
                    row.sum = *n as f64;
                }
                Value::FloatCounter(x) => {
                    row.kind = "float_counter";
                    row.sum = *x;
                }
                Value::Gauge(g) => {
                    row.kind = "gauge";
                    row.sum = *g;
                }
                Value::Histogram(h) => {
                    row.kind = "histogram";
                    row.count = i64::try_from(h.count).unwrap_or(i64::MAX);
                    row.sum = h.sum;
                    if h.count > 0 {
                        row.min = Some(h.min);
                        row.max = Some(h.max);
                    }
                    let b = Buckets {
                        scale: h.scale,
                        zero: h.zero_count,
                        int: h.integers,
                        pos: h.positive.clone(),
                        neg: h.negative.clone(),
                    };
                    row.buckets = serde_json::to_string(&b).ok();
                }
            }
            row
        })
        .collect()
}

/// The columns [`decode`] needs, as read back.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Metric name.
    pub name: String,
    /// Labels JSON.
    pub labels: String,
    /// Window start, Unix ms.
    pub window_start: i64,
    /// Window end, Unix ms.
    pub window_end: i64,
    /// Value kind.
    pub kind: String,
    /// Count column.
    pub count: i64,
    /// Sum column.
    pub sum: f64,
    /// Min column.
    pub min: Option<f64>,
    /// Max column.
    pub max: Option<f64>,
    /// Buckets column.
    pub buckets: Option<String>,
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Rebuilds the key and window of a stored row.
///
/// # Errors
/// [`StorageError::Corrupt`] when the labels or buckets do not parse or the kind is unknown.
pub fn decode(r: &StoredRow) -> Result<(Key, ClosedWindow), StorageError> {
    let labels: BTreeMap<String, String> = serde_json::from_str(&r.labels)
        .map_err(|e| StorageError::Corrupt(format!("labels of {}: {e}", r.name)))?;
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let key = Key::new(&r.name, &pairs);
    let value = match r.kind.as_str() {
        "counter" | "float_counter" => WindowValue::Counter(r.sum),
        "gauge" => WindowValue::Gauge(r.sum),
        "histogram" => {
            let b: Buckets = serde_json::from_str(r.buckets.as_deref().unwrap_or(""))
                .map_err(|e| StorageError::Corrupt(format!("buckets of {}: {e}", r.name)))?;
            WindowValue::Histogram(HistogramSnapshot {
                scale: b.scale,
                count: u64::try_from(r.count).unwrap_or(0),
                sum: r.sum,
                min: r.min.unwrap_or(0.0),
                max: r.max.unwrap_or(0.0),
                zero_count: b.zero,
                positive: b.pos,
                negative: b.neg,
                integers: b.int,
            })
        }
        other => return Err(StorageError::Corrupt(format!("unknown kind {other:?}"))),
    };
    Ok((
        key,
        ClosedWindow {
            start: time(r.window_start),
            end: time(r.window_end),
            value,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abacus::Registry;

    fn stored(r: &Row) -> StoredRow {
        StoredRow {
            name: r.name.clone(),
            labels: r.labels.clone(),
            window_start: r.window_start,
            window_end: r.window_end,
            kind: r.kind.to_owned(),
            count: r.count,
            sum: r.sum,
            min: r.min,
            max: r.max,
            buckets: r.buckets.clone(),
        }
    }

    #[test]
    fn every_kind_round_trips_through_a_row() {
        let reg = Registry::new();
        reg.increment_counter("req", &[("svc", "a"), ("code", "200")], 7);
        reg.set_gauge("temp", &[], -3.5);
        for v in [1.0, 2.0, 40.0] {
            reg.record_f64("lat", &[("svc", "a")], v);
        }
        let w = reg.delta();
        let rows = rows(&w);
        assert_eq!(rows.len(), 3);
        for (row, s) in rows.iter().zip(&w.series) {
            let (key, cw) = decode(&stored(row)).unwrap();
            assert_eq!(key, s.key);
            assert_eq!(row.series, s.key.to_string());
            assert_eq!(cw.value, WindowValue::from_value(&s.value));
            assert_eq!(unix_ms(cw.start), unix_ms(w.start));
        }
        let req = rows.iter().find(|r| r.name == "req").unwrap();
        assert_eq!(req.series, "req{code=\"200\",svc=\"a\"}");
        assert_eq!((req.count, req.sum), (7, 7.0));
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let mut r = StoredRow {
            name: "x".into(),
            labels: "nope".into(),
            window_start: 0,
            window_end: 1,
            kind: "gauge".into(),
            count: 1,
            sum: 1.0,
            min: None,
            max: None,
            buckets: None,
        };
        assert!(decode(&r).is_err());
        r.labels = "{}".into();
        r.kind = "histogram".into();
        assert!(decode(&r).is_err());
        r.kind = "weird".into();
        assert!(decode(&r).is_err());
    }
}
