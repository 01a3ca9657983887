//! The routing phase: the organization's router picks the route by path and method and the
//! routes' `match` conditions on headers, query and cookies (404 / 405); a CORS preflight is
//! answered by the route of the method it asks about; a route switched off through the admin
//! API answers 503. The routed request loses its hop-by-hop headers and the client's copies of
//! the organization's identity headers, and gets the upstream's path (the route's rewrite or
//! stripped prefix).
//!
//! A route chosen by its consumer or tier (`match: {consumers, tiers}`) is decided in two
//! steps ([`by_identity`]): the first candidate's chain runs as far as authentication, then
//! the router picks again knowing the identity.

use super::exchange::Exchange;
use crate::body::ResponseBody;
use crate::engine::{ConnInfo, Engine};
use crate::error::GatewayError;
use crate::forward;
use crate::matching::Head;
use crate::router::Match;
use crate::snapshot::{Org, Route};
use bytes::Bytes;
use cratopus_policies::chain::{Policy, RequestCx};
use cratopus_policies::cors::Preflight;
use http::Response;
use http::header;
use http::request::Parts;
use std::sync::Arc;

pub enum Routed {
    /// Boxed: the answer (384 bytes) is the rare outcome.
    Answered(Box<Response<ResponseBody>>),
    Route(Arc<Route>),
}

pub async fn phase(
    engine: &Engine,
    org: &Org,
    req: &mut Parts,
    conn: &ConnInfo,
    ex: &mut Exchange<'_>,
) -> Result<Routed, GatewayError> {
    if let Some(answer) = preflight(org, req, ex) {
        return answer.map(|res| Routed::Answered(Box::new(res)));
    }
    // A WebSocket ask, noted before its hop-by-hop headers go; an HTTP/2 CONNECT is routed as
    // the `GET` it stands for (as Envoy does).
    let websocket = crate::websocket::intent(req);
    if websocket == Some(crate::websocket::Intent::Http2) {
        req.method = http::Method::GET;
    }
    let path = req.uri.path();
    let head = Head::new(&req.headers, req.uri.query());
    let (route, upstream_path) = match org.router.find_for(&req.method, path, &head) {
        Match::Found(route, params) => {
            let p = forward::upstream_path(route, &params, path, req.uri.query());
            let mut cx = RequestCx::new(ex.client, ex.request_id.clone(), route.name.clone());
            if route.keeps_params {
                cx.params = params.iter().map(|(k, v)| (Arc::from(k), v.to_string())).collect();
            }
            ex.cx = Some(cx);
            (route.clone(), p)
        }
        Match::NotFound => return Err(GatewayError::NoRoute),
        Match::MethodNotAllowed(allow) => {
            return Err(GatewayError::MethodNotAllowed(req.method.to_string(), allow));
        }
    };
    route.metrics.request_started();
    ex.route = Some(route.clone());
    if engine.overrides.is_disabled(&route.org, &route.name) {
        return Err(GatewayError::RouteDisabled);
    }
    if let Some(intent) = websocket {
        if !route.websocket.enabled {
            return Err(GatewayError::Forbidden("WebSocket is switched off on this route"));
        }
        if let Some(Err(d)) = route.cors.as_ref().map(|c| c.check_websocket_origin(&req.headers)) {
            return Err(GatewayError::Cors {
                code: d.code(),
                message: d.to_string(),
            });
        }
        ex.websocket = Some(crate::websocket::Upgrade::new(intent, &mut req.extensions));
        if let Some(cx) = ex.cx.as_mut() {
            cx.upgrade = true;
        }
    }

    // Headers meant for this hop alone go before any policy reads or adds headers, and so do a
    // client's own copies of those the gateway sets from an identity (on every route, with
    // authentication or not): what the gateway adds later can then be neither forged nor
    // removed by a `Connection: X-Consumer-Id`.
    forward::strip_hop_by_hop(&mut req.headers);
    for h in &org.identity_headers {
        req.headers.remove(h);
    }
    let (route, upstream_path) = if route.conditions.as_ref().is_some_and(|c| c.needs_identity()) {
        // Boxed: a rare path, kept out of every request's future (see `Backend::call`).
        Box::pin(by_identity(engine, org, route, req, conn, ex)).await?
    } else {
        (route, upstream_path)
    };
    if let Some(p) = upstream_path {
        req.uri = http::Uri::from(p);
    }
    Ok(Routed::Route(route))
}

/// The route chosen by the consumer or tier: `first` (the first candidate whose header, query
/// and cookie conditions hold) runs its chain as far as authentication (its CORS note, IP
/// lists, limits placed before authentication, authentication itself; a refusal answers
/// there, as it would on `first`); then the router picks the first candidate whose conditions
/// all hold, the identity included (404 when none does). Compile made sure that every
/// candidate it may pick has the same IP lists and authentication as `first`, so what ran
/// holds for it; the request phase runs the rest of its chain, from past its authentication
/// (`Exchange::chain_from`).
async fn by_identity(
    engine: &Engine,
    org: &Org,
    first: Arc<Route>,
    parts: &mut Parts,
    conn: &ConnInfo,
    ex: &mut Exchange<'_>,
) -> Result<(Arc<Route>, Option<http::uri::PathAndQuery>), GatewayError> {
    let cx = ex.cx.as_mut().ok_or(GatewayError::NoRoute)?;
    if let Some(t) = &conn.tls
        && t.org.as_deref() == Some(&*org.name)
    {
        cx.cert = t.client_cert.as_ref().map(|c| c.id.clone());
    }
    for policy in &first.chain[..through_authentication(&first)] {
        policy.admit(cx, parts).await?;
    }
    let path = parts.uri.path();
    let head = Head::new(&parts.headers, parts.uri.query());
    let (route, upstream_path) = match org
        .router
        .find_admitted(&parts.method, path, &head, cx.identity.as_ref())
    {
        Match::Found(route, params) => {
            let p = forward::upstream_path(route, &params, path, parts.uri.query());
            cx.params.clear();
            if route.keeps_params {
                cx.params = params.iter().map(|(k, v)| (Arc::from(k), v.to_string())).collect();
            }
            (route.clone(), p)
        }
        _ => return Err(GatewayError::NoRoute),
    };
    let skip = through_authentication(&route);
    if !Arc::ptr_eq(&route, &first) {
        cx.route = route.name.clone();
        first.metrics.request_moved_to(&route.metrics);
        ex.route = Some(route.clone());
        if engine.overrides.is_disabled(&route.org, &route.name) {
            return Err(GatewayError::RouteDisabled);
        }
        // Its own CORS policy notes the `Origin` for the response, as `first`'s did; its
        // gRPC-Web step reads the head (unless `first`'s translated it already).
        for policy in route.chain[..skip]
            .iter()
            .filter(|p| matches!(p, Policy::Cors(_) | Policy::GrpcWeb))
        {
            policy.admit(cx, parts).await?;
        }
    }
    ex.chain_from = skip;
    Ok((route, upstream_path))
}

/// How many steps of the route's chain run up to and including authentication.
fn through_authentication(route: &Route) -> usize {
    route
        .chain
        .iter()
        .position(|p| matches!(p, Policy::Authenticate { .. }))
        .map_or(0, |i| i + 1)
}

/// A CORS preflight, answered by the route of the method it asks about.
fn preflight(org: &Org, req: &Parts, ex: &mut Exchange<'_>) -> Option<Result<Response<ResponseBody>, GatewayError>> {
    if req.method != http::Method::OPTIONS || !req.headers.contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())?;
    let head = Head::new(&req.headers, req.uri.query());
    let Match::Found(route, _) = org.router.find_for(&asked, req.uri.path(), &head) else {
        return None;
    };
    let answer = route.cors.as_ref()?.preflight(&req.headers, &req.method)?;
    if ex.keeps_names {
        ex.route_name = Some(route.name.clone());
    }
    Some(match answer {
        Preflight::Allow(headers) => {
            let mut res = Response::new(ResponseBody::full(Bytes::new()));
            *res.status_mut() = http::StatusCode::NO_CONTENT;
            res.headers_mut().extend(headers);
            Ok(res)
        }
        Preflight::Deny(d) => Err(GatewayError::Cors {
            code: d.code(),
            message: d.to_string(),
        }),
    })
}
