//! Raw bytes on both sides, so that neither a client library nor a backend's HTTP parser
//! normalizes anything a test wants to see.
//!
//! [`RawBackend`] accepts connections, reads one request head (and a body of the length its
//! `Content-Length` says), records the bytes exactly as they arrived, and answers with the
//! response bytes the test gave it. [`raw_exchange`] writes bytes to the gateway as a client and
//! reads whatever comes back until the connection closes or goes quiet.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as the backend received it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The head, request line to the blank line included.
    pub head: String,
    /// The body bytes that followed (by `Content-Length`; chunked bodies are read as they come
    /// until the zero chunk).
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The request line (`GET /x HTTP/1.1`).
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// The path of the request line, exactly as sent.
    pub fn target(&self) -> &str {
        self.request_line().split(' ').nth(1).unwrap_or("")
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
}

/// A backend that records raw requests and answers each with fixed response bytes.
pub struct RawBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<RawRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    /// Answers every request with `response` (a whole HTTP/1.1 response, head and body) and
    /// keeps the connection open for the next request unless `response` says
    /// `Connection: close`.
    pub async fn start(response: &'static [u8]) -> RawBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let close = String::from_utf8_lossy(response)
            .to_ascii_lowercase()
            .contains("connection: close");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some(req) = read_request(&mut stream, &mut buf).await {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(req);
                        if stream.write_all(response).await.is_err() || close {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        RawBackend { addr, received, task }
    }

    /// A backend answering `200` with a short body.
    pub async fn ok() -> RawBackend {
        RawBackend::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok").await
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<RawRequest> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last request received, if any.
    pub fn last(&self) -> Option<RawRequest> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).last().cloned()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request from `stream` (`buf` keeps bytes that arrived beyond it).
async fn read_request(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<RawRequest> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let req = RawRequest { head, body: Vec::new() };
    let chunked = req
        .headers("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        loop {
            if let Some(i) = find(buf, b"0\r\n\r\n")
                && (i == 0 || buf[..i].ends_with(b"\r\n"))
            {
                break buf.drain(..i + 5).collect();
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..len).collect()
    };
    Some(RawRequest { body, ..req })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects to `addr`, writes `bytes`, and reads what comes back until the peer closes or
/// nothing more arrives for `quiet` (the read as a string, lossily).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], quiet: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `raw` (`0` when there is none).
pub fn raw_status(raw: &str) -> u16 {
    raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}
