//! A request the gateway sends on in the background after a policy answered it
//! ([`cratopus_policies::chain::Answer::background`]: the cache's stale-while-revalidate
//! refresh). The client already has its answer; this runs the rest of the route's chain, the
//! backend, and the response side from the answering policy on (which stores the new answer),
//! then reads the body to its end and drops it. It has no traffic-log line of its own (the
//! backend's metrics and the cache's counters see it); a failure leaves the stale entry as it is.

use super::exchange::Exchange;
use crate::body::RequestBody;
use crate::engine::ConnInfo;
use crate::forward::Forwarded;
use crate::host::host_value;
use crate::snapshot::Route;
use cratopus_policies::chain::RequestCx;
use cratopus_upstream::Call;
use http::Request;
use std::sync::Arc;

/// Sends a copy of `parts` (no body) on from step `at` of `route`'s chain, with `cx`.
pub fn spawn(
    route: Arc<Route>,
    at: usize,
    parts: &http::request::Parts,
    mut cx: Box<RequestCx>,
    conn: &ConnInfo,
    ex: &Exchange<'_>,
) {
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    let (mut parts, ()) = req.into_parts();
    let (request_id, trace) = (ex.request_id.clone(), ex.trace);
    let conn = conn.clone();
    tokio::spawn(async move {
        for p in route.chain.iter().skip(at + 1) {
            if p.on_request(&mut cx, &mut parts).await.is_err() {
                return;
            }
        }
        let client_host = host_value(&parts.headers, &parts.uri);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let mut call = Call::new(cx.client, conn.peer);
        // As for any request: the backend adds the gateway's headers.
        call.forwarded = Some(Forwarded::new(
            &parts.headers,
            &conn.peer_ip,
            conn.scheme,
            &request_id,
            trace.traceparent(),
        ));
        call.client_host = client_host;
        call.consumer = cx.consumer.clone();
        let Ok(res) = route
            .backend
            .call(&mut call, Request::from_parts(parts, RequestBody::empty()))
            .await
        else {
            tracing::debug!(route = %route.name, "a background refresh failed");
            return;
        };
        let (mut head, mut body) = res.into_parts();
        let chain = &route.chain[at..];
        for p in chain.iter().rev() {
            p.on_response(&mut cx, &mut head);
        }
        if route.wraps_bodies {
            body = chain
                .iter()
                .rev()
                .fold(body, |b, p| p.wrap_response_body(&mut cx, &head, b));
        }
        body.drain().await;
    });
}
