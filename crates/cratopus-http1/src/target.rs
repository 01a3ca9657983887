//! The request-target's four forms (RFC 9112 §3.2) and their bytes.
//!
//! httparse has already checked that the target is visible ASCII or UTF-8 without spaces; here
//! the form is told and its stricter rules applied.

use crate::Span;
use crate::error::ParseError;
use crate::fields::valid_authority;
use crate::request::{Method, TargetForm};

/// Tells the form of `target` (non-empty, found at offset `at` of the buffer) for `method`.
pub(crate) fn classify(target: &[u8], at: usize, method: Method) -> Result<TargetForm, ParseError> {
    if target.contains(&b'#') {
        // RFC 9112's request-target has no fragment; hyper drops it, we refuse it, so that what
        // is routed is what is forwarded.
        return Err(ParseError::InvalidTarget);
    }
    let form = if target[0] == b'/' {
        if !valid_path_and_query(target) {
            return Err(ParseError::InvalidTarget);
        }
        TargetForm::Origin
    } else if target == b"*" {
        TargetForm::Asterisk
    } else if method == Method::Connect {
        if !valid_authority(target, true) {
            return Err(ParseError::InvalidTarget);
        }
        TargetForm::Authority
    } else {
        absolute(target, at)?
    };
    match (method, form) {
        (Method::Connect, TargetForm::Authority) => Ok(form),
        (Method::Connect, _) => Err(ParseError::TargetFormMismatch),
        (Method::Options, TargetForm::Asterisk) => Ok(form),
        (_, TargetForm::Asterisk) => Err(ParseError::TargetFormMismatch),
        _ => Ok(form),
    }
}

/// `absolute-URI`: `scheme "://" authority path-abempty [ "?" query ]`. Only URIs with an
/// authority are taken (an `http` URI without a host is invalid, RFC 9110 §4.2.1).
fn absolute(target: &[u8], at: usize) -> Result<TargetForm, ParseError> {
    let colon = target
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::InvalidTarget)?;
    let scheme = &target[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = &target[colon + 1..];
    if !scheme_ok || !rest.starts_with(b"//") {
        return Err(ParseError::InvalidTarget);
    }
    let auth_start = colon + 3;
    let auth_len = target[auth_start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(target.len() - auth_start);
    let authority = &target[auth_start..auth_start + auth_len];
    // Userinfo is refused (RFC 9110 §4.2.4: a recipient SHOULD treat it as an error); so is an
    // empty host.
    if authority.is_empty() || authority.starts_with(b":") || !valid_authority(authority, false) {
        return Err(ParseError::InvalidTarget);
    }
    if !valid_path_and_query(&target[auth_start + auth_len..]) {
        return Err(ParseError::InvalidTarget);
    }
    Ok(TargetForm::Absolute {
        authority: Span::new(at + auth_start, at + auth_start + auth_len),
    })
}

/// The path and query bytes the `http` crate's `Uri` takes (WHATWG's path and query sets, which
/// let `"`, `{`, `}`, `|` through in a path and `` ` ``, `{`, `|`, `}`, `^`, `\\` in a query, as
/// clients send them), so that whatever the codec accepts can become an `http::Uri`. UTF-8 was
/// checked by httparse; `#` was refused before.
fn valid_path_and_query(bytes: &[u8]) -> bool {
    let (path, query) = match bytes.iter().position(|&b| b == b'?') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    path.iter().all(|&b| PATH[b as usize]) && query.iter().all(|&b| QUERY[b as usize])
}

static PATH: [bool; 256] = table(false);
static QUERY: [bool; 256] = table(true);

const fn table(query: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if query {
            matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E | 0x80..=0xFF)
        } else {
            matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | 0x80..=0xFF | b'"' | b'{' | b'}')
        };
        i += 1;
    }
    t
}
