//! Certificates in a cluster: every node serves every certificate of the cluster's store, and
//! ACME orders are made once for the cluster.
//!
//! With `cluster:` in gateway.yaml a node
//! - keeps the store's certificates in [`AcmeStore::shared`], where the TLS resolvers find them:
//!   at start from its disk copy (`<tls.acme.storage>/cluster/<name>.json`, so that it serves
//!   them with Redis down), then from Redis (every name of the hash `cratopus:certs`), then
//!   each name announced on the channel `cratopus:certs`, and again every `cluster.heartbeat`
//!   (a missed announcement, a Redis restart) — without a restart or a dropped connection;
//! - looks HTTP-01 tokens it does not hold up in Redis ([`AcmeStore::challenge_anywhere`]);
//! - gives the ACME manager ([`crate::acme`]) the lock, the shared challenges and the store.
//!
//! Records are [`CertRecord`]s (the contract the control plane writes uploads with). A record
//! that does not parse is logged and skipped; the certificate held before stays served.

use cratopus_config::cluster::keys;
use cratopus_config::cluster_certs::{CertRecord, CertSource};
use cratopus_core::Engine;
use cratopus_core::shared_certs::SharedCert;
use cratopus_core::tls::AcmeStore;
use cratopus_state::RedisLimiter;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long an ACME lock lives unless its holder refreshes it (a node that dies while ordering
/// blocks the others this long at most).
pub const LOCK_TTL: Duration = Duration::from_secs(60);

/// This node's part of the cluster's certificates.
#[derive(Debug)]
pub struct Cluster {
    pub redis: RedisLimiter,
    /// This node's name, in the locks it takes.
    pub node: String,
    store: Arc<AcmeStore>,
    /// Where the store's certificates are copied (`None`: no disk copy).
    cache_dir: Option<PathBuf>,
    heartbeat: Duration,
    /// Set once the store was read from Redis (see [`Cluster::first_sync`]).
    synced: tokio::sync::watch::Sender<bool>,
}

/// An ACME lock this node holds.
#[derive(Debug)]
pub struct Lock {
    key: String,
    value: String,
}

/// Joins the cluster of gateway.yaml's `cluster:` section, if any: connects the store to Redis
/// and starts following the cluster's certificates. Nothing here waits for Redis.
pub fn start(engine: &Arc<Engine>) -> Result<Option<Arc<Cluster>>, String> {
    let snap = engine.snapshot();
    let Some(cfg) = snap.config.gateway.cluster.clone() else {
        return Ok(None);
    };
    let redis =
        RedisLimiter::new(cratopus_state::RedisConfig::from(&cfg.redis)).map_err(|e| format!("cluster.redis: {e}"))?;
    let storage = cratopus_config::load::resolve_path(&snap.config.file, &snap.config.gateway.tls.acme.storage);
    let store = snap.tls.acme.clone();
    store.join_cluster(redis.clone());
    let cluster = Arc::new(Cluster {
        redis,
        node: cfg.node.clone().unwrap_or_else(host_name),
        store,
        cache_dir: Some(storage.join("cluster")),
        heartbeat: cfg.heartbeat.0,
        synced: tokio::sync::watch::Sender::new(false),
    });
    tokio::spawn(cluster.clone().follow());
    Ok(Some(cluster))
}

/// The machine's host name (`cluster.node`'s default).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Cluster {
    /// The disk copy, then Redis: the index, then each announced name, resubscribing when the
    /// subscription drops and reading the index again at every heartbeat.
    async fn follow(self: Arc<Self>) {
        self.load_disk_copy().await;
        let mut attempt = 0usize;
        loop {
            match self.redis.subscribe(keys::CERTS_CHANNEL, attempt).await {
                Ok(mut sub) => {
                    // Subscribed first, then read: nothing announced in between is missed.
                    self.sync_all().await;
                    let mut every = tokio::time::interval(self.heartbeat);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    every.tick().await;
                    loop {
                        tokio::select! {
                            msg = sub.next() => match msg {
                                Some(name) => match String::from_utf8(name) {
                                    Ok(name) => self.fetch(&name).await,
                                    Err(_) => tracing::warn!("ignoring a certificate announcement that is not UTF-8"),
                                },
                                None => break,
                            },
                            _ = every.tick() => self.sync_all().await,
                        }
                    }
                    tracing::warn!("the cluster's certificate channel closed; subscribing again");
                }
                Err(_) => {
                    attempt = attempt.wrapping_add(1);
                    tokio::time::sleep(self.redis.retry_interval()).await;
                }
            }
        }
    }

    /// Waits until the store was read from Redis once, at most `max`: a node that just
    /// started sees the cluster's certificates before it decides to order one (and its first
    /// Redis call does not fail for a connection still being made).
    pub async fn first_sync(&self, max: Duration) {
        let mut rx = self.synced.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|s| *s)).await;
    }

    /// Reads the index and fetches every certificate that is new or changed; forgets those
    /// that left it (unless the index is empty altogether). With Redis unreachable nothing
    /// changes.
    pub async fn sync_all(&self) {
        let index = match self.redis.hgetall(keys::CERTS).await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the cluster's certificate index");
                return;
            }
        };
        let listed: HashMap<String, u64> = index
            .into_iter()
            .map(|(name, v)| {
                let ms = std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
                (name, ms)
            })
            .collect();
        let held: HashMap<String, u64> = self.store.shared.versions().into_iter().collect();
        for (name, ms) in &listed {
            if held.get(name) != Some(ms) {
                self.fetch(name).await;
            }
        }
        // An empty index is a Redis that lost its data (restarted without persistence), not a
        // cluster that deleted every certificate: keep serving what we have.
        if listed.is_empty() && !held.is_empty() {
            tracing::debug!("the cluster's certificate index is empty; keeping the certificates held");
        } else {
            for name in held.keys().filter(|n| !listed.contains_key(*n)) {
                self.forget(name).await;
            }
        }
        self.synced.send_replace(true);
    }

    /// Fetches the certificate `name` and serves it (or forgets it, when its record is gone).
    pub async fn fetch(&self, name: &str) {
        if !CertRecord::valid_name(name) {
            tracing::warn!(name = %name, "ignoring a certificate with an invalid name");
            return;
        }
        match self.redis.get_bytes(&keys::cert(name)).await {
            Ok(None) => self.forget(name).await,
            Ok(Some(bytes)) => match serde_json::from_slice::<CertRecord>(&bytes) {
                Ok(r) if r.name != name => {
                    tracing::warn!(name = %name, record = %r.name, "ignoring a certificate record stored under another name");
                }
                Ok(r) => {
                    if self
                        .store
                        .shared
                        .get(name)
                        .is_some_and(|h| h.updated_ms == r.updated_ms)
                    {
                        return;
                    }
                    self.take(&r, true).await;
                }
                Err(e) => tracing::warn!(name = %name, error = %e, "ignoring a certificate record that does not parse"),
            },
            Err(e) => {
                tracing::warn!(name = %name, error = %e, "cannot fetch a certificate of the cluster; retried at the next heartbeat")
            }
        }
    }

    /// Serves a record (and copies it to disk when `copy`); hands an ACME certificate to the
    /// ACME entries it is for.
    async fn take(&self, r: &CertRecord, copy: bool) -> bool {
        let cert = match SharedCert::from_record(r) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(name = %r.name, error = %e, "ignoring an unusable certificate of the cluster");
                return false;
            }
        };
        let key = cert.key.clone();
        let domains = cert.domains.clone();
        let probe = cert.clone();
        if !self.store.shared.upsert(cert) {
            return false;
        }
        let adopted = self.store.adopt(&r.name, |names| probe.covers(names), &key);
        tracing::info!(
            name = %r.name,
            domains = %domains.join(","),
            source = ?r.source,
            updated_ms = r.updated_ms,
            acme_adopted = adopted,
            "cluster certificate loaded"
        );
        if copy && let Some(dir) = self.cache_dir.clone() {
            let (name, json) = (r.name.clone(), serde_json::to_vec(r).unwrap_or_default());
            let saved = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                crate::atomic_file::write(&dir.join(format!("{name}.json")), &json, Some(0o600))
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                tracing::warn!(name = %r.name, "cannot copy a cluster certificate to disk; it is served from memory");
            }
        }
        true
    }

    async fn forget(&self, name: &str) {
        if self.store.shared.remove(name) {
            tracing::info!(name = %name, "cluster certificate removed");
        }
        if let Some(dir) = &self.cache_dir {
            let path = dir.join(format!("{name}.json"));
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        }
    }

    /// Serves the certificates copied to disk before (a node that starts with Redis down).
    async fn load_disk_copy(&self) {
        let Some(dir) = self.cache_dir.clone() else {
            return;
        };
        let records = tokio::task::spawn_blocking(move || read_copies(&dir))
            .await
            .unwrap_or_default();
        for r in records {
            self.take(&r, false).await;
        }
    }

    /// Takes the ACME lock for the certificate whose first name is `domain`: `Ok(None)` when
    /// another node holds it.
    pub async fn lock(&self, domain: &str) -> Result<Option<Lock>, String> {
        let key = keys::acme_lock(domain);
        let value = format!("{}/{:016x}", self.node, fastrand::u64(..));
        match self.redis.set_nx(&key, value.as_bytes(), LOCK_TTL).await {
            Ok(true) => Ok(Some(Lock { key, value })),
            Ok(false) => Ok(None),
            Err(e) => Err(format!("cannot take the cluster's ACME lock: {e}")),
        }
    }

    /// Keeps `lock` alive; never returns (select it beside the work it protects).
    pub async fn keep(&self, lock: &Lock) {
        loop {
            tokio::time::sleep(LOCK_TTL / 3).await;
            match self.redis.refresh_if(&lock.key, lock.value.as_bytes(), LOCK_TTL).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(lock = %lock.key, "the ACME lock was lost (expired); the order goes on"),
                Err(e) => tracing::warn!(lock = %lock.key, error = %e, "cannot refresh the ACME lock"),
            }
        }
    }

    /// Releases `lock` if this node still holds it.
    pub async fn unlock(&self, lock: Lock) {
        if let Err(e) = self.redis.delete_if(&lock.key, lock.value.as_bytes()).await {
            tracing::warn!(lock = %lock.key, error = %e, "cannot release the ACME lock; it expires by itself");
        }
    }

    /// Shares a pending HTTP-01 challenge with every node (for 10 minutes).
    pub async fn share_challenge(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        self.redis
            .set_bytes(
                &keys::acme_challenge(token),
                key_authorization.as_bytes(),
                Duration::from_secs(600),
            )
            .await
            .map_err(|e| format!("cannot share the HTTP-01 challenge through redis: {e}"))
    }

    pub async fn clear_challenge(&self, token: &str) {
        let _ = self.redis.delete(&keys::acme_challenge(token)).await;
    }

    /// Stores an ACME certificate this node ordered for every node, and serves it here.
    pub async fn publish_acme(
        &self,
        domains: &[String],
        chain: &str,
        key: &str,
        not_after: Option<SystemTime>,
    ) -> Result<(), String> {
        let name = domains.first().cloned().unwrap_or_default();
        let record = CertRecord {
            name: name.clone(),
            domains: domains.to_vec(),
            cert_pem: chain.to_string(),
            key_pem: key.to_string(),
            not_after: not_after.map(cratopus_observe::traffic_log::rfc3339_string),
            source: CertSource::Acme,
            updated_ms: now_ms(),
        };
        self.take(&record, true).await;
        let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let ms = record.updated_ms.to_string();
        self.redis
            .set_persistent(&keys::cert(&name), &json)
            .await
            .map_err(|e| e.to_string())?;
        self.redis
            .hset(keys::CERTS, &name, ms.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.redis
            .publish(keys::CERTS_CHANNEL, name.as_bytes())
            .await
            .map_err(|e| e.to_string())
    }

    /// When the store's certificate `name` (if it covers `domains`) was written.
    pub fn stored_at(&self, name: &str, domains: &[String]) -> Option<SystemTime> {
        let c = self.store.shared.get(name).filter(|c| c.covers(domains))?;
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(c.updated_ms))
    }
}

/// Every record in `dir` (each `<name>.json`); unreadable ones are skipped.
fn read_copies(dir: &Path) -> Vec<CertRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| cratopus_config::files::read_limited(&e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}
