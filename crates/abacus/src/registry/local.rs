//! Thread-local shards: each recording thread owns one shard id per registry and caches,
//! per series, the `Arc` of its own cell, so the steady-state recording path takes no lock
//! and does no read-modify-write.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use hashbrown::HashMap;

use super::Inner;
use crate::key::{BuildKeyHasher, Key};
use crate::registry::cell::CellRef;
use crate::sync::{self, Mutex, Ordering};

/// Pool of shard ids. A thread takes an id on its first record into a registry and gives
/// it back when it exits; the next thread reuses the id, and with it the cells, so the
/// number of cells per series is bounded by the peak number of live recording threads.
#[derive(Debug, Default)]
pub(crate) struct ShardPool {
    free: Vec<usize>,
    next: usize,
}

impl ShardPool {
    /// Takes a free id. The pool's mutex orders the previous owner's last writes to the
    /// shard's cells before the new owner's first plain load of them.
    pub(crate) fn acquire(pool: &Mutex<ShardPool>) -> usize {
        let mut p = sync::lock(pool);
        p.free.pop().unwrap_or_else(|| {
            p.next += 1;
            p.next - 1
        })
    }

    /// Returns `id`; see [`ShardPool::acquire`].
    pub(crate) fn release(pool: &Mutex<ShardPool>, id: usize) {
        let mut p = sync::lock(pool);
        // Lowest ids first keeps the per-series cell vectors short.
        p.free.push(id);
        p.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Ids ever handed out (the peak number of concurrently recording threads).
    pub(crate) fn high_water(pool: &Mutex<ShardPool>) -> usize {
        sync::lock(pool).next
    }
}

/// One thread's view of one registry.
#[derive(Debug)]
pub(crate) struct LocalShard {
    registry_id: u64,
    registry: Weak<Inner>,
    pub(crate) shard: usize,
    /// The registry's eviction epoch when the caches were last swept.
    epoch: u64,
    /// `record_latency` cache: service name to this shard's cell.
    pub(crate) latency: HashMap<Box<str>, CellRef, foldhash::fast::RandomState>,
    /// By-name cache for every other series.
    pub(crate) keyed: HashMap<Key, CellRef, BuildKeyHasher>,
    /// Handle cache indexed by series slot; an entry is valid when its cell's `series_id`
    /// equals the handle's series id.
    pub(crate) by_slot: Vec<Option<CellRef>>,
}

impl LocalShard {
    /// Drops cached cells of evicted series when the registry evicted something since the
    /// last sweep, so the collector can free them.
    #[inline]
    pub(crate) fn sweep_if_evicted(&mut self, inner: &Inner) {
        // Relaxed: a hint; a stale read only delays the sweep (retired cells are still
        // collected while referenced).
        let epoch = inner.evict_epoch.load(Ordering::Relaxed);
        if epoch != self.epoch {
            self.epoch = epoch;
            self.latency.retain(|_, c| !c.is_retired());
            self.keyed.retain(|_, c| !c.is_retired());
            for e in &mut self.by_slot {
                if e.as_ref().is_some_and(|c| c.is_retired()) {
                    *e = None;
                }
            }
        }
    }
}

impl Drop for LocalShard {
    fn drop(&mut self) {
        // Drop the cell references first so a retired cell can be freed by the collector.
        self.latency.clear();
        self.keyed.clear();
        self.by_slot.clear();
        if let Some(inner) = self.registry.upgrade() {
            ShardPool::release(&inner.shards, self.shard);
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Vec<LocalShard>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's shard of `inner`, creating it on first use.
///
/// Returns `None` when thread-local storage is unavailable (the thread is exiting) or
/// already borrowed (a record made from inside another record, e.g. by an allocator hook);
/// callers then use the series' shared cell.
#[inline]
pub(crate) fn with_local<R>(inner: &Arc<Inner>, f: impl FnOnce(&mut LocalShard) -> R) -> Option<R> {
    LOCAL
        .try_with(|cell| {
            let mut shards = cell.try_borrow_mut().ok()?;
            if shards.first().map(|s| s.registry_id) != Some(inner.id) {
                let pos = match shards.iter().position(|s| s.registry_id == inner.id) {
                    Some(pos) => pos,
                    None => {
                        // Forget shards of registries that no longer exist.
                        shards.retain(|s| s.registry.strong_count() > 0);
                        shards.push(LocalShard {
                            registry_id: inner.id,
                            registry: Arc::downgrade(inner),
                            shard: ShardPool::acquire(&inner.shards),
                            // Relaxed: see `sweep_if_evicted`.
                            epoch: inner.evict_epoch.load(Ordering::Relaxed),
                            latency: HashMap::default(),
                            keyed: HashMap::default(),
                            by_slot: Vec::new(),
                        });
                        shards.len() - 1
                    }
                };
                shards.swap(0, pos);
            }
            let local = &mut shards[0];
            local.sweep_if_evicted(inner);
            Some(f(local))
        })
        .ok()
        .flatten()
}
