//! gRPC on the wire, as far as a gateway reads it (grpc/doc/PROTOCOL-HTTP2.md): which requests
//! are gRPC, the caller's deadline (`grpc-timeout`), the status of a Trailers-Only answer, and
//! the percent-encoding of `grpc-message`. The gateway never parses messages on the proxied
//! path; it reads heads only.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether a request (or answer) is gRPC: `application/grpc`, `application/grpc+proto`, and
/// the gRPC-Web types (`application/grpc-web…`), which a gRPC-Web route translates.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_type(v.as_bytes()))
}

fn is_grpc_type(ct: &[u8]) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    ct.len() >= PREFIX.len()
        && ct[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        && matches!(ct.get(PREFIX.len()), None | Some(b'+' | b'-' | b';'))
}

/// The caller's deadline: `grpc-timeout` is at most eight digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). `None` when absent or malformed (a malformed one is ignored, as grpc-go does).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_timeout(headers.get(&GRPC_TIMEOUT)?.as_bytes())
}

fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc-status` of an answer that carries it in its head (a Trailers-Only answer: the
/// call failed before any message).
pub fn head_status(headers: &HeaderMap) -> Option<u8> {
    std::str::from_utf8(headers.get(&GRPC_STATUS)?.as_bytes())
        .ok()?
        .parse()
        .ok()
}

/// `grpc-message` as the spec wants it: UTF-8, every byte outside printable ASCII (and `%`)
/// percent-encoded.
pub fn message_value(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // Only printable ASCII is left, which a header value always takes.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc-web",
            "application/grpc-web-text+proto",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc_type(ct.as_bytes()), "{ct}");
        }
        for ct in ["application/json", "application/grpcx", "application/grp", ""] {
            assert!(!is_grpc_type(ct.as_bytes()), "{ct}");
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_timeout(b"10n"), Some(Duration::from_nanos(10)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "10"] {
            assert_eq!(parse_timeout(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(message_value("no healthy target"), "no healthy target");
        assert_eq!(message_value("100% über\n"), "100%25 %C3%BCber%0A");
    }

    #[test]
    fn status_in_the_head() {
        let mut h = HeaderMap::new();
        assert_eq!(head_status(&h), None);
        h.insert(GRPC_STATUS.clone(), HeaderValue::from_static("14"));
        assert_eq!(head_status(&h), Some(14));
    }
}
