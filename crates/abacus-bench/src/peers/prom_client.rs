//! `prometheus-client` 0.25 (the official Prometheus Rust client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::{HandleSet, LATENCY_BUCKETS_MS, METRIC_NAME, Target};

/// Derived label set with the single `service` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name.
    pub service: String,
}

fn new_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

type LatencyFamily = Family<ServiceLabels, Histogram, fn() -> Histogram>;

/// `Family<ServiceLabels, Histogram>` registered in its own `Registry`.
#[derive(Debug)]
pub struct PromClient {
    registry: Registry,
    family: LatencyFamily,
}

impl Default for PromClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PromClient {
    /// Fresh registry + family with [`LATENCY_BUCKETS_MS`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let family: LatencyFamily = Family::new_with_constructor(new_histogram);
        registry.register(
            METRIC_NAME,
            "request latency in milliseconds",
            family.clone(),
        );
        PromClient { registry, family }
    }

    /// The registry (for rendering with `encoding::text::encode`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Target for PromClient {
    type Handles = PromClientHandles;

    fn name(&self) -> &'static str {
        "prometheus_client"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        self.family
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .observe(latency_ms as f64);
    }

    fn recorded_count(&self, service: &str) -> Option<u64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        super::metrics_rs::count_in_text_exposition(&text, service)
    }

    fn handles(&self, services: &[String]) -> Self::Handles {
        PromClientHandles {
            handles: services
                .iter()
                .map(|s| {
                    self.family
                        .get_or_create_owned(&ServiceLabels { service: s.clone() })
                })
                .collect(),
        }
    }
}

/// Cached `prometheus_client` `Histogram` handles (clones share state).
#[derive(Debug)]
pub struct PromClientHandles {
    handles: Vec<Histogram>,
}

impl HandleSet for PromClientHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        self.handles[idx].observe(latency_ms as f64);
    }
}
