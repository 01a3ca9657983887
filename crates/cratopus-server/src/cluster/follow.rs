//! Following the cluster: the announcement channel, the heartbeat, and swapping versions in.
//!
//! One task per node. While subscribed it waits for an announced number or the next heartbeat;
//! a heartbeat reports this node in the nodes hash and checks the current number, so a lost
//! message (or a subscription that hangs on a cut network) costs at most one heartbeat. When
//! the subscription ends, or a heartbeat finds Redis unreachable, it subscribes again with
//! back-off (doubling from 100 ms to 2 s, with jitter so that the nodes do not all knock at
//! once on a restarted Redis) and catches up by number as soon as it is back.

use super::boot::FetchError;
use super::{ClusterNode, Source, disk};
use crate::reload::Reloader;
use cratopus_config::cluster::keys;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl ClusterNode {
    /// Starts following the cluster in the background, swapping versions in through `reloader`.
    pub fn follow(self: Arc<Self>, reloader: Arc<Reloader>) {
        tokio::spawn(async move { self.run(reloader).await });
    }

    async fn run(self: Arc<Self>, reloader: Arc<Reloader>) {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut attempt = 0usize;
        let mut backoff = BACKOFF_FIRST;
        let mut lost_once = false;
        loop {
            match self.redis.subscribe(keys::CONFIG_CHANNEL, attempt).await {
                Ok(mut sub) => {
                    self.subscribed.store(true, Ordering::Release);
                    if lost_once {
                        tracing::info!(node = %self.name, "cluster: subscribed again, catching up");
                    } else {
                        tracing::info!(node = %self.name, "cluster: subscribed to config announcements");
                    }
                    backoff = BACKOFF_FIRST;
                    // Whatever was announced before the subscription took effect.
                    self.catch_up(&reloader).await;
                    self.report().await;
                    tick.reset();
                    let outages = self.redis.outages();
                    loop {
                        tokio::select! {
                            message = sub.next() => match message {
                                Some(payload) => self.announced(&payload, &reloader).await,
                                None => {
                                    tracing::warn!(node = %self.name, "cluster: announcement channel lost; subscribing again");
                                    break;
                                }
                            },
                            _ = tick.tick() => {
                                self.catch_up(&reloader).await;
                                self.report().await;
                                // A failed call means the subscription may be dead too (a cut
                                // network does not always close it): make a fresh one.
                                if self.redis.outages() != outages || !self.redis.is_up() {
                                    tracing::warn!(node = %self.name, "cluster: redis unreachable; subscribing again");
                                    break;
                                }
                            }
                        }
                    }
                    self.subscribed.store(false, Ordering::Release);
                    lost_once = true;
                }
                Err(e) => {
                    tracing::debug!(node = %self.name, error = %e, "cluster: cannot subscribe");
                    // Keep the heartbeat going while waiting to try again.
                    let until = Instant::now() + jittered(backoff);
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = tick.tick() => {
                                self.catch_up(&reloader).await;
                                self.report().await;
                            }
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    attempt = attempt.wrapping_add(1);
                }
            }
        }
    }

    /// An announcement: the number of a version just stored.
    async fn announced(&self, payload: &[u8], reloader: &Reloader) {
        let text = String::from_utf8_lossy(payload);
        match text.trim().parse::<u64>() {
            Ok(n) => self.apply(n, reloader).await,
            Err(_) => {
                tracing::warn!(node = %self.name, message = %text, "cluster: announcement is not a version number; ignored")
            }
        }
    }

    /// Swaps in the current version if it is newer than the running one.
    async fn catch_up(&self, reloader: &Reloader) {
        match self.current_number().await {
            Ok(Some(n)) => self.apply(n, reloader).await,
            Ok(None) => {}
            Err(e) => tracing::debug!(node = %self.name, error = %e, "cluster: current version unknown"),
        }
    }

    /// Fetches version `n` and swaps it in, unless it is not newer than the running one or was
    /// refused already. A refused version is logged with its file and line and reported in
    /// the nodes hash; the running one keeps serving.
    pub(crate) async fn apply(&self, n: u64, reloader: &Reloader) {
        let _one_at_a_time = self.applying.lock().await;
        let running = self.version();
        if n <= running {
            tracing::debug!(node = %self.name, announced = n, running, "cluster: version not newer; ignored");
            return;
        }
        if n == self.rejected.load(Ordering::Acquire) {
            return;
        }
        let bundle = match self.fetch(n).await {
            Ok(Some(b)) => Arc::new(b),
            Ok(None) => {
                tracing::warn!(node = %self.name, version = n, "cluster: version {n} announced but not in redis");
                return;
            }
            Err(FetchError::Unreachable(e)) => {
                tracing::debug!(node = %self.name, version = n, error = %e, "cluster: version not fetched; next heartbeat retries");
                return;
            }
            Err(FetchError::Invalid(e)) => return self.refuse(n, e).await,
        };
        match reloader.reload_bundle(bundle.clone()).await {
            Ok(_) => {
                self.set_running(n, Source::Redis);
                self.set_error(None);
                self.swaps.fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %self.name, cluster_version = n, previous = running, "cluster: running version {n}");
                self.report().await;
                let path = self.cache_file.clone();
                let written = tokio::task::spawn_blocking(move || disk::write(&path, &bundle)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(file = %self.cache_file.display(), error = %e, "cluster: disk copy not written")
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster: disk copy not written"),
                }
            }
            Err(e) => self.refuse(n, e).await,
        }
    }

    async fn refuse(&self, n: u64, error: String) {
        self.rejected.store(n, Ordering::Release);
        self.rejections.fetch_add(1, Ordering::Relaxed);
        let running = self.version();
        tracing::error!(node = %self.name, cluster_version = n, running, "cluster: version {n} rejected, still running version {running}:\n{error}");
        self.set_error(Some(format!("version {n} rejected:\n{error}")));
        self.report().await;
    }
}

/// `d` plus up to half of it again, from the clock's nanoseconds (no need for a real random
/// source: it only spreads the nodes' retries).
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let half = u32::try_from(d.as_millis() / 2).unwrap_or(u32::MAX).max(1);
    d + Duration::from_millis(u64::from(nanos % half))
}
