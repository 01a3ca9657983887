//! Headers that never cross a hop.

use http::header::{self, HeaderMap, HeaderName};

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

/// Removes hop-by-hop headers, including the ones the `Connection` header names. A message
/// that came with `Transfer-Encoding` also loses its `Content-Length`: the transfer coding
/// framed it and overrides the length (RFC 9112 §6.3), which is therefore wrong for the body
/// as the next hop gets it (whose framing hyper chooses anew).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (cheap comparisons of standard headers) notes which hop-by-hop
    // headers are there, so that only those are looked up and removed. Most requests carry
    // none; most upstream responses carry just `Connection: keep-alive`.
    let mut present = 0u16;
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == k) {
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
    for (i, h) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(*h);
        }
    }
    if present & TRANSFER_ENCODING_BIT != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
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
    use http::HeaderValue;

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
}
