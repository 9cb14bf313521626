use std::collections::VecDeque;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::Sink;
use crate::error::SinkError;
use crate::snapshot::Snapshot;
use crate::sync;

/// Keeps the last `capacity` windows in memory; clones share the ring.
#[derive(Clone, Debug)]
pub struct MemorySink {
    /// Lock: the flusher (one push per window) and readers; never recording threads.
    ring: Arc<Mutex<VecDeque<Snapshot>>>,
    capacity: usize,
}

impl MemorySink {
    /// A ring of the last `capacity` (at least 1) windows.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        MemorySink {
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// The retained windows, oldest first.
    pub fn windows(&self) -> Vec<Snapshot> {
        sync::lock_std(&self.ring).iter().cloned().collect()
    }

    /// The most recent window.
    pub fn latest(&self) -> Option<Snapshot> {
        sync::lock_std(&self.ring).back().cloned()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError> {
        let mut ring = sync::lock_std(&self.ring);
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(window.clone());
        Ok(())
    }
}

/// Calls a function with each window.
pub struct CallbackSink<F: FnMut(&Snapshot) + Send>(pub F);

impl<F: FnMut(&Snapshot) + Send> std::fmt::Debug for CallbackSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackSink")
    }
}

impl<F: FnMut(&Snapshot) + Send> Sink for CallbackSink<F> {
    fn name(&self) -> &'static str {
        "callback"
    }

    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError> {
        (self.0)(window);
        Ok(())
    }
}

/// Sends each window into a bounded channel without blocking the flusher: when the
/// receiver is full the window is dropped and counted (see [`ChannelSink::dropped`]).
#[derive(Debug)]
pub struct ChannelSink {
    tx: SyncSender<Snapshot>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl ChannelSink {
    /// Wraps the sending side of `std::sync::mpsc::sync_channel`.
    pub fn new(tx: SyncSender<Snapshot>) -> Self {
        ChannelSink {
            tx,
            dropped: Arc::default(),
        }
    }

    /// A counter of windows dropped because the channel was full.
    pub fn dropped(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.dropped.clone()
    }
}

impl Sink for ChannelSink {
    fn name(&self) -> &'static str {
        "channel"
    }

    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError> {
        match self.tx.try_send(window.clone()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                // Relaxed: statistics counter.
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("Channel sink is full; window dropped");
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(SinkError::Closed),
        }
    }
}
