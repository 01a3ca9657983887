//! Plain keys and pub/sub on the same Redis as the limits, for the response cache's second
//! level: `GET`/`SET PX` of stored answers, a generation counter, and the purge channel every
//! node subscribes to.
//!
//! Calls share the limiter's connection, its timeout and its down-marker: while Redis is
//! marked down they answer [`StateError::Unavailable`] at once, so a dead Redis costs a cached
//! route nothing. The subscription is a connection of its own (a subscribed connection can
//! carry nothing else), made on demand and bounded by `connect_timeout`.

use super::{Op, RedisLimiter, Target};
use crate::StateError;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

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

    /// `HGETALL key`.
    pub async fn hgetall(&self, key: &str) -> Result<std::collections::HashMap<String, String>, StateError> {
        self.run(Op::Cmd(redis::cmd("HGETALL").arg(key))).await
    }

    /// `HDEL key field`.
    pub async fn hdel(&self, key: &str, field: &str) -> Result<(), StateError> {
        self.run::<i64>(Op::Cmd(redis::cmd("HDEL").arg(key).arg(field)))
            .await
            .map(drop)
    }

    /// `PEXPIRE key ttl` (at least one millisecond).
    pub async fn pexpire(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run::<i64>(Op::Cmd(redis::cmd("PEXPIRE").arg(key).arg(ms)))
            .await
            .map(drop)
    }

    /// Whether `other` is this limiter or a clone of it (one connection, one down-marker).
    pub fn same_as(&self, other: &RedisLimiter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The retry interval of the configuration, for callers that reconnect on their own.
    pub fn retry_interval(&self) -> Duration {
        self.inner.config.retry_interval
    }
}
