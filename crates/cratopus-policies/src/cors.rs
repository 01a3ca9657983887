//! CORS: answers browsers' preflight requests and adds the `Access-Control-*` headers to the
//! route's responses (Fetch standard, "CORS protocol").
//!
//! Everything that does not depend on the request (the methods, the max age, the exposed
//! headers, the parsed origins) is rendered at compile time; per request the policy compares
//! the `Origin` with a few strings and clones precomputed header values.
//!
//! Choices where the standard leaves room, following Kong, APISIX and Envoy:
//! - A preflight that is refused gets 403 with a reason, rather than a 204 without headers:
//!   the browser fails it either way, but the operator sees why in the traffic log and with curl.
//! - No `allow_headers` (or `*`) echoes whatever headers the preflight asks for: the origin is
//!   the check that matters, and listing every header an SPA sends is a chore that breaks on
//!   each new one. A list, when given, is enforced, with the four CORS-safelisted names
//!   (`Accept`, `Accept-Language`, `Content-Language`, `Content-Type`) always allowed, since
//!   `Content-Type: application/json` alone makes browsers ask.
//! - The origin `*` without credentials answers `Access-Control-Allow-Origin: *` and no
//!   `Vary: Origin` (the answer is the same for everyone, so caches may share it); every other
//!   configuration echoes the allowed origin and always adds `Vary: Origin`, also to answers
//!   without `Origin` or with a refused one, so that a cache never serves one origin's answer to
//!   another.
//! - On a route with this policy the gateway owns `Access-Control-Allow-Origin`, `-Credentials`
//!   and `-Expose-Headers`: the backend's are dropped, else a backend answering `*` would reopen
//!   what the policy closes.

use cratopus_config::http_policies::{CorsConfig, OriginPattern};
use http::Method;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN, VARY,
};

/// Request headers a list of `allow_headers` always admits: the CORS-safelisted names.
const SAFELISTED: [&str; 4] = ["accept", "accept-language", "content-language", "content-type"];

/// Longest origin, method or header name quoted back in a refusal, so that a client cannot
/// make the error body as large as its request head.
const QUOTE_MAX: usize = 100;

/// One compiled CORS policy.
#[derive(Debug)]
pub struct Cors {
    /// `*` is listed and credentials are off: every origin, answered with `*`.
    any_origin: bool,
    /// Exact origins, normalized (lower case, default port dropped).
    exact: Vec<Box<str>>,
    subdomains: Vec<Subdomains>,
    /// `Access-Control-Allow-Credentials: true` goes out; never with `any_origin`.
    credentials: bool,
    /// `None`: any method (`*`), echoed back.
    methods: Option<Vec<Method>>,
    /// `None`: any header, echoed back. Else lower-case names, the safelisted ones included.
    headers: Option<Vec<Box<str>>>,
    allow_methods: Option<HeaderValue>,
    max_age: HeaderValue,
    expose: Option<HeaderValue>,
}

/// `scheme://*.suffix[:port]`, compiled from [`OriginPattern::Subdomains`].
#[derive(Debug)]
struct Subdomains {
    /// `https://`.
    prefix: Box<str>,
    /// `.example.com`.
    suffix: Box<str>,
    port: Option<u16>,
}

/// The answer to a preflight request.
#[derive(Debug)]
pub enum Preflight {
    /// Answer 204 with these headers and no body.
    Allow(HeaderMap),
    /// Answer 403 with the gateway's JSON error (see [`CorsDenial::code`]).
    Deny(CorsDenial),
}

/// Why a preflight was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsDenial {
    /// The `Origin` is not among `allow_origins`; carries it (shortened).
    Origin(String),
    /// `Access-Control-Request-Method` is not among `allow_methods`.
    Method(String),
    /// A name of `Access-Control-Request-Headers` is not among `allow_headers`.
    Header(String),
}

impl CorsDenial {
    /// The `code` of the gateway's JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            CorsDenial::Origin(_) => "cors_origin_not_allowed",
            CorsDenial::Method(_) => "cors_method_not_allowed",
            CorsDenial::Header(_) => "cors_header_not_allowed",
        }
    }
}

impl std::fmt::Display for CorsDenial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorsDenial::Origin(o) => write!(f, "CORS: origin `{o}` is not allowed on this route"),
            CorsDenial::Method(m) => write!(f, "CORS: method `{m}` is not allowed on this route"),
            CorsDenial::Header(h) => write!(f, "CORS: request header `{h}` is not allowed on this route"),
        }
    }
}

/// `Vary` of every preflight answer: it depends on all three request headers.
static PREFLIGHT_VARY: HeaderValue =
    HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
static STAR: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");

impl Cors {
    /// Compiles a config that passed [`CorsConfig::problems`]; entries it would have flagged
    /// are skipped. `*` with credentials (refused there) drops the credentials rather than
    /// let every site read answers with the user's cookies.
    pub fn compile(cfg: &CorsConfig) -> Cors {
        let mut any = false;
        let mut exact = Vec::new();
        let mut subdomains = Vec::new();
        for o in &cfg.allow_origins {
            match OriginPattern::parse(o) {
                Ok(OriginPattern::Any) => any = true,
                Ok(OriginPattern::Exact(e)) => exact.push(e.into_boxed_str()),
                Ok(OriginPattern::Subdomains { scheme, suffix, port }) => subdomains.push(Subdomains {
                    prefix: format!("{scheme}://").into(),
                    suffix: suffix.into(),
                    port,
                }),
                Err(_) => {}
            }
        }
        let methods = if cfg.allow_methods.iter().any(|m| m == "*") {
            None
        } else {
            let mut v: Vec<Method> = Vec::new();
            for m in &cfg.allow_methods {
                if let Ok(m) = Method::from_bytes(m.trim().as_bytes())
                    && !v.contains(&m)
                {
                    v.push(m);
                }
            }
            Some(v)
        };
        let allow_methods = methods
            .as_ref()
            .and_then(|v| HeaderValue::from_str(&v.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")).ok());
        let headers = if cfg.allow_headers.is_empty() || cfg.allow_headers.iter().any(|h| h == "*") {
            None
        } else {
            let mut v: Vec<Box<str>> = SAFELISTED.iter().map(|&s| s.into()).collect();
            for h in &cfg.allow_headers {
                let h = h.trim().to_ascii_lowercase();
                if !v.iter().any(|x| **x == *h) {
                    v.push(h.into());
                }
            }
            Some(v)
        };
        let expose: Vec<&str> = cfg
            .expose_headers
            .iter()
            .map(|h| h.trim())
            .filter(|h| !(cfg.allow_credentials && *h == "*"))
            .collect();
        Cors {
            any_origin: any && !cfg.allow_credentials,
            // `*` with credentials: no origin is allowed through the `*` (see above), the
            // listed ones still are, without credentials.
            credentials: cfg.allow_credentials && !any,
            exact,
            subdomains,
            methods,
            headers,
            allow_methods,
            max_age: HeaderValue::from(cfg.max_age.0.as_secs()),
            expose: (!expose.is_empty())
                .then(|| HeaderValue::from_str(&expose.join(", ")).ok())
                .flatten(),
        }
    }

    /// Answers a preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    /// `None` for every other request, which goes on (an `OPTIONS` without those headers is
    /// not a preflight and goes to the backend).
    pub fn preflight(&self, req_headers: &HeaderMap, method: &Method) -> Option<Preflight> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = req_headers.get(ORIGIN)?;
        let req_method = req_headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return Some(Preflight::Deny(CorsDenial::Origin(quote(origin.as_bytes()))));
        };
        let method_ok = match (&self.methods, Method::from_bytes(req_method.as_bytes())) {
            (_, Err(_)) => false,
            (None, Ok(_)) => true,
            (Some(list), Ok(m)) => list.contains(&m),
        };
        if !method_ok {
            return Some(Preflight::Deny(CorsDenial::Method(quote(req_method.as_bytes()))));
        }
        let mut requested = req_headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS).iter().peekable();
        let echo_headers = if requested.peek().is_none() {
            None
        } else {
            let mut joined: Vec<u8> = Vec::new();
            for v in requested {
                for name in v.as_bytes().split(|&b| b == b',') {
                    let name = name.trim_ascii();
                    if name.is_empty() {
                        continue;
                    }
                    if !self.header_allowed(name) {
                        return Some(Preflight::Deny(CorsDenial::Header(quote(name))));
                    }
                    if !joined.is_empty() {
                        joined.extend_from_slice(b", ");
                    }
                    joined.extend_from_slice(name);
                }
            }
            (!joined.is_empty())
                .then(|| HeaderValue::from_bytes(&joined).ok())
                .flatten()
        };

        let mut h = HeaderMap::with_capacity(7);
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        let methods = self.allow_methods.as_ref().unwrap_or(req_method);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
        if let Some(v) = echo_headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        h.insert(VARY, PREFLIGHT_VARY.clone());
        Some(Preflight::Allow(h))
    }

    /// Adds the CORS headers to an answer of the route: the backend's, the gateway's own
    /// errors, a refused preflight's 403. `req_origin` is the request's `Origin`. Safe to call
    /// twice on one answer.
    pub fn apply(&self, req_origin: Option<&HeaderValue>, res_headers: &mut HeaderMap) {
        for name in [
            &ACCESS_CONTROL_ALLOW_ORIGIN,
            &ACCESS_CONTROL_ALLOW_CREDENTIALS,
            &ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            if res_headers.contains_key(name) {
                res_headers.remove(name);
            }
        }
        if !self.any_origin {
            add_vary(res_headers, "Origin");
        }
        let Some(allow_origin) = req_origin.and_then(|o| self.allowed_origin(o)) else {
            return;
        };
        res_headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            res_headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        if let Some(e) = &self.expose {
            res_headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }

    /// The `Origin` of a WebSocket handshake, checked by the gateway: browsers apply no CORS to
    /// WebSockets (they only send `Origin`), so a page of any site could open a socket with
    /// the user's cookies unless the server refuses it (cross-site WebSocket hijacking). A
    /// handshake without `Origin` (not from a browser) passes.
    pub fn check_websocket_origin(&self, req_headers: &HeaderMap) -> Result<(), CorsDenial> {
        match req_headers.get(ORIGIN) {
            Some(o) if self.allowed_origin(o).is_none() => Err(CorsDenial::Origin(quote(o.as_bytes()))),
            _ => Ok(()),
        }
    }

    /// The `Access-Control-Allow-Origin` for this `Origin`, or `None` when it is not allowed.
    fn allowed_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin {
            return Some(STAR.clone());
        }
        let o = origin.to_str().ok()?;
        let allowed =
            self.exact.iter().any(|e| e.eq_ignore_ascii_case(o)) || self.subdomains.iter().any(|s| s.matches(o));
        allowed.then(|| origin.clone())
    }

    fn header_allowed(&self, name: &[u8]) -> bool {
        match &self.headers {
            None => name.iter().all(|&b| is_tchar(b)),
            Some(list) => list.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name)),
        }
    }
}

impl Subdomains {
    /// Whether `origin` is `prefix` + one or more DNS labels + `suffix` (+ the port). The
    /// labels must be whole: `https://evil-example.com` and `https://example.com.evil.net`
    /// are not subdomains of `.example.com`, nor is `https://example.com`.
    fn matches(&self, origin: &str) -> bool {
        let Some(rest) = strip_prefix_ignore_case(origin, &self.prefix) else {
            return false;
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(n)),
                _ => return false,
            },
            None => (rest, None),
        };
        let port = match (&*self.prefix, port) {
            ("https://", Some(443)) | ("http://", Some(80)) => None,
            (_, p) => p,
        };
        if port != self.port || host.len() <= self.suffix.len() {
            return false;
        }
        let (sub, suffix) = host.split_at(host.len() - self.suffix.len());
        suffix.eq_ignore_ascii_case(&self.suffix)
            && sub.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }
}

/// Adds `name` to the response's `Vary` unless it is there already (in any case, in any of
/// several `Vary` lines) or `Vary: *` makes it moot. Existing values are kept and merged into
/// one line, which every cache reads right.
pub fn add_vary(headers: &mut HeaderMap, name: &'static str) {
    let mut any = false;
    for v in headers.get_all(VARY) {
        for t in v.as_bytes().split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t == b"*" || t.eq_ignore_ascii_case(name.as_bytes()) {
                return;
            }
            any |= !t.is_empty();
        }
    }
    if !any {
        headers.insert(VARY, HeaderValue::from_static(name));
        return;
    }
    let mut merged: Vec<u8> = Vec::new();
    for v in headers.get_all(VARY) {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            merged.extend_from_slice(v);
            merged.extend_from_slice(b", ");
        }
    }
    merged.extend_from_slice(name.as_bytes());
    match HeaderValue::from_bytes(&merged) {
        Ok(v) => {
            headers.insert(VARY, v);
        }
        Err(_) => {
            headers.append(VARY, HeaderValue::from_static(name));
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// A character of an HTTP token (RFC 9110 §5.6.2): what a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request value fit to quote in an error message: lossy UTF-8, at most [`QUOTE_MAX`]
/// characters.
fn quote(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    match s.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_config::Dur;

    fn cfg(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: Dur::secs(600),
        }
    }

    fn preflight_req(origin: &str, method: &str, headers: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_str(method).unwrap());
        if let Some(v) = headers {
            h.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn allowed(p: Option<Preflight>) -> HeaderMap {
        match p {
            Some(Preflight::Allow(h)) => h,
            other => panic!("expected an allowed preflight, got {other:?}"),
        }
    }

    fn denied(p: Option<Preflight>) -> CorsDenial {
        match p {
            Some(Preflight::Deny(d)) => d,
            other => panic!("expected a refused preflight, got {other:?}"),
        }
    }

    #[test]
    fn preflight_allowed_echoes_origin_and_headers() {
        let c = Cors::compile(&cfg(&["https://app.example.com"]));
        let req = preflight_req("https://app.example.com", "PUT", Some("Content-Type, X-Custom"));
        let h = allowed(c.preflight(&req, &Method::OPTIONS));
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(
            h[ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "Content-Type, X-Custom");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(h[VARY].to_str().unwrap().starts_with("Origin, "));
        // Without requested headers there is nothing to allow.
        let h = allowed(c.preflight(&preflight_req("https://app.example.com", "GET", None), &Method::OPTIONS));
        assert!(h.get(ACCESS_CONTROL_ALLOW_HEADERS).is_none());
        // Origins compare without regard to case.
        allowed(c.preflight(&preflight_req("HTTPS://APP.example.com", "GET", None), &Method::OPTIONS));
    }

    #[test]
    fn not_a_preflight() {
        let c = Cors::compile(&cfg(&["*"]));
        let req = preflight_req("https://a.test", "GET", None);
        assert!(c.preflight(&req, &Method::GET).is_none());
        let mut no_acrm = req.clone();
        no_acrm.remove(ACCESS_CONTROL_REQUEST_METHOD);
        assert!(c.preflight(&no_acrm, &Method::OPTIONS).is_none());
        let mut no_origin = req;
        no_origin.remove(ORIGIN);
        assert!(c.preflight(&no_origin, &Method::OPTIONS).is_none());
    }

    #[test]
    fn preflight_denied_by_origin_method_or_header() {
        let mut cfg = cfg(&["https://app.example.com"]);
        cfg.allow_methods = vec!["GET".into(), "POST".into()];
        cfg.allow_headers = vec!["Authorization".into(), "X-Tenant".into()];
        let c = Cors::compile(&cfg);
        let d = denied(c.preflight(&preflight_req("https://evil.test", "GET", None), &Method::OPTIONS));
        assert_eq!(d, CorsDenial::Origin("https://evil.test".into()));
        assert_eq!(d.code(), "cors_origin_not_allowed");
        assert!(d.to_string().contains("https://evil.test"));

        let d = denied(c.preflight(
            &preflight_req("https://app.example.com", "DELETE", None),
            &Method::OPTIONS,
        ));
        assert_eq!(d, CorsDenial::Method("DELETE".into()));
        // Methods are case-sensitive, as the browser compares them.
        let d = denied(c.preflight(
            &preflight_req("https://app.example.com", "post", None),
            &Method::OPTIONS,
        ));
        assert_eq!(d.code(), "cors_method_not_allowed");

        let d = denied(c.preflight(
            &preflight_req("https://app.example.com", "POST", Some("authorization,x-secret")),
            &Method::OPTIONS,
        ));
        assert_eq!(d, CorsDenial::Header("x-secret".into()));
        assert_eq!(d.code(), "cors_header_not_allowed");

        // Listed and safelisted names pass, in any case; the answer echoes what was asked.
        let h = allowed(c.preflight(
            &preflight_req(
                "https://app.example.com",
                "POST",
                Some("content-type, AUTHORIZATION, x-tenant"),
            ),
            &Method::OPTIONS,
        ));
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "content-type, AUTHORIZATION, x-tenant");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
    }

    #[test]
    fn wildcard_subdomains_match_whole_labels() {
        let c = Cors::compile(&cfg(&["https://*.example.com", "http://localhost:3000"]));
        let ok = |o: &str| c.allowed_origin(&HeaderValue::from_str(o).unwrap()).is_some();
        assert!(ok("https://app.example.com"));
        assert!(ok("https://a.b.example.com"));
        assert!(ok("https://App.Example.COM"));
        assert!(ok("https://app.example.com:443"));
        assert!(ok("http://localhost:3000"));
        for bad in [
            "https://example.com",
            "https://evil-example.com",
            "https://evilexample.com",
            "https://example.com.evil.net",
            "https://app.example.com.evil.net",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://.example.com",
            "https://a..example.com",
            "https://a/b.example.com",
            "https://user@app.example.com",
            "https://app.example.com/",
            "http://localhost:3001",
            "http://localhost",
            "null",
            "",
        ] {
            assert!(!ok(bad), "{bad} allowed");
        }
    }

    #[test]
    fn credentials_echo_the_origin() {
        let mut cfg = cfg(&["https://app.example.com"]);
        cfg.allow_credentials = true;
        cfg.expose_headers = vec!["RateLimit-Remaining".into(), "X-Request-Id".into()];
        let c = Cors::compile(&cfg);
        let origin = HeaderValue::from_static("https://app.example.com");
        let mut res = HeaderMap::new();
        c.apply(Some(&origin), &mut res);
        assert_eq!(res[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(res[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(res[ACCESS_CONTROL_EXPOSE_HEADERS], "RateLimit-Remaining, X-Request-Id");
        assert_eq!(res[VARY], "Origin");
        let h = allowed(c.preflight(&preflight_req("https://app.example.com", "GET", None), &Method::OPTIONS));
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");

        // `*` with credentials (refused by `problems()`) never lets every site in with cookies.
        let mut star = cfg.clone();
        star.allow_origins = vec!["*".into(), "https://app.example.com".into()];
        let c = Cors::compile(&star);
        let mut res = HeaderMap::new();
        c.apply(Some(&HeaderValue::from_static("https://evil.test")), &mut res);
        assert!(res.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let mut res = HeaderMap::new();
        c.apply(Some(&origin), &mut res);
        assert_eq!(res[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert!(res.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }

    #[test]
    fn any_origin_answers_star_without_vary() {
        let mut cfg = cfg(&["*"]);
        cfg.expose_headers = vec!["*".into()];
        cfg.allow_methods = vec!["*".into()];
        let c = Cors::compile(&cfg);
        let mut res = HeaderMap::new();
        c.apply(Some(&HeaderValue::from_static("https://anyone.test")), &mut res);
        assert_eq!(res[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(res[ACCESS_CONTROL_EXPOSE_HEADERS], "*");
        assert!(res.get(VARY).is_none());
        let h = allowed(c.preflight(
            &preflight_req("https://anyone.test", "PROPFIND", Some("x-a")),
            &Method::OPTIONS,
        ));
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "PROPFIND");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "x-a");
    }

    #[test]
    fn apply_replaces_the_backends_headers_and_varies_on_origin() {
        let c = Cors::compile(&cfg(&["https://app.example.com"]));
        // A refused origin gets no CORS headers, not even the backend's `*`.
        let mut res = HeaderMap::new();
        res.insert(ACCESS_CONTROL_ALLOW_ORIGIN, STAR.clone());
        res.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        c.apply(Some(&HeaderValue::from_static("https://evil.test")), &mut res);
        assert!(res.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(res.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(res[VARY], "Origin");
        // No Origin (curl, server to server): no CORS headers, but the answer still varies.
        let mut res = HeaderMap::new();
        c.apply(None, &mut res);
        assert_eq!(res.len(), 1);
        assert_eq!(res[VARY], "Origin");
        // Twice is the same as once.
        let origin = HeaderValue::from_static("https://app.example.com");
        let mut res = HeaderMap::new();
        c.apply(Some(&origin), &mut res);
        c.apply(Some(&origin), &mut res);
        assert_eq!(res.get_all(VARY).iter().count(), 1);
        assert_eq!(res.get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().count(), 1);
    }

    #[test]
    fn apply_leaves_a_preflight_answer_as_it_is() {
        let mut cfg = cfg(&["https://app.example.com"]);
        cfg.allow_credentials = true;
        let c = Cors::compile(&cfg);
        let origin = HeaderValue::from_static("https://app.example.com");
        let mut h = allowed(c.preflight(&preflight_req("https://app.example.com", "GET", None), &Method::OPTIONS));
        let before = h.clone();
        c.apply(Some(&origin), &mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn shared_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<Cors>();
    }

    #[test]
    fn vary_merges() {
        let vary = |existing: &[&str]| {
            let mut h = HeaderMap::new();
            for v in existing {
                h.append(VARY, HeaderValue::from_str(v).unwrap());
            }
            add_vary(&mut h, "Origin");
            h.get_all(VARY)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(vary(&[]), ["Origin"]);
        assert_eq!(vary(&["Accept-Encoding"]), ["Accept-Encoding, Origin"]);
        assert_eq!(
            vary(&["Accept-Encoding", "Accept"]),
            ["Accept-Encoding, Accept, Origin"]
        );
        assert_eq!(vary(&["accept-encoding, origin"]), ["accept-encoding, origin"]);
        assert_eq!(vary(&["Accept", "ORIGIN"]), ["Accept", "ORIGIN"]);
        assert_eq!(vary(&["*"]), ["*"]);
        assert_eq!(vary(&[""]), ["Origin"]);
    }

    #[test]
    fn refusals_quote_briefly() {
        let c = Cors::compile(&cfg(&["https://app.example.com"]));
        let long = format!("https://{}.test", "a".repeat(5000));
        let d = denied(c.preflight(&preflight_req(&long, "GET", None), &Method::OPTIONS));
        assert!(d.to_string().len() < 200);
    }
}
