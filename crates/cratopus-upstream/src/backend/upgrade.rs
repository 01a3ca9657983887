//! WebSocket upgrades through the backend seam: [`Backend::upgrade`] sends a WebSocket
//! handshake (an HTTP/1.1 `GET` with `Connection: Upgrade`, `Upgrade: websocket`) to the
//! route's backend and hands back its answer. A `101` keeps hyper's `OnUpgrade` in its
//! extensions (`hyper::upgrade::on(response)` gives the upgraded stream); any other answer is
//! relayed as it is.
//!
//! An upstream's upgrade goes on a FRESH HTTP/1.1 connection (with the upstream's TLS), never
//! a pooled one and never HTTP/2: the connection is the socket's for its whole life and is not
//! given back. The target is chosen, its in-flight count, breaker and errors recorded as for
//! any request; an upgrade is never retried (Envoy does not retry upgrades either).

use super::{Backend, BackendError, Call};
use crate::UpstreamCall;
use crate::body::{BackendBody, RequestBody};
use crate::conn_pool::SendError;
use crate::resilience::{self, AttemptEnd};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};

impl Backend {
    /// Sends a WebSocket handshake to this backend. A split picks its arm as for any request; a
    /// shadow upgrades its primary only (a second socket to the shadow would see the client's
    /// messages but answer nobody); a service answers it itself (a `101` with an `OnUpgrade` in
    /// its extensions upgrades).
    pub async fn upgrade(
        &self,
        call: &mut Call,
        mut req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        call.apply_forwarded(req.headers_mut());
        match self {
            Backend::Upstream(u) => u.upgrade(call, req).await,
            Backend::Shadow(s) => Box::pin(s.primary.upgrade(call, req)).await,
            Backend::Split(s) => {
                let (arm, _) = s.state.choose(req.headers(), call.client, call.consumer.as_deref());
                match s.arms.get(arm) {
                    Some(Backend::Split(_)) | None => Err(BackendError::Failed),
                    Some(b) => Box::pin(b.upgrade(call, req)).await,
                }
            }
            Backend::Service(s) => s.call(call, req).await,
            // A composed answer is a document made of several, not a socket to relay.
            Backend::Compose(_) => Err(BackendError::Failed),
            Backend::ByService(b) => Box::pin(b.upgrade(call, req)).await,
        }
    }
}

impl UpstreamCall {
    /// The upgrade to one upstream: a target from the balancer, its breaker, a fresh connection,
    /// the handshake within the route's timeout.
    pub async fn upgrade(
        &self,
        call: &mut Call,
        req: Request<RequestBody>,
    ) -> Result<Response<BackendBody>, BackendError> {
        let upstream = &self.upstream;
        call.upstream = Some(upstream.name.clone());
        let (_, target) = upstream.pick(req.headers(), call.client)?;
        let guard = target.begin();
        call.target = Some(target.label.clone());
        // The mirror answers requests, not sockets.
        let Some(addr) = target.addr() else {
            return Err(BackendError::Failed);
        };
        let breaker = upstream.breaker_permit(&target)?;

        let (mut parts, _) = req.into_parts();
        parts.version = Version::HTTP_11;
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
        if let Some(h) = upstream.host(&target, call.client_host.as_ref()) {
            parts.headers.insert(header::HOST, h);
        }
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        // A handshake has no body (an HTTP/2 CONNECT's stream is the socket itself).
        let req = Request::from_parts(parts, RequestBody::empty());

        let started = call.begin();
        let send = async {
            let mut sender = upstream.conns.connect_upgradable(addr, target.host()).await?;
            sender.send_request(req).await.map_err(|e| SendError::Request(e.into()))
        };
        let result = tokio::time::timeout(self.timeout, send).await;
        call.elapsed = Some(started.elapsed());
        let (end, outcome) = match result {
            Err(_) => (AttemptEnd::Timeout, Err(BackendError::Timeout)),
            Ok(Err(SendError::Connect(e))) => (AttemptEnd::Connect, Err(e)),
            Ok(Err(SendError::Request(e))) => {
                tracing::debug!(upstream = %upstream.name, target = %target.label, error = %e, "WebSocket handshake failed");
                (AttemptEnd::Reset, Err(BackendError::Failed))
            }
            // A `101` is a good answer to an upgrade; the breaker and outliers count it as one.
            Ok(Ok(r)) if r.status() == StatusCode::SWITCHING_PROTOCOLS => (AttemptEnd::Status(200), Ok(r)),
            Ok(Ok(r)) => (AttemptEnd::Status(r.status().as_u16()), Ok(r)),
        };
        resilience::record_attempt(&upstream.pool, &target, breaker, end);
        let res = outcome?;
        let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        let (mut parts, body) = res.into_parts();
        crate::headers::strip_hop_by_hop(&mut parts.headers);
        let body = if upgraded {
            // The socket counts against its target for as long as it is open: the relay holds
            // the guard (it travels in the extensions, beside the `OnUpgrade`).
            parts.extensions.insert(SocketGuard {
                _guard: std::sync::Arc::new(guard),
            });
            BackendBody::empty()
        } else {
            BackendBody::upstream(crate::conn_pool::UpstreamBody::Hyper(body), None, Some(guard))
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// The upgraded socket's place in its target's in-flight count (least-connections balancing
/// sees long-lived sockets), released when the relay ends.
#[derive(Clone)]
pub struct SocketGuard {
    _guard: std::sync::Arc<crate::target::InflightGuard>,
}
