//! Headers that never cross a hop.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and so never pass.
/// `Proxy-Authorization` and `Proxy-Authenticate` go too (RFC 9110 §11.7): they are credentials
/// for, and challenges from, a proxy on the way, and the gateway uses neither (as Go's
/// `httputil.ReverseProxy` and Envoy drop them).
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
    &header::PROXY_AUTHENTICATE,
];

/// `Transfer-Encoding`'s place in [`HOP_BY_HOP`].
const TRANSFER_ENCODING_BIT: u16 = 1 << 5;
/// `TE`'s place in [`HOP_BY_HOP`].
const TE_BIT: u16 = 1 << 3;

/// Removes hop-by-hop headers, including the ones the `Connection` header names, except
/// `TE: trailers`: gRPC needs it end to end (servers refuse a call without it, to detect a
/// proxy that would drop trailers), and the gateway does pass trailers on (RFC 9110 §10.1.4
/// lets a proxy that forwards trailers send `trailers`; Envoy keeps exactly that value too). A
/// message
/// that came with `Transfer-Encoding` also loses its `Content-Length`: the transfer coding
/// framed it and overrides the length (RFC 9112 §6.3), which is therefore wrong for the body
/// as the next hop gets it (whose framing hyper chooses anew).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (cheap comparisons of standard headers) notes which hop-by-hop
    // headers are there, so that only those are looked up and removed. Most requests carry
    // none; most upstream responses carry just `Connection: keep-alive`.
    let mut present = 0u16;
    for k in headers.keys() {
        if let Some(i) = hop_index(k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` is HOP_BY_HOP[0]; its first line names further headers to drop.
    if present & 1 != 0
        && let Some(conn) = headers.remove(&header::CONNECTION)
        && let Ok(list) = conn.to_str()
    {
        for t in list.split(',').map(str::trim) {
            // `keep-alive` (the usual token) is in HOP_BY_HOP and goes below if present.
            if t.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                headers.remove(n);
            }
        }
    }
    let trailers = present & TE_BIT != 0 && asks_trailers(headers);
    for (i, h) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(*h);
        }
    }
    if trailers {
        headers.insert(header::TE, TRAILERS.clone());
    }
    if present & TRANSFER_ENCODING_BIT != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
}

static TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

/// `name`'s place in [`HOP_BY_HOP`]: told by its length first, so that most names cost one
/// comparison of a number (nine comparisons of names, each header, cost ~300 instructions a
/// response).
pub(crate) fn hop_index(name: &HeaderName) -> Option<usize> {
    let s = name.as_str();
    Some(match s.len() {
        10 if s == "connection" => 0,
        10 if s == "keep-alive" => 1,
        16 if s == "proxy-connection" => 2,
        2 if s == "te" => 3,
        7 if s == "trailer" => 4,
        17 if s == "transfer-encoding" => 5,
        7 if s == "upgrade" => 6,
        19 if s == "proxy-authorization" => 7,
        18 if s == "proxy-authenticate" => 8,
        _ => return None,
    })
}

/// Whether the `TE` headers name `trailers` (among other codings, which are dropped).
fn asks_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// The value of cookie `name` in a request's `Cookie` headers (for hashing and stickiness).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_is_found_at_its_place_and_no_other() {
        for (i, h) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(h), Some(i), "{h}");
        }
        for other in [
            "host",
            "date",
            "x-connection",
            "connectio",
            "tE-x",
            "server",
            "content-length",
        ] {
            assert_eq!(
                hop_index(&HeaderName::from_bytes(other.as_bytes()).unwrap()),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn hop_by_hop_is_stripped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        h.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"p\""),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));

        assert_eq!(
            1 << HOP_BY_HOP
                .iter()
                .position(|n| **n == header::TRANSFER_ENCODING)
                .unwrap(),
            TRANSFER_ENCODING_BIT
        );

        // Without a transfer coding the length stays.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn te_trailers_is_kept_and_nothing_else_of_te() {
        assert_eq!(1 << HOP_BY_HOP.iter().position(|n| **n == header::TE).unwrap(), TE_BIT);
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip, Trailers;q=1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.len(), 1);

        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }
}
