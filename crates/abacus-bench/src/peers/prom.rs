//! `prometheus` 0.14 (tikv/rust-prometheus).

use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};

use crate::{HandleSet, LABEL_KEY, LATENCY_BUCKETS_MS, METRIC_NAME, Target};

/// A `HistogramVec` with a `service` label, registered in its own `Registry`.
#[derive(Debug)]
pub struct Prom {
    registry: Registry,
    vec: HistogramVec,
}

impl Default for Prom {
    fn default() -> Self {
        Self::new()
    }
}

impl Prom {
    /// Fresh registry + histogram vec with [`LATENCY_BUCKETS_MS`].
    pub fn new() -> Self {
        let registry = Registry::new();
        let opts = HistogramOpts::new(METRIC_NAME, "request latency in milliseconds")
            .buckets(LATENCY_BUCKETS_MS.to_vec());
        let vec = HistogramVec::new(opts, &[LABEL_KEY]).expect("valid histogram opts");
        registry
            .register(Box::new(vec.clone()))
            .expect("register histogram vec");
        Prom { registry, vec }
    }

    /// The registry (for rendering with `TextEncoder`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Target for Prom {
    type Handles = PromHandles;

    fn name(&self) -> &'static str {
        "prometheus"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        self.vec
            .with_label_values(&[service])
            .observe(latency_ms as f64);
    }

    fn recorded_count(&self, service: &str) -> Option<u64> {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == METRIC_NAME)
            .flat_map(|f| f.get_metric())
            .find(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == LABEL_KEY && l.value() == service)
            })
            .map(|m| m.get_histogram().get_sample_count())
    }

    fn handles(&self, services: &[String]) -> Self::Handles {
        PromHandles {
            handles: services
                .iter()
                .map(|s| self.vec.with_label_values(&[s.as_str()]))
                .collect(),
        }
    }
}

/// Cached `prometheus::Histogram` handles.
#[derive(Debug)]
pub struct PromHandles {
    handles: Vec<Histogram>,
}

impl HandleSet for PromHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        self.handles[idx].observe(latency_ms as f64);
    }
}
