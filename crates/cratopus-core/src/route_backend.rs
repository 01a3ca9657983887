//! What answers a route, built in the compile: the route's one upstream, or a weighted split
//! over several (one backend per arm), each arm an upstream call with the route's timeout and
//! retries, or an in-process service standing in for the upstream. The shadow, when the route
//! has one, wraps what this gives (see `snapshot`).
//!
//! A split's runtime state (running weights, counters, a rollback) is taken over from the
//! snapshot being replaced, by organization and route name, while the route's split settings
//! stay the same ([`SplitStates`]), so a reload of unrelated files keeps what the admin API and
//! the rollback monitor changed.

use crate::snapshot::{Services, Snapshot};
use cratopus_config::RouteConfig;
use cratopus_upstream::resilience::Retry;
use cratopus_upstream::split::{SplitSettings, SplitState};
use cratopus_upstream::{Backend, ByService, Compose, ComposeBackend, ErrorPolicy, Split, Upstream, UpstreamCall};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

type Key = (Arc<str>, Arc<str>);

/// The split states of the snapshot being replaced, and those given out in this compile.
pub(crate) struct SplitStates {
    prev: HashMap<Key, Arc<SplitState>>,
    given: HashMap<Key, Arc<SplitState>>,
    now: Instant,
}

impl SplitStates {
    pub(crate) fn new(prev: Option<&Snapshot>) -> SplitStates {
        let prev = prev
            .into_iter()
            .flat_map(|p| p.routes.iter())
            .filter_map(|r| Some(((r.org.clone(), r.name.clone()), r.backend.split()?.state.clone())))
            .collect();
        SplitStates {
            prev,
            given: HashMap::new(),
            now: Instant::now(),
        }
    }

    /// The state of route `route`'s split: the one given to a route of the same name in this
    /// compile (routes that share a name share their counters, as their metrics do), else the
    /// previous snapshot's when its settings are the same, else a new one.
    fn state(&mut self, org: &Arc<str>, route: &Arc<str>, settings: SplitSettings) -> Arc<SplitState> {
        let key = (org.clone(), route.clone());
        if let Some(s) = self.given.get(&key).filter(|s| *s.settings() == settings) {
            return s.clone();
        }
        let state = SplitState::carry_over(self.prev.get(&key), org.clone(), route.clone(), settings, self.now);
        self.given.entry(key).or_insert_with(|| state.clone());
        state
    }
}

/// Route `r`'s backend; `Ok(None)` when an upstream it names is missing (validation reports
/// that), `Err` with a message for a split that cannot be compiled.
pub(crate) fn route_backend(
    r: &RouteConfig,
    org: &Arc<str>,
    route: &Arc<str>,
    upstreams: &HashMap<(Arc<str>, String), Arc<Upstream>>,
    services: &Services,
    splits: &mut SplitStates,
) -> Result<Option<Backend>, String> {
    let route_retry = r.retry.as_ref().map(Retry::compile);
    let one = |name: &str| -> Option<Backend> {
        let upstream = upstreams.get(&(org.clone(), name.to_string()))?;
        Some(match services.get(org, name) {
            Some(s) => Backend::Service(s.clone()),
            None => Backend::Upstream(Arc::new(UpstreamCall {
                upstream: upstream.clone(),
                timeout: r.timeout.map_or(upstream.response_timeout, |d| d.0),
                read_timeout: r.read_timeout.map_or(upstream.read_timeout, |d| d.0),
                retry: route_retry.clone().or_else(|| upstream.retry.clone()),
            })),
        })
    };
    if let Some(c) = &r.compose {
        return compose_backend(r, c, org, upstreams, services, route_retry.clone());
    }
    match (&r.upstream, &r.split) {
        (Some(u), _) if r.service_from_path => {
            // Validation made `u` a discovery template; its services' pools are made on use.
            let Some(Backend::Upstream(template)) = one(&u.value) else {
                return Ok(None);
            };
            let config = template.upstream.pool.config.clone();
            Ok(Some(Backend::ByService(Arc::new(ByService::new(template, config)))))
        }
        (Some(u), _) => Ok(one(&u.value)),
        (None, Some(split)) => {
            let Some(arms) = split
                .backends
                .iter()
                .map(|b| one(&b.upstream.value))
                .collect::<Option<Vec<Backend>>>()
            else {
                return Ok(None);
            };
            let settings = SplitSettings::compile(split)?;
            let state = splits.state(org, route, settings);
            Ok(Some(Backend::Split(Arc::new(Split::new(state, arms)))))
        }
        (None, None) => Ok(None),
    }
}

/// A composed route's backend: one upstream call per composition backend, each with its own
/// timeout (by default its upstream's response timeout) and the route's retries, all bounded
/// by the route's `timeout` (KrakenD's endpoint timeout; by default the longest backend's).
fn compose_backend(
    r: &RouteConfig,
    c: &cratopus_config::compose::ComposeEndpointConfig,
    org: &Arc<str>,
    upstreams: &HashMap<(Arc<str>, String), Arc<Upstream>>,
    services: &Services,
    route_retry: Option<Arc<Retry>>,
) -> Result<Option<Backend>, String> {
    let endpoint = cratopus_compose::Endpoint::compile(c)?;
    let mut backends = Vec::with_capacity(c.backend.len());
    for (i, b) in c.backend.iter().enumerate() {
        let Some(name) = cratopus_config::compose::backend_upstream(r, c, i) else {
            return Ok(None);
        };
        let Some(upstream) = upstreams.get(&(org.clone(), name.to_string())) else {
            return Ok(None);
        };
        let timeout = match &b.timeout {
            Some(t) => cratopus_config::units::parse_duration(t).map_err(|e| format!("compose backend {i}: {e}"))?,
            None => upstream.response_timeout,
        };
        let method = b
            .method
            .as_deref()
            .map(|m| http::Method::from_bytes(m.as_bytes()))
            .transpose()
            .map_err(|e| format!("compose backend {i}: {e}"))?;
        let backend = match services.get(org, name) {
            Some(s) => Backend::Service(s.clone()),
            None => Backend::Upstream(Arc::new(UpstreamCall {
                upstream: upstream.clone(),
                timeout,
                read_timeout: r.read_timeout.map_or(upstream.read_timeout, |d| d.0),
                retry: route_retry.clone().or_else(|| upstream.retry.clone()),
            })),
        };
        let errors = match (&b.return_error_details, b.return_error_code) {
            (_, true) => ErrorPolicy::Code,
            (Some(alias), false) => ErrorPolicy::Details(format!("error_{alias}").into()),
            (None, false) => ErrorPolicy::Hide,
        };
        let modifier = cratopus_policies::martian::MartianModifier::compile(b.martian.as_ref(), b.basic_auth.as_ref())
            .map(|m| Arc::new(m) as Arc<dyn cratopus_upstream::CallModifier>);
        let limit = match &b.rate_limit {
            Some(l) => {
                let every = match &l.every {
                    Some(e) => cratopus_config::units::parse_duration(e)
                        .map_err(|e| format!("compose backend {i}: rate_limit: {e}"))?,
                    None => std::time::Duration::from_secs(1),
                };
                Some(cratopus_upstream::ProxyLimit::new(l.max_rate, every, l.burst()))
            }
            None => None,
        };
        backends.push(ComposeBackend {
            backend,
            method,
            timeout,
            errors,
            modifier,
            hedge: b.concurrent_calls.or(c.concurrent_calls).unwrap_or(1),
            limit,
        });
    }
    let longest = backends.iter().map(|b| b.timeout).max().unwrap_or_default();
    let timeout = r.timeout.map_or(longest, |d| d.0);
    let mut compose = Compose::new(endpoint, backends, timeout);
    // With a forwarding list (the route's `forward` or compose's `input_*`), what the list
    // lets through of the client's query goes on to the backends.
    compose.pass_query = cratopus_config::compose::forward_config(r).is_some();
    Ok(Some(Backend::Compose(Arc::new(compose))))
}
