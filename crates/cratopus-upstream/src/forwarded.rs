//! The headers the gateway adds to every request it forwards: `X-Forwarded-For`, `-Proto` and
//! `-Host`, `X-Request-Id` and `traceparent`, each replacing the client's own.
//!
//! They travel beside the request, in [`Call::forwarded`](crate::Call::forwarded), rather than
//! in its header map: the gateway's HTTP/1.1 client writes them straight into the request head
//! it sends, leaving out the client's lines of the same names, and every other way a request
//! goes (HTTP/2, the mirror, a split's or shadow's copy, a composition's calls, an upgrade)
//! gets them inserted into the map first ([`Forwarded::apply`]), as all requests once did. Five
//! inserts into an `http::HeaderMap` (hashing and probing each name, ~240 instructions apiece)
//! and a `HeaderValue` made for `traceparent` were ~1,500 instructions of every proxied request.

use bytes::{BufMut, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The length of a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`).
pub const TRACEPARENT_LEN: usize = 55;

/// What the gateway adds to a request it forwards. `X-Forwarded-Host` is the call's
/// `client_host`, which the call carries anyway.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The whole `X-Forwarded-For`: the earlier proxies' addresses the client sent, then the
    /// client's. `None` only if they did not make a valid value (then the client's lines stay).
    pub xff: Option<HeaderValue>,
    pub proto: &'static str,
    pub request_id: HeaderValue,
    pub traceparent: [u8; TRACEPARENT_LEN],
}

impl Forwarded {
    /// The headers for a request whose own headers are `headers`, from `client` (the peer's
    /// address as a header value).
    pub fn new(
        headers: &HeaderMap,
        client: &HeaderValue,
        proto: &'static str,
        request_id: &HeaderValue,
        traceparent: [u8; TRACEPARENT_LEN],
    ) -> Forwarded {
        // Earlier proxies' addresses may come in several header lines: keep them all, in order.
        // Without any (the common case) the connection's preformatted address is the whole value.
        let mut earlier = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
        let xff = if earlier.peek().is_none() {
            Some(client.clone())
        } else {
            let mut chain = Vec::with_capacity(64);
            for v in earlier {
                if v.to_str().is_ok() {
                    chain.extend_from_slice(v.as_bytes());
                    chain.extend_from_slice(b", ");
                }
            }
            chain.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&chain).ok()
        };
        Forwarded {
            xff,
            proto,
            request_id: request_id.clone(),
            traceparent,
        }
    }

    /// Sets the headers in `headers`, replacing the client's (`X-Forwarded-Host` only when
    /// there is a `host`).
    pub fn apply(&self, headers: &mut HeaderMap, host: Option<&HeaderValue>) {
        if let Some(v) = &self.xff {
            headers.insert(X_FORWARDED_FOR.clone(), v.clone());
        }
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(self.proto));
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        headers.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        if let Ok(v) = HeaderValue::from_bytes(&self.traceparent) {
            headers.insert(TRACEPARENT.clone(), v);
        }
    }

    /// Whether the client's line named `name` gives way to one of these (see [`Forwarded::write`]).
    pub(crate) fn replaces(&self, name: &HeaderName, host: bool) -> bool {
        // Told by length first: most names cost a comparison of a number.
        let s = name.as_str();
        match s.len() {
            15 => s == "x-forwarded-for" && self.xff.is_some(),
            17 => s == "x-forwarded-proto",
            16 => s == "x-forwarded-host" && host,
            12 => s == "x-request-id",
            11 => s == "traceparent",
            _ => false,
        }
    }

    /// Writes the header lines into a request head, as [`Forwarded::apply`] would have put them
    /// in the map that the head is written from.
    pub(crate) fn write(&self, out: &mut BytesMut, host: Option<&HeaderValue>) {
        if let Some(v) = &self.xff {
            line(out, b"x-forwarded-for: ", v.as_bytes());
        }
        line(out, b"x-forwarded-proto: ", self.proto.as_bytes());
        if let Some(h) = host {
            line(out, b"x-forwarded-host: ", h.as_bytes());
        }
        line(out, b"x-request-id: ", self.request_id.as_bytes());
        line(out, b"traceparent: ", &self.traceparent);
    }
}

fn line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(headers: &HeaderMap) -> Forwarded {
        Forwarded::new(
            headers,
            &HeaderValue::from_static("10.0.0.9"),
            "https",
            &HeaderValue::from_static("rid-1"),
            *b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
    }

    /// The lines written into a head are those that `apply` puts in a map, and the client's
    /// lines that either replaces are the ones `replaces` names.
    #[test]
    fn written_lines_match_the_applied_map() {
        for (client_lines, host) in [
            (vec![], None),
            (
                vec![("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2")],
                Some("api.test"),
            ),
            (
                vec![
                    ("x-forwarded-proto", "ftp"),
                    ("x-forwarded-host", "evil"),
                    ("x-request-id", "theirs"),
                    ("traceparent", "00-x"),
                    ("x-other", "kept"),
                ],
                None,
            ),
            (
                vec![("x-forwarded-host", "evil"), ("x-forwarded-hosts", "kept")],
                Some("api.test:8443"),
            ),
        ] {
            let mut headers = HeaderMap::new();
            for (n, v) in &client_lines {
                headers.append(HeaderName::from_static(n), HeaderValue::from_static(v));
            }
            let host = host.map(HeaderValue::from_static);
            let f = forwarded(&headers);

            let mut applied = headers.clone();
            f.apply(&mut applied, host.as_ref());

            let mut written = HeaderMap::new();
            for (n, v) in &headers {
                if !f.replaces(n, host.is_some()) {
                    written.append(n.clone(), v.clone());
                }
            }
            let mut out = BytesMut::new();
            f.write(&mut out, host.as_ref());
            for l in out[..].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let l = std::str::from_utf8(l).unwrap().trim_end_matches('\r');
                let (n, v) = l.split_once(": ").unwrap();
                written.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            for name in applied.keys() {
                let a: Vec<_> = applied.get_all(name).iter().collect();
                let w: Vec<_> = written.get_all(name).iter().collect();
                assert_eq!(a, w, "{name} with client lines {client_lines:?}");
            }
            assert_eq!(applied.len(), written.len(), "{client_lines:?}");
        }
    }

    #[test]
    fn earlier_proxies_come_first_in_x_forwarded_for() {
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2, 3.3.3.3"));
        let f = forwarded(&headers);
        assert_eq!(f.xff.unwrap(), "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9");
        assert_eq!(forwarded(&HeaderMap::new()).xff.unwrap(), "10.0.0.9");
    }
}
