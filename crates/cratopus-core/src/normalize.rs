//! Request paths as the router sees them: normalized once, before routing, and forwarded as
//! normalized, so that the gateway and the upstream always agree on which path was asked for.
//!
//! A router that matches the raw path while the upstream normalizes it is an authentication
//! bypass: with `/admin/{*rest}` behind a key and an open `/{*rest}`, `/public/../admin/x`
//! matches the open route and the upstream serves `/admin/x`. So, before matching:
//!
//! 1. percent-encoded unreserved characters (RFC 3986 §2.3: letters, digits, `-._~`) are
//!    decoded and the hex digits of every other escape are upper-cased (§6.2.2.1, §6.2.2.2);
//! 2. with `merge_slashes`, runs of `/` become one (as nginx and Envoy do);
//! 3. dot segments are removed (§5.2.4 `remove_dot_segments`, after decoding, so `%2e%2e` is
//!    `..`).
//!
//! What cannot be normalized safely is refused with 400: an escaped `/` or `\` (`%2F`, `%5C`,
//! or a bare `\`), which servers read differently (unless `escaped_slashes` says otherwise); a
//! `..` that would climb above the root; a control character, bare or escaped (`%00`–`%1F`,
//! `%7F`); a malformed escape. The settings are Envoy's (`normalize_path`, `merge_slashes`,
//! `path_with_escaped_slashes_action`), safe by default.
//!
//! The common path (no `%`, no `\`, no `//`, no `.` or `..` segment) is scanned once and
//! borrowed: it allocates nothing. The query string is never touched.

use cratopus_config::{EscapedSlashes, PathNormalization};
use std::borrow::Cow;

/// A normalized path, and whether the client should be redirected to it
/// (`escaped_slashes: unescape_and_redirect` when an escaped slash was decoded).
#[derive(Debug, PartialEq, Eq)]
pub struct Normalized<'a> {
    pub path: Cow<'a, str>,
    pub redirect: bool,
}

/// Why a path cannot be normalized safely (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path contains an escaped `/` or `\\` (%2F, %5C) or a `\\`, which servers read differently")]
    EscapedSlash,
    #[error("the path climbs above the root with `..`")]
    AboveRoot,
    #[error("the path contains a control character")]
    Control,
    #[error("the path contains a malformed percent-escape")]
    BadEscape,
}

/// `path` normalized by `rules` (see the module doc). A path that does not start with `/`
/// (`*` of `OPTIONS *`) is left alone.
pub fn normalize<'a>(path: &'a str, rules: &PathNormalization) -> Result<Normalized<'a>, PathError> {
    if !path.starts_with('/') || is_normal(path.as_bytes(), rules) {
        return Ok(Normalized {
            path: Cow::Borrowed(path),
            redirect: false,
        });
    }
    let (decoded, unescaped_slash) = decode(path.as_bytes(), rules)?;
    let normal = segments(&decoded, rules)?;
    let redirect = unescaped_slash && rules.escaped_slashes == EscapedSlashes::UnescapeAndRedirect;
    Ok(Normalized {
        path: if normal == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(normal)
        },
        redirect,
    })
}

/// Whether `p` is already as [`normalize`] would leave it, in one pass: the common case.
fn is_normal(p: &[u8], rules: &PathNormalization) -> bool {
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'%' | b'\\' | 0..=0x1F | 0x7F => return false,
            b'/' => {
                let rest = &p[i + 1..];
                if rules.merge_slashes && rest.first() == Some(&b'/') {
                    return false;
                }
                if rules.normalize && matches!(rest, [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..])
                {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Step 1: escapes decoded or upper-cased, escaped slashes handled, controls refused. Also
/// says whether an escaped slash was decoded.
fn decode(p: &[u8], rules: &PathNormalization) -> Result<(String, bool), PathError> {
    let mut out = Vec::with_capacity(p.len());
    let mut unescaped_slash = false;
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (p.get(i + 1).and_then(hex), p.get(i + 2).and_then(hex)) else {
                    return Err(PathError::BadEscape);
                };
                let v = (hi << 4) | lo;
                let escape = [b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]];
                match v {
                    0..=0x1F | 0x7F => return Err(PathError::Control),
                    b'/' | b'\\' => {
                        let kept = if rules.normalize { &escape[..] } else { &p[i..i + 3] };
                        slash(&mut out, kept, rules, &mut unescaped_slash)?;
                    }
                    _ if rules.normalize && is_unreserved(v) => out.push(v),
                    _ if rules.normalize => out.extend_from_slice(&escape),
                    _ => out.extend_from_slice(&p[i..i + 3]),
                }
                i += 3;
                continue;
            }
            b'\\' => slash(&mut out, b"\\", rules, &mut unescaped_slash)?,
            0..=0x1F | 0x7F => return Err(PathError::Control),
            _ => out.push(b),
        }
        i += 1;
    }
    // Only ASCII was decoded, and every other byte was copied whole: still UTF-8.
    let text = String::from_utf8(out).map_err(|_| PathError::BadEscape)?;
    Ok((text, unescaped_slash))
}

/// An escaped slash (or a bare `\`) as `escaped_slashes` says: refused, kept as written
/// (`kept`), or read as `/`.
fn slash(out: &mut Vec<u8>, kept: &[u8], rules: &PathNormalization, unescaped: &mut bool) -> Result<(), PathError> {
    match rules.escaped_slashes {
        EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
        EscapedSlashes::Keep => out.extend_from_slice(kept),
        EscapedSlashes::UnescapeAndForward | EscapedSlashes::UnescapeAndRedirect => {
            out.push(b'/');
            *unescaped = true;
        }
    }
    Ok(())
}

/// Steps 2 and 3: empty segments merged, dot segments removed. `p` starts with `/`.
fn segments(p: &str, rules: &PathNormalization) -> Result<String, PathError> {
    let body = p.get(1..).unwrap_or("");
    let mut kept: Vec<&str> = Vec::new();
    // A path ending in `/`, `/.` or `/..` names a directory: it keeps its final `/`.
    let mut trailing_slash = false;
    let mut parts = body.split('/').peekable();
    while let Some(seg) = parts.next() {
        let last = parts.peek().is_none();
        match seg {
            "." if rules.normalize => trailing_slash = last,
            ".." if rules.normalize => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            "" if last => trailing_slash = true,
            "" if rules.merge_slashes => {}
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(p.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(escaped_slashes: EscapedSlashes) -> PathNormalization {
        PathNormalization {
            escaped_slashes,
            ..PathNormalization::default()
        }
    }

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, &PathNormalization::default()).map(|n| n.path.into_owned())
    }

    #[test]
    fn the_common_path_is_borrowed() {
        for p in [
            "/",
            "/a/b",
            "/a/b/",
            "/.well-known/x",
            "/a.b/c..d/...",
            "/v1/users/{id}",
        ] {
            let n = normalize(p, &PathNormalization::default()).unwrap();
            assert!(matches!(n.path, Cow::Borrowed(_)), "{p}");
            assert!(!n.redirect);
        }
    }

    #[test]
    fn dot_segments_escapes_and_slashes() {
        let cases = [
            ("/public/../admin/x", "/admin/x"),
            ("/%61dmin/x", "/admin/x"),
            ("//admin/x", "/admin/x"),
            ("/./admin/x", "/admin/x"),
            ("/%2e/admin/x", "/admin/x"),
            ("/public/%2e%2e/admin/x", "/admin/x"),
            ("/public/%2E%2E/admin/x", "/admin/x"),
            ("/admin/./x", "/admin/x"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/a//b///c/", "/a/b/c/"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%7euser/%41%5a", "/~user/AZ"),
            ("/a%20b", "/a%20b"),
            ("/x%3fy", "/x%3Fy"),
            ("/%25", "/%25"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases = [
            ("/admin%2Fx", PathError::EscapedSlash),
            ("/ADMIN%2fx", PathError::EscapedSlash),
            ("/a%5cb", PathError::EscapedSlash),
            ("/a\\b", PathError::EscapedSlash),
            ("/..", PathError::AboveRoot),
            ("/a/../../b", PathError::AboveRoot),
            ("/%2e%2e/x", PathError::AboveRoot),
            ("/a%00b", PathError::Control),
            ("/a%0d%0ab", PathError::Control),
            ("/a%7f", PathError::Control),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn escaped_slash_actions() {
        let keep = rules(EscapedSlashes::Keep);
        let n = normalize("/admin%2fx/./y", &keep).unwrap();
        assert_eq!((n.path.as_ref(), n.redirect), ("/admin%2Fx/y", false));

        let fwd = rules(EscapedSlashes::UnescapeAndForward);
        let n = normalize("/admin%2Fx%5cy", &fwd).unwrap();
        assert_eq!((n.path.as_ref(), n.redirect), ("/admin/x/y", false));

        let redirect = rules(EscapedSlashes::UnescapeAndRedirect);
        let n = normalize("/admin%2Fx", &redirect).unwrap();
        assert_eq!((n.path.as_ref(), n.redirect), ("/admin/x", true));
        let n = normalize("/a/../admin/x", &redirect).unwrap();
        assert_eq!((n.path.as_ref(), n.redirect), ("/admin/x", false));
    }

    #[test]
    fn each_step_can_be_turned_off() {
        let no_merge = PathNormalization {
            merge_slashes: false,
            ..PathNormalization::default()
        };
        assert_eq!(normalize("/a//b/./c", &no_merge).unwrap().path, "/a//b/c");
        let raw = PathNormalization {
            normalize: false,
            ..PathNormalization::default()
        };
        assert_eq!(normalize("/a/../%61//b", &raw).unwrap().path, "/a/../%61/b");
        assert!(matches!(normalize("/a/../b", &raw).unwrap().path, Cow::Borrowed(_)));
        assert_eq!(normalize("/a%2fb", &raw), Err(PathError::EscapedSlash));
        assert_eq!(normalize("/a%00", &raw), Err(PathError::Control));
        assert_eq!(normalize("*", &PathNormalization::default()).unwrap().path, "*");
    }
}
