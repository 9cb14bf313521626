//! abacus itself, used the way its docs show: `record_latency(&str, ms)` by name, and
//! `Registry::latency(service)` handles resolved once by each worker and bound to it with
//! `Histogram::local()` (the harness resolves handles on the worker thread that uses them).

use abacus::Registry;
use abacus::exposition::prometheus::{RenderOptions, render_registry};

use crate::{HandleSet, LATENCY_BUCKETS_MS, METRIC_NAME, Target};

/// An abacus registry whose latency metric has the benchmark's metric name.
#[derive(Debug)]
pub struct Abacus {
    registry: Registry,
    render_opts: RenderOptions,
}

impl Default for Abacus {
    fn default() -> Self {
        Self::new()
    }
}

impl Abacus {
    /// A registry large enough for the Zipf10k workload's 10,000 series.
    pub fn new() -> Self {
        let registry = Registry::builder()
            .max_series(20_000)
            .latency_metric(METRIC_NAME)
            .build()
            .expect("valid registry config");
        let render_opts = RenderOptions {
            integer_buckets: LATENCY_BUCKETS_MS.to_vec(),
            ..RenderOptions::default()
        };
        Abacus {
            registry,
            render_opts,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text of the cumulative registry, with the same classic buckets as the peers
    /// (rendered straight from the registry: the same text as rendering its snapshot).
    pub fn render(&self) -> String {
        render_registry(&self.registry, &self.render_opts)
    }
}

impl Target for Abacus {
    type Handles = AbacusHandles;

    fn name(&self) -> &'static str {
        "abacus"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        self.registry.record_latency(service, latency_ms);
    }

    fn handles(&self, services: &[String]) -> AbacusHandles {
        AbacusHandles {
            handles: services
                .iter()
                .map(|s| self.registry.latency(s).local())
                .collect(),
        }
    }

    fn recorded_count(&self, service: &str) -> Option<u64> {
        self.registry
            .snapshot()
            .histogram(METRIC_NAME, &[("service", service)])
            .map(|h| h.count)
    }
}

/// Pre-resolved handles, bound to the worker thread that resolved them.
#[derive(Debug)]
pub struct AbacusHandles {
    handles: Vec<abacus::LocalHistogram>,
}

impl HandleSet for AbacusHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        self.handles[idx].record(latency_ms);
    }
}
