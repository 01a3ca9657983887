//! From the codec's byte ranges to the engine's `http::Request`, and from the engine's
//! `http::Response` to the bytes of a response head.

use bytes::{BufMut, Bytes, BytesMut};
use cratopus_http1::response::{HeadWriter, ResponseFraming, framing};
use cratopus_http1::{Method, RequestHead, Version};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many headers the engine adds to a request it forwards, at most, on a route without
/// policies.
const FORWARD_ADDS: usize = 6;

/// The engine's request, its parts sharing `bytes` (the head as it arrived, taken off the
/// connection's buffer): the target and every header value are slices of it, not copies.
pub(super) fn request(head: &RequestHead, bytes: &Bytes) -> Result<http::Request<()>, &'static str> {
    let method = http::Method::from_bytes(head.method_span.of(bytes)).map_err(|_| "invalid method")?;
    let uri = http::Uri::from_maybe_shared(bytes.slice(head.target.range())).map_err(|_| "invalid request target")?;
    // Room for what the engine adds before forwarding (`X-Forwarded-*`, `X-Request-Id`,
    // `traceparent`): a map that grows rehashes every entry (perf: `HeaderMap::try_grow`).
    let mut headers = HeaderMap::with_capacity(head.headers.len() + FORWARD_ADDS);
    for h in &head.headers {
        let name = HeaderName::from_bytes(h.name.of(bytes)).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(h.value.range())).map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = match head.version {
        Version::Http10 => http::Version::HTTP_10,
        Version::Http11 => http::Version::HTTP_11,
    };
    *req.headers_mut() = headers;
    Ok(req)
}

/// The trailers of a chunked request body (field lines, each ending in CRLF); lines that do
/// not parse were already refused by the decoder.
pub(super) fn trailers(lines: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}

/// What the head written for a response decided.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    pub framing: ResponseFraming,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// A `101`: the connection is handed over once the head is out.
    pub upgrade: bool,
}

/// Writes the response head into `out`, the framing chosen from its `Content-Length` or the
/// body's exact size (chunked, or close-delimited for an HTTP/1.0 client, otherwise).
/// `keep_alive`: the request allows keeping the connection and the server is not stopping.
pub(super) fn response_head(
    out: &mut BytesMut,
    parts: &http::response::Parts,
    body_len: Option<u64>,
    method: Method,
    version: Version,
    keep_alive: bool,
) -> Written {
    let status = parts.status.as_u16();
    let upgrade = status == 101;
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes())
        .or_else(|| parts.status.canonical_reason().map(str::as_bytes));
    // A status outside 100–999 cannot be in an `http::StatusCode`, nor a reason with control
    // bytes in a `ReasonPhrase`; were one there, the client gets a 500 rather than a bad head.
    let Ok(mut w) = HeadWriter::new(out, status, reason) else {
        out.put_slice(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return Written {
            framing: ResponseFraming::NoBody,
            keep_alive: false,
            upgrade: false,
        };
    };
    let h = &parts.headers;
    let close = h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let framing = if upgrade {
        ResponseFraming::NoBody
    } else {
        framing(method, version, status, declared.or(body_len))
    };
    // A HEAD's or 304's own length tells what a GET would get: it goes as the response says.
    let keep_length = framing == ResponseFraming::NoBody && !upgrade && status >= 200 && status != 204;
    let mut dated = false;
    for (name, value) in h {
        let skip = match *name {
            header::CONTENT_LENGTH => !keep_length,
            header::TRANSFER_ENCODING => true,
            _ if name.as_str() == "keep-alive" => true,
            header::CONNECTION => !upgrade,
            header::DATE => {
                dated = true;
                false
            }
            _ => false,
        };
        if !skip {
            w.raw(name.as_str().as_bytes())
                .raw(b": ")
                .raw(value.as_bytes())
                .raw(b"\r\n");
        }
    }
    if !dated {
        w.raw(b"date: ");
        with_date(|d| {
            w.raw(d);
        });
        w.raw(b"\r\n");
    }
    let keep_alive = upgrade || (keep_alive && !close && framing != ResponseFraming::Close);
    w.finish(framing, keep_alive, version);
    Written {
        framing,
        keep_alive,
        upgrade,
    }
}

/// `HTTP/1.1 100 Continue`, for a request that waits for it before sending its body.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A refusal with the gateway's JSON error body, and the connection closed after it.
pub(crate) fn refusal(out: &mut BytesMut, status: u16, code: &str, message: &str, request_id: &HeaderValue) {
    let status_code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let body = cratopus_core::error::error_body(status_code, code, message, request_id);
    if let Ok(mut w) = HeadWriter::new(out, status, None) {
        w.raw(b"content-type: application/json\r\nx-request-id: ")
            .raw(request_id.as_bytes())
            .raw(b"\r\ndate: ");
        with_date(|d| {
            w.raw(d);
        });
        w.raw(b"\r\n");
        w.finish(ResponseFraming::Length(body.len() as u64), false, Version::Http11);
    }
    out.put_slice(&body);
}

thread_local! {
    /// The `Date` value, made once a second per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `f` with the current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                d.1.copy_from_slice(text.as_bytes());
                d.0 = secs;
            }
        }
        f(&d.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_http1::{Limits, parse_request};

    #[test]
    fn a_request_shares_the_head_and_keeps_every_field() {
        let bytes = Bytes::from_static(b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        let head = parse_request(&bytes, &Limits::default()).unwrap().unwrap();
        let req = request(&head, &bytes).unwrap();
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(req.headers()["host"], "h");
    }

    #[test]
    fn response_heads_choose_their_framing() {
        let res = http::Response::builder()
            .status(200)
            .header("x-b", "1")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (parts, ()) = res.into_parts();
        let mut out = BytesMut::new();
        let w = response_head(&mut out, &parts, Some(5), Method::Get, Version::Http11, true);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nx-b: 1\r\ndate: "), "{text}");
        assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
        assert!(w.keep_alive && !text.contains("transfer-encoding"));
        // No length, HTTP/1.0: close-delimited.
        let mut out = BytesMut::new();
        let w = response_head(&mut out, &parts, None, Method::Get, Version::Http10, true);
        assert_eq!(w.framing, ResponseFraming::Close);
        assert!(!w.keep_alive);
        // HEAD keeps the length the response declares.
        let res = http::Response::builder()
            .header("content-length", "42")
            .body(())
            .unwrap();
        let (parts, ()) = res.into_parts();
        let mut out = BytesMut::new();
        response_head(&mut out, &parts, Some(0), Method::Head, Version::Http11, true);
        assert!(
            String::from_utf8(out.to_vec())
                .unwrap()
                .contains("content-length: 42\r\n")
        );
    }
}
