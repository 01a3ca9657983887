//! `Cache-Control` (RFC 9111 §5.2) of requests and answers, and the freshness of an answer
//! (§4.2): what the cache reads from the headers, parsed once per answer it looks at.

use http::HeaderMap;
use http::header::{self, HeaderValue};
use std::time::{Duration, SystemTime};

/// The directives the cache acts on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
}

impl Directives {
    /// The directives of every `Cache-Control` line of `headers`. Names ignore case; a
    /// malformed number counts as absent (and a malformed `max-age` as 0 — stale, §4.2.1).
    pub fn of(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for v in headers.get_all(header::CACHE_CONTROL) {
            let Ok(v) = v.to_str() else { continue };
            for item in v.split(',') {
                let (name, value) = match item.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item.trim(), None),
                };
                let secs = || value.and_then(|v| v.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    // `no-cache="field"` only forbids reusing that field without revalidation;
                    // treated as the whole answer, which is stricter.
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                    "max-age" => d.max_age = Some(secs().unwrap_or(0)),
                    "s-maxage" => d.s_maxage = Some(secs().unwrap_or(0)),
                    "stale-while-revalidate" => d.stale_while_revalidate = secs(),
                    "stale-if-error" => d.stale_if_error = secs(),
                    _ => {}
                }
            }
        }
        d
    }
}

/// How long an answer stays fresh (§4.2.1): `s-maxage`, else `max-age`, else `Expires` less
/// `Date`; `None` when it says nothing (the route's `ttl` applies then).
pub fn lifetime(d: &Directives, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Some(Duration::from_secs(s));
    }
    let expires = headers.get(header::EXPIRES)?;
    // An invalid `Expires` (`0` among them) means already expired (§5.3).
    let Some(expires) = date(expires) else {
        return Some(Duration::ZERO);
    };
    let base = headers.get(header::DATE).and_then(date).unwrap_or(now);
    Some(expires.duration_since(base).unwrap_or(Duration::ZERO))
}

/// The `Age` an answer arrived with (§5.1), in seconds.
pub fn age(headers: &HeaderMap) -> u64 {
    headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

pub fn date(v: &HeaderValue) -> Option<SystemTime> {
    v.to_str().ok().and_then(|s| httpdate::parse_http_date(s.trim()).ok())
}

/// A client's `Accept-Encoding` as a `Vary: Accept-Encoding` variant is keyed by: the
/// encodings a compressing route can answer with (br, zstd, gzip) that it accepts, most wanted
/// first (by q-value, then br, zstd, gzip), or `identity` when none. Whatever encoding the route
/// picks from these, two clients with the same form get the same one, and the many spellings
/// of one preference (`gzip, deflate, br` and `br;q=1.0, gzip`) share one stored answer.
pub fn accept_encoding(headers: &HeaderMap) -> String {
    // q-value in thousandths per encoding, in the order br, zstd, gzip.
    let mut q: [Option<u16>; 3] = [None; 3];
    let mut any: Option<u16> = None;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                })
                .unwrap_or(1.0);
            let weight = (weight.clamp(0.0, 1.0) * 1000.0) as u16;
            match name.as_str() {
                "br" => q[0] = Some(weight),
                "zstd" => q[1] = Some(weight),
                "gzip" | "x-gzip" => q[2] = Some(weight),
                "*" => any = Some(weight),
                _ => {}
            }
        }
    }
    let mut accepted: Vec<(u16, usize)> = q
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.or(any).filter(|w| *w > 0).map(|w| (w, i)))
        .collect();
    if accepted.is_empty() {
        return "identity".into();
    }
    accepted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let names = ["br", "zstd", "gzip"];
    accepted.iter().map(|(_, i)| names[*i]).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn directives_and_lifetime() {
        let h = headers(&[
            ("cache-control", "public, Max-Age=60, s-maxage=\"30\""),
            ("cache-control", "stale-if-error=5"),
        ]);
        let d = Directives::of(&h);
        assert!(d.public && !d.private);
        assert_eq!((d.max_age, d.s_maxage, d.stale_if_error), (Some(60), Some(30), Some(5)));
        assert_eq!(lifetime(&d, &h, SystemTime::now()), Some(Duration::from_secs(30)));
        let h = headers(&[
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
        ]);
        assert_eq!(
            lifetime(&Directives::of(&h), &h, SystemTime::now()),
            Some(Duration::from_secs(60))
        );
        let h = headers(&[("expires", "0")]);
        assert_eq!(
            lifetime(&Directives::of(&h), &h, SystemTime::now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            lifetime(&Directives::default(), &HeaderMap::new(), SystemTime::now()),
            None
        );
    }

    #[test]
    fn accept_encoding_is_normalized() {
        let form = |v: &'static str| accept_encoding(&headers(&[("accept-encoding", v)]));
        assert_eq!(form("gzip, deflate, br"), "br,gzip");
        assert_eq!(form("br;q=1.0, gzip"), form("gzip, deflate, br"));
        assert_eq!(form("br;q=0, GZIP;q=0.5"), "gzip");
        assert_eq!(form("gzip;q=1, br;q=0.5"), "gzip,br");
        assert_eq!(form("*"), "br,zstd,gzip");
        assert_eq!(form("deflate"), "identity");
        assert_eq!(accept_encoding(&HeaderMap::new()), "identity");
    }
}
