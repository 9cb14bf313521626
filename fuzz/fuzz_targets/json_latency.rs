//! `POST /latency` bodies (object, array, NDJSON): any result is a typed error or samples
//! that keep the parser's promises, never more than `max_items`; applying them never panics.
#![no_main]

use abacus_server::ingest::json::parse_latency_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| abacus_fuzz::check_json_body(data, parse_latency_body));
