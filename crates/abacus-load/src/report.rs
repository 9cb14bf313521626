//! The final report: exact totals, errors, latency percentiles and the time series, as a
//! text table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use abacus::{HistogramSnapshot, Snapshot, Value};
use serde::{Deserialize, Serialize};

use crate::profile::{ModeKind, Profile};
use crate::stats::LoadStats;
use crate::target::Target;

/// Request latency summary in milliseconds (quantiles within the core's 2.17 %; count,
/// min, max and mean exact).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Requests measured.
    pub count: u64,
    /// Mean.
    pub mean: Option<f64>,
    /// Smallest.
    pub min: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl LatencySummary {
    fn from_us(h: Option<&HistogramSnapshot>) -> LatencySummary {
        let Some(h) = h.filter(|h| h.count > 0) else {
            return LatencySummary::default();
        };
        let ms = |v: Option<f64>| v.map(|us| us / 1000.0);
        let q = h.quantiles(&[0.5, 0.9, 0.99, 0.999]);
        LatencySummary {
            count: h.count,
            mean: ms(h.mean()),
            min: ms(Some(h.min)),
            p50: ms(q[0]),
            p90: ms(q[1]),
            p99: ms(q[2]),
            p999: ms(q[3]),
            max: ms(Some(h.max)),
        }
    }
}

/// One time-series window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    /// Seconds from the start of the run to the end of the window.
    pub t_secs: f64,
    /// Window length in seconds.
    pub seconds: f64,
    /// Requests completed in the window.
    pub requests: u64,
    /// Failures in the window.
    pub failures: u64,
    /// Request bytes in the window.
    pub bytes_sent: u64,
    /// Requests per second.
    pub rate: f64,
    /// Median latency (ms).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_ms: Option<f64>,
}

/// Requests started during one profile phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Phase name.
    pub name: String,
    /// Planned length in seconds.
    pub secs: f64,
    /// Planned concurrency at the start and the end.
    pub concurrency: (usize, usize),
    /// Requests started in the phase (exact).
    pub requests: u64,
    /// Failures among them (exact).
    pub failures: u64,
    /// Requests per planned second.
    pub rate: f64,
    /// Latency of those requests.
    pub latency_ms: LatencySummary,
}

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Where the load went.
    pub target: String,
    /// `concurrency` or `rate`.
    pub mode: String,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Requests completed (exact).
    pub requests: u64,
    /// Successful requests (exact).
    pub successes: u64,
    /// Failed requests (exact).
    pub failures: u64,
    /// Request bytes (exact).
    pub bytes_sent: u64,
    /// Response bytes (exact).
    pub bytes_received: u64,
    /// Rate mode: sends skipped at `max_in_flight`.
    pub missed: u64,
    /// Samples carried by successful requests, by metric name (exact).
    pub samples_sent: BTreeMap<String, u64>,
    /// Mean requests per second.
    pub rate: f64,
    /// Failures by HTTP status.
    pub errors_by_status: BTreeMap<String, u64>,
    /// Failures by error kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Request latency.
    pub latency_ms: LatencySummary,
    /// Per profile phase, in profile order.
    pub phases: Vec<PhaseReport>,
    /// Per-window series (1 s by default), oldest first.
    pub timeline: Vec<TimePoint>,
}

fn counter(s: &Snapshot, name: &str) -> u64 {
    s.counter(name, &[]).unwrap_or(0)
}

impl Report {
    /// Builds the report from the run's accounting (after the flusher shut down).
    pub fn build(
        target: &Target,
        profile: &Profile,
        stats: &LoadStats,
        elapsed: Duration,
    ) -> Report {
        let all = stats.cumulative();
        let mut samples_sent = BTreeMap::new();
        let (mut by_status, mut by_kind) = (BTreeMap::new(), BTreeMap::new());
        for s in &all.series {
            let Value::Counter(n) = s.value else { continue };
            match s.key.name() {
                "samples_sent" => {
                    if let Some(name) = s.key.label("name") {
                        *samples_sent.entry(name.to_owned()).or_insert(0) += n;
                    }
                }
                "errors" => {
                    if let Some(code) = s.key.label("status") {
                        by_status.insert(code.to_owned(), n);
                    } else if let Some(kind) = s.key.label("kind") {
                        by_kind.insert(kind.to_owned(), n);
                    }
                }
                _ => {}
            }
        }
        let windows = stats.windows();
        let origin = windows.first().map(|w| w.start);
        let timeline = windows
            .iter()
            .map(|w| {
                let h = w.histogram("request_latency_us", &[]);
                let q = |q: f64| h.and_then(|h| h.quantile(q)).map(|us| us / 1000.0);
                let requests = counter(w, "requests");
                TimePoint {
                    t_secs: origin
                        .and_then(|o| w.end.duration_since(o).ok())
                        .map_or(0.0, |d| d.as_secs_f64()),
                    seconds: w.seconds(),
                    requests,
                    failures: counter(w, "failures"),
                    bytes_sent: counter(w, "bytes_sent"),
                    rate: requests as f64 / w.seconds(),
                    p50_ms: q(0.5),
                    p99_ms: q(0.99),
                }
            })
            .collect();
        let phases = profile
            .phases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let i = i.to_string();
                let l = [("index", i.as_str()), ("phase", p.name.as_str())];
                let requests = all.counter("phase_requests", &l).unwrap_or(0);
                PhaseReport {
                    name: p.name.clone(),
                    secs: p.secs,
                    concurrency: (p.from, p.to.unwrap_or(p.from)),
                    requests,
                    failures: all.counter("phase_failures", &l).unwrap_or(0),
                    rate: requests as f64 / p.secs.max(1e-6),
                    latency_ms: LatencySummary::from_us(all.histogram("phase_latency_us", &l)),
                }
            })
            .collect();
        let requests = counter(&all, "requests");
        let secs = elapsed.as_secs_f64().max(1e-6);
        Report {
            target: target.to_string(),
            mode: match profile.mode {
                ModeKind::Concurrency => "concurrency".into(),
                ModeKind::Rate => format!("rate {}/s", profile.rate),
            },
            duration_secs: elapsed.as_secs_f64(),
            requests,
            successes: counter(&all, "successes"),
            failures: counter(&all, "failures"),
            bytes_sent: counter(&all, "bytes_sent"),
            bytes_received: counter(&all, "bytes_received"),
            missed: counter(&all, "missed"),
            samples_sent,
            rate: requests as f64 / secs,
            errors_by_status: by_status,
            errors_by_kind: by_kind,
            latency_ms: LatencySummary::from_us(all.histogram("request_latency_us", &[])),
            phases,
            timeline,
        }
    }

    /// A human-readable table: [`Report::to_summary`] then the time series.
    pub fn to_table(&self) -> String {
        let mut o = self.to_summary();
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        if !self.timeline.is_empty() {
            let _ = writeln!(
                o,
                "\n{:>7} {:>9} {:>8} {:>9} {:>9} {:>9}",
                "t (s)", "requests", "failed", "req/s", "p50 ms", "p99 ms"
            );
            for p in &self.timeline {
                let _ = writeln!(
                    o,
                    "{:>7.1} {:>9} {:>8} {:>9.1} {:>9} {:>9}",
                    p.t_secs,
                    p.requests,
                    p.failures,
                    p.rate,
                    opt(p.p50_ms),
                    opt(p.p99_ms)
                );
            }
        }
        o
    }

    /// Totals, errors and latency, without the time series.
    pub fn to_summary(&self) -> String {
        let mut o = String::new();
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(o, "target     {}  ({})", self.target, self.mode);
        let _ = writeln!(
            o,
            "duration   {:.1} s   rate {:.1} req/s",
            self.duration_secs, self.rate
        );
        let _ = writeln!(
            o,
            "requests   {}   ok {}   failed {}   missed {}",
            self.requests, self.successes, self.failures, self.missed
        );
        let _ = writeln!(
            o,
            "bytes      sent {}   received {}",
            self.bytes_sent, self.bytes_received
        );
        let samples: Vec<String> = self
            .samples_sent
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(o, "samples    {}", samples.join("  "));
        if !self.errors_by_status.is_empty() || !self.errors_by_kind.is_empty() {
            let errs: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(k, v)| format!("status {k}: {v}"))
                .chain(self.errors_by_kind.iter().map(|(k, v)| format!("{k}: {v}")))
                .collect();
            let _ = writeln!(o, "errors     {}", errs.join("  "));
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            o,
            "latency ms min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            opt(l.min),
            opt(l.p50),
            opt(l.p90),
            opt(l.p99),
            opt(l.p999),
            opt(l.max),
            opt(l.mean)
        );
        if !self.phases.is_empty() {
            let _ = writeln!(
                o,
                "\n{:<16} {:>6} {:>9} {:>10} {:>8} {:>9} {:>8} {:>8} {:>8}",
                "phase",
                "secs",
                "workers",
                "requests",
                "failed",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms"
            );
            for p in &self.phases {
                let _ = writeln!(
                    o,
                    "{:<16} {:>6.1} {:>9} {:>10} {:>8} {:>9.1} {:>8} {:>8} {:>8}",
                    p.name,
                    p.secs,
                    format!("{}→{}", p.concurrency.0, p.concurrency.1),
                    p.requests,
                    p.failures,
                    p.rate,
                    opt(p.latency_ms.p50),
                    opt(p.latency_ms.p99),
                    opt(p.latency_ms.max)
                );
            }
        }
        o
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
