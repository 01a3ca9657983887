//! The backend phase: the route's backend answers. The engine does not know which kind it is
//! (an upstream, a split, a shadow, an in-process service); it hands over what the backend may
//! read of the request ([`Call`]) and keeps what the backend reports for the log.

use super::exchange::Exchange;
use crate::body::{RequestBody, ResponseBody};
use crate::engine::ConnInfo;
use crate::error::GatewayError;
use crate::snapshot::Route;
use cratopus_upstream::{BackendError, Call};
use http::{Request, Response};

pub async fn phase(
    route: &Route,
    req: Request<RequestBody>,
    conn: &ConnInfo,
    ex: &mut Exchange<'_>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let mut call = Call::new(ex.client, conn.peer);
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
    let answer = match &mut ex.websocket {
        None => route.backend.call(call, req).await,
        Some(ws) => {
            let mut req = req;
            crate::websocket::prepare(ws, &route.websocket, req.headers_mut());
            // Boxed, as every rare path of the request's future: held in place, it would make
            // every request's future as large as this one's (see `Backend::call`).
            match Box::pin(route.backend.upgrade(call, req)).await {
                Ok(mut res) => {
                    if ws.accept(&mut res) {
                        Ok(res)
                    } else {
                        tracing::debug!(status = %res.status(), "the backend did not switch to WebSocket");
                        Err(BackendError::Failed)
                    }
                }
                Err(e) => Err(e),
            }
        }
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
