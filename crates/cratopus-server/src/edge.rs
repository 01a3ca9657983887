//! What a plain HTTP listener answers before the engine: ACME HTTP-01 challenges, and with
//! `redirect_http_to_https` a 308 to the same host and path over HTTPS. Like every answer of the
//! gateway, these carry `X-Request-Id` and leave a line in the traffic log.

use bytes::Bytes;
use cratopus_core::Engine;
use cratopus_core::GatewayError;
use cratopus_core::body::ResponseBody;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The edge's own answer to `req` from `peer`, or `None` to hand it to the engine.
pub fn answer<B>(
    engine: &Engine,
    req: &Request<B>,
    peer: std::net::IpAddr,
    redirect: Option<u16>,
) -> Option<Response<ResponseBody>> {
    let decided = decide(engine, req, redirect)?;
    // Made only for an answer of the edge: most requests pass on to the engine, which makes its own.
    let id = cratopus_core::forward::request_id(req.headers());
    let (mut res, error) = match decided {
        Ok(res) => (res, None),
        Err(e) => (e.to_response(&id).map(ResponseBody::full), Some(e.code())),
    };
    let snap = engine.snapshot();
    if snap.traffic_log.enabled() {
        snap.traffic_log.log(cratopus_observe::LogLine {
            method: Some(req.method().clone()),
            host: cratopus_core::host::host_value(req.headers(), req.uri()),
            uri: Some(req.uri().clone()),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            error,
            ..cratopus_observe::LogLine::answered(id.clone(), peer, res.status().as_u16())
        });
    }
    engine.metrics.unrouted(res.status().as_u16());
    res.headers_mut()
        .insert(cratopus_core::forward::X_REQUEST_ID.clone(), id);
    Some(res)
}

/// The edge's answer: a response, or one of the gateway's own errors.
fn decide<B>(
    engine: &Engine,
    req: &Request<B>,
    redirect: Option<u16>,
) -> Option<Result<Response<ResponseBody>, GatewayError>> {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        let snap = engine.snapshot();
        if let Some(key_auth) = snap.tls.acme.challenge(token) {
            tracing::info!(token = %token, "answering an ACME HTTP-01 challenge");
            let mut res = Response::new(ResponseBody::full(Bytes::from(key_auth)));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Some(Ok(res));
        }
        // Not ours: a challenge is never redirected.
        return redirect.map(|_| Err(GatewayError::NoRoute));
    }
    let port = redirect?;
    if path == engine.snapshot().health_path {
        return None;
    }
    Some(match location(req, port) {
        Some(loc) => {
            let mut res = Response::new(ResponseBody::full(Bytes::new()));
            *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
            res.headers_mut().insert(header::LOCATION, loc);
            Ok(res)
        }
        None => Err(GatewayError::BadRequest(
            "a redirect to HTTPS needs a valid Host header".into(),
        )),
    })
}

/// `https://<host>[:port]<path and query>`; the host (the engine's: the target's authority over
/// `Host`) must be a plain name or address.
fn location<B>(req: &Request<B>, port: u16) -> Option<HeaderValue> {
    let host = cratopus_core::host::request_host(req).ok()?;
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
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let loc = if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    };
    HeaderValue::from_str(&loc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(host: &str, uri: &str, port: u16) -> Option<String> {
        let req = Request::get(uri).header(header::HOST, host).body(()).unwrap();
        location(&req, port).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn locations() {
        assert_eq!(loc("a.test", "/x?y=1", 443).as_deref(), Some("https://a.test/x?y=1"));
        assert_eq!(loc("a.test:8080", "/", 8443).as_deref(), Some("https://a.test:8443/"));
        assert_eq!(loc("[::1]:80", "/p", 443).as_deref(), Some("https://[::1]/p"));
        assert_eq!(loc("evil/x", "/", 443), None);
        assert_eq!(loc("", "/", 443), None);
        // An absolute-form target's authority wins over Host, as in the engine.
        assert_eq!(
            loc("b.test", "http://a.test/x", 443).as_deref(),
            Some("https://a.test/x")
        );
    }
}
