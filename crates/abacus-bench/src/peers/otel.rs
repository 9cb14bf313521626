//! `opentelemetry_sdk` 0.33 metrics SDK.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::{Aggregation, Instrument, ManualReader, SdkMeterProvider, Stream};

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
        let provider = SdkMeterProvider::builder()
            .with_reader(ManualReader::builder().build())
            .with_view(view)
            .build();
        let histogram = provider
            .meter("abacus-bench")
            .u64_histogram(METRIC_NAME)
            .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
            .build();
        Otel {
            provider,
            histogram,
        }
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
