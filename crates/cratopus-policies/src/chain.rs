//! A route's policies as one compiled chain.
//!
//! Each policy of this crate is one [`Policy`] value; a route holds them in the order they run
//! (`cratopus-core` builds the list in `chain_builder.rs`, the one place that order is written).
//! The engine runs [`Policy::on_request`] of each in order before the backend — any may refuse
//! the request, with a [`Refusal`] — then, if one wants it, reads the body whole once for
//! [`Policy::on_body`] (which may judge the body and may also replace it: the engine then
//! sends the new one, with its own `Content-Length`); on the way back it runs [`Policy::on_response`] of every policy in
//! reverse order, on every answer of the route (the backend's and the gateway's own refusals).
//!
//! Dispatch is a `match` over an enum rather than a trait object: the chain is a flat array of
//! small values, no future is boxed per policy, and the compiler sees every arm. (The criterion
//! bench `chain` measures the difference against `Box<dyn>`; see docs/architecture.md.)
//!
//! [`RequestCx`] is what the policies learn about a request and hand on to the later ones, to
//! the backend and to the log: the identity, the tightest rate limit's answer, why a request
//! was refused.

use crate::auth::{AuthError, Authenticator, CertId, Identity};
use crate::auth_failures::{self, AuthFailureGuard};
use crate::authz::Authorizer;
use crate::cors::Cors;
use crate::forwarding::Forwarding;
use crate::graphql::{GraphqlGuard, GraphqlRefusal};
use crate::ip_rules::IpRules;
use crate::modify::Modifiers;
use crate::validation::{Validator, Violation};
use crate::{QuotaPolicy, RateDecision, RateLimitPolicy};
use bytes::Bytes;
use cratopus_observe::traffic_log::LogValue;
use cratopus_state::SharedLimiter;
use cratopus_upstream::{BackendBody, Bulkhead, BulkheadPermit, RequestBody};
use http::header::{self, HeaderName, HeaderValue};
use std::net::IpAddr;
use std::sync::Arc;

/// `X-Consumer-Id`: the authenticated consumer, for the upstream; only the gateway sets it.
pub static X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");

/// What the phases learn about one request.
#[derive(Debug)]
pub struct RequestCx {
    pub client: IpAddr,
    pub request_id: HeaderValue,
    /// The connection's verified client certificate, when the handshake was for this organization.
    pub cert: Option<Arc<CertId>>,
    /// Who the request was authenticated as.
    pub identity: Option<Identity>,
    /// The consumer's id, for the log and the backend.
    pub consumer: Option<Arc<str>>,
    /// The route's path parameters, name → value (filled only for routes whose policies read them).
    pub params: Vec<(Arc<str>, String)>,
    /// The tightest rate limit's answer, for the `RateLimit-*` headers.
    pub rate: Option<RateDecision>,
    /// Why a policy refused the request (`expired`, `missing_scope`, …), for the log.
    pub reason: Option<&'static str>,
    /// The request's `Origin`, for CORS on the response.
    pub origin: Option<HeaderValue>,
    /// Requests let through over a soft rate limit, and refused over a limit or quota: the
    /// route's metrics count them in the log phase.
    pub soft_over: u32,
    pub refused_over: u32,
    /// Places held until the response ends (bulkheads).
    pub permits: Vec<BulkheadPermit>,
    /// The route's name, for the policies that log it.
    pub route: Arc<str>,
    /// Fields a policy adds to the request's traffic-log line (see
    /// [`cratopus_observe::traffic_log::LogLine::fields`]).
    pub log_fields: Vec<(&'static str, LogValue)>,
    /// A gRPC-Web request being translated (see [`crate::grpc_web`]).
    pub grpc_web: Option<crate::grpc_web::Mode>,
    /// The negotiated response encoding and what was done with it (see [`crate::compress`]).
    pub compress: Option<crate::compress::Plan>,
    /// What the response cache decided for this request (see [`crate::cache`]).
    pub cache: Option<Box<crate::cache::CacheCx>>,
    /// The request asks to switch protocols (a WebSocket handshake; its `Upgrade` header is
    /// gone by the time the chain runs): no stored answer may stand in for it.
    pub upgrade: bool,
}

impl RequestCx {
    pub fn new(client: IpAddr, request_id: HeaderValue, route: Arc<str>) -> RequestCx {
        RequestCx {
            client,
            request_id,
            cert: None,
            identity: None,
            consumer: None,
            params: Vec::new(),
            rate: None,
            reason: None,
            origin: None,
            soft_over: 0,
            refused_over: 0,
            permits: Vec::new(),
            route,
            log_fields: Vec::new(),
            grpc_web: None,
            compress: None,
            cache: None,
            upgrade: false,
        }
    }

    /// A context for a request the gateway sends on its own behalf in the background
    /// ([`Answer::background`]): who the request is from, nothing it has learned since.
    pub fn fork(&self) -> RequestCx {
        let mut cx = RequestCx::new(self.client, self.request_id.clone(), self.route.clone());
        cx.cert = self.cert.clone();
        cx.identity = self.identity.clone();
        cx.consumer = self.consumer.clone();
        cx.params = self.params.clone();
        cx.grpc_web = self.grpc_web;
        cx
    }
}

/// Why a policy's [`Policy::on_request`] stops the request before the backend.
#[derive(Debug)]
pub enum Halt {
    /// Refused: answered with the gateway's error for the refusal.
    Refuse(Refusal),
    /// Answered by the policy (a cache hit): the backend is not called; the policies before
    /// this one run their response side (and body wrappers) on the answer, as on a refusal,
    /// the later ones nothing.
    Answer(Box<Answer>),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.response.status())
            .field("background", &self.background.is_some())
            .finish()
    }
}

impl From<Refusal> for Halt {
    fn from(r: Refusal) -> Halt {
        Halt::Refuse(r)
    }
}

/// A policy's own answer to a request.
pub struct Answer {
    pub response: http::Response<BackendBody>,
    /// The request also goes on to the backend in the background with this context (a
    /// stale-while-revalidate refresh): the policies after the answering one run their
    /// request side, the backend answers, and the policies from the answering one on run their
    /// response side and body wrappers on that answer, which is then read to its end and
    /// dropped. Only for requests without a body; the client never waits for it.
    pub background: Option<Box<RequestCx>>,
}

/// What a policy answers instead of the backend.
#[derive(Debug, Clone)]
pub enum Refusal {
    IpDenied,
    Unauthenticated {
        code: &'static str,
        detail: &'static str,
        challenge: HeaderValue,
    },
    Forbidden(&'static str),
    /// The route hides itself from those it refuses: answered as if it did not exist (404).
    Hidden,
    RateLimited(u64),
    QuotaExceeded(u64),
    /// The shared counters are unreachable and the gateway fails closed.
    LimitsUnavailable,
    Overloaded,
    BodyTooLarge(u64),
    Invalid(Arc<Violation>),
    /// A GraphQL guard's refusal, answered as GraphQL errors.
    Graphql(Arc<GraphqlRefusal>),
}

/// The rate limits of a route, asked together (see [`Policy::on_request`]).
pub struct RateLimits {
    pub limits: Vec<Arc<RateLimitPolicy>>,
    pub store: Arc<SharedLimiter>,
}

/// The quotas of a route, in order.
pub struct Quotas {
    pub quotas: Vec<Arc<QuotaPolicy>>,
    pub store: Arc<SharedLimiter>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

/// One step of a route's chain.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Client address allow and deny lists (the organization's and the route's are two steps).
    IpRules(Arc<IpRules>),
    /// Records the request's `Origin` and answers CORS headers on every response.
    Cors(Arc<Cors>),
    /// Refuses a client locked out by failed authentications (429), before authentication.
    AuthFailures(Arc<AuthFailureGuard>),
    /// Who the request is from; `hides` answers a failure with 404; `failures` counts the
    /// failures of presented credentials for the route's `auth_failures`.
    Authenticate {
        auth: Arc<Authenticator>,
        hides: bool,
        failures: Option<Arc<AuthFailureGuard>>,
    },
    Authorize(Arc<Authorizer>),
    RateLimits(Arc<RateLimits>),
    Quotas(Arc<Quotas>),
    /// The route's largest body, judged by `Content-Length` before anything is read.
    BodyLimit(u64),
    /// Required headers and query parameters; a JSON Schema for the body.
    Validate(Arc<Validator>),
    /// The route's in-flight limit, held until the response ends.
    Bulkhead(Arc<Bulkhead>),
    /// Zero-trust forwarding: only the listed headers and query parameters go on.
    Forward(Arc<Forwarding>),
    /// Header and query modifiers: the organization's, then the route's.
    Modify(Arc<Modifiers>),
    /// GraphQL guards: operation limits, persisted queries, APQ.
    Graphql(Arc<GraphqlGuard>),
    /// gRPC-Web to gRPC and back: heads, and both bodies.
    GrpcWeb,
    /// Response compression (gzip, br, zstd) by the client's `Accept-Encoding`; the last
    /// step of a chain, so the first on the way back.
    Compress(Arc<crate::compress::Compression>),
    /// The response cache: answers hits, stores misses as they stream to the client.
    Cache(Arc<crate::cache::CachePolicy>),
}

impl Policy {
    /// The policy's name, for `cratopus routes` and the docs' phase chart.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::IpRules(_) => "ip_rules",
            Policy::Cors(_) => "cors",
            Policy::AuthFailures(_) => "auth_failures",
            Policy::Authenticate { .. } => "authenticate",
            Policy::Authorize(_) => "authorize",
            Policy::RateLimits(_) => "rate_limit",
            Policy::Quotas(_) => "quota",
            Policy::BodyLimit(_) => "body_limit",
            Policy::Validate(_) => "validate",
            Policy::Bulkhead(_) => "bulkhead",
            Policy::Forward(_) => "forward",
            Policy::Modify(_) => "modify",
            Policy::Graphql(_) => "graphql",
            Policy::GrpcWeb => "grpc_web",
            Policy::Compress(_) => "compress",
            Policy::Cache(_) => "cache",
        }
    }

    /// Whether the policy reads the route's path parameters ([`RequestCx::params`]): the
    /// routing phase copies them only for routes whose chain does.
    pub fn reads_params(&self) -> bool {
        match self {
            Policy::Modify(m) => m.reads_params(),
            _ => false,
        }
    }

    /// Runs before the backend; may refuse the request, or answer it instead of the backend
    /// ([`Halt`]).
    pub async fn on_request(&self, cx: &mut RequestCx, req: &mut http::request::Parts) -> Result<(), Halt> {
        match self {
            Policy::Cache(c) => c.on_request(cx, req).await,
            _ => self.admit(cx, req).await.map_err(Halt::Refuse),
        }
    }

    /// The request side as far as letting the request through or refusing it: what the
    /// routing phase runs of a chain through authentication (no policy there answers; a policy
    /// that answers, the cache, sits after authentication and does nothing here).
    pub async fn admit(&self, cx: &mut RequestCx, req: &mut http::request::Parts) -> Result<(), Refusal> {
        match self {
            Policy::IpRules(r) => {
                if r.permits(cx.client) {
                    Ok(())
                } else {
                    Err(Refusal::IpDenied)
                }
            }
            Policy::Cors(_) => {
                cx.origin = req.headers.get(header::ORIGIN).cloned();
                Ok(())
            }
            Policy::AuthFailures(guard) => match guard.gate(cx.client).await {
                Ok(None) => Ok(()),
                Ok(Some(locked)) => {
                    cx.reason = Some("locked out after failed authentications");
                    cx.refused_over += 1;
                    Err(Refusal::RateLimited(locked.retry_after))
                }
                Err(_) => Err(Refusal::LimitsUnavailable),
            },
            Policy::Authenticate { auth, hides, failures } => {
                authenticate(auth, *hides, failures.as_deref(), cx, req).await
            }
            Policy::Authorize(authz) => {
                let anonymous = Identity::default();
                authz.check(cx.identity.as_ref().unwrap_or(&anonymous)).map_err(|why| {
                    cx.reason = Some(why);
                    if authz.hides() {
                        Refusal::Hidden
                    } else {
                        Refusal::Forbidden(why)
                    }
                })
            }
            Policy::RateLimits(l) => rate_limits(l, cx, req).await,
            Policy::Quotas(q) => quotas(q, cx, req).await,
            Policy::BodyLimit(limit) => {
                let declared = req
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|n| n > *limit) {
                    Err(Refusal::BodyTooLarge(*limit))
                } else {
                    Ok(())
                }
            }
            Policy::Validate(v) => v
                .check_head(&req.headers, req.uri.query())
                .map_err(|e| Refusal::Invalid(Arc::new(e))),
            Policy::Bulkhead(b) => {
                cx.permits.push(b.acquire().await.map_err(|_| Refusal::Overloaded)?);
                Ok(())
            }
            Policy::Forward(fw) => {
                fw.filter_headers(&mut req.headers);
                if fw.filters_query() {
                    let query = fw.filter_query(req.uri.query().unwrap_or(""));
                    set_query(&mut req.uri, query.as_deref());
                }
                Ok(())
            }
            Policy::Modify(m) => {
                m.on_request(&*cx, req);
                Ok(())
            }
            Policy::Graphql(g) => g.on_request(cx, req).map_err(|e| graphql_refusal(cx, e)),
            Policy::GrpcWeb => {
                // Once: a route chosen by consumer may run it after its first candidate did.
                if cx.grpc_web.is_none() {
                    cx.grpc_web = crate::grpc_web::on_request(&mut req.headers);
                }
                Ok(())
            }
            Policy::Compress(c) => {
                c.on_request(cx, req);
                Ok(())
            }
            Policy::Cache(_) => Ok(()),
        }
    }

    /// Whether the policy may wrap the request or the response body
    /// ([`Policy::wrap_request_body`], [`Policy::wrap_response_body`]): the engine asks only
    /// the chains that have such a policy (a flag of the route, set at compile), so that other
    /// routes pay nothing for the hooks.
    pub fn wraps_bodies(&self) -> bool {
        matches!(self, Policy::GrpcWeb | Policy::Compress(_) | Policy::Cache(_))
    }

    /// Whether the policy may answer for a failed backend ([`Policy::on_backend_error`]): the
    /// engine asks only the chains that have such a policy (a flag of the route).
    pub fn rescues(&self) -> bool {
        matches!(self, Policy::Cache(_))
    }

    /// The backend failed (could not be reached, timed out, its breaker is open, it is
    /// overloaded): a policy may answer instead of the gateway's error (the cache's
    /// stale-if-error). Asked in reverse chain order; the first answer wins, and then runs
    /// through every policy's response side as the backend's would.
    pub fn on_backend_error(
        &self,
        cx: &mut RequestCx,
        err: &cratopus_upstream::BackendError,
    ) -> Option<http::Response<BackendBody>> {
        match self {
            Policy::Cache(c) => c.on_backend_error(cx, err),
            _ => None,
        }
    }

    /// The request body as the backend gets it: a policy that translates a protocol (or,
    /// later, decompresses) wraps it here, after every `on_request` and `on_body`. The body
    /// keeps the route's limit and idle timeout inside the wrapper.
    pub fn wrap_request_body(&self, cx: &RequestCx, body: RequestBody) -> RequestBody {
        match (self, cx.grpc_web) {
            (Policy::GrpcWeb, Some(mode)) => crate::grpc_web::request_body(mode, body),
            _ => body,
        }
    }

    /// The response body as the client gets it, wrapped after every `on_response` (so a
    /// wrapper sees the final head, `res`), in the chain's reverse order like `on_response`.
    /// Runs on the gateway's own answers too.
    pub fn wrap_response_body(
        &self,
        cx: &mut RequestCx,
        res: &http::response::Parts,
        body: BackendBody,
    ) -> BackendBody {
        if let Policy::Cache(c) = self {
            return c.wrap_response_body(cx, body);
        }
        match (self, cx.grpc_web) {
            // Only an answer that is gRPC has gRPC's framing and trailers to translate.
            (Policy::GrpcWeb, Some(mode)) if is_grpc_web(&res.headers) => crate::grpc_web::response_body(mode, body),
            (Policy::Compress(c), _) => c.wrap_response_body(cx, body),
            _ => body,
        }
    }

    /// The largest body this policy reads whole for [`Policy::on_body`], when it needs to see
    /// this request's body; `None` when it does not.
    pub fn body_limit(&self, req: &http::request::Parts) -> Option<u64> {
        match self {
            Policy::Validate(v) if v.needs_body(&req.method, &req.headers) => Some(v.body_limit().unwrap_or(u64::MAX)),
            Policy::Graphql(g) => g.body_limit(req),
            _ => None,
        }
    }

    /// Judges the body, read whole once for every policy that asked, in chain order; a policy
    /// may replace it (the GraphQL guard fills in a persisted query), and the later ones and the
    /// backend see the new one.
    pub fn on_body(&self, cx: &mut RequestCx, req: &http::request::Parts, body: &mut Bytes) -> Result<(), Refusal> {
        match self {
            Policy::Validate(v) => v.check_body(body).map_err(|e| Refusal::Invalid(Arc::new(e))),
            Policy::Graphql(g) if req.method == http::Method::POST => {
                g.on_body(cx, &req.headers, body).map_err(|e| graphql_refusal(cx, e))
            }
            _ => Ok(()),
        }
    }

    /// Runs on the way back, in reverse order, on every answer of the route. A policy may note
    /// what it did in `cx` (for its body wrapper, for the log line: `cx.log_fields`), since
    /// only the response side sees the answer's head.
    pub fn on_response(&self, cx: &mut RequestCx, res: &mut http::response::Parts) {
        match self {
            Policy::Cache(c) => c.on_response(cx, res),
            Policy::Cors(c) => c.apply(cx.origin.as_ref(), &mut res.headers),
            Policy::RateLimits(_) => {
                if let Some(rate) = &cx.rate {
                    rate.write_headers(&mut res.headers);
                }
            }
            Policy::Modify(m) => m.on_response(cx, res),
            Policy::Compress(c) => c.on_response(cx, res),
            Policy::GrpcWeb => {
                if let Some(mode) = cx.grpc_web {
                    crate::grpc_web::on_response(mode, &mut res.headers);
                }
            }
            _ => {}
        }
    }
}

/// A GraphQL refusal, its name noted for the log.
fn graphql_refusal(cx: &mut RequestCx, e: GraphqlRefusal) -> Refusal {
    cx.reason = Some(e.kind.name());
    Refusal::Graphql(Arc::new(e))
}

/// An answer `on_response` turned into gRPC-Web.
fn is_grpc_web(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web"))
}

async fn authenticate(
    auth: &Authenticator,
    hides: bool,
    failures: Option<&AuthFailureGuard>,
    cx: &mut RequestCx,
    req: &mut http::request::Parts,
) -> Result<(), Refusal> {
    match auth.authenticate(&cx.route, req, cx.cert.as_deref()).await {
        Ok(id) => {
            if let Some(c) = &id.consumer {
                cx.consumer = Some(c.id.clone());
                if let Some(v) = &c.header {
                    req.headers.insert(X_CONSUMER_ID.clone(), v.clone());
                }
            }
            cx.identity = Some(id);
            Ok(())
        }
        Err(e) => {
            if let Some(guard) = failures
                && auth_failures::counts(&e)
            {
                guard.record_failure(cx.client, &cx.route).await;
            }
            Err(refuse_auth(auth, hides, cx, &e))
        }
    }
}

fn refuse_auth(auth: &Authenticator, hides: bool, cx: &mut RequestCx, e: &AuthError) -> Refusal {
    cx.reason = Some(e.detail());
    if hides {
        return Refusal::Hidden;
    }
    Refusal::Unauthenticated {
        code: e.code(),
        detail: e.detail(),
        challenge: auth.challenge.clone(),
    }
}

/// Runs the route's rate limits. Several are asked at once: on the multiplexed Redis
/// connection their scripts go out together and share one round trip, instead of one round trip
/// each in turn (so each is counted even when another refuses, as Envoy's rate limit service
/// counts every descriptor). Keeps the tightest limit's answer for the response headers.
async fn rate_limits(l: &RateLimits, cx: &mut RequestCx, req: &http::request::Parts) -> Result<(), Refusal> {
    let (headers, client, identity) = (&req.headers, cx.client, cx.identity.as_ref());
    let decisions = if l.limits.len() > 1 {
        futures_util::future::join_all(l.limits.iter().map(|policy| async move {
            let mut key = String::with_capacity(64);
            policy.check(&l.store, headers, client, identity, &mut key).await
        }))
        .await
    } else {
        let mut key = String::with_capacity(64);
        match l.limits.first() {
            Some(policy) => vec![policy.check(&l.store, headers, client, identity, &mut key).await],
            None => Vec::new(),
        }
    };
    for (policy, d) in l.limits.iter().zip(decisions) {
        // `None`: no limit of the policy applies (a tier it does not list, and no default).
        let Some(d) = d.map_err(|_| Refusal::LimitsUnavailable)? else {
            continue;
        };
        if !d.allowed {
            if d.refuses() {
                cx.refused_over += 1;
                let retry = d.retry_after;
                cx.rate = Some(d);
                return Err(Refusal::RateLimited(retry));
            }
            cx.soft_over += 1;
            policy.note_soft_over(&cx.route);
        }
        if cx.rate.as_ref().is_none_or(|r| d.remaining < r.remaining) {
            cx.rate = Some(d);
        }
    }
    Ok(())
}

/// Runs the route's quotas in order; a spent one refuses with 429.
async fn quotas(q: &Quotas, cx: &mut RequestCx, req: &http::request::Parts) -> Result<(), Refusal> {
    let mut key = String::with_capacity(64);
    for quota in &q.quotas {
        let d = quota
            .check(&q.store, &req.headers, cx.client, cx.identity.as_ref(), &mut key)
            .await
            .map_err(|_| Refusal::LimitsUnavailable)?;
        if !d.allowed {
            cx.refused_over += 1;
            return Err(Refusal::QuotaExceeded(d.resets_in));
        }
    }
    Ok(())
}

/// Replaces the query of `uri` (`None`: no `?` at all).
pub fn set_query(uri: &mut http::Uri, query: Option<&str>) {
    let path = uri.path();
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let Ok(pq) = http::uri::PathAndQuery::try_from(text) else {
        return;
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(u) = http::Uri::from_parts(parts) {
        *uri = u;
    }
}
