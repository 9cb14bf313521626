//! [`metrics::Recorder`] implementation: applications that already use
//! `metrics::counter!`, `gauge!` and `histogram!` record into abacus unchanged.
//!
//! ```
//! let registry = abacus::Registry::new();
//! let recorder = abacus::recorder::AbacusRecorder::new(registry.clone());
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("requests", "service" => "api").increment(2);
//!     metrics::histogram!("request_seconds", "service" => "api").record(0.25);
//! });
//! let snap = registry.snapshot();
//! assert_eq!(snap.counter("requests", &[("service", "api")]), Some(2));
//! assert_eq!(snap.histogram("request_seconds", &[("service", "api")]).unwrap().count, 1);
//! ```
//!
//! Counters map to integer counters, gauges to gauges, histograms to float histograms.
//! Units given with `describe_*!` are kept (seconds, milliseconds, bytes) and drive the
//! Prometheus exposition. `Counter::absolute` raises the counter to the given total (it is
//! monotonic: a lower value is ignored).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, SharedString};

use crate::registry::Registry;
use crate::snapshot::Unit;
use crate::sync;

/// A `metrics` recorder writing into a [`Registry`].
#[derive(Debug)]
pub struct AbacusRecorder {
    registry: Registry,
    /// Lock: taken by `describe_*` and `register_*` (handle creation), never by recording
    /// through a handle.
    units: Mutex<HashMap<String, Unit>>,
}

impl AbacusRecorder {
    /// A recorder for `registry`.
    pub fn new(registry: Registry) -> Self {
        AbacusRecorder {
            registry,
            units: Mutex::new(HashMap::new()),
        }
    }

    /// Installs a recorder for `registry` as the global `metrics` recorder.
    ///
    /// # Errors
    /// If a global recorder is already installed.
    pub fn install(registry: Registry) -> Result<(), metrics::SetRecorderError<AbacusRecorder>> {
        metrics::set_global_recorder(AbacusRecorder::new(registry))
    }

    fn unit_of(&self, name: &str) -> Unit {
        sync::lock_std(&self.units)
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    fn describe(&self, key: KeyName, unit: Option<metrics::Unit>) {
        let unit = match unit {
            Some(metrics::Unit::Seconds) => Unit::Seconds,
            Some(metrics::Unit::Milliseconds) => Unit::Milliseconds,
            Some(metrics::Unit::Bytes) => Unit::Bytes,
            _ => return,
        };
        sync::lock_std(&self.units).insert(key.as_str().to_owned(), unit);
    }
}

fn labels(key: &Key) -> Vec<(&str, &str)> {
    key.labels().map(|l| (l.key(), l.value())).collect()
}

struct CounterAdapter(crate::Counter);
struct GaugeAdapter(crate::Gauge);
struct HistogramAdapter(crate::Histogram);

impl CounterFn for CounterAdapter {
    fn increment(&self, value: u64) {
        self.0.increment(value);
    }

    fn absolute(&self, value: u64) {
        let now = self.0.total();
        if value > now {
            self.0.increment(value - now);
        }
    }
}

impl GaugeFn for GaugeAdapter {
    fn increment(&self, value: f64) {
        self.0.add(value);
    }

    fn decrement(&self, value: f64) {
        self.0.sub(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

impl HistogramFn for HistogramAdapter {
    fn record(&self, value: f64) {
        self.0.record_f64(value);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.0.record_f64_n(value, count as u64);
    }
}

impl metrics::Recorder for AbacusRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<metrics::Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<metrics::Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<metrics::Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> metrics::Counter {
        let c = self.registry.counter(key.name(), &labels(key));
        metrics::Counter::from_arc(Arc::new(CounterAdapter(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> metrics::Gauge {
        let g = self.registry.gauge(key.name(), &labels(key));
        metrics::Gauge::from_arc(Arc::new(GaugeAdapter(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> metrics::Histogram {
        let unit = self.unit_of(key.name());
        let h = self
            .registry
            .float_histogram_with_unit(key.name(), &labels(key), unit);
        metrics::Histogram::from_arc(Arc::new(HistogramAdapter(h)))
    }
}
