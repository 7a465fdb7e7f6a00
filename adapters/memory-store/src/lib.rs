#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Default number of visitors kept (the reference SDK's bound).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// One stored visitor. The key's hash is kept so that evicting a visitor never reads its key
/// again (the key is cold by then) and `seq` identifies it in the insertion order.
#[derive(Debug)]
struct Slot {
    hash: u64,
    seq: u64,
    key: Box<str>,
    data: StoreData,
}

/// A shard: records by key, and their insertion order for FIFO eviction.
#[derive(Debug, Default)]
struct Shard {
    table: HashTable<Slot>,
    /// `(hash, seq)` of every record in insertion order; entries of deleted records are skipped
    /// when met and compacted away when they pile up.
    order: VecDeque<(u64, u64)>,
    next_seq: u64,
}

impl Shard {
    fn find_mut(&mut self, hash: u64, key: &str) -> Option<&mut StoreData> {
        self.table
            .find_mut(hash, |s| s.hash == hash && &*s.key == key)
            .map(|s| &mut s.data)
    }

    /// Inserts a record that is not in the shard yet, evicting the oldest beyond `capacity`.
    fn insert_new(&mut self, hash: u64, key: &str, data: StoreData, capacity: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.table.insert_unique(
            hash,
            Slot {
                hash,
                seq,
                key: Box::from(key),
                data,
            },
            |s| s.hash,
        );
        self.order.push_back((hash, seq));
        while self.table.len() > capacity {
            let Some((h, sq)) = self.order.pop_front() else {
                break;
            };
            // Dropped outside the probe so the table is not borrowed while freeing.
            let evicted = self
                .table
                .find_entry(h, |s| s.seq == sq)
                .ok()
                .map(|e| e.remove().0);
            drop(evicted);
        }
    }

    fn remove(&mut self, hash: u64, key: &str) {
        if let Ok(e) = self
            .table
            .find_entry(hash, |s| s.hash == hash && &*s.key == key)
        {
            e.remove();
        }
        // Deleted records leave their order entry behind; keep the queue proportional to the
        // records actually stored.
        if self.order.len() > 2 * self.table.len() + 64 {
            let table = &self.table;
            self.order
                .retain(|&(h, sq)| table.find(h, |s| s.seq == sq).is_some());
        }
    }
}

/// A thread-safe, bounded, in-memory [`DataStore`].
///
/// Records are spread over 16 independently locked shards. Each shard is a hash table of records
/// plus a queue of insertion order, so evicting the first-inserted visitor is O(1) and touches
/// only that visitor's slot. A key is hashed once per call (the hash also picks the shard).
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
            let mut shard = self.lock(i);
            shard.table.clear();
            shard.order.clear();
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
    fn delete_and_reinsert_keeps_the_order_queue_bounded() {
        let s = MemoryStore::with_capacity(SHARDS);
        for round in 0..10_000 {
            let k = format!("churn-{}", round % 7);
            let _ = s.update(&k, &mut |d| mark(d, "g"));
            let _ = s.delete(&k);
        }
        let queued: usize = (0..SHARDS).map(|i| s.lock(i).order.len()).sum();
        assert!(queued <= SHARDS * 65, "order queue grew to {queued}");
        assert!(s.is_empty());
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
