#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use hashlink::LinkedHashMap;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Default number of visitors kept (the reference SDK's bound).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A thread-safe, bounded, in-memory [`DataStore`].
///
/// Each shard is an insertion-ordered hash map, so evicting the first-inserted visitor is O(1) and a
/// key is stored once.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<LinkedHashMap<Box<str>, StoreData>>>,
    per_shard: usize,
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
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LinkedHashMap::new()))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Number of visitors stored.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).len()).sum()
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

    fn shard_of(key: &str) -> usize {
        // FNV-1a: cheap and good enough to spread keys over shards.
        let mut h: u32 = 0x811c_9dc5;
        for b in key.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h as usize % SHARDS
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, LinkedHashMap<Box<str>, StoreData>> {
        // A poisoned lock only means another thread panicked while holding it; the map itself is
        // still consistent (every mutation is a single insert/remove), so keep serving.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, shard: &mut LinkedHashMap<Box<str>, StoreData>, key: &str, value: StoreData) {
        if let Some(slot) = shard.get_mut(key) {
            // Updates keep the visitor's position (FIFO by first insertion, as in the reference).
            *slot = value;
            return;
        }
        shard.insert(Box::from(key), value);
        while shard.len() > self.per_shard {
            if shard.pop_front().is_none() {
                break;
            }
        }
    }
}

impl DataStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        Ok(self.lock(Self::shard_of(key)).get(key).cloned())
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let mut shard = self.lock(Self::shard_of(key));
        self.insert(&mut shard, key, value.clone());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock(Self::shard_of(key)).remove(key);
        Ok(())
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let mut shard = self.lock(Self::shard_of(key));
        if let Some(existing) = shard.get_mut(key) {
            return Ok(f(existing));
        }
        let mut fresh = StoreData::default();
        let changed = f(&mut fresh);
        if changed {
            self.insert(&mut shard, key, fresh);
        }
        Ok(changed)
    }

    fn name(&self) -> &'static str {
        "memory"
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
