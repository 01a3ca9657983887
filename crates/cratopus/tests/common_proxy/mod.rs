//! Helpers shared by the routing, proxy and error tests: an echo backend that describes what it
//! received, a check of the gateway's JSON error answers, and a raw HTTP/1.1 connection for
//! protocol edge cases that a client library would smooth over.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::{Bytes, Incoming};
use test_support::{Backend, Gateway, Reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

/// How long a raw read may wait before the test gives up (liveness only).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a gateway whose organizations are the given files (`orgs/NAME.yaml`, top-level YAML),
/// with `extra` top-level YAML in gateway.yaml.
pub fn gateway_with_orgs(orgs: &[(&str, &str)], extra: &str) -> Gateway {
    let files: Vec<(String, &str)> = orgs
        .iter()
        .map(|(name, text)| (format!("orgs/{name}.yaml"), *text))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    Gateway::start(BIN, &test_support::gateway_yaml("orgs/*.yaml", extra), &files)
}

/// A gateway with one organization (no domains, so it answers every host).
pub fn gateway_one_org(org_yaml: &str) -> Gateway {
    gateway_with_orgs(&[("t", org_yaml)], "")
}

/// Every log line of the gateway, for assertion messages.
pub fn logs(gw: &Gateway) -> String {
    gw.logs().join("\n")
}

/// What a request looked like when it reached a backend, as JSON:
/// `{method, uri, version, headers: {name: [values]}, body, body_len, body_error, peer}`.
pub async fn describe(req: Request<Incoming>, peer: SocketAddr) -> serde_json::Value {
    let (parts, body) = req.into_parts();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let v = serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        headers
            .entry(name.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
            .as_array_mut()
            .expect("array")
            .push(v);
    }
    let (body, body_error) = match body.collect().await {
        Ok(c) => (c.to_bytes(), None),
        Err(e) => (Bytes::new(), Some(e.to_string())),
    };
    serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "path_and_query": parts.uri.path_and_query().map(|p| p.as_str().to_string()),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
        "body_error": body_error,
        "peer": peer.to_string(),
    })
}

pub fn json_response(status: u16, v: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).expect("json"))))
        .expect("response")
}

/// A backend that answers every request with [`describe`] of it, plus `x-backend: <name>`.
pub async fn echo_backend(name: &'static str) -> Backend {
    Backend::start(move |req, peer| async move {
        let mut v = describe(req, peer).await;
        v["backend"] = serde_json::Value::String(name.to_string());
        let mut res = json_response(200, &v);
        res.headers_mut().insert("x-backend", name.parse().expect("header"));
        res
    })
    .await
}

/// An echo backend that also keeps every description it made.
pub async fn recording_backend(name: &'static str) -> (Backend, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let b = Backend::start(move |req, peer| {
        let s = s.clone();
        async move {
            let mut v = describe(req, peer).await;
            v["backend"] = serde_json::Value::String(name.to_string());
            s.lock().expect("lock").push(v.clone());
            let mut res = json_response(200, &v);
            res.headers_mut().insert("x-backend", name.parse().expect("header"));
            res
        }
    })
    .await;
    (b, seen)
}

/// The first value of header `name` in a [`describe`] document.
pub fn seen_header<'a>(desc: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    desc["headers"][name][0].as_str()
}

/// Every value of header `name` in a [`describe`] document.
pub fn seen_headers(desc: &serde_json::Value, name: &str) -> Vec<String> {
    desc["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Checks a gateway error answer: status, the JSON body
/// `{"error": {"status", "code", "message", "request_id"}}`, and that `request_id` equals the
/// response's `x-request-id` header.
pub fn assert_gateway_error(r: &Reply, status: u16, code: &str, gw: &Gateway) {
    assert_eq!(
        r.status,
        status,
        "expected {status} {code}, got {} with body {}\ngateway log:\n{}",
        r.status,
        r.text(),
        logs(gw)
    );
    assert_error_body(r.status, &r.headers, &r.body, status, code);
}

/// The body half of [`assert_gateway_error`], for responses read any way.
pub fn assert_error_body(
    got_status: u16,
    headers: &test_support::http::HeaderMap,
    body: &[u8],
    status: u16,
    code: &str,
) {
    assert_eq!(got_status, status);
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "error content-type is `{ct}`");
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let err = &v["error"];
    assert_eq!(err["status"], status, "error body: {v}");
    assert_eq!(err["code"], code, "error body: {v}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body has no message: {v}"
    );
    let header_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("error response has no x-request-id header; body: {v}"));
    assert!(!header_id.is_empty(), "empty x-request-id");
    assert_eq!(
        err["request_id"], header_id,
        "request_id in the body differs from the header: {v}"
    );
}

pub fn is_request_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A request with headers and a body, sent with the keep-alive client.
pub fn req(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).expect("request")
}

/// A response as read from a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and header lines as they came.
    pub head: String,
    pub headers: test_support::http::HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A raw HTTP/1.1 connection: bytes written by hand, responses parsed by hand.
pub struct Raw<S> {
    pub io: S,
    buf: Vec<u8>,
    /// How long one read may wait.
    pub timeout: Duration,
}

impl Raw<tokio::net::TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        let io = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the gateway");
        Raw::new(io)
    }
}

impl<S> Raw<S> {
    pub fn new(io: S) -> Self {
        Raw {
            io,
            buf: Vec::new(),
            timeout: READ_TIMEOUT,
        }
    }
}

impl<S: AsyncWrite + Unpin> Raw<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write to the gateway");
        self.io.flush().await.expect("flush");
    }
}

impl<S: AsyncRead + Unpin> Raw<S> {
    /// Reads more bytes into the buffer; `false` at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(self.timeout, self.io.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no data from the gateway within {:?}; buffered: {:?}",
                    self.timeout,
                    String::from_utf8_lossy(&self.buf)
                )
            })
            .expect("read from the gateway");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Reads one response head (status line and headers).
    pub async fn read_head(&mut self) -> (u16, String, test_support::http::HeaderMap) {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or("");
                let status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line `{status_line}`"));
                let mut headers = test_support::http::HeaderMap::new();
                for l in lines {
                    let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line `{l}`"));
                    headers.append(
                        test_support::http::HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
                        v.trim().parse().expect("header value"),
                    );
                }
                return (status, head, headers);
            }
            if !self.fill().await {
                panic!(
                    "connection closed before a whole response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    async fn read_exact_buf(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill().await {
                panic!("connection closed after {} of {n} body bytes", self.buf.len());
            }
        }
        self.buf.drain(..n).collect()
    }

    async fn read_line(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            if !self.fill().await {
                panic!("connection closed inside a chunked body");
            }
        }
    }

    /// Reads one whole response. `head_request` tells that it answers a HEAD (no body).
    pub async fn read_response(&mut self, head_request: bool) -> RawResponse {
        let (status, head, headers) = self.read_head().await;
        let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
        let chunked = headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if no_body {
            Vec::new()
        } else if chunked {
            let mut body = Vec::new();
            loop {
                let line = self.read_line().await;
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line `{line}`"));
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.read_line().await.is_empty() {}
                    break;
                }
                body.extend(self.read_exact_buf(size).await);
                let crlf = self.read_exact_buf(2).await;
                assert_eq!(crlf, b"\r\n", "chunk not followed by CRLF");
            }
            body
        } else if let Some(len) = headers.get("content-length") {
            let len: usize = len.to_str().ok().and_then(|l| l.parse().ok()).expect("content-length");
            self.read_exact_buf(len).await
        } else {
            // Delimited by the end of the connection.
            while self.fill().await {}
            std::mem::take(&mut self.buf)
        };
        RawResponse {
            status,
            head,
            headers,
            body,
        }
    }

    /// Waits until the peer closes; returns whatever arrived before, or `None` if the connection
    /// was still open after `wait`.
    pub async fn read_until_closed(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(std::mem::take(&mut self.buf)),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Bytes received but not yet consumed by a read.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
