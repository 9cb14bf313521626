//! Thread-local shards: each recording thread owns one shard id per registry and caches,
//! per series, the `Arc` of its own cell, so the steady-state recording path takes no lock
//! and does no read-modify-write.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};

use super::Inner;
use crate::key::{BuildKeyHasher, Key};
use crate::registry::cell::CellRef;
use crate::sync::{self, Mutex, Ordering};

/// Pool of small reusable ids, lowest first. Used for shard ids (a thread takes one on its
/// first record into a registry and gives it back when it exits; the next thread reuses
/// the id, and with it the cells, so the number of cells per series is bounded by the peak
/// number of live recording threads) and for series slots.
#[derive(Debug, Default)]
pub(crate) struct IdPool {
    /// Min-heap of returned ids: lowest first keeps per-series cell vectors and the slot
    /// caches short; O(log n) per release even when many series are evicted at once.
    free: BinaryHeap<Reverse<usize>>,
    next: usize,
}

impl IdPool {
    /// Takes a free id. The pool's mutex orders the previous owner's last writes to the
    /// shard's cells before the new owner's first plain load of them.
    pub(crate) fn acquire(pool: &Mutex<IdPool>) -> usize {
        let mut p = sync::lock(pool);
        match p.free.pop() {
            Some(Reverse(id)) => id,
            None => {
                p.next += 1;
                p.next - 1
            }
        }
    }

    /// Returns `id`; see [`IdPool::acquire`].
    pub(crate) fn release(pool: &Mutex<IdPool>, id: usize) {
        sync::lock(pool).free.push(Reverse(id));
    }

    /// Ids ever handed out (for shards: the peak number of concurrently recording threads).
    pub(crate) fn high_water(pool: &Mutex<IdPool>) -> usize {
        sync::lock(pool).next
    }
}

/// A service name owned by the `record_latency` cache.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ServiceKey(Box<str>);

impl ServiceKey {
    pub(crate) fn new(s: &str) -> Self {
        ServiceKey(s.into())
    }
}

impl Hash for ServiceKey {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_service(self.0.as_bytes(), state);
    }
}

/// An empty front table, built on the heap: a 128 KiB array built on the stack would make
/// every caller's frame large enough to need stack probes.
#[cold]
#[inline(never)]
fn new_recent_table() -> Box<[Option<CellRef>; RECENT_LEN]> {
    let slots: Box<[Option<CellRef>]> = (0..RECENT_LEN).map(|_| None).collect();
    slots.try_into().expect("RECENT_LEN slots")
}

/// Entries of the [`LocalShard::recent`] table: 16,384 cell pointers (128 KiB, allocated on
/// a thread's first `record_latency` into a registry). An entry holds just the cell: the
/// name it is compared with is in the cell's first line ([`Cell::is_named`]), which the
/// record then writes, so a hit reads one entry of 8 bytes and no other line than the
/// record's. With 10,000 services drawn Zipf(1.1), the top 4,096 take 94 % of the calls, the
/// top 8,192 98 %. Alternated criterion runs of `core/record/zipf10k/record_latency`
/// (Intel Xeon, 2026-12-04), medians of five: 4,096 entries of 32 bytes with the name inline
/// (the previous table, 128 KiB) 31.4 ns; 16,384 of those (512 KiB) 28.7 ns; this table
/// 25.8 ns.
///
/// [`Cell::is_named`]: crate::registry::cell::Cell::is_named
pub(crate) const RECENT_LEN: usize = 16_384;

/// Slot of `service` in the front table: one multiply over the words the byte comparison
/// loads anyway (first and last 8 bytes, the middle ones for longer names, the length).
/// Unseeded and weak on purpose: a collision only sends a lookup on to the seeded map.
#[inline(always)]
pub(crate) fn recent_slot(service: &str) -> usize {
    let b = service.as_bytes();
    let n = b.len();
    let le32 = |at: usize| u64::from(u32::from_le_bytes(word::<4>(b, at)));
    let le64 = |at: usize| u64::from_le_bytes(word::<8>(b, at));
    let w = match n {
        0 => 0,
        1..=3 => u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
        4..=7 => le32(0) | le32(n - 4) << 32,
        8..=16 => le64(0) ^ le64(n - 8).rotate_left(29),
        _ => le64(0) ^ le64(n - 8).rotate_left(29) ^ le64(n / 2 - 4).rotate_left(43),
    };
    let h = (w ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - RECENT_LEN.trailing_zeros())) as usize
}

/// Feeds a service name to the (seeded) hasher as at most two words plus its length. For
/// names of up to 16 bytes the words (built from overlapping loads) and the length determine
/// the name, so this is as collision-resistant as hashing the bytes, in fewer hasher rounds.
#[inline(always)]
fn hash_service<H: Hasher>(b: &[u8], state: &mut H) {
    let n = b.len();
    let le32 = |at: usize| u64::from(u32::from_le_bytes(word::<4>(b, at)));
    let le64 = |at: usize| u64::from_le_bytes(word::<8>(b, at));
    match n {
        0..=3 => {
            let v = if n == 0 {
                0
            } else {
                u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16
            };
            state.write_u64(v | (n as u64) << 32);
        }
        4..=7 => {
            state.write_u64(le32(0) | le32(n - 4) << 32);
            state.write_usize(n);
        }
        8..=16 => {
            state.write_u64(le64(0));
            state.write_u64(le64(n - 8) ^ (n as u64).rotate_right(8));
        }
        _ => {
            state.write(b);
            state.write_usize(n);
        }
    }
}

fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&s[at..at + N]);
    w
}

/// A borrowed service name for lookups: same hash as [`ServiceKey`], compared inline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServiceRef<'a>(pub(crate) &'a str);

impl Hash for ServiceRef<'_> {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_service(self.0.as_bytes(), state);
    }
}

impl Equivalent<ServiceKey> for ServiceRef<'_> {
    #[inline]
    fn equivalent(&self, key: &ServiceKey) -> bool {
        short_eq(self.0.as_bytes(), key.0.as_bytes())
    }
}

/// Byte equality without a `memcmp` call for the short names services usually have: two
/// overlapping word loads per side instead of a library call per lookup.
#[inline]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

/// A thread's ownership of one shard id of a registry. The id goes back to the pool when
/// the last holder is dropped: the thread's [`LocalShard`] and any
/// [`LocalHistogram`](crate::LocalHistogram) of that thread. `Rc`, so every holder stays on
/// the owning thread: the shard's cells keep a single writer even while a thread's
/// thread-local storage is being torn down and a `LocalHistogram` outlives its `LocalShard`.
#[derive(Debug)]
pub(crate) struct ShardLease {
    registry: Weak<Inner>,
    pub(crate) shard: usize,
}

impl Drop for ShardLease {
    fn drop(&mut self) {
        if let Some(inner) = self.registry.upgrade() {
            IdPool::release(&inner.shards, self.shard);
        }
    }
}

/// One thread's view of one registry.
#[derive(Debug)]
pub(crate) struct LocalShard {
    registry_id: u64,
    /// This thread's ownership of its shard id of the registry (which it also names),
    /// shared with its `LocalHistogram`s.
    pub(crate) lease: Rc<ShardLease>,
    /// The registry's eviction epoch when the caches were last swept.
    epoch: u64,
    /// `record_latency` cache: service name to this shard's cell.
    pub(crate) latency: HashMap<ServiceKey, CellRef, foldhash::fast::RandomState>,
    /// Direct-mapped front cache of `latency`, indexed by [`recent_slot`]: a hit costs one
    /// byte comparison of the name instead of hashing it and probing the map. Allocated on
    /// the first `record_latency` (128 KiB).
    pub(crate) recent: Option<Box<[Option<CellRef>; RECENT_LEN]>>,
    /// Misses that found their front slot taken (see [`LocalShard::remember`]).
    displacements: u32,
    /// By-name cache for every other series.
    pub(crate) keyed: HashMap<Key, CellRef, BuildKeyHasher>,
    /// Handle cache indexed by series slot; an entry is valid when its cell's `series_id`
    /// equals the handle's series id.
    pub(crate) by_slot: Vec<Option<CellRef>>,
}

impl LocalShard {
    /// This thread's shard id of the registry.
    #[inline]
    pub(crate) fn shard(&self) -> usize {
        self.lease.shard
    }

    /// The front-cache entry for `service` in `slot` (its [`recent_slot`]), if it holds
    /// that service's live cell.
    #[inline(always)]
    pub(crate) fn recent_cell(&self, service: &str, slot: usize) -> Option<&CellRef> {
        let cell = self.recent.as_deref()?[slot & (RECENT_LEN - 1)].as_ref()?;
        (cell.is_named(service) && !cell.is_retired()).then_some(cell)
    }

    /// Puts `cell` for `service` in the front table (`recent`) after a miss: always into an
    /// empty slot, but over another entry only on every 8th such miss, so that a long tail
    /// of rare services does not keep pushing the frequent ones out (and misses stay cheap).
    /// Only cells that carry the name are kept: names longer than
    /// [`SHORT_NAME`](crate::registry::cell::SHORT_NAME) bytes always go through the map.
    #[inline]
    fn remember(
        recent: &mut Option<Box<[Option<CellRef>; RECENT_LEN]>>,
        displacements: &mut u32,
        service: &str,
        cell: &CellRef,
        slot: usize,
    ) {
        if !cell.is_named(service) {
            return;
        }
        let slots = recent.get_or_insert_with(new_recent_table);
        let slot = &mut slots[slot & (RECENT_LEN - 1)];
        if slot.is_some() {
            *displacements = displacements.wrapping_add(1);
            if *displacements % 8 != 0 {
                return;
            }
        }
        *slot = Some(cell.clone());
    }

    /// Records into the cell the per-thread map holds for `service` and makes it the front
    /// entry of `slot`; `false` when the map has no live cell for it.
    #[inline]
    pub(crate) fn record_from_map(&mut self, service: &str, slot: usize, v: u64) -> bool {
        let Some(c) = self.latency.get(&ServiceRef(service)) else {
            return false;
        };
        if c.is_retired() {
            self.latency.remove(&ServiceRef(service));
            return false;
        }
        c.observe_u64::<false>(v, 1);
        Self::remember(&mut self.recent, &mut self.displacements, service, c, slot);
        true
    }

    /// Caches `cell` for `service` in the map and the front table.
    pub(crate) fn cache_latency(&mut self, service: &str, cell: CellRef, slot: usize) {
        Self::remember(
            &mut self.recent,
            &mut self.displacements,
            service,
            &cell,
            slot,
        );
        self.latency.insert(ServiceKey::new(service), cell);
    }

    /// Drops cached cells of evicted series when the registry evicted something since the
    /// last sweep, so the collector can free them.
    #[inline]
    pub(crate) fn sweep_if_evicted(&mut self, inner: &Inner) {
        if let Some(epoch) = self.unswept_epoch(inner) {
            self.sweep(epoch);
        }
    }

    /// The registry's eviction epoch when it moved since this shard's last sweep.
    #[inline(always)]
    fn unswept_epoch(&self, inner: &Inner) -> Option<u64> {
        // Relaxed: a hint; a stale read only delays the sweep (retired cells are still
        // collected while referenced).
        let epoch = inner.evict_epoch.load(Ordering::Relaxed);
        (epoch != self.epoch).then_some(epoch)
    }

    /// The sweep itself, out of line: inlined, its loops took registers from every
    /// recording path.
    #[cold]
    #[inline(never)]
    fn sweep(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.latency.retain(|_, c| !c.is_retired());
        for e in self.recent.iter_mut().flat_map(|r| r.iter_mut()) {
            if e.as_ref().is_some_and(|c| c.is_retired()) {
                *e = None;
            }
        }
        self.keyed.retain(|_, c| !c.is_retired());
        for e in &mut self.by_slot {
            if e.as_ref().is_some_and(|c| c.is_retired()) {
                *e = None;
            }
        }
    }
}

impl Drop for LocalShard {
    fn drop(&mut self) {
        // Drop the cell references first so a retired cell can be freed by the collector.
        self.recent = None;
        self.latency.clear();
        self.keyed.clear();
        self.by_slot.clear();
        // `lease` is dropped after this: the shard id goes back to the pool once no
        // `LocalHistogram` of this thread holds it any more.
    }
}

/// This thread's shards: the one of the registry used last inline (one pointer less on
/// the hot path), the others in a list.
#[derive(Debug)]
struct LocalSet {
    current: Option<LocalShard>,
    others: Vec<LocalShard>,
}

impl Drop for LocalSet {
    fn drop(&mut self) {
        // From here on this thread must not use handle caches: its shards go back to the
        // pool below and may be taken by another thread. A dead tag matches no cache.
        TAG.with(|t| t.set(DEAD_TAG));
    }
}

thread_local! {
    static LOCAL: RefCell<LocalSet> = const { RefCell::new(LocalSet { current: None, others: Vec::new() }) };
    /// A process-unique id of this thread (never reused, unlike shard ids); 0 = not yet
    /// assigned, `DEAD_TAG` = thread-local storage torn down.
    static TAG: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

const DEAD_TAG: u64 = u64::MAX;
static NEXT_TAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// This thread's unique tag, used by handles to cache the cell of the thread that records
/// through them. Returns `DEAD_TAG` once the thread's shards were released.
#[inline]
pub(crate) fn thread_tag() -> u64 {
    TAG.with(|t| match t.get() {
        0 => {
            // Relaxed: unique id generation only.
            let tag = NEXT_TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            t.set(tag);
            tag
        }
        tag => tag,
    })
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
            let mut set = cell.try_borrow_mut().ok()?;
            let set = &mut *set;
            if set.current.as_ref().map(|s| s.registry_id) != Some(inner.id) {
                switch(set, inner);
            }
            let local = set.current.as_mut()?;
            local.sweep_if_evicted(inner);
            Some(f(local))
        })
        .ok()
        .flatten()
}

/// Runs `f` with this thread's shard of `inner` only when nothing needs doing first: the
/// shard exists, is the current one, and has been swept since the last eviction. `None`
/// otherwise (callers then go through [`with_local`]), and when thread-local storage is
/// unavailable or already borrowed.
#[inline(always)]
pub(crate) fn with_current<R>(inner: &Inner, f: impl FnOnce(&LocalShard) -> R) -> Option<R> {
    LOCAL
        .try_with(|cell| {
            let set = cell.try_borrow().ok()?;
            let local = set.current.as_ref()?;
            (local.registry_id == inner.id && local.unswept_epoch(inner).is_none())
                .then(|| f(local))
        })
        .ok()
        .flatten()
}

/// Makes `inner`'s shard the current one, creating it if needed.
#[cold]
fn switch(set: &mut LocalSet, inner: &Arc<Inner>) {
    if let Some(prev) = set.current.take() {
        set.others.push(prev);
    }
    let found = set.others.iter().position(|s| s.registry_id == inner.id);
    let shard = match found {
        Some(pos) => set.others.swap_remove(pos),
        None => {
            // Forget shards of registries that no longer exist.
            set.others.retain(|s| s.lease.registry.strong_count() > 0);
            LocalShard {
                registry_id: inner.id,
                lease: Rc::new(ShardLease {
                    registry: Arc::downgrade(inner),
                    shard: IdPool::acquire(&inner.shards),
                }),
                // Relaxed: see `sweep_if_evicted`.
                epoch: inner.evict_epoch.load(Ordering::Relaxed),
                latency: HashMap::default(),
                recent: None,
                displacements: 0,
                keyed: HashMap::default(),
                by_slot: Vec::new(),
            }
        }
    };
    set.current = Some(shard);
}

#[cfg(test)]
mod tests {
    use super::{LOCAL, short_eq};
    use crate::Registry;
    use crate::sync;

    /// A local handle keeps its shard reserved after the thread's `LocalShard` is gone (as
    /// when thread-local storage is torn down in an unlucky order), and gives it back when
    /// it is dropped.
    #[test]
    fn a_local_handle_holds_its_shard_past_the_thread_local_storage() {
        let registry = Registry::new();
        let handle = registry.latency("x");
        let inner = registry.inner.clone();
        std::thread::spawn(move || {
            let local = handle.local();
            local.record(1);
            let shard = LOCAL.with(|l| l.borrow_mut().current.take()).unwrap();
            let id = shard.shard();
            drop(shard);
            let free = |id| sync::lock(&inner.shards).free.iter().any(|r| r.0 == id);
            assert!(!free(id), "released while a local handle holds it");
            local.record(2);
            drop(local);
            assert!(free(id), "not released after the last holder");
        })
        .join()
        .unwrap();
        let snap = registry.snapshot();
        assert_eq!(
            snap.histogram("latency", &[("service", "x")])
                .unwrap()
                .count,
            2
        );
    }

    #[test]
    fn short_eq_agrees_with_slice_equality() {
        let words: Vec<Vec<u8>> = (0..40usize)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                let mut variants = vec![base.clone()];
                for i in 0..n {
                    let mut v = base.clone();
                    v[i] = b'Z';
                    variants.push(v);
                }
                variants
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(short_eq(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
    }
}
