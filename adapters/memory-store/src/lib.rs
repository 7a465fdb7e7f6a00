#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod prefetch;

use convert_ports::{DataStore, StoreData, StoreError};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default number of visitors kept (the reference SDK's bound).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A monotonic clock for the store's time-to-live, injectable so that tests can move time.
///
/// Only read when a TTL is set ([`MemoryStore::with_ttl`]).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin; must never go backwards.
    fn now(&self) -> Duration;
}

/// The default [`Clock`]: [`Instant`], counted from the clock's creation.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Milliseconds, saturating (the unit of `Slot::used`).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The visitors per set and the number of sets of a store of `capacity` visitors.
fn set_layout(capacity: usize) -> (usize, usize) {
    let ways = capacity.clamp(1, WAYS);
    (ways, capacity.div_ceil(ways).max(1))
}

/// Ways per set: how many visitors share one set (and one lock).
const WAYS: usize = 16;

/// Longest key kept inside its slot (an SDK key, `{account}-{project}-{visitor}`, with a UUID
/// visitor id is about 55 bytes); a longer key gets its own allocation.
const INLINE_KEY: usize = 62;

/// A slot's key: inline up to [`INLINE_KEY`] bytes, so that storing or comparing a key touches
/// no memory but the slot's.
#[derive(Debug)]
#[repr(u8)]
enum Key {
    Inline(u8, [u8; INLINE_KEY]),
    Heap(Box<str>),
}

impl Default for Key {
    fn default() -> Self {
        Key::Inline(0, [0; INLINE_KEY])
    }
}

impl Key {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline(len, buf) => buf.get(..usize::from(*len)).unwrap_or_default(),
            Key::Heap(s) => s.as_bytes(),
        }
    }

    /// Stores `key`, writing only its bytes (and its length) when it fits inline.
    #[inline]
    fn set(&mut self, key: &str) {
        let bytes = key.as_bytes();
        match u8::try_from(bytes.len()) {
            Ok(n) if bytes.len() <= INLINE_KEY => {
                if let Key::Heap(_) = self {
                    *self = Key::default();
                }
                if let Key::Inline(len, buf) = self {
                    buf[..bytes.len()].copy_from_slice(bytes);
                    *len = n;
                }
            }
            _ => *self = Key::Heap(key.into()),
        }
    }
}

/// One visitor's record, aligned to a cache line.
///
/// The record comes first and the key right after it, so that a fresh insert (which drops the
/// evicted record and writes the new one and its key) and a lookup (which compares the key and
/// reads the record) touch only the slot's first two lines when the key is shorter than about
/// 38 bytes, and its three lines otherwise. The time of last use, written only with a TTL, is
/// last.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Slot {
    data: StoreData,
    key: Key,
    /// When the record was last used, in clock milliseconds; only kept with a TTL.
    used: u64,
}

/// `n` nibbles from the low end set (`n` ≤ 16).
fn nibbles(n: usize) -> u64 {
    if n >= 16 {
        u64::MAX
    } else {
        (1u64 << (4 * n)) - 1
    }
}

/// The records of a set, allocated at its first insert (once per set: kept out of line so that
/// the hot path stays small).
#[cold]
#[inline(never)]
fn new_slots() -> Box<[Slot; WAYS]> {
    Box::new(std::array::from_fn(|_| Slot::default()))
}

/// One set of a set-associative table: up to `ways` visitors whose keys hash to it, in order of
/// use.
///
/// Everything needed to find a visitor, to pick the one to evict and to lock the set fits in
/// the set's one cache line (with its lock): the 16-bit tags of the ways, and the ways ordered
/// by recency packed as nibbles. The records themselves are allocated once per set, at its
/// first insert, and reused in place from then on.
#[derive(Debug)]
struct Set {
    /// Per way: 16 bits of the key's hash, compared before the key itself.
    tags: [u16; WAYS],
    /// Ways by recency of use, one nibble per position: position 0 is the most recently used
    /// way. Positions below `len` hold the live ways; the positions from `len` to `ways - 1`
    /// hold the free ones.
    order: u64,
    /// Number of live ways.
    len: u8,
    /// Bit `w` is set when way `w` is live.
    live: u16,
    slots: Option<Box<[Slot; WAYS]>>,
}

impl Default for Set {
    fn default() -> Self {
        Set {
            tags: [0; WAYS],
            // Position p holds way p: every way free.
            order: 0xFEDC_BA98_7654_3210,
            len: 0,
            live: 0,
            slots: None,
        }
    }
}

/// A set and its lock, alone on their cache line, so that threads working on different sets
/// never write to the same line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct PaddedSet(Mutex<Set>);

/// The time-to-live settings: the TTL in milliseconds and the clock that measures it.
#[derive(Debug, Clone)]
struct Ttl {
    millis: u64,
    clock: Arc<dyn Clock>,
}

impl Set {
    /// The way at recency position `p`.
    fn way(&self, p: usize) -> usize {
        ((self.order >> (4 * p)) & 0xF) as usize
    }

    fn slot(&self, w: usize) -> Option<&Slot> {
        self.slots.as_ref().and_then(|s| s.get(w))
    }

    fn slot_mut(&mut self, w: usize) -> Option<&mut Slot> {
        self.slots.as_mut().and_then(|s| s.get_mut(w))
    }

    /// The recency position of `key`'s way. The tags of all ways are compared at once (a
    /// loop the compiler vectorizes); only ways whose tag matches compare their key.
    #[inline]
    fn find(&self, tag: u16, key: &str) -> Option<usize> {
        let mut hits = 0u32;
        for (w, &t) in self.tags.iter().enumerate() {
            hits |= u32::from(t == tag) << w;
        }
        hits &= u32::from(self.live);
        while hits != 0 {
            let w = hits.trailing_zeros() as usize;
            if self
                .slot(w)
                .is_some_and(|s| s.key.as_bytes() == key.as_bytes())
            {
                return (0..usize::from(self.len)).find(|&p| self.way(p) == w);
            }
            hits &= hits - 1;
        }
        None
    }

    /// Moves the way at position `p` to position 0 (the most recently used); the ways before
    /// it move back by one.
    fn promote(&mut self, p: usize) {
        let w = (self.order >> (4 * p)) & 0xF;
        let before = self.order & nibbles(p);
        let after = self.order & !nibbles(p + 1);
        self.order = after | (before << 4) | w;
    }

    /// Frees the live way at position `p`: the later positions move forward and the way goes
    /// to the last position (`ways - 1`), among the free ones. Returns the record and its key,
    /// for the caller to drop after releasing the lock.
    #[cold]
    fn remove_at(&mut self, p: usize, ways: usize) -> Option<(StoreData, Key)> {
        let w = (self.order >> (4 * p)) & 0xF;
        let before = self.order & nibbles(p);
        let after = (self.order >> 4) & nibbles(ways - 1) & !nibbles(p);
        self.order = before | after | (w << (4 * (ways - 1)));
        self.len -= 1;
        self.live &= !(1 << w);
        self.slot_mut(w as usize)
            .map(|s| (std::mem::take(&mut s.data), std::mem::take(&mut s.key)))
    }

    /// Whether the way at position `p` was last used `ttl` ms or more before `now`.
    fn expired(&self, p: usize, now: u64, ttl: u64) -> bool {
        self.slot(self.way(p))
            .is_some_and(|s| now.saturating_sub(s.used) >= ttl)
    }

    /// Removes the expired records. Recency order is also the order of expiry, so they are
    /// all at the least recently used end.
    #[cold]
    fn purge_expired(&mut self, now: u64, ttl: u64, ways: usize) {
        while self.len > 0 && self.expired(usize::from(self.len) - 1, now, ttl) {
            self.remove_at(usize::from(self.len) - 1, ways);
        }
    }

    /// The live record of `key`, marked as just used; an expired record is removed and reads
    /// as absent.
    #[inline]
    fn use_mut(
        &mut self,
        tag: u16,
        key: &str,
        ways: usize,
        now: Option<(u64, u64)>,
    ) -> Option<&mut StoreData> {
        let p = self.find(tag, key)?;
        let w = self.way(p);
        if let Some((now, ttl)) = now {
            if self.expired(p, now, ttl) {
                self.remove_at(p, ways);
                return None;
            }
            if let Some(s) = self.slot_mut(w) {
                s.used = now;
            }
        }
        if p != 0 {
            self.promote(p);
        }
        self.slot_mut(w).map(|s| &mut s.data)
    }

    /// Inserts a record that is not in the set yet, as the most recently used, after removing
    /// expired ones. A full set gives the slot of its least recently used visitor to the new
    /// one; the record it held is returned, for the caller to drop after releasing the lock.
    /// The slot the set's next new visitor will take is then prefetched.
    #[inline(always)]
    fn insert(
        &mut self,
        tag: u16,
        key: &str,
        data: StoreData,
        ways: usize,
        now: Option<(u64, u64)>,
    ) -> StoreData {
        if let Some((now, ttl)) = now {
            self.purge_expired(now, ttl, ways);
        }
        let p = if usize::from(self.len) < ways {
            self.len += 1;
            usize::from(self.len) - 1
        } else {
            ways - 1
        };
        let w = self.way(p);
        self.promote(p);
        self.tags[w] = tag;
        self.live |= 1 << w;
        let slots = self.slots.get_or_insert_with(new_slots);
        let s = &mut slots[w];
        s.key.set(key);
        if let Some((now, _)) = now {
            s.used = now;
        }
        let evicted = std::mem::replace(&mut s.data, data);
        // The set's next new visitor will take the slot that is now least recently used, which
        // in a full store has rarely been touched since it was last written. Start loading it
        // now, so that the next insert into this set (many calls later, in a store of
        // thousands of visitors) finds it in the cache rather than waiting for memory.
        self.prefetch_victim(ways);
        evicted
    }

    /// Starts loading the slot that [`Set::insert`] would fill now (without a TTL): the first
    /// free way, or the least recently used one of a full set.
    #[inline(always)]
    fn prefetch_victim(&self, ways: usize) {
        let p = usize::from(self.len).min(ways - 1);
        if let Some(slot) = self.slot(self.way(p)) {
            prefetch::prefetch(slot);
        }
    }

    fn remove(&mut self, tag: u16, key: &str, ways: usize) -> Option<(StoreData, Key)> {
        let p = self.find(tag, key)?;
        self.remove_at(p, ways)
    }
}

/// A thread-safe, bounded, in-memory [`DataStore`] that evicts the least recently used visitor
/// of a set, with an optional time-to-live.
///
/// A set-associative table: a key's hash picks one of `capacity / 16` sets, each holding up to
/// 16 visitors in order of use, behind its own lock, on its own cache line. Every read or
/// update of a record makes it its set's most recently used; a new visitor in a full set takes
/// over the least recently used one's slot, whose old record is freed after the lock is
/// released. A decision therefore writes only the set's line and the slot (its key inline up to
/// 62 bytes, on the same lines as its record): two threads deciding for different visitors
/// rarely touch the same memory. A key is hashed once per call.
pub struct MemoryStore {
    sets: Box<[PaddedSet]>,
    ways: usize,
    hasher: foldhash::fast::RandomState,
    ttl: Option<Ttl>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity())
            .field("ttl", &self.ttl())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl MemoryStore {
    /// A store keeping up to [`DEFAULT_CAPACITY`] visitors, without a TTL.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store keeping up to `capacity` visitors (at least one; rounded up to a multiple of 16,
    /// the visitors per set, above 16), without a TTL. Its sets (one cache line per 16 visitors)
    /// are allocated now; a capacity whose sets cannot be allocated (more than the address space
    /// holds, such as `usize::MAX`) is logged as an error and [`DEFAULT_CAPACITY`] is used.
    pub fn with_capacity(capacity: usize) -> Self {
        let (ways, count) = set_layout(capacity);
        let mut sets = Vec::new();
        let (ways, count) = if sets.try_reserve_exact(count).is_ok() {
            (ways, count)
        } else {
            log::error!(
                "convert: a memory store of {capacity} visitors cannot be allocated; keeping {DEFAULT_CAPACITY}"
            );
            let (ways, count) = set_layout(DEFAULT_CAPACITY);
            sets.reserve_exact(count);
            (ways, count)
        };
        sets.extend((0..count).map(|_| PaddedSet::default()));
        MemoryStore {
            sets: sets.into_boxed_slice(),
            ways,
            hasher: foldhash::fast::RandomState::default(),
            ttl: None,
        }
    }

    /// Forgets a visitor `ttl` after the last use of its record (a read, an update or a write),
    /// measured with a monotonic clock. Expired records read as absent and their slots are
    /// reused. The TTL is counted in whole milliseconds (at least one).
    pub fn with_ttl(self, ttl: Duration) -> Self {
        self.with_ttl_clock(ttl, Arc::new(MonotonicClock::default()))
    }

    /// [`MemoryStore::with_ttl`] with time read from `clock` (for tests, or a coarser clock).
    pub fn with_ttl_clock(mut self, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        self.ttl = Some(Ttl {
            millis: millis(ttl).max(1),
            clock,
        });
        self
    }

    /// The time-to-live, when one is set.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl.as_ref().map(|t| Duration::from_millis(t.millis))
    }

    /// The most visitors the store keeps.
    pub fn capacity(&self) -> usize {
        self.sets.len() * self.ways
    }

    /// Number of visitors stored (expired records are removed first).
    pub fn len(&self) -> usize {
        let now = self.now();
        (0..self.sets.len())
            .map(|i| {
                let mut set = self.lock(i);
                if let Some((now, ttl)) = now {
                    set.purge_expired(now, ttl, self.ways);
                }
                usize::from(set.len)
            })
            .sum()
    }

    /// Whether no visitor is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every record.
    pub fn clear(&self) {
        for i in 0..self.sets.len() {
            // Taken under the lock, freed after it is released (the guard is a temporary of
            // this statement, dropped at its end).
            let old = std::mem::take(&mut *self.lock(i));
            drop(old);
        }
    }

    /// The current time and the TTL, in milliseconds, when a TTL is set.
    fn now(&self) -> Option<(u64, u64)> {
        self.ttl.as_ref().map(|t| (millis(t.clock.now()), t.millis))
    }

    /// The key's tag (the hash's low 16 bits) and its set (from the high bits).
    fn locate(&self, key: &str) -> (u16, usize) {
        let hash = self.hasher.hash_one(key);
        let set = ((u128::from(hash) * self.sets.len() as u128) >> 64) as usize;
        (hash as u16, set)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Set> {
        // A poisoned lock only means another thread panicked while holding it; the set itself
        // is still consistent (its order and length change together, after the record), so
        // keep serving.
        self.sets[i.min(self.sets.len() - 1)]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DataStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        let (tag, i) = self.locate(key);
        let now = self.now();
        Ok(self
            .lock(i)
            .use_mut(tag, key, self.ways, now)
            .map(|d| d.clone()))
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let (tag, i) = self.locate(key);
        let now = self.now();
        let mut set = self.lock(i);
        let old = match set.use_mut(tag, key, self.ways, now) {
            Some(data) => std::mem::replace(data, value.clone()),
            None => set.insert(tag, key, value.clone(), self.ways, now),
        };
        // Whatever the write replaced is freed after the lock is released.
        drop(set);
        drop(old);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (tag, i) = self.locate(key);
        let removed = self.lock(i).remove(tag, key, self.ways);
        drop(removed);
        Ok(())
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let (tag, i) = self.locate(key);
        let now = self.now();
        let mut set = self.lock(i);
        if let Some(existing) = set.use_mut(tag, key, self.ways, now) {
            return Ok(f(existing));
        }
        // The decision below runs while the slot it will write is brought into the cache.
        set.prefetch_victim(self.ways);
        let mut fresh = StoreData::default();
        if !f(&mut fresh) {
            return Ok(false);
        }
        let evicted = set.insert(tag, key, fresh, self.ways, now);
        // The evicted record, last written by whichever thread inserted or updated it, is
        // freed after the lock is released.
        drop(set);
        // A typical record owns no memory and is forgotten rather than run through its drop code.
        evicted.discard();
        Ok(true)
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn updates_in_place(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convert_ports::store::StoreData;
    use std::sync::Arc;

    fn mark(d: &mut StoreData, goal: &str) -> bool {
        d.mark_goal(goal)
    }

    /// A record with one goal marked.
    fn marked(goal: &str) -> StoreData {
        let mut d = StoreData::default();
        mark(&mut d, goal);
        d
    }

    /// A capacity whose sets cannot be allocated falls back to the default ("capacity overflow"
    /// panicked at `usize::MAX` before; `1 << 50` asked for 4 PiB and aborted).
    #[test]
    fn a_capacity_that_cannot_be_allocated_falls_back_to_the_default() {
        #[cfg(target_pointer_width = "64")]
        let capacities = [usize::MAX, 1 << 50];
        #[cfg(not(target_pointer_width = "64"))]
        let capacities = [usize::MAX];
        for capacity in capacities {
            let store = MemoryStore::with_capacity(capacity);
            assert_eq!(store.capacity(), DEFAULT_CAPACITY);
            assert!(store.set("v", &StoreData::default()).is_ok());
            assert!(store.get("v").ok().flatten().is_some());
        }
        assert_eq!(MemoryStore::with_capacity(40).capacity(), 48);
    }

    #[test]
    fn get_set_delete() {
        let s = MemoryStore::new();
        assert_eq!(s.get("k").ok().flatten(), None);
        let d = marked("g");
        assert!(s.set("k", &d).is_ok());
        assert_eq!(s.get("k").ok().flatten(), Some(d));
        assert!(s.delete("k").is_ok());
        assert_eq!(s.get("k").ok().flatten(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn an_active_visitor_survives_ten_thousand_newer_ones() {
        let s = MemoryStore::new();
        let mut conversions = 0;
        for i in 0..3 * DEFAULT_CAPACITY {
            if i % 100 == 0 {
                // The active visitor converts again: only the first call may win the mark.
                if matches!(s.update("active", &mut |d| mark(d, "g")), Ok(true)) {
                    conversions += 1;
                }
            }
            let _ = s.update(&format!("newer-{i}"), &mut |d| mark(d, "g"));
        }
        assert_eq!(conversions, 1, "the active visitor lost its dedup mark");
    }

    #[test]
    fn update_without_change_writes_nothing() {
        let s = MemoryStore::new();
        let r = s.update("k", &mut |_| false);
        assert!(r.is_ok());
        assert!(s.is_empty());
    }

    #[test]
    fn capacity_bounds_every_set() {
        let s = MemoryStore::with_capacity(4 * WAYS); // four sets
        assert_eq!(s.capacity(), 4 * WAYS);
        let keys: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
        for k in &keys {
            let _ = s.update(k, &mut |d| mark(d, "g"));
        }
        assert!(s.len() <= 4 * WAYS);
        // The most recent key of each set survives.
        let last = keys.last().map(String::as_str).unwrap_or_default();
        assert!(s.get(last).ok().flatten().is_some());
        // Capacity: exact up to one set, then whole sets.
        assert_eq!(MemoryStore::with_capacity(0).capacity(), 1);
        assert_eq!(MemoryStore::with_capacity(5).capacity(), 5);
        assert_eq!(MemoryStore::with_capacity(100).capacity(), 112);
        assert_eq!(MemoryStore::new().capacity(), DEFAULT_CAPACITY);
    }

    /// Keys that all land in one set, in a fixed order.
    fn same_set_keys(s: &MemoryStore, n: usize) -> (usize, Vec<String>) {
        let (_, target) = s.locate("seed");
        let keys = (0..)
            .map(|i| format!("visitor-{i}"))
            .filter(|k| s.locate(k).1 == target)
            .take(n)
            .collect();
        (target, keys)
    }

    #[test]
    fn eviction_takes_the_least_recently_used_within_a_set() {
        let s = MemoryStore::with_capacity(3); // one set of three
        let (target, same) = same_set_keys(&s, 6);
        for k in &same[..3] {
            let _ = s.update(k, &mut |d| mark(d, "g"));
        }
        // Using the first key (an update that changes nothing) makes it the most recent;
        // reading the second one too.
        let _ = s.update(&same[0], &mut |_| false);
        let _ = s.get(&same[1]);
        let _ = s.update(&same[3], &mut |d| mark(d, "g"));
        assert_eq!(s.get(&same[2]).ok().flatten(), None, "least recent evicted");
        for k in [&same[0], &same[1], &same[3]] {
            assert!(s.get(k).ok().flatten().is_some(), "{k} kept");
        }
        // A deleted key frees its place: the next insert evicts nobody.
        let _ = s.delete(&same[1]);
        let _ = s.update(&same[4], &mut |d| mark(d, "g"));
        for k in [&same[0], &same[3], &same[4]] {
            assert!(s.get(k).ok().flatten().is_some(), "{k} kept after delete");
        }
        assert_eq!(s.lock(target).len, 3);
        // `set` of an existing key also counts as a use.
        let _ = s.set(&same[0], &StoreData::default());
        let _ = s.update(&same[5], &mut |d| mark(d, "g"));
        assert_eq!(s.get(&same[3]).ok().flatten(), None);
        assert!(s.get(&same[0]).ok().flatten().is_some());
    }

    #[test]
    fn a_full_set_of_sixteen_evicts_in_order_of_use() {
        let s = MemoryStore::with_capacity(2 * WAYS);
        let (target, same) = same_set_keys(&s, WAYS + 4);
        for k in &same[..WAYS] {
            let _ = s.update(k, &mut |d| mark(d, "g"));
        }
        // Use the ways in reverse: visitor 15 is now the least recently used, 0 the most.
        for k in same[..WAYS].iter().rev() {
            assert!(s.get(k).ok().flatten().is_some());
        }
        for (n, k) in same[WAYS..].iter().enumerate() {
            let _ = s.update(k, &mut |d| mark(d, "g"));
            let evicted = &same[WAYS - 1 - n];
            assert_eq!(s.lock(target).len as usize, WAYS);
            // Peek without using (a `get` would change the order).
            let (tag, _) = s.locate(evicted);
            assert_eq!(s.lock(target).find(tag, evicted), None, "{evicted} evicted");
        }
        for k in same[..WAYS - 4].iter().chain(&same[WAYS..]) {
            assert!(s.get(k).ok().flatten().is_some(), "{k} kept");
        }
    }

    /// An update for a new visitor that writes nothing (even after changing the record it was
    /// given) leaves a full set as it was: nobody is evicted for it.
    #[test]
    fn a_new_visitor_whose_update_writes_nothing_evicts_nobody() {
        let s = MemoryStore::with_capacity(WAYS);
        let (target, same) = same_set_keys(&s, WAYS + 1);
        fill_with_own_marks(&s, &same[..WAYS]);
        let r = s.update(&same[WAYS], &mut |d| {
            d.set_bucketing("1", "2");
            false
        });
        assert!(matches!(r, Ok(false)));
        assert_eq!(s.get(&same[WAYS]).ok().flatten(), None);
        assert_eq!(s.lock(target).len as usize, WAYS);
        assert_order_is_a_permutation(&s.lock(target), s.ways);
        assert_own_marks_kept(&s, &same[..WAYS]);
    }

    /// Writes each key's record, marking the key itself as a goal.
    fn fill_with_own_marks(s: &MemoryStore, keys: &[String]) {
        for k in keys {
            let _ = s.update(k, &mut |d| mark(d, k));
        }
    }

    /// Each key still holds the record [`fill_with_own_marks`] wrote for it.
    fn assert_own_marks_kept(s: &MemoryStore, keys: &[String]) {
        for k in keys {
            assert_eq!(s.get(k).ok().flatten(), Some(marked(k)), "{k}");
        }
    }

    /// A panic in a new visitor's update leaves the set as it was (the lock it poisons is taken
    /// over): the new visitor is absent, every other keeps its record, and the set takes new
    /// visitors again.
    #[test]
    #[allow(clippy::panic)] // the panic is the case under test
    fn a_panic_in_a_new_visitors_update_leaves_the_set_consistent() {
        let s = MemoryStore::with_capacity(WAYS);
        let (target, same) = same_set_keys(&s, WAYS + 2);
        fill_with_own_marks(&s, &same[..WAYS]);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = s.update(&same[WAYS], &mut |d| {
                d.set_bucketing("1", "2");
                panic!("a closure that fails half-way")
            });
        }));
        assert!(caught.is_err());
        assert_order_is_a_permutation(&s.lock(target), s.ways);
        assert_eq!(s.len(), WAYS);
        assert_eq!(s.get(&same[WAYS]).ok().flatten(), None);
        assert_own_marks_kept(&s, &same[..WAYS]);
        assert!(matches!(
            s.update(&same[WAYS + 1], &mut |d| mark(d, "g")),
            Ok(true)
        ));
        assert_eq!(s.len(), WAYS);
        assert_eq!(s.get(&same[WAYS + 1]).ok().flatten(), Some(marked("g")));
    }

    #[test]
    fn a_reused_way_holds_only_the_new_record() {
        let s = MemoryStore::with_capacity(2);
        let (_, same) = same_set_keys(&s, 3);
        let rich = |d: &mut StoreData| {
            d.mark_goal("a");
            d.mark_goal("b");
            d.set_bucketing("100", "101");
            true
        };
        let _ = s.update(&same[0], &mut |d| rich(d));
        let _ = s.update(&same[1], &mut |d| rich(d));
        // The third visitor takes the first one's way: its record is its own, nothing left
        // over from the evicted visitor.
        let _ = s.update(&same[2], &mut |d| mark(d, "c"));
        assert_eq!(s.get(&same[2]).ok().flatten(), Some(marked("c")));
        assert_eq!(s.get(&same[0]).ok().flatten(), None);
        let mut second = StoreData::default();
        rich(&mut second);
        assert_eq!(s.get(&same[1]).ok().flatten(), Some(second));
    }

    #[test]
    fn delete_and_reinsert_keeps_every_way_accounted_for() {
        let s = MemoryStore::with_capacity(WAYS);
        for round in 0..10_000 {
            let k = format!("churn-{}", round % 7);
            let _ = s.update(&k, &mut |d| mark(d, "g"));
            if round % 3 != 0 {
                let _ = s.delete(&k);
            }
            assert_order_is_a_permutation(&s.lock(0), WAYS);
        }
        let _ = (0..7).map(|i| s.delete(&format!("churn-{i}"))).count();
        assert!(s.is_empty());
    }

    /// The recency positions of a set name each of its ways exactly once.
    fn assert_order_is_a_permutation(set: &Set, ways: usize) {
        let mut seen: Vec<usize> = (0..ways).map(|p| set.way(p)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..ways).collect::<Vec<_>>(), "order {:x}", set.order);
        assert!(usize::from(set.len) <= ways);
        let live = (0..usize::from(set.len)).fold(0u16, |m, p| m | 1 << set.way(p));
        assert_eq!(set.live, live, "live ways");
    }

    #[test]
    fn a_long_key_does_not_leave_its_buffer_behind() {
        let s = MemoryStore::with_capacity(WAYS);
        let long = "x".repeat(100_000);
        let _ = s.update(&long, &mut |d| mark(d, "g"));
        // Enough short keys to evict the long one.
        for i in 0..2_000 {
            let _ = s.update(&format!("v{i}"), &mut |d| mark(d, "g"));
        }
        assert_eq!(s.get(&long).ok().flatten(), None);
        let set = s.lock(0);
        let heap_keys = set
            .slots
            .iter()
            .flat_map(|slots| slots.iter())
            .filter(|slot| matches!(slot.key, Key::Heap(_)))
            .count();
        assert_eq!(heap_keys, 0, "a slot still holds a key on the heap");
    }

    #[test]
    fn keys_of_every_length_are_kept_apart() {
        // Around the inline key length and far beyond it; keys that are prefixes of each
        // other, the empty key, multibyte characters.
        let keys: Vec<String> = (0..=2 * INLINE_KEY + 2)
            .map(|n| "k".repeat(n))
            .chain(["é".repeat(INLINE_KEY / 2), "x".repeat(100_000)])
            .collect();
        let s = MemoryStore::with_capacity(64 * WAYS);
        for (n, k) in keys.iter().enumerate() {
            assert!(matches!(
                s.update(k, &mut |d| mark(d, &n.to_string())),
                Ok(true)
            ));
        }
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(
                s.get(k).ok().flatten(),
                Some(marked(&n.to_string())),
                "key of {} bytes",
                k.len()
            );
        }
        for k in &keys {
            assert!(s.delete(k).is_ok());
            assert_eq!(s.get(k).ok().flatten(), None);
        }
        assert!(s.is_empty());
    }

    #[test]
    fn a_slot_starts_and_ends_on_cache_line_boundaries() {
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        assert_eq!(std::mem::size_of::<Slot>() % 64, 0);
        // The record, then the key's tag and length, then its bytes.
        assert_eq!(std::mem::offset_of!(Slot, data), 0);
        assert_eq!(
            std::mem::offset_of!(Slot, key),
            std::mem::size_of::<StoreData>()
        );
    }

    /// A time source the tests move by hand.
    #[derive(Debug, Default)]
    struct ManualClock(std::sync::atomic::AtomicU64);

    impl ManualClock {
        fn advance(&self, ms: u64) {
            self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    /// A plain model of the store: per set, a list of (key, value, last use) ordered from least
    /// to most recently used; with a TTL, records unused for `ttl` ms are gone.
    struct Model {
        per_shard: usize,
        ttl: Option<u64>,
        shards: Vec<Vec<(String, u64, u64)>>,
    }

    impl Model {
        fn expire(&mut self, shard: usize, now: u64) {
            if let Some(ttl) = self.ttl {
                self.shards[shard].retain(|(_, _, used)| now - used < ttl);
            }
        }

        /// Reads `key` as a use: returns its value and makes it the most recent.
        fn use_key(&mut self, shard: usize, key: &str, now: u64) -> Option<u64> {
            self.expire(shard, now);
            let list = &mut self.shards[shard];
            let pos = list.iter().position(|(k, _, _)| k == key)?;
            let (k, v, _) = list.remove(pos);
            list.push((k, v, now));
            Some(v)
        }

        fn write(&mut self, shard: usize, key: &str, value: u64, now: u64) {
            if self.use_key(shard, key, now).is_some() {
                if let Some(last) = self.shards[shard].last_mut() {
                    last.1 = value;
                }
                return;
            }
            let list = &mut self.shards[shard];
            if list.len() >= self.per_shard {
                list.remove(0);
            }
            list.push((key.to_string(), value, now));
        }

        fn delete(&mut self, shard: usize, key: &str) {
            self.shards[shard].retain(|(k, _, _)| k != key);
        }

        fn len(&mut self, now: u64) -> usize {
            (0..self.shards.len()).for_each(|i| self.expire(i, now));
            self.shards.iter().map(Vec::len).sum()
        }
    }

    /// Runs a long pseudo-random mix of inserts, updates, reads, deletes and (with a TTL) clock
    /// steps against the store and against the model, and compares every read.
    fn matches_the_model(capacity: usize, ttl: Option<u64>) {
        let clock = Arc::new(ManualClock::default());
        let mut s = MemoryStore::with_capacity(capacity);
        let per_shard = s.ways;
        if let Some(ttl) = ttl {
            s = s.with_ttl_clock(Duration::from_millis(ttl), clock.clone());
        }
        let mut model = Model {
            per_shard,
            ttl,
            shards: vec![Vec::new(); s.sets.len()],
        };
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let value = |n: u64| {
            let mut d = StoreData::default();
            d.mark_goal(format!("goal-{n}"));
            d
        };
        for step in 0..40_000u64 {
            let r = next();
            if ttl.is_some() {
                clock.advance(r % 3);
            }
            let now = millis(clock.now());
            // Keys of varying length, inline and on the heap, so reused slots hold longer and
            // shorter keys in turn.
            let width = [1, 2, 3, INLINE_KEY - 2, INLINE_KEY + 8][(r % 5) as usize];
            let k = format!("{}{}", "v".repeat(width), (r >> 8) % 150);
            let shard = s.locate(&k).1;
            match (r >> 32) % 6 {
                0 | 1 => {
                    let _ = s.update(&k, &mut |d| {
                        *d = value(step);
                        true
                    });
                    model.write(shard, &k, step, now);
                }
                2 => {
                    let _ = s.set(&k, &value(step));
                    model.write(shard, &k, step, now);
                }
                3 => {
                    let _ = s.delete(&k);
                    model.delete(shard, &k);
                }
                4 => {
                    // An update that changes nothing still counts as a use.
                    let _ = s.update(&k, &mut |_| false);
                    model.use_key(shard, &k, now);
                }
                _ => {
                    if (r >> 40) % 8 == 0 {
                        assert_eq!(s.len(), model.len(now), "step {step}");
                    }
                }
            }
            assert_order_is_a_permutation(&s.lock(shard), s.ways);
            let got = s.get(&k).ok().flatten();
            assert_eq!(
                got,
                model.use_key(shard, &k, now).map(value),
                "step {step}, key {k}"
            );
        }
        let now = millis(clock.now());
        assert_eq!(s.len(), model.len(now));
        for (shard, list) in model.shards.iter().enumerate() {
            let set = s.lock(shard);
            assert_order_is_a_permutation(&set, s.ways);
            let stored = usize::from(set.len);
            assert_eq!(stored, list.len(), "shard {shard}");
        }
    }

    #[test]
    fn matches_an_lru_model_under_random_operations() {
        matches_the_model(4 * WAYS, None);
        matches_the_model(5, None);
    }

    #[test]
    fn matches_an_lru_model_with_ttl_under_random_operations() {
        matches_the_model(4 * WAYS, Some(40));
        matches_the_model(5, Some(40));
    }

    #[test]
    fn ttl_forgets_unused_visitors_and_keeps_used_ones() {
        let clock = Arc::new(ManualClock::default());
        let s = MemoryStore::new().with_ttl_clock(Duration::from_secs(60), clock.clone());
        assert_eq!(s.ttl(), Some(Duration::from_secs(60)));
        let _ = s.update("idle", &mut |d| mark(d, "g"));
        let _ = s.update("busy", &mut |d| mark(d, "g"));
        for _ in 0..5 {
            clock.advance(30_000);
            // Reading is a use: "busy" stays alive, "idle" is not touched.
            assert!(s.get("busy").ok().flatten().is_some());
        }
        assert_eq!(
            s.get("idle").ok().flatten(),
            None,
            "expired after 150 s idle"
        );
        assert_eq!(s.len(), 1);
        // An expired visitor converts afresh, as a new one.
        assert!(matches!(s.update("idle", &mut |d| mark(d, "g")), Ok(true)));
        assert!(matches!(s.update("busy", &mut |d| mark(d, "g")), Ok(false)));
        // Without a TTL the clock is never read and nothing expires.
        assert_eq!(MemoryStore::new().ttl(), None);
    }

    #[test]
    fn a_set_and_its_lock_fill_one_cache_line() {
        assert_eq!(std::mem::size_of::<PaddedSet>(), 64);
        let s = MemoryStore::new();
        for i in 0..s.sets.len() {
            let addr = std::ptr::from_ref(&s.sets[i]) as usize;
            assert_eq!(addr % 64, 0, "set {i} not aligned to 64 bytes");
        }
    }

    #[test]
    fn concurrent_updates_are_atomic() {
        let s = Arc::new(MemoryStore::new());
        let winners = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                let w = Arc::clone(&winners);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let key = format!("visitor-{i}");
                        let mut won = false;
                        let _ = s.update(&key, &mut |d| {
                            won = mark(d, "goal");
                            won
                        });
                        if won {
                            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(winners.load(std::sync::atomic::Ordering::SeqCst), 200);
    }
}
