//! DynamoDB export, on when a table/endpoint is configured.
//!
//! Table (created if absent, on-demand billing): partition key `series` (S, the canonical
//! series key), sort key `window_start` (N, Unix ms). Other attributes mirror the SQLite
//! columns ([`crate::sinks::sqlite::encode`]): `window_end` (N), `name`, `labels` (JSON),
//! `kind`, `unit`, `count` (N), `sum` (N), `min`/`max` (N, histograms), `buckets` (JSON).
//! A window is written with `BatchWriteItem` in chunks of 25 puts; unprocessed items are
//! retried with backoff. Puts overwrite, so a retried window is stored once.
//!
//! Credentials and region come from the usual AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_REGION`, profiles, ...) and the `--dynamodb-*` flags. With an endpoint override and
//! no access key in the environment, static dummy credentials are used (local emulators such
//! as dynalite accept any), so no instance-metadata endpoint is ever probed.

pub mod encode;
pub mod sink;
