//! Closed windows kept for the query API, and the pre-aggregated per-service view.
//!
//! A [`WindowSink`] receives every delta window from the flusher (one per window length)
//! and appends one [`ClosedWindow`] to a ring per series. Memory is bounded: at most
//! `max_series` series × (`retention / window` + 2) windows each; a new series beyond
//! `max_series` is refused (counted in [`StoreStats::refused_series`]), and a series with no
//! window inside the retention is dropped. Histogram windows keep their
//! [`HistogramSnapshot`] so windows and series can be merged at query time (quantiles of a
//! merge are as accurate as those of one window).
//!
//! At the same moment the [`ServiceBoard`] is updated: per `service` label, the request
//! and error counters and the latency histogram of the last window and of the last five
//! minutes, so `GET /services` is a read of a ready value.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abacus::flush::Sink;
use abacus::{HistogramSnapshot, Key, MetricKind, SinkError, Snapshot, Value};
use serde::Serialize;

use crate::config::ServicesConfig;

/// Quantiles reported for every histogram window.
pub const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// The value of one series over one closed window.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowValue {
    /// Increase of a counter (integer or float) during the window.
    Counter(f64),
    /// Gauge value at the window's close.
    Gauge(f64),
    /// The samples recorded during the window.
    Histogram(HistogramSnapshot),
}

impl WindowValue {
    /// The window value of a core delta value.
    pub fn from_value(v: &Value) -> WindowValue {
        match v {
            Value::Counter(n) => WindowValue::Counter(*n as f64),
            Value::FloatCounter(x) => WindowValue::Counter(*x),
            Value::Gauge(g) => WindowValue::Gauge(*g),
            Value::Histogram(h) => WindowValue::Histogram(h.clone()),
        }
    }

    /// Folds another series' value of the same window into this one: counters and gauges
    /// add up, histograms merge. Values of another kind are ignored.
    fn absorb(&mut self, other: &WindowValue) {
        match (self, other) {
            (WindowValue::Counter(a), WindowValue::Counter(b))
            | (WindowValue::Gauge(a), WindowValue::Gauge(b)) => *a += b,
            (WindowValue::Histogram(a), WindowValue::Histogram(b)) => a.merge(b),
            _ => {}
        }
    }
}

/// One series over one closed window.
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedWindow {
    /// Start of the window.
    pub start: SystemTime,
    /// End of the window.
    pub end: SystemTime,
    /// The aggregate.
    pub value: WindowValue,
}

/// One row of `GET /metrics/{name}`: a window, merged over the matching series.
///
/// * Histograms: `count`, `sum`, `min`, `max` exact; `p50`/`p95`/`p99` within the
///   registry's relative error (2.17 % at the default scale).
/// * Counters: `sum` is the increase during the window, `count` the number of matching
///   series; no min/max/quantiles.
/// * Gauges: `sum` is the sum of the matching gauges at the window's close, `count` the
///   number of gauges, `min`/`max` the smallest and largest of them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowRow {
    /// Window start, Unix time in whole seconds.
    pub timestamp: u64,
    /// Window start, Unix time in milliseconds.
    pub start_ms: u64,
    /// Window end, Unix time in milliseconds.
    pub end_ms: u64,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Number of samples (histograms) or of series (counters, gauges).
    pub count: u64,
    /// Sum of the samples / counter increase / sum of gauges.
    pub sum: f64,
    /// Smallest sample or gauge.
    pub min: Option<f64>,
    /// Largest sample or gauge.
    pub max: Option<f64>,
    /// Median (histograms only).
    pub p50: Option<f64>,
    /// 95th percentile (histograms only).
    pub p95: Option<f64>,
    /// 99th percentile (histograms only).
    pub p99: Option<f64>,
}

/// Counters of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Series currently held.
    pub series: usize,
    /// Windows received from the flusher.
    pub windows: u64,
    /// Series refused because the store held `max_series` series.
    pub refused_series: u64,
}

#[derive(Debug)]
struct SeriesRing {
    /// Windows of this series in time order (only windows where it had data).
    ring: VecDeque<ClosedWindow>,
}

#[derive(Debug)]
struct StoreInner {
    windows_per_series: usize,
    retention: Duration,
    max_series: usize,
    /// name → key → windows.
    series: HashMap<String, HashMap<Key, SeriesRing>>,
    count: usize,
    stats: StoreStats,
}

/// The closed windows of every series. Cloning shares the store.
#[derive(Clone, Debug)]
pub struct WindowStore {
    /// Lock: written once per window close by the flusher thread, read by queries.
    inner: Arc<RwLock<StoreInner>>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn row(start: SystemTime, end: SystemTime, value: &WindowValue, series: u64) -> WindowRow {
    let start_ms = unix_ms(start);
    let mut r = WindowRow {
        timestamp: start_ms / 1000,
        start_ms,
        end_ms: unix_ms(end),
        kind: "counter",
        count: series,
        sum: 0.0,
        min: None,
        max: None,
        p50: None,
        p95: None,
        p99: None,
    };
    match value {
        WindowValue::Counter(x) => r.sum = *x,
        WindowValue::Gauge(_) => {
            r.kind = "gauge";
        }
        WindowValue::Histogram(h) => {
            r.kind = "histogram";
            r.count = h.count;
            r.sum = h.sum;
            if h.count > 0 {
                r.min = Some(h.min);
                r.max = Some(h.max);
                let q = h.quantiles(&QUANTILES);
                r.p50 = q[0];
                r.p95 = q[1];
                r.p99 = q[2];
            }
        }
    }
    r
}

impl WindowStore {
    /// An empty store keeping `retention` worth of windows of length `window` for at most
    /// `max_series` series.
    pub fn new(window: Duration, retention: Duration, max_series: usize) -> WindowStore {
        // The retention horizon is what trims rings; the count is only a memory backstop and
        // must never bind before it: a retention holds `per + 1` windows whose end is inside
        // it, +1 for close-time jitter. (A count cap of `per` trimmed busy series one window
        // earlier than sparse ones, and the query's seam with SQLite, which takes windows
        // before the oldest one in memory, then skipped that window for the busy series.)
        let per = (retention.as_millis() / window.as_millis().max(1)).max(1) + 2;
        WindowStore {
            inner: Arc::new(RwLock::new(StoreInner {
                windows_per_series: usize::try_from(per).unwrap_or(usize::MAX),
                retention,
                max_series,
                series: HashMap::new(),
                count: 0,
                stats: StoreStats::default(),
            })),
        }
    }

    /// Appends one flushed window.
    pub fn ingest(&self, window: &Snapshot) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        inner.stats.windows += 1;
        for s in &window.series {
            if s.value.is_zero() && s.kind != MetricKind::Gauge {
                continue;
            }
            let closed = ClosedWindow {
                start: window.start,
                end: window.end,
                value: WindowValue::from_value(&s.value),
            };
            let full = inner.count >= inner.max_series;
            let by_key = inner.series.entry(s.key.name().to_owned()).or_default();
            let ring = match by_key.get_mut(&s.key) {
                Some(r) => r,
                None if full => {
                    inner.stats.refused_series += 1;
                    continue;
                }
                None => {
                    inner.count += 1;
                    by_key.entry(s.key.clone()).or_insert_with(|| SeriesRing {
                        ring: VecDeque::new(),
                    })
                }
            };
            if ring.ring.len() >= inner.windows_per_series {
                ring.ring.pop_front();
            }
            ring.ring.push_back(closed);
        }
        // Drop windows (and series) older than the retention.
        let horizon = window
            .end
            .checked_sub(inner.retention)
            .unwrap_or(UNIX_EPOCH);
        let mut removed = 0;
        inner.series.retain(|_, by_key| {
            by_key.retain(|_, r| {
                while r.ring.front().is_some_and(|w| w.end < horizon) {
                    r.ring.pop_front();
                }
                let keep = !r.ring.is_empty();
                removed += usize::from(!keep);
                keep
            });
            !by_key.is_empty()
        });
        inner.count -= removed;
        inner.stats.series = inner.count;
    }

    /// The windows of every series named `name` whose labels include all of `filters`,
    /// merged per window, oldest first, restricted to windows starting in `[from, to)`
    /// (Unix seconds; either bound optional).
    pub fn query(
        &self,
        name: &str,
        filters: &[(String, String)],
        from: Option<f64>,
        to: Option<f64>,
    ) -> Vec<WindowRow> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let Some(by_key) = inner.series.get(name) else {
            return Vec::new();
        };
        merge_windows(
            by_key
                .iter()
                .flat_map(|(key, ring)| ring.ring.iter().map(move |w| (key, w))),
            filters,
            from,
            to,
        )
    }

    /// [`WindowStore::query`] and [`WindowStore::earliest_start`] read under one lock, so
    /// a window close in between cannot trim the oldest window out of both the rows and
    /// the SQLite range that starts where memory ends.
    pub fn query_and_earliest(
        &self,
        name: &str,
        filters: &[(String, String)],
        from: Option<f64>,
        to: Option<f64>,
    ) -> (Vec<WindowRow>, Option<SystemTime>) {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let Some(by_key) = inner.series.get(name) else {
            return (Vec::new(), None);
        };
        let earliest = by_key
            .values()
            .filter_map(|r| r.ring.front().map(|w| w.start))
            .min();
        let rows = merge_windows(
            by_key
                .iter()
                .flat_map(|(key, ring)| ring.ring.iter().map(move |w| (key, w))),
            filters,
            from,
            to,
        );
        (rows, earliest)
    }

    /// Start of the oldest window held in memory for any series named `name`: windows
    /// before it must come from durable storage (see [`crate::sinks::sqlite::History`]).
    pub fn earliest_start(&self, name: &str) -> Option<SystemTime> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .series
            .get(name)?
            .values()
            .filter_map(|r| r.ring.front().map(|w| w.start))
            .min()
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stats
    }
}

/// Merges `(series key, window)` pairs into one row per window start, oldest first: only
/// series whose labels include all of `filters`, and only windows starting in `[from, to)`
/// (Unix seconds; either bound optional). Used for memory and for durable history alike.
pub fn merge_windows<'a>(
    windows: impl Iterator<Item = (&'a Key, &'a ClosedWindow)>,
    filters: &[(String, String)],
    from: Option<f64>,
    to: Option<f64>,
) -> Vec<WindowRow> {
    let from_ms = from.map(|f| (f * 1000.0).max(0.0) as u64);
    let to_ms = to.map(|t| (t * 1000.0).max(0.0) as u64);
    // start → (end, merged value, matching series, min/max of gauges)
    let mut merged: std::collections::BTreeMap<SystemTime, Merge> = Default::default();
    for (key, w) in windows {
        let matches = filters
            .iter()
            .all(|(k, v)| key.label(k) == Some(v.as_str()));
        if !matches {
            continue;
        }
        let ms = unix_ms(w.start);
        if from_ms.is_some_and(|f| ms < f) || to_ms.is_some_and(|t| ms >= t) {
            continue;
        }
        merged
            .entry(w.start)
            .and_modify(|m| m.add(&w.value))
            .or_insert_with(|| Merge::new(w));
    }
    merged
        .into_iter()
        .map(|(start, m)| {
            let mut r = row(start, m.end, &m.value, m.series);
            if let WindowValue::Gauge(g) = m.value {
                r.sum = g;
                r.min = Some(m.min);
                r.max = Some(m.max);
            }
            r
        })
        .collect()
}

struct Merge {
    end: SystemTime,
    value: WindowValue,
    series: u64,
    min: f64,
    max: f64,
}

impl Merge {
    fn new(w: &ClosedWindow) -> Merge {
        let g = match w.value {
            WindowValue::Gauge(g) => g,
            _ => 0.0,
        };
        Merge {
            end: w.end,
            value: w.value.clone(),
            series: 1,
            min: g,
            max: g,
        }
    }

    fn add(&mut self, v: &WindowValue) {
        self.series += 1;
        if let WindowValue::Gauge(g) = v {
            self.min = self.min.min(*g);
            self.max = self.max.max(*g);
        }
        self.value.absorb(v);
    }
}

/// Health of one service over a span of windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceSpan {
    /// Start of the span, Unix milliseconds.
    pub start_ms: u64,
    /// Length of the span in seconds (sum of the window lengths).
    pub seconds: f64,
    /// Requests counted by the request counter, if the service has one.
    pub requests: Option<f64>,
    /// Errors counted by the error counter, if the service has one.
    pub errors: Option<f64>,
    /// Latency samples.
    pub latency_count: u64,
    /// Requests per second: the request counter's increase, or the number of latency
    /// samples when there is no request counter.
    pub rate: f64,
    /// `errors / requests` (or `errors / latency samples`), when both are known and the
    /// denominator is not zero.
    pub error_share: Option<f64>,
    /// Latency median (unit of the latency metric, ms for `POST /latency`).
    pub p50: Option<f64>,
    /// Latency 95th percentile.
    pub p95: Option<f64>,
    /// Latency 99th percentile.
    pub p99: Option<f64>,
}

/// One entry of `GET /services`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceHealth {
    /// The `service` label value.
    pub service: String,
    /// The last closed window.
    pub last_window: ServiceSpan,
    /// The windows of the last five minutes.
    pub last_5m: ServiceSpan,
}

#[derive(Clone, Debug, Default)]
struct ServiceWindow {
    start: Option<SystemTime>,
    seconds: f64,
    requests: Option<f64>,
    errors: Option<f64>,
    latency: Option<HistogramSnapshot>,
}

impl ServiceWindow {
    fn merge(&mut self, o: &ServiceWindow) {
        self.start = match (self.start, o.start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.seconds += o.seconds;
        let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.requests = add(self.requests, o.requests);
        self.errors = add(self.errors, o.errors);
        match (&mut self.latency, &o.latency) {
            (Some(a), Some(b)) => a.merge(b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
    }

    fn span(&self) -> ServiceSpan {
        let latency_count = self.latency.as_ref().map_or(0, |h| h.count);
        let events = self
            .requests
            .or((latency_count > 0).then_some(latency_count as f64));
        let q = self
            .latency
            .as_ref()
            .map(|h| h.quantiles(&QUANTILES))
            .unwrap_or_else(|| vec![None; 3]);
        ServiceSpan {
            start_ms: self.start.map_or(0, unix_ms),
            seconds: self.seconds,
            requests: self.requests,
            errors: self.errors,
            latency_count,
            rate: events.unwrap_or(0.0) / self.seconds.max(1e-6),
            error_share: match (self.errors, events) {
                (Some(e), Some(n)) if n > 0.0 => Some(e / n),
                _ => None,
            },
            p50: q[0],
            p95: q[1],
            p99: q[2],
        }
    }
}

#[derive(Debug)]
struct BoardInner {
    names: ServicesConfig,
    windows_in_5m: usize,
    max_services: usize,
    services: HashMap<String, VecDeque<ServiceWindow>>,
    view: Arc<Vec<ServiceHealth>>,
}

/// Per-service health, recomputed at each window close.
#[derive(Clone, Debug)]
pub struct ServiceBoard {
    /// Lock: written once per window close, read (an `Arc` clone) by `GET /services`.
    inner: Arc<RwLock<BoardInner>>,
}

impl ServiceBoard {
    /// A board reading the metric names in `names`, for windows of length `window`, tracking
    /// at most `max_services` services.
    pub fn new(names: ServicesConfig, window: Duration, max_services: usize) -> ServiceBoard {
        let per = (300_000 / window.as_millis().max(1)).max(1);
        ServiceBoard {
            inner: Arc::new(RwLock::new(BoardInner {
                names,
                windows_in_5m: usize::try_from(per).unwrap_or(usize::MAX),
                max_services,
                services: HashMap::new(),
                view: Arc::new(Vec::new()),
            })),
        }
    }

    /// Folds one closed window in and recomputes the view.
    pub fn ingest(&self, window: &Snapshot) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        let seconds = window.seconds();
        let mut current: HashMap<String, ServiceWindow> = HashMap::new();
        for s in &window.series {
            let Some(service) = s.key.label("service") else {
                continue;
            };
            let name = s.key.name();
            let is_lat = name == inner.names.latency_metric;
            let is_req = name == inner.names.requests_metric;
            let is_err = name == inner.names.errors_metric;
            if !(is_lat || is_req || is_err) {
                continue;
            }
            if !current.contains_key(service)
                && !inner.services.contains_key(service)
                && inner.services.len() + current.len() >= inner.max_services
            {
                continue;
            }
            let w = current.entry(service.to_owned()).or_default();
            let counter = match &s.value {
                Value::Counter(n) => Some(*n as f64),
                Value::FloatCounter(x) => Some(*x),
                _ => None,
            };
            if is_req {
                w.requests = Some(w.requests.unwrap_or(0.0) + counter.unwrap_or(0.0));
            }
            if is_err {
                w.errors = Some(w.errors.unwrap_or(0.0) + counter.unwrap_or(0.0));
            }
            if is_lat {
                if let Value::Histogram(h) = &s.value {
                    match &mut w.latency {
                        Some(a) => a.merge(h),
                        None => w.latency = Some(h.clone()),
                    }
                }
            }
        }
        // Every known service gets this window (empty if it was quiet).
        for name in inner.services.keys() {
            current.entry(name.clone()).or_default();
        }
        for (name, mut w) in current {
            w.start = Some(window.start);
            w.seconds = seconds;
            let ring = inner.services.entry(name).or_default();
            if ring.len() >= inner.windows_in_5m {
                ring.pop_front();
            }
            ring.push_back(w);
        }
        // Forget services quiet for five minutes.
        inner.services.retain(|_, ring| {
            ring.iter()
                .any(|w| w.requests.is_some() || w.errors.is_some() || w.latency.is_some())
        });
        let mut view: Vec<ServiceHealth> = inner
            .services
            .iter()
            .map(|(name, ring)| {
                let last = ring.back().cloned().unwrap_or_default();
                let mut all = ServiceWindow::default();
                for w in ring {
                    all.merge(w);
                }
                ServiceHealth {
                    service: name.clone(),
                    last_window: last.span(),
                    last_5m: all.span(),
                }
            })
            .collect();
        view.sort_by(|a, b| a.service.cmp(&b.service));
        inner.view = Arc::new(view);
    }

    /// The view computed at the last window close, sorted by service.
    pub fn view(&self) -> Arc<Vec<ServiceHealth>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .view
            .clone()
    }
}

/// The flusher sink feeding a [`WindowStore`] and a [`ServiceBoard`].
#[derive(Debug)]
pub struct WindowSink {
    store: WindowStore,
    board: ServiceBoard,
}

impl WindowSink {
    /// A sink writing into `store` and `board`.
    pub fn new(store: WindowStore, board: ServiceBoard) -> WindowSink {
        WindowSink { store, board }
    }
}

impl Sink for WindowSink {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError> {
        self.store.ingest(window);
        self.board.ingest(window);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abacus::Registry;

    fn store() -> WindowStore {
        WindowStore::new(Duration::from_secs(10), Duration::from_secs(30), 100)
    }

    #[test]
    fn windows_merge_across_label_sets_and_filter_by_label() {
        let r = Registry::new();
        let st = store();
        for v in [1.0, 2.0, 3.0] {
            r.record_f64("cpu", &[("host", "a")], v);
        }
        r.record_f64("cpu", &[("host", "b")], 10.0);
        st.ingest(&r.delta());
        r.record_f64("cpu", &[("host", "a")], 4.0);
        st.ingest(&r.delta());

        let all = st.query("cpu", &[], None, None);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].count, all[0].sum), (4, 16.0));
        assert_eq!((all[0].min, all[0].max), (Some(1.0), Some(10.0)));
        assert_eq!((all[1].count, all[1].sum), (1, 4.0));

        let a = st.query("cpu", &[("host".into(), "a".into())], None, None);
        assert_eq!((a[0].count, a[0].sum), (3, 6.0));
        let p50 = a[0].p50.unwrap();
        assert!((p50 - 2.0).abs() <= 2.0 * 0.0217, "{p50}");
        assert!(
            st.query("cpu", &[("host".into(), "zz".into())], None, None)
                .is_empty()
        );
        assert!(st.query("nope", &[], None, None).is_empty());
    }

    #[test]
    fn rings_are_bounded_by_retention_and_series_by_max() {
        let r = Registry::new();
        let st = WindowStore::new(Duration::from_secs(10), Duration::from_secs(30), 2);
        for i in 0..10 {
            r.increment_counter("c", &[("i", &(i % 3).to_string())], 1);
            st.ingest(&r.delta());
        }
        let stats = st.stats();
        assert_eq!(stats.series, 2);
        assert!(stats.refused_series > 0);
        for i in ["0", "1", "2"] {
            // 30 s / 10 s windows, + 2 (see `WindowStore::new`).
            assert!(st.query("c", &[("i".into(), i.into())], None, None).len() <= 5);
        }
    }

    #[test]
    fn services_report_rate_errors_and_quantiles() {
        let r = Registry::new();
        let board = ServiceBoard::new(ServicesConfig::default(), Duration::from_secs(10), 10);
        r.increment_counter("requests", &[("service", "api")], 100);
        r.increment_counter("errors", &[("service", "api")], 5);
        for v in 1..=100 {
            r.record_f64("latency", &[("service", "api")], f64::from(v));
        }
        board.ingest(&r.delta());
        let v = board.view();
        assert_eq!(v.len(), 1);
        let s = &v[0].last_window;
        assert_eq!(s.requests, Some(100.0));
        assert_eq!(s.error_share, Some(0.05));
        assert_eq!(s.latency_count, 100);
        let p50 = s.p50.unwrap();
        assert!((p50 - 50.0).abs() <= 50.0 * 0.022, "{p50}");
        assert_eq!(v[0].last_5m.requests, Some(100.0));
    }
}
