//! Compiling a loaded config into the immutable [`Snapshot`] the hot path reads.
//!
//! Everything a request needs is computed here once: the host table, one router per
//! organization, each route's rewrite template and limits, and the upstream pools with their
//! clients. Upstreams whose config did not change are taken over from the previous snapshot,
//! so their health state, in-flight counts and pooled connections survive a reload.

use crate::chain_builder::{self, RouteParts};
use crate::route_backend::{SplitStates, route_backend};
use crate::router::{AccessRules, HostTable, MethodTable, OrgRouter};
use crate::tls::{OrgTls, TlsSnapshot};
use cratopus_config::{
    AuthConfig, ConfigError, ConfigErrors, FailMode, LoadedConfig, PathNormalization, Protocol, StateConfig,
    UpstreamConfig,
};
use cratopus_observe::TrafficLog;
use cratopus_observe::metrics::RouteMetrics;
use cratopus_observe::spans::{SpanSettings, SpanSink};
use cratopus_observe::traffic_log::TrafficLogSettings;
use cratopus_policies::auth::{Authenticator, Consumers};
use cratopus_policies::authz::Authorizer;
use cratopus_policies::cache::{CachePolicy, CacheStore};
use cratopus_policies::chain::{Policy, X_CONSUMER_ID};
use cratopus_policies::compress::Compression;
use cratopus_policies::cors::Cors;
use cratopus_policies::forwarding::Forwarding;
use cratopus_policies::graphql::GraphqlGuard;
use cratopus_policies::ip_rules::{Cidr, IpRules};
use cratopus_policies::modify::{self, Modifiers};
use cratopus_policies::validation::Validator;
use cratopus_policies::{AuthFailureLimit, QuotaPolicy, RateLimitPolicy};
use cratopus_state::{LocalLimiter, RedisLimiter, SharedLimiter};
pub use cratopus_upstream::Upstream;
use cratopus_upstream::backend::Shadow;
use cratopus_upstream::conn_pool::{ConnPool, PoolSettings};
use cratopus_upstream::resilience::{self, Retry};
use cratopus_upstream::shared_state::ClusterTargets;
use cratopus_upstream::{Backend, Service, UpstreamCall, UpstreamPool, UpstreamTls};
use http::{HeaderName, Method};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A piece of a rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
}

/// A route as the hot path reads it: how it matches, its policy chain, and its backend.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// Where the route is defined (line in its file), for messages.
    pub line: u64,
    pub org: Arc<str>,
    pub pattern: String,
    pub strip_prefix: Option<String>,
    pub rewrite: Option<Vec<Segment>>,
    pub max_body: Option<u64>,
    /// Counters and latency histograms, kept across reloads while the route keeps its name.
    pub metrics: Arc<RouteMetrics>,
    /// The route's policies in the order they run (see `chain_builder`).
    pub chain: Box<[Policy]>,
    /// What answers the route's requests.
    pub backend: Backend,
    /// CORS (the route's, or its organization's), for the preflights the routing phase answers.
    pub cors: Option<Arc<Cors>>,
    /// The chain or the backend (a composition) reads the path parameters: the routing phase
    /// hands them on.
    pub keeps_params: bool,
    /// A policy of the chain may wrap the request or response body (gRPC-Web): only then do
    /// the request phase and the response phase ask the chain.
    pub wraps_bodies: bool,
    /// Routes of the organization with the same number have the same
    /// [`AccessRules`](crate::router::AccessRules): the router lets one answer for another.
    pub access: usize,
    /// The route's `match:` conditions; `None` when it has none (most routes).
    pub conditions: Option<Box<crate::matching::Conditions>>,
    /// WebSocket upgrades: allowed or not, and the limits that make the relay read frames.
    pub websocket: crate::websocket::WsRoute,
    /// A policy of the chain may answer for a failed backend (the cache's stale-if-error):
    /// only then does the backend phase ask the chain.
    pub rescues: bool,
}

#[derive(Debug)]
pub struct Org {
    pub name: Arc<str>,
    pub router: OrgRouter,
    /// How paths are normalized before routing: the organization's, else gateway.yaml's.
    pub paths: PathNormalization,
    /// HSTS and client-certificate rules.
    pub tls: OrgTls,
    /// The headers the gateway sets from an identity on any of the organization's routes
    /// (`X-Consumer-Id`, forwarded claims, the client certificate's header): a client's own
    /// are removed on every route, so that no backend of the organization takes a client's
    /// word for them.
    pub identity_headers: Box<[HeaderName]>,
}

pub struct Snapshot {
    pub version: u64,
    pub loaded_at: SystemTime,
    pub config: Arc<LoadedConfig>,
    pub hosts: HostTable,
    pub orgs: Vec<Org>,
    pub health_path: String,
    pub max_header_bytes: usize,
    /// `limits.client_body_timeout`; `None` when off.
    pub client_body_timeout: Option<Duration>,
    /// Share of the traces the gateway starts that are marked sampled.
    pub sample_ratio: f64,
    pub traffic_log: TrafficLog,
    /// The span exporter, when `tracing.otlp` is set.
    pub spans: Option<Arc<SpanSink>>,
    /// Where rate limits and quotas count; kept across reloads while `state` is unchanged, so
    /// a reload does not hand every client a fresh burst.
    pub limiter: Arc<SharedLimiter>,
    state_config: StateConfig,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Every configured route, in file order (for metrics and the admin API).
    pub routes: Vec<Arc<Route>>,
    /// Certificates and TLS settings of the HTTPS listeners.
    pub tls: TlsSnapshot,
    upstreams: HashMap<(Arc<str>, String), Arc<Upstream>>,
    /// The response cache's store, when a route caches; kept across reloads while
    /// `cache.max_bytes` stays the same.
    pub cache: Option<Arc<CacheStore>>,
    /// Target state shared with the other nodes (`cluster:`); kept across reloads while the
    /// `cluster` section is unchanged.
    pub cluster_targets: Option<Arc<ClusterTargets>>,
}

impl Snapshot {
    /// The organization serving `host` (a Host header value; port and case ignored).
    pub fn org_for_host(&self, host: &str) -> Option<&Org> {
        self.hosts.lookup(host).and_then(|i| self.orgs.get(i))
    }

    /// The upstreams of this snapshot: (organization, name) → upstream.
    pub fn upstreams(&self) -> impl Iterator<Item = (&(Arc<str>, String), &Arc<Upstream>)> {
        self.upstreams.iter()
    }
}

/// An authenticator, or `None` for `auth: {}` (no authentication).
fn compile_auth(
    a: &AuthConfig,
    consumers: &Arc<Consumers>,
    base: &Path,
    errors: &mut Vec<String>,
) -> Option<Arc<Authenticator>> {
    match Authenticator::compile(a, consumers.clone(), base) {
        Ok(x) if x.is_active() => Some(Arc::new(x)),
        Ok(_) => None,
        Err(e) => {
            errors.push(format!("auth: {e}"));
            None
        }
    }
}

/// A named policy, compiled: its rate limit and its quota.
type NamedPolicy = (Option<Arc<RateLimitPolicy>>, Option<Arc<QuotaPolicy>>);

/// A new state store: Redis with the local limiter as fallback, or the local limiter alone.
/// Nothing connects here (Redis is reached in the background, so a node starts without it).
fn state_store(cfg: &StateConfig) -> Result<Arc<SharedLimiter>, String> {
    let limiter = match &cfg.redis {
        None => SharedLimiter::local_only(LocalLimiter::new()),
        Some(r) => {
            let redis = RedisLimiter::new(cratopus_state::RedisConfig::from(r)).map_err(|e| e.to_string())?;
            let mode = match r.on_failure {
                FailMode::Open => cratopus_state::FailMode::Open,
                FailMode::Closed => cratopus_state::FailMode::Closed,
            };
            SharedLimiter::new(redis, LocalLimiter::new(), mode)
        }
    };
    Ok(Arc::new(limiter))
}

/// Purges replenished local counters every 10 s while the store is in use.
fn purge_every_10s(limiter: &Arc<SharedLimiter>) {
    let weak = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        every.tick().await;
        loop {
            every.tick().await;
            match weak.upgrade() {
                Some(l) => l.purge(),
                None => break,
            }
        }
    });
}

/// The OTLP/HTTP traces URL of `endpoint`: a bare collector address gets the standard
/// `/v1/traces` path, a URL with a path is taken as it is.
fn otlp_traces_url(endpoint: &str) -> String {
    match endpoint.parse::<http::Uri>() {
        Ok(u) if matches!(u.path(), "" | "/") && u.query().is_none() => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_string(),
    }
}

/// Parses `/v2/users/{id}/{*rest}` into literal and parameter segments.
pub fn parse_template(t: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Segment::Literal(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{t}`"))?
            + open;
        let name = rest[open + 1..close].trim_start_matches('*');
        if name.is_empty() {
            return Err(format!("empty parameter name in `{t}`"));
        }
        out.push(Segment::Param(name.to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment::Literal(rest.to_string()));
    }
    Ok(out)
}

/// The parameter names of a route pattern.
fn pattern_params(p: &str) -> Vec<String> {
    parse_template(p)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| match s {
            Segment::Param(n) => Some(n),
            Segment::Literal(_) => None,
        })
        .collect()
}

fn pool_settings(cfg: &UpstreamConfig, tls: Option<Arc<UpstreamTls>>) -> PoolSettings {
    PoolSettings {
        connect_timeout: cfg.timeouts.connect.0,
        idle_timeout: cfg.timeouts.idle.0,
        max_idle_per_target: cfg.max_idle_per_target,
        http2: matches!(cfg.protocol, Protocol::H2c | Protocol::H2),
        tls,
    }
}

/// Whether an upstream's targets are `https://` (validation makes them all alike).
fn upstream_is_https(cfg: &UpstreamConfig) -> bool {
    cfg.discovery.as_ref().is_some_and(|d| d.https())
        || cfg.targets.iter().any(|t| {
            matches!(
                cratopus_config::validate::parse_target(&t.url),
                Ok(cratopus_config::validate::TargetUrl::Http { tls: true, .. })
            )
        })
}

/// What starting a compiled config does, kept apart from compiling it.
enum StartStep {
    /// Open the traffic log and start its writer.
    TrafficLog(TrafficLogSettings),
    /// Start the span exporter.
    Spans(SpanSettings),
    /// Purge a new state store's counters periodically.
    Purge(Arc<SharedLimiter>),
    /// Resolve a new upstream's targets, then start its DNS, health and breaker tasks.
    Pool(Arc<UpstreamPool>),
    /// Fetch a JWKS and keep it fresh.
    Jwks(Arc<cratopus_policies::jwks::Jwks>),
    /// Give the cache its Redis second level (or none), subscribing to the purges.
    CacheSecondLevel(Arc<CacheStore>, Option<cratopus_state::RedisLimiter>),
    /// Start sharing target state with the cluster.
    ClusterTargets(Arc<ClusterTargets>),
}

/// A config compiled into a snapshot that has not started yet: compiling opened no file for
/// writing, no socket and spawned no task ([`compile`]); [`Compiled::start`] does those. `cratopus
/// check` stops after the compile; a reload starts the result before swapping it in.
pub struct Compiled {
    snapshot: Snapshot,
    steps: Vec<StartStep>,
}

impl Compiled {
    /// Starts what the snapshot needs to serve: opens the traffic log, resolves new upstreams,
    /// starts their background tasks, fetches JWKS. Fails (and nothing is swapped in) when the
    /// traffic log or the span exporter cannot start.
    pub async fn start(self) -> Result<Snapshot, ConfigErrors> {
        let Compiled { mut snapshot, steps } = self;
        let file = snapshot.config.file.clone();
        let mut errors = Vec::new();
        for step in steps {
            match step {
                StartStep::TrafficLog(s) => match TrafficLog::start(s.clone()) {
                    Ok(l) => snapshot.traffic_log = l,
                    Err(e) => errors.push(ConfigError::new(
                        &file,
                        format!("cannot open traffic log `{}`: {e}", s.path.display()),
                    )),
                },
                StartStep::Spans(s) => match SpanSink::start(s) {
                    Ok(sink) => snapshot.spans = Some(sink),
                    Err(e) => errors.push(ConfigError::new(&file, format!("tracing.otlp: {e}"))),
                },
                StartStep::Purge(l) => purge_every_10s(&l),
                StartStep::Pool(p) => {
                    p.refresh().await;
                    p.start();
                }
                StartStep::Jwks(j) => j.start().await,
                StartStep::CacheSecondLevel(store, redis) => store.set_second_level(redis.as_ref()),
                StartStep::ClusterTargets(c) => c.start(),
            }
        }
        if errors.is_empty() {
            Ok(snapshot)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The compiled snapshot, not started (for `check` and tests of the compile).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// In-process services that answer in place of upstreams, by (organization, upstream name):
/// the engine's own tests drive it with them, and an embedding program can plug its handlers in.
#[derive(Default, Clone)]
pub struct Services {
    by_upstream: HashMap<(String, String), Arc<dyn Service>>,
}

impl Services {
    /// `service` answers for upstream `upstream` of organization `org`.
    pub fn with(mut self, org: &str, upstream: &str, service: Arc<dyn Service>) -> Services {
        self.by_upstream
            .insert((org.to_string(), upstream.to_string()), service);
        self
    }

    pub(crate) fn get(&self, org: &str, upstream: &str) -> Option<&Arc<dyn Service>> {
        self.by_upstream.get(&(org.to_string(), upstream.to_string()))
    }
}

/// Compiles and starts `cfg`: what a reload does. `prev` is the snapshot being replaced, whose
/// unchanged upstreams, traffic log and counters are taken over.
pub async fn compile(cfg: LoadedConfig, prev: Option<&Snapshot>, version: u64) -> Result<Snapshot, ConfigErrors> {
    compile_only(cfg, prev, version, &Services::default())?.start().await
}

/// Compiles `cfg` without side effects (see [`Compiled`]); `services` answer for the upstreams
/// they name.
pub fn compile_only(
    cfg: LoadedConfig,
    prev: Option<&Snapshot>,
    version: u64,
    services: &Services,
) -> Result<Compiled, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut steps = Vec::new();
    let gw = &cfg.gateway;
    let file = cfg.file.clone();

    // Traffic log: reuse the running writer when its settings did not change.
    let settings = gw.traffic_log.as_ref().map(|t| TrafficLogSettings {
        path: resolve(&file, &t.path),
        max_size: t.max_size.map(|s| s.0),
        keep: t.keep,
        queue: t.queue,
    });
    let traffic_log = match (&settings, prev) {
        (Some(s), Some(p)) if p.traffic_log.settings() == Some(s) => p.traffic_log.clone(),
        (Some(s), _) => {
            steps.push(StartStep::TrafficLog(s.clone()));
            TrafficLog::disabled()
        }
        (None, _) => TrafficLog::disabled(),
    };

    // Span export: keep the running exporter when its settings did not change.
    let span_settings = gw.tracing.otlp.as_ref().map(|o| SpanSettings {
        endpoint: otlp_traces_url(&o.endpoint),
        headers: o.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timeout: o.timeout.0,
        service_name: o.service_name.clone(),
        queue: o.queue,
    });
    let spans = match (&span_settings, prev.and_then(|p| p.spans.as_ref())) {
        (Some(s), Some(p)) if p.settings() == s => Some(p.clone()),
        (Some(s), _) => {
            steps.push(StartStep::Spans(s.clone()));
            None
        }
        (None, _) => None,
    };

    // Rate-limit and quota state.
    let limiter = match prev.filter(|p| p.state_config == gw.state) {
        Some(p) => p.limiter.clone(),
        None => match state_store(&gw.state) {
            Ok(l) => {
                steps.push(StartStep::Purge(l.clone()));
                l
            }
            Err(e) => {
                errors.push(ConfigError::new(&file, format!("state.redis: {e}")));
                Arc::new(SharedLimiter::local_only(LocalLimiter::new()))
            }
        },
    };
    let cluster = gw.state.redis.is_some();
    let mut trusted_proxies = Vec::new();
    for p in &gw.trusted_proxies {
        match Cidr::parse(p) {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => errors.push(ConfigError::new(&file, format!("trusted_proxies: {e}"))),
        }
    }

    // Shared target state: the running one while `cluster` is unchanged.
    let cluster_targets = match (&gw.cluster, prev.and_then(|p| p.cluster_targets.as_ref())) {
        (Some(c), Some(running)) if running.config == *c => Some(running.clone()),
        (Some(c), _) => match ClusterTargets::new(c) {
            Ok(ct) => {
                steps.push(StartStep::ClusterTargets(ct.clone()));
                Some(ct)
            }
            Err(e) => {
                errors.push(ConfigError::new(&file, format!("cluster.redis: {e}")));
                None
            }
        },
        (None, _) => None,
    };

    // TLS: certificate files are read here; ACME certificates carry over.
    let acme_store = prev.map(|p| p.tls.acme.clone()).unwrap_or_default();
    let (tls, mut org_tls) = crate::tls::compile(&cfg, acme_store, &mut errors);

    let default_org = gw
        .default_organization
        .as_ref()
        .and_then(|d| cfg.orgs.iter().position(|o| o.config.name.value == d.value))
        .or_else(|| {
            // One organization without domains serves every host.
            (cfg.orgs.len() == 1 && cfg.orgs[0].config.domains.is_empty()).then_some(0)
        });
    let mut hosts = HostTable::new(default_org);
    let mut orgs = Vec::new();
    let mut upstreams: HashMap<(Arc<str>, String), Arc<Upstream>> = HashMap::new();
    let mut all_routes: Vec<Arc<Route>> = Vec::new();
    let mut route_metrics: HashMap<(Arc<str>, Arc<str>), Arc<RouteMetrics>> = HashMap::new();
    let mut split_states = SplitStates::new(prev);
    // One cache store for every cached route; the running one while its bound is the same.
    let caches = cfg
        .orgs
        .iter()
        .map(|o| &o.config)
        .any(|o| o.cache.is_some() || o.routes.iter().any(|r| r.cache.is_some()));
    let cache_store = caches.then(|| {
        prev.and_then(|p| p.cache.clone())
            .filter(|c| c.max_bytes == gw.cache.max_bytes.0)
            .unwrap_or_else(|| CacheStore::new(gw.cache.max_bytes.0))
    });
    if let Some(store) = &cache_store {
        steps.push(StartStep::CacheSecondLevel(store.clone(), limiter.redis().cloned()));
    }
    let prev_metrics: HashMap<(Arc<str>, Arc<str>), Arc<RouteMetrics>> = prev
        .map(|p| {
            p.routes
                .iter()
                .map(|r| ((r.org.clone(), r.name.clone()), r.metrics.clone()))
                .collect()
        })
        .unwrap_or_default();

    for (oi, loaded) in cfg.orgs.iter().enumerate() {
        let o = &loaded.config;
        let f = loaded.file.as_path();
        let org_name: Arc<str> = o.name.value.as_str().into();
        for d in &o.domains {
            hosts.insert(&d.value.to_ascii_lowercase(), oi);
        }
        for (uname, ucfg) in &o.upstreams {
            let key = (org_name.clone(), uname.clone());
            // TLS to https targets: files are read at every compile, so that a changed CA or
            // client certificate makes a new upstream.
            let https = upstream_is_https(ucfg);
            let tls = if https {
                match UpstreamTls::build(ucfg.tls.as_ref(), f, ucfg.protocol == Protocol::H2) {
                    Ok(t) => {
                        if !t.verify {
                            tracing::warn!(
                                org = %org_name,
                                upstream = %uname,
                                "tls.verify is false: the certificates of this upstream's targets are not checked"
                            );
                        }
                        Some(Arc::new(t))
                    }
                    Err(e) => {
                        errors.push(ConfigError::new(f, format!("upstream `{uname}`: {e}")));
                        continue;
                    }
                }
            } else {
                None
            };
            let fingerprint = tls.as_ref().map(|t| t.fingerprint);
            let reused = prev
                .and_then(|p| p.upstreams.get(&key))
                .filter(|u| u.pool.config == *ucfg && u.pool.tls.as_ref().map(|t| t.fingerprint) == fingerprint)
                .cloned();
            let upstream = match reused {
                Some(u) => u,
                None => match UpstreamPool::new(uname, ucfg.clone(), tls.clone()) {
                    Ok(pool) => {
                        // What a discovery source said stays across a reload (the source may
                        // be away just now).
                        if let Some(old) = prev.and_then(|p| p.upstreams.get(&key)) {
                            pool.seed_discovery(&old.pool);
                        }
                        // A per-service template (`{service}` in its discovery) serves no
                        // request itself: its services' pools start when first used.
                        if !ucfg.discovery.as_ref().is_some_and(|d| d.is_template()) {
                            steps.push(StartStep::Pool(pool.clone()));
                        }
                        Arc::new(Upstream {
                            name: uname.as_str().into(),
                            conns: ConnPool::new(pool_settings(ucfg, tls)),
                            pool,
                            response_timeout: ucfg.timeouts.response.0,
                            read_timeout: ucfg.timeouts.read.0,
                            preserve_host: ucfg.preserve_host,
                            http2: matches!(ucfg.protocol, Protocol::H2c | Protocol::H2),
                            tls: https,
                            retry: ucfg.retry.as_ref().map(Retry::compile),
                            bulkhead: ucfg.bulkhead.as_ref().map(resilience::bulkhead),
                        })
                    }
                    Err(e) => {
                        errors.push(ConfigError::new(f, format!("upstream `{uname}`: {e}")));
                        continue;
                    }
                },
            };
            if let Some(ct) = &cluster_targets {
                upstream.pool.join_cluster(ct, &format!("{org_name}/{uname}"));
            }
            upstreams.insert(key, upstream);
        }

        // Policies written once for the organization or by name are compiled once and shared
        // by the routes they cover, so those routes share their counters.
        let org_rate = o
            .rate_limit
            .as_ref()
            .map(|c| Arc::new(RateLimitPolicy::compile(format!("{org_name}/org"), c, cluster)));
        let org_quota = o
            .quota
            .as_ref()
            .map(|c| Arc::new(QuotaPolicy::compile(format!("{org_name}/org"), c, cluster)));
        let org_auth_failures = o
            .auth_failures
            .as_ref()
            .map(|c| Arc::new(AuthFailureLimit::compile(format!("{org_name}/org"), c, cluster)));
        let named: HashMap<&str, NamedPolicy> = o
            .policies
            .iter()
            .map(|(name, p)| {
                let id = format!("{org_name}/policy:{name}");
                (
                    name.as_str(),
                    (
                        p.rate_limit
                            .as_ref()
                            .map(|c| Arc::new(RateLimitPolicy::compile(id.clone(), c, cluster))),
                        p.quota.as_ref().map(|c| Arc::new(QuotaPolicy::compile(id, c, cluster))),
                    ),
                )
            })
            .collect();

        // Identity and access.
        let base = f.parent().unwrap_or(Path::new("."));
        let consumers = match Consumers::compile(&o.consumers) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                errors.push(ConfigError::new(f, e));
                Arc::new(Consumers::default())
            }
        };
        let mut auth_errors = Vec::new();
        let org_auth = match &o.auth {
            Some(a) => compile_auth(a, &consumers, base, &mut auth_errors),
            None => None,
        };
        let mut jwks_started: Vec<Arc<cratopus_policies::jwks::Jwks>> = Vec::new();
        let org_authorize = o.authorize.as_ref().map(|a| Arc::new(Authorizer::compile(a)));
        let mut route_auths_by_config: Vec<(&cratopus_config::AuthConfig, Option<Arc<Authenticator>>)> = Vec::new();
        let org_ip = o.ip.as_ref().and_then(|r| match IpRules::compile(r) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                auth_errors.push(format!("ip: {e}"));
                None
            }
        });

        let org_cors = o.cors.as_ref().map(|c| Arc::new(Cors::compile(c)));

        let mut router = OrgRouter::default();
        // pattern → index into router.tables, to group routes that share a pattern.
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut implicit: Vec<(String, Arc<Route>, Vec<Method>)> = Vec::new();
        // The distinct access rules of the organization's routes: a route's class is its index.
        let mut access_classes: Vec<AccessRules> = Vec::new();
        let mut route_auths: Vec<Arc<Authenticator>> = Vec::new();
        for r in &o.routes {
            let pattern = r.path.value.clone();
            if !pattern.starts_with('/') {
                errors.push(ConfigError::at(
                    f,
                    &r.path.referenced,
                    format!("path `{pattern}` must start with `/`"),
                ));
                continue;
            }
            let rewrite = match &r.rewrite {
                None => None,
                Some(t) => match parse_template(&t.value) {
                    Ok(segs) => {
                        let known = pattern_params(&pattern);
                        for s in &segs {
                            if let Segment::Param(p) = s
                                && !known.contains(p)
                            {
                                errors.push(ConfigError::at(
                                    f,
                                    &t.referenced,
                                    format!("rewrite uses `{{{p}}}`, which path `{pattern}` does not capture"),
                                ));
                            }
                        }
                        Some(segs)
                    }
                    Err(e) => {
                        errors.push(ConfigError::at(f, &t.referenced, e));
                        None
                    }
                },
            };
            let methods: Vec<Method> = r
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.value.to_ascii_uppercase().as_bytes()).ok())
                .collect();
            let route_name: Arc<str> = r.name.clone().unwrap_or_else(|| pattern.clone()).into();
            let mut rate_limits: Vec<Arc<RateLimitPolicy>> = org_rate.iter().cloned().collect();
            let mut quotas: Vec<Arc<QuotaPolicy>> = org_quota.iter().cloned().collect();
            for p in &r.policies {
                if let Some((rl, q)) = named.get(p.value.as_str()) {
                    rate_limits.extend(rl.iter().cloned());
                    quotas.extend(q.iter().cloned());
                }
            }
            let own = format!("{org_name}/route:{route_name}");
            let mut auth_failures: Vec<Arc<AuthFailureLimit>> = org_auth_failures.iter().cloned().collect();
            auth_failures.extend(
                r.auth_failures
                    .as_ref()
                    .map(|c| Arc::new(AuthFailureLimit::compile(own.clone(), c, cluster))),
            );
            rate_limits.extend(
                r.rate_limit
                    .as_ref()
                    .map(|c| Arc::new(RateLimitPolicy::compile(own.clone(), c, cluster))),
            );
            quotas.extend(
                r.quota
                    .as_ref()
                    .map(|c| Arc::new(QuotaPolicy::compile(own, c, cluster))),
            );
            let auth = match &r.auth {
                // Routes with the same `auth` block share one authenticator (and its cache
                // of verified tokens, about 35 KiB each): 1,000 routes with one JWT block
                // compile it once.
                Some(a) => match route_auths_by_config.iter().find(|(c, _)| *c == a) {
                    Some((_, compiled)) => compiled.clone(),
                    None => {
                        let compiled = compile_auth(a, &consumers, base, &mut auth_errors);
                        route_auths_by_config.push((a, compiled.clone()));
                        compiled
                    }
                },
                None => org_auth.clone(),
            };
            if let Some(j) = auth.as_ref().and_then(|a| a.jwks())
                && !jwks_started.iter().any(|s| Arc::ptr_eq(s, j))
            {
                jwks_started.push(j.clone());
                steps.push(StartStep::Jwks(j.clone()));
            }
            route_auths.extend(auth.clone());
            let validator = r.validate.as_ref().and_then(|v| match Validator::compile(v, base) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    auth_errors.push(format!("route `{pattern}`: validate: {e}"));
                    None
                }
            });
            let graphql = r.graphql.as_ref().and_then(|g| match GraphqlGuard::compile(g, base) {
                Ok(g) => Some(Arc::new(g)),
                Err(e) => {
                    auth_errors.push(format!("route `{pattern}`: graphql: {e}"));
                    None
                }
            });
            let mut ip_rules: Vec<Arc<IpRules>> = org_ip.iter().cloned().collect();
            if let Some(rules) = &r.ip {
                match IpRules::compile(rules) {
                    Ok(rules) => ip_rules.push(Arc::new(rules)),
                    Err(e) => auth_errors.push(format!("route `{pattern}`: ip: {e}")),
                }
            }
            let conditions = match crate::matching::for_route(r.conditions.as_ref(), auth.is_some()) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(ConfigError::at(
                        f,
                        &r.path.referenced,
                        format!("route `{pattern}`: match: {e}"),
                    ));
                    None
                }
            };
            let rules = AccessRules::of(o, r);
            let access = match access_classes.iter().position(|c| *c == rules) {
                Some(i) => i,
                None => {
                    access_classes.push(rules);
                    access_classes.len() - 1
                }
            };
            let cors = r
                .cors
                .as_ref()
                .map(|c| Arc::new(Cors::compile(c)))
                .or_else(|| org_cors.clone());
            let max_body = r.max_body_bytes.or(gw.limits.max_body_bytes).map(|b| b.0);
            // A route's `forward`, or its composition's KrakenD `input_headers`/`input_query_strings`.
            let forwarding = cratopus_config::compose::forward_config(r).map(|f| {
                let identity = auth.iter().flat_map(|a| a.identity_headers());
                Arc::new(Forwarding::compile(&f, identity.chain([&X_CONSUMER_ID])))
            });
            let cache = cratopus_config::cache::CacheConfig::resolve(o.cache.as_ref(), r.cache.as_ref())
                .zip(cache_store.as_ref())
                .map(|(s, store)| {
                    Arc::new(CachePolicy::compile(
                        &s,
                        store.clone(),
                        org_name.clone(),
                        auth.is_some(),
                    ))
                });
            let chain = chain_builder::chain(RouteParts {
                ip_rules,
                cors: cors.clone(),
                auth,
                authorize: r
                    .authorize
                    .as_ref()
                    .map(|a| Arc::new(Authorizer::compile(a)))
                    .or_else(|| org_authorize.clone()),
                rate_limits,
                auth_failures,
                quotas,
                store: limiter.clone(),
                max_body,
                validator,
                bulkhead: r.bulkhead.as_ref().map(resilience::bulkhead),
                forwarding,
                modifiers: Modifiers::compile(
                    o.modify.as_ref(),
                    r.modify.as_ref(),
                    &modify::Names {
                        route: &route_name,
                        org: &org_name,
                        env: &|name| std::env::var(name).ok(),
                    },
                )
                .map(Arc::new),
                graphql,
                grpc_web: r.grpc_web,
                compression: r
                    .compression
                    .as_ref()
                    .or(o.compression.as_ref())
                    .and_then(Compression::compile)
                    .map(Arc::new),
                cache,
            });
            let backend = match route_backend(r, &org_name, &route_name, &upstreams, services, &mut split_states) {
                Ok(Some(b)) => b,
                Ok(None) => continue, // an unknown upstream, reported by validation
                Err(e) => {
                    errors.push(ConfigError::at(f, &r.path.referenced, e));
                    continue;
                }
            };
            let backend = match &r.shadow {
                None => backend,
                Some(sh) => match upstreams.get(&(org_name.clone(), sh.upstream.value.clone())) {
                    Some(copy) => Backend::Shadow(Arc::new(Shadow::new(
                        backend,
                        match services.get(&org_name, &sh.upstream.value) {
                            Some(s) => Backend::Service(s.clone()),
                            None => Backend::Upstream(Arc::new(UpstreamCall {
                                upstream: copy.clone(),
                                timeout: sh.timeout.0,
                                read_timeout: sh.timeout.0,
                                retry: None,
                            })),
                        },
                        sh.percent / 100.0,
                        sh.max_body.0,
                        sh.max_in_flight as usize,
                        sh.timeout.0,
                    ))),
                    None => backend, // reported by validation
                },
            };
            let route = Arc::new(Route {
                name: route_name.clone(),
                line: r.path.referenced.line(),
                org: org_name.clone(),
                pattern: pattern.clone(),
                strip_prefix: r
                    .strip_prefix
                    .as_ref()
                    .map(|s| s.value.trim_end_matches('/').to_string()),
                rewrite,
                max_body,
                // Routes that share a name (as unnamed routes on one path do) share one series.
                metrics: route_metrics
                    .entry((org_name.clone(), route_name.clone()))
                    .or_insert_with_key(|k| prev_metrics.get(k).cloned().unwrap_or_default())
                    .clone(),
                keeps_params: chain.iter().any(Policy::reads_params) || backend.wants_params(),
                wraps_bodies: chain.iter().any(Policy::wraps_bodies),
                rescues: chain.iter().any(Policy::rescues),
                chain: chain.into(),
                backend,
                cors,
                access,
                conditions,
                websocket: crate::websocket::WsRoute::compile(r.websocket.as_ref()),
            });
            all_routes.push(route.clone());
            if let Err(e) = add_route(&mut router, &mut slots, &pattern, &route, &methods, true) {
                errors.push(ConfigError::at(f, &r.path.referenced, e));
                continue;
            }
            // `/api/{*rest}` also answers `/api` and `/api/`.
            if let Some(i) = pattern.rfind("/{*")
                && pattern.ends_with('}')
                && !pattern[i + 3..].contains('/')
            {
                let base = &pattern[..i];
                let with_slash = format!("{base}/");
                if !base.is_empty() {
                    implicit.push((base.to_string(), route.clone(), methods.clone()));
                }
                implicit.push((with_slash, route.clone(), methods.clone()));
            }
        }
        for (pattern, route, methods) in implicit {
            // Explicit routes win; an implicit one only fills methods nobody else answers.
            let _ = add_route(&mut router, &mut slots, &pattern, &route, &methods, false);
        }
        for (line, e) in router.finish(&slots, &access_classes) {
            errors.push(ConfigError::new(f, e).with_position(u32::try_from(line).unwrap_or(u32::MAX), 1));
        }
        errors.extend(auth_errors.into_iter().map(|e| ConfigError::new(f, e)));
        let tls = org_tls.get_mut(oi).map(std::mem::take).unwrap_or_default();
        let mut identity_headers = vec![crate::forward::X_CONSUMER_ID.clone()];
        let auths = org_auth.iter().chain(route_auths.iter());
        identity_headers.extend(auths.flat_map(|a| a.identity_headers()).cloned());
        identity_headers.extend(tls.client_auth.as_ref().map(|c| c.header.clone()));
        identity_headers.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        identity_headers.dedup();
        orgs.push(Org {
            name: org_name,
            router,
            paths: o.path_normalization.unwrap_or(gw.path_normalization),
            tls,
            identity_headers: identity_headers.into(),
        });
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let snapshot = Snapshot {
        version,
        loaded_at: SystemTime::now(),
        health_path: gw.health_path.clone(),
        max_header_bytes: gw.limits.max_header_bytes.0 as usize,
        client_body_timeout: Some(gw.limits.client_body_timeout.0).filter(|d| !d.is_zero()),
        sample_ratio: gw.tracing.sample_ratio,
        hosts,
        orgs,
        traffic_log,
        spans,
        limiter,
        state_config: gw.state.clone(),
        trusted_proxies,
        routes: all_routes,
        upstreams,
        tls,
        cache: cache_store,
        cluster_targets,
        config: Arc::new(cfg),
    };
    Ok(Compiled { snapshot, steps })
}

fn resolve(base_file: &Path, p: &str) -> std::path::PathBuf {
    if p == "-" {
        return p.into();
    }
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_file.parent().unwrap_or(Path::new("")).join(path)
    }
}

fn slot_for(router: &mut OrgRouter, slots: &mut HashMap<String, usize>, pattern: &str) -> Result<usize, String> {
    if let Some(&i) = slots.get(pattern) {
        return Ok(i);
    }
    let i = router.tables.len();
    router
        .tree
        .insert(pattern, i)
        .map_err(|e| format!("path `{pattern}` cannot be routed: {e}"))?;
    router.tables.push(MethodTable::default());
    slots.insert(pattern.to_string(), i);
    Ok(i)
}

/// Adds `route` at `pattern` for `methods` (every method when empty). An `explicit` route that
/// overlaps another is an error; an implicit one (`/api` for `/api/{*rest}`) only takes the
/// methods nobody else answers there. A route with `match:` conditions overlaps only a route
/// with the same conditions.
fn add_route(
    router: &mut OrgRouter,
    slots: &mut HashMap<String, usize>,
    pattern: &str,
    route: &Arc<Route>,
    methods: &[Method],
    explicit: bool,
) -> Result<(), String> {
    let i = slot_for(router, slots, pattern)?;
    let t = &mut router.tables[i];
    let clash = |other: &Route, method: Option<&Method>| {
        let method = method.map_or_else(|| "every method".to_string(), |m| format!("method {m}"));
        let same = if route.conditions.is_some() {
            " with the same `match` conditions"
        } else {
            ""
        };
        Err(format!(
            "route `{}` conflicts with route `{}` (line {}): both answer path `{pattern}` for {method}{same}",
            route.name, other.name, other.line
        ))
    };
    if let Some(c) = &route.conditions {
        let wanted: Vec<Option<Method>> = if methods.is_empty() {
            vec![None]
        } else {
            methods.iter().cloned().map(Some).collect()
        };
        for m in wanted {
            let overlaps = |other: &Option<Method>| other.is_none() || m.is_none() || *other == m;
            let same = t
                .conditional
                .iter()
                .find(|(om, r)| overlaps(om) && r.conditions.as_ref().is_some_and(|oc| oc.config.same_as(&c.config)));
            if let Some((om, other)) = same {
                if explicit {
                    return clash(other, m.as_ref().or(om.as_ref()));
                }
                continue;
            }
            // An implicit route comes after every explicit route of the pattern for its methods.
            let explicit_here = |r: &Arc<Route>| r.pattern == pattern;
            if !explicit
                && (t.conditional.iter().any(|(om, r)| overlaps(om) && explicit_here(r))
                    || t.by_method
                        .iter()
                        .any(|(om, r)| overlaps(&Some(om.clone())) && explicit_here(r))
                    || t.any.as_ref().is_some_and(explicit_here))
            {
                continue;
            }
            let key = crate::router::candidate_order(m.as_ref(), route);
            let at = t
                .conditional
                .iter()
                .position(|(om, r)| crate::router::candidate_order(om.as_ref(), r) > key)
                .unwrap_or(t.conditional.len());
            t.conditional.insert(at, (m, route.clone()));
        }
        return Ok(());
    }
    if let Some(other) = &t.any {
        return if explicit {
            clash(other, methods.first())
        } else {
            Ok(())
        };
    }
    if methods.is_empty() {
        // For an implicit route `any` means "every method the others do not answer".
        match t.by_method.first() {
            Some((m, other)) if explicit => return clash(other, Some(m)),
            _ => t.any = Some(route.clone()),
        }
        return Ok(());
    }
    for m in methods {
        match t.by_method.iter().find(|(mm, _)| mm == m) {
            Some((_, other)) if explicit => return clash(other, Some(m)),
            Some(_) => {}
            None => t.by_method.push((m.clone(), route.clone())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn otlp_endpoint_gets_the_traces_path_when_it_has_none() {
        assert_eq!(otlp_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(otlp_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            otlp_traces_url("http://c:4318/otlp/v1/traces"),
            "http://c:4318/otlp/v1/traces"
        );
    }
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("/v2/{id}/x/{*rest}").unwrap(),
            vec![
                Segment::Literal("/v2/".into()),
                Segment::Param("id".into()),
                Segment::Literal("/x/".into()),
                Segment::Param("rest".into()),
            ]
        );
        assert!(parse_template("/v2/{id").is_err());
        assert_eq!(pattern_params("/users/{id}/{*rest}"), vec!["id", "rest"]);
    }

    async fn compile_str(yaml: &str) -> Result<Snapshot, ConfigErrors> {
        let loaded = cratopus_config::load_str(Path::new("gw.yaml"), yaml).expect("loads");
        compile(loaded, None, 1).await
    }

    #[tokio::test]
    async fn conflicting_routes_are_errors_with_their_line() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      u:
        targets: [\"mirror://\"]
    routes:
      - {path: \"/users/{id}\", upstream: u, methods: [GET]}
      - {path: \"/users/{id}\", upstream: u, methods: [POST]}
      - {path: \"/users/{id}\", upstream: u, methods: [get]}
      - {path: \"/users/{name}/x\", upstream: u}
      - {path: \"/files/{*rest}\", upstream: u}
      - {path: /files, upstream: u, methods: [DELETE]}
";
        let errs = match compile_str(yaml).await {
            Ok(_) => panic!("conflicts must fail"),
            Err(e) => e.0,
        };
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        // Only the third route clashes (GET again; methods are case-insensitive). Different
        // parameter names at one position and a catch-all beside an explicit prefix are fine.
        assert_eq!(errs.len(), 1, "{text:#?}");
        assert!(
            text[0].starts_with("gw.yaml:9:") && text[0].contains("conflicts with route `/users/{id}`"),
            "{text:#?}"
        );
    }

    #[tokio::test]
    async fn catch_all_also_answers_its_prefix_unless_claimed() {
        let yaml = "\
organizations:
  - name: a
    upstreams:
      u:
        targets: [\"mirror://\"]
    routes:
      - {name: all, path: \"/files/{*rest}\", upstream: u}
      - {name: del, path: /files, upstream: u, methods: [DELETE]}
";
        let snap = compile_str(yaml).await.expect("compiles");
        let org = snap.org_for_host("any").expect("single org serves every host");
        let name = |m: Method, p: &str| match org.router.find(&m, p) {
            crate::router::Match::Found(r, _) => r.name.to_string(),
            _ => "none".into(),
        };
        assert_eq!(name(Method::GET, "/files/a/b"), "all");
        assert_eq!(name(Method::GET, "/files"), "all");
        assert_eq!(name(Method::GET, "/files/"), "all");
        assert_eq!(name(Method::DELETE, "/files"), "del");
    }
}
