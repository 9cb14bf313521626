//! Prometheus exposition of arbitrary label values: names and label values cut from the
//! input go through the JSON ingest path into a registry; the rendered text (0.0.4 and
//! OpenMetrics) must parse strictly and give back every label value exactly.
#![no_main]

use abacus::exposition::prometheus::{Format, RenderOptions, render};
use abacus_fuzz::{check_exposition, fresh_applier};
use abacus_server::ingest::json::{JsonConfig, parse_metrics_body};
use abacus_server::ingest::{sanitize_label_name, sanitize_metric_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Pieces separated by NUL: a name, then label name / value pairs.
    let mut pieces = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let raw_name = pieces.next().unwrap_or_default();
    let name = sanitize_metric_name(&raw_name);
    let mut labels = serde_json::Map::new();
    while let (Some(k), Some(v)) = (pieces.next(), pieces.next()) {
        labels.insert(
            sanitize_label_name(&k),
            serde_json::Value::String(v.into_owned()),
        );
    }
    let kind = ["gauge", "counter", "histogram"][data.len() % 3];
    let body = serde_json::json!({"name": name, "type": kind, "value": 3, "labels": labels});
    let Ok(samples) = parse_metrics_body(body.to_string().as_bytes(), &JsonConfig::default())
    else {
        return;
    };
    let applier = fresh_applier();
    for s in &samples {
        applier.apply(s).expect("a fresh registry takes one sample");
    }
    let snap = applier.registry().snapshot();
    for format in [Format::Text004, Format::OpenMetrics] {
        let text = render(
            &snap,
            &RenderOptions {
                format,
                ..RenderOptions::default()
            },
        );
        let lines = check_exposition(&text);
        for s in &samples {
            let found = lines.iter().any(|l| {
                l.name.starts_with(&s.name)
                    && s.labels
                        .iter()
                        .all(|(k, v)| l.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            });
            assert!(found, "sample {s:?} not found in\n{text}");
        }
    }
});
