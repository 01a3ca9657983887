//! Publishing versions to the nodes through Redis, after the database commit.
//!
//! A version is published as: `SET cratopus:config:v:N <bundle>`, then `cratopus:config:current`
//! raised to N (never lowered: two control planes publishing at once cannot move it back), then
//! `PUBLISH cratopus:config N`. Redis being down never fails a change: the database has the
//! version, and [`Publisher::run`] compares Redis with the database every `interval` (and at
//! start) and publishes the latest version again when Redis lacks it (it was down during the
//! change, or restarted empty). A node that missed the message catches up by the number.
//! Uploaded certificates are caught up the same way ([`crate::certs::catch_up`]).

use cratopus_config::cluster::keys;
use cratopus_state::RedisLimiter;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Publisher {
    redis: RedisLimiter,
    /// Wakes the background task early (a publish failed: try again soon).
    wake: Arc<Notify>,
    /// Certificates must be compared with Redis: at start, after a certificate could not be
    /// published, and when Redis turned out to have lost versions (it restarted empty).
    certs_dirty: Arc<AtomicBool>,
}

impl Publisher {
    pub fn new(redis: RedisLimiter) -> Publisher {
        Publisher {
            redis,
            wake: Arc::new(Notify::new()),
            certs_dirty: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A certificate could not be written to Redis: the background task writes it later.
    pub fn certificates_behind(&self) {
        self.certs_dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn redis(&self) -> &RedisLimiter {
        &self.redis
    }

    /// Publishes version `n` now; on failure leaves it to the background task.
    pub async fn publish_now(&self, n: u64, bundle_json: Vec<u8>) {
        match publish(&self.redis, n, &bundle_json).await {
            Ok(()) => tracing::info!(version = n, "config version published"),
            Err(e) => {
                tracing::warn!(version = n, error = %e, "config version stored but not published: Redis is unreachable; it is published again when Redis is back");
                self.wake.notify_one();
            }
        }
    }

    /// Keeps Redis at the database's latest version, forever.
    pub async fn run(self, pool: Pool, interval: Duration) {
        loop {
            if let Err(e) = self.catch_up(&pool).await {
                tracing::debug!(error = %e, "republish check failed");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.wake.notified() => tokio::time::sleep(interval.min(Duration::from_millis(200))).await,
            }
        }
    }

    /// One comparison of Redis with the database, and a publish when Redis is behind.
    async fn catch_up(&self, pool: &Pool) -> Result<(), String> {
        let result = self.catch_up_versions(pool).await;
        if self.certs_dirty.swap(false, Ordering::AcqRel)
            && let Err(e) = crate::certs::catch_up(&self.redis, pool).await
        {
            self.certs_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        result
    }

    async fn catch_up_versions(&self, pool: &Pool) -> Result<(), String> {
        let current = self
            .redis
            .get_bytes(keys::CONFIG_CURRENT)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let client = pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_opt(
                "SELECT version, bundle FROM config_versions WHERE version > $1 ORDER BY version DESC LIMIT 1",
                &[&i64::try_from(current).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(|e| e.to_string())?;
        drop(client);
        let Some(row) = row else { return Ok(()) };
        let version = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        let bundle: serde_json::Value = row.get(1);
        let json = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
        publish(&self.redis, version, &json).await.map_err(|e| e.to_string())?;
        tracing::info!(version, redis_had = current, "config version published again");
        // Redis lost what it had (or never got it): the certificates too, perhaps.
        self.certs_dirty.store(true, Ordering::Release);
        Ok(())
    }
}

/// How long a superseded version stays in Redis: long enough for a node that was told of it to
/// read it; a node that missed it reads the current one. (The database keeps every version.)
const SUPERSEDED_TTL: Duration = Duration::from_secs(600);

async fn publish(redis: &RedisLimiter, n: u64, bundle_json: &[u8]) -> Result<(), cratopus_state::StateError> {
    redis.set_persistent(&keys::config_version(n), bundle_json).await?;
    redis.raise_to(keys::CONFIG_CURRENT, n).await?;
    redis.publish(keys::CONFIG_CHANNEL, n.to_string().as_bytes()).await?;
    // A bundle holds every organization: keeping them all would grow Redis with each change.
    if n > 1 {
        redis.expire(&keys::config_version(n - 1), SUPERSEDED_TTL).await?;
    }
    Ok(())
}
