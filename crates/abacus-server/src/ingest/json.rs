//! HTTP JSON ingest.
