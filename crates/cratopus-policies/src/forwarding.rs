//! Zero-trust forwarding, as KrakenD does it: the backend gets only the request headers and
//! query parameters the route lists, so a client cannot smuggle `X-Internal-User`, a second
//! `Authorization` or `?admin=true` past the gateway to a backend that trusts it.
//!
//! Some headers pass whatever the lists say, because without them the request breaks or loses
//! what the gateway itself vouches for:
//! - `Host`: the upstream call needs one (the engine sets it for the target anyway).
//! - `Content-Length`, `Transfer-Encoding`: the body's framing; without them the backend reads
//!   a body as empty or hangs. `Content-Type` and `Content-Encoding`: without them the body's
//!   bytes cannot be read (a gzipped JSON body would look like garbage).
//! - `X-Forwarded-For`, `-Proto`, `-Host`, `X-Request-Id`, `traceparent`, `tracestate`: the
//!   gateway sets or checks them (`cratopus-core`'s `forward`), and backends log and trace by
//!   them.
//!
//! Not on that list, on purpose: `Forwarded` (the gateway does not set it, so a client's is
//! untrusted), `Cookie`, `Authorization`, `User-Agent`, `Accept`: list them when the backend
//! needs them.

use cratopus_config::http_policies::ForwardConfig;
use http::header::{self, HeaderMap, HeaderName};

/// The request headers that reach the backend whatever `input_headers` says.
pub static ALWAYS_FORWARDED: [HeaderName; 11] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// One compiled forwarding filter.
#[derive(Debug)]
pub struct Forwarding {
    /// The names that pass, [`ALWAYS_FORWARDED`] included; `None` for `*` (all pass).
    headers: Option<Vec<HeaderName>>,
    /// The parameter names that pass, decoded; `None` for `*` (the query passes as it is).
    query: Option<Vec<Box<[u8]>>>,
}

impl Forwarding {
    /// Compiles a config that passed [`ForwardConfig::problems`]; names it would have flagged
    /// are skipped. `gateway_set` are the headers the route's own policies write from what the
    /// gateway verified (a JWT's `forward_claims`, `X-Consumer-Id`): they pass like
    /// [`ALWAYS_FORWARDED`], since the client's copies were already removed and the backend
    /// relies on them.
    pub fn compile<'a>(cfg: &ForwardConfig, gateway_set: impl IntoIterator<Item = &'a HeaderName>) -> Forwarding {
        let headers = if cfg.input_headers.iter().any(|h| h == "*") {
            None
        } else {
            let mut keep = ALWAYS_FORWARDED.to_vec();
            for n in gateway_set {
                if !keep.contains(n) {
                    keep.push(n.clone());
                }
            }
            for h in &cfg.input_headers {
                if let Ok(n) = HeaderName::from_bytes(h.trim().as_bytes())
                    && !keep.contains(&n)
                {
                    keep.push(n);
                }
            }
            Some(keep)
        };
        let query = if cfg.input_query_strings.iter().any(|q| q == "*") {
            None
        } else {
            let mut keep: Vec<Box<[u8]>> = Vec::new();
            for q in &cfg.input_query_strings {
                if !q.is_empty() && !keep.iter().any(|k| **k == *q.as_bytes()) {
                    keep.push(q.as_bytes().into());
                }
            }
            Some(keep)
        };
        Forwarding { headers, query }
    }

    /// Removes every request header that is neither listed nor in [`ALWAYS_FORWARDED`]; all
    /// values of a kept header stay. Call it once the policies that read the client's headers
    /// (authentication, rate limits keyed by a header, validation) are done, and before the
    /// request transform, whose added headers must not be filtered.
    pub fn filter_headers(&self, headers: &mut HeaderMap) {
        let Some(keep) = &self.headers else {
            return;
        };
        let drop: Vec<HeaderName> = headers.keys().filter(|k| !keep.contains(k)).cloned().collect();
        for name in drop {
            headers.remove(name);
        }
    }

    /// Whether [`Forwarding::filter_query`] can change a query, so that the engine can leave
    /// the URI alone when it cannot.
    pub fn filters_query(&self) -> bool {
        self.query.is_some()
    }

    /// The query the backend gets (without `?`): the pairs whose decoded name is listed, in
    /// their order and with their bytes untouched (so `%2B` stays `%2B` and `+` stays `+`).
    /// `None` when nothing remains: the backend gets no `?` at all.
    pub fn filter_query(&self, query: &str) -> Option<String> {
        let Some(names) = &self.query else {
            return (!query.is_empty()).then(|| query.to_string());
        };
        let mut out = String::new();
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if !name.is_empty() && names.iter().any(|n| decoded_eq(name, n)) {
                if !out.is_empty() {
                    out.push('&');
                }
                out.push_str(pair);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Whether the query component `raw` (form-urlencoded: `%XX` escapes, `+` for a space) decodes
/// to `want`, without allocating. A `%` not followed by two hex digits stands for itself, as
/// browsers and `URLSearchParams` read it.
pub(crate) fn decoded_eq(raw: &str, want: &[u8]) -> bool {
    let raw = raw.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let (b, used) = match raw[i] {
            b'+' => (b' ', 1),
            b'%' => match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => (h << 4 | l, 3),
                _ => (b'%', 1),
            },
            b => (b, 1),
        };
        if want.get(j) != Some(&b) {
            return false;
        }
        i += used;
        j += 1;
    }
    j == want.len()
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn fwd(headers: &[&str], query: &[&str]) -> Forwarding {
        Forwarding::compile(
            &ForwardConfig {
                input_headers: headers.iter().map(|s| s.to_string()).collect(),
                input_query_strings: query.iter().map(|s| s.to_string()).collect(),
            },
            &[],
        )
    }

    fn request_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "api.example.com"),
            ("authorization", "Bearer abc"),
            ("cookie", "session=1"),
            ("x-internal-user", "admin"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-request-id", "r1"),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("forwarded", "for=1.2.3.4"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h.append("x-tag", HeaderValue::from_static("a"));
        h.append("x-tag", HeaderValue::from_static("b"));
        h
    }

    #[test]
    fn only_listed_headers_and_the_gateways_pass() {
        let f = fwd(&["Authorization", "X-TAG"], &[]);
        let mut h = request_headers();
        f.filter_headers(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "authorization",
                "content-length",
                "content-type",
                "host",
                "traceparent",
                "x-forwarded-for",
                "x-request-id",
                "x-tag"
            ]
        );
        assert_eq!(h.get_all("x-tag").iter().count(), 2);

        // Nothing listed: only what always passes.
        let mut h = request_headers();
        fwd(&[], &[]).filter_headers(&mut h);
        assert!(h.get("authorization").is_none() && h.get("accept").is_none());
        assert!(h.get("content-length").is_some());

        // `*`: untouched.
        let mut h = request_headers();
        let before = h.clone();
        fwd(&["*"], &[]).filter_headers(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn query_keeps_order_and_encoding() {
        let f = fwd(&[], &["page", "q", "ids[]", "filter[name]", "a b"]);
        assert!(f.filters_query());
        assert_eq!(
            f.filter_query("q=caf%C3%A9+au+lait&secret=1&page=2&ids[]=1&ids%5B%5D=2&filter%5Bname%5D=x%2By&a+b=1")
                .as_deref(),
            Some("q=caf%C3%A9+au+lait&page=2&ids[]=1&ids%5B%5D=2&filter%5Bname%5D=x%2By&a+b=1")
        );
        // A bare name and an empty value are kept; empty pairs dropped.
        assert_eq!(f.filter_query("page&&q=&x=1").as_deref(), Some("page&q="));
        // Names are case-sensitive.
        assert_eq!(f.filter_query("Page=1&PAGE=2"), None);
        assert_eq!(f.filter_query(""), None);
        assert_eq!(f.filter_query("admin=true"), None);
        // A stray `%` is itself.
        assert_eq!(
            fwd(&[], &["100%"]).filter_query("100%=1&x=2").as_deref(),
            Some("100%=1")
        );

        let none = fwd(&[], &[]);
        assert_eq!(none.filter_query("page=1"), None);
        let all = fwd(&[], &["*"]);
        assert!(!all.filters_query());
        assert_eq!(all.filter_query("b=2&a=%20").as_deref(), Some("b=2&a=%20"));
        assert_eq!(all.filter_query(""), None);
    }

    #[test]
    fn decoding_compares_bytes() {
        assert!(decoded_eq("a%20b", b"a b"));
        assert!(decoded_eq("a+b", b"a b"));
        assert!(decoded_eq("%e2%82%ac", "€".as_bytes()));
        assert!(!decoded_eq("ab", b"abc"));
        assert!(!decoded_eq("abc", b"ab"));
        assert!(decoded_eq("%zz", b"%zz"));
        assert!(decoded_eq("%4", b"%4"));
        assert!(decoded_eq("", b""));
    }
}
