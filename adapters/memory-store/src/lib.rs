#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use hashbrown::HashTable;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Default number of visitors kept (the reference SDK's bound).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// "No slot" in the recency links.
const NIL: u32 = u32::MAX;

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

/// Milliseconds, saturating (the unit of `Shard::used`).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One stored visitor, or a vacant slot waiting in the free list.
///
/// Slots live in a slab that never grows past the shard's capacity. They are linked in order of
/// last use (`older` / `newer`), so the visitor to evict is known without searching, and an
/// evicted slot is overwritten in place: its key buffer is reused for the new key.
#[derive(Debug)]
struct Slot {
    /// The key's hash, kept so that the table never rehashes a key (rehashing and eviction
    /// read only this).
    hash: u64,
    /// The previous visitor in order of use (`NIL` for the least recently used).
    older: u32,
    /// The next visitor in order of use (`NIL` for the most recently used); in a vacant slot,
    /// the next vacant slot.
    newer: u32,
    key: String,
    data: StoreData,
}

/// A shard: a slab of records, a hash table of slab indices, and the order of use.
#[derive(Debug)]
struct Shard {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    /// Least recently used.
    oldest: u32,
    /// Most recently used.
    newest: u32,
    /// First vacant slot (left by a delete or an expiry), `NIL` when none.
    vacant: u32,
    /// When each slot's record was last used, in clock milliseconds; only kept with a TTL
    /// (beside the slots rather than in them, so that a store without a TTL pays nothing).
    used: Vec<u64>,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            table: HashTable::new(),
            slots: Vec::new(),
            oldest: NIL,
            newest: NIL,
            vacant: NIL,
            used: Vec::new(),
        }
    }
}

/// A shard's lock, alone on its cache lines (128 bytes: a line and the adjacent line that x86
/// prefetchers pull in with it), so that threads working on different shards never write to
/// the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

/// The time-to-live settings: the TTL in milliseconds and the clock that measures it.
#[derive(Debug, Clone)]
struct Ttl {
    millis: u64,
    clock: Arc<dyn Clock>,
}

impl Shard {
    fn slot(&self, i: u32) -> Option<&Slot> {
        self.slots.get(i as usize)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.slots.get_mut(i as usize)
    }

    fn find(&self, hash: u64, key: &str) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots
                    .get(i as usize)
                    .is_some_and(|s| s.hash == hash && s.key == key)
            })
            .copied()
    }

    /// The live record of `key`, marked as just used; an expired record is removed and reads
    /// as absent.
    fn use_mut(&mut self, hash: u64, key: &str, now: Option<(u64, u64)>) -> Option<&mut StoreData> {
        let i = self.find(hash, key)?;
        if let Some((now, ttl)) = now {
            if self.expired(i, now, ttl) {
                self.vacate(i);
                return None;
            }
            self.set_used(i, now);
        }
        self.make_newest(i);
        self.slot_mut(i).map(|s| &mut s.data)
    }

    /// Whether slot `i`'s record was last used `ttl` ms or more before `now`.
    fn expired(&self, i: u32, now: u64, ttl: u64) -> bool {
        self.used
            .get(i as usize)
            .is_some_and(|&used| now.saturating_sub(used) >= ttl)
    }

    fn set_used(&mut self, i: u32, now: u64) {
        let i = i as usize;
        if self.used.len() <= i {
            self.used.resize(i + 1, now);
        }
        if let Some(u) = self.used.get_mut(i) {
            *u = now;
        }
    }

    /// Takes slot `i` out of the order of use.
    fn unlink(&mut self, i: u32) {
        let Some(s) = self.slot(i) else { return };
        let (older, newer) = (s.older, s.newer);
        match self.slot_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        match self.slot_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
    }

    /// Links slot `i` (not linked) as the most recently used.
    fn link_newest(&mut self, i: u32) {
        let newest = self.newest;
        if let Some(s) = self.slot_mut(i) {
            s.older = newest;
            s.newer = NIL;
        }
        match self.slot_mut(newest) {
            Some(n) => n.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
    }

    /// Moves slot `i` to the most recently used end (nothing to do when it is there already,
    /// which is the case for repeated calls of one visitor).
    fn make_newest(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    /// Removes slot `i`'s entry from the table.
    fn forget(&mut self, i: u32) {
        let Some(hash) = self.slot(i).map(|s| s.hash) else {
            return;
        };
        if let Ok(e) = self.table.find_entry(hash, |&j| j == i) {
            e.remove();
        }
    }

    /// Removes the record in slot `i` and puts the slot on the free list.
    fn vacate(&mut self, i: u32) {
        self.forget(i);
        self.unlink(i);
        let vacant = self.vacant;
        if let Some(s) = self.slot_mut(i) {
            s.key = String::new();
            s.data = StoreData::default();
            s.older = NIL;
            s.newer = vacant;
        }
        self.vacant = i;
    }

    /// Removes the expired records. The order of use is also the order of expiry, so they are
    /// all at the least recently used end.
    fn purge_expired(&mut self, now: u64, ttl: u64) {
        while self.oldest != NIL && self.expired(self.oldest, now, ttl) {
            self.vacate(self.oldest);
        }
    }

    /// Inserts a record that is not in the shard yet, as the most recently used. A full shard
    /// gives the slot of its least recently used visitor to the new one.
    fn insert_new(
        &mut self,
        hash: u64,
        key: &str,
        data: StoreData,
        capacity: usize,
        now: Option<u64>,
    ) {
        let i = if self.table.len() >= capacity && self.oldest != NIL {
            let victim = self.oldest;
            self.forget(victim);
            self.unlink(victim);
            victim
        } else if let Some(next) = self.slot(self.vacant).map(|s| s.newer) {
            let i = self.vacant;
            self.vacant = next;
            i
        } else {
            let Ok(i) = u32::try_from(self.slots.len()) else {
                return; // More than 4 billion visitors in one shard: keep what is there.
            };
            self.slots.push(Slot {
                hash,
                older: NIL,
                newer: NIL,
                key: String::new(),
                data: StoreData::default(),
            });
            i
        };
        if let Some(s) = self.slot_mut(i) {
            s.hash = hash;
            // Reuse the key buffer, unless an unusually long key left it oversized.
            if s.key.capacity() > 4 * key.len().max(64) {
                s.key = String::with_capacity(key.len());
            }
            s.key.clear();
            s.key.push_str(key);
            s.data = data;
        }
        if let Some(now) = now {
            self.set_used(i, now);
        }
        self.link_newest(i);
        let slots = &self.slots;
        self.table
            .insert_unique(hash, i, |&j| slots.get(j as usize).map_or(0, |s| s.hash));
    }

    fn remove(&mut self, hash: u64, key: &str) {
        if let Some(i) = self.find(hash, key) {
            self.vacate(i);
        }
    }

    fn clear(&mut self) {
        *self = Shard::default();
    }
}

/// A thread-safe, bounded, in-memory [`DataStore`] that evicts the least recently used visitor,
/// with an optional time-to-live.
///
/// Records are spread over 16 independently locked shards, each on its own cache lines. Each
/// shard keeps its records in a slab linked in order of use, indexed by a small hash table.
/// Every read or update of a record makes it the shard's most recently used; evicting the least
/// recently used visitor is O(1): the new visitor takes over its slot and key buffer. A key is
/// hashed once per call (the hash also picks the shard).
pub struct MemoryStore {
    shards: Box<[PaddedShard]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    ttl: Option<Ttl>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &(self.per_shard * SHARDS))
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

    /// A store keeping up to `capacity` visitors (rounded up to a multiple of 16, the number of
    /// shards; at least one per shard), without a TTL.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| PaddedShard::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
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

    /// Number of visitors stored (expired records are removed first).
    pub fn len(&self) -> usize {
        let now = self.now();
        (0..SHARDS)
            .map(|i| {
                let mut shard = self.lock(i);
                if let Some((now, ttl)) = now {
                    shard.purge_expired(now, ttl);
                }
                shard.table.len()
            })
            .sum()
    }

    /// Whether no visitor is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every record.
    pub fn clear(&self) {
        for i in 0..SHARDS {
            self.lock(i).clear();
        }
    }

    /// The current time and the TTL, in milliseconds, when a TTL is set.
    fn now(&self) -> Option<(u64, u64)> {
        self.ttl.as_ref().map(|t| (millis(t.clock.now()), t.millis))
    }

    /// The key's hash and its shard. The shard comes from bits 32–35, which the table uses
    /// neither for its bucket index (low bits) nor for its tag (top 7 bits).
    fn locate(&self, key: &str) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 32) as usize % SHARDS)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A poisoned lock only means another thread panicked while holding it; the shard itself
        // is still consistent (every mutation is a single insert/remove), so keep serving.
        self.shards[i % SHARDS]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Inserts a new record as the most recently used, after removing expired ones.
    fn insert(
        &self,
        shard: &mut Shard,
        hash: u64,
        key: &str,
        data: StoreData,
        now: Option<(u64, u64)>,
    ) {
        if let Some((now, ttl)) = now {
            shard.purge_expired(now, ttl);
        }
        shard.insert_new(hash, key, data, self.per_shard, now.map(|(now, _)| now));
    }
}

impl DataStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        let (hash, i) = self.locate(key);
        let now = self.now();
        Ok(self.lock(i).use_mut(hash, key, now).map(|d| d.clone()))
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let (hash, i) = self.locate(key);
        let now = self.now();
        let mut shard = self.lock(i);
        match shard.use_mut(hash, key, now) {
            Some(slot) => *slot = value.clone(),
            None => self.insert(&mut shard, hash, key, value.clone(), now),
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (hash, i) = self.locate(key);
        self.lock(i).remove(hash, key);
        Ok(())
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let (hash, i) = self.locate(key);
        let now = self.now();
        let mut shard = self.lock(i);
        if let Some(existing) = shard.use_mut(hash, key, now) {
            return Ok(f(existing));
        }
        let mut fresh = StoreData::default();
        let changed = f(&mut fresh);
        if changed {
            self.insert(&mut shard, hash, key, fresh, now);
        }
        Ok(changed)
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

    #[test]
    fn get_set_delete() {
        let s = MemoryStore::new();
        assert_eq!(s.get("k").ok().flatten(), None);
        let mut d = StoreData::default();
        mark(&mut d, "g");
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
    fn capacity_bounds_every_shard() {
        let s = MemoryStore::with_capacity(SHARDS); // one per shard
        let keys: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
        for k in &keys {
            let _ = s.update(k, &mut |d| mark(d, "g"));
        }
        assert!(s.len() <= SHARDS);
        // The most recent key of each shard survives.
        let last = keys.last().map(String::as_str).unwrap_or_default();
        assert!(s.get(last).ok().flatten().is_some());
    }

    /// Keys that all land in one shard, in a fixed order.
    fn same_shard_keys(s: &MemoryStore, n: usize) -> (usize, Vec<String>) {
        let (_, target) = s.locate("seed");
        let keys = (0..)
            .map(|i| format!("visitor-{i}"))
            .filter(|k| s.locate(k).1 == target)
            .take(n)
            .collect();
        (target, keys)
    }

    #[test]
    fn eviction_takes_the_least_recently_used_within_a_shard() {
        let s = MemoryStore::with_capacity(3 * SHARDS); // three per shard
        let (target, same) = same_shard_keys(&s, 6);
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
        assert_eq!(s.lock(target).table.len(), 3);
        // `set` of an existing key also counts as a use.
        let _ = s.set(&same[0], &StoreData::default());
        let _ = s.update(&same[5], &mut |d| mark(d, "g"));
        assert_eq!(s.get(&same[3]).ok().flatten(), None);
        assert!(s.get(&same[0]).ok().flatten().is_some());
    }

    #[test]
    fn delete_and_reinsert_reuses_slots() {
        let s = MemoryStore::with_capacity(SHARDS);
        for round in 0..10_000 {
            let k = format!("churn-{}", round % 7);
            let _ = s.update(&k, &mut |d| mark(d, "g"));
            let _ = s.delete(&k);
        }
        let slots: usize = (0..SHARDS).map(|i| s.lock(i).slots.len()).sum();
        assert!(slots <= 7, "the slab grew to {slots} slots for 7 keys");
        assert!(s.is_empty());
    }

    #[test]
    fn a_long_key_does_not_leave_its_buffer_behind() {
        let s = MemoryStore::with_capacity(SHARDS);
        let long = "x".repeat(100_000);
        let _ = s.update(&long, &mut |d| mark(d, "g"));
        // Enough short keys to evict the long one from whichever shard holds it.
        for i in 0..2_000 {
            let _ = s.update(&format!("v{i}"), &mut |d| mark(d, "g"));
        }
        assert_eq!(s.get(&long).ok().flatten(), None);
        let biggest = (0..SHARDS)
            .flat_map(|i| {
                let shard = s.lock(i);
                shard
                    .slots
                    .iter()
                    .map(|slot| slot.key.capacity())
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0);
        assert!(biggest < 1_000, "a key buffer kept {biggest} bytes");
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

    /// A plain model of the store: per shard, a list of (key, value, last use) ordered from least
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
            (0..SHARDS).for_each(|i| self.expire(i, now));
            self.shards.iter().map(Vec::len).sum()
        }
    }

    /// Runs a long pseudo-random mix of inserts, updates, reads, deletes and (with a TTL) clock
    /// steps against the store and against the model, and compares every read.
    fn matches_the_model(ttl: Option<u64>) {
        let per_shard = 4;
        let clock = Arc::new(ManualClock::default());
        let mut s = MemoryStore::with_capacity(per_shard * SHARDS);
        if let Some(ttl) = ttl {
            s = s.with_ttl_clock(Duration::from_millis(ttl), clock.clone());
        }
        let mut model = Model {
            per_shard,
            ttl,
            shards: vec![Vec::new(); SHARDS],
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
            // Keys of varying length, so reused key buffers grow and shrink.
            let k = format!("{}{}", "v".repeat((r % 5) as usize + 1), (r >> 8) % 150);
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
            let stored = s.lock(shard).table.len();
            assert_eq!(stored, list.len(), "shard {shard}");
        }
    }

    #[test]
    fn matches_an_lru_model_under_random_operations() {
        matches_the_model(None);
    }

    #[test]
    fn matches_an_lru_model_with_ttl_under_random_operations() {
        matches_the_model(Some(40));
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
    fn shards_do_not_share_cache_lines() {
        let s = MemoryStore::new();
        let addr = |i: usize| std::ptr::from_ref(&s.shards[i]) as usize;
        for i in 1..SHARDS {
            assert!(
                addr(i) - addr(i - 1) >= 128,
                "shards {} and {i} too close",
                i - 1
            );
            assert_eq!(addr(i) % 128, 0, "shard {i} not aligned to 128 bytes");
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
