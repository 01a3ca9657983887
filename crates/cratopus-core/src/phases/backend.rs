//! The backend phase: the route's backend answers. The engine does not know which kind it is
//! (an upstream, a split, a shadow, an in-process service); it hands over what the backend may
//! read of the request ([`Call`]) and keeps what the backend reports for the log.
//!
//! The phase is two plain functions around the backend's own future: [`call`] prepares the
//! call and returns that future (boxed by the backend), which the engine awaits, and [`settle`]
//! turns its outcome into the engine's. An `async fn` here would hold the request and the
//! backend's future in one more future of its own, copied whole when the engine awaits it.

use super::exchange::Exchange;
use crate::body::{RequestBody, ResponseBody};
use crate::engine::ConnInfo;
use crate::error::GatewayError;
use crate::forward::Forwarded;
use crate::snapshot::Route;
use cratopus_upstream::backend::Answer;
use cratopus_upstream::{BackendBody, BackendError, Call};
use http::{Request, Response};

/// The backend's call for `req`: the future the engine awaits, then hands to [`settle`].
pub fn call<'x>(
    route: &'x Route,
    mut req: Request<RequestBody>,
    conn: &ConnInfo,
    ex: &'x mut Exchange<'_>,
) -> Answer<'x> {
    let mut call = Call::new(ex.client, conn.peer);
    // Made here, from the request as the policies left it; the backend adds them.
    call.forwarded = Some(Forwarded::new(
        req.headers(),
        &conn.peer_ip,
        conn.scheme,
        &ex.request_id,
        ex.trace.traceparent(),
    ));
    call.client_host = ex.client_host.take();
    call.consumer = ex.cx.as_ref().and_then(|cx| cx.consumer.clone());
    call.body = ex.stats.clone();
    call.body_limit = route.max_body;
    if ex.grpc {
        call.grpc = true;
        call.deadline = cratopus_upstream::grpc::timeout(req.headers()).map(|t| ex.start + t);
    }
    if route.backend.wants_params()
        && let Some(cx) = &ex.cx
    {
        call.params = cx.params.clone();
    }
    let call = ex.call.insert(call);
    match &mut ex.websocket {
        None => route.backend.call(call, req),
        Some(ws) => {
            crate::websocket::prepare(ws, &route.websocket, req.headers_mut());
            Box::pin(async move {
                let mut res = route.backend.upgrade(call, req).await?;
                if ws.accept(&mut res) {
                    Ok(res)
                } else {
                    tracing::debug!(status = %res.status(), "the backend did not switch to WebSocket");
                    Err(BackendError::Failed)
                }
            })
        }
    }
}

/// The backend's answer as the engine's: what the backend reported goes to the log, and a
/// failure becomes the gateway's error, unless a policy answers for the failed backend.
pub fn settle(
    route: &Route,
    answer: Result<Response<BackendBody>, BackendError>,
    ex: &mut Exchange<'_>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let Some(call) = ex.call.as_mut() else {
        return Err(GatewayError::UpstreamFailed);
    };
    if !call.log_fields.is_empty()
        && let Some(cx) = ex.cx.as_mut()
    {
        cx.log_fields.extend(
            call.log_fields
                .drain(..)
                .map(|(k, v)| (k, cratopus_observe::traffic_log::LogValue::Str(v))),
        );
    }
    match answer {
        Ok(res) => Ok(res.map(ResponseBody::backend)),
        Err(e) => {
            call.end_if_unset();
            // A policy may answer for the failed backend (the cache's stale-if-error).
            if route.rescues
                && ex.websocket.is_none()
                && let Some(cx) = ex.cx.as_mut()
                && let Some(res) = route.chain.iter().rev().find_map(|p| p.on_backend_error(cx, &e))
            {
                return Ok(res.map(ResponseBody::backend));
            }
            Err(match e {
                BackendError::NoHealthyTarget(name) => GatewayError::NoHealthyTarget(name.to_string()),
                BackendError::Unreachable => GatewayError::UpstreamUnreachable,
                BackendError::Timeout => GatewayError::UpstreamTimeout,
                BackendError::Failed => GatewayError::UpstreamFailed,
                BackendError::Tls => GatewayError::UpstreamTls,
                BackendError::Overloaded => GatewayError::Overloaded,
                BackendError::Client(f) => GatewayError::from_fault(f, route.max_body.unwrap_or(0)),
            })
        }
    }
}
