//! The edge phase: what every request passes before any organization's routes, and the
//! gateway's own answers — the health path, ACME HTTP-01 challenges, the redirect of plain HTTP
//! to HTTPS, blocked addresses; then Host → organization, the organization's TLS rules, the
//! header size limit, and path normalization (with its redirect).

use super::exchange::Exchange;
use crate::body::ResponseBody;
use crate::engine::{ConnInfo, Engine};
use crate::error::GatewayError;
use crate::forward;
use crate::host::request_host;
use crate::normalize::normalize;
use crate::snapshot::{Org, Snapshot};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Uri;
use http::{Response, StatusCode};
use std::borrow::Cow;

/// Where ACME HTTP-01 challenges are asked.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The edge's outcome: its own answer, or the organization the request goes on to.
pub enum Edge<'s> {
    /// Boxed: the answer (384 bytes) is the rare outcome.
    Answered(Box<Response<ResponseBody>>),
    Pass(&'s Org),
}

pub async fn phase<'s>(
    engine: &Engine,
    snap: &'s Snapshot,
    req: &mut Parts,
    conn: &ConnInfo,
    ex: &mut Exchange<'_>,
) -> Result<Edge<'s>, GatewayError> {
    let path = req.uri.path();
    if path == snap.health_path {
        let mut res = Response::new(ResponseBody::full(Bytes::from_static(b"{\"status\":\"ok\"}\n")));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(Edge::Answered(Box::new(res)));
    }
    if conn.tls.is_none() {
        // Owned: the lookup may wait for Redis, and the request is not shared across it.
        if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX).map(str::to_string) {
            // Boxed: a rare path, kept out of every request's future (see `Backend::call`).
            if let Some(answer) = Box::pin(challenge(snap, &token, conn.redirect_https)).await {
                return answer.map(|res| Edge::Answered(Box::new(res)));
            }
        } else if let Some(answer) = plain_http(req, conn.redirect_https) {
            return answer.map(|res| Edge::Answered(Box::new(res)));
        }
    }
    if engine.overrides.is_blocked(ex.client) {
        return Err(GatewayError::Blocked);
    }

    let host = request_host(req).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let org = snap
        .org_for_host(host)
        .ok_or_else(|| GatewayError::UnknownHost(host.to_string()))?;
    if ex.keeps_names {
        ex.org = Some(org.name.clone());
    }
    tls_rules(org, conn, ex)?;

    let target_len = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    if forward::head_size(target_len, &req.headers) > snap.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge(snap.max_header_bytes));
    }

    // The path is routed and forwarded as normalized, so the upstream reads the path that was
    // routed (see `normalize`).
    let normalized = normalize(req.uri.path(), &org.paths).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    if let Cow::Owned(p) = normalized.path {
        let target = match req.uri.query() {
            Some(q) => format!("{p}?{q}"),
            None => p,
        };
        if normalized.redirect {
            return Ok(Edge::Answered(Box::new(redirect(
                StatusCode::TEMPORARY_REDIRECT,
                &target,
            )?)));
        }
        set_path(&mut req.uri, target)?;
    }
    Ok(Edge::Pass(org))
}

/// What a plain HTTP listener answers at the ACME HTTP-01 challenge path: the key authorization
/// (never redirected); an unknown token is 404 when the listener redirects, else routed as any
/// path. On a node of a cluster a token this node does not hold is looked up in Redis (the node
/// that ordered may be another one).
async fn challenge(
    snap: &Snapshot,
    token: &str,
    redirect_to: Option<u16>,
) -> Option<Result<Response<ResponseBody>, GatewayError>> {
    if let Some(key_auth) = snap.tls.acme.challenge_anywhere(token).await {
        tracing::info!(token = %token, "answering an ACME HTTP-01 challenge");
        let mut res = Response::new(ResponseBody::full(Bytes::from(key_auth)));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Some(Ok(res));
    }
    redirect_to.map(|_| Err(GatewayError::NoRoute))
}

/// What a plain HTTP listener answers itself besides challenges: with `redirect_http_to_https`
/// a 308 to the same host and path over HTTPS (the health path excepted, answered above).
fn plain_http(req: &Parts, redirect_to: Option<u16>) -> Option<Result<Response<ResponseBody>, GatewayError>> {
    let port = redirect_to?;
    Some(match https_location(req, port) {
        Some(loc) => redirect(StatusCode::PERMANENT_REDIRECT, &loc),
        None => Err(GatewayError::BadRequest(
            "a redirect to HTTPS needs a valid Host header".into(),
        )),
    })
}

/// `https://<host>[:port]<path and query>`; the host (the target's authority over `Host`) must
/// be a plain name or address.
pub fn https_location(req: &Parts, port: u16) -> Option<String> {
    let host = request_host(req).ok()?;
    let name = match host.strip_prefix('[') {
        Some(v6) => &host[..v6.find(']')? + 2],
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    if !valid {
        return None;
    }
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    Some(if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    })
}

/// HSTS for HTTPS answers, and the organization's client-certificate rule: the certificate
/// counts only when the handshake was made for this organization (its CA verified it). A
/// request for such an organization on a connection made for another name gets 421 (a client
/// that coalesced connections then opens its own); without a certificate where one is
/// required, 401.
fn tls_rules(org: &Org, conn: &ConnInfo, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    if conn.tls.is_some() {
        ex.hsts.clone_from(&org.tls.hsts);
    }
    let Some(auth) = &org.tls.client_auth else {
        return Ok(());
    };
    let cert = match &conn.tls {
        Some(t) if t.org.as_deref() != Some(&*org.name) => return Err(GatewayError::MisdirectedRequest),
        Some(t) => t.client_cert.as_ref(),
        None => None,
    };
    if cert.is_none() && auth.required {
        return Err(GatewayError::ClientCertRequired);
    }
    Ok(())
}

/// `uri` with its path and query replaced by `target` (the normalized path).
fn set_path(uri: &mut Uri, target: String) -> Result<(), GatewayError> {
    let invalid = || GatewayError::BadRequest("invalid request target".into());
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(target).map_err(|_| invalid())?);
    *uri = Uri::from_parts(parts).map_err(|_| invalid())?;
    Ok(())
}

/// A redirect to `target`.
fn redirect(status: StatusCode, target: &str) -> Result<Response<ResponseBody>, GatewayError> {
    let location =
        HeaderValue::from_str(target).map_err(|_| GatewayError::BadRequest("invalid request target".into()))?;
    let mut res = Response::new(ResponseBody::full(Bytes::new()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::LOCATION, location);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn loc(host: &str, uri: &str, port: u16) -> Option<String> {
        let req = Request::get(uri).header(header::HOST, host).body(()).unwrap();
        https_location(&req.into_parts().0, port)
    }

    #[test]
    fn locations() {
        assert_eq!(loc("a.test", "/x?y=1", 443).as_deref(), Some("https://a.test/x?y=1"));
        assert_eq!(loc("a.test:8080", "/", 8443).as_deref(), Some("https://a.test:8443/"));
        assert_eq!(loc("[::1]:80", "/p", 443).as_deref(), Some("https://[::1]/p"));
        assert_eq!(loc("evil/x", "/", 443), None);
        assert_eq!(loc("", "/", 443), None);
        // An absolute-form target's authority wins over Host, as in the rest of the edge.
        assert_eq!(
            loc("b.test", "http://a.test/x", 443).as_deref(),
            Some("https://a.test/x")
        );
    }
}
