//! A route with `service_from_path`: the first segment of the request path names the service
//! (`/users/123` → `users`, as revoke-gateway routes), and that service's instances answer.
//!
//! The route's upstream is a template: its discovery source has `{service}` in it (the SRV
//! name, the etcd prefix, the registry's service). The first request for a service makes the
//! service's pool from the template (its source read once, at most
//! [`crate::discovery::FETCH_TIMEOUT`]), kept and refreshed in the background like any
//! discovered upstream; later requests find it in a map (a lock held for one lookup, never
//! across an await). The path is forwarded as it came, segment included (revoke-gateway strips
//! nothing either; a route's own `strip_prefix`-style rewrites still apply).
//!
//! A path whose first segment is not a service name, or a service with no instance, is
//! answered `503` `no_healthy_target` naming `upstream/service` (revoke-gateway's answer when
//! no backend is there). The pools share the template's connection pool (connections are kept
//! per target address), bulkhead, timeouts and retries. At most [`MAX_SERVICES`] services are
//! kept; when full, services with no targets make room, else a new service is refused.

use super::{BackendError, Call, Upstream, UpstreamCall};
use crate::body::{BackendBody, RequestBody};
use crate::pool::UpstreamPool;
use cratopus_config::UpstreamConfig;
use cratopus_config::discovery::is_service_name;
use http::{Request, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The most services one route keeps pools for.
pub const MAX_SERVICES: usize = 1024;

pub struct ByService {
    /// The template upstream's name.
    pub name: Arc<str>,
    /// The template: its connection pool, settings, timeouts and retries.
    template: Arc<UpstreamCall>,
    config: UpstreamConfig,
    services: Mutex<HashMap<String, Arc<UpstreamCall>>>,
}

impl std::fmt::Debug for ByService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByService({})", self.name)
    }
}

impl ByService {
    /// A route's backend over template upstream `template` (its config `config`).
    pub fn new(template: Arc<UpstreamCall>, config: UpstreamConfig) -> ByService {
        ByService {
            name: template.upstream.name.clone(),
            template,
            config,
            services: Mutex::new(HashMap::new()),
        }
    }

    pub async fn call(
        &self,
        call: &mut Call,
        req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let u = self.for_path(req.uri().path()).await?;
        u.call(call, req).await
    }

    pub async fn upgrade(
        &self,
        call: &mut Call,
        req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let u = self.for_path(req.uri().path()).await?;
        u.upgrade(call, req).await
    }

    /// The services with a pool now, and their pools (the admin API).
    pub fn services(&self) -> Vec<(String, Arc<Upstream>)> {
        let map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.upstream.clone())).collect()
    }

    async fn for_path(&self, path: &str) -> Result<Arc<UpstreamCall>, BackendError> {
        let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if !is_service_name(segment) {
            return Err(BackendError::NoHealthyTarget(self.name.clone()));
        }
        if let Some(u) = self
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(segment)
        {
            return Ok(u.clone());
        }
        let u = self.make(segment).await?;
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SERVICES {
            map.retain(|_, u| !u.upstream.pool.targets().targets.is_empty());
        }
        if map.len() >= MAX_SERVICES {
            tracing::warn!(upstream = %self.name, service = segment, "too many services on this route; not kept");
            return Ok(u);
        }
        // Two first requests at once may both make a pool; the first one kept wins.
        Ok(map.entry(segment.to_string()).or_insert(u).clone())
    }

    /// Makes and starts the pool of `service`.
    async fn make(&self, service: &str) -> Result<Arc<UpstreamCall>, BackendError> {
        let t = &self.template.upstream;
        let mut config = self.config.clone();
        config.discovery = config.discovery.as_ref().map(|d| d.for_service(service));
        let name: Arc<str> = format!("{}/{service}", self.name).into();
        let pool = UpstreamPool::new(&name, config, t.pool.tls.clone()).map_err(|e| {
            tracing::warn!(upstream = %self.name, service, error = %e, "cannot make the service's pool");
            BackendError::NoHealthyTarget(name.clone())
        })?;
        pool.refresh().await;
        pool.start();
        tracing::info!(upstream = %self.name, service, targets = pool.targets().targets.len(), "service found");
        Ok(Arc::new(UpstreamCall {
            upstream: Arc::new(Upstream {
                name,
                pool,
                conns: t.conns.clone(),
                response_timeout: t.response_timeout,
                read_timeout: t.read_timeout,
                preserve_host: t.preserve_host,
                http2: t.http2,
                tls: t.tls,
                retry: t.retry.clone(),
                bulkhead: t.bulkhead.clone(),
            }),
            timeout: self.template.timeout,
            read_timeout: self.template.read_timeout,
            retry: self.template.retry.clone(),
        }))
    }
}
