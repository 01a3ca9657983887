//! An upstream pool: its current target set and the task that keeps it current.

use crate::balancer::{self, Tables};
use crate::breaker::{Breaker, BreakerSettings};
use crate::discovery::{Found, Source};
use crate::health;
use crate::outlier::{Outcome, OutlierDetector, OutlierSettings};
use crate::shared_state::{Cause, ClusterTargets};
use crate::target::{Target, TargetKind};
use crate::tls::UpstreamTls;
use arc_swap::ArcSwap;
use cratopus_config::validate::{TargetUrl, parse_target};
use cratopus_config::{HashOn, UpstreamConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The targets of a pool at one moment, with the balancer tables built for them.
#[derive(Debug)]
pub struct TargetSet {
    pub targets: Vec<Arc<Target>>,
    tables: Tables,
    /// Passive health over these targets (indexed like `targets`), when configured.
    pub outlier: Option<OutlierDetector>,
}

/// One configured target URL: either a fixed address, a name to resolve, or the mirror.
#[derive(Debug, Clone)]
enum Endpoint {
    Mirror {
        weight: u32,
    },
    Http {
        host: String,
        port: u16,
        authority: http::uri::Authority,
        weight: u32,
    },
}

#[derive(Debug)]
pub struct UpstreamPool {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    endpoints: Vec<Endpoint>,
    set: ArcSwap<TargetSet>,
    counter: AtomicUsize,
    /// The zero of the breakers' and the outlier detector's clocks.
    epoch: Instant,
    /// TLS towards `https://` targets (health checks use it too).
    pub tls: Option<Arc<UpstreamTls>>,
    /// Service discovery, when the upstream has `discovery` (and then no `endpoints`).
    discovery: Option<Discovered>,
    /// The cluster's shared target state and this upstream's key in it (`org/name`), when
    /// gateway.yaml has `cluster:`.
    cluster: Mutex<Option<(Weak<ClusterTargets>, String)>>,
    /// The ticker task runs.
    ticking: AtomicBool,
}

/// A discovery source and what it last said.
#[derive(Debug)]
struct Discovered {
    source: Source,
    /// The last good answer; `None` until the source first answered.
    last: Mutex<Option<Vec<Found>>>,
    /// The source failed at its last read (so that a failure is logged once, not at every
    /// refresh).
    failing: AtomicBool,
    failures: AtomicU64,
}

impl UpstreamPool {
    /// Builds the pool, resolving host names once. A name that does not resolve yet leaves its
    /// targets out (and is retried every `dns_refresh`); it does not fail the config.
    /// A pool with no targets yet: [`UpstreamPool::start`] resolves them (compiling a config
    /// does no I/O).
    pub fn new(name: &str, config: UpstreamConfig, tls: Option<Arc<UpstreamTls>>) -> Result<Arc<UpstreamPool>, String> {
        let mut endpoints = Vec::new();
        for t in &config.targets {
            endpoints.push(parse_endpoint(&t.url, t.weight)?);
        }
        let discovery = match &config.discovery {
            Some(d) => Some(Discovered {
                source: Source::new(d)?,
                last: Mutex::new(None),
                failing: AtomicBool::new(false),
                failures: AtomicU64::new(0),
            }),
            None => None,
        };
        let pool = Arc::new(UpstreamPool {
            name: name.into(),
            endpoints,
            set: ArcSwap::from_pointee(TargetSet {
                targets: Vec::new(),
                tables: Tables::default(),
                outlier: None,
            }),
            counter: AtomicUsize::new(0),
            epoch: Instant::now(),
            config,
            tls,
            discovery,
            cluster: Mutex::new(None),
            ticking: AtomicBool::new(false),
        });
        Ok(pool)
    }

    /// The current targets.
    pub fn targets(&self) -> arc_swap::Guard<Arc<TargetSet>> {
        self.set.load()
    }

    /// A healthy target for a request; `hash` is the request's key for `consistent_hash`.
    pub fn pick(&self, hash: Option<u64>) -> Option<Arc<Target>> {
        let set = self.set.load();
        let i = balancer::pick(self.config.balance, &set.targets, &set.tables, &self.counter, hash)?;
        Some(set.targets[i].clone())
    }

    /// Passive health: records how a request to `target` ended; ejects the target when it
    /// keeps failing (and logs it). Costs a scan of the targets, and only with outlier
    /// detection configured.
    pub fn record_outcome(&self, target: &Arc<Target>, outcome: Outcome, now: Instant) {
        let set = self.set.load();
        let Some(detector) = &set.outlier else { return };
        let Some(i) = set.targets.iter().position(|t| Arc::ptr_eq(t, target)) else {
            return; // the set changed since the pick
        };
        if let Some(e) = detector.record(i, outcome, now) {
            target.set_ejected(true);
            self.announce(target, true, Cause::Outlier, e.duration);
            tracing::warn!(
                upstream = %self.name,
                target = %target.label,
                reason = e.reason.as_str(),
                for_ = ?e.duration,
                times = e.times,
                "target ejected (outlier detection)"
            );
        }
    }

    /// Whether outlier detection is configured (so that a request's outcome is worth
    /// recording).
    pub fn detects_outliers(&self) -> bool {
        self.set.load().outlier.is_some()
    }

    /// Shares this upstream's target state with the other nodes of a cluster, as upstream
    /// `key` (`org/name`). Called at every compile (a kept pool joins the current cluster);
    /// starts nothing: the pool's or the cluster's start runs the ticker that expires marks.
    pub fn join_cluster(self: &Arc<Self>, cluster: &Arc<ClusterTargets>, key: &str) {
        cluster.register(key, self);
        *self.cluster.lock().unwrap_or_else(PoisonError::into_inner) = Some((Arc::downgrade(cluster), key.to_string()));
    }

    fn in_cluster(&self) -> bool {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Tells the other nodes that `target` is down (for `hold`) or up again; nothing outside a
    /// cluster or with `shared_state.targets: false`. Called on state changes only, never per
    /// request.
    pub fn announce(&self, target: &Target, down: bool, cause: Cause, hold: Duration) {
        if !self.config.shared_state.targets {
            return;
        }
        let cluster = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((ct, key)) = &*cluster
            && let Some(ct) = ct.upgrade()
        {
            ct.announce(key, target, down, cause, hold);
        }
    }

    /// Milliseconds since the pool's epoch (the clock of remote marks).
    pub fn now_ms(&self) -> u64 {
        crate::breaker::millis(self.epoch.elapsed())
    }

    /// The instant breakers and outlier detection count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    fn new_target(&self, kind: TargetKind, weight: u32) -> Arc<Target> {
        let breaker = self.config.circuit_breaker.as_ref().map(|c| {
            Breaker::new(
                BreakerSettings {
                    consecutive_failures: c.consecutive_failures,
                    error_rate: c.error_rate,
                    min_requests: c.min_requests,
                    window: c.window.0,
                    open_for: c.open_for.0,
                    half_open_probes: c.half_open_probes,
                },
                self.epoch,
            )
        });
        Arc::new(Target::with_breaker(kind, weight, breaker))
    }

    /// Puts targets back whose ejection time is up or whose breaker would admit a probe, and
    /// logs it. Run by the pool's ticker.
    fn tick(&self) {
        let now = Instant::now();
        let set = self.set.load();
        if let Some(d) = &set.outlier {
            d.tick(now, |i| {
                if let Some(t) = set.targets.get(i) {
                    t.set_ejected(false);
                    tracing::info!(upstream = %self.name, target = %t.label, "ejected target back in rotation");
                }
            });
        }
        let now_ms = self.now_ms();
        for t in &set.targets {
            if t.expire_remote_down(now_ms) {
                tracing::info!(upstream = %self.name, target = %t.label, "another node's down mark ran out");
            }
            if t.breaker_blocks() && t.breaker.as_ref().is_none_or(|b| b.would_admit(now)) {
                t.set_breaker_open(false);
                tracing::info!(upstream = %self.name, target = %t.label, "circuit half-open: probing the target");
            }
        }
    }

    pub fn hash_on(&self) -> Option<&HashOn> {
        self.config.hash_on.as_ref()
    }

    /// Whether any target name must be resolved again from time to time.
    fn has_names(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| matches!(e, Endpoint::Http { host, .. } if host.parse::<std::net::IpAddr>().is_err()))
    }

    /// Takes over what `old`'s discovery source last said when both read the same source, so
    /// that a reload that changes something else of the upstream while the source is away
    /// keeps its targets. Does no I/O (compiling calls it).
    pub fn seed_discovery(&self, old: &UpstreamPool) {
        let (Some(d), Some(o)) = (&self.discovery, &old.discovery) else {
            return;
        };
        if self.config.discovery != old.config.discovery {
            return;
        }
        let last = o.last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        *d.last.lock().unwrap_or_else(PoisonError::into_inner) = last;
    }

    /// How many reads of the discovery source failed (0 without discovery), for metrics.
    pub fn discovery_failures(&self) -> u64 {
        self.discovery
            .as_ref()
            .map_or(0, |d| d.failures.load(Ordering::Relaxed))
    }

    /// Reads the discovery source, and returns the endpoints of its last good answer. A failure
    /// keeps the last known targets; it is logged when it starts and when it ends.
    async fn discover(&self, d: &Discovered) -> Vec<Endpoint> {
        match d.source.fetch().await {
            Ok(found) => {
                if d.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(upstream = %self.name, source = ?d.source, targets = found.len(), "service discovery answers again");
                }
                *d.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
            }
            Err(e) => {
                d.failures.fetch_add(1, Ordering::Relaxed);
                if !d.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(upstream = %self.name, source = ?d.source, error = %e, "service discovery failed; keeping the last known targets");
                }
            }
        }
        let last = d.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.iter()
            .flatten()
            .filter_map(|f| {
                Some(Endpoint::Http {
                    host: f.ip.to_string(),
                    port: f.port,
                    authority: f.authority.parse().ok()?,
                    weight: f.weight,
                })
            })
            .collect()
    }

    /// Resolves every endpoint (reading the discovery source first, if any) and swaps in the
    /// new set, keeping the `Target` (and so its health and load) of every address that is
    /// still there with the same weight.
    pub async fn refresh(&self) {
        let old = self.set.load_full();
        let mut targets: Vec<Arc<Target>> = Vec::new();
        let discovered = match &self.discovery {
            Some(d) => self.discover(d).await,
            None => Vec::new(),
        };
        for e in self.endpoints.iter().chain(&discovered) {
            match e {
                Endpoint::Mirror { weight } => {
                    let kind = TargetKind::Mirror;
                    targets.push(reuse(&old, &kind, *weight).unwrap_or_else(|| self.new_target(kind, *weight)));
                }
                Endpoint::Http {
                    host,
                    port,
                    authority,
                    weight,
                } => {
                    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
                        Ok(ip) => vec![SocketAddr::new(ip, *port)],
                        Err(_) => match tokio::net::lookup_host((host.as_str(), *port)).await {
                            Ok(a) => a.collect(),
                            Err(err) => {
                                tracing::warn!(upstream = %self.name, host = %host, error = %err, "target name does not resolve");
                                // Keep the addresses we had for this name rather than none.
                                old.targets
                                    .iter()
                                    .filter_map(|t| match &t.kind {
                                        TargetKind::Http { addr, authority: a } if a == authority => Some(*addr),
                                        _ => None,
                                    })
                                    .collect()
                            }
                        },
                    };
                    for addr in addrs {
                        if targets
                            .iter()
                            .any(|t| matches!(&t.kind, TargetKind::Http { addr: a, .. } if *a == addr))
                        {
                            continue;
                        }
                        let kind = TargetKind::Http {
                            addr,
                            authority: authority.clone(),
                        };
                        targets.push(reuse(&old, &kind, *weight).unwrap_or_else(|| self.new_target(kind, *weight)));
                    }
                }
            }
        }
        let same =
            targets.len() == old.targets.len() && targets.iter().zip(&old.targets).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            if !old.targets.is_empty() {
                tracing::info!(upstream = %self.name, targets = targets.len(), "upstream targets changed");
            }
            let tables = Tables::build(&targets, self.config.balance);
            let outlier = self.config.outlier_detection.as_ref().map(|c| {
                let settings = OutlierSettings {
                    consecutive_5xx: c.consecutive_5xx,
                    consecutive_connect_errors: c.consecutive_connect_errors,
                    base_ejection_time: c.base_ejection_time.0,
                    max_ejection_time: c.max_ejection_time.0,
                    max_ejection_percent: c.max_ejection_percent,
                };
                match &old.outlier {
                    // Targets that stay keep their ejection state and failure runs.
                    Some(d) => d.remapped(targets.len(), |i| {
                        old.targets.iter().position(|t| Arc::ptr_eq(t, &targets[i]))
                    }),
                    None => OutlierDetector::new(settings, targets.len(), self.epoch),
                }
            });
            self.set.store(Arc::new(TargetSet {
                targets,
                tables,
                outlier,
            }));
        }
    }

    /// Starts DNS refresh and health checking, if configured. The task ends with the pool.
    pub fn start(self: &Arc<Self>) {
        if self.config.circuit_breaker.is_some() || self.config.outlier_detection.is_some() || self.in_cluster() {
            self.ensure_ticker();
        }
        // Names are resolved again every `dns_refresh`, a discovery source read every its
        // `refresh`; both are what `refresh` does.
        let refresh_every = match &self.config.discovery {
            Some(d) => Some(d.refresh()),
            None => self
                .has_names()
                .then(|| self.config.dns_refresh.0.max(Duration::from_secs(1))),
        };
        let hc = self.config.health_check.clone();
        if refresh_every.is_none() && hc.is_none() {
            return;
        }
        let weak: Weak<UpstreamPool> = Arc::downgrade(self);
        tokio::spawn(async move {
            use tokio::time::Instant as TInstant;
            let far = Duration::from_secs(3600);
            let mut next_refresh = TInstant::now() + refresh_every.unwrap_or(far);
            let mut next_check = TInstant::now();
            loop {
                let Some(pool) = weak.upgrade() else { return };
                if let Some(every) = refresh_every
                    && TInstant::now() >= next_refresh
                {
                    pool.refresh().await;
                    next_refresh = TInstant::now() + every;
                }
                if let Some(hc) = &hc
                    && TInstant::now() >= next_check
                {
                    health::check_all(&pool, hc).await;
                    next_check = TInstant::now() + hc.interval.0;
                }
                drop(pool);
                let until = match (&refresh_every, &hc) {
                    (Some(_), Some(_)) => next_refresh.min(next_check),
                    (Some(_), None) => next_refresh,
                    _ => next_check,
                };
                tokio::time::sleep_until(until).await;
            }
        });
    }
}

impl UpstreamPool {
    /// Starts the ticker (ejections, breakers, remote marks) unless it runs.
    pub(crate) fn ensure_ticker(self: &Arc<Self>) {
        if self.ticking.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<UpstreamPool> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.tick();
            }
        });
    }
}

/// How often ejected targets and open breakers are looked at: the most an ejection or an open
/// breaker can outlast its configured time.
const TICK: Duration = Duration::from_millis(100);

/// The running target for `kind`, if its weight is still `weight` (a discovered target whose
/// weight changed starts afresh: the balancer's tables hold weights per target).
fn reuse(old: &TargetSet, kind: &TargetKind, weight: u32) -> Option<Arc<Target>> {
    old.targets
        .iter()
        .find(|t| &t.kind == kind && t.weight == weight.max(1))
        .cloned()
}

fn parse_endpoint(url: &str, weight: u32) -> Result<Endpoint, String> {
    match parse_target(url)? {
        TargetUrl::Mirror => Ok(Endpoint::Mirror { weight }),
        TargetUrl::Http {
            host, port, authority, ..
        } => Ok(Endpoint::Http {
            host: host.to_string(),
            port,
            authority: authority
                .parse()
                .map_err(|_| format!("target `{url}` is not a valid host:port"))?,
            weight,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_config::{Balance, TargetConfig};

    fn config(targets: Vec<TargetConfig>) -> UpstreamConfig {
        UpstreamConfig {
            targets,
            balance: Balance::RoundRobin,
            hash_on: None,
            health_check: None,
            timeouts: Default::default(),
            protocol: Default::default(),
            dns_refresh: cratopus_config::Dur::secs(30),
            preserve_host: false,
            max_idle_per_target: 8,
            circuit_breaker: None,
            outlier_detection: None,
            retry: None,
            bulkhead: None,
            tls: None,
            discovery: None,
            shared_state: Default::default(),
        }
    }

    #[tokio::test]
    async fn resolves_names_into_targets() {
        let c = config(vec![
            TargetConfig {
                url: "http://localhost:8080".into(),
                weight: 1,
            },
            TargetConfig {
                url: "http://127.0.0.1:9000".into(),
                weight: 2,
            },
            TargetConfig {
                url: "mirror://".into(),
                weight: 1,
            },
        ]);
        let pool = UpstreamPool::new("u", c, None).unwrap();
        assert!(
            pool.targets().targets.is_empty(),
            "a new pool resolves nothing until it starts"
        );
        pool.refresh().await;
        let set = pool.targets();
        let labels: Vec<&str> = set.targets.iter().map(|t| &*t.label).collect();
        assert!(labels.contains(&"127.0.0.1:8080"), "{labels:?}");
        assert!(labels.contains(&"127.0.0.1:9000"));
        assert!(labels.contains(&"mirror"));
        // A refresh keeps the same Target objects.
        let before = set.targets[0].clone();
        drop(set);
        pool.refresh().await;
        assert!(Arc::ptr_eq(&before, &pool.targets().targets[0]));
    }

    #[test]
    fn endpoints() {
        assert!(matches!(
            parse_endpoint("http://a:81", 1),
            Ok(Endpoint::Http { port: 81, .. })
        ));
        assert!(matches!(
            parse_endpoint("http://a", 1),
            Ok(Endpoint::Http { port: 80, .. })
        ));
        assert!(matches!(
            parse_endpoint("http://[::1]:82", 1),
            Ok(Endpoint::Http { port: 82, .. })
        ));
        assert!(matches!(
            parse_endpoint("https://a", 1),
            Ok(Endpoint::Http { port: 443, .. })
        ));
        assert!(parse_endpoint("ftp://a", 1).is_err());
    }
}
