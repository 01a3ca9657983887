//! The field-level rules: which header a name is, list values, Content-Length digits, Host
//! syntax, and the scans that tell *why* httparse refused a head.

use crate::error::ParseError;
use crate::request::HeaderKind;

/// Which of the fields the codec interprets (or a proxy drops as hop-by-hop) `name` is.
pub(crate) fn kind_of(name: &[u8]) -> HeaderKind {
    // By length first: most names are none of these and leave after one comparison.
    let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is(b"te") => HeaderKind::Te,
        4 if is(b"host") => HeaderKind::Host,
        6 if is(b"expect") => HeaderKind::Expect,
        7 if is(b"upgrade") => HeaderKind::Upgrade,
        7 if is(b"trailer") => HeaderKind::Trailer,
        10 if is(b"connection") => HeaderKind::Connection,
        10 if is(b"keep-alive") => HeaderKind::KeepAlive,
        14 if is(b"content-length") => HeaderKind::ContentLength,
        16 if is(b"proxy-connection") => HeaderKind::ProxyConnection,
        17 if is(b"transfer-encoding") => HeaderKind::TransferEncoding,
        _ => HeaderKind::Other,
    }
}

/// The elements of a comma-separated list value (RFC 9110 §5.6.1), trimmed of OWS; empty
/// elements are skipped as the RFC asks.
pub(crate) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `Content-Length = 1*DIGIT`, within a u64. A list (`1, 1`) is refused by the caller before
/// this, as a duplicate.
pub(crate) fn content_length(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::InvalidContentLength)?;
    }
    Ok(n)
}

/// RFC 3986 `unreserved / sub-delims`, the bytes of a reg-name besides `%XX`.
pub fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME[b as usize]
}

/// A table: Host is checked on every request.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            );
        i += 1;
    }
    t
};

/// `uri-host [ ":" port ]` (the Host field and an authority without userinfo); `require_port`
/// for CONNECT's authority-form. An empty value is valid only as a Host field (RFC 9112 §3.2).
pub(crate) fn valid_authority(value: &[u8], require_port: bool) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        // IP-literal: hex digits, colons, dots (IPv6, IPv4 tail), or IPvFuture's bytes.
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &rest[..close];
        if inner.is_empty() || !inner.iter().all(|&b| is_reg_name_byte(b) || b == b':') {
            return false;
        }
        match &rest[close + 1..] {
            [] => (&value[..close + 2], None),
            [b':', port @ ..] => (&value[..close + 2], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    if !host.starts_with(b"[") && !valid_reg_name(host) {
        return false;
    }
    match port {
        None => !require_port,
        // RFC 3986 allows an empty port; a CONNECT needs a real one.
        Some([]) => !require_port,
        Some(p) => p.len() <= 5 && p.iter().all(u8::is_ascii_digit) && content_length(p).is_ok_and(|n| n <= 65535),
    }
}

fn valid_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = host.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !is_reg_name_byte(b) {
            return false;
        }
        i += 1;
    }
    true
}

/// The first LF in `head` not preceded by CR, and the first CR not followed by LF.
pub(crate) fn check_line_ends(head: &[u8]) -> Result<(), ParseError> {
    for i in memchr::memchr2_iter(b'\r', b'\n', head) {
        match head[i] {
            b'\n' if i == 0 || head[i - 1] != b'\r' => return Err(ParseError::BareLf),
            b'\r' if head.get(i + 1).is_some_and(|&b| b != b'\n') => return Err(ParseError::BareCr),
            _ => {}
        }
    }
    Ok(())
}

/// Why httparse refused the field lines that begin at `from` in `buf`: the first line that
/// starts with whitespace (obs-fold), has whitespace before its colon, or has a bad byte.
pub(crate) fn classify_field_error(buf: &[u8], from: usize, httparse_error: httparse::Error) -> ParseError {
    let mut rest = buf.get(from..).unwrap_or(&[]);
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let complete = end < rest.len();
        if complete && !line.ends_with(b"\r") {
            return ParseError::BareLf;
        }
        if !complete && httparse_error == httparse::Error::TooManyHeaders {
            // The line being received is not what was refused.
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\r') {
            return ParseError::BareCr;
        }
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return ParseError::ObsFold;
        }
        match line.iter().position(|&b| !httparse_token(b)) {
            Some(i) if line[i] == b':' && i > 0 => {
                let value = &line[i + 1..];
                if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                    return ParseError::InvalidHeaderValue;
                }
            }
            Some(i) if matches!(line[i], b' ' | b'\t') && i > 0 => {
                let after = trim_ows(&line[i..]);
                return if after.first() == Some(&b':') {
                    ParseError::WhitespaceBeforeColon
                } else {
                    ParseError::InvalidHeaderName
                };
            }
            _ => return ParseError::InvalidHeaderName,
        }
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    match httparse_error {
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        _ => ParseError::InvalidHeaderName,
    }
}

/// RFC 9110 `tchar`.
pub(crate) fn httparse_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            &b"example.com"[..],
            b"example.com:80",
            b"127.0.0.1:8080",
            b"[::1]",
            b"[::1]:443",
            b"a%41b",
            b"",
        ] {
            assert!(valid_authority(ok, false), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"a b"[..],
            b"user@host",
            b"host:http",
            b"host:99999",
            b"[::1",
            b"[]",
            b"a%4",
            b"a/b",
            b"[::1]x",
        ] {
            assert!(!valid_authority(bad, false), "{}", String::from_utf8_lossy(bad));
        }
        assert!(!valid_authority(b"example.com", true));
        assert!(valid_authority(b"example.com:443", true));
    }

    #[test]
    fn content_lengths() {
        assert_eq!(content_length(b"0"), Ok(0));
        assert_eq!(content_length(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b""[..], b"18446744073709551616", b"+1", b"-1", b"1 ", b"0x10", b"1,1"] {
            assert_eq!(content_length(bad), Err(ParseError::InvalidContentLength));
        }
    }

    #[test]
    fn lists_skip_empty_elements() {
        let v: Vec<&[u8]> = list(b" a ,, b\t,").collect();
        assert_eq!(v, vec![&b"a"[..], b"b"]);
    }
}
