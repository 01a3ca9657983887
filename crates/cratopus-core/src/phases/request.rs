//! The request phase: the route's policy chain in order, each of which may refuse the
//! request; the body read whole once when a policy must see it (validation, GraphQL guards;
//! a policy may replace it), any other body
//! streaming through; then the headers every backend gets (`X-Forwarded-*`, `traceparent`,
//! the client certificate's header).

use super::exchange::Exchange;
use crate::body::{BodyStats, ClientBody, RequestBody, ResponseBody, fault_of};
use crate::engine::ConnInfo;
use crate::error::GatewayError;
use crate::host::host_value;
use crate::snapshot::{Org, Route, Snapshot};
use bytes::Bytes;
use cratopus_policies::chain::{Answer, Halt, RequestCx};
use http::Response;
use http::header;
use http::request::Parts;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the request phase ends with.
pub enum Requested {
    /// The body the backend gets, with the request's head as the phase left it.
    Forward(RequestBody),
    /// A policy answered it (a cache hit). Boxed: the response is 384 bytes.
    Answered(Box<Response<ResponseBody>>),
}

pub async fn phase(
    snap: &Snapshot,
    org: &Org,
    route: &Route,
    parts: &mut Parts,
    body: &mut ClientBody,
    conn: &ConnInfo,
    ex: &mut Exchange<'_>,
) -> Result<Requested, GatewayError> {
    let body = std::mem::replace(body, ClientBody::Empty);
    let from = ex.chain_from;
    let cx = ex.cx.as_mut().ok_or(GatewayError::NoRoute)?;
    if let Some(t) = &conn.tls
        && t.org.as_deref() == Some(&*org.name)
    {
        cx.cert = t.client_cert.as_ref().map(|c| c.id.clone());
    }
    // The chain runs boxed, and only when it has steps: a policy's future (~2 KB) held in
    // this one would make every request's future larger, and a future is copied whole at
    // every level that awaits it (see `cratopus_upstream::Backend::call`).
    if route.chain.len() > from
        && let Some((i, answer)) = Box::pin(run_chain(route, from, cx, parts)).await?
    {
        // The policies before the answering one run their response side on it.
        ex.chain_end = i;
        if let (Some(bg), Some(route)) = (answer.background, ex.route.clone()) {
            super::background::spawn(route, i, parts, bg, conn, ex);
        }
        return Ok(Requested::Answered(Box::new(
            answer.response.map(ResponseBody::backend),
        )));
    }

    // The body: read whole once if a policy must see it, else streamed with the route's limit.
    let wanted = route.chain.iter().filter_map(|p| p.body_limit(parts)).min();
    let body = match wanted {
        None => {
            let (body, stats) = RequestBody::new(body, route.max_body, snap.client_body_timeout);
            ex.stats = stats;
            body
        }
        Some(limit) => {
            let limit = route.max_body.map_or(limit, |m| m.min(limit));
            let mut bytes = Box::pin(read_whole(body, limit, snap.client_body_timeout)).await?;
            let read = (bytes.as_ptr(), bytes.len());
            for policy in route.chain.iter() {
                policy.on_body(cx, parts, &mut bytes)?;
            }
            // A policy replaced the body (a persisted query filled in): its own length goes on.
            // (A replaced body is a new buffer, so comparing where it is costs no byte read.)
            if (bytes.as_ptr(), bytes.len()) != read {
                parts.headers.insert(header::CONTENT_LENGTH, bytes.len().into());
            }
            let stats = Arc::new(BodyStats::default());
            stats.bytes.store(bytes.len() as u64, Ordering::Relaxed);
            ex.stats = Some(stats);
            RequestBody::full(bytes)
        }
    };

    // A policy that translates a protocol wraps the body the backend reads.
    let body = if route.wraps_bodies {
        route.chain.iter().fold(body, |b, p| p.wrap_request_body(cx, b))
    } else {
        body
    };

    // Headers as every backend sees them, the mirror included. The gateway's own
    // (`X-Forwarded-*`, `X-Request-Id`, `traceparent`) go with the backend's call, which adds
    // them (`phases::backend`).
    let client_host = host_value(&parts.headers, &parts.uri);
    parts.headers.remove(header::EXPECT); // the server answered it when the body was first read
    // The gateway's own header, never the client's (its copy went with the identity headers).
    if let Some(auth) = &org.tls.client_auth
        && let Some(v) = conn
            .tls
            .as_ref()
            .filter(|t| t.org.as_deref() == Some(&*org.name))
            .and_then(|t| t.client_cert.as_ref())
            .and_then(|c| c.header.clone())
    {
        parts.headers.insert(auth.header.clone(), v);
    }
    ex.client_host = client_host;
    Ok(Requested::Forward(body))
}

/// The route's policies from step `from` on, in order: `Some((i, answer))` when step `i`
/// answered the request itself.
async fn run_chain(
    route: &Route,
    from: usize,
    cx: &mut RequestCx,
    parts: &mut http::request::Parts,
) -> Result<Option<(usize, Answer)>, GatewayError> {
    for (i, policy) in route.chain.iter().enumerate().skip(from) {
        match policy.on_request(cx, parts).await {
            Ok(()) => {}
            Err(Halt::Refuse(r)) => return Err(r.into()),
            Err(Halt::Answer(answer)) => return Ok(Some((i, *answer))),
        }
    }
    Ok(None)
}

/// Reads a request body whole, up to `limit` bytes (413 beyond), the client pausing no longer
/// than `idle` between two pieces (408).
async fn read_whole(body: ClientBody, limit: u64, idle: Option<Duration>) -> Result<Bytes, GatewayError> {
    let (body, stats) = RequestBody::new(body, Some(limit), idle);
    body.collect().await.map(|b| b.to_bytes()).map_err(|_| {
        fault_of(stats.as_ref()).map_or(GatewayError::BadRequestBody, |f| GatewayError::from_fault(f, limit))
    })
}
