//! The load tool's own accounting, recorded with the abacus core.
//!
//! Hot path (every request): a few counter increments and one histogram record through
//! handles resolved once ([`abacus::Counter`], [`abacus::Histogram`]): per-thread shards,
//! no lock. Cold path (failures only): `errors{status}` / `errors{kind}` by name.
//!
//! A [`Flusher`] takes a delta window every second into a [`MemorySink`]; those windows
//! are the time series of the report. Flushing only reads atomics, so it never stalls a
//! worker; successive deltas add up exactly to the cumulative totals.
//!
//! | series | kind | meaning |
//! |---|---|---|
//! | `requests` | counter | requests completed (success or failure) |
//! | `successes` / `failures` | counter | 2xx (or UDP datagram sent) / anything else |
//! | `bytes_sent` / `bytes_received` | counter | request bodies / response bodies |
//! | `samples_sent{name}` | counter | samples carried by successful requests, per metric |
//! | `missed` | counter | rate mode: sends skipped because `max_in_flight` was reached |
//! | `errors{status}` | counter | failures by HTTP status code |
//! | `errors{kind}` | counter | failures by error kind (`connect`, `timeout`, `body`, `io`, `other`) |
//! | `request_latency_us` | histogram | request latency, microseconds |
//! | `phase_requests{index,phase}` / `phase_failures{index,phase}` | counter | per profile phase (the phase in force when the request started) |
//! | `phase_latency_us{index,phase}` | histogram | request latency per phase, microseconds |

use std::time::Duration;

use abacus::flush::{Flusher, MemorySink};
use abacus::{Counter, Histogram, Registry, Snapshot};

use crate::error::LoadError;
use crate::profile::Profile;
use crate::target::Sent;

/// The result of one request, as the workers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (2xx, or a datagram handed to the kernel).
    Success,
    /// The server answered with a non-2xx status.
    Status(u16),
    /// No answer: the error kind.
    Error(ErrorKind),
}

/// Why a request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection refused or reset while connecting.
    Connect,
    /// The request timed out.
    Timeout,
    /// Reading or writing the body failed.
    Body,
    /// A socket error (StatsD).
    Io,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Body => "body",
            ErrorKind::Io => "io",
            ErrorKind::Other => "other",
        }
    }
}

/// Counters and the latency histogram of one run; cheap to clone (handles are `Arc`s).
#[derive(Clone, Debug)]
pub struct LoadStats {
    registry: Registry,
    requests: Counter,
    successes: Counter,
    failures: Counter,
    bytes_sent: Counter,
    bytes_received: Counter,
    missed: Counter,
    /// One per profile series, in profile order.
    samples: Vec<Counter>,
    latency_us: Histogram,
    /// Per profile phase, in profile order.
    phases: Vec<PhaseHandles>,
    windows: MemorySink,
}

#[derive(Clone, Debug)]
struct PhaseHandles {
    requests: Counter,
    failures: Counter,
    latency_us: Histogram,
}

/// Cumulative figures for a progress display, read without stopping anyone.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Live {
    /// Requests completed.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
    /// Requests per second over the last closed 1 s window.
    pub rate: f64,
    /// p99 latency (ms) over the last closed 1 s window.
    pub p99_ms: Option<f64>,
}

impl LoadStats {
    /// A fresh registry (no eviction: the final report needs every series) and the 1 s
    /// flusher feeding the time series. Keep the [`Flusher`] alive for the run and shut it
    /// down at the end (it flushes the last partial second).
    ///
    /// # Errors
    /// [`LoadError::Recorder`] if the core refuses the configuration.
    pub fn new(profile: &Profile, window: Duration) -> Result<(LoadStats, Flusher), LoadError> {
        let registry = Registry::builder().evict_after_idle(0).build()?;
        // Enough windows for the whole run plus slack; one window per `window`.
        let capacity =
            (profile.total().as_secs_f64() / window.as_secs_f64().max(1e-3)).ceil() as usize + 64;
        let windows = MemorySink::new(capacity);
        let flusher = Flusher::builder(registry.clone())
            .interval(window)
            .sink(windows.clone())
            .spawn()?;
        let c = |name: &str| registry.counter(name, &[]);
        let stats = LoadStats {
            requests: c("requests"),
            successes: c("successes"),
            failures: c("failures"),
            bytes_sent: c("bytes_sent"),
            bytes_received: c("bytes_received"),
            missed: c("missed"),
            samples: profile
                .series
                .iter()
                .map(|s| registry.counter("samples_sent", &[("name", &s.name)]))
                .collect(),
            latency_us: registry.histogram("request_latency_us", &[]),
            phases: profile
                .phases
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let i = i.to_string();
                    let l = [("index", i.as_str()), ("phase", p.name.as_str())];
                    PhaseHandles {
                        requests: registry.counter("phase_requests", &l),
                        failures: registry.counter("phase_failures", &l),
                        latency_us: registry.histogram("phase_latency_us", &l),
                    }
                })
                .collect(),
            windows,
            registry,
        };
        Ok((stats, flusher))
    }

    /// Records one finished request, started during profile phase `phase`. `samples[i]`
    /// is how many samples of profile series `i` it carried (counted only on success).
    pub fn record(&self, phase: usize, r: &Sent, samples: &[u64]) {
        let us = u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX);
        self.requests.increment(1);
        self.bytes_sent.increment(r.sent);
        self.bytes_received.increment(r.received);
        self.latency_us.record(us);
        let ph = self.phases.get(phase);
        if let Some(ph) = ph {
            ph.requests.increment(1);
            ph.latency_us.record(us);
            if r.outcome != Outcome::Success {
                ph.failures.increment(1);
            }
        }
        match r.outcome {
            Outcome::Success => {
                self.successes.increment(1);
                for (c, &n) in self.samples.iter().zip(samples) {
                    if n > 0 {
                        c.increment(n);
                    }
                }
            }
            Outcome::Status(code) => {
                self.failures.increment(1);
                let code = code.to_string();
                self.registry
                    .increment_counter("errors", &[("status", &code)], 1);
            }
            Outcome::Error(kind) => {
                self.failures.increment(1);
                self.registry
                    .increment_counter("errors", &[("kind", kind.as_str())], 1);
            }
        }
    }

    /// A rate-mode send skipped because too many requests were in flight.
    pub fn record_missed(&self) {
        self.missed.increment(1);
    }

    /// Current totals and the last window's rate and p99.
    pub fn live(&self) -> Live {
        let last = self.windows.latest();
        let (rate, p99_ms) = last.as_ref().map_or((0.0, None), |w| {
            let n = w.counter("requests", &[]).unwrap_or(0);
            let p99 = w
                .histogram("request_latency_us", &[])
                .and_then(|h| h.quantile(0.99))
                .map(|us| us / 1000.0);
            (n as f64 / w.seconds(), p99)
        });
        Live {
            requests: self.requests.total(),
            failures: self.failures.total(),
            rate,
            p99_ms,
        }
    }

    /// The 1 s windows retained so far, oldest first.
    pub fn windows(&self) -> Vec<Snapshot> {
        self.windows.windows()
    }

    /// Cumulative snapshot of everything recorded.
    pub fn cumulative(&self) -> Snapshot {
        self.registry.snapshot()
    }

    /// The registry (for embedding or extra series).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_records_give_exact_totals_and_windows_add_up() {
        let profile = Profile::default();
        let (stats, flusher) = LoadStats::new(&profile, Duration::from_millis(5)).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let stats = stats.clone();
                s.spawn(move || {
                    for i in 0..5_000u64 {
                        let outcome = match i % 50 {
                            0 => Outcome::Status(503),
                            1 => Outcome::Error(ErrorKind::Timeout),
                            _ => Outcome::Success,
                        };
                        let sent = Sent {
                            outcome,
                            sent: 10,
                            received: 2,
                            latency: Duration::from_micros(100 + t),
                        };
                        stats.record((i % 5) as usize, &sent, &[1, 1, 0]);
                    }
                });
            }
        });
        flusher.shutdown();
        let all = stats.cumulative();
        assert_eq!(all.counter("requests", &[]), Some(20_000));
        assert_eq!(all.counter("failures", &[]), Some(800));
        assert_eq!(all.counter("successes", &[]), Some(19_200));
        assert_eq!(all.counter("bytes_sent", &[]), Some(200_000));
        assert_eq!(all.counter("errors", &[("status", "503")]), Some(400));
        assert_eq!(all.counter("errors", &[("kind", "timeout")]), Some(400));
        assert_eq!(
            all.counter("samples_sent", &[("name", "latency")]),
            Some(19_200)
        );
        assert_eq!(
            all.histogram("request_latency_us", &[]).unwrap().count,
            20_000
        );
        let summed: u64 = stats
            .windows()
            .iter()
            .map(|w| w.counter("requests", &[]).unwrap_or(0))
            .sum();
        assert_eq!(summed, 20_000);
        let per_phase: u64 = (0..5)
            .map(|i| {
                let i = i.to_string();
                let name = &profile.phases[i.parse::<usize>().unwrap()].name;
                all.counter("phase_requests", &[("index", &i), ("phase", name)])
                    .unwrap()
            })
            .sum();
        assert_eq!(per_phase, 20_000);
    }
}
