//! A string-keyed map split into independently locked shards, for per-key state that many
//! runtime threads update at once.
//!
//! Why not one `Mutex<HashMap>`: every request would contend on the same lock. Why not
//! `dashmap` (which is what governor uses): it is the same design (sharded `RwLock`s around
//! hashbrown tables), and hashbrown's `HashTable` lets us hash the key once and use that hash
//! both to pick the shard and to probe the table, without pulling in another crate.
//!
//! Locks are `std::sync::Mutex`, held only for the lookup and a few arithmetic operations,
//! never across an `.await` (nothing here is async). The hash is SipHash with a random key
//! (`RandomState`): keys are client-controlled (IPs, API keys), so the table must not be
//! open to hash flooding.

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Number of shards: a power of two, several times the core count of the machines we run on
/// so that two threads rarely want the same shard.
const SHARDS: usize = 64;

/// One shard, aligned to its own cache lines so that locking one does not slow its
/// neighbours (false sharing).
#[repr(align(128))]
struct Shard<V>(Mutex<HashTable<Entry<V>>>);

struct Entry<V> {
    hash: u64,
    key: Box<str>,
    value: V,
}

pub(crate) struct ShardedMap<V> {
    shards: Box<[Shard<V>]>,
    hasher: RandomState,
}

impl<V> ShardedMap<V> {
    pub(crate) fn new() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Shard(Mutex::new(HashTable::new()))).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, HashTable<Entry<V>>> {
        // hashbrown uses the low bits for the bucket and the top 7 for its tag byte; take the
        // shard from bits in between so that neither is constant within a shard.
        let idx = (hash >> 32) as usize & (SHARDS - 1);
        // A panic while a shard was locked cannot leave an entry half-written (updates are
        // plain stores), so a poisoned lock is still safe to use.
        self.shards[idx].0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `existing` on the key's value if there is one; otherwise runs `absent`, which
    /// returns the result and, optionally, a value to insert.
    pub(crate) fn update<R>(
        &self,
        key: &str,
        existing: impl FnOnce(&mut V) -> R,
        absent: impl FnOnce() -> (R, Option<V>),
    ) -> R {
        let hash = self.hasher.hash_one(key);
        let mut table = self.shard(hash);
        if let Some(entry) = table.find_mut(hash, |e| e.hash == hash && *e.key == *key) {
            return existing(&mut entry.value);
        }
        let (result, insert) = absent();
        if let Some(value) = insert {
            let entry = Entry {
                hash,
                key: key.into(),
                value,
            };
            table.insert_unique(hash, entry, |e| e.hash);
        }
        result
    }

    /// Keeps only the entries for which `keep` is true; shrinks shards that became mostly
    /// empty so that a past spike of keys does not hold its memory forever.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        for shard in self.shards.iter() {
            let mut table = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            table.retain(|e| keep(&e.value));
            if table.capacity() > 64 && table.capacity() > 4 * table.len() {
                table.shrink_to_fit(|e| e.hash);
            }
        }
    }

    /// Number of keys (a sum over the shards, each locked in turn: exact only when quiet).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_inserts_finds_and_retains() {
        let map = ShardedMap::<u32>::new();
        for i in 0..1000 {
            let key = format!("k{i}");
            let r = map.update(&key, |_| false, || (true, Some(i)));
            assert!(r, "new key");
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.update("k7", |v| *v, || (u32::MAX, None)), 7);
        assert_eq!(map.update("nope", |v| *v, || (u32::MAX, None)), u32::MAX);
        assert_eq!(map.len(), 1000, "absent without a value inserts nothing");
        map.retain(|v| v % 2 == 0);
        assert_eq!(map.len(), 500);
        assert_eq!(map.update("k8", |v| *v, || (u32::MAX, None)), 8);
        assert_eq!(map.update("k9", |v| *v, || (u32::MAX, None)), u32::MAX);
    }
}
