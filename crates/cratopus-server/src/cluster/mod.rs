//! A node of a cluster: runs the config version the cluster announces, beside its own files.
//!
//! The control plane (or `cratopus push`) stores each version of the cluster's organizations
//! in Redis and announces its number; see [`cratopus_config::cluster`] for the keys. A node:
//! - at start ([`boot`]) fetches the current version and compiles its gateway.yaml with it; when
//!   Redis cannot give a usable version it starts from its disk copy ([`disk`]), and without one
//!   from its own organizations alone. Redis being down never stops a node from starting.
//! - then ([`follow`]) listens on the announcement channel and swaps in each newer version
//!   through the [`Reloader`](crate::reload::Reloader), as a file reload does (one at a time,
//!   compiled beside the running snapshot, the old one serving on error). It resubscribes with
//!   back-off after a disconnect and checks the current number at every heartbeat, so a lost
//!   message costs at most one heartbeat.
//! - reports the version it runs (and the last rejected one's error) in the `cratopus:nodes`
//!   hash at every heartbeat and right after each swap.
//!
//! Nothing here is on the request path: a node without `cluster:` never builds a
//! [`ClusterNode`], and one with it serves from its snapshot whatever Redis does.

pub mod boot;
pub mod disk;
pub mod follow;

use cratopus_config::cluster::{ClusterConfig, keys};
use cratopus_state::RedisLimiter;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the running version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched from Redis.
    Redis,
    /// Read from the disk copy at start (Redis could not give a usable version).
    Disk,
    /// No cluster version: the node's own organizations only.
    Local,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Disk => "disk",
            Source::Local => "local",
        }
    }
}

/// This node's part in the cluster: its name, its Redis, the version it runs and the last
/// problem, shared by the follower task, the admin API and `/metrics`.
pub struct ClusterNode {
    pub name: String,
    redis: RedisLimiter,
    cache_file: PathBuf,
    heartbeat: Duration,
    started_ms: u64,
    /// The cluster version running (0: none).
    running: AtomicU64,
    source: Mutex<Source>,
    /// The last version refused (not tried again at every heartbeat), 0 for none.
    rejected: AtomicU64,
    last_error: Mutex<Option<String>>,
    subscribed: AtomicBool,
    swaps: AtomicU64,
    rejections: AtomicU64,
    /// One version applied at a time (the announcement and the heartbeat may both see it).
    applying: tokio::sync::Mutex<()>,
}

impl ClusterNode {
    /// Prepares the node; connects nothing. `config_file` is gateway.yaml, which relative
    /// paths (the disk copy) are resolved against.
    pub fn new(c: &ClusterConfig, config_file: &Path) -> Result<ClusterNode, String> {
        // The cluster's calls are off the request path and fetch whole config versions: they
        // may take longer than a rate-limit check's `timeout` (50 ms by default), so they wait
        // at least a second.
        let patience = c.redis.timeout.0.max(Duration::from_secs(1));
        let redis = RedisLimiter::new(cratopus_state::RedisConfig {
            timeout: patience,
            connect_timeout: patience,
            ..cratopus_state::RedisConfig::from(&c.redis)
        })
        .map_err(|e| format!("cluster.redis: {e}"))?;
        let base = config_file.parent().unwrap_or(Path::new("."));
        let cache_file = base.join(c.cache_file.as_deref().unwrap_or("cratopus-cluster.json"));
        Ok(ClusterNode {
            name: c.node.clone().unwrap_or_else(host_name),
            redis,
            cache_file,
            heartbeat: c.heartbeat.0,
            started_ms: now_ms(),
            running: AtomicU64::new(0),
            source: Mutex::new(Source::Local),
            rejected: AtomicU64::new(0),
            last_error: Mutex::new(None),
            subscribed: AtomicBool::new(false),
            swaps: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    /// The cluster version running; 0 when the node runs its own organizations only.
    pub fn version(&self) -> u64 {
        self.running.load(Ordering::Acquire)
    }

    pub fn source(&self) -> Source {
        *self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The cluster's Redis connection (with its down-marker), for other cluster features that
    /// share it rather than open their own.
    pub fn redis(&self) -> &RedisLimiter {
        &self.redis
    }

    /// Whether the node's last call to Redis succeeded.
    pub fn redis_up(&self) -> bool {
        self.redis.is_up()
    }

    /// Whether the node listens for announcements now.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    pub fn cache_file(&self) -> &Path {
        &self.cache_file
    }

    fn set_running(&self, version: u64, source: Source) {
        self.running.store(version, Ordering::Release);
        *self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = source;
    }

    fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Writes this node's line of the nodes hash: name, version, when seen, when started, and
    /// the last error. Failures are left to the next heartbeat.
    async fn report(&self) {
        let line = json!({
            "name": self.name,
            "version": self.version(),
            "seen_ms": now_ms(),
            "started_ms": self.started_ms,
            "error": self.last_error(),
        });
        if let Err(e) = self
            .redis
            .hset(keys::NODES, &self.name, line.to_string().as_bytes())
            .await
        {
            tracing::debug!(error = %e, "cluster: heartbeat not written");
        }
    }
}

/// The machine's host name (`/proc/sys/kernel/hostname`), or `cratopus` if it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cratopus".into())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
