//! Requests refused before the engine saw them: a head hyper or the gateway's own HTTP/1 codec
//! could not parse or will not take (400, 501, 505), one over its size limits (431, 414), one that did not arrive in time (408, written by the connection's IO,
//! or an HTTP/2 header block cut off by the watchdog). Like every answer of the gateway they are
//! counted (`cratopus_unrouted_requests_total`) and get a traffic-log line, with what is known:
//! the client's address and, when the request line arrived, method and path.

use crate::conn_io::Refusal;
use cratopus_core::Engine;
use cratopus_observe::LogLine;
use std::net::IpAddr;
use std::time::Instant;

/// The status of a connection error that hyper answered itself, if it is one.
pub fn status_of(e: &hyper::Error) -> Option<u16> {
    if e.is_parse_too_large() {
        // hyper tells the two apart only in its message.
        Some(if e.to_string().contains("URI") { 414 } else { 431 })
    } else if e.is_parse() {
        Some(400)
    } else {
        None
    }
}

/// The error code of the log line, as the engine names the same refusals.
pub(crate) fn code(status: u16) -> &'static str {
    match status {
        408 => "request_timeout",
        414 => "uri_too_long",
        431 => "headers_too_large",
        501 => "not_implemented",
        505 => "http_version_not_supported",
        _ => "bad_request",
    }
}

/// Counts the refusal and writes its log line.
pub fn log(engine: &Engine, client: IpAddr, r: Refusal) {
    engine.metrics.unrouted(r.status);
    let snap = engine.snapshot();
    if !snap.traffic_log.enabled() {
        return;
    }
    let (method, uri) = request_line(&r.head);
    let took = r.since.map(|s| Instant::now().saturating_duration_since(s));
    let request_id = r.request_id.unwrap_or_else(cratopus_core::forward::new_request_id);
    let line = LogLine::answered(request_id, client, r.status);
    snap.traffic_log.log(LogLine {
        // The line is dated when the request began, like every other.
        ts: took.and_then(|t| line.ts.checked_sub(t)).unwrap_or(line.ts),
        method,
        uri,
        total_ms: took.map_or(0.0, |t| t.as_secs_f64() * 1000.0),
        error: Some(r.code.unwrap_or_else(|| code(r.status))),
        ..line
    });
}

/// Method and target of an HTTP/1 request line, as far as they arrived and parse.
fn request_line(head: &[u8]) -> (Option<http::Method>, Option<http::Uri>) {
    let complete = head.ends_with(b"\n");
    let line = head.strip_suffix(b"\n").unwrap_or(head);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return (None, None);
    };
    let method = http::Method::from_bytes(method).ok();
    // A target cut short is not a path the client asked for.
    let uri = (complete || parts.next().is_some())
        .then(|| http::Uri::try_from(target).ok())
        .flatten();
    (method, uri)
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn request_lines() {
        let (m, u) = request_line(b"GET /a/b?k=v HTTP/1.1\r\n");
        assert_eq!(m.unwrap(), http::Method::GET);
        assert_eq!(u.unwrap().path(), "/a/b");
        // Cut short: the method is known, the path is not.
        let (m, u) = request_line(b"POST /very/lo");
        assert_eq!(m.unwrap(), http::Method::POST);
        assert!(u.is_none());
        let (m, u) = request_line(b"\x01\x02 \x03");
        assert!(m.is_none() && u.is_none());
        let (m, u) = request_line(b"");
        assert!(m.is_none() && u.is_none());
    }
}
