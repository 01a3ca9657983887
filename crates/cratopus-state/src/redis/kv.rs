//! Plain keys and pub/sub on the same Redis as the limits, for the response cache's second
//! level (`GET`/`SET PX` of stored answers, a generation counter, and the purge channel every
//! node subscribes to) and for the cluster's config versions (a version counter, a node hash).
//! level: `GET`/`SET PX` of stored answers, a generation counter, and the purge channel every
//! node subscribes to; and for a cluster's certificates, records without expiry, a hash
//! index, and a lock (`SET NX PX`, kept and released only by its owner).
//!
//! Calls share the limiter's connection, its timeout and its down-marker: while Redis is
//! marked down they answer [`StateError::Unavailable`] at once, so a dead Redis costs a cached
//! route nothing. The subscription is a connection of its own (a subscribed connection can
//! carry nothing else), made on demand and bounded by `connect_timeout`.

use super::{Op, RedisLimiter, Target};
use crate::StateError;
use futures_util::StreamExt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// `PEXPIRE` of a key that still holds the caller's value (a lock kept by its owner).
static REFRESH_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    )
});

/// `DEL` of a key that still holds the caller's value (a lock released by its owner only).
static DELETE_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// The messages of one channel, on a connection of their own.
pub struct Subscription {
    stream: redis::aio::PubSubStream,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Subscription {
    /// The next message's payload; `None` once the connection is gone (subscribe again).
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.stream.next().await.map(|m| m.get_payload_bytes().to_vec())
    }
}

impl RedisLimiter {
    /// `GET key`.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.run(Op::Cmd(redis::cmd("GET").arg(key))).await
    }

    /// `SET key value PX ttl` (at least one millisecond).
    pub async fn set_bytes(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run::<()>(Op::Cmd(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ms)))
            .await
    }

    /// `INCR key`: the new value.
    pub async fn incr(&self, key: &str) -> Result<u64, StateError> {
        self.run(Op::Cmd(redis::cmd("INCR").arg(key))).await
    }

    /// `PUBLISH channel message` (in a Redis Cluster the message reaches every node's
    /// subscribers, whichever node receives it).
    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), StateError> {
        self.run::<i64>(Op::Cmd(redis::cmd("PUBLISH").arg(channel).arg(message)))
            .await
            .map(drop)
    }

    /// Subscribes to `channel` on a new connection, within `connect_timeout`. For a cluster,
    /// `attempt` picks the seed node (round robin, so that a dead seed is not retried
    /// forever); classic pub/sub messages reach every node of a cluster.
    pub async fn subscribe(&self, channel: &str, attempt: usize) -> Result<Subscription, StateError> {
        let config = &self.inner.config;
        let client = match &self.inner.target {
            Target::Single(c) => c.clone(),
            Target::Cluster(_) => {
                let url = &config.urls[attempt % config.urls.len().max(1)];
                redis::Client::open(url.as_str()).map_err(|e| StateError::Config(e.to_string()))?
            }
        };
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(pubsub)) => Ok(Subscription {
                stream: pubsub.into_on_message(),
            }),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis subscription failed");
                Err(StateError::Unavailable)
            }
            Err(_) => Err(StateError::Unavailable),
        }
    }

    /// `SET key value` without expiry (a config version, a certificate record: kept until
    /// replaced or deleted).
    pub async fn set_persistent(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.run::<()>(Op::Cmd(redis::cmd("SET").arg(key).arg(value))).await
    }

    /// `SET key value NX PX ttl`: whether the key was set (false: it exists already). A lock.
    pub async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Option<String> = self
            .run(Op::Cmd(
                redis::cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(ms),
            ))
            .await?;
        Ok(reply.is_some())
    }

    /// Sets the expiry of `key` to `ttl` if it still holds `value` (a lock's owner keeping it);
    /// whether it did. One script on one key, atomic.
    pub async fn refresh_if(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut inv = REFRESH_IF.prepare_invoke();
        inv.key(key).arg(value).arg(ms);
        let n: i64 = self.run(Op::Script(&inv)).await?;
        Ok(n == 1)
    }

    /// Deletes `key` if it still holds `value` (a lock's owner releasing it); whether it did.
    pub async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        let mut inv = DELETE_IF.prepare_invoke();
        inv.key(key).arg(value);
        let n: i64 = self.run(Op::Script(&inv)).await?;
        Ok(n == 1)
    }

    /// `DEL key`.
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.run::<i64>(Op::Cmd(redis::cmd("DEL").arg(key))).await.map(drop)
    }

    /// `HSET key field value`.
    pub async fn hset(&self, key: &str, field: &str, value: &[u8]) -> Result<(), StateError> {
        self.run::<i64>(Op::Cmd(redis::cmd("HSET").arg(key).arg(field).arg(value)))
            .await
            .map(drop)
    }

    /// `HSET key field value ...` (nothing for no pairs).
    pub async fn hset_many(&self, key: &str, pairs: &[(String, String)]) -> Result<(), StateError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key);
        for (f, v) in pairs {
            cmd.arg(f).arg(v);
        }
        self.run::<i64>(Op::Cmd(&cmd)).await.map(drop)
    }

    /// `HGETALL key`: every field and value (empty when the key does not exist).
    pub async fn hgetall(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        self.run(Op::Cmd(redis::cmd("HGETALL").arg(key))).await
    }

    /// `PUBLISH channel message`, answering how many subscribers received it (of the Redis
    /// node that took the message, for a Redis Cluster).
    pub async fn publish_counted(&self, channel: &str, message: &[u8]) -> Result<u64, StateError> {
        self.run::<i64>(Op::Cmd(redis::cmd("PUBLISH").arg(channel).arg(message)))
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Sets the integer at `key` to `value` only if that is above what it holds (a missing key
    /// holds 0); answers whether it did. One key, one atomic script: two writers racing
    /// leave the larger number.
    pub async fn raise_to(&self, key: &str, value: u64) -> Result<bool, StateError> {
        let script = redis::Script::new(RAISE_TO_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(key).arg(value);
        self.run::<i64>(Op::Script(&inv)).await.map(|n| n == 1)
    }

    /// `INCR key`, but never answering `floor` or less: a counter that a restarted Redis lost,
    /// or that lags behind numbers given out elsewhere, jumps to `floor + 1`. Atomic on one key,
    /// so two callers never get the same number.
    pub async fn incr_above(&self, key: &str, floor: u64) -> Result<u64, StateError> {
        let script = redis::Script::new(INCR_ABOVE_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(key).arg(floor);
        self.run::<i64>(Op::Script(&inv))
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Whether `other` is this limiter or a clone of it (one connection, one down-marker).
    pub fn same_as(&self, other: &RedisLimiter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The retry interval of the configuration, for callers that reconnect on their own.
    pub fn retry_interval(&self) -> Duration {
        self.inner.config.retry_interval
    }

    /// `HDEL key field`.
    pub async fn hash_del(&self, key: &str, field: &str) -> Result<(), StateError> {
        self.run::<i64>(Op::Cmd(redis::cmd("HDEL").arg(key).arg(field)))
            .await
            .map(drop)
    }

    /// `PEXPIRE key ttl`: the key goes after `ttl` (nothing happens if it does not exist).
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run::<i64>(Op::Cmd(redis::cmd("PEXPIRE").arg(key).arg(ms)))
            .await
            .map(drop)
    }
}

/// KEYS[1] := ARGV[1] if ARGV[1] is above its integer value (missing: 0). Returns 1 if set.
const RAISE_TO_LUA: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local new = tonumber(ARGV[1])
if new > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// INCR KEYS[1], then lift it to ARGV[1] + 1 if it is not above ARGV[1]. Returns the value.
const INCR_ABOVE_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], string.format('%d', n))
end
return n
";
