//! Which host a request is for, as the RFCs say, so that a proxy in front of the gateway and the
//! gateway always agree on the organization (tenant):
//!
//! - the request target's authority wins over the `Host` header: an absolute-form target on
//!   HTTP/1.1 (`GET http://a.test/x`, RFC 9112 §3.2.2: the `Host` header is then ignored) and
//!   `:authority` on HTTP/2 (RFC 9113 §8.3.1; hyper puts both in the request's URI);
//! - an HTTP/1.1 request without `Host`, any request with more than one `Host` line, and a
//!   `Host` or authority that is not a valid `host[:port]` (userinfo included) are refused with
//!   400 (RFC 9112 §3.2);
//! - an HTTP/1.0 request without `Host` (or an HTTP/2 one without `:authority`) names no host:
//!   it goes to the default organization.
//!
//! The organization, the traffic log's `host`, `X-Forwarded-Host` and a preserved `Host` all
//! come from [`request_host`] / [`host_value`], the edge's redirects to HTTPS too.

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

/// Why a request names no usable host (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an HTTP/1.1 request needs a Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Repeated,
    #[error("the Host header or the request target's authority is not a valid host")]
    Invalid,
}

/// The host (with its port, if any) `req` is for: the target's authority, else the `Host`
/// header; `""` when there is neither and that is allowed.
pub fn request_host(req: &Parts) -> Result<&str, HostError> {
    let mut lines = req.headers.get_all(header::HOST).iter();
    let header = lines.next();
    if lines.next().is_some() {
        return Err(HostError::Repeated);
    }
    // Checked even when the authority wins: a request with a broken Host is broken.
    let header = match header {
        Some(v) => v.to_str().ok().filter(|h| is_host(h)).ok_or(HostError::Invalid)?,
        None if req.version == Version::HTTP_11 => return Err(HostError::Missing),
        None => "",
    };
    match req.uri.authority() {
        Some(a) if is_host(a.as_str()) => Ok(a.as_str()),
        Some(_) => Err(HostError::Invalid),
        None => Ok(header),
    }
}

/// [`request_host`]'s answer as a header value, for the log line and `X-Forwarded-Host`; no
/// checks (a refused request is logged with what it said).
pub fn host_value(headers: &HeaderMap, uri: &Uri) -> Option<HeaderValue> {
    match uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => headers.get(header::HOST).cloned(),
    }
}

/// `host[:port]` as RFC 3986 allows it in `Host` (no userinfo): a registered name or IPv4
/// address, or an IP literal in brackets; empty is allowed (a target without authority). A
/// scan of bytes, without allocating.
fn is_host(h: &str) -> bool {
    let (name_ok, port) = match h.strip_prefix('[') {
        Some(rest) => {
            let Some((ip, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after.strip_prefix(':') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return false,
            };
            let ip_ok = !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
            (ip_ok, port)
        }
        None => {
            let (name, port) = h.split_once(':').unwrap_or((h, ""));
            (name.bytes().all(is_name_byte), port)
        }
    };
    name_ok && port.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 3986 `reg-name` (unreserved, sub-delims, percent-escapes): the codec's table (every
/// request's host goes through here), and `%`.
fn is_name_byte(b: u8) -> bool {
    b == b'%' || cratopus_http1::is_reg_name_byte(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Parts {
        let mut r = http::Request::get(uri).version(version).body(()).unwrap();
        for h in hosts {
            r.headers_mut().append(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        r.into_parts().0
    }

    #[test]
    fn the_target_wins_over_host() {
        let r = req(Version::HTTP_11, "http://a.test/x", &["b.test"]);
        assert_eq!(request_host(&r), Ok("a.test"));
        assert_eq!(host_value(&r.headers, &r.uri).unwrap(), "a.test");
        let r = req(Version::HTTP_2, "https://a.test:8443/x", &["b.test"]);
        assert_eq!(request_host(&r), Ok("a.test:8443"));
        let r = req(Version::HTTP_11, "/x", &["B.test:80"]);
        assert_eq!(request_host(&r), Ok("B.test:80"));
        let r = req(Version::HTTP_11, "/x", &["[::1]:8080"]);
        assert_eq!(request_host(&r), Ok("[::1]:8080"));
        let r = req(Version::HTTP_11, "/x", &[""]);
        assert_eq!(request_host(&r), Ok(""));
    }

    #[test]
    fn missing_repeated_and_invalid_hosts() {
        assert_eq!(request_host(&req(Version::HTTP_11, "/x", &[])), Err(HostError::Missing));
        assert_eq!(
            request_host(&req(Version::HTTP_11, "http://a.test/x", &[])),
            Err(HostError::Missing)
        );
        assert_eq!(request_host(&req(Version::HTTP_10, "/x", &[])), Ok(""));
        assert_eq!(request_host(&req(Version::HTTP_2, "/x", &[])), Ok(""));
        assert_eq!(
            request_host(&req(Version::HTTP_11, "/x", &["a.test", "b.test"])),
            Err(HostError::Repeated)
        );
        assert_eq!(
            request_host(&req(Version::HTTP_10, "/x", &["a.test", "a.test"])),
            Err(HostError::Repeated)
        );
        // Every reg-name byte (unreserved, sub-delims, `%`) is taken, and no other.
        for good in ["a-b.c_d~e!f$g&h'i(j)k*l+m,n;o=p%41", "A9.test:8080", "[::1]:443"] {
            assert_eq!(request_host(&req(Version::HTTP_11, "/x", &[good])), Ok(good));
        }
        for bad in [
            "a test",
            "a/b",
            "u@a.test",
            "a.test:x",
            "[::1",
            "[zz]",
            "a.test:80:80",
            "a\"b",
            "a?b",
            "a#b",
        ] {
            assert_eq!(
                request_host(&req(Version::HTTP_11, "/x", &[bad])),
                Err(HostError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            request_host(&req(Version::HTTP_11, "http://u@a.test/x", &["a.test"])),
            Err(HostError::Invalid)
        );
    }
}
