//! `metrics` 0.24 facade + `metrics-exporter-prometheus` 0.18 recorder.

use metrics::{Histogram, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::{HandleSet, LATENCY_BUCKETS_MS, METRIC_NAME, Target};

/// `metrics` macros against a `PrometheusRecorder` (not installed globally:
/// used via `metrics::with_local_recorder`, so several instances can coexist
/// in one bench process).
///
/// Note: this recorder's histogram `record` only appends the value to a
/// lock-free buffer; bucketing happens later in `run_upkeep`/`render`, which
/// [`Target::maintain`] runs outside the timed region.
#[derive(Debug)]
pub struct MetricsRs {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for MetricsRs {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRs {
    /// Recorder rendering true Prometheus histograms with
    /// [`LATENCY_BUCKETS_MS`].
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS_MS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        MetricsRs { recorder, handle }
    }

    /// The recorder (for use with `metrics::with_local_recorder`).
    pub fn recorder(&self) -> &PrometheusRecorder {
        &self.recorder
    }

    /// Render/upkeep handle.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }
}

impl Target for MetricsRs {
    type Handles = MetricsRsHandles;

    fn name(&self) -> &'static str {
        "metrics_prometheus"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        metrics::with_local_recorder(&self.recorder, || {
            histogram!(METRIC_NAME, "service" => service.to_owned()).record(latency_ms as f64);
        });
    }

    fn handles(&self, services: &[String]) -> Self::Handles {
        let handles = metrics::with_local_recorder(&self.recorder, || {
            services
                .iter()
                .map(|s| histogram!(METRIC_NAME, "service" => s.clone()))
                .collect()
        });
        MetricsRsHandles { handles }
    }

    fn recorded_count(&self, service: &str) -> Option<u64> {
        count_in_text_exposition(&self.handle.render(), service)
    }

    fn maintain(&self) {
        self.handle.run_upkeep();
    }
}

/// Reads `latency_count{service="<service>"} N` from Prometheus text output.
pub(crate) fn count_in_text_exposition(text: &str, service: &str) -> Option<u64> {
    let prefix = format!("{METRIC_NAME}_count{{service=\"{service}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|n| n.trim().parse().expect("integer count"))
}

/// Cached `metrics::Histogram` handles.
#[derive(Debug)]
pub struct MetricsRsHandles {
    handles: Vec<Histogram>,
}

impl HandleSet for MetricsRsHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        self.handles[idx].record(latency_ms as f64);
    }
}
