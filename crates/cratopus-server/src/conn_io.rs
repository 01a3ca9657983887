//! The connection's socket as hyper sees it.
//!
//! hyper closes a connection silently when a client is too slow to send its request head. We
//! want to answer such a client with 408 first, so the IO remembers whether part of a request
//! has arrived since the last response was written, and writes the 408 itself when the serving
//! task asks for it before dropping the connection.
//!
//! Reads and writes go straight to the stream (tokio's `TcpStream` reads into uninitialised
//! memory and skips the extra `recv` after a short read). Over TLS the 408 is encrypted like any
//! answer, so it is written by a short task of its own as the connection drops.
//!
//! The IO also watches what arrives, for what hyper does not do itself:
//! - HTTP/2 has no header-read or idle timeout in hyper. The IO tells the protocol from the first
//!   bytes, follows HTTP/2's frames ([`crate::h2_frames`]) and notes in [`ConnState`] when a
//!   header block began and when anything last arrived, for the connection's
//!   [watchdog](crate::watchdog).
//! - A request hyper refuses itself (a malformed head: 400, 414, 431) or a head too slow (408)
//!   never reaches the engine. The IO keeps the start of each HTTP/1 request (its request line,
//!   copied once per request) so that such a refusal can still be logged with its method and
//!   path ([`ConnState::take_refusal`]).

use crate::h2_frames::{Block, FrameScanner, PREFACE};
use http::HeaderValue;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A client connection's stream: plain TCP or TLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes the 408 as the connection is dropped (its send buffer is empty then).
    fn answer_408(self, request_id: &HeaderValue);

    /// TLS chose HTTP/2 by ALPN: the connection goes to the HTTP/2 server straight away.
    fn alpn_h2(&self) -> bool {
        false
    }

    /// Ready when a read would find bytes (or the end): an idle connection waits here without a
    /// read buffer. A stream that cannot tell is always ready.
    fn poll_readable(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ClientStream for TcpStream {
    fn answer_408(self, request_id: &HeaderValue) {
        // A short non-blocking write goes out whole into an empty send buffer.
        let _ = self.try_write(&timeout_response(request_id));
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn alpn_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        // Decrypted bytes waiting in rustls: readable now. Otherwise (rustls wants TLS
        // records) only the socket can bring any.
        if tls.wants_read() {
            tcp.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn answer_408(mut self, request_id: &HeaderValue) {
        let response = timeout_response(request_id);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                self.write_all(&response).await?;
                self.shutdown().await
            })
            .await;
        });
    }
}

/// The protocol a connection speaks, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Not known yet: nothing arrived, or only a beginning of the HTTP/2 preface.
    Unknown = 0,
    Http1 = 1,
    Http2 = 2,
}

/// What is shared between the IO (owned by hyper), the task serving the connection, its
/// watchdog and its request handler.
#[derive(Debug)]
pub struct ConnState {
    /// Bytes arrived since the last write: a request is partly read.
    partial: AtomicBool,
    /// The serving task wants a 408 written when the IO is dropped.
    send_408: AtomicBool,
    proto: AtomicU8,
    /// The connection's clock: the times below are milliseconds since this.
    base: Instant,
    /// When the header block being received began (HTTP/2, or a preface not yet complete),
    /// plus one; 0 when none is open.
    head_since: AtomicU64,
    /// When anything last arrived or a stream last ended (HTTP/2).
    last_active: AtomicU64,
    /// HTTP/2 streams being served (requests whose response has not ended).
    streams: AtomicUsize,
    /// The status the connection's request was refused with (400, 408, 414, 431); 0 if none.
    refused: AtomicU16,
    /// What the IO knew of the refused request, left there when it was dropped.
    refusal: Mutex<Option<Refusal>>,
}

/// A request refused before it reached the engine, for its log line.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    /// The start of the request as it arrived (its request line, when that came whole).
    pub head: Vec<u8>,
    /// When its first byte arrived.
    pub since: Option<Instant>,
    /// The id given in the answer (the 408 carries one).
    pub request_id: Option<HeaderValue>,
    /// The log's error code, when the status's usual one is not precise enough.
    pub code: Option<&'static str>,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            partial: AtomicBool::new(false),
            send_408: AtomicBool::new(false),
            proto: AtomicU8::new(Proto::Unknown as u8),
            base: Instant::now(),
            head_since: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
            streams: AtomicUsize::new(0),
            refused: AtomicU16::new(0),
            refusal: Mutex::new(None),
        }
    }

    pub fn is_partial(&self) -> bool {
        self.partial.load(Ordering::Relaxed)
    }

    pub fn proto(&self) -> Proto {
        match self.proto.load(Ordering::Relaxed) {
            1 => Proto::Http1,
            2 => Proto::Http2,
            _ => Proto::Unknown,
        }
    }

    /// Asks the IO to answer 408 when it is dropped.
    pub fn request_timeout(&self) {
        self.send_408.store(true, Ordering::Relaxed);
        self.refuse(408);
    }

    /// Notes that the connection's request was refused with `status` (hyper answered it, or
    /// nothing can be answered): the IO leaves a [`Refusal`] when it is dropped.
    pub fn refuse(&self, status: u16) {
        self.refused.store(status, Ordering::Relaxed);
    }

    /// The refused request, once the IO has been dropped.
    pub fn take_refusal(&self) -> Option<Refusal> {
        self.refusal.lock().ok()?.take()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// When the open header block began, if one is open.
    pub fn head_since(&self) -> Option<Instant> {
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.at(ms - 1)),
        }
    }

    fn set_head_open(&self, open: bool) {
        let v = if open { self.now_ms().saturating_add(1) } else { 0 };
        self.head_since.store(v, Ordering::Relaxed);
    }

    /// When the connection last received anything or ended a stream (HTTP/2).
    pub fn last_active(&self) -> Instant {
        self.at(self.last_active.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        self.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    /// HTTP/2 streams being served.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// A request begins; on HTTP/2 it counts as an open stream until the guard is dropped (with
    /// its response body). Nothing is counted on HTTP/1, where hyper keeps its own timer.
    pub fn stream_opened(self: &Arc<Self>) -> Option<StreamGuard> {
        (self.proto() == Proto::Http2).then(|| {
            self.streams.fetch_add(1, Ordering::Relaxed);
            StreamGuard(self.clone())
        })
    }
}

/// An open HTTP/2 stream; see [`ConnState::stream_opened`].
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnState>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How much of an HTTP/1 request's start is kept for the log of a refusal: of a request line
/// longer than this, the path is not logged.
pub(crate) const HEAD_KEPT: usize = 256;

/// The start of the HTTP/1 request being read: its bytes up to the end of the request line.
#[derive(Debug)]
struct HeadStart {
    bytes: [u8; HEAD_KEPT],
    len: usize,
    /// The request line is complete (or the buffer full): nothing more is copied.
    done: bool,
    since: Option<Instant>,
}

impl HeadStart {
    fn new() -> HeadStart {
        HeadStart {
            bytes: [0; HEAD_KEPT],
            len: 0,
            done: false,
            since: None,
        }
    }

    /// A new request begins with `bytes`.
    fn restart(&mut self, bytes: &[u8]) {
        self.len = 0;
        self.done = false;
        self.since = Some(Instant::now());
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        let line_end = bytes.iter().position(|&b| b == b'\n');
        let take = line_end.map_or(bytes.len(), |i| i + 1).min(HEAD_KEPT - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
        self.done = line_end.is_some() || self.len == HEAD_KEPT;
    }
}

#[derive(Debug)]
pub struct ConnIo<S: ClientStream> {
    /// Always there until the IO is dropped (taken then to write a 408).
    stream: Option<S>,
    state: Arc<ConnState>,
    proto: Proto,
    /// Bytes of the HTTP/2 preface seen while the protocol is unknown.
    preface: usize,
    frames: FrameScanner,
    head: Box<HeadStart>,
}

impl<S: ClientStream> ConnIo<S> {
    pub fn new(stream: S) -> (ConnIo<S>, Arc<ConnState>) {
        let state = Arc::new(ConnState::new());
        (
            ConnIo {
                stream: Some(stream),
                state: state.clone(),
                proto: Proto::Unknown,
                preface: 0,
                frames: FrameScanner::default(),
                head: Box::new(HeadStart::new()),
            },
            state,
        )
    }

    fn stream(&mut self) -> io::Result<Pin<&mut S>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn set_proto(&mut self, proto: Proto) {
        self.proto = proto;
        self.state.proto.store(proto as u8, Ordering::Relaxed);
    }

    /// Looks at bytes that just arrived; `fresh` when they begin a new request (nothing had
    /// arrived since the last write).
    fn arrived(&mut self, bytes: &[u8], fresh: bool) {
        match self.proto {
            Proto::Http1 if fresh => self.head.restart(bytes),
            Proto::Http1 => self.head.push(bytes),
            Proto::Http2 => self.frames_arrived(bytes),
            Proto::Unknown => {
                let n = bytes.len().min(PREFACE.len() - self.preface);
                if bytes[..n] == PREFACE[self.preface..self.preface + n] {
                    if self.preface == 0 {
                        // A preface coming slowly is a head coming slowly.
                        self.state.set_head_open(true);
                    }
                    self.preface += n;
                    if self.preface == PREFACE.len() {
                        self.set_proto(Proto::Http2);
                        self.state.set_head_open(false);
                        self.frames_arrived(&bytes[n..]);
                    }
                } else {
                    self.set_proto(Proto::Http1);
                    if self.preface > 0 {
                        self.state.set_head_open(false);
                    }
                    self.head.restart(&PREFACE[..self.preface]);
                    self.head.push(bytes);
                }
            }
        }
    }

    fn frames_arrived(&mut self, bytes: &[u8]) {
        self.state.touch();
        match self.frames.feed(bytes) {
            Block::Opened => self.state.set_head_open(true),
            Block::Closed => self.state.set_head_open(false),
            Block::Same => {}
        }
    }
}

/// What a 408 says: the head did not come within `header_read_timeout`.
pub(crate) const HEAD_TIMEOUT_MESSAGE: &str = "the request head did not arrive in time";

/// The 408 answer, with the request id `id` (a fresh one, like every answer of the gateway):
/// written like every refusal of the own HTTP/1 server.
fn timeout_response(id: &HeaderValue) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    crate::h1::message::refusal(&mut out, 408, crate::refusal::code(408), HEAD_TIMEOUT_MESSAGE, id);
    out.to_vec()
}

impl<S: ClientStream> Drop for ConnIo<S> {
    fn drop(&mut self) {
        let status = self.state.refused.load(Ordering::Relaxed);
        if status == 0 {
            return;
        }
        let mut request_id = None;
        if self.state.send_408.load(Ordering::Relaxed)
            && let Some(stream) = self.stream.take()
        {
            let id = cratopus_core::forward::new_request_id();
            stream.answer_408(&id);
            request_id = Some(id);
        }
        let h1 = self.proto == Proto::Http1;
        let refusal = Refusal {
            status,
            head: if h1 {
                self.head.bytes[..self.head.len].to_vec()
            } else {
                Vec::new()
            },
            since: if h1 { self.head.since } else { None },
            request_id,
            code: None,
        };
        if let Ok(mut slot) = self.state.refusal.lock() {
            *slot = Some(refusal);
        }
    }
}

impl<S: ClientStream> AsyncRead for ConnIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = match self.stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if buf.filled().len() > before {
            let fresh = !self.state.partial.load(Ordering::Relaxed);
            if fresh {
                self.state.partial.store(true, Ordering::Relaxed);
            }
            self.arrived(&buf.filled()[before..], fresh);
        }
        res
    }
}

impl<S: ClientStream> AsyncWrite for ConnIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.state.partial.store(false, Ordering::Relaxed);
        match self.stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.state.partial.store(false, Ordering::Relaxed);
        match self.stream() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_response_is_well_formed() {
        let id = cratopus_core::forward::new_request_id();
        let bytes = timeout_response(&id);
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["status"], 408);
        let id = v["error"]["request_id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(head.contains(&format!("x-request-id: {id}")));
    }

    #[test]
    fn keeps_the_request_line_across_reads() {
        let mut h = HeadStart::new();
        h.restart(b"GET /a/b");
        h.push(b"/c HTTP/1.1\r\nHost: x\r\n");
        h.push(b"More: y\r\n");
        assert_eq!(&h.bytes[..h.len], b"GET /a/b/c HTTP/1.1\r\n");
        h.restart(&[b'x'; 300]);
        assert_eq!(h.len, HEAD_KEPT);
        assert!(h.done);
    }
}
