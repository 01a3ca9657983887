//! The memory store of the response cache: stored answers by key in moka, weighed in bytes so
//! that the whole stays within `cache.max_bytes`; the misses in flight (coalescing); the
//! invalidations of a path (unsafe methods, purge by URL); the counters `/metrics` shows.
//!
//! One store serves every cached route of the gateway (keys start with the organization), and
//! a reload keeps it while `cache.max_bytes` stays the same.

use super::second::SecondLevel;
use super::stored::Stored;
use arc_swap::ArcSwapOption;
use cratopus_state::RedisLimiter;
use moka::notification::RemovalCause;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most variants (`Vary`) kept under one key; the oldest goes first beyond it, so a header
/// with many values cannot grow one entry without bound.
const MAX_VARIANTS: usize = 8;

/// The answers stored under one key: one per combination of the request headers the backend's
/// `Vary` names.
#[derive(Debug, Default)]
pub struct Entry {
    pub variants: Vec<Arc<Stored>>,
}

impl Entry {
    fn weight(&self, key: &str) -> u32 {
        let bytes: usize = key.len() + 64 + self.variants.iter().map(|v| v.weight()).sum::<usize>();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The cache's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    /// Fresh answers found in the second level (Redis) after a memory miss.
    pub hits_l2: AtomicU64,
    pub misses: AtomicU64,
    /// Stale answers served (stale-while-revalidate, stale-if-error).
    pub stale: AtomicU64,
    /// Stale entries revalidated with the backend (a conditional request).
    pub revalidated: AtomicU64,
    /// Requests that waited for another's miss of the same key and were answered from it.
    pub coalesced: AtomicU64,
    /// Requests that did not use the cache (no-store, authenticated without a consumer, …).
    pub bypassed: AtomicU64,
    pub stored: AtomicU64,
    /// Entries dropped to stay within the byte bound.
    pub evictions: AtomicU64,
    /// Entries removed by purges and unsafe methods.
    pub purged: AtomicU64,
}

/// A miss in flight: the others with the same key wait until its guard is dropped (the answer
/// stored, or found not cacheable).
pub struct FlightGuard {
    store: Arc<CacheStore>,
    key: Arc<str>,
    _done: watch::Sender<()>,
}

impl std::fmt::Debug for FlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightGuard").field("key", &self.key).finish()
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.store.flights.lock() {
            flights.remove(&self.key);
        }
        // Dropping `_done` wakes every waiter.
    }
}

/// What [`CacheStore::join`] finds.
pub enum Flight {
    /// No miss of the key in flight: this request leads, its guard held until the answer is
    /// stored.
    Lead(FlightGuard),
    /// Another request's miss is in flight: wait on it.
    Wait(watch::Receiver<()>),
}

/// Where purges look: a key of the store is `org \n host \n path \n rest`.
pub struct KeyParts<'a> {
    pub org: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

pub struct CacheStore {
    entries: moka::sync::Cache<Arc<str>, Arc<Entry>>,
    /// When a path (hash of organization, host, path) was last invalidated: an entry stored
    /// before is not served. Bounded; kept as long as an answer can be (a day).
    invalidated: moka::sync::Cache<u64, Instant>,
    flights: Mutex<HashMap<Arc<str>, watch::Receiver<()>>>,
    pub stats: Arc<CacheStats>,
    pub max_bytes: u64,
    /// The shared second level, when the gateway has `state.redis`.
    second: ArcSwapOption<SecondLevel>,
}

impl std::fmt::Debug for CacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheStore")
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// The longest an entry may live, fresh and stale windows included: entries past it are gone,
/// so the invalidation marks need to live no longer.
pub const LONGEST_LIFE: Duration = Duration::from_secs(24 * 3600);

impl CacheStore {
    pub fn new(max_bytes: u64) -> Arc<CacheStore> {
        let stats = Arc::new(CacheStats::default());
        let counted = stats.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, v: &Arc<Entry>| v.weight(k))
            .time_to_live(LONGEST_LIFE)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    counted.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Arc::new(CacheStore {
            entries,
            invalidated: moka::sync::Cache::builder()
                .max_capacity(1 << 20)
                .time_to_live(LONGEST_LIFE)
                .build(),
            flights: Mutex::new(HashMap::new()),
            stats,
            max_bytes,
            second: ArcSwapOption::empty(),
        })
    }

    /// The variant of `key` whose `Vary` headers match the request's, unless its path was
    /// invalidated since it was stored.
    pub fn get(&self, key: &str, path_id: u64, matches: impl Fn(&Stored) -> bool) -> Option<Arc<Stored>> {
        let entry = self.entries.get(key)?;
        let found = entry.variants.iter().rev().find(|v| matches(v))?.clone();
        if let Some(at) = self.invalidated.get(&path_id)
            && found.stored_at <= at
        {
            return None;
        }
        Some(found)
    }

    /// Uses `redis` as the second level (`None`: memory only). The running second level stays
    /// when the config's Redis is the same one (a reload that kept `state.redis`).
    pub fn set_second_level(self: &Arc<Self>, redis: Option<&RedisLimiter>) {
        let current = self.second.load_full();
        match (redis, current) {
            (Some(r), Some(c)) if c.redis().same_as(r) => {}
            (Some(r), _) => self
                .second
                .store(Some(SecondLevel::start(r.clone(), Arc::downgrade(self)))),
            (None, _) => self.second.store(None),
        }
    }

    /// The second level, when there is one and it is in use now.
    pub fn second_level(&self) -> Option<Arc<SecondLevel>> {
        self.second.load_full().filter(|s| s.is_on())
    }

    /// The second level, in use now or not (for purges: they say whether Redis had them).
    pub fn second_level_configured(&self) -> Option<Arc<SecondLevel>> {
        self.second.load_full()
    }

    /// When the path `path_id` was last invalidated here.
    pub fn invalidated_at(&self, path_id: u64) -> Option<Instant> {
        self.invalidated.get(&path_id)
    }

    /// Fills the memory with variants read from the second level (not written back); the
    /// variants already here for other `Vary` values stay.
    pub fn put_local(&self, key: Arc<str>, from_second: Vec<Arc<Stored>>) {
        let old = self.entries.get(&key);
        let mut variants: Vec<Arc<Stored>> = old
            .iter()
            .flat_map(|e| e.variants.iter())
            .filter(|v| {
                !from_second
                    .iter()
                    .any(|n| n.vary == v.vary && n.vary_names == v.vary_names)
            })
            .cloned()
            .collect();
        variants.extend(from_second);
        if variants.len() > MAX_VARIANTS {
            variants.drain(..variants.len() - MAX_VARIANTS);
        }
        self.entries.insert(key, Arc::new(Entry { variants }));
    }

    /// Stores `answer` under `key`, replacing the variant with the same `Vary` values; and in
    /// the second level, in the background.
    pub fn put(&self, key: Arc<str>, answer: Arc<Stored>) {
        let old = self.entries.get(&key);
        let mut variants: Vec<Arc<Stored>> = old
            .iter()
            .flat_map(|e| e.variants.iter())
            .filter(|v| v.vary != answer.vary && v.vary_names == answer.vary_names)
            .cloned()
            .collect();
        if variants.len() >= MAX_VARIANTS {
            variants.remove(0);
        }
        variants.push(answer);
        let entry = Arc::new(Entry { variants });
        if let Some(second) = self.second_level() {
            second.put(&key, &entry);
        }
        self.entries.insert(key, entry);
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// Leads the miss of `key`, or waits for the one in flight.
    pub fn join(self: &Arc<Self>, key: &Arc<str>) -> Flight {
        let Ok(mut flights) = self.flights.lock() else {
            // A poisoned map: no coalescing rather than no answer.
            let (tx, _) = watch::channel(());
            return Flight::Lead(FlightGuard {
                store: self.clone(),
                key: Arc::from(""),
                _done: tx,
            });
        };
        if let Some(rx) = flights.get(key) {
            return Flight::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.clone(), rx);
        Flight::Lead(FlightGuard {
            store: self.clone(),
            key: key.clone(),
            _done: tx,
        })
    }

    /// Whether a miss of `key` is in flight (a background refresh, say).
    pub fn in_flight(&self, key: &str) -> bool {
        self.flights.lock().is_ok_and(|f| f.contains_key(key))
    }

    /// Entries of the path `path_id` stored until now are no longer served (an unsafe method
    /// went through, or a purge by URL).
    pub fn invalidate_path(&self, path_id: u64) {
        self.invalidated.insert(path_id, Instant::now());
    }

    /// Removes every entry for which `doomed` holds (an admin purge: walks the store).
    /// Returns how many were removed.
    pub fn purge(&self, doomed: impl Fn(&KeyParts<'_>, &Entry) -> bool) -> u64 {
        let mut removed = 0;
        for (key, entry) in self.entries.iter() {
            let mut parts = key.splitn(4, '\n');
            let (Some(org), Some(host), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if doomed(&KeyParts { org, host, path }, &entry) {
                self.entries.invalidate(&*key);
                removed += 1;
            }
        }
        self.stats.purged.fetch_add(removed, Ordering::Relaxed);
        removed
    }

    /// Bytes held now (as weighed) and entries, for `/metrics`.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.weighted_size(), self.entries.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::header::{HeaderName, HeaderValue};
    use http::{HeaderMap, StatusCode};

    fn variant(encoding: &'static str, body: &'static str) -> Arc<Stored> {
        Arc::new(Stored {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            stored_at: Instant::now(),
            initial_age: 0,
            fresh_for: Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            no_cache: false,
            vary_names: vec![HeaderName::from_static("accept-encoding")],
            vary: vec![Some(HeaderValue::from_static(encoding))],
            tags: Vec::new(),
        })
    }

    #[test]
    fn variants_from_the_second_level_join_those_in_memory() {
        let store = CacheStore::new(1 << 20);
        let key: Arc<str> = Arc::from("org\nhost\n/p\n\n\n");
        store.put_local(key.clone(), vec![variant("gzip", "local gzip")]);
        store.put_local(
            key.clone(),
            vec![variant("br", "shared br"), variant("gzip", "shared gzip")],
        );
        let bodies: Vec<Bytes> = store
            .entries
            .get(&key)
            .map(|e| e.variants.iter().map(|v| v.body.clone()).collect())
            .unwrap_or_default();
        assert_eq!(
            bodies,
            ["shared br", "shared gzip"],
            "the shared gzip replaced the local one"
        );
        store.put_local(key.clone(), vec![variant("zstd", "shared zstd")]);
        let n = store.entries.get(&key).map_or(0, |e| e.variants.len());
        assert_eq!(n, 3, "other encodings stay");
    }
}
