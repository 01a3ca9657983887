//! The gateway's own HTTP/1.1 client to upstream targets (issue 16).
//!
//! Why not hyper's: hyper's client connection is a task of its own, so one proxied request
//! crossed between the request's task and the connection's about four times (request in, head
//! out, body out, ready again), each a wake-up and a channel message; in the load benchmark
//! that client was about a tenth of the gateway's CPU. Here the request's own task drives the
//! connection:
//!
//! - the head (and a small body that is already in hand) goes out in one `write`;
//! - the response head is parsed with `httparse` and its values are slices of the read buffer
//!   (`Bytes`, no copy);
//! - the response body is framed by the same [`BodyDecoder`] the server uses for requests
//!   (`Content-Length`, `chunked` with trailers), or read to the close;
//! - the connection goes back to its pool ([`crate::conn_pool`]) the moment the response body
//!   has ended, with nothing left over on it.
//!
//! **Full duplex.** A request body still streaming when the response head arrives keeps being
//! sent while the response body is read: [`H1Body`] writes what the client sends before it
//! reads, as hyper's connection task did. An upstream that answers early and closes gets its
//! answer relayed; the connection is then not reused.
//!
//! **Response framing** (RFC 9112 §6.3): no body after a `HEAD`, a 1xx, 204 or 304;
//! `Transfer-Encoding` wins over `Content-Length` (and the connection is closed after such a
//! response, which only a broken or hostile server sends); a `Content-Length` that is not one
//! number (or a list of one number) is a bad response; neither: the body runs to the close.
//! Interim 1xx responses other than 101 are skipped.
//!
//! HTTP/2 to upstreams and protocol upgrades stay on hyper.

use crate::body::{BoxError, RequestBody};
use crate::conn_pool::ConnPool;
use crate::forwarded::Forwarded;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use cratopus_http1::{BodyDecoder, BodyFraming, Limits};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The longest response head (status line to the empty line) taken from an upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Field lines in a response head parsed on the stack; more (up to [`MAX_HEADERS`]) are parsed
/// into a heap array.
const STACK_HEADERS: usize = 64;
const MAX_HEADERS: usize = 1000;
/// Body data up to this size is copied next to its framing (and the head) so that both go out
/// in one `write`; a larger piece is written from its own buffer.
const COPY_DATA: usize = 16 * 1024;
/// Bytes read from an upstream at a time (at least).
const READ_SIZE: usize = 16 * 1024;

/// The bounds of a response body's framing: trailers like a head, hyper's 16 KiB of chunk
/// extensions.
const BODY_LIMITS: Limits = Limits {
    max_head_bytes: MAX_HEAD,
    max_headers: 100,
    max_request_line: MAX_HEAD,
    max_header_line: MAX_HEAD,
    max_chunk_ext_bytes: 16 * 1024,
};

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// From hyper's client (HTTP/2 and upgrades).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upstream closed the connection before its response head")]
    Closed,
    #[error("bad response head from the upstream: {0}")]
    Head(&'static str),
    #[error("bad response body from the upstream: {0}")]
    Body(#[from] cratopus_http1::BodyError),
    #[error("the upstream closed the connection before the end of its response body")]
    Incomplete,
    /// The request body failed (the client's doing, told by its stats).
    #[error("request body: {0}")]
    RequestBody(BoxError),
    #[error("request body longer or shorter than its Content-Length")]
    RequestLength,
}

impl RequestError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, RequestError::Hyper(e) if e.is_timeout())
    }
}

/// A connection's transport: plain TCP or TLS.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(_) => Poll::Ready(Ok(())),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// One HTTP/1.1 connection to a target, with the bytes read from it and not yet used.
pub(crate) struct Conn {
    io: Io,
    buf: BytesMut,
}

impl Conn {
    pub(crate) fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can take a request: the target has not closed it (or sent
    /// anything out of turn) while it idled. Costs no system call unless the poller saw the
    /// socket become readable.
    pub(crate) fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut rb), Poll::Pending)
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// Whether a request with this method has content (so an empty one says `Content-Length: 0`).
fn has_payload_semantics(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || *m == Method::PATCH
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqFraming {
    /// `Content-Length` (of what is still to be written).
    Length(u64),
    Chunked,
}

/// What the gateway writes into a request's head besides the request's own headers, each
/// replacing the client's lines of its name.
#[derive(Debug, Default, Clone, Copy)]
pub struct Added<'a> {
    /// `Host`.
    pub host: Option<&'a HeaderValue>,
    /// `X-Forwarded-*`, `X-Request-Id`, `traceparent`.
    pub forwarded: Option<&'a Forwarded>,
    /// `X-Forwarded-Host`, with `forwarded`.
    pub forwarded_host: Option<&'a HeaderValue>,
}

/// Writes the request head: the request line with the URI's path and query, every header but
/// the framing ones and those `added` replaces, then `added`'s, and the framing this body gets:
/// its exact length when known, else the client's `Content-Length`, else `chunked`.
fn encode_head(out: &mut BytesMut, parts: &http::request::Parts, body: &RequestBody, added: Added<'_>) -> ReqFraming {
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut declared = None;
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH {
            declared = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            continue;
        }
        if *name == header::TRANSFER_ENCODING
            || (*name == header::HOST && added.host.is_some())
            || added
                .forwarded
                .is_some_and(|f| f.replaces(name, added.forwarded_host.is_some()))
        {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if let Some(h) = added.host {
        out.put_slice(b"host: ");
        out.put_slice(h.as_bytes());
        out.put_slice(b"\r\n");
    }
    if let Some(f) = added.forwarded {
        f.write(out, added.forwarded_host);
    }
    let framing = match (body.size_hint().exact(), declared) {
        (Some(0), None) if body.is_end_stream() && !has_payload_semantics(&parts.method) => ReqFraming::Length(0),
        (Some(n), _) | (None, Some(n)) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
            ReqFraming::Length(n)
        }
        (None, None) => {
            out.put_slice(b"transfer-encoding: chunked\r\n");
            ReqFraming::Chunked
        }
    };
    out.put_slice(b"\r\n");
    framing
}

/// The request's side of an exchange: head, then body, written as the body's frames come.
struct Writer {
    /// Bytes to write next: the head, chunk framing, small data.
    out: BytesMut,
    /// A large data frame, written after `out` from its own buffer.
    data: Bytes,
    /// `\r\n` goes after `data` (a chunk's end).
    crlf_after_data: bool,
    /// The body still to be read from; `None` once it ended (its end is in `out`).
    body: Option<RequestBody>,
    framing: ReqFraming,
    /// The target stopped taking bytes (it may have answered early); nothing more is written.
    broken: bool,
}

enum WriteFault {
    /// The connection failed.
    Io(std::io::Error),
    /// The request body failed, or did not match its length.
    Body(RequestError),
}

impl Writer {
    /// Writes the head of `parts` into a buffer from the pool, where a small body joins it.
    fn new(parts: &http::request::Parts, body: RequestBody, added: Added<'_>) -> Writer {
        let mut out = cratopus_http1::pool::take();
        let framing = encode_head(&mut out, parts, &body, added);
        let body = (!body.is_end_stream()).then_some(body);
        let mut w = Writer {
            out,
            data: Bytes::new(),
            crlf_after_data: false,
            body,
            framing,
            broken: false,
        };
        if w.body.is_none() && framing == ReqFraming::Chunked {
            w.out.put_slice(b"0\r\n\r\n");
        }
        w
    }

    fn is_done(&self) -> bool {
        self.body.is_none() && self.out.is_empty() && self.data.is_empty()
    }

    fn push_data(&mut self, data: Bytes) -> Result<(), WriteFault> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            ReqFraming::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(WriteFault::Body(RequestError::RequestLength))?;
            }
            ReqFraming::Chunked => {
                self.out
                    .put_slice(cratopus_http1::response::ChunkHead::new(data.len()).as_bytes());
            }
        }
        let chunked = self.framing == ReqFraming::Chunked;
        if data.len() <= COPY_DATA {
            self.out.put_slice(&data);
            if chunked {
                self.out.put_slice(b"\r\n");
            }
        } else {
            self.data = data;
            self.crlf_after_data = chunked;
        }
        Ok(())
    }

    /// The body ended (with `trailers`, for a chunked one).
    fn end(&mut self, trailers: Option<&HeaderMap>) -> Result<(), WriteFault> {
        self.body = None;
        match self.framing {
            ReqFraming::Length(0) => Ok(()),
            ReqFraming::Length(_) => Err(WriteFault::Body(RequestError::RequestLength)),
            ReqFraming::Chunked => {
                self.out.put_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    self.out.put_slice(name.as_str().as_bytes());
                    self.out.put_slice(b": ");
                    self.out.put_slice(value.as_bytes());
                    self.out.put_slice(b"\r\n");
                }
                self.out.put_slice(b"\r\n");
                Ok(())
            }
        }
    }

    /// Writes what it can: `Ready(Ok)` once the whole request is out, `Pending` while waiting
    /// for the client's body or for room on the connection.
    fn poll_write(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<Result<(), WriteFault>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Take what the client has sent, while it is ready and there is room.
            while self.data.is_empty() && self.out.len() < COPY_DATA {
                let Some(body) = &mut self.body else { break };
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            self.push_data(data)?;
                            if body_ended(&self.body) {
                                self.end(None)?;
                            }
                        }
                        Err(frame) => {
                            let trailers = frame.into_trailers().ok();
                            self.end(trailers.as_ref())?;
                        }
                    },
                    Poll::Ready(Some(Err(e))) => {
                        self.body = None;
                        return Poll::Ready(Err(WriteFault::Body(RequestError::RequestBody(e))));
                    }
                    Poll::Ready(None) => self.end(None)?,
                    Poll::Pending => break,
                }
            }
            if !self.out.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out)).map_err(WriteFault::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(WriteFault::Io(std::io::ErrorKind::WriteZero.into())));
                }
                // Written bytes leave the front; the next `put` reclaims the room (the buffer
                // is ours alone).
                self.out.advance(n);
                continue;
            }
            if !self.data.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.data)).map_err(WriteFault::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(WriteFault::Io(std::io::ErrorKind::WriteZero.into())));
                }
                self.data.advance(n);
                if self.data.is_empty() && std::mem::take(&mut self.crlf_after_data) {
                    self.out.put_slice(b"\r\n");
                }
                continue;
            }
            ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(WriteFault::Io)?;
            return if self.body.is_none() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending // waiting for the client's next bytes
            };
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        cratopus_http1::pool::give(std::mem::take(&mut self.out));
    }
}

fn body_ended(body: &Option<RequestBody>) -> bool {
    body.as_ref().is_some_and(|b| b.is_end_stream())
}

/// How the response body is read.
enum Reading {
    Framed(BodyDecoder),
    /// To the connection's close.
    UntilClose,
    Done,
}

/// One request and its response on one connection, from the first byte written to the last
/// byte read. Boxed: it is the response body's state as well.
pub(crate) struct Exchange {
    conn: Option<Conn>,
    writer: Writer,
    reading: Reading,
    trailers: Option<HeaderMap>,
    /// The connection may carry another request after this one.
    keep_alive: bool,
    head_request: bool,
    /// Some byte of a response came: a failure is no longer a stale idle connection's.
    answered: bool,
    pool: Arc<ConnPool>,
    addr: SocketAddr,
}

/// How an exchange failed; `stale`: on a reused connection, before any byte of the response
/// (the target closed it as it was taken): the request may go again on a new one.
pub(crate) struct Failed {
    pub error: RequestError,
    pub stale: bool,
}

impl Exchange {
    pub(crate) fn new(
        pool: Arc<ConnPool>,
        addr: SocketAddr,
        conn: Conn,
        parts: &http::request::Parts,
        body: RequestBody,
        added: Added<'_>,
    ) -> Box<Exchange> {
        Box::new(Exchange {
            conn: Some(conn),
            writer: Writer::new(parts, body, added),
            reading: Reading::Done,
            trailers: None,
            keep_alive: false,
            head_request: parts.method == Method::HEAD,
            answered: false,
            pool,
            addr,
        })
    }

    /// Sends the request and reads the response head; the response's body reads the rest.
    pub(crate) async fn response(mut self: Box<Self>, reused: bool) -> Result<Response<H1Body>, Failed> {
        let head = std::future::poll_fn(|cx| self.poll_head(cx)).await;
        match head {
            Ok(parts) => {
                self.finish_if_done();
                Ok(Response::from_parts(parts, H1Body(self)))
            }
            Err(error) => {
                let stale = reused && !self.answered && matches!(error, RequestError::Io(_) | RequestError::Closed);
                Err(Failed { error, stale })
            }
        }
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<http::response::Parts, RequestError>> {
        let Some(conn) = &mut self.conn else {
            return Poll::Ready(Err(RequestError::Closed));
        };
        let mut write_error = None;
        match self.writer.poll_write(&mut conn.io, cx) {
            Poll::Ready(Err(WriteFault::Body(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(Err(WriteFault::Io(e))) => {
                // The target may have answered and closed: read what it sent.
                self.writer.broken = true;
                write_error = Some(e);
            }
            _ => {}
        }
        loop {
            if !conn.buf.is_empty() {
                self.answered = true;
                match parse_head(&mut conn.buf, self.head_request)? {
                    Some(Parsed::Interim) => continue,
                    Some(Parsed::Final(parts, framing, keep_alive)) => {
                        self.keep_alive = keep_alive && !self.writer.broken;
                        self.reading = match framing {
                            RespFraming::Empty => Reading::Done,
                            RespFraming::Framed(f) => Reading::Framed(BodyDecoder::new(f, &BODY_LIMITS)),
                            RespFraming::UntilClose => Reading::UntilClose,
                        };
                        return Poll::Ready(Ok(parts));
                    }
                    None => {}
                }
            }
            match conn.poll_read_more(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(write_error.map_or(RequestError::Closed, RequestError::Io)));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(RequestError::Io(write_error.unwrap_or(e)))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The response has ended: the connection goes back to the pool when the request is all
    /// out and nothing more came, else it closes.
    fn finish_if_done(&mut self) {
        if !matches!(self.reading, Reading::Done) || self.trailers.is_some() {
            return;
        }
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && self.writer.is_done()
            && conn.buf.is_empty()
        {
            self.pool.put_h1(self.addr, conn);
        }
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(conn) = &mut self.conn
            && !self.writer.is_done()
        {
            match self.writer.poll_write(&mut conn.io, cx) {
                Poll::Ready(Err(WriteFault::Body(e))) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(Err(WriteFault::Io(_))) => {
                    self.writer.broken = true;
                    self.keep_alive = false;
                }
                _ => {}
            }
        }
        loop {
            let Some(conn) = &mut self.conn else {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match &mut self.reading {
                Reading::Done => {
                    let trailers = self.trailers.take();
                    self.finish_if_done();
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
                Reading::Framed(decoder) => {
                    if !conn.buf.is_empty() {
                        let step = match decoder.decode(&conn.buf) {
                            Ok(s) => s,
                            Err(e) => {
                                self.conn = None;
                                return Poll::Ready(Some(Err(Box::new(RequestError::Body(e)))));
                            }
                        };
                        if step.done {
                            self.reading = Reading::Done;
                        }
                        if !step.data.is_empty() {
                            conn.buf.advance(step.data.start);
                            let data = conn.buf.split_to(step.data.len()).freeze();
                            conn.buf.advance(step.consumed - step.data.end);
                            self.finish_if_done();
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        if let Some(t) = step.trailers {
                            self.trailers = Some(parse_trailers(&conn.buf[t.start as usize..t.end as usize + 2]));
                        }
                        conn.buf.advance(step.consumed);
                        if step.done {
                            continue;
                        }
                    }
                }
                Reading::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) if matches!(self.reading, Reading::UntilClose) => {
                    self.keep_alive = false;
                    self.reading = Reading::Done;
                }
                Ok(0) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(Box::new(RequestError::Incomplete))));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(Box::new(RequestError::Io(e)))));
                }
            }
        }
    }
}

/// A response body read from one of the gateway's own upstream connections.
pub struct H1Body(Box<Exchange>);

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().0.poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0.reading, Reading::Done) && self.0.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0.reading {
            Reading::Done if self.0.trailers.is_none() => SizeHint::with_exact(0),
            Reading::Framed(d) => d.remaining().map_or_else(SizeHint::default, SizeHint::with_exact),
            _ => SizeHint::default(),
        }
    }
}

enum RespFraming {
    Empty,
    Framed(BodyFraming),
    UntilClose,
}

enum Parsed {
    /// A 1xx (other than 101), dropped from the buffer.
    Interim,
    /// The head, its body's framing, and whether the connection may be kept.
    Final(http::response::Parts, RespFraming, bool),
}

/// Parses a response head at the start of `buf`; `None`: not all of it yet. The head's bytes
/// leave `buf` (shared by the header values, which are not copied).
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Parsed>, RequestError> {
    // Where the head ends, found without parsing it twice: its empty line. A head whose lines
    // end in a bare LF (httparse takes those, as hyper did) is the rare case parsed for it.
    let len = match memchr::memmem::find(buf, b"\r\n\r\n") {
        Some(i) => i + 4,
        None => {
            let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
            let mut many;
            let mut parsed = httparse::Response::new(&mut slots).parse(buf);
            if let Err(httparse::Error::TooManyHeaders) = parsed {
                many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
                parsed = httparse::Response::new(&mut many).parse(buf);
            }
            match parsed {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                    return Err(RequestError::Head("head too large"));
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(RequestError::Head("malformed")),
            }
        }
    };
    if len > MAX_HEAD {
        return Err(RequestError::Head("head too large"));
    }
    let head = buf.split_to(len).freeze();
    let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut many;
    let mut res = httparse::Response::new(&mut slots);
    let mut parsed = res.parse(&head);
    if let Err(httparse::Error::TooManyHeaders) = parsed {
        many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
        res = httparse::Response::new(&mut many);
        parsed = res.parse(&head);
    }
    match parsed {
        Ok(httparse::Status::Complete(n)) if n < len => {
            // A bare-LF head followed by a body holding an empty CRLF line: what follows the
            // head goes back in front of the bytes still unread (a copy, for this case only).
            let mut rest = BytesMut::with_capacity(len - n + buf.len());
            rest.put_slice(&head[n..]);
            rest.put_slice(buf);
            *buf = rest;
        }
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(RequestError::Head("malformed")),
    }
    head_parts(&head, &res, head_request).map(Some)
}

/// The response of a parsed head (`res`, parsed from `head`).
fn head_parts(head: &Bytes, res: &httparse::Response<'_, '_>, head_request: bool) -> Result<Parsed, RequestError> {
    let code = res.code.ok_or(RequestError::Head("malformed"))?;
    let status = StatusCode::from_u16(code).map_err(|_| RequestError::Head("bad status"))?;
    if status.is_informational() && code != 101 {
        return Ok(Parsed::Interim);
    }
    let version = if res.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut headers = HeaderMap::with_capacity(res.headers.len() + 4);
    let (mut length, mut chunked, mut te, mut close, mut keep) = (None::<u64>, false, false, false, false);
    // `Connection` names a field besides its own tokens: it stays for `strip_hop_by_hop`.
    let mut listed = false;
    for h in res.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| RequestError::Head("bad field name"))?;
        if name == header::CONTENT_LENGTH {
            for part in h.value.split(|&b| b == b',') {
                let n = std::str::from_utf8(part.trim_ascii())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(RequestError::Head("bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(RequestError::Head("conflicting Content-Length"));
                }
                length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            te = true;
            // Only the final coding counts: a later line overrides an earlier one's end.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let (c, k) = (t.eq_ignore_ascii_case(b"close"), t.eq_ignore_ascii_case(b"keep-alive"));
                close |= c;
                keep |= k;
                listed |= !c && !k && !t.is_empty();
            }
        }
        // Hop-by-hop fields are the gateway's to read, never to pass on (RFC 9110 §7.6.1): not
        // kept, so that the answer's `strip_hop_by_hop` has nothing to look up and remove (the
        // usual `Connection: keep-alive` cost ~400 instructions a response that way).
        if crate::headers::hop_index(&name).is_some() && !(listed && name == header::CONNECTION) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| RequestError::Head("bad field value"))?;
        headers.append(name, value);
    }
    if te && length.is_some() {
        // Framed by Transfer-Encoding, the length is wrong for the body as it is sent on.
        headers.remove(header::CONTENT_LENGTH);
    }
    let mut keep_alive = !close && (version == Version::HTTP_11 || keep);
    let framing = if head_request || code == 101 || code == 204 || code == 304 {
        RespFraming::Empty
    } else if te {
        // Both framings: Transfer-Encoding wins (RFC 9112 §6.3), and the connection, whose
        // framing the two parties may see differently, is not reused.
        if length.is_some() {
            keep_alive = false;
        }
        if chunked {
            RespFraming::Framed(BodyFraming::Chunked)
        } else {
            RespFraming::UntilClose
        }
    } else {
        match length {
            Some(0) => RespFraming::Empty,
            Some(n) => RespFraming::Framed(BodyFraming::Length(n)),
            None => RespFraming::UntilClose,
        }
    };
    if matches!(framing, RespFraming::UntilClose) || code == 101 {
        keep_alive = false;
    }
    let mut parts = Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    // A reason phrase other than the status's usual one goes on, as hyper's client kept it.
    if let Some(reason) = res.reason
        && Some(reason) != status.canonical_reason()
        && let Ok(r) = hyper::ext::ReasonPhrase::try_from(head.slice_ref(reason.as_bytes()))
    {
        parts.extensions.insert(r);
    }
    Ok(Parsed::Final(parts, framing, keep_alive))
}

/// The trailer field lines of a chunked body (the decoder checked them), as a header map.
fn parse_trailers(section: &[u8]) -> HeaderMap {
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut map = HeaderMap::new();
    if let Ok(httparse::Status::Complete((_, fields))) = httparse::parse_headers(section, &mut slots) {
        for f in fields {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                map.append(n, v);
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a body framed as `framing` out of `buf` the way [`H1Body`] does, with `buf`
    /// holding everything the target sent.
    fn decode_all(framing: RespFraming, buf: &mut BytesMut) -> Result<(Vec<u8>, Option<HeaderMap>), RequestError> {
        let mut d = match framing {
            RespFraming::Empty => return Ok((Vec::new(), None)),
            RespFraming::UntilClose => return Ok((buf.split().to_vec(), None)),
            RespFraming::Framed(f) => BodyDecoder::new(f, &BODY_LIMITS),
        };
        let (mut data, mut trailers) = (Vec::new(), None);
        while !d.is_done() {
            let step = d.decode(buf)?;
            data.extend_from_slice(&buf[step.data.clone()]);
            if let Some(t) = step.trailers {
                trailers = Some(parse_trailers(&buf[t.start as usize..t.end as usize + 2]));
            }
            buf.advance(step.consumed);
            if step.consumed == 0 && !step.done {
                return Err(RequestError::Incomplete);
            }
        }
        Ok((data, trailers))
    }

    fn parse(
        bytes: &[u8],
        head_request: bool,
    ) -> Result<Option<(http::response::Parts, RespFraming, bool, BytesMut)>, RequestError> {
        let mut buf = BytesMut::from(bytes);
        loop {
            match parse_head(&mut buf, head_request)? {
                None => return Ok(None),
                Some(Parsed::Interim) => continue,
                Some(Parsed::Final(parts, framing, keep)) => return Ok(Some((parts, framing, keep, buf))),
            }
        }
    }

    /// A response's hop-by-hop fields, and those its `Connection` names, do not reach the map
    /// as the answer leaves it (parsed, then `strip_hop_by_hop`), nor does a length that
    /// Transfer-Encoding overrides.
    #[test]
    fn hop_by_hop_fields_are_not_passed_on() {
        for (head, kept) in [
            (
                &b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n"[..],
                &["x-kept", "content-length"][..],
            ),
            (
                b"HTTP/1.1 200 OK\r\nX-Hop: 1\r\nConnection: keep-alive, x-hop\r\nTrailer: x-t\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n",
                &["x-kept", "content-length"],
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nX-Kept: 1\r\n\r\n0\r\n\r\n",
                &["x-kept"],
            ),
        ] {
            let (mut p, ..) = parse(head, false).unwrap().unwrap();
            crate::headers::strip_hop_by_hop(&mut p.headers);
            let names: Vec<&str> = p.headers.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, kept, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn heads_and_framings() {
        let (p, f, keep, mut rest) = parse(
            b"HTTP/1.1 201 Made\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcNEXT",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.status, 201);
        assert_eq!(p.headers["x-a"], "b");
        assert_eq!(
            p.extensions.get::<hyper::ext::ReasonPhrase>().unwrap().as_bytes(),
            b"Made"
        );
        assert!(keep);
        assert_eq!(decode_all(f, &mut rest).unwrap().0, b"abc");
        assert_eq!(&rest[..], b"NEXT");
        // Bare LF ends lines as hyper accepted; an empty CRLF line in the body does not end the head.
        let (_, f, _, mut rest) = parse(b"HTTP/1.1 200 OK\nContent-Length: 6\n\nab\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(decode_all(f, &mut rest).unwrap().0, b"ab\r\n\r\n");
        // HTTP/1.0 keeps the connection only when it says so; no length: to the close.
        let (p, f, keep, _) = parse(b"HTTP/1.0 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(p.version, Version::HTTP_10);
        assert!(matches!(f, RespFraming::UntilClose) && !keep);
        let (_, _, keep, _) = parse(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(keep);
        let (_, _, keep, _) = parse(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!keep);
        // A list of one length is that length; the same twice too.
        let (_, f, _, _) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(matches!(f, RespFraming::Framed(BodyFraming::Length(4))));
        // Partial heads wait for more.
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap().is_none());
        // A head past the limit is refused rather than read on.
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
        assert!(parse(&huge, false).is_err());
        // Many fields are taken up to the bound.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..200 {
            many.extend_from_slice(format!("x-{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(parse(&many, false).unwrap().unwrap().0.headers.len(), 201);
    }

    /// A response as a target might send it: status, fields, and a body framed by length,
    /// by chunks (with trailers), or by the close.
    fn response() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, u8)> {
        let body = proptest::collection::vec(any::<u8>(), 0..300);
        let chunks = proptest::collection::vec(1usize..80, 0..5);
        (200u16..600, body, 0u8..3, chunks, proptest::bool::ANY).prop_map(|(status, body, framing, chunks, trailer)| {
            let mut out = format!("HTTP/1.1 {status} X\r\nserver: t\r\n").into_bytes();
            match framing {
                0 => {
                    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                }
                1 => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                    let mut rest = &body[..];
                    for n in chunks.iter().copied().chain(std::iter::repeat(64)) {
                        if rest.is_empty() {
                            break;
                        }
                        let (piece, more) = rest.split_at(n.min(rest.len()));
                        out.extend_from_slice(format!("{:x};e=1\r\n", piece.len()).as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                        rest = more;
                    }
                    out.extend_from_slice(if trailer { b"0\r\nx-t: 1\r\n\r\n" } else { b"0\r\n\r\n" });
                }
                _ => {
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&body);
                }
            }
            (out, body, framing)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever a target sends, parsing and reading never panic.
        #[test]
        fn any_bytes_are_taken_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600), head in proptest::bool::ANY) {
            if let Ok(Some((_, f, _, mut rest))) = parse(&bytes, head) {
                let _ = decode_all(f, &mut rest);
            }
        }

        /// A well-framed response's body comes out exactly, whatever the framing, and a
        /// mutated one is read or refused without panicking.
        #[test]
        fn framed_bodies_come_out_whole((bytes, body, framing) in response(), flip in any::<prop::sample::Index>(), to in any::<u8>()) {
            let (parts, f, keep, mut rest) = parse(&bytes, false).unwrap().unwrap();
            let status = parts.status.as_u16();
            let (data, _) = decode_all(f, &mut rest).unwrap();
            if matches!(status, 204 | 304) {
                prop_assert!(data.is_empty());
            } else {
                prop_assert_eq!(&data, &body);
                prop_assert_eq!(keep, framing != 2);
            }
            let mut mutated = bytes.clone();
            let i = flip.index(mutated.len());
            mutated[i] = to;
            if let Ok(Some((_, f, _, mut rest))) = parse(&mutated, false) {
                let _ = decode_all(f, &mut rest);
            }
        }
    }
}
