//! HTTP JSON ingest bodies (`POST /metrics`, `POST /latency`).
//!
//! # Body framing (both endpoints)
//!
//! A body is one of
//! * a single JSON object,
//! * a JSON array of objects (detected by the first non-whitespace byte `[`),
//! * NDJSON: objects separated by newlines. (Any whitespace between the
//!   objects is accepted, so `{..} {..}` works too.)
//!
//! A leading UTF-8 BOM is skipped. Items are numbered from 0 in input order.
//!
//! # All-or-nothing batches
//!
//! A body is either accepted whole or rejected whole: if *any* item is
//! invalid, [`JsonIngestError::InvalidItems`] lists the bad items (index and
//! message, at most [`MAX_LISTED_ITEM_ERRORS`] of them plus the total) and no
//! sample is returned, so nothing is half-applied and the client can fix and
//! resend the whole batch. Malformed JSON anywhere is a
//! [`JsonIngestError::Syntax`] error. Both map to HTTP 400;
//! [`JsonIngestError::TooManyItems`] maps to 413
//! (see [`JsonIngestError::status_code`]).
//!
//! # Nesting
//!
//! `serde_json` refuses input nested deeper than 128 levels (it reports a
//! "recursion limit exceeded" syntax error), so hostile deeply-nested bodies
//! cannot overflow the stack. Valid items are at most 2 levels deep anyway.
//! The server is expected to cap the body size before calling these functions.
//!
//! # `POST /metrics` items
//!
//! ```json
//! {"name":"cpu","value":42.5,"labels":{"host":"a"},"type":"gauge","timestamp":1700000000}
//! ```
//! * `name` (string, required): must match `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most
//!   200 bytes. Names are *validated, not sanitised*.
//! * `value` (number, required).
//! * `type` (optional): `"counter"` → [`SampleValue::Counter`] (value must be
//!   `>= 0`), `"gauge"` → [`SampleValue::Gauge`], `"histogram"` (the default)
//!   → [`SampleValue::Observe`] with count 1.
//! * `labels` (optional object): values may be strings, numbers or booleans
//!   (the latter two are stringified as in JSON, e.g. `1.5`, `true`); names
//!   must match `[a-zA-Z_][a-zA-Z0-9_]*` without `__` prefix; at most 32
//!   labels, names ≤ 128 bytes, values ≤ 1024 bytes.
//! * `timestamp` (optional): must be a finite number `>= 0` (any unit); it is
//!   validated but otherwise ignored — samples are applied at receive time.
//! * Any other field is rejected (catches typos like `"lables"`).
//!
//! # `POST /latency` items
//!
//! ```json
//! {"service":"api","latency_ms":12}
//! ```
//! becomes `Sample { name: "latency", labels: [("service", "api")],
//! value: Observe { value: 12.0, count: 1 } }` — the histogram `latency` is in
//! **milliseconds**. `service` must be a non-empty string ≤ 1024 bytes;
//! `latency_ms` a finite number `>= 0`. Other fields are rejected.

use serde_json::{Map, Value};

use crate::ingest::{
    Limits, Sample, SampleValue, check_histogram_labels, normalize_labels, validate_metric_name,
};

/// Metric name used for `POST /latency` samples (unit: milliseconds).
pub const LATENCY_METRIC: &str = "latency";
/// Label carrying the `service` field of `POST /latency` items.
pub const LATENCY_SERVICE_LABEL: &str = "service";
/// At most this many item errors are listed in
/// [`JsonIngestError::InvalidItems`].
pub const MAX_LISTED_ITEM_ERRORS: usize = 100;

/// Configuration of the JSON parsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonConfig {
    /// Name / label limits.
    pub limits: Limits,
    /// Maximum number of items per body. Default 10 000.
    pub max_items: usize,
}

impl Default for JsonConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_items: 10_000,
        }
    }
}

/// One invalid item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// 0-based index of the item in the body.
    pub index: usize,
    /// Human-readable reason.
    pub message: String,
}

/// Why a JSON body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonIngestError {
    /// The body is empty or whitespace only.
    #[error("request body is empty")]
    EmptyBody,
    /// The body is not valid JSON (or nests deeper than 128 levels).
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// More items than [`JsonConfig::max_items`].
    #[error("too many items in body (limit {max})")]
    TooManyItems {
        /// The configured limit.
        max: usize,
    },
    /// At least one item is invalid; the whole batch is rejected.
    #[error("{total} invalid item(s); first: item {}: {}",
        .items.first().map_or(0, |e| e.index),
        .items.first().map_or("", |e| e.message.as_str()))]
    InvalidItems {
        /// Total number of invalid items.
        total: usize,
        /// The first [`MAX_LISTED_ITEM_ERRORS`] invalid items, by index.
        items: Vec<ItemError>,
    },
}

impl JsonIngestError {
    /// HTTP status code for this error: 413 for [`Self::TooManyItems`],
    /// otherwise 400.
    #[must_use]
    pub const fn status_code(&self) -> u16 {
        match self {
            Self::TooManyItems { .. } => 413,
            _ => 400,
        }
    }
}

fn syntax(e: &serde_json::Error) -> JsonIngestError {
    JsonIngestError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Split a body into JSON values (single object / array / NDJSON).
fn split_items(body: &[u8], max_items: usize) -> Result<Vec<Value>, JsonIngestError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(JsonIngestError::EmptyBody);
    }
    let items = if trimmed.first() == Some(&b'[') {
        serde_json::from_slice::<Vec<Value>>(body).map_err(|e| syntax(&e))?
    } else {
        let mut items = Vec::new();
        for item in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
            items.push(item.map_err(|e| syntax(&e))?);
            if items.len() > max_items {
                return Err(JsonIngestError::TooManyItems { max: max_items });
            }
        }
        items
    };
    if items.len() > max_items {
        return Err(JsonIngestError::TooManyItems { max: max_items });
    }
    Ok(items)
}

fn parse_all(
    body: &[u8],
    config: &JsonConfig,
    f: impl Fn(&Map<String, Value>, &Limits) -> Result<Sample, String>,
) -> Result<Vec<Sample>, JsonIngestError> {
    let items = split_items(body, config.max_items)?;
    let mut samples = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (index, item) in items.iter().enumerate() {
        let result = match item {
            Value::Object(obj) => f(obj, &config.limits),
            other => Err(format!("expected a JSON object, got {}", kind(other))),
        };
        match result {
            Ok(s) => samples.push(s),
            Err(message) => {
                total += 1;
                if errors.len() < MAX_LISTED_ITEM_ERRORS {
                    errors.push(ItemError { index, message });
                }
            }
        }
    }
    if total > 0 {
        return Err(JsonIngestError::InvalidItems {
            total,
            items: errors,
        });
    }
    Ok(samples)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn finite_number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(format!("field {field:?} is not a finite number")),
        },
        Some(other) => Err(format!(
            "field {field:?} must be a number, got {}",
            kind(other)
        )),
    }
}

fn check_fields(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field {k:?} (allowed: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn metric_item(obj: &Map<String, Value>, limits: &Limits) -> Result<Sample, String> {
    check_fields(obj, &["name", "value", "labels", "type", "timestamp"])?;
    let name = match obj.get("name") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "field \"name\" must be a string, got {}",
                kind(other)
            ));
        }
        None => return Err("missing field \"name\"".to_owned()),
    };
    validate_metric_name(name, limits).map_err(|e| e.to_string())?;
    let value = finite_number(obj, "value")?.ok_or_else(|| "missing field \"value\"".to_owned())?;
    if finite_number(obj, "timestamp")?.is_some_and(|ts| ts < 0.0) {
        return Err("field \"timestamp\" must not be negative".to_owned());
    }
    let labels = match obj.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => {
            let mut labels = Vec::with_capacity(map.len());
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!(
                            "label {k:?} must be a string, number or boolean, got {}",
                            kind(other)
                        ));
                    }
                };
                labels.push((k.clone(), v));
            }
            normalize_labels(labels, limits).map_err(|e| e.to_string())?
        }
        Some(other) => {
            return Err(format!(
                "field \"labels\" must be an object, got {}",
                kind(other)
            ));
        }
    };
    let value = match obj.get("type") {
        None | Some(Value::Null) => SampleValue::Observe { value, count: 1 },
        Some(Value::String(t)) => match t.as_str() {
            "histogram" => SampleValue::Observe { value, count: 1 },
            "gauge" => SampleValue::Gauge(value),
            "counter" => {
                if value < 0.0 {
                    return Err("counter increment must not be negative".to_owned());
                }
                SampleValue::Counter(value + 0.0)
            }
            other => {
                return Err(format!(
                    "unknown type {other:?} (expected counter, gauge or histogram)"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "field \"type\" must be a string, got {}",
                kind(other)
            ));
        }
    };
    if matches!(value, SampleValue::Observe { .. }) {
        check_histogram_labels(&labels).map_err(|e| e.to_string())?;
    }
    Ok(Sample {
        name: name.clone(),
        labels,
        value,
    })
}

fn latency_item(obj: &Map<String, Value>, limits: &Limits) -> Result<Sample, String> {
    check_fields(obj, &["service", "latency_ms"])?;
    let service = match obj.get("service") {
        Some(Value::String(s)) if s.is_empty() => {
            return Err("field \"service\" is empty".to_owned());
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "field \"service\" must be a string, got {}",
                kind(other)
            ));
        }
        None => return Err("missing field \"service\"".to_owned()),
    };
    let latency = finite_number(obj, "latency_ms")?
        .ok_or_else(|| "missing field \"latency_ms\"".to_owned())?;
    if latency < 0.0 {
        return Err("field \"latency_ms\" must not be negative".to_owned());
    }
    let labels = normalize_labels(
        vec![(LATENCY_SERVICE_LABEL.to_owned(), service.clone())],
        limits,
    )
    .map_err(|e| e.to_string())?;
    Ok(Sample {
        name: LATENCY_METRIC.to_owned(),
        labels,
        value: SampleValue::Observe {
            value: latency + 0.0,
            count: 1,
        },
    })
}

/// Parse a `POST /metrics` body (see module docs).
///
/// # Errors
/// See [`JsonIngestError`]; any invalid item rejects the whole body.
pub fn parse_metrics_body(
    body: &[u8],
    config: &JsonConfig,
) -> Result<Vec<Sample>, JsonIngestError> {
    parse_all(body, config, metric_item)
}

/// Parse a `POST /latency` body (see module docs).
///
/// # Errors
/// See [`JsonIngestError`]; any invalid item rejects the whole body.
pub fn parse_latency_body(
    body: &[u8],
    config: &JsonConfig,
) -> Result<Vec<Sample>, JsonIngestError> {
    parse_all(body, config, latency_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> JsonConfig {
        JsonConfig::default()
    }

    fn metrics(body: &str) -> Result<Vec<Sample>, JsonIngestError> {
        parse_metrics_body(body.as_bytes(), &cfg())
    }

    fn item_errors(r: Result<Vec<Sample>, JsonIngestError>) -> Vec<ItemError> {
        match r {
            Err(JsonIngestError::InvalidItems { items, .. }) => items,
            other => panic!("expected InvalidItems, got {other:?}"),
        }
    }

    #[test]
    fn single_gauge_object_is_parsed_with_labels() {
        let s =
            metrics(r#"{"name":"cpu","value":42.5,"labels":{"host":"a"},"type":"gauge"}"#).unwrap();
        assert_eq!(
            s,
            vec![Sample {
                name: "cpu".into(),
                labels: vec![("host".into(), "a".into())],
                value: SampleValue::Gauge(42.5),
            }]
        );
    }

    #[test]
    fn missing_type_defaults_to_histogram_observation() {
        let s = metrics(r#"{"name":"lat","value":3}"#).unwrap();
        assert_eq!(
            s[0].value,
            SampleValue::Observe {
                value: 3.0,
                count: 1
            }
        );
        let s = metrics(r#"{"name":"lat","value":3,"type":"histogram"}"#).unwrap();
        assert_eq!(
            s[0].value,
            SampleValue::Observe {
                value: 3.0,
                count: 1
            }
        );
    }

    #[test]
    fn counter_type_yields_counter_increment() {
        let s = metrics(r#"{"name":"hits","value":2,"type":"counter"}"#).unwrap();
        assert_eq!(s[0].value, SampleValue::Counter(2.0));
    }

    #[test]
    fn negative_counter_is_an_item_error() {
        let errs = item_errors(metrics(r#"{"name":"hits","value":-2,"type":"counter"}"#));
        assert_eq!(errs[0].index, 0);
        assert!(errs[0].message.contains("negative"));
    }

    #[test]
    fn array_body_yields_samples_in_order() {
        let s =
            metrics(r#"[{"name":"a","value":1},{"name":"b","value":2,"type":"gauge"}]"#).unwrap();
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn ndjson_body_with_blank_lines_and_crlf_is_parsed() {
        let s =
            metrics("{\"name\":\"a\",\"value\":1}\r\n\n{\"name\":\"b\",\"value\":2}\n").unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn leading_bom_is_skipped() {
        let s = parse_metrics_body(b"\xEF\xBB\xBF{\"name\":\"a\",\"value\":1}", &cfg()).unwrap();
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn batch_with_one_invalid_item_is_rejected_whole_listing_bad_indices() {
        let r = metrics(
            r#"[{"name":"a","value":1},{"name":"","value":1},{"name":"c"},{"name":"d","value":1}]"#,
        );
        let err = r.unwrap_err();
        assert_eq!(err.status_code(), 400);
        match err {
            JsonIngestError::InvalidItems { total, items } => {
                assert_eq!(total, 2);
                assert_eq!(items.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2]);
                assert!(items[1].message.contains("value"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn listed_item_errors_are_capped_but_total_is_exact() {
        let body: Vec<String> = (0..150)
            .map(|_| r#"{"name":"1bad","value":1}"#.to_owned())
            .collect();
        match metrics(&body.join("\n")) {
            Err(JsonIngestError::InvalidItems { total, items }) => {
                assert_eq!(total, 150);
                assert_eq!(items.len(), MAX_LISTED_ITEM_ERRORS);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_object_item_is_an_item_error() {
        let errs = item_errors(metrics(r#"[{"name":"a","value":1}, 5]"#));
        assert_eq!(errs[0].index, 1);
        assert!(errs[0].message.contains("object"));
    }

    #[test]
    fn invalid_names_are_rejected_not_sanitised() {
        for name in ["", "1abc", "a.b", "a-b", &"a".repeat(201)] {
            let body = serde_json::json!({"name": name, "value": 1}).to_string();
            assert!(metrics(&body).is_err(), "name {name:?}");
        }
        let ok = serde_json::json!({"name": "a".repeat(200), "value": 1}).to_string();
        assert!(metrics(&ok).is_ok());
    }

    #[test]
    fn label_limits_are_enforced() {
        let mut labels = serde_json::Map::new();
        for i in 0..33 {
            labels.insert(format!("l{i}"), Value::from("v"));
        }
        let body = serde_json::json!({"name":"a","value":1,"labels":labels}).to_string();
        assert!(item_errors(metrics(&body))[0].message.contains("labels"));
        let body = serde_json::json!({"name":"a","value":1,"labels":{"a.b":"x"}}).to_string();
        assert!(metrics(&body).is_err());
        let body =
            serde_json::json!({"name":"a","value":1,"labels":{"a":"x".repeat(1025)}}).to_string();
        assert!(metrics(&body).is_err());
        let body =
            serde_json::json!({"name":"a","value":1,"labels":{"a":{"nested":1}}}).to_string();
        assert!(metrics(&body).is_err());
        let body = serde_json::json!({"name":"a","value":1,"labels":["x"]}).to_string();
        assert!(metrics(&body).is_err());
    }

    #[test]
    fn numeric_and_boolean_label_values_are_stringified() {
        let s =
            metrics(r#"{"name":"a","value":1,"labels":{"code":200,"ok":true,"r":0.5}}"#).unwrap();
        assert_eq!(
            s[0].labels,
            vec![
                ("code".to_owned(), "200".to_owned()),
                ("ok".to_owned(), "true".to_owned()),
                ("r".to_owned(), "0.5".to_owned())
            ]
        );
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        assert!(metrics(r#"{"name":"a","value":1,"lables":{}}"#).is_err());
        assert!(metrics(r#"{"name":"a","value":1,"type":"summary"}"#).is_err());
        assert!(metrics(r#"{"name":"a","value":1,"type":3}"#).is_err());
    }

    #[test]
    fn non_numeric_value_is_rejected() {
        assert!(metrics(r#"{"name":"a","value":"1"}"#).is_err());
        assert!(metrics(r#"{"name":"a","value":null}"#).is_err());
    }

    #[test]
    fn timestamp_is_validated_but_ignored() {
        assert!(metrics(r#"{"name":"a","value":1,"timestamp":1700000000123}"#).is_ok());
        assert!(metrics(r#"{"name":"a","value":1,"timestamp":-1}"#).is_err());
        assert!(metrics(r#"{"name":"a","value":1,"timestamp":"yesterday"}"#).is_err());
    }

    #[test]
    fn malformed_json_is_a_syntax_error_with_position() {
        match metrics("{\"name\":\"a\",\"value\":1}\n{\"name\":") {
            Err(JsonIngestError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            metrics("[{]"),
            Err(JsonIngestError::Syntax { .. })
        ));
    }

    #[test]
    fn number_out_of_f64_range_is_a_syntax_error() {
        assert!(matches!(
            metrics(r#"{"name":"a","value":1e400}"#),
            Err(JsonIngestError::Syntax { .. })
        ));
    }

    #[test]
    fn empty_body_is_rejected() {
        assert_eq!(metrics("  \n "), Err(JsonIngestError::EmptyBody));
        assert_eq!(metrics(""), Err(JsonIngestError::EmptyBody));
    }

    #[test]
    fn too_many_items_maps_to_413() {
        let c = JsonConfig {
            max_items: 2,
            ..cfg()
        };
        let nd = "{\"name\":\"a\",\"value\":1}\n".repeat(3);
        let err = parse_metrics_body(nd.as_bytes(), &c).unwrap_err();
        assert_eq!(err, JsonIngestError::TooManyItems { max: 2 });
        assert_eq!(err.status_code(), 413);
        let arr = format!("[{}]", [r#"{"name":"a","value":1}"#; 3].join(","));
        assert_eq!(
            parse_metrics_body(arr.as_bytes(), &c),
            Err(JsonIngestError::TooManyItems { max: 2 })
        );
    }

    #[test]
    fn deeply_nested_body_is_rejected_without_stack_overflow() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            metrics(&body),
            Err(JsonIngestError::Syntax { .. })
        ));
        let body = format!(
            "{{\"name\":\"a\",\"value\":1,\"labels\":{}}}",
            "{\"a\":".repeat(10_000)
        );
        assert!(matches!(
            metrics(&body),
            Err(JsonIngestError::Syntax { .. })
        ));
    }

    #[test]
    fn latency_item_becomes_millisecond_observation_on_latency_metric() {
        let s = parse_latency_body(br#"{"service":"api","latency_ms":12}"#, &cfg()).unwrap();
        assert_eq!(
            s,
            vec![Sample {
                name: "latency".into(),
                labels: vec![("service".into(), "api".into())],
                value: SampleValue::Observe {
                    value: 12.0,
                    count: 1
                },
            }]
        );
    }

    #[test]
    fn latency_array_and_ndjson_are_accepted() {
        let arr = br#"[{"service":"a","latency_ms":1},{"service":"b","latency_ms":2.5}]"#;
        assert_eq!(parse_latency_body(arr, &cfg()).unwrap().len(), 2);
        let nd = b"{\"service\":\"a\",\"latency_ms\":1}\n{\"service\":\"b\",\"latency_ms\":2}\n";
        assert_eq!(parse_latency_body(nd, &cfg()).unwrap().len(), 2);
    }

    #[test]
    fn invalid_latency_items_are_rejected() {
        for body in [
            r#"{"service":"","latency_ms":1}"#,
            r#"{"service":"a","latency_ms":-1}"#,
            r#"{"service":"a"}"#,
            r#"{"latency_ms":1}"#,
            r#"{"service":5,"latency_ms":1}"#,
            r#"{"service":"a","latency_ms":"1"}"#,
            r#"{"service":"a","latency_ms":1,"extra":1}"#,
        ] {
            assert!(
                parse_latency_body(body.as_bytes(), &cfg()).is_err(),
                "body {body}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_metrics_body_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_metrics_body(&bytes, &cfg());
            let _ = parse_latency_body(&bytes, &cfg());
        }

        #[test]
        fn json_like_body_never_panics(s in r#"[\[\]{}":,a-z0-9.\- \n]{0,200}"#) {
            let _ = parse_metrics_body(s.as_bytes(), &cfg());
            let _ = parse_latency_body(s.as_bytes(), &cfg());
        }

        #[test]
        fn accepted_samples_always_have_valid_names_and_finite_values(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,30}", v in -1e9f64..1e9, t in 0usize..3
        ) {
            let ty = ["counter", "gauge", "histogram"][t];
            let body = serde_json::json!({"name": name, "value": v, "type": ty}).to_string();
            if let Ok(samples) = parse_metrics_body(body.as_bytes(), &cfg()) {
                for s in samples {
                    prop_assert!(crate::ingest::is_valid_metric_name(&s.name));
                    if let SampleValue::Counter(c) = s.value { prop_assert!(c >= 0.0); }
                }
            } else {
                prop_assert!(ty == "counter" && v < 0.0);
            }
        }
    }
}
