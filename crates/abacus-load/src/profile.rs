//! Load profiles: phases of concurrency over time, the send mode, and the series each
//! request carries. Plain serde data, readable from TOML.
//!
//! The default is the seed-002 shape (55 s): ramp up 4 → 40 workers, sustain 40, ramp
//! down 40 → 4, a thundering-herd spike of 200, then a baseline of 4.
//!
//! ```toml
//! mode = "concurrency"          # or "rate" (then `rate` and `max_in_flight` apply)
//! rate = 500.0
//! max_in_flight = 64
//! batch = 1                     # label-set cycles per request
//!
//! [[phases]]
//! name = "ramp_up"
//! secs = 10.0
//! from = 4
//! to = 40
//!
//! [[series]]
//! name = "latency"
//! kind = "histogram"
//! labels = [{ service = "checkout" }, { service = "search" }]
//! value = { dist = "log_uniform", min = 1.0, max = 250.0 }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ProfileError;

/// One phase: concurrency moves linearly from `from` to `to` over `secs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Shown in reports (`ramp_up`, `sustain`, ...).
    pub name: String,
    /// Length in seconds.
    pub secs: f64,
    /// Concurrency at the start of the phase.
    pub from: usize,
    /// Concurrency at the end of the phase (defaults to `from`).
    #[serde(default)]
    pub to: Option<usize>,
}

impl Phase {
    /// A phase from `from` to `to` workers over `secs` seconds.
    pub fn new(name: &str, secs: f64, from: usize, to: usize) -> Phase {
        Phase {
            name: name.to_owned(),
            secs,
            from,
            to: Some(to),
        }
    }

    fn end(&self) -> usize {
        self.to.unwrap_or(self.from)
    }
}

/// How requests are issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeKind {
    /// Closed loop: the phases give the number of workers, each sending back to back.
    #[default]
    Concurrency,
    /// Open loop: a fixed number of requests per second, at most `max_in_flight` at once;
    /// requests that would exceed it are skipped and counted as `missed`.
    Rate,
}

/// Distribution of the values a series is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValueDist {
    /// Always `value`.
    Constant {
        /// The value.
        value: f64,
    },
    /// Uniform in `[min, max)`.
    Uniform {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// Log-uniform in `[min, max)`, rounded to integers (latency-like).
    LogUniform {
        /// Lower bound (> 0).
        min: f64,
        /// Upper bound.
        max: f64,
    },
}

impl ValueDist {
    /// Draws a value from a uniform `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> f64 {
        match *self {
            ValueDist::Constant { value } => value,
            ValueDist::Uniform { min, max } => min + (max - min) * u,
            ValueDist::LogUniform { min, max } => {
                let (a, b) = (min.ln(), max.ln());
                (a + (b - a) * u).exp().round()
            }
        }
    }
}

/// Kind of a series, as the JSON API spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// Distribution (latencies).
    #[default]
    Histogram,
    /// Monotonic increase.
    Counter,
    /// Current level.
    Gauge,
}

impl SeriesKind {
    /// The `type` field of the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Histogram => "histogram",
            SeriesKind::Counter => "counter",
            SeriesKind::Gauge => "gauge",
        }
    }
}

/// A series template: every request step emits one sample of it (with probability
/// `probability`), with the label set of that step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesTemplate {
    /// Metric name.
    pub name: String,
    /// Kind.
    #[serde(default)]
    pub kind: SeriesKind,
    /// Label sets cycled through (step `i` uses `labels[i % len]`); empty: no labels.
    #[serde(default)]
    pub labels: Vec<BTreeMap<String, String>>,
    /// Values.
    pub value: ValueDist,
    /// Chance that a step emits this series (1.0: always).
    #[serde(default = "one")]
    pub probability: f64,
}

fn one() -> f64 {
    1.0
}

/// The services of the default profile (the seed-002 metric names).
pub const DEFAULT_SERVICES: [&str; 5] = ["checkout", "search", "login", "cart", "payments"];

fn service_labels(services: &[&str]) -> Vec<BTreeMap<String, String>> {
    services
        .iter()
        .map(|s| BTreeMap::from([("service".to_owned(), (*s).to_owned())]))
        .collect()
}

/// A complete load profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Closed or open loop.
    #[serde(default)]
    pub mode: ModeKind,
    /// Requests per second in `rate` mode.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Most requests in flight in `rate` mode.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Label-set steps per request (each step emits one sample per series).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// What each request carries.
    pub series: Vec<SeriesTemplate>,
}

fn default_rate() -> f64 {
    200.0
}
fn default_in_flight() -> usize {
    64
}
fn default_batch() -> usize {
    1
}

impl Default for Profile {
    /// The seed-002 profile: 55 s, baseline 4, peak 40, thundering herd 200; latency
    /// histograms, request counters and ~2 % error counters for five services.
    fn default() -> Profile {
        let labels = service_labels(&DEFAULT_SERVICES);
        Profile {
            mode: ModeKind::Concurrency,
            rate: default_rate(),
            max_in_flight: default_in_flight(),
            batch: 1,
            phases: vec![
                Phase::new("ramp_up", 10.0, 4, 40),
                Phase::new("sustain", 20.0, 40, 40),
                Phase::new("ramp_down", 10.0, 40, 4),
                Phase::new("thundering_herd", 5.0, 200, 200),
                Phase::new("baseline", 10.0, 4, 4),
            ],
            series: vec![
                SeriesTemplate {
                    name: "latency".into(),
                    kind: SeriesKind::Histogram,
                    labels: labels.clone(),
                    value: ValueDist::LogUniform {
                        min: 1.0,
                        max: 250.0,
                    },
                    probability: 1.0,
                },
                SeriesTemplate {
                    name: "requests".into(),
                    kind: SeriesKind::Counter,
                    labels: labels.clone(),
                    value: ValueDist::Constant { value: 1.0 },
                    probability: 1.0,
                },
                SeriesTemplate {
                    name: "errors".into(),
                    kind: SeriesKind::Counter,
                    labels,
                    value: ValueDist::Constant { value: 1.0 },
                    probability: 0.02,
                },
            ],
        }
    }
}

impl Profile {
    /// Parses and validates a TOML profile.
    ///
    /// # Errors
    /// [`ProfileError::Toml`] for syntax or unknown keys, otherwise see [`Profile::validate`].
    pub fn from_toml_str(text: &str) -> Result<Profile, ProfileError> {
        let p: Profile = toml::from_str(text).map_err(|e| ProfileError::Toml(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the profile once, so running it cannot fail on configuration.
    ///
    /// # Errors
    /// [`ProfileError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |m: String| Err(ProfileError::Invalid(m));
        if self.phases.is_empty() {
            return bad("at least one phase is needed".into());
        }
        for p in &self.phases {
            if !(p.secs.is_finite() && p.secs >= 0.0) {
                return bad(format!("phase {:?}: secs must be >= 0", p.name));
            }
        }
        if self.total().is_zero() {
            return bad("the phases last 0 s".into());
        }
        if self.series.is_empty() {
            return bad("at least one series is needed".into());
        }
        for s in &self.series {
            if s.name.is_empty() {
                return bad("a series has an empty name".into());
            }
            if !(0.0..=1.0).contains(&s.probability) {
                return bad(format!(
                    "series {:?}: probability must be in [0, 1]",
                    s.name
                ));
            }
            if let ValueDist::LogUniform { min, .. } = s.value {
                if min <= 0.0 {
                    return bad(format!("series {:?}: log_uniform min must be > 0", s.name));
                }
            }
            if s.kind == SeriesKind::Counter && s.value.sample(0.0) < 0.0 {
                return bad(format!("series {:?}: counters cannot decrease", s.name));
            }
        }
        if self.batch == 0 {
            return bad("batch must be >= 1".into());
        }
        if self.mode == ModeKind::Rate && !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("rate must be > 0".into());
        }
        if self.mode == ModeKind::Rate && self.max_in_flight == 0 {
            return bad("max_in_flight must be >= 1".into());
        }
        Ok(())
    }

    /// Total length of the phases.
    pub fn total(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|p| p.secs).sum::<f64>().max(0.0))
    }

    /// Scales every phase so the profile lasts `total` (the shape is kept).
    pub fn scale_to(&mut self, total: Duration) {
        let now = self.total().as_secs_f64();
        if now > 0.0 {
            let k = total.as_secs_f64() / now;
            for p in &mut self.phases {
                p.secs *= k;
            }
        }
    }

    /// Replaces the label sets of every series by `service=<s>` for each of `services`.
    pub fn set_services(&mut self, services: &[&str]) {
        let labels = service_labels(services);
        for s in &mut self.series {
            s.labels = labels.clone();
        }
    }

    /// Largest concurrency any phase reaches.
    pub fn peak(&self) -> usize {
        self.phases
            .iter()
            .map(|p| p.from.max(p.end()))
            .max()
            .unwrap_or(0)
    }

    /// The phase at `elapsed` and the concurrency it asks for (`None` after the end).
    pub fn at(&self, elapsed: Duration) -> Option<(&Phase, usize)> {
        self.locate(elapsed).map(|(_, p, c)| (p, c))
    }

    /// Like [`Profile::at`], with the phase's index.
    pub fn locate(&self, elapsed: Duration) -> Option<(usize, &Phase, usize)> {
        let mut t = elapsed.as_secs_f64();
        for (i, p) in self.phases.iter().enumerate() {
            if t < p.secs {
                let f = if p.secs > 0.0 { t / p.secs } else { 1.0 };
                let c = p.from as f64 + (p.end() as f64 - p.from as f64) * f;
                return Some((i, p, c.round() as usize));
            }
            t -= p.secs;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_is_the_seed_shape_and_lasts_55_seconds() {
        let p = Profile::default();
        p.validate().unwrap();
        assert_eq!(p.total(), Duration::from_secs(55));
        assert_eq!(p.peak(), 200);
        assert_eq!(p.at(Duration::ZERO).unwrap().1, 4);
        assert_eq!(p.at(Duration::from_secs(5)).unwrap().1, 22);
        assert_eq!(p.at(Duration::from_secs(15)).unwrap().1, 40);
        let (phase, c) = p.at(Duration::from_secs(42)).unwrap();
        assert_eq!((phase.name.as_str(), c), ("thundering_herd", 200));
        assert!(p.at(Duration::from_secs(55)).is_none());
    }

    #[test]
    fn scaling_keeps_the_shape() {
        let mut p = Profile::default();
        p.scale_to(Duration::from_secs_f64(5.5));
        assert!((p.total().as_secs_f64() - 5.5).abs() < 1e-9);
        assert_eq!(
            p.at(Duration::from_secs_f64(4.2)).unwrap().0.name,
            "thundering_herd"
        );
    }

    #[test]
    fn toml_profile_parses_and_unknown_keys_are_errors() {
        let p = Profile::from_toml_str(
            r#"
            mode = "rate"
            rate = 100.0
            [[phases]]
            name = "flat"
            secs = 2.0
            from = 3
            [[series]]
            name = "cpu"
            kind = "gauge"
            labels = [{ host = "a" }, { host = "b" }]
            value = { dist = "uniform", min = 0.0, max = 100.0 }
            "#,
        )
        .unwrap();
        assert_eq!(p.mode, ModeKind::Rate);
        assert_eq!(p.at(Duration::from_secs(1)).unwrap().1, 3);
        assert_eq!(p.series[0].labels.len(), 2);
        assert_eq!(p.series[0].probability, 1.0);
        let err = Profile::from_toml_str("bogus = 1\nphases = []\nseries = []").unwrap_err();
        assert!(matches!(err, ProfileError::Toml(_)), "{err}");
    }

    #[test]
    fn invalid_profiles_are_refused_with_the_field_named() {
        let mut p = Profile::default();
        p.series[0].probability = 2.0;
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("probability")
        );
        let mut p = Profile::default();
        p.phases.clear();
        assert!(p.validate().is_err());
    }

    #[test]
    fn log_uniform_stays_in_range() {
        let d = ValueDist::LogUniform {
            min: 1.0,
            max: 250.0,
        };
        for i in 0..100 {
            let v = d.sample(f64::from(i) / 100.0);
            assert!((1.0..=250.0).contains(&v), "{v}");
        }
    }
}
