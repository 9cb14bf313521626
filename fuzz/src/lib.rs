//! Invariant checks shared by the fuzz targets: what every parser promises about the
//! [`Sample`]s it produces (see `abacus_server::ingest`), a registry to apply them to, and a
//! strict parser for the Prometheus text exposition.
#![forbid(unsafe_code)]

use abacus::Registry;
use abacus_server::apply::Applier;
use abacus_server::ingest::json::{JsonConfig, JsonIngestError, MAX_LISTED_ITEM_ERRORS};
use abacus_server::ingest::{
    Limits, Sample, SampleValue, is_valid_label_name, is_valid_metric_name,
};

fn finite_opt(x: Option<f64>, what: &str, s: &Sample) {
    if let Some(v) = x {
        assert!(v.is_finite(), "{what} {v} not finite in {s:?}");
    }
}

/// Panics unless `s` keeps the promises every ingest parser makes: a valid metric name
/// within the limit, labels sorted by name, unique, valid and within limits, finite values,
/// non-negative counters, histograms whose counts add up.
pub fn check_sample(s: &Sample, limits: &Limits) {
    assert!(is_valid_metric_name(&s.name), "invalid name {:?}", s.name);
    assert!(
        s.name.len() <= limits.max_name_len,
        "name too long: {}",
        s.name.len()
    );
    assert!(
        s.labels.len() <= limits.max_labels,
        "too many labels: {s:?}"
    );
    for w in s.labels.windows(2) {
        assert!(w[0].0 < w[1].0, "labels not sorted/unique: {:?}", s.labels);
    }
    for (k, v) in &s.labels {
        assert!(is_valid_label_name(k), "invalid label name {k:?}");
        assert!(k.len() <= limits.max_label_name_len, "label name too long");
        assert!(
            v.len() <= limits.max_label_value_len,
            "label value too long"
        );
    }
    match &s.value {
        SampleValue::Counter(x) => {
            assert!(x.is_finite() && *x >= 0.0, "bad counter {x}");
            assert!(x.is_sign_positive(), "negative zero counter");
        }
        SampleValue::Gauge(x) | SampleValue::GaugeAdd(x) => assert!(x.is_finite(), "{s:?}"),
        SampleValue::Observe { value, count } => {
            assert!(value.is_finite(), "{s:?}");
            assert!(*count >= 1, "{s:?}");
        }
        SampleValue::SetMember(_) => {}
        SampleValue::ExplicitHistogram(h) => {
            assert!(h.bounds.iter().all(|b| b.is_finite()), "{s:?}");
            assert!(h.bounds.windows(2).all(|w| w[0] < w[1]), "{s:?}");
            if !h.counts.is_empty() {
                assert_eq!(h.counts.len(), h.bounds.len() + 1, "{s:?}");
                let total = h.counts.iter().try_fold(0u64, |a, c| a.checked_add(*c));
                assert_eq!(total, Some(h.count), "{s:?}");
            }
            finite_opt(h.sum, "sum", s);
            finite_opt(h.min, "min", s);
            finite_opt(h.max, "max", s);
        }
        SampleValue::ExpHistogram(h) => {
            assert!((-10..=20).contains(&h.scale), "{s:?}");
            assert!(
                h.zero_threshold.is_finite() && h.zero_threshold >= 0.0,
                "{s:?}"
            );
            let total = h
                .positive
                .total()
                .and_then(|t| t.checked_add(h.negative.total()?))
                .and_then(|t| t.checked_add(h.zero_count));
            assert_eq!(total, Some(h.count), "{s:?}");
            finite_opt(h.sum, "sum", s);
            finite_opt(h.min, "min", s);
            finite_opt(h.max, "max", s);
        }
    }
}

/// An applier over a fresh registry with small bounds (so the bounds are reached).
pub fn fresh_applier() -> Applier {
    let registry = Registry::builder()
        .max_series(64)
        .build()
        .expect("valid registry settings");
    Applier::new(registry, 64, 16)
}

/// Applies every sample (rejects are fine: they are typed and nothing is recorded), then
/// takes a delta and renders it, which walks every series that was written.
pub fn apply_all(applier: &Applier, samples: &[Sample]) -> usize {
    let mut accepted = 0;
    for s in samples {
        if applier.apply(s).is_ok() {
            accepted += 1;
        }
    }
    applier.close_sets();
    let snap = applier.registry().snapshot();
    let text = abacus::exposition::prometheus::render(&snap, &Default::default());
    check_exposition(&text);
    accepted
}

/// The JSON ingest targets (`POST /metrics`, `POST /latency`): `parse` on `data` (at most 64
/// items) gives samples that keep the promises, never more than `max_items`, and apply
/// without panicking; or an item error listing the first items in order; or a 400/413.
pub fn check_json_body(
    data: &[u8],
    parse: fn(&[u8], &JsonConfig) -> Result<Vec<Sample>, JsonIngestError>,
) {
    let config = JsonConfig {
        max_items: 64,
        ..JsonConfig::default()
    };
    match parse(data, &config) {
        Ok(samples) => {
            assert!(
                samples.len() <= config.max_items,
                "{} samples",
                samples.len()
            );
            for s in &samples {
                check_sample(s, &config.limits);
            }
            apply_all(&fresh_applier(), &samples);
        }
        Err(JsonIngestError::InvalidItems { total, items }) => {
            assert!(total >= 1 && total <= config.max_items);
            assert_eq!(items.len(), total.min(MAX_LISTED_ITEM_ERRORS));
            assert!(items.windows(2).all(|w| w[0].index < w[1].index));
        }
        Err(e) => assert!(matches!(e.status_code(), 400 | 413), "{e}"),
    }
}

/// One sample line of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpoLine {
    /// Metric name.
    pub name: String,
    /// Label pairs with their values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value as written.
    pub value: String,
}

/// Parses one sample line of the Prometheus text format 0.0.4 strictly:
/// `name{label="value",...} value [timestamp]` with only `\\`, `\"` and `\n` escapes.
///
/// # Errors
/// A description of the first syntax error.
pub fn parse_sample_line(line: &str) -> Result<ExpoLine, String> {
    let name_end = line
        .find(|c: char| c == '{' || c == ' ')
        .ok_or("no value")?;
    let name = &line[..name_end];
    if !is_valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without =")?;
            let lname = &rest[..eq];
            // `le` / `quantile` and the reserved names the renderer may add are valid
            // label names too; only the grammar matters here.
            if lname.is_empty()
                || !lname.bytes().enumerate().all(|(i, b)| {
                    b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit())
                })
            {
                return Err(format!("bad label name {lname:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in label value".to_owned()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((lname.to_owned(), value));
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected , or }".to_owned());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before value")?;
    let mut parts = rest.split(' ');
    let value = parts.next().unwrap_or_default();
    let numeric = matches!(value, "+Inf" | "-Inf" | "NaN") || value.parse::<f64>().is_ok();
    if !numeric {
        return Err(format!("bad value {value:?}"));
    }
    if let Some(ts) = parts.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("bad timestamp {ts:?}"));
    }
    if parts.next().is_some() {
        return Err("trailing fields".to_owned());
    }
    Ok(ExpoLine {
        name: name.to_owned(),
        labels,
        value: value.to_owned(),
    })
}

/// Panics unless every line of `text` is a comment or a strictly valid sample line.
pub fn check_exposition(text: &str) -> Vec<ExpoLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample_line(line) {
            Ok(l) => out.push(l),
            Err(e) => panic!("invalid exposition line {line:?}: {e}\n{text}"),
        }
    }
    out
}

/// The OTLP pipeline shared by the protobuf and JSON targets.
pub mod otlp {
    use std::io::Write as _;

    use abacus_server::ingest::otlp::convert::{
        ConvertConfig, MAX_ERROR_MESSAGES, convert_request,
    };
    use abacus_server::ingest::otlp::decode::{
        DecodeError, DecodeLimits, decode_request, decompress,
    };
    use abacus_server::ingest::otlp::temporality::{CumulativeToDelta, TemporalityConfig};

    use crate::{apply_all, check_sample, fresh_applier};

    const LIMITS: DecodeLimits = DecodeLimits {
        max_body_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 16,
    };

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("writing to a Vec");
        e.finish().expect("writing to a Vec")
    }

    /// Decode `data` as a body of `content_type` (identity, then gzipped: both must agree),
    /// gunzip `data` itself within the limit, then convert and apply what decoded.
    pub fn run(data: &[u8], content_type: Option<&str>) {
        // `data` as a gzip body: never more than the decompressed limit.
        match decompress(data, Some("gzip"), &LIMITS) {
            Ok(out) => assert!(out.len() <= LIMITS.max_decompressed_bytes),
            Err(DecodeError::TooLarge { limit }) => {
                assert_eq!(limit, LIMITS.max_decompressed_bytes)
            }
            Err(DecodeError::Gzip(_)) => {}
            Err(e) => panic!("unexpected gunzip error {e}"),
        }

        let plain = decode_request(data, content_type, None, &LIMITS);
        if data.len() <= LIMITS.max_decompressed_bytes {
            let zipped = decode_request(&gzip(data), content_type, Some("gzip"), &LIMITS);
            match (&plain, &zipped) {
                // Compared re-encoded: `PartialEq` fails on NaN fields (a NaN
                // `zero_threshold` is a valid decode, later rejected by convert).
                (Ok(a), Ok(b)) => assert_eq!(
                    prost::Message::encode_to_vec(a),
                    prost::Message::encode_to_vec(b),
                    "gzip changed the decoded request"
                ),
                (Err(_), Err(_)) => {}
                _ => panic!("gzip and identity disagree: {plain:?} vs {zipped:?}"),
            }
        }
        let Ok(req) = plain else { return };

        let config = ConvertConfig {
            max_buckets: 64,
            ..ConvertConfig::default()
        };
        let mut tracker = CumulativeToDelta::new(
            TemporalityConfig {
                max_streams: 16,
                ..TemporalityConfig::default()
            },
            0,
        );
        let applier = fresh_applier();
        for _pass in 0..2 {
            let out = convert_request(&req, &mut tracker, &config);
            assert!(out.errors.len() <= MAX_ERROR_MESSAGES);
            assert_eq!(
                out.error_message().is_empty(),
                out.rejected_data_points == 0 && out.errors.is_empty()
            );
            assert!(
                tracker.len() <= 16,
                "tracker holds {} streams",
                tracker.len()
            );
            for s in &out.samples {
                check_sample(s, &config.limits);
            }
            apply_all(&applier, &out.samples);
        }
    }
}
