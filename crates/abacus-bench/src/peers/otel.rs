//! `opentelemetry_sdk` 0.33 metrics SDK.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream,
    Temporality,
};

use crate::{HandleSet, LABEL_KEY, LATENCY_BUCKETS_MS, METRIC_NAME, Target};

/// Cardinality limit configured for the latency stream. The SDK default is
/// 2000 series per instrument, after which further attribute sets collapse
/// into one overflow series; that would make `Zipf10k` measure the overflow
/// path, so the limit is raised above the largest workload.
pub const OTEL_CARDINALITY_LIMIT: usize = 20_000;

/// `SdkMeterProvider` with a `ManualReader` (nothing is exported or
/// collected while benchmarking) and one `u64_histogram`.
#[derive(Debug)]
pub struct Otel {
    reader: Arc<ManualReader>,
    provider: SdkMeterProvider,
    histogram: Histogram<u64>,
}

impl Default for Otel {
    fn default() -> Self {
        Self::new()
    }
}

impl Otel {
    /// Provider + histogram with [`LATENCY_BUCKETS_MS`] boundaries.
    pub fn new() -> Self {
        let view = |i: &Instrument| {
            (i.name() == METRIC_NAME).then(|| {
                Stream::builder()
                    .with_aggregation(Aggregation::ExplicitBucketHistogram {
                        boundaries: LATENCY_BUCKETS_MS.to_vec(),
                        record_min_max: true,
                    })
                    .with_cardinality_limit(OTEL_CARDINALITY_LIMIT)
                    .build()
                    .expect("valid stream")
            })
        };
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(SharedReader(Arc::clone(&reader)))
            .with_view(view)
            .build();
        let histogram = provider
            .meter("abacus-bench")
            .u64_histogram(METRIC_NAME)
            .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
            .build();
        Otel {
            reader,
            provider,
            histogram,
        }
    }

    /// Collects the current (cumulative) state through the `ManualReader`.
    pub fn collect(&self) -> ResourceMetrics {
        let mut rm = ResourceMetrics::default();
        self.reader.collect(&mut rm).expect("collect");
        rm
    }

    /// `(attributes, count)` of every data point of the latency histogram.
    /// Panics if the configured bucket boundaries were not applied.
    pub fn histogram_points(&self) -> Vec<(Vec<KeyValue>, u64)> {
        let rm = self.collect();
        let mut out = Vec::new();
        for metric in rm.scope_metrics().flat_map(|s| s.metrics()) {
            if metric.name() != METRIC_NAME {
                continue;
            }
            let AggregatedMetrics::U64(MetricData::Histogram(h)) = metric.data() else {
                panic!("unexpected aggregation for {METRIC_NAME}");
            };
            for dp in h.data_points() {
                assert!(
                    dp.bounds().eq(LATENCY_BUCKETS_MS.iter().copied()),
                    "bucket boundaries not applied"
                );
                out.push((dp.attributes().cloned().collect(), dp.count()));
            }
        }
        out
    }

    /// The provider.
    pub fn provider(&self) -> &SdkMeterProvider {
        &self.provider
    }
}

impl Target for Otel {
    type Handles = OtelHandles;

    fn name(&self) -> &'static str {
        "opentelemetry"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        self.histogram
            .record(latency_ms, &[KeyValue::new(LABEL_KEY, service.to_owned())]);
    }

    fn recorded_count(&self, service: &str) -> Option<u64> {
        let points = self.histogram_points();
        let mut found = None;
        for (attrs, count) in points {
            if attrs
                .iter()
                .any(|kv| kv.key.as_str() == LABEL_KEY && kv.value.as_str() == service)
            {
                *found.get_or_insert(0) += count;
            }
        }
        found
    }

    fn handles(&self, services: &[String]) -> Self::Handles {
        let attrs: Vec<[KeyValue; 1]> = services
            .iter()
            .map(|s| [KeyValue::new(LABEL_KEY, s.clone())])
            .collect();
        // Make sure every series exists before timing, like the other peers.
        for a in &attrs {
            self.histogram.record(1, a);
        }
        OtelHandles {
            histogram: self.histogram.clone(),
            attrs,
        }
    }
}

/// OpenTelemetry has no bound-instrument handle in its stable API; the
/// documented fast path is reusing pre-built attribute arrays.
#[derive(Debug)]
pub struct OtelHandles {
    histogram: Histogram<u64>,
    attrs: Vec<[KeyValue; 1]>,
}

impl HandleSet for OtelHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        self.histogram.record(latency_ms, &self.attrs[idx]);
    }
}

/// Lets [`Otel`] keep a handle on the `ManualReader` it gives the provider.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
