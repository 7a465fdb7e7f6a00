#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Default number of visitors kept (the reference SDK's bound).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// "No slot" in the insertion-order links.
const NIL: u32 = u32::MAX;

/// One stored visitor, or a vacant slot waiting in the free list.
///
/// Slots live in a slab that never grows past the shard's capacity. They are linked in insertion
/// order (`older` / `newer`), so the visitor to evict is known without searching, and an evicted
/// slot is overwritten in place: its key buffer is reused for the new key.
#[derive(Debug)]
struct Slot {
    /// The key's hash, kept so that the table never rehashes a key (rehashing and eviction
    /// read only this).
    hash: u64,
    /// The previous visitor in insertion order (`NIL` for the oldest).
    older: u32,
    /// The next visitor in insertion order (`NIL` for the newest); in a vacant slot, the next
    /// vacant slot.
    newer: u32,
    key: String,
    data: StoreData,
}

/// A shard: a slab of records, a hash table of slab indices, and the insertion order.
#[derive(Debug)]
struct Shard {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    oldest: u32,
    newest: u32,
    /// First vacant slot (left by a delete), `NIL` when none.
    vacant: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            table: HashTable::new(),
            slots: Vec::new(),
            oldest: NIL,
            newest: NIL,
            vacant: NIL,
        }
    }
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

    fn find_mut(&mut self, hash: u64, key: &str) -> Option<&mut StoreData> {
        let i = self.find(hash, key)?;
        self.slot_mut(i).map(|s| &mut s.data)
    }

    /// Takes slot `i` out of the insertion order.
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

    /// Removes slot `i`'s entry from the table.
    fn forget(&mut self, i: u32) {
        let Some(hash) = self.slot(i).map(|s| s.hash) else {
            return;
        };
        if let Ok(e) = self.table.find_entry(hash, |&j| j == i) {
            e.remove();
        }
    }

    /// Inserts a record that is not in the shard yet. A full shard gives the slot of its oldest
    /// visitor to the new one.
    fn insert_new(&mut self, hash: u64, key: &str, data: StoreData, capacity: usize) {
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
        let newest = self.newest;
        if let Some(s) = self.slot_mut(i) {
            s.hash = hash;
            s.older = newest;
            s.newer = NIL;
            // Reuse the key buffer, unless an unusually long key left it oversized.
            if s.key.capacity() > 4 * key.len().max(64) {
                s.key = String::with_capacity(key.len());
            }
            s.key.clear();
            s.key.push_str(key);
            s.data = data;
        }
        match self.slot_mut(newest) {
            Some(n) => n.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
        let slots = &self.slots;
        self.table
            .insert_unique(hash, i, |&j| slots.get(j as usize).map_or(0, |s| s.hash));
    }

    fn remove(&mut self, hash: u64, key: &str) {
        let Some(i) = self.find(hash, key) else {
            return;
        };
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

    fn clear(&mut self) {
        *self = Shard::default();
    }
}

/// A thread-safe, bounded, in-memory [`DataStore`].
///
/// Records are spread over 16 independently locked shards. Each shard keeps its records in a slab
/// linked in insertion order, indexed by a small hash table. Evicting the first-inserted visitor
/// is O(1): the new visitor takes over its slot and key buffer. A key is hashed once per call (the
/// hash also picks the shard).
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl MemoryStore {
    /// A store keeping up to [`DEFAULT_CAPACITY`] visitors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store keeping up to `capacity` visitors (at least one per shard).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Number of visitors stored.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).table.len()).sum()
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

    /// The key's hash and its shard. The shard comes from bits 32–35, which the table uses
    /// neither for its bucket index (low bits) nor for its tag (top 7 bits).
    fn locate(&self, key: &str) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 32) as usize % SHARDS)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A poisoned lock only means another thread panicked while holding it; the shard itself
        // is still consistent (every mutation is a single insert/remove), so keep serving.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DataStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        let (hash, i) = self.locate(key);
        Ok(self.lock(i).find_mut(hash, key).map(|d| d.clone()))
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let (hash, i) = self.locate(key);
        let mut shard = self.lock(i);
        match shard.find_mut(hash, key) {
            // Updates keep the visitor's position (FIFO by first insertion, as in the reference).
            Some(slot) => *slot = value.clone(),
            None => shard.insert_new(hash, key, value.clone(), self.per_shard),
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
        let mut shard = self.lock(i);
        if let Some(existing) = shard.find_mut(hash, key) {
            return Ok(f(existing));
        }
        let mut fresh = StoreData::default();
        let changed = f(&mut fresh);
        if changed {
            shard.insert_new(hash, key, fresh, self.per_shard);
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
    fn update_without_change_writes_nothing() {
        let s = MemoryStore::new();
        let r = s.update("k", &mut |_| false);
        assert!(r.is_ok());
        assert!(s.is_empty());
    }

    #[test]
    fn capacity_evicts_first_inserted() {
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

    #[test]
    fn eviction_is_fifo_by_first_insertion_within_a_shard() {
        let s = MemoryStore::with_capacity(3 * SHARDS); // three per shard
        // Five keys of one shard, in insertion order.
        let mut same: Vec<String> = Vec::new();
        let (_, target) = s.locate("seed");
        let mut i = 0;
        while same.len() < 5 {
            let k = format!("visitor-{i}");
            if s.locate(&k).1 == target {
                same.push(k);
            }
            i += 1;
        }
        for k in &same[..3] {
            let _ = s.update(k, &mut |d| mark(d, "g"));
        }
        // Updating the first key does not refresh its position.
        let _ = s.update(&same[0], &mut |d| mark(d, "other"));
        let _ = s.update(&same[3], &mut |d| mark(d, "g"));
        assert_eq!(s.get(&same[0]).ok().flatten(), None, "oldest evicted");
        for k in &same[1..4] {
            assert!(s.get(k).ok().flatten().is_some(), "{k} kept");
        }
        // A deleted key frees its place: the next insert evicts nobody.
        let _ = s.delete(&same[1]);
        let _ = s.update(&same[4], &mut |d| mark(d, "g"));
        for k in &same[2..5] {
            assert!(s.get(k).ok().flatten().is_some(), "{k} kept after delete");
        }
        assert_eq!(s.lock(target).table.len(), 3);
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

    /// Runs a long pseudo-random mix of inserts, updates, deletes and reads against the store and
    /// against a plain model of per-shard FIFO-by-first-insertion, and compares every read.
    #[test]
    fn matches_a_fifo_model_under_random_operations() {
        use std::collections::{HashMap, VecDeque};
        let per_shard = 4;
        let s = MemoryStore::with_capacity(per_shard * SHARDS);
        let mut order: Vec<VecDeque<String>> = vec![VecDeque::new(); SHARDS];
        let mut model: HashMap<String, u64> = HashMap::new();
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
            // Keys of varying length, so reused key buffers grow and shrink.
            let k = format!("{}{}", "v".repeat((r % 5) as usize + 1), (r >> 8) % 150);
            let shard = s.locate(&k).1;
            match (r >> 32) % 4 {
                0 | 1 => {
                    let _ = s.update(&k, &mut |d| {
                        *d = value(step);
                        true
                    });
                    if model.insert(k.clone(), step).is_none() {
                        order[shard].push_back(k.clone());
                        if order[shard].len() > per_shard {
                            if let Some(old) = order[shard].pop_front() {
                                model.remove(&old);
                            }
                        }
                    }
                }
                2 => {
                    let _ = s.delete(&k);
                    if model.remove(&k).is_some() {
                        order[shard].retain(|x| x != &k);
                    }
                }
                _ => {}
            }
            let got = s.get(&k).ok().flatten();
            assert_eq!(
                got,
                model.get(&k).map(|&n| value(n)),
                "step {step}, key {k}"
            );
        }
        assert_eq!(s.len(), model.len());
        for (k, &n) in &model {
            assert_eq!(s.get(k).ok().flatten(), Some(value(n)), "{k}");
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
