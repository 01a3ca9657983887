//! The serde types of the HTTP-level policies: CORS, request validation and zero-trust
//! forwarding. Their runtime counterparts live in `cratopus-policies` (`cors`, `validation`,
//! `forwarding`); these types only describe the file.
//!
//! As in `resilience`, every type has a `Default` equal to what an empty section gives (where
//! an empty section makes sense) and a `problems()` listing what serde accepts but the runtime
//! cannot use: malformed origins, `*` with credentials, header names that are not tokens,
//! methods a browser never sends. Each problem is a sentence naming the key, without the
//! section's path, for `validate` to prefix (`route `users`: cors: …`).

use crate::units::{ByteSize, Dur};
use schemars::JsonSchema;
use serde::Deserialize;

/// Cross-origin resource sharing: which web pages, by origin, may call the route from a
/// browser. The gateway answers preflight requests (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) itself, with 204 or 403, and adds the `Access-Control-*`
/// headers to every other response of the route, the gateway's own errors included (so that a
/// page can read a 401 or a 429 rather than see a network error). On a route with this policy
/// the gateway owns those headers: a backend's own `Access-Control-Allow-*` are replaced.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// The origins allowed: exact (`https://app.example.com`, `http://localhost:3000`), every
    /// subdomain of a domain (`https://*.example.com`: `https://a.example.com` and
    /// `https://a.b.example.com`, not `https://example.com` itself), or `*` for every origin
    /// (not with `allow_credentials`). An origin is `scheme://host[:port]`: no path, no
    /// trailing slash; a default port (443, 80) may be left out.
    pub allow_origins: Vec<String>,
    /// Methods a page may use, checked against a preflight's `Access-Control-Request-Method`
    /// (case-sensitive, as browsers compare them: write them in capitals). `*` allows any.
    #[serde(default = "default_allow_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a page may send, checked against a preflight's
    /// `Access-Control-Request-Headers` (names ignore case). Empty (the default) or `*`: any
    /// header the page asks for is allowed and echoed back, as Kong and APISIX do; the origin
    /// is what is checked. When listed, `Accept`, `Accept-Language`, `Content-Language` and
    /// `Content-Type` (the CORS-safelisted names) are always allowed too.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers a page may read beyond the CORS-safelisted ones (`Cache-Control`,
    /// `Content-Language`, `Content-Length`, `Content-Type`, `Expires`, `Last-Modified`,
    /// `Pragma`), e.g. `RateLimit-Remaining` or `X-Request-Id`. `*` exposes all, but not with
    /// `allow_credentials`.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Let pages send cookies and HTTP authentication with their requests and read the
    /// answers (`Access-Control-Allow-Credentials: true`). Not with the origin `*`: the origin
    /// is then always echoed, never `*`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`). Browsers cap
    /// it: Chromium at 2 hours, Firefox at 24 hours. `0` asks for a preflight every time.
    #[serde(default = "default_max_age")]
    pub max_age: Dur,
}

fn default_allow_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        .map(String::from)
        .to_vec()
}

fn default_max_age() -> Dur {
    Dur::secs(600)
}

/// Methods the Fetch standard forbids to pages: listing them allows nothing.
const FORBIDDEN_METHODS: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];

impl CorsConfig {
    /// The values serde accepts but a CORS policy cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.allow_origins.is_empty() {
            out.push("allow_origins is empty, so every preflight would be refused: list at least one origin".into());
        }
        for o in &self.allow_origins {
            match OriginPattern::parse(o) {
                Ok(OriginPattern::Any) if self.allow_credentials => out.push(
                    "allow_origins `*` cannot go with allow_credentials: browsers refuse it; list the origins".into(),
                ),
                Ok(_) => {}
                Err(e) => out.push(format!("allow_origins: {e}")),
            }
        }
        if self.allow_methods.is_empty() {
            out.push(
                "allow_methods is empty, so every preflight would be refused: leave it out for the usual methods"
                    .into(),
            );
        }
        for m in &self.allow_methods {
            if m == "*" {
                continue;
            }
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                out.push(format!("allow_methods: `{m}` is not a method name"));
            } else if m.bytes().any(|b| b.is_ascii_lowercase()) {
                out.push(format!(
                    "allow_methods: `{m}`: browsers compare methods case-sensitively; write `{}`",
                    m.to_ascii_uppercase()
                ));
            } else if FORBIDDEN_METHODS.contains(&m.as_str()) {
                out.push(format!("allow_methods: `{m}` is never sent by browsers"));
            }
        }
        header_names(&mut out, "allow_headers", &self.allow_headers, true);
        header_names(&mut out, "expose_headers", &self.expose_headers, true);
        if self.allow_credentials && self.expose_headers.iter().any(|h| h == "*") {
            out.push(
                "expose_headers `*` cannot go with allow_credentials: browsers read it as a header named `*`; list the headers"
                    .into(),
            );
        }
        out
    }
}

/// An entry of `allow_origins`, parsed and normalized (lower case, default port dropped), so
/// that the runtime compares it with a browser's `Origin` as the browser writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every origin.
    Any,
    /// One origin, e.g. `https://app.example.com` or `http://localhost:3000`.
    Exact(String),
    /// Every subdomain of a domain, at any depth: `https://*.example.com` is `scheme: https`,
    /// `suffix: .example.com`, `port: None`.
    Subdomains {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

impl OriginPattern {
    /// Parses `*`, `scheme://host[:port]` or `scheme://*.domain[:port]`. The error says what
    /// to write instead.
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        if s.eq_ignore_ascii_case("null") {
            return Err(
                "`null` is the origin of sandboxed frames and local files, which any page can take on; it cannot be allowed"
                    .into(),
            );
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!(
                "`{s}` has no scheme: write it as a browser sends it, such as `https://{s}`"
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(format!("`{s}`: `{scheme}` is not a URL scheme"));
        }
        if let Some(i) = rest.find(['/', '?', '#']) {
            return Err(format!(
                "`{s}`: an origin has no path, query or trailing slash; write `{scheme}://{}`",
                &rest[..i]
            ));
        }
        if rest.contains('@') {
            return Err(format!("`{s}`: an origin has no user name"));
        }
        let (host, port) = split_port(rest).map_err(|e| format!("`{s}`: {e}"))?;
        let host = host.to_ascii_lowercase();
        let port = match (scheme.as_str(), port) {
            ("https", Some(443)) | ("http", Some(80)) => None,
            (_, p) => p,
        };
        let with_port = |h: &str| match port {
            Some(p) => format!("{scheme}://{h}:{p}"),
            None => format!("{scheme}://{h}"),
        };
        if let Some(domain) = host.strip_prefix("*.") {
            if !is_host(domain) || domain.starts_with('[') {
                return Err(format!("`{s}`: `{domain}` is not a domain name"));
            }
            if !domain.contains('.') {
                return Err(format!(
                    "`{s}` would allow every site under `.{domain}`; name a domain such as `*.example.{domain}`"
                ));
            }
            return Ok(OriginPattern::Subdomains {
                suffix: format!(".{domain}"),
                scheme,
                port,
            });
        }
        if host.contains('*') {
            return Err(format!(
                "`{s}`: `*` may only stand for the subdomains at the start, as in `{scheme}://*.example.com`, or alone for every origin"
            ));
        }
        if !is_host(&host) {
            return Err(format!("`{s}`: `{host}` is not a host name or address"));
        }
        Ok(OriginPattern::Exact(with_port(&host)))
    }
}

/// `host[:port]`, with IPv6 addresses in brackets. A port must be 1–65535.
fn split_port(rest: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if rest.starts_with('[') {
        match rest.find(']') {
            Some(i) => match &rest[i + 1..] {
                "" => (&rest[..=i], None),
                p => match p.strip_prefix(':') {
                    Some(p) => (&rest[..=i], Some(p)),
                    None => return Err("junk after the IPv6 address".into()),
                },
            },
            None => return Err("unclosed `[`".into()),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("`{p}` is not a port")),
        },
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((host, port))
}

/// A DNS name (letters, digits, `-`, dot-separated labels) or an IP address in URL form.
fn is_host(h: &str) -> bool {
    if let Some(v6) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Flags names that are not header field names (tokens); `*` passes when `star` allows it.
fn header_names(out: &mut Vec<String>, key: &str, names: &[String], star: bool) {
    for n in names {
        if star && n == "*" {
            continue;
        }
        if http::HeaderName::from_bytes(n.trim().as_bytes()).is_err() {
            out.push(format!("{key}: `{n}` is not a header name"));
        }
    }
}

/// Checks a request before it goes upstream: required headers and query parameters, the body's
/// media type and size, and the body against a JSON Schema. A request that fails gets 400
/// (415 for a wrong media type, 413 for a body too large) with every problem found, each with
/// where it is (`header`, `query`, or the JSON pointer in the body), and never reaches the
/// backend.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// A JSON Schema the JSON body must satisfy, written inline (in YAML or JSON syntax).
    /// Draft 2020-12 unless its `$schema` names another draft (`http://json-schema.org/draft-07/schema#`,
    /// 2019-09, 06, 04). `$ref` may point inside the schema only: nothing is fetched.
    /// `format` is checked (`email`, `date-time`, `uuid`, …), `pattern` uses linear-time
    /// regular expressions (no look-around). Checked on `POST`, `PUT` and `PATCH`, and on any
    /// other request that carries a body.
    #[serde(default)]
    pub body_schema: Option<serde_json::Value>,
    /// The same, read from a `.json`, `.yaml` or `.yml` file (relative to the file this
    /// config is in) when the config is loaded. Not with `body_schema`.
    #[serde(default)]
    pub body_schema_file: Option<String>,
    /// Largest body accepted; larger gets 413. A route's own `max_body_bytes` still applies.
    /// With a schema, the body is read whole before it goes upstream, so this bounds the
    /// memory a request takes (default then: 1MiB).
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Headers every request must carry with a non-empty value (names ignore case).
    #[serde(default)]
    pub required_headers: Vec<String>,
    /// Query parameters every request must carry (a bare `?flag` counts). Names are compared
    /// after percent-decoding and are case-sensitive.
    #[serde(default)]
    pub required_query: Vec<String>,
    /// Media types a request body may have (`application/json`, `application/*+json`,
    /// `text/*`); parameters such as `charset` are ignored. A request with a body of another
    /// type, or without `Content-Type`, gets 415. Default: `application/json` and
    /// `application/*+json` when a schema is set, else any.
    #[serde(default)]
    pub content_types: Vec<String>,
}

impl ValidationConfig {
    /// The values serde accepts but a validator cannot use. The schema itself is checked when
    /// it is compiled.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.body_schema.is_some() && self.body_schema_file.is_some() {
            out.push("body_schema and body_schema_file cannot both be set: pick one".into());
        }
        if let Some(s) = &self.body_schema
            && !(s.is_object() || s.is_boolean())
        {
            out.push("body_schema must be a map (a JSON Schema) or a boolean".into());
        }
        if self.body_schema_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
            out.push("body_schema_file is empty".into());
        }
        if self.max_body_bytes.is_some_and(|b| b.0 == 0) {
            out.push("max_body_bytes must be above 0".into());
        }
        header_names(&mut out, "required_headers", &self.required_headers, false);
        for q in &self.required_query {
            if q.is_empty() {
                out.push("required_query: a parameter name cannot be empty".into());
            }
        }
        for t in &self.content_types {
            if let Err(e) = MediaRange::parse(t) {
                out.push(format!("content_types: {e}"));
            }
        }
        out
    }
}

/// An entry of `content_types`: `type/subtype`, `type/*` or `type/*+suffix`, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRange {
    /// `application/json`.
    Exact(String),
    /// `text/*`: the type, without the slash.
    AnySubtype(String),
    /// `application/*+json`: the type and the structured-syntax suffix (`+json`).
    Suffix(String, String),
}

impl MediaRange {
    /// Parses one entry of `content_types`.
    pub fn parse(s: &str) -> Result<MediaRange, String> {
        let t = s.trim().to_ascii_lowercase();
        let token = |x: &str| !x.is_empty() && http::HeaderName::from_bytes(x.as_bytes()).is_ok();
        let Some((ty, sub)) = t.split_once('/') else {
            return Err(format!("`{s}` is not a media type such as `application/json`"));
        };
        if !token(ty) || ty == "*" {
            return Err(format!("`{s}` is not a media type such as `application/json`"));
        }
        if sub == "*" {
            return Ok(MediaRange::AnySubtype(ty.to_string()));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            if token(suffix) {
                return Ok(MediaRange::Suffix(ty.to_string(), format!("+{suffix}")));
            }
        } else if token(sub) && !sub.contains('*') {
            return Ok(MediaRange::Exact(t));
        }
        Err(format!(
            "`{s}`: write `type/subtype`, `type/*` or `type/*+suffix`, with parameters left out"
        ))
    }
}

/// Zero-trust forwarding, as KrakenD does it: only the listed request headers and query
/// parameters reach the backend; everything else the client sent is dropped. The headers the
/// gateway sets or vouches for always pass (`Host`; `Content-Length`, `Content-Type`,
/// `Content-Encoding`, `Transfer-Encoding`, without which a body cannot be read;
/// `X-Forwarded-For`, `-Proto`, `-Host`; `X-Request-Id`; `traceparent`, `tracestate`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Request headers passed on (names ignore case), e.g. `Authorization`, `Accept`,
    /// `User-Agent`. Left out or empty: none beyond those that always pass. `*`: all.
    #[serde(default)]
    pub input_headers: Vec<String>,
    /// Query parameters passed on, by name (compared after percent-decoding, case-sensitive;
    /// `ids[]` is a name like any other). Left out or empty: the backend gets no query
    /// string. `*`: all. Kept parameters keep their order and their encoding.
    #[serde(default)]
    pub input_query_strings: Vec<String>,
}

impl ForwardConfig {
    /// The values serde accepts but forwarding cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        header_names(&mut out, "input_headers", &self.input_headers, true);
        for q in &self.input_query_strings {
            if q.is_empty() {
                out.push("input_query_strings: a parameter name cannot be empty".into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};

    #[test]
    fn cors_defaults_and_problems() {
        let c: CorsConfig = parse("allow_origins: [https://app.example.com, 'https://*.example.com']");
        assert_eq!(c.allow_methods, default_allow_methods());
        assert!(c.allow_headers.is_empty() && c.expose_headers.is_empty());
        assert!(!c.allow_credentials);
        assert_eq!(c.max_age, Dur::secs(600));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert!(refused::<CorsConfig>("allow_origins: ['*']\nallow_credential: true").contains("allow_credential"));

        let star: CorsConfig = parse("allow_origins: ['*']\nallow_credentials: true\nexpose_headers: ['*']");
        let p = star.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("allow_credentials"), "{p:?}");

        let bad: CorsConfig = parse(
            "allow_origins: [app.example.com, 'https://app.example.com/', 'null', 'https://*.com', 'https://a.*.example.com']\n\
             allow_methods: [GET, patch, 'BAD METHOD', TRACE, '*']\n\
             allow_headers: [X-Ok, 'bad header', '*']\n",
        );
        let p = bad.problems();
        assert_eq!(p.len(), 9, "{p:#?}");
        assert!(p[0].contains("https://app.example.com"), "{}", p[0]);
        assert!(p[1].contains("write `https://app.example.com`"), "{}", p[1]);
        assert!(p[5].contains("write `PATCH`"), "{}", p[5]);

        let empty: CorsConfig = parse("allow_origins: []\nallow_methods: []");
        assert_eq!(empty.problems().len(), 2);
    }

    #[test]
    fn origins_normalize() {
        use OriginPattern::*;
        let p = |s: &str| OriginPattern::parse(s);
        assert_eq!(p("*"), Ok(Any));
        assert_eq!(
            p("HTTPS://App.Example.com:443"),
            Ok(Exact("https://app.example.com".into()))
        );
        assert_eq!(p("http://localhost:3000"), Ok(Exact("http://localhost:3000".into())));
        assert_eq!(p("http://[::1]:8080"), Ok(Exact("http://[::1]:8080".into())));
        assert_eq!(
            p("https://*.Example.com"),
            Ok(Subdomains {
                scheme: "https".into(),
                suffix: ".example.com".into(),
                port: None
            })
        );
        assert_eq!(
            p("https://*.example.com:8443"),
            Ok(Subdomains {
                scheme: "https".into(),
                suffix: ".example.com".into(),
                port: Some(8443)
            })
        );
        for bad in [
            "null",
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://exa mple.com",
            "https://*",
            "https://*.com",
            "https://*example.com",
            "https://",
            "1http://x.com",
        ] {
            assert!(p(bad).is_err(), "{bad} accepted: {:?}", p(bad));
        }
    }

    #[test]
    fn validation_problems() {
        let v: ValidationConfig = parse(
            "body_schema: {type: object, required: [name]}\nrequired_headers: [X-Tenant]\nrequired_query: [page]\nmax_body_bytes: 64KiB",
        );
        assert!(v.problems().is_empty(), "{:?}", v.problems());
        assert_eq!(v.max_body_bytes, Some(ByteSize(65536)));
        assert_eq!(
            v.body_schema.as_ref().and_then(|s| s.get("type")),
            Some(&serde_json::json!("object"))
        );
        let bad: ValidationConfig = parse(
            "body_schema: [1]\nbody_schema_file: s.json\nmax_body_bytes: 0\nrequired_headers: ['a b']\nrequired_query: ['']\ncontent_types: [json, 'application/*', 'application/*+json', 'text/x*y']",
        );
        assert_eq!(bad.problems().len(), 7, "{:#?}", bad.problems());
        assert_eq!(ValidationConfig::default(), parse("{}"));
    }

    #[test]
    fn media_ranges() {
        use MediaRange::*;
        assert_eq!(
            MediaRange::parse("Application/JSON"),
            Ok(Exact("application/json".into()))
        );
        assert_eq!(MediaRange::parse("text/*"), Ok(AnySubtype("text".into())));
        assert_eq!(
            MediaRange::parse("application/*+json"),
            Ok(Suffix("application".into(), "+json".into()))
        );
        assert!(MediaRange::parse("application/json; charset=utf-8").is_err());
        assert!(MediaRange::parse("*/*").is_err());
    }

    #[test]
    fn forward_problems() {
        let f: ForwardConfig = parse("input_headers: [Authorization, '*']\ninput_query_strings: [page, 'ids[]']");
        assert!(f.problems().is_empty());
        let empty: ForwardConfig = parse("{}");
        assert_eq!(empty, ForwardConfig::default());
        let bad: ForwardConfig = parse("input_headers: ['x y']\ninput_query_strings: ['']");
        assert_eq!(bad.problems().len(), 2);
    }

    /// The schema of each type is generated (every field documented) and accepts the examples.
    #[test]
    fn schemas_generate() {
        for s in [
            serde_json::to_value(schemars::schema_for!(CorsConfig)),
            serde_json::to_value(schemars::schema_for!(ValidationConfig)),
            serde_json::to_value(schemars::schema_for!(ForwardConfig)),
        ] {
            let s = s.unwrap_or_default();
            let props = s["properties"].as_object().cloned().unwrap_or_default();
            assert!(!props.is_empty());
            for (k, v) in props {
                assert!(v.get("description").is_some(), "{k} has no description");
            }
        }
        let cors = serde_json::to_value(schemars::schema_for!(CorsConfig)).unwrap_or_default();
        assert_eq!(cors["properties"]["max_age"]["default"], "600s");
    }
}
