//! The routing phase: the organization's router picks the route by path and method (404 /
//! 405); a CORS preflight is answered by the route of the method it asks about; a route
//! switched off through the admin API answers 503. The routed request loses its hop-by-hop
//! headers and the client's copies of the organization's identity headers, and gets the
//! upstream's path (the route's rewrite or stripped prefix).

use super::exchange::Exchange;
use crate::body::{ClientBody, ResponseBody};
use crate::engine::Engine;
use crate::error::GatewayError;
use crate::forward;
use crate::router::Match;
use crate::snapshot::{Org, Route};
use bytes::Bytes;
use cratopus_policies::chain::RequestCx;
use cratopus_policies::cors::Preflight;
use http::header;
use http::{Request, Response};
use std::sync::Arc;

pub enum Routed {
    Answered(Response<ResponseBody>),
    Route(Arc<Route>, Request<ClientBody>),
}

pub fn phase(
    engine: &Engine,
    org: &Org,
    mut req: Request<ClientBody>,
    ex: &mut Exchange<'_>,
) -> Result<Routed, GatewayError> {
    if let Some(answer) = preflight(org, &req, ex) {
        return answer.map(Routed::Answered);
    }
    let path = req.uri().path();
    let (route, upstream_path) = match org.router.find(req.method(), path) {
        Match::Found(route, params) => {
            let p = forward::upstream_path(route, &params, path, req.uri().query());
            let mut cx = RequestCx::new(ex.client, ex.request_id.clone(), route.name.clone());
            if route.keeps_params {
                cx.params = params.iter().map(|(k, v)| (Arc::from(k), v.to_string())).collect();
            }
            ex.cx = Some(cx);
            (route.clone(), p)
        }
        Match::NotFound => return Err(GatewayError::NoRoute),
        Match::MethodNotAllowed(allow) => {
            return Err(GatewayError::MethodNotAllowed(req.method().to_string(), allow));
        }
    };
    route.metrics.request_started();
    ex.route = Some(route.clone());
    if engine.overrides.is_disabled(&route.org, &route.name) {
        return Err(GatewayError::RouteDisabled);
    }

    // Headers meant for this hop alone go before any policy reads or adds headers, and so do a
    // client's own copies of those the gateway sets from an identity (on every route, with
    // authentication or not): what the gateway adds later can then be neither forged nor
    // removed by a `Connection: X-Consumer-Id`.
    forward::strip_hop_by_hop(req.headers_mut());
    for h in &org.identity_headers {
        req.headers_mut().remove(h);
    }
    if let Some(p) = upstream_path {
        *req.uri_mut() = http::Uri::from(p);
    }
    Ok(Routed::Route(route, req))
}

/// A CORS preflight, answered by the route of the method it asks about.
fn preflight(
    org: &Org,
    req: &Request<ClientBody>,
    ex: &mut Exchange<'_>,
) -> Option<Result<Response<ResponseBody>, GatewayError>> {
    if req.method() != http::Method::OPTIONS || !req.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())?;
    let Match::Found(route, _) = org.router.find(&asked, req.uri().path()) else {
        return None;
    };
    let answer = route.cors.as_ref()?.preflight(req.headers(), req.method())?;
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
