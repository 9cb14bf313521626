//! Naive baseline: one global `Mutex` around a `HashMap<String, _>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{HandleSet, Target};

/// Per-series statistics: count/sum/min/max plus a 64-bucket log2 histogram
/// (bucket `i` holds values `v` with `floor(log2(max(v, 1))) == i`).
#[derive(Clone, Debug)]
pub struct Stats {
    /// Number of records.
    pub count: u64,
    /// Sum of recorded values (wrapping).
    pub sum: u64,
    /// Smallest recorded value (`u64::MAX` if empty).
    pub min: u64,
    /// Largest recorded value.
    pub max: u64,
    /// log2 buckets.
    pub buckets: [u64; 64],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
            buckets: [0; 64],
        }
    }
}

impl Stats {
    /// Adds one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.buckets[(63 - (v | 1).leading_zeros()) as usize] += 1;
    }
}

/// Series storage: name -> slot, slots in a `Vec`, all behind one lock.
///
/// This is `Mutex<HashMap<String, Stats>>` with one indirection (the map
/// holds an index into `stats`), so that the cached-handle variant can be the
/// same single global lock minus the string hash + lookup: a handle is just
/// the slot index.
#[derive(Debug, Default)]
struct Registry {
    index: HashMap<String, usize>,
    stats: Vec<Stats>,
}

impl Registry {
    fn slot(&mut self, service: &str) -> usize {
        if let Some(&i) = self.index.get(service) {
            return i;
        }
        let i = self.stats.len();
        self.stats.push(Stats::default());
        self.index.insert(service.to_owned(), i);
        i
    }
}

/// `Mutex<HashMap<String, Stats>>` baseline.
#[derive(Debug, Default)]
pub struct Baseline {
    inner: Arc<Mutex<Registry>>,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Baseline {
    /// Empty baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total number of records across all series (for tests).
    pub fn total_count(&self) -> u64 {
        lock(&self.inner).stats.iter().map(|s| s.count).sum()
    }
}

impl Target for Baseline {
    type Handles = BaselineHandles;

    fn name(&self) -> &'static str {
        "baseline_mutex_hashmap"
    }

    #[inline]
    fn record_by_name(&self, service: &str, latency_ms: u64) {
        let mut reg = lock(&self.inner);
        let i = reg.slot(service);
        reg.stats[i].record(latency_ms);
    }

    fn recorded_count(&self, service: &str) -> Option<u64> {
        let reg = lock(&self.inner);
        reg.index.get(service).map(|&i| reg.stats[i].count)
    }

    fn handles(&self, services: &[String]) -> Self::Handles {
        let mut reg = lock(&self.inner);
        let slots = services.iter().map(|s| reg.slot(s)).collect();
        drop(reg);
        BaselineHandles {
            inner: Arc::clone(&self.inner),
            slots,
        }
    }
}

/// Cached baseline handles: slot indices into the same locked registry.
#[derive(Debug)]
pub struct BaselineHandles {
    inner: Arc<Mutex<Registry>>,
    slots: Vec<usize>,
}

impl HandleSet for BaselineHandles {
    #[inline]
    fn record(&self, idx: usize, latency_ms: u64) {
        let slot = self.slots[idx];
        lock(&self.inner).stats[slot].record(latency_ms);
    }
}
