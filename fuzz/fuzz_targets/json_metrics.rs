//! `POST /metrics` bodies (object, array, NDJSON): any result is a typed error or samples
//! that keep the parser's promises, never more than `max_items`; applying them never panics.
#![no_main]

use abacus_fuzz::{apply_all, check_sample, fresh_applier};
use abacus_server::ingest::json::{
    JsonConfig, JsonIngestError, MAX_LISTED_ITEM_ERRORS, parse_metrics_body,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = JsonConfig {
        max_items: 64,
        ..JsonConfig::default()
    };
    match parse_metrics_body(data, &config) {
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
});
