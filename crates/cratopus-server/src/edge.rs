//! What a plain HTTP listener answers before the engine: ACME HTTP-01 challenges, and with
//! `redirect_http_to_https` a 308 to the same host and path over HTTPS.

use bytes::Bytes;
use cratopus_core::Engine;
use cratopus_core::GatewayError;
use cratopus_core::body::ResponseBody;
use cratopus_core::forward::new_request_id;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The edge's own answer to `req`, or `None` to hand it to the engine.
pub fn answer<B>(engine: &Engine, req: &Request<B>, redirect: Option<u16>) -> Option<Response<ResponseBody>> {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        let snap = engine.snapshot();
        if let Some(key_auth) = snap.tls.acme.challenge(token) {
            tracing::info!(token = %token, "answering an ACME HTTP-01 challenge");
            let mut res = Response::new(ResponseBody::full(Bytes::from(key_auth)));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Some(res);
        }
        // Not ours: a challenge is never redirected.
        return redirect.map(|_| error(GatewayError::NoRoute));
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
            res
        }
        None => error(GatewayError::BadRequest(
            "a redirect to HTTPS needs a valid Host header".into(),
        )),
    })
}

fn error(e: GatewayError) -> Response<ResponseBody> {
    let id = new_request_id();
    let mut res = e.to_response(&id).map(ResponseBody::full);
    res.headers_mut()
        .insert(cratopus_core::forward::X_REQUEST_ID.clone(), id);
    res
}

/// `https://<host>[:port]<path and query>`; the host must be a plain name or address.
fn location<B>(req: &Request<B>, port: u16) -> Option<HeaderValue> {
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
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
    }
}
