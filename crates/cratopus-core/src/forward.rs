//! What changes on the way through: the upstream path, hop-by-hop headers, the `X-Forwarded-*`
//! headers and the request id.

use crate::snapshot::{Route, Segment};
use http::header::{HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use std::net::IpAddr;

pub use cratopus_policies::chain::X_CONSUMER_ID;
pub use cratopus_upstream::forwarded::{
    Forwarded, TRACEPARENT, TRACEPARENT_LEN, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID,
};
pub use cratopus_upstream::headers::strip_hop_by_hop;

/// The path and query the upstream receives: the route's rewrite with its params filled in,
/// or the client's path less the route's `strip_prefix`. `None` means unchanged.
pub fn upstream_path(route: &Route, params: &matchit::Params, path: &str, query: Option<&str>) -> Option<PathAndQuery> {
    let mut out = if let Some(t) = &route.rewrite {
        let mut s = String::with_capacity(path.len() + 16);
        for seg in t {
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Param(p) => s.push_str(params.get(p).unwrap_or("")),
            }
        }
        s
    } else if let Some(prefix) = &route.strip_prefix {
        let rest = path.strip_prefix(prefix.as_str())?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None; // `/apiary` does not lose `/api`
        }
        let mut s = String::with_capacity(rest.len() + 1 + query.map_or(0, |q| q.len() + 1));
        if !rest.starts_with('/') {
            s.push('/');
        }
        s.push_str(rest);
        s
    } else {
        return None;
    };
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out).ok()
}

/// An address as a header value (for `X-Forwarded-For`).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // An address's text is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The client's request id if it sent a sane one, or a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    new_request_id()
}

/// A new random request id: 32 hex digits (128 bits).
pub fn new_request_id() -> HeaderValue {
    let n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

/// The W3C trace context of a request: the caller's trace (or a new one) and the gateway's own
/// span in it, which upstreams see as their parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The gateway's span for this request.
    pub span_id: [u8; 8],
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    /// The span of the upstream call: the parent the upstream sees in its `traceparent`.
    pub upstream_span_id: [u8; 8],
    pub flags: u8,
}

/// `bytes` as lowercase hex into `out` (twice as long).
fn hex_to(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

fn hex_into(out: &mut [u8], s: &str) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

impl TraceContext {
    /// Continues the trace of a valid `traceparent` (version 00, non-zero ids) with the caller's
    /// sampling decision, or starts one when there is none or it is malformed, as the W3C spec
    /// asks; a started trace is sampled with probability `sample_ratio`.
    pub fn from_headers(headers: &HeaderMap, sample_ratio: f64) -> TraceContext {
        let parsed = headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(|v| {
            let mut parts = v.trim().split('-');
            let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if version != "00" || parts.next().is_some() {
                return None;
            }
            let mut trace_id = [0u8; 16];
            let mut parent_id = [0u8; 8];
            let mut fl = [0u8; 1];
            hex_into(&mut trace_id, trace)?;
            hex_into(&mut parent_id, parent)?;
            hex_into(&mut fl, flags)?;
            (trace_id != [0; 16] && parent_id != [0; 8]).then_some((trace_id, Some(parent_id), fl[0]))
        });
        let (trace_id, parent_id, flags) = parsed.unwrap_or_else(|| {
            let sampled = sample_ratio >= 1.0 || fastrand::f64() < sample_ratio;
            (fastrand::u128(1..).to_be_bytes(), None, u8::from(sampled))
        });
        TraceContext {
            trace_id,
            span_id: fastrand::u64(1..).to_be_bytes(),
            parent_id,
            upstream_span_id: fastrand::u64(1..).to_be_bytes(),
            flags,
        }
    }

    /// Whether the trace is sampled (flag bit 0), i.e. its spans are recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// `00-<trace id>-<upstream call's span id>-<flags>`, the `traceparent` the upstream gets
    /// (see [`Forwarded`]): written into a fixed template (an iterator chain over the three
    /// ids cost ~1,200 instructions per request).
    pub fn traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_to(&mut buf[3..35], &self.trace_id);
        hex_to(&mut buf[36..52], &self.upstream_span_id);
        hex_to(&mut buf[53..55], &[self.flags]);
        buf
    }
}

/// The size of a request head as the client sent it, near enough for a limit.
pub fn head_size(uri_len: usize, headers: &HeaderMap) -> usize {
    uri_len
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let h = HeaderMap::new();
        let a = request_id(&h);
        assert_eq!(a.len(), 32);
        assert_ne!(a, request_id(&h));
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-1"));
        assert_eq!(request_id(&h), "abc-1");
    }

    #[test]
    fn trace_context_continues_or_starts() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT.clone(),
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h, 0.0);
        let v = t.traceparent();
        let v = std::str::from_utf8(&v).unwrap();
        assert!(v.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{v}");
        assert!(v.ends_with("-01"));
        assert_eq!(v.len(), 55);
        assert_eq!(&v[35..36], "-");
        assert_eq!(&v[52..53], "-");
        assert_ne!(
            &v[36..52],
            "00f067aa0ba902b7",
            "the gateway's own span is the parent upstream"
        );
        for bad in [
            "junk",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            h.insert(TRACEPARENT.clone(), HeaderValue::from_static(bad));
            let t = TraceContext::from_headers(&h, 1.0);
            assert_ne!(t.trace_id, [0; 16]);
            assert_eq!(t.flags, 1);
            assert!(
                !std::str::from_utf8(&t.traceparent())
                    .unwrap()
                    .contains("4bf92f3577b34da6"),
                "{bad}"
            );
        }
    }

    #[test]
    fn new_traces_follow_the_sample_ratio() {
        let h = HeaderMap::new();
        assert!((0..100).all(|_| TraceContext::from_headers(&h, 0.0).flags == 0));
        assert!((0..100).all(|_| TraceContext::from_headers(&h, 1.0).flags == 1));
        let sampled = (0..10_000)
            .filter(|_| TraceContext::from_headers(&h, 0.1).flags == 1)
            .count();
        assert!((700..1300).contains(&sampled), "{sampled}");
    }

    /// The gateway's headers as a backend that takes them in the map gets them.
    fn set_forwarded(headers: &mut HeaderMap, client: &HeaderValue, proto: &'static str, request_id: &HeaderValue) {
        let trace = TraceContext::from_headers(&HeaderMap::new(), 1.0).traceparent();
        Forwarded::new(headers, client, proto, request_id, trace).apply(headers, None);
    }

    #[test]
    fn xff_appends() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_static("10.0.0.1"));
        set_forwarded(
            &mut h,
            &ip_value("127.0.0.1".parse().unwrap()),
            "http",
            &HeaderValue::from_static("id"),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("10.0.0.1"));
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("10.0.0.2, 10.0.0.3"));
        set_forwarded(
            &mut h,
            &ip_value("127.0.0.1".parse().unwrap()),
            "http",
            &HeaderValue::from_static("id"),
        );
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }
}
