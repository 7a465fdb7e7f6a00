#![doc = include_str!("../README.md")]

use convert_ports::{DataStore, StoreData, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Default number of visitors kept (the reference SDK's bound).
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<String, StoreData>,
    order: VecDeque<String>,
}

/// A thread-safe, bounded, in-memory [`DataStore`].
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
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
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Number of visitors stored.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).map.len()).sum()
    }

    /// Whether no visitor is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every record.
    pub fn clear(&self) {
        for i in 0..SHARDS {
            let mut s = self.lock(i);
            s.map.clear();
            s.order.clear();
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

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A poisoned lock only means another thread panicked while holding it; the map itself is
        // still consistent (every mutation is a single insert/remove), so keep serving.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, shard: &mut Shard, key: &str, value: StoreData) {
        if let Some(slot) = shard.map.get_mut(key) {
            *slot = value;
            return;
        }
        shard.map.insert(key.to_string(), value);
        shard.order.push_back(key.to_string());
        while shard.map.len() > self.per_shard {
            match shard.order.pop_front() {
                Some(old) => {
                    shard.map.remove(&old);
                }
                None => break,
            }
        }
    }
}

impl DataStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        Ok(self.lock(Self::shard_of(key)).map.get(key).cloned())
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let mut shard = self.lock(Self::shard_of(key));
        self.insert(&mut shard, key, value.clone());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut shard = self.lock(Self::shard_of(key));
        if shard.map.remove(key).is_some() {
            shard.order.retain(|k| k != key);
        }
        Ok(())
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<StoreData, StoreError> {
        let mut shard = self.lock(Self::shard_of(key));
        if let Some(existing) = shard.map.get_mut(key) {
            f(existing);
            return Ok(existing.clone());
        }
        let mut fresh = StoreData::default();
        if f(&mut fresh) {
            self.insert(&mut shard, key, fresh.clone());
        }
        Ok(fresh)
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
        let goals = d.goals.get_or_insert_with(Default::default);
        if goals.contains_key(goal) {
            return false;
        }
        goals.insert(goal.into(), true.into());
        true
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
