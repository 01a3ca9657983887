//! The cache's second level: the gateway's Redis (`state.redis`), shared by every node.
//!
//! - **Read**: a memory miss asks Redis for the key (one `GET`, bounded by the Redis timeout;
//!   while Redis is marked down, no I/O at all). What comes back fills the memory store.
//! - **Write**: every answer the memory store takes is also written to Redis by a background
//!   task, never on the request's time, with its remaining fresh + stale window as the TTL.
//! - **Keys**: `cratopus:cache:<generation>:<sha-256 of the memory key>` — one key per entry
//!   (so Redis Cluster needs no hash tags), short, and with no consumer name in clear.
//! - **Purge on every node**: a purge bumps `cratopus:cache:generation` (`INCR`) and publishes
//!   itself on `cratopus:cache:purge`. Every node subscribes: it drops the matching entries
//!   of its memory and moves to the new generation, so every entry in Redis written before
//!   the purge is out of reach at once (and expires by its TTL). A purge thus empties the
//!   shared level — coarse, but one round trip, the same for URL, prefix and tag, and
//!   correct on a Cluster with no cross-slot operation, no `SCAN` and no tag sets to keep in
//!   step; the memory levels keep what the purge did not name.
//! - **Not subscribed, not used**: the generation is read after each (re)subscription. While
//!   the subscription is down (Redis gone), a node could miss a purge, so it neither reads
//!   nor writes Redis until it is back.

use super::codec;
use super::purge::Purge;
use super::store::{CacheStore, Entry};
use super::stored::Stored;
use cratopus_state::RedisLimiter;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::oneshot;

const GENERATION_KEY: &str = "cratopus:cache:generation";
const CHANNEL: &str = "cratopus:cache:purge";
/// The generation while the purge channel is not subscribed: the second level is off.
const UNKNOWN: u64 = u64::MAX;

pub struct SecondLevel {
    redis: RedisLimiter,
    shared: Arc<Shared>,
    /// Dropped with the second level: stops its subscriber.
    _stop: oneshot::Sender<()>,
}

/// What the subscriber task and the requests share.
struct Shared {
    generation: AtomicU64,
    /// This node, so that it does not apply its own purges twice.
    node: u64,
}

impl std::fmt::Debug for SecondLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondLevel")
            .field("generation", &self.shared.generation.load(Ordering::Relaxed))
            .finish()
    }
}

impl SecondLevel {
    /// The second level on `redis` for `store`; its subscriber starts at once (in the
    /// background: nothing waits for Redis here).
    pub fn start(redis: RedisLimiter, store: Weak<CacheStore>) -> Arc<SecondLevel> {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(UNKNOWN),
            node: node_id(),
        });
        let (stop, stopped) = oneshot::channel();
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(subscribe(redis.clone(), shared.clone(), store, stopped));
        }
        Arc::new(SecondLevel {
            redis,
            shared,
            _stop: stop,
        })
    }

    pub fn redis(&self) -> &RedisLimiter {
        &self.redis
    }

    /// Whether the second level is in use now (subscribed to the purges).
    pub fn is_on(&self) -> bool {
        self.shared.generation.load(Ordering::Acquire) != UNKNOWN
    }

    fn redis_key(generation: u64, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let mut out = String::with_capacity(96);
        let _ = write!(out, "cratopus:cache:{generation}:");
        for b in digest {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// The variants stored in Redis under `key`; empty on a miss, when Redis is down or slow
    /// (within its timeout), or when the value does not parse.
    pub async fn get(&self, key: &str) -> Vec<Stored> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == UNKNOWN {
            return Vec::new();
        }
        match self.redis.get_bytes(&Self::redis_key(generation, key)).await {
            Ok(Some(bytes)) => codec::decode(&bytes, Instant::now()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Writes `entry` under `key` in the background, for as long as one of its variants may
    /// still be served.
    pub fn put(&self, key: &str, entry: &Entry) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == UNKNOWN || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let now = Instant::now();
        let Some(ttl) = codec::remaining_life(&entry.variants, now) else {
            return;
        };
        let bytes = codec::encode(&entry.variants, now);
        let redis_key = Self::redis_key(generation, key);
        let redis = self.redis.clone();
        tokio::spawn(async move {
            // A failure marks Redis down (the limiter's marker); nothing else to do.
            let _ = redis.set_bytes(&redis_key, &bytes, ttl).await;
        });
    }

    /// Sends `purge` to every node and retires the entries in Redis (a new generation).
    /// `false` when Redis could not be reached: the purge stayed on this node.
    pub async fn purge(&self, purge: &Purge) -> bool {
        let Ok(generation) = self.redis.incr(GENERATION_KEY).await else {
            return false;
        };
        // Our own subscriber may be down: move on at once anyway.
        let _ = self
            .shared
            .generation
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
                (g != UNKNOWN && g < generation).then_some(generation)
            });
        let message = json!({"generation": generation, "node": self.shared.node, "purge": purge.to_json()});
        self.redis
            .publish(CHANNEL, message.to_string().as_bytes())
            .await
            .is_ok()
    }
}

/// Keeps the node subscribed to the purge channel while the second level lives: applies the
/// purges of other nodes, follows the generation, and turns the second level off while the
/// subscription is down.
async fn subscribe(redis: RedisLimiter, shared: Arc<Shared>, store: Weak<CacheStore>, mut stop: oneshot::Receiver<()>) {
    let mut attempt = 0usize;
    loop {
        let subscribed = tokio::select! {
            _ = &mut stop => return,
            s = redis.subscribe(CHANNEL, attempt) => s,
        };
        if let Ok(mut sub) = subscribed {
            // Subscribed first, then read: a purge in between is in the channel.
            let generation = tokio::select! {
                _ = &mut stop => return,
                g = redis.get_bytes(GENERATION_KEY) => g,
            };
            if let Ok(g) = generation {
                let g = g
                    .and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse::<u64>().ok()))
                    .unwrap_or(0);
                shared.generation.store(g, Ordering::Release);
                tracing::info!(generation = g, "response cache: redis second level on");
                loop {
                    let message = tokio::select! {
                        _ = &mut stop => return,
                        m = sub.next() => m,
                    };
                    let Some(message) = message else { break };
                    let Some(store) = store.upgrade() else { return };
                    on_message(&message, &shared, &store);
                }
                shared.generation.store(UNKNOWN, Ordering::Release);
                tracing::warn!("response cache: redis second level off until redis is back");
            }
        }
        attempt = attempt.wrapping_add(1);
        // Paced reconnects, as the limiter paces its probes.
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(redis.retry_interval()) => {}
        }
    }
}

fn on_message(message: &[u8], shared: &Shared, store: &CacheStore) {
    let Ok(v) = serde_json::from_slice::<Value>(message) else {
        return;
    };
    if let Some(g) = v.get("generation").and_then(Value::as_u64) {
        let _ = shared.generation.fetch_max(g, Ordering::AcqRel);
    }
    if v.get("node").and_then(Value::as_u64) == Some(shared.node) {
        return;
    }
    if let Some(p) = v.get("purge").and_then(Purge::from_json) {
        let removed = p.apply(store);
        tracing::info!(purged = removed, "cache purged by another node");
    }
}

/// A number that tells this process from the other nodes.
fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
