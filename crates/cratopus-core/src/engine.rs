//! The request pipeline. One fixed order, written once here:
//!
//! ```text
//! health path → match (Host → organization → route; 404 / 405) → limits (431 / 413)
//! → pick a healthy target (503) → forward (502 / 504) → response headers → traffic log
//! ```
//!
//! Policies (authentication, rate limits, …) slot in between match and forward as they arrive.
//! Every answer, the gateway's own errors included, carries `X-Request-Id` and leaves one line
//! in the traffic log when its body ends.

use crate::body::{BodyFault, BodyStats, PendingLog, PendingMetrics, PendingSpan, RequestBody, ResponseBody, fault_of};
use crate::conn_pool::SendError;
use crate::error::GatewayError;
use crate::forward::{self, X_REQUEST_ID};
use crate::host::{host_value, request_host};
use crate::normalize::normalize;
use crate::overrides::Overrides;
use crate::resilience::{self, AttemptEnd, PendingAttempt, Permits};
use crate::router::Match;
use crate::snapshot::{Route, Snapshot};
use crate::tls::{ClientCert, TlsConn};
use arc_swap::ArcSwap;
use bytes::Bytes;
use cratopus_config::HashOn;
use cratopus_observe::LogLine;
use cratopus_observe::metrics::{GatewayMetrics, RouteMetrics};
use cratopus_observe::spans::{RequestSpan, SpanSink, UpstreamSpan};
use cratopus_policies::RateDecision;
use cratopus_policies::auth::Identity;
use cratopus_policies::cors::{Cors, Preflight};
use cratopus_policies::ip_rules::client_ip;
use cratopus_upstream::balancer::hash_key;
use cratopus_upstream::{Target, TargetKind, UpstreamPool};
use http::header::{self, HeaderValue};
use http::uri::{Scheme, Uri};
use http::{Request, Response, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// What the server knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `peer`'s address as `X-Forwarded-For` carries it: formatted once per connection rather
    /// than once per request (an address's `Display` is a noticeable part of a proxied
    /// request's cost).
    pub peer_ip: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// On an HTTPS connection: the organization the handshake was for and the client's
    /// verified certificate, if any.
    pub tls: Option<Arc<TlsConn>>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, scheme: &'static str, tls: Option<Arc<TlsConn>>) -> ConnInfo {
        ConnInfo {
            peer,
            peer_ip: forward::ip_value(peer.ip()),
            scheme,
            tls,
        }
    }
}

/// Holds the current snapshot and runs requests against it.
pub struct Engine {
    current: ArcSwap<Snapshot>,
    /// Process-wide counters (reloads, requests no route took), for `/metrics`.
    pub metrics: GatewayMetrics,
    /// Blocked addresses and switched-off routes, set through the admin API.
    pub overrides: Overrides,
}

/// What the phases learn about a request, for the log line and the route's metrics. With the
/// traffic log off no names are copied.
#[derive(Default)]
struct Learned {
    enabled: bool,
    route_metrics: Option<Arc<RouteMetrics>>,
    /// How long the upstream call took (the log's `upstream_ms`).
    upstream_time: Option<std::time::Duration>,
    /// The call failed by the client's fault (its body broke or stalled): its time is no
    /// measure of the target, so the upstream latency metric leaves it out.
    client_fault: bool,
    org: Option<Arc<str>>,
    route: Option<Arc<str>>,
    upstream: Option<Arc<str>>,
    /// When the upstream call began (also for the mirror).
    upstream_start: Option<Instant>,
    /// The matched route, kept only for a request whose spans are exported.
    route_ref: Option<Arc<Route>>,
    /// The tightest rate limit's answer, for the `RateLimit-*` headers of the response.
    rate: Option<RateDecision>,
    /// Bulkhead places, held by the response body until it ends.
    permits: Option<Box<Permits>>,
    /// `Strict-Transport-Security` of the organization, on HTTPS.
    hsts: Option<HeaderValue>,
    /// The consumer the request was authenticated as.
    consumer: Option<Arc<str>>,
    /// Why a policy refused the request (`expired`, `missing_scope`, …).
    reason: Option<&'static str>,
    /// The route's CORS policy and the request's `Origin`, for the response headers.
    cors: Option<(Arc<Cors>, Option<HeaderValue>)>,
    error: Option<&'static str>,
}

impl Learned {
    /// Moves what was learned into the request's log line, answered with `status`.
    fn fill(&mut self, line: &mut LogLine, status: u16) {
        line.status = status;
        line.org = self.org.take();
        line.route = self.route.take();
        line.upstream = self.upstream.take();
        line.upstream_ms = self.upstream_time.map(|t| t.as_secs_f64() * 1000.0);
        line.error = self.error;
        line.consumer = self.consumer.take();
        line.reason = self.reason;
    }
}

/// nginx's "client closed request": the status logged for a request whose client went away
/// before the response head existed.
const CLIENT_CLOSED: u16 = 499;

/// A request between its arrival and its response head. hyper drops the request's future when
/// the client goes away first (a timeout over HTTP/1.1, a stream reset over HTTP/2, a gRPC
/// deadline); the drop then still writes the log line, the route's metrics and the span, with
/// status 499 and error `client_closed`, from what was learned so far. [`Unanswered::answered`]
/// hands everything on to the response instead.
struct Unanswered<'a> {
    engine: &'a Engine,
    snap: &'a Snapshot,
    conn: &'a ConnInfo,
    trace: &'a forward::TraceContext,
    request_id: &'a HeaderValue,
    method: &'a http::Method,
    start: Instant,
    learned: Learned,
    log: Option<LogLine>,
    span: Option<(Arc<SpanSink>, String, String)>,
    stats: Option<Arc<crate::body::BodyStats>>,
    answered: bool,
}

impl Unanswered<'_> {
    /// The response exists: what was gathered goes on with it.
    #[allow(clippy::type_complexity)]
    fn answered(
        mut self,
    ) -> (
        Learned,
        Option<LogLine>,
        Option<(Arc<SpanSink>, String, String)>,
        Option<Arc<crate::body::BodyStats>>,
    ) {
        self.answered = true;
        (
            std::mem::take(&mut self.learned),
            self.log.take(),
            self.span.take(),
            self.stats.take(),
        )
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let learned = &mut self.learned;
        learned.error = Some("client_closed");
        // An upstream call in flight ends here, with the client.
        if learned.upstream_time.is_none()
            && let Some(began) = learned.upstream_start
        {
            learned.upstream_time = Some(began.elapsed());
        }
        let bytes_in = self.stats.as_ref().map_or(0, |s| s.bytes.load(Ordering::Relaxed));
        let elapsed = self.start.elapsed();
        if let Some((sink, path, host)) = self.span.take() {
            let status = http::StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(http::StatusCode::BAD_REQUEST);
            pending_span(
                sink,
                path,
                host,
                self.trace,
                learned,
                self.method,
                self.conn,
                self.request_id,
                self.start,
                status,
            )
            .finish();
        }
        match learned.route_metrics.take() {
            // The upstream's wait is not recorded: it never ended.
            Some(route) => route.request_finished(self.method, CLIENT_CLOSED, elapsed, None, bytes_in, 0),
            None => self.engine.metrics.unrouted(CLIENT_CLOSED),
        }
        if let Some(mut line) = self.log.take() {
            learned.fill(&mut line, CLIENT_CLOSED);
            line.bytes_in = bytes_in;
            line.total_ms = elapsed.as_secs_f64() * 1000.0;
            self.snap.traffic_log.log(line);
        }
    }
}

impl Engine {
    pub fn new(snapshot: Snapshot) -> Engine {
        Engine {
            current: ArcSwap::from_pointee(snapshot),
            metrics: GatewayMetrics::new(),
            overrides: Overrides::default(),
        }
    }

    /// The snapshot requests are served from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Serves every new request from `snapshot`; requests in flight finish on the old one.
    pub fn swap(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<ResponseBody> {
        let start = Instant::now();
        let snap = self.current.load_full();
        let logging = snap.traffic_log.enabled();
        let request_id = forward::request_id(req.headers());
        let trace = forward::TraceContext::from_headers(req.headers(), snap.sample_ratio);
        let client = client_ip(conn.peer.ip(), req.headers(), &snap.trusted_proxies);

        if req.uri().path() == snap.health_path {
            let mut res = Response::new(ResponseBody::full(Bytes::from_static(b"{\"status\":\"ok\"}\n")));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
            return res;
        }

        let log_base = logging.then(|| LogLine {
            method: Some(req.method().clone()),
            host: host_value(req.headers(), req.uri()),
            uri: Some(req.uri().clone()),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            trace_id: Some(trace.trace_id),
            ..LogLine::answered(request_id.clone(), client, 0)
        });

        // Spans are built only for sampled requests, and only when an exporter is configured.
        let span_base = snap
            .spans
            .as_ref()
            .filter(|_| trace.sampled())
            .map(|sink| (sink.clone(), req.uri().path().to_string(), host_str(&req).to_string()));
        let method = req.method().clone();
        let mut unanswered = Unanswered {
            engine: self,
            snap: &snap,
            conn,
            trace: &trace,
            request_id: &request_id,
            method: &method,
            start,
            learned: Learned {
                enabled: logging || span_base.is_some(),
                ..Learned::default()
            },
            log: log_base,
            span: span_base,
            stats: None,
            answered: false,
        };
        let outcome = self
            .run(
                &snap,
                req,
                conn,
                (client, &request_id, &trace),
                &mut unanswered.learned,
                &mut unanswered.stats,
            )
            .await;
        let (mut learned, log_base, span_base, stats) = unanswered.answered();
        let (mut res, inflight) = match outcome {
            Ok((res, guard)) => (res, guard),
            Err(e) => {
                learned.error = Some(e.code());
                (e.to_response(&request_id).map(ResponseBody::full), None)
            }
        };
        let permits = learned.permits.take();
        let span = span_base.map(|(sink, path, host)| {
            pending_span(
                sink,
                path,
                host,
                &trace,
                &learned,
                &method,
                conn,
                &request_id,
                start,
                res.status(),
            )
        });
        res.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
        if let Some(hsts) = learned.hsts.take() {
            res.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        if let Some(rate) = &learned.rate {
            rate.write_headers(res.headers_mut());
        }
        if let Some((cors, origin)) = &learned.cors {
            cors.apply(origin.as_ref(), res.headers_mut());
        }

        let status = res.status().as_u16();
        let pending = log_base.map(|mut line| {
            learned.fill(&mut line, status);
            Box::new(PendingLog {
                line,
                log: snap.traffic_log.clone(),
                start,
                request: stats.clone(),
            })
        });
        let metrics = match learned.route_metrics {
            Some(route) => Some(PendingMetrics {
                route,
                method,
                status,
                start,
                upstream: learned.upstream_time.filter(|_| !learned.client_fault),
                request: stats,
            }),
            None => {
                self.metrics.unrouted(status);
                None
            }
        };
        res.map(|b| {
            b.with_log(pending)
                .with_metrics(metrics)
                .with_inflight(inflight)
                .with_span(span)
                .with_permits(permits)
        })
    }

    async fn run(
        &self,
        snap: &Snapshot,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        (client, request_id, trace): (IpAddr, &HeaderValue, &forward::TraceContext),
        learned: &mut Learned,
        stats_out: &mut Option<Arc<crate::body::BodyStats>>,
    ) -> Result<(Response<ResponseBody>, Option<cratopus_upstream::InflightGuard>), GatewayError> {
        if self.overrides.is_blocked(client) {
            return Err(GatewayError::Blocked);
        }

        // Match: Host → organization → (normalized) path → route.
        let host = request_host(&req).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        let org = snap
            .org_for_host(host)
            .ok_or_else(|| GatewayError::UnknownHost(host.to_string()))?;
        if learned.enabled {
            learned.org = Some(org.name.clone());
        }
        let client_cert = tls_phase(org, conn, learned)?;

        if forward::head_size(
            req.uri().path_and_query().map_or(1, |p| p.as_str().len()),
            req.headers(),
        ) > snap.max_header_bytes
        {
            return Err(GatewayError::HeadersTooLarge(snap.max_header_bytes));
        }

        // The path is routed and forwarded as normalized, so the upstream reads the path that
        // was routed (see `normalize`).
        let normalized =
            normalize(req.uri().path(), &org.paths).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        if let Cow::Owned(p) = normalized.path {
            let target = match req.uri().query() {
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            if normalized.redirect {
                return Ok((redirect_to(&target)?, None));
            }
            set_path(req.uri_mut(), target)?;
        }
        let path = req.uri().path();

        // A CORS preflight is answered by the route of the method it asks about.
        if req.method() == http::Method::OPTIONS
            && req.headers().contains_key(header::ORIGIN)
            && let Some(asked) = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            && let Match::Found(route, _) = org.router.find(&asked, path)
            && let Some(cors) = &route.cors
            && let Some(answer) = cors.preflight(req.headers(), req.method())
        {
            if learned.enabled {
                learned.route = Some(route.name.clone());
            }
            return match answer {
                Preflight::Allow(headers) => {
                    let mut res = Response::new(ResponseBody::full(Bytes::new()));
                    *res.status_mut() = http::StatusCode::NO_CONTENT;
                    res.headers_mut().extend(headers);
                    Ok((res, None))
                }
                Preflight::Deny(d) => Err(GatewayError::Cors {
                    code: d.code(),
                    message: d.to_string(),
                }),
            };
        }

        let (route, mut new_path) = match org.router.find(req.method(), path) {
            Match::Found(route, params) => {
                let p = forward::upstream_path(route, &params, path, req.uri().query());
                (route.clone(), p)
            }
            Match::NotFound => return Err(GatewayError::NoRoute),
            Match::MethodNotAllowed(allow) => {
                return Err(GatewayError::MethodNotAllowed(req.method().to_string(), allow));
            }
        };
        if learned.enabled {
            learned.route = Some(route.name.clone());
            learned.route_ref = Some(route.clone());
        }
        route.metrics.request_started();
        learned.route_metrics = Some(route.metrics.clone());
        if let Some(cors) = &route.cors {
            learned.cors = Some((cors.clone(), req.headers().get(header::ORIGIN).cloned()));
        }
        if self.overrides.is_disabled(&route.org, &route.name) {
            return Err(GatewayError::RouteDisabled);
        }

        // IP rules: the organization's, then the route's.
        if route.ip_rules.iter().any(|r| !r.permits(client)) {
            return Err(GatewayError::IpDenied);
        }

        // Headers meant for this hop alone go before any policy reads or adds headers, and so
        // do a client's own copies of those the gateway sets from an identity (on every route,
        // with authentication or not): what the gateway adds below can then be neither forged
        // nor removed by a `Connection: X-Consumer-Id`.
        forward::strip_hop_by_hop(req.headers_mut());
        for h in &org.identity_headers {
            req.headers_mut().remove(h);
        }

        // Authentication, then authorization.
        let mut identity = None;
        if let Some(auth) = &route.auth {
            let (mut parts, body) = req.into_parts();
            let mut query_changed = false;
            let result = auth
                .authenticate(&route.name, &mut parts, &mut query_changed, client_cert.map(|c| &c.id))
                .await;
            if query_changed {
                new_path = new_path.map(|p| with_query(&p, parts.uri.query()));
            }
            req = Request::from_parts(parts, body);
            match result {
                Ok(id) => {
                    if let Some(c) = &id.consumer {
                        learned.consumer = Some(c.id.clone());
                        if let Some(v) = &c.header {
                            req.headers_mut().insert(forward::X_CONSUMER_ID.clone(), v.clone());
                        }
                    }
                    identity = Some(id);
                }
                Err(e) => {
                    learned.reason = Some(e.detail());
                    if route.authorize.as_ref().is_some_and(|a| a.hides()) {
                        return Err(GatewayError::NoRoute);
                    }
                    return Err(GatewayError::Unauthenticated {
                        code: e.code(),
                        detail: e.detail(),
                        challenge: auth.challenge.clone(),
                    });
                }
            }
        }
        if let Some(authz) = &route.authorize {
            let anonymous = Identity::default();
            if let Err(why) = authz.check(identity.as_ref().unwrap_or(&anonymous)) {
                learned.reason = Some(why);
                return Err(if authz.hides() {
                    GatewayError::NoRoute
                } else {
                    GatewayError::Forbidden(why)
                });
            }
        }

        // Rate limits and quotas.
        if !route.rate_limits.is_empty() || !route.quotas.is_empty() {
            check_limits(snap, &route, req.headers(), client, identity.as_ref(), learned).await?;
        }

        // Validation of the head; a body to check is read whole below.
        let mut read_body = None;
        if let Some(v) = &route.validator {
            v.check_head(req.headers(), req.uri().query())
                .map_err(|e| GatewayError::Invalid(Arc::new(e)))?;
            if v.needs_body(req.method(), req.headers()) {
                read_body = Some(v.clone());
            }
        }

        // Limits the route can judge before reading the body.
        if let Some(limit) = route.max_body
            && content_length(req.headers()).is_some_and(|n| n > limit)
        {
            return Err(GatewayError::BodyTooLarge(limit));
        }

        // Bulkheads: the route's, then the upstream's; held until the response ends.
        let upstream = &route.upstream;
        if route.bulkhead.is_some() || upstream.bulkhead.is_some() {
            let mut permits = Box::<Permits>::default();
            if let Some(b) = &route.bulkhead {
                permits.route = Some(b.acquire().await.map_err(|_| GatewayError::Overloaded)?);
            }
            if let Some(b) = &upstream.bulkhead {
                permits.upstream = Some(b.acquire().await.map_err(|_| GatewayError::Overloaded)?);
            }
            learned.permits = Some(permits);
        }

        // Upstream: a healthy target.
        let hash = upstream.pool.hash_on().and_then(|h| request_hash(h, &req, client));
        let mut target = upstream
            .pool
            .pick(hash)
            .ok_or_else(|| GatewayError::NoHealthyTarget(upstream.name.to_string()))?;
        let mut guard = target.begin();

        // A body is read whole to be validated, or to be sent again by a retry when it is small
        // enough to keep; any other body streams.
        let retry = route.retry.as_deref();
        let keep_for_retry = retry.is_some_and(|r| {
            !req.body().is_end_stream()
                && r.policy.may_retry(req.method())
                && content_length(req.headers()).is_some_and(|n| n <= r.policy.buffer_body)
        });
        let (mut parts, body) = req.into_parts();
        let mut kept = None;
        let (body, stats) = if read_body.is_none() && !keep_for_retry {
            RequestBody::new(body, route.max_body, snap.client_body_timeout)
        } else {
            let limit = match (route.max_body, read_body.as_ref().and_then(|v| v.body_limit())) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(u64::MAX),
            };
            let bytes = read_whole(body, limit, snap.client_body_timeout).await?;
            if let Some(v) = &read_body {
                v.check_body(&bytes).map_err(|e| GatewayError::Invalid(Arc::new(e)))?;
            }
            let stats = Arc::new(crate::body::BodyStats::default());
            stats.bytes.store(bytes.len() as u64, Ordering::Relaxed);
            if retry.is_some() {
                kept = Some(bytes.clone()); // a reference count, not a copy
            }
            (RequestBody::full(bytes), Some(stats))
        };
        *stats_out = stats.clone();

        // Headers as every target sees them, the mirror included.
        let client_host = host_value(&parts.headers, &parts.uri);
        parts.headers.remove(header::EXPECT); // hyper answered it when the body was first read
        forward::set_forwarded(
            &mut parts.headers,
            &conn.peer_ip,
            conn.scheme,
            client_host.as_ref(),
            request_id,
        );
        parts.headers.insert(forward::TRACEPARENT.clone(), trace.header());
        if let Some(fw) = &route.forwarding {
            fw.filter_headers(&mut parts.headers);
            if fw.filters_query() {
                let query = fw.filter_query(parts.uri.query().unwrap_or(""));
                let base = new_path
                    .clone()
                    .or_else(|| parts.uri.path_and_query().cloned())
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
                new_path = Some(with_query(&base, query.as_deref()));
            }
        }
        // After the forwarding filter: the gateway's own header is not the client's.
        // (The client's own copy went with the other identity headers.)
        if let Some(auth) = &org.tls.client_auth
            && let Some(v) = client_cert.and_then(|c| c.header.clone())
        {
            parts.headers.insert(auth.header.clone(), v);
        }

        // A retry sends a copy of the head with the kept body (or none), so only requests
        // without a body or with a kept one are retried.
        if let Some(r) = retry {
            r.budget.on_request(Instant::now());
        }
        let replay = (retry.is_some() && (body.is_end_stream() || kept.is_some()))
            .then(|| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
        let method = parts.method.clone();
        let mut first = Some((parts, body));
        let started = Instant::now();
        learned.upstream_start = Some(started);
        let mut tries = 1u32;
        loop {
            if learned.enabled {
                learned.upstream = Some(target.label.clone());
            }
            let (mut parts, body) = match (first.take(), &replay) {
                (Some(p), _) => p,
                (None, Some((m, u, h))) => {
                    let mut p = Request::new(()).into_parts().0;
                    (p.method, p.uri, p.headers) = (m.clone(), u.clone(), h.clone());
                    (p, kept.clone().map_or_else(RequestBody::empty, RequestBody::full))
                }
                (None, None) => return Err(GatewayError::UpstreamFailed),
            };
            // The mirror answers in process: the first pick, or a retry that landed on the
            // mirror of a mixed upstream.
            let Some(addr) = target.addr() else {
                if let Some(p) = new_path {
                    parts.uri = Uri::from(p);
                }
                let res = cratopus_mirror::echo(Request::from_parts(parts, body), conn.peer).await;
                learned.upstream_time = Some(started.elapsed());
                if let Some(f) = fault_of(stats.as_ref()) {
                    return Err(fault_error(f, route.max_body.unwrap_or(0)));
                }
                return Ok((res.map(ResponseBody::full), Some(guard)));
            };
            let permit = match target.breaker.as_ref().map(|b| b.try_acquire(Instant::now())) {
                None => None,
                Some(Ok(p)) => Some(p),
                // Its half-open probes are all out: this target takes nothing more for now.
                Some(Err(_)) => return Err(GatewayError::NoHealthyTarget(upstream.name.to_string())),
            };
            let req = upstream_request(&route, &target, parts, body, new_path.clone(), client_host.clone())?;
            let result = tokio::time::timeout(route.timeout, upstream.conns.send(addr, target.host(), req)).await;
            learned.upstream_time = Some(started.elapsed());
            if !matches!(result, Ok(Ok(_)))
                && let Some(e) = client_fault(stats.as_ref(), result.is_err(), route.max_body)
            {
                // The client's doing, not the target's: nothing to record (the breaker's
                // permit goes back unused), nothing to retry, and no upstream latency (a
                // stalled upload would read as a slow target); the log keeps `upstream_ms`.
                tracing::debug!(route = %route.name, target = %target.label, error = e.code(), "the client broke its request");
                learned.client_fault = true;
                return Err(e);
            }
            let (end, outcome) = match result {
                Err(_) => (AttemptEnd::Timeout, Err(GatewayError::UpstreamTimeout)),
                Ok(Err(SendError::Connect(e))) => (AttemptEnd::Connect, Err(e)),
                Ok(Err(SendError::Request(e))) => {
                    tracing::debug!(route = %route.name, target = %target.label, error = %e, "upstream request failed");
                    if e.is_timeout() {
                        (AttemptEnd::Timeout, Err(GatewayError::UpstreamTimeout))
                    } else {
                        (AttemptEnd::Reset, Err(GatewayError::UpstreamFailed))
                    }
                }
                Ok(Ok(r)) if r.0.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                    // The gateway never asks for an upgrade (`Upgrade` is hop-by-hop), so a 101
                    // is the target's error; relayed, it would switch the client to nothing.
                    tracing::debug!(route = %route.name, target = %target.label, "unsolicited 101 from the upstream");
                    (AttemptEnd::Reset, Err(GatewayError::UpstreamFailed))
                }
                Ok(Ok(r)) => (AttemptEnd::Status(r.0.status().as_u16()), Ok(r)),
            };
            // A good head with a body still to come is judged when the body ends (the target
            // may yet cut it short); anything else now.
            let attempt = match &outcome {
                Ok((r, _)) if end.failure().is_none() && !r.body().is_end_stream() => {
                    PendingAttempt::new(&upstream.pool, &target, permit)
                }
                _ => {
                    resilience::record_attempt(&upstream.pool, &target, permit, end);
                    None
                }
            };

            // Retry: a failure the policy retries, within the budget, before anything of the
            // response has been sent to the client (a 5xx head is dropped unread), to another
            // target when there is one.
            let again = match (retry, end.failure(), &replay) {
                (Some(r), Some(f), Some(_)) => {
                    r.policy.should_retry(&method, f, tries) && r.budget.try_retry(Instant::now())
                }
                _ => false,
            };
            if let (true, Some(next)) = (
                again,
                again.then(|| pick_other(&upstream.pool, hash, &target)).flatten(),
            ) {
                tries += 1;
                tracing::debug!(route = %route.name, from = %target.label, to = %next.label, attempt = tries, "retrying");
                drop(outcome);
                let wait = retry.map(|r| r.policy.backoff(tries - 1)).unwrap_or_default();
                tokio::time::sleep(wait).await;
                target = next;
                guard = target.begin();
                continue;
            }
            let (res, conn) = outcome?;
            let (mut parts, body) = res.into_parts();
            forward::strip_hop_by_hop(&mut parts.headers);
            return Ok((
                Response::from_parts(parts, ResponseBody::upstream(body, conn).with_attempt(attempt)),
                Some(guard),
            ));
        }
    }
}

/// The request body's declared length.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a request body whole, up to `limit` bytes (413 beyond), the client pausing no longer
/// than `idle` between two pieces (408).
async fn read_whole(body: Incoming, limit: u64, idle: Option<Duration>) -> Result<Bytes, GatewayError> {
    let (body, stats) = RequestBody::new(body, Some(limit), idle);
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| fault_of(stats.as_ref()).map_or(GatewayError::BadRequestBody, |f| fault_error(f, limit)))
}

/// The answer to a request whose body the client broke.
fn fault_error(f: BodyFault, limit: u64) -> GatewayError {
    match f {
        BodyFault::TooLarge => GatewayError::BodyTooLarge(limit),
        BodyFault::Broken => GatewayError::BadRequestBody,
        BodyFault::Stalled => GatewayError::ClientBodyTimeout,
    }
}

/// Whether an upstream call failed by the client's fault, and the answer then: its body grew
/// too large, broke or stalled; or the response timeout fired (`timed_out`) while the body was
/// still waiting for the client's bytes (the target cannot answer a request it has not got;
/// Envoy likewise starts a route's timeout only once the request has been read).
fn client_fault(stats: Option<&Arc<BodyStats>>, timed_out: bool, limit: Option<u64>) -> Option<GatewayError> {
    let s = stats?;
    match s.fault() {
        Some(f) => Some(fault_error(f, limit.unwrap_or(0))),
        None if timed_out && s.waiting_on_client() => Some(GatewayError::ClientBodyTimeout),
        None => None,
    }
}

/// HSTS for HTTPS answers, and the organization's client-certificate rule: the certificate
/// counts only when the handshake was made for this organization (its CA verified it). A
/// request for such an organization on a connection made for another name gets 421 (a client
/// that coalesced connections then opens its own); without a certificate where one is
/// required, 401.
fn tls_phase<'c>(
    org: &crate::snapshot::Org,
    conn: &'c ConnInfo,
    learned: &mut Learned,
) -> Result<Option<&'c ClientCert>, GatewayError> {
    if conn.tls.is_some() {
        learned.hsts.clone_from(&org.tls.hsts);
    }
    let Some(auth) = &org.tls.client_auth else {
        return Ok(None);
    };
    let cert = match &conn.tls {
        Some(t) if t.org.as_deref() != Some(&*org.name) => return Err(GatewayError::MisdirectedRequest),
        Some(t) => t.client_cert.as_ref(),
        None => None,
    };
    if cert.is_none() && auth.required {
        return Err(GatewayError::ClientCertRequired);
    }
    Ok(cert)
}

/// Runs the route's rate limits, then its quotas. Keeps the tightest limit's answer for the
/// response headers; a request over an enforced limit or a spent quota is refused with 429.
async fn check_limits(
    snap: &Snapshot,
    route: &Route,
    headers: &http::HeaderMap,
    client: std::net::IpAddr,
    identity: Option<&Identity>,
    learned: &mut Learned,
) -> Result<(), GatewayError> {
    let mut key = String::with_capacity(64);
    // Several policies are asked at once: on the multiplexed Redis connection their scripts go
    // out together and share one round trip, instead of one round trip each in turn. (So each is
    // counted even when another refuses, as Envoy's rate limit service counts every descriptor.)
    let together = if route.rate_limits.len() > 1 {
        futures_util::future::join_all(route.rate_limits.iter().map(|policy| async move {
            let mut key = String::with_capacity(64);
            policy.check(&snap.limiter, headers, client, identity, &mut key).await
        }))
        .await
    } else {
        Vec::new()
    };
    let mut together = together.into_iter();
    for policy in &route.rate_limits {
        let d = match together.next() {
            Some(d) => d,
            None => policy.check(&snap.limiter, headers, client, identity, &mut key).await,
        }
        .map_err(|_| GatewayError::LimitsUnavailable)?;
        if !d.allowed {
            route.metrics.over_limit(!d.refuses());
            if d.refuses() {
                learned.rate = Some(d);
                let retry = learned.rate.as_ref().map_or(1, |r| r.retry_after);
                return Err(GatewayError::RateLimited(retry));
            }
            policy.note_soft_over(&route.name);
        }
        if learned.rate.as_ref().is_none_or(|r| d.remaining < r.remaining) {
            learned.rate = Some(d);
        }
    }
    for quota in &route.quotas {
        let q = quota
            .check(&snap.limiter, headers, client, identity, &mut key)
            .await
            .map_err(|_| GatewayError::LimitsUnavailable)?;
        if !q.allowed {
            route.metrics.over_limit(false);
            return Err(GatewayError::QuotaExceeded(q.resets_in));
        }
    }
    Ok(())
}

/// The spans of a sampled request as far as the response head; [`PendingSpan`] adds the end
/// times when the body is done.
#[allow(clippy::too_many_arguments)]
fn pending_span(
    sink: Arc<SpanSink>,
    path: String,
    host: String,
    trace: &forward::TraceContext,
    learned: &Learned,
    method: &http::Method,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    start: Instant,
    status: http::StatusCode,
) -> Box<PendingSpan> {
    let route = learned.route_ref.as_deref();
    let upstream = learned.upstream_start.map(|began| {
        // A failed call ends when it failed; the mirror answers whole; a proxied body
        // streams, so its call ends with the body.
        let whole = learned.error.is_some() || learned.upstream.as_deref() == Some("mirror");
        let ended = whole.then(|| began + learned.upstream_time.unwrap_or_default());
        (began, ended)
    });
    let now = SystemTime::now();
    Box::new(PendingSpan {
        sink,
        span: RequestSpan {
            trace_id: trace.trace_id,
            span_id: trace.span_id,
            parent_id: trace.parent_id,
            start: now,
            end: now,
            method: method.clone(),
            path,
            scheme: conn.scheme,
            host: (!host.is_empty()).then_some(host),
            client_ip: conn.peer.ip(),
            status: status.as_u16(),
            request_id: request_id.to_str().ok().map(str::to_string),
            org: learned.org.clone(),
            route: learned.route.clone(),
            pattern: route.map(|r| r.pattern.clone()),
            error: learned.error,
            upstream: upstream.map(|_| UpstreamSpan {
                span_id: trace.upstream_span_id,
                start: now,
                end: now,
                upstream: route.map(|r| r.upstream.name.clone()),
                target: learned.upstream.clone(),
                status: learned.error.is_none().then_some(status.as_u16()),
            }),
        },
        start,
        upstream,
    })
}

/// `p` with its query replaced by `query` (after an API key was taken out of it).
fn with_query(p: &http::uri::PathAndQuery, query: Option<&str>) -> http::uri::PathAndQuery {
    let text = match query {
        Some(q) => format!("{}?{q}", p.path()),
        None => p.path().to_string(),
    };
    text.parse().unwrap_or_else(|_| p.clone())
}

/// A target for a retry: another than `last` when the balancer offers one within a few picks
/// (with one target, or a hash that maps to one, the same target again).
fn pick_other(pool: &UpstreamPool, hash: Option<u64>, last: &Arc<Target>) -> Option<Arc<Target>> {
    let mut next = pool.pick(hash)?;
    for _ in 0..3 {
        if !Arc::ptr_eq(&next, last) {
            break;
        }
        next = pool.pick(hash)?;
    }
    Some(next)
}

/// The host a request is for, for its span (the match phase refuses a request without a valid one).
fn host_str<B>(req: &Request<B>) -> &str {
    request_host(req).unwrap_or("")
}

/// `uri` with its path and query replaced by `target` (the normalized path).
fn set_path(uri: &mut Uri, target: String) -> Result<(), GatewayError> {
    let invalid = || GatewayError::BadRequest("invalid request target".into());
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(target).map_err(|_| invalid())?);
    *uri = Uri::from_parts(parts).map_err(|_| invalid())?;
    Ok(())
}

/// `307` to `target`, for `escaped_slashes: unescape_and_redirect` (as Envoy answers).
fn redirect_to(target: &str) -> Result<Response<ResponseBody>, GatewayError> {
    let location =
        HeaderValue::from_str(target).map_err(|_| GatewayError::BadRequest("invalid request target".into()))?;
    let mut res = Response::new(ResponseBody::full(Bytes::new()));
    *res.status_mut() = http::StatusCode::TEMPORARY_REDIRECT;
    res.headers_mut().insert(header::LOCATION, location);
    Ok(res)
}

/// Builds the request the upstream receives.
fn upstream_request(
    route: &Route,
    target: &Target,
    mut parts: http::request::Parts,
    body: RequestBody,
    new_path: Option<http::uri::PathAndQuery>,
    client_host: Option<HeaderValue>,
) -> Result<Request<RequestBody>, GatewayError> {
    let TargetKind::Http { authority, .. } = &target.kind else {
        return Err(GatewayError::UpstreamFailed);
    };
    let upstream = &route.upstream;
    let path = new_path.or_else(|| parts.uri.path_and_query().cloned());
    let mut uri = http::uri::Parts::default();
    if upstream.http2 {
        // HTTP/2 carries scheme and authority as pseudo-headers, taken from the URI.
        uri.scheme = Some(if upstream.tls { Scheme::HTTPS } else { Scheme::HTTP });
        uri.authority = Some(authority.clone());
    }
    uri.path_and_query = path.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
    parts.uri = Uri::from_parts(uri).map_err(|_| GatewayError::BadRequest("invalid request target".into()))?;

    if upstream.http2 {
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        let host = if upstream.preserve_host {
            client_host
        } else {
            HeaderValue::from_str(authority.as_str()).ok()
        };
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
    }
    Ok(Request::from_parts(parts, body))
}

/// The consistent-hash key of a request.
fn request_hash<B>(on: &HashOn, req: &Request<B>, client: IpAddr) -> Option<u64> {
    match on {
        HashOn::Header(name) => req.headers().get(name.as_str()).map(|v| hash_key(v.as_bytes())),
        HashOn::Cookie(name) => req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| hash_key(v.as_bytes())),
        HashOn::ClientIp => Some(match client {
            std::net::IpAddr::V4(ip) => hash_key(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash_key(&ip.octets()),
        }),
    }
}
