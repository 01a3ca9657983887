//! Target state shared by the nodes of a cluster (gateway.yaml's `cluster:`, an upstream's
//! `shared_state`), through the cluster's Redis.
//!
//! **Down and up.** A node that finds a target down announces it on
//! [`keys::TARGETS_CHANNEL`]; every other node that has the same upstream (`org/name`) and
//! target (address) takes it out of rotation at once, for as long as the announcement says:
//! - *outlier ejection*: for the ejection's time;
//! - *breaker opened*: for the breaker's `open_for`;
//! - *health check*: a lease of three check intervals (at least one second), renewed by every
//!   failed check of the announcing node, and ended early by its "up" when the target passes
//!   again, or by the receiving node's own passing check (a node trusts what it sees itself
//!   over what it hears: a node that can reach the target is not kept from it for long).
//!
//! So a mark always runs out by itself when the announcing node stops (dies, loses Redis): a
//! node never keeps a target out on stale hearsay for longer than the mark's time. Marks are
//! set and cleared on the `Target` (one more relaxed flag in the balancer's availability check)
//! and expired by the pool's 100 ms ticker.
//!
//! **In-flight counts.** Every second, a node with upstreams that balance on load
//! (`least_connections`, `power_of_two`) writes its in-flight count per target into the hash
//! [`keys::inflight`]`(node)` (TTL 3 s) and its report time into [`keys::INFLIGHT_NODES`], then
//! reads the other fresh nodes' hashes and stores their sums on the targets; the balancer adds
//! them to the local count. Nothing is read or written per request.
//!
//! Redis being down costs nothing but the sharing: announcements are dropped (each node still
//! acts on its own checks), in-flight sums go stale and are zeroed, and the subscription is
//! made again when Redis is back.

use crate::pool::UpstreamPool;
use crate::target::Target;
use cratopus_config::Balance;
use cratopus_config::cluster::keys;
use cratopus_state::RedisLimiter;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How often in-flight counts are exchanged.
const INFLIGHT_PERIOD: Duration = Duration::from_secs(1);
/// A node whose last report is older than this is left out of the sums.
const INFLIGHT_STALE: Duration = Duration::from_secs(3);

/// Why a target is announced down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Health,
    Outlier,
    Breaker,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Health => "health",
            Cause::Outlier => "outlier",
            Cause::Breaker => "breaker",
        }
    }
}

/// One announcement, as it travels on the channel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Announcement {
    /// The announcing process (a random number), so that a node skips its own messages.
    pub i: u64,
    pub node: String,
    /// `org/upstream`.
    pub upstream: String,
    /// The target's address (its label).
    pub target: String,
    pub down: bool,
    pub cause: String,
    /// How long the mark holds, for a `down`.
    #[serde(default)]
    pub for_ms: u64,
}

/// The cluster's shared target state for this process: the upstream pools that take part, and
/// the tasks that talk to Redis. One per `cluster:` config, kept across reloads while it is
/// unchanged; pools hold it weakly.
pub struct ClusterTargets {
    /// The node's name (its in-flight hash).
    pub node: String,
    instance: u64,
    redis: RedisLimiter,
    /// The config it was made from, to tell whether a reload can keep it.
    pub config: cratopus_config::cluster::ClusterConfig,
    pools: Mutex<HashMap<String, Vec<Weak<UpstreamPool>>>>,
    out: mpsc::UnboundedSender<Announcement>,
    out_rx: Mutex<Option<mpsc::UnboundedReceiver<Announcement>>>,
    /// Dropped with this value: ends the subscriber and the in-flight exchange.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

impl std::fmt::Debug for ClusterTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTargets").field("node", &self.node).finish()
    }
}

impl ClusterTargets {
    /// Prepares the shared state; connects nothing ([`ClusterTargets::start`] does).
    pub fn new(config: &cratopus_config::cluster::ClusterConfig) -> Result<Arc<ClusterTargets>, String> {
        let r = &config.redis;
        let redis = RedisLimiter::new(cratopus_state::RedisConfig::from(r)).map_err(|e| e.to_string())?;
        let node = config.node.clone().unwrap_or_else(host_name);
        let (out, out_rx) = mpsc::unbounded_channel();
        let (alive_tx, alive) = watch::channel(());
        Ok(Arc::new(ClusterTargets {
            node,
            instance: fastrand::u64(..),
            redis,
            config: config.clone(),
            pools: Mutex::new(HashMap::new()),
            out,
            out_rx: Mutex::new(Some(out_rx)),
            _alive: alive_tx,
            alive,
        }))
    }

    /// Adds `pool` (upstream `key`, `org/name`) to those whose targets are shared.
    pub fn register(&self, key: &str, pool: &Arc<UpstreamPool>) {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let list = pools.entry(key.to_string()).or_default();
        list.retain(|w| w.strong_count() > 0);
        if !list.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(pool))) {
            list.push(Arc::downgrade(pool));
        }
    }

    /// Queues an announcement (sent by the publisher task; never waits).
    pub fn announce(&self, upstream: &str, target: &Target, down: bool, cause: Cause, hold: Duration) {
        let _ = self.out.send(Announcement {
            i: self.instance,
            node: self.node.clone(),
            upstream: upstream.to_string(),
            target: target.label.to_string(),
            down,
            cause: cause.as_str().to_string(),
            for_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// The live pools registered under each key.
    fn live_pools(&self) -> Vec<(String, Arc<UpstreamPool>)> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        pools.retain(|key, list| {
            list.retain(|w| match w.upgrade() {
                Some(p) => {
                    out.push((key.clone(), p));
                    true
                }
                None => false,
            });
            !list.is_empty()
        });
        out
    }

    /// Acts on another node's announcement.
    pub fn apply(&self, a: &Announcement) {
        if a.i == self.instance {
            return;
        }
        for (key, pool) in self.live_pools() {
            if key != a.upstream || !pool.config.shared_state.targets {
                continue;
            }
            let set = pool.targets();
            let Some(t) = set.targets.iter().find(|t| *t.label == *a.target) else {
                continue;
            };
            if a.down {
                let was = t.is_remote_down();
                t.set_remote_down(Some(pool.now_ms().saturating_add(a.for_ms)));
                if !was {
                    tracing::warn!(upstream = %key, target = %t.label, from = %a.node, cause = %a.cause, for_ms = a.for_ms, "target down on another node's word");
                }
            } else if t.is_remote_down() {
                t.set_remote_down(None);
                tracing::info!(upstream = %key, target = %t.label, from = %a.node, "target up again on another node's word");
            }
        }
    }

    /// Starts the publisher, the subscriber and the in-flight exchange. They end when this
    /// value is dropped.
    pub fn start(self: &Arc<Self>) {
        let Some(mut rx) = self.out_rx.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return; // started already
        };
        // Pools kept from before the cluster was configured need the ticker that expires
        // marks; new pools start theirs themselves.
        for (_, pool) in self.live_pools() {
            pool.ensure_ticker();
        }
        let redis = self.redis.clone();
        tokio::spawn(async move {
            while let Some(a) = rx.recv().await {
                if let Ok(text) = serde_json::to_vec(&a)
                    && let Err(e) = redis.publish(keys::TARGETS_CHANNEL, &text).await
                {
                    tracing::debug!(error = %e, "target announcement not published");
                }
            }
        });
        let weak = Arc::downgrade(self);
        let redis = self.redis.clone();
        let mut alive = self.alive.clone();
        tokio::spawn(async move {
            let mut attempt = 0;
            loop {
                let sub = tokio::select! {
                    s = redis.subscribe(keys::TARGETS_CHANNEL, attempt) => s,
                    _ = alive.changed() => return,
                };
                attempt += 1;
                match sub {
                    Ok(mut sub) => loop {
                        let msg = tokio::select! {
                            m = sub.next() => m,
                            _ = alive.changed() => return,
                        };
                        let Some(msg) = msg else { break };
                        let Some(ct) = weak.upgrade() else { return };
                        match serde_json::from_slice::<Announcement>(&msg) {
                            Ok(a) => ct.apply(&a),
                            Err(e) => tracing::debug!(error = %e, "unreadable target announcement"),
                        }
                    },
                    Err(_) => {
                        tokio::select! {
                            _ = tokio::time::sleep(redis.retry_interval()) => {}
                            _ = alive.changed() => return,
                        }
                    }
                }
            }
        });
        let weak = Arc::downgrade(self);
        let mut alive = self.alive.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(INFLIGHT_PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = alive.changed() => return,
                }
                let Some(ct) = weak.upgrade() else { return };
                ct.exchange_inflight().await;
            }
        });
    }

    /// Writes this node's in-flight counts and reads the others' (see the module's doc).
    async fn exchange_inflight(&self) {
        let pools: Vec<(String, Arc<UpstreamPool>)> = self
            .live_pools()
            .into_iter()
            .filter(|(_, p)| {
                p.config.shared_state.inflight
                    && matches!(p.config.balance, Balance::LeastConnections | Balance::PowerOfTwo)
            })
            .collect();
        if pools.is_empty() {
            return;
        }
        let mine: Vec<(String, String)> = pools
            .iter()
            .flat_map(|(key, p)| {
                p.targets()
                    .targets
                    .iter()
                    .map(|t| (format!("{key}|{}", t.label), t.inflight().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let own = keys::inflight(&self.node);
        let now = unix_ms();
        let written = async {
            self.redis.hset_many(&own, &mine).await?;
            self.redis.expire(&own, INFLIGHT_STALE).await?;
            self.redis
                .hset_many(keys::INFLIGHT_NODES, &[(self.node.clone(), now.to_string())])
                .await
        };
        if written.await.is_err() {
            zero(&pools);
            return;
        }
        let Ok(nodes) = self.redis.hgetall(keys::INFLIGHT_NODES).await else {
            zero(&pools);
            return;
        };
        let stale = u64::try_from(INFLIGHT_STALE.as_millis()).unwrap_or(u64::MAX);
        let mut sums: HashMap<String, usize> = HashMap::new();
        for (node, seen) in nodes {
            if node == self.node {
                continue;
            }
            if number::<u64>(&seen).is_none_or(|s| now.saturating_sub(s) > stale) {
                // Gone: its hash has expired; drop it from the index too.
                let _ = self.redis.hash_del(keys::INFLIGHT_NODES, &node).await;
                continue;
            }
            if let Ok(counts) = self.redis.hgetall(&keys::inflight(&node)).await {
                for (field, n) in counts {
                    *sums.entry(field).or_default() += number::<usize>(&n).unwrap_or(0);
                }
            }
        }
        for (key, p) in &pools {
            for t in &p.targets().targets {
                let n = sums.get(&format!("{key}|{}", t.label)).copied().unwrap_or(0);
                t.set_remote_inflight(n);
            }
        }
    }
}

/// A number stored as the decimal text of a hash value.
fn number<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn zero(pools: &[(String, Arc<UpstreamPool>)]) {
    for (_, p) in pools {
        for t in &p.targets().targets {
            t.set_remote_inflight(0);
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The machine's host name, for a node without `cluster.node`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_back() {
        let a = Announcement {
            i: 7,
            node: "a".into(),
            upstream: "acme/users".into(),
            target: "127.0.0.1:8081".into(),
            down: true,
            cause: "health".into(),
            for_ms: 3000,
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Announcement>(&text).unwrap(), a);
    }
}
