//! One upstream as a backend: a healthy target from the balancer, its circuit breaker, retries
//! within the budget, outlier recording, and the pooled connection. `mirror://` targets answer
//! in process.

use super::{BackendError, Call};
use crate::body::{BackendBody, BodyFault, RequestBody, fault_of};
use crate::bulkhead::Bulkhead;
use crate::conn_pool::{ConnPool, SendError, UpstreamBody};
use crate::h1_client::Added;
use crate::resilience::{self, AttemptEnd, PendingAttempt, Retry};
use crate::retry::Failure;
use crate::{InflightGuard, Target, TargetKind, UpstreamPool, balancer::hash_key};
use bytes::Bytes;
use cratopus_config::HashOn;
use http::header::{self, HeaderValue};
use http::uri::{Scheme, Uri};
use http::{Request, Response, Version};
use http_body::Body;
use http_body_util::BodyExt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upstream as the hot path uses it: its targets and its keep-alive connections. Carried
/// over a reload while its config does not change.
pub struct Upstream {
    pub name: Arc<str>,
    pub pool: Arc<UpstreamPool>,
    pub conns: Arc<ConnPool>,
    pub response_timeout: Duration,
    /// The longest pause in a response body (`timeouts.read`; zero: none).
    pub read_timeout: Duration,
    pub preserve_host: bool,
    /// HTTP/2 to the targets: h2c, or h2 over TLS.
    pub http2: bool,
    /// The targets are `https://`.
    pub tls: bool,
    /// The upstream's retry policy and budget, for routes without their own.
    pub retry: Option<Arc<Retry>>,
    /// In-flight limit over every route to this upstream.
    pub bulkhead: Option<Arc<Bulkhead>>,
}

impl Upstream {
    /// The request's consistent-hash key (when the upstream hashes) and the target the balancer
    /// gives it.
    pub(super) fn pick(
        &self,
        headers: &http::HeaderMap,
        client: IpAddr,
    ) -> Result<(Option<u64>, Arc<Target>), BackendError> {
        let hash = self.pool.hash_on().and_then(|h| request_hash(h, headers, client));
        let target = self
            .pool
            .pick(hash)
            .ok_or_else(|| BackendError::NoHealthyTarget(self.name.clone()))?;
        Ok((hash, target))
    }

    /// A place in `target`'s circuit breaker, if it has one; refused when its half-open probes
    /// are all out (the target takes nothing more for now).
    pub(super) fn breaker_permit<'t>(
        &self,
        target: &'t Target,
    ) -> Result<Option<crate::breaker::Permit<'t>>, BackendError> {
        match target.breaker.as_ref().map(|b| b.try_acquire(Instant::now())) {
            None => Ok(None),
            Some(Ok(p)) => Ok(Some(p)),
            Some(Err(_)) => Err(BackendError::NoHealthyTarget(self.name.clone())),
        }
    }

    /// The `Host` an HTTP/1.1 request to `target` carries: the client's with `preserve_host`,
    /// else the target's `host:port` (made once, with the target).
    pub(super) fn host(&self, target: &Target, client_host: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.preserve_host {
            client_host.cloned()
        } else {
            target.authority_value().cloned()
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A route's call to one upstream: the upstream, with the route's timeout and retry policy.
#[derive(Debug)]
pub struct UpstreamCall {
    pub upstream: Arc<Upstream>,
    /// Time to the response head, per attempt.
    pub timeout: Duration,
    /// The longest pause between two frames of the response body (zero: none).
    pub read_timeout: Duration,
    /// The route's retry policy, or its upstream's.
    pub retry: Option<Arc<Retry>>,
}

/// The result of one attempt's send, with its response timeout.
type Sent = Result<Result<Response<UpstreamBody>, SendError>, tokio::time::error::Elapsed>;

impl UpstreamCall {
    /// Sends `req` to a target of the upstream. Boxed, as every backend kind's call is: without
    /// a retry policy a request is one attempt, in a future under half the size of the
    /// retrying one's (1.5 against 3.2 KB in a release build: each request's future is copied
    /// whole into its box, and the retrying one keeps the request's parts for a second send).
    pub fn call<'a>(&'a self, call: &'a mut Call, req: Request<RequestBody>) -> super::Answer<'a> {
        match self.retry {
            None => Box::pin(self.once(call, req)),
            Some(_) => Box::pin(self.with_retries(call, req)),
        }
    }

    /// The upstream's bulkhead place, held until the response body ends.
    async fn bulkhead(&self) -> Result<Option<crate::BulkheadPermit>, BackendError> {
        match &self.upstream.bulkhead {
            Some(b) => Ok(Some(b.acquire().await.map_err(|_| BackendError::Overloaded)?)),
            None => Ok(None),
        }
    }

    /// The response timeout of an attempt: the route's, within the request's deadline.
    fn attempt_timeout(&self, call: &Call) -> Duration {
        match call.deadline {
            Some(d) => self.timeout.min(d.saturating_duration_since(Instant::now())),
            None => self.timeout,
        }
    }

    /// One attempt, without retries. (Not an `async fn`: that would keep a second copy of
    /// `req` in the future, the argument moved into a local.)
    #[allow(clippy::manual_async_fn)]
    fn once<'a>(
        &'a self,
        call: &'a mut Call,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<BackendBody>, BackendError>> + Send + 'a {
        async move {
            let upstream = &self.upstream;
            call.upstream = Some(upstream.name.clone());
            let permit = match upstream.bulkhead {
                Some(_) => Box::pin(self.bulkhead()).await?,
                None => None,
            };
            let (_, target) = upstream.pick(req.headers(), call.client)?;
            let guard = target.begin();
            let started = call.begin();
            call.target = Some(target.label.clone());
            let Some(addr) = target.addr() else {
                let (parts, body) = req.into_parts();
                return Box::pin(mirror(call, parts, body, started, guard, permit)).await;
            };
            let breaker = upstream.breaker_permit(&target)?;
            let (parts, body) = req.into_parts();
            let (req, host) = upstream_request(upstream, &target, parts, body, call)?;
            let sent = tokio::time::timeout(
                self.attempt_timeout(call),
                upstream
                    .conns
                    .send(addr, target.host(), req, added(call, host.as_ref())),
            )
            .await;
            call.elapsed = Some(started.elapsed());
            let (end, outcome) = self.judge(call, &target, sent)?;
            let attempt = self.settle_attempt(&target, breaker, end, &outcome);
            self.answer(outcome?, attempt, guard, permit)
        }
    }

    /// What one send came to: the client's fault (an error at once: nothing is recorded,
    /// retried or timed against the target), or how the attempt ended and its response.
    fn judge(
        &self,
        call: &mut Call,
        target: &Target,
        sent: Sent,
    ) -> Result<(AttemptEnd, Result<Response<UpstreamBody>, BackendError>), BackendError> {
        let upstream = &self.upstream;
        if !matches!(sent, Ok(Ok(_)))
            && let Some(f) = client_fault(call, sent.is_err())
        {
            // The client's doing, not the target's: nothing to record (the breaker's
            // permit goes back unused), nothing to retry, and no upstream latency (a
            // stalled upload would read as a slow target); the log keeps `upstream_ms`.
            tracing::debug!(upstream = %upstream.name, target = %target.label, "the client broke its request");
            call.client_fault = true;
            return Err(BackendError::Client(f));
        }
        Ok(match sent {
            Err(_) => (AttemptEnd::Timeout, Err(BackendError::Timeout)),
            Ok(Err(SendError::Connect(e))) => (AttemptEnd::Connect, Err(e)),
            Ok(Err(SendError::Request(e))) => {
                tracing::debug!(upstream = %upstream.name, target = %target.label, error = %e, "upstream request failed");
                if e.is_timeout() {
                    (AttemptEnd::Timeout, Err(BackendError::Timeout))
                } else {
                    (AttemptEnd::Reset, Err(BackendError::Failed))
                }
            }
            Ok(Ok(r)) if r.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                // The gateway never asks for an upgrade (`Upgrade` is hop-by-hop), so a 101
                // is the target's error; relayed, it would switch the client to nothing.
                tracing::debug!(upstream = %upstream.name, target = %target.label, "unsolicited 101 from the upstream");
                (AttemptEnd::Reset, Err(BackendError::Failed))
            }
            Ok(Ok(r)) => (AttemptEnd::Status(r.status().as_u16()), Ok(r)),
        })
    }

    /// Records the attempt for the breaker and outlier detection: a good head with a body
    /// still to come is judged when the body ends (the target may yet cut it short); anything
    /// else now.
    fn settle_attempt(
        &self,
        target: &Arc<Target>,
        breaker: Option<crate::breaker::Permit<'_>>,
        end: AttemptEnd,
        outcome: &Result<Response<UpstreamBody>, BackendError>,
    ) -> Option<PendingAttempt> {
        let pool = &self.upstream.pool;
        match outcome {
            Ok(r) if end.failure().is_none() && !r.body().is_end_stream() => PendingAttempt::new(pool, target, breaker),
            _ => {
                resilience::record_attempt(pool, target, breaker, end);
                None
            }
        }
    }

    /// The target's response as the backend's answer: hop-by-hop headers dropped, the body
    /// holding the attempt, the target's in-flight count and the bulkhead place to its end.
    fn answer(
        &self,
        res: Response<UpstreamBody>,
        attempt: Option<PendingAttempt>,
        guard: InflightGuard,
        permit: Option<crate::BulkheadPermit>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let (mut parts, body) = res.into_parts();
        crate::headers::strip_hop_by_hop(&mut parts.headers);
        let mut body = BackendBody::upstream(body, attempt, Some(guard)).read_timeout(Some(self.read_timeout));
        body.hold_permit(permit);
        Ok(Response::from_parts(parts, body))
    }

    /// Attempts within the retry policy and budget.
    async fn with_retries(
        &self,
        call: &mut Call,
        req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let upstream = &self.upstream;
        call.upstream = Some(upstream.name.clone());
        let permit = self.bulkhead().await?;
        let (hash, mut target) = upstream.pick(req.headers(), call.client)?;
        let mut guard = target.begin();

        // A small body is read whole when a retry may have to send it again; any other body
        // streams, and its request is retried only when it had none.
        let retry = self.retry.as_deref();
        let keep_for_retry = retry.is_some_and(|r| {
            !req.body().is_end_stream()
                && r.policy.may_retry(req.method())
                && content_length(req.headers()).is_some_and(|n| n <= r.policy.buffer_body)
        });
        // A gRPC call that a named gRPC status may retry keeps a copy of its messages as they
        // stream (it has no length to read it whole by, and a bidirectional call cannot wait).
        let record = retry.is_some_and(|r| r.policy.on_grpc != 0 && call.grpc) && !keep_for_retry;
        let (parts, mut body) = req.into_parts();
        let recording =
            (record && !body.is_end_stream()).then(|| body.record(retry.map_or(0, |r| r.policy.buffer_body)));
        let mut kept = None;
        let body = if keep_for_retry {
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|_| BackendError::Client(fault_of(call.body.as_ref()).unwrap_or(BodyFault::Broken)))?;
            kept = Some(bytes.clone()); // a reference count, not a copy
            RequestBody::full(bytes)
        } else {
            body
        };
        if let Some(r) = retry {
            r.budget.on_request(Instant::now());
        }
        let replay = (retry.is_some() && (body.is_end_stream() || kept.is_some() || recording.is_some()))
            .then(|| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
        let method = parts.method.clone();
        let mut first = Some((parts, body));
        let started = call.begin();
        let mut tries = 1u32;
        loop {
            call.target = Some(target.label.clone());
            let (parts, body) = match (first.take(), &replay) {
                (Some(p), _) => p,
                (None, Some((m, u, h))) => {
                    let mut p = Request::new(()).into_parts().0;
                    (p.method, p.uri, p.headers) = (m.clone(), u.clone(), h.clone());
                    let body = match (&kept, &recording) {
                        (Some(k), _) => RequestBody::full(k.clone()),
                        (None, Some(r)) => r.replay().map_or_else(RequestBody::empty, RequestBody::full),
                        (None, None) => RequestBody::empty(),
                    };
                    (p, body)
                }
                (None, None) => return Err(BackendError::Failed),
            };
            // The mirror answers in process: the first pick, or a retry that landed on the
            // mirror of a mixed upstream.
            let Some(addr) = target.addr() else {
                return Box::pin(mirror(call, parts, body, started, guard, permit)).await;
            };
            let breaker = upstream.breaker_permit(&target)?;
            let (req, host) = upstream_request(upstream, &target, parts, body, call)?;
            let result = tokio::time::timeout(
                self.attempt_timeout(call),
                upstream
                    .conns
                    .send(addr, target.host(), req, added(call, host.as_ref())),
            )
            .await;
            call.elapsed = Some(started.elapsed());
            let (end, outcome) = self.judge(call, &target, result)?;
            let attempt = self.settle_attempt(&target, breaker, end, &outcome);

            // Retry: a failure the policy retries, within the budget, before anything of the
            // response has been sent to the client (a 5xx head is dropped unread), to another
            // target when there is one.
            // A gRPC failure is an answer of status 200 whose head carries `grpc-status`
            // (Trailers-Only); it is retried only when the request's bytes were all kept.
            let failure = end.failure().or_else(|| match (&outcome, retry) {
                (Ok(r), Some(rt)) if rt.policy.on_grpc != 0 && call.grpc => crate::grpc::head_status(r.headers())
                    .filter(|s| *s != 0)
                    .map(Failure::Grpc),
                _ => None,
            });
            let replayable = recording.as_ref().is_none_or(|r| r.complete());
            let again = match (retry, failure, &replay) {
                (Some(r), Some(f), Some(_)) if replayable => {
                    r.policy.should_retry(&method, f, tries) && r.budget.try_retry(Instant::now())
                }
                _ => false,
            };
            if let (true, Some(next)) = (
                again,
                again.then(|| pick_other(&upstream.pool, hash, &target)).flatten(),
            ) {
                tries += 1;
                tracing::debug!(upstream = %upstream.name, from = %target.label, to = %next.label, attempt = tries, "retrying");
                drop(outcome);
                let wait = retry.map(|r| r.policy.backoff(tries - 1)).unwrap_or_default();
                tokio::time::sleep(wait).await;
                target = next;
                guard = target.begin();
                continue;
            }
            return self.answer(outcome?, attempt, guard, permit);
        }
    }
}

/// The mirror's answer, in process: a target of a mixed upstream that is `mirror://`.
async fn mirror(
    call: &mut Call,
    mut parts: http::request::Parts,
    body: RequestBody,
    started: Instant,
    guard: InflightGuard,
    permit: Option<crate::BulkheadPermit>,
) -> Result<Response<BackendBody>, BackendError> {
    // The echo shows the request as a target would get it, the gateway's headers in it.
    call.forwarded_into(&mut parts.headers);
    let res = cratopus_mirror::echo(Request::from_parts(parts, body), call.peer).await;
    call.elapsed = Some(started.elapsed());
    call.whole = true;
    if let Some(f) = fault_of(call.body.as_ref()) {
        return Err(BackendError::Client(f));
    }
    let (parts, bytes): (_, Bytes) = res.into_parts();
    let mut body = BackendBody::full(bytes);
    body.hold(guard);
    body.hold_permit(permit);
    Ok(Response::from_parts(parts, body))
}

/// The request body's declared length.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether an upstream call failed by the client's fault: its body grew too large, broke or
/// stalled; or the response timeout fired (`timed_out`) while the body was still waiting for
/// the client's bytes (the target cannot answer a request it has not got; Envoy likewise
/// starts a route's timeout only once the request has been read).
fn client_fault(call: &Call, timed_out: bool) -> Option<BodyFault> {
    let s = call.body.as_ref()?;
    match s.fault() {
        Some(f) => Some(f),
        None if timed_out && s.waiting_on_client() => Some(BodyFault::Stalled),
        None => None,
    }
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

/// What the HTTP/1.1 client writes into the head besides the request's headers: `host` and
/// the call's forwarded headers.
fn added<'a>(call: &'a Call, host: Option<&'a HeaderValue>) -> Added<'a> {
    Added {
        host,
        forwarded: call.forwarded.as_ref(),
        forwarded_host: call.client_host.as_ref(),
    }
}

/// Builds the request the target receives: the URI in the form its protocol wants. Over
/// HTTP/2 the gateway's headers go into its map; over HTTP/1.1 the client writes them and the
/// `Host` returned here into the head (see [`crate::forwarded`]).
fn upstream_request(
    upstream: &Upstream,
    target: &Target,
    mut parts: http::request::Parts,
    body: RequestBody,
    call: &Call,
) -> Result<(Request<RequestBody>, Option<HeaderValue>), BackendError> {
    let TargetKind::Http { authority, .. } = &target.kind else {
        return Err(BackendError::Failed);
    };
    let mut uri = http::uri::Parts::default();
    if upstream.http2 {
        // HTTP/2 carries scheme and authority as pseudo-headers, taken from the URI.
        uri.scheme = Some(if upstream.tls { Scheme::HTTPS } else { Scheme::HTTP });
        uri.authority = Some(authority.clone());
    }
    uri.path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
    parts.uri = Uri::from_parts(uri).map_err(|_| BackendError::Failed)?;

    if upstream.http2 {
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
        call.forwarded_into(&mut parts.headers);
        Ok((Request::from_parts(parts, body), None))
    } else {
        parts.version = Version::HTTP_11;
        let host = upstream.host(target, call.client_host.as_ref());
        Ok((Request::from_parts(parts, body), host))
    }
}

/// The consistent-hash key of a request.
fn request_hash(on: &HashOn, headers: &http::HeaderMap, client: IpAddr) -> Option<u64> {
    match on {
        HashOn::Header(name) => headers.get(name.as_str()).map(|v| hash_key(v.as_bytes())),
        HashOn::Cookie(name) => crate::headers::cookie(headers, name).map(|v| hash_key(v.as_bytes())),
        HashOn::ClientIp => Some(match client {
            IpAddr::V4(ip) => hash_key(&ip.octets()),
            IpAddr::V6(ip) => hash_key(&ip.octets()),
        }),
    }
}
