//! The gateway's own HTTP/1.1 server loop (issue 16, stage two), on the codec of
//! `cratopus-http1`.
//!
//! Why not hyper's: hyper keeps about 16 KiB of read and write buffers in every connection for
//! as long as it lives, idle or not. Here a connection between requests holds no buffer at all:
//! it waits for the socket to be readable ([`ClientStream::poll_readable`]), takes a buffer from
//! the per-thread [`pool`] when bytes arrive, and gives it back when the response is out and
//! nothing of a next request is waiting (over TLS too, unless rustls holds decrypted bytes).
//!
//! One connection, one task, one request at a time (pipelined requests wait in the buffer):
//! - the head is parsed in place ([`parse_request`]) and becomes the engine's request with its
//!   target and header values as slices of the bytes that arrived ([`message::request`]);
//! - a request the codec refuses (RFC 9112's grammar, smuggling, limits: see
//!   [`cratopus_http1::ParseError`]) is answered with the gateway's JSON error and its status,
//!   logged like any refusal ([`crate::refusal`]), and the connection closed;
//! - a head that does not arrive within `header_read_timeout` gets 408 if part of it came,
//!   and a connection idle that long between requests is closed without a word (hyper did
//!   the same);
//! - the body, the response and the client going away are handled by [`exchange`];
//! - a connection that opens with HTTP/2's preface (h2c with prior knowledge) goes to hyper's
//!   HTTP/2 server with the bytes read so far put back in front ([`Ended::Http2`]).

mod exchange;
pub(crate) mod message;

use crate::conn_io::{ClientStream, Refusal};
use crate::h2_frames::PREFACE;
use crate::listener::ServeOptions;
use crate::rewind::Rewind;
use bytes::BytesMut;
use cratopus_core::body::ClientBody;
use cratopus_core::websocket::{ClientUpgrade, UpgradedIo};
use cratopus_core::{ConnInfo, Engine};
use cratopus_http1::{BodyDecoder, BodyError, BodyFraming, RequestHead, parse_request, pool};
use cratopus_upstream::fed_body;
use exchange::{Answer, Exchange, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Which HTTP/1 server serves plain connections: ours, unless `CRATOPUS_HTTP1=hyper` asks for
/// hyper's (kept while ours is new, to compare and to fall back on).
pub fn enabled() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| std::env::var("CRATOPUS_HTTP1").map_or(true, |v| v != "hyper"))
}

/// How the loop ended.
pub(crate) enum Ended<S> {
    Closed,
    /// The connection speaks HTTP/2 (its preface came): here it is, with the bytes read so far
    /// put back in front.
    Http2(Rewind<S>),
}

/// How long a connection that is shut down waits for the client to read the last response
/// while what it still sends is thrown away (a close with unread bytes would reset the
/// connection and could destroy the response in flight).
const LINGER: Duration = Duration::from_secs(2);

/// Serves HTTP/1.1 on `io` until the connection closes, is upgraded, or turns out to be
/// HTTP/2.
pub(crate) async fn serve<S: ClientStream>(
    mut io: S,
    engine: Arc<Engine>,
    info: Arc<ConnInfo>,
    stop: &watch::Receiver<bool>,
    opts: &ServeOptions,
) -> Ended<S> {
    let limits = &opts.http1;
    // The server stopping, watched once for the connection's whole life: a wait made anew for
    // every request would take the channel's lock (shared by every connection) twice a request.
    let mut stopping = stop.clone();
    let stopped = stopping.changed();
    tokio::pin!(stopped);
    let mut buf: Option<BytesMut> = None;
    let mut first = true;
    loop {
        // A block, so that the head and what reading it took end before the request is served.
        let served = {
            // ---- The next head.
            let deadline = tokio::time::Instant::now() + opts.header_read_timeout;
            let mut since: Option<Instant> = None;
            let head = loop {
                if let Some(b) = buf.as_ref().filter(|b| !b.is_empty()) {
                    since.get_or_insert_with(Instant::now);
                    if first {
                        let n = b.len().min(PREFACE.len());
                        if b[..n] == PREFACE[..n] {
                            if n == PREFACE.len() {
                                let bytes = buf.take().map(BytesMut::freeze).unwrap_or_default();
                                return Ended::Http2(Rewind::new(io, bytes));
                            }
                        } else {
                            first = false;
                        }
                    }
                    if !first {
                        match parse_request(b, limits) {
                            Ok(Some(head)) => break head,
                            Ok(None) => {}
                            Err(e) => {
                                let why = Refused::new(e.status(), e.to_string());
                                Box::pin(refuse(&mut io, &engine, &info, b, since, why)).await;
                                return Ended::Closed;
                            }
                        }
                    }
                }
                let partial = buf.as_ref().is_some_and(|b| !b.is_empty());
                if !partial && *stop.borrow() {
                    return Ended::Closed;
                }
                let read = tokio::select! {
                    biased;
                    r = read_more(&mut io, &mut buf) => r,
                    _ = tokio::time::sleep_until(deadline) => {
                        if let Some(b) = buf.as_ref().filter(|b| !b.is_empty()) {
                            let why = Refused::new(408, crate::conn_io::HEAD_TIMEOUT_MESSAGE.to_string());
                            Box::pin(refuse(&mut io, &engine, &info, b, since, why)).await;
                        }
                        return Ended::Closed;
                    }
                    _ = &mut stopped, if !partial => return Ended::Closed,
                };
                match read {
                    Ok(n) if n > 0 => {}
                    // The client closed (a head cut short is not answered: nobody reads it).
                    _ => return Ended::Closed,
                }
            };
            first = false;
            // ---- The request, served by a future of its own, allocated per request: held in
            // this one, its locals (the head, the request, the exchange) would be room that
            // every connection keeps while it waits for its next request.
            Box::pin(one_request(
                &mut io, &mut buf, head, since, &engine, &info, stop, limits,
            ))
        };
        match served.await {
            Next::KeepAlive => {
                // Nothing of a next request waits: the connection idles without a buffer.
                if buf.as_ref().is_some_and(BytesMut::is_empty)
                    && let Some(b) = buf.take()
                {
                    pool::give(b);
                }
            }
            Next::Closed => return Ended::Closed,
            Next::Upgrade(tx) => {
                let early = buf.take().map(BytesMut::freeze).unwrap_or_default();
                if let Some(tx) = tx {
                    let _ = tx.send(Box::new(Rewind::new(io, early)));
                }
                return Ended::Closed;
            }
        }
    }
}

/// What follows a request on its connection.
enum Next {
    KeepAlive,
    Closed,
    /// Switched protocols: the connection goes to whoever waits for it (the WebSocket relay).
    Upgrade(Option<tokio::sync::oneshot::Sender<Box<dyn UpgradedIo>>>),
}

/// One request whose head has arrived (`head`, at the front of `buf`), from its engine's
/// request to its response's last byte.
///
/// Not an `async fn`: that would keep the head (136 bytes) twice in the future, as the
/// argument and as a local; the future is allocated and copied whole once per request.
#[allow(clippy::too_many_arguments)] // the connection's parts, lent for one request
#[allow(clippy::manual_async_fn)] // see above
fn one_request<S: ClientStream>(
    io: &mut S,
    buf: &mut Option<BytesMut>,
    head: RequestHead,
    since: Option<Instant>,
    engine: &Arc<Engine>,
    info: &Arc<ConnInfo>,
    stop: &watch::Receiver<bool>,
    limits: &cratopus_http1::Limits,
) -> impl Future<Output = Next> {
    async move {
        let Some(b) = buf.as_mut() else {
            return Next::Closed;
        };
        let head_bytes = b.split_to(head.len).freeze();
        let mut req = match message::request(&head, &head_bytes) {
            Ok(r) => r,
            Err(why) => {
                let why = Refused::new(400, why.to_string());
                Box::pin(refuse(io, engine, info, &head_bytes, since, why)).await;
                return Next::Closed;
            }
        };
        // A chunked body whose framing is already wrong in what arrived with the head (a
        // smuggling attempt's usual shape) is refused before anything reaches a backend.
        if let Some(e) = buf.as_deref().and_then(|rest| framing_error(&head, limits, rest)) {
            // Named as the engine names a body it could not read.
            let why = Refused {
                status: e.status(),
                code: "bad_request_body",
                message: format!("the chunked request body is malformed: {e}"),
            };
            Box::pin(refuse(io, engine, info, &head_bytes, since, why)).await;
            return Next::Closed;
        }
        let upgrade = (head.upgrade.is_some() && head.connection_upgrade).then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel::<Box<dyn UpgradedIo>>();
            req.extensions_mut().insert(ClientUpgrade::new(rx));
            tx
        });
        let (body, fed) = request_body(&head, limits);
        let req = req.map(|()| body);
        let answer: Answer = Box::pin(engine.clone().handle_owned(req, info.clone()));
        let expect_continue = head.expect_continue && head.version == cratopus_http1::Version::Http11;
        let exchange = Exchange::new(
            io,
            buf,
            fed,
            answer,
            head.method,
            head.version,
            head.keep_alive,
            expect_continue,
            stop,
        );
        drop(head_bytes);
        match exchange.run().await {
            Outcome::KeepAlive => Next::KeepAlive,
            Outcome::Gone => Next::Closed,
            Outcome::Close => {
                Box::pin(close(io, buf.take())).await;
                Next::Closed
            }
            Outcome::Upgrade => Next::Upgrade(upgrade),
        }
    }
}

/// The engine's body for the request and, when it has one, the connection's end of it.
fn request_body(
    head: &RequestHead,
    limits: &cratopus_http1::Limits,
) -> (ClientBody, Option<(fed_body::Feeder, BodyDecoder)>) {
    let length = match head.body {
        BodyFraming::Empty | BodyFraming::Length(0) => return (ClientBody::Empty, None),
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Chunked => None,
    };
    let (feeder, body) = fed_body::channel(length);
    (
        ClientBody::Fed(body),
        Some((feeder, BodyDecoder::new(head.body, limits))),
    )
}

/// The first framing error in the part of a chunked body that has arrived, if any.
fn framing_error(head: &RequestHead, limits: &cratopus_http1::Limits, mut rest: &[u8]) -> Option<BodyError> {
    if head.body != BodyFraming::Chunked {
        return None;
    }
    let mut decoder = BodyDecoder::new(head.body, limits);
    loop {
        match decoder.decode(rest) {
            Err(e) => return Some(e),
            Ok(step) if step.done || step.consumed == 0 => return None,
            Ok(step) => rest = &rest[step.consumed..],
        }
    }
}

/// Reads into the connection's buffer, taking one from the pool only once bytes are there.
async fn read_more<S: ClientStream>(io: &mut S, buf: &mut Option<BytesMut>) -> std::io::Result<usize> {
    if buf.is_none() {
        std::future::poll_fn(|cx| io.poll_readable(cx)).await?;
    }
    let b = buf.get_or_insert_with(pool::take);
    if b.capacity() == b.len() {
        // A head beyond the small buffer: the parser's limit ends the growth.
        b.reserve(pool::SMALL);
    }
    io.read_buf(b).await
}

/// Closes the connection after its last response: a shutdown, then what the client still
/// sends is read and dropped for a moment, so that its unread bytes do not turn the close into
/// a reset that could destroy the response on its way.
async fn close<S: ClientStream>(io: &mut S, buf: Option<BytesMut>) {
    let mut b = buf.unwrap_or_else(pool::take);
    let _ = tokio::time::timeout(LINGER, async {
        io.shutdown().await?;
        loop {
            b.clear();
            if b.capacity() < pool::SMALL {
                b.reserve(pool::SMALL);
            }
            if io.read_buf(&mut b).await? == 0 {
                return Ok::<_, std::io::Error>(());
            }
        }
    })
    .await;
    pool::give(b);
}

/// Why a request is refused before the engine sees it.
struct Refused {
    status: u16,
    code: &'static str,
    message: String,
}

impl Refused {
    /// A refusal with the usual code of its status.
    fn new(status: u16, message: String) -> Refused {
        Refused {
            status,
            code: crate::refusal::code(status),
            message,
        }
    }
}

/// Answers a refused request with its status and the gateway's JSON error, logs it, and
/// closes.
async fn refuse<S: ClientStream>(
    io: &mut S,
    engine: &Engine,
    info: &ConnInfo,
    seen: &[u8],
    since: Option<Instant>,
    why: Refused,
) {
    let id = cratopus_core::forward::new_request_id();
    let mut out = pool::take();
    message::refusal(&mut out, why.status, why.code, &why.message, &id);
    let _ = tokio::time::timeout(LINGER, io.write_all(&out)).await;
    pool::give(out);
    log_refusal(engine, info, seen, since, why.status, why.code, id);
    close(io, None).await;
}

fn log_refusal(
    engine: &Engine,
    info: &ConnInfo,
    seen: &[u8],
    since: Option<Instant>,
    status: u16,
    code: &'static str,
    id: http::HeaderValue,
) {
    // The request line, as far as it came, names the request in the log (kept as long as the
    // hyper path keeps it).
    let line_end = seen.iter().position(|&b| b == b'\n').map_or(seen.len(), |i| i + 1);
    let head = seen[..line_end.min(crate::conn_io::HEAD_KEPT)].to_vec();
    crate::refusal::log(
        engine,
        info.peer.ip(),
        Refusal {
            status,
            head,
            since,
            request_id: Some(id),
            code: Some(code),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine on the embedded default config.
    async fn default_engine() -> Arc<Engine> {
        let cfg = cratopus_config::load_str(std::path::Path::new("<default>"), cratopus_config::EMBEDDED_DEFAULT)
            .expect("the embedded default loads");
        let snapshot = cratopus_core::compile(cfg, None, 1).await.expect("compiles");
        Arc::new(Engine::new(snapshot))
    }

    /// What an idle connection costs is mostly its task, sized for the largest state of this
    /// loop (the future's size is fixed at compile time, whatever the connection is doing):
    /// this prints it and keeps it bounded (576 B in this test build since a request is served
    /// by a future of its own, `one_request`; 1,632 B before, when the head, the request and
    /// the exchange's locals were kept in the connection's future between requests too).
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let engine = default_engine().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let info = Arc::new(ConnInfo::new(peer, "http", None));
        let (_tx, stop) = watch::channel(false);
        let opts = ServeOptions::from_limits(&cratopus_config::Limits::default());
        let fut = serve(stream, engine, info, &stop, &opts);
        let size = std::mem::size_of_val(&fut);
        eprintln!("h1::serve future: {size} bytes");
        assert!(size < 1024, "h1::serve's future is {size} bytes");
    }

    /// A request's future is allocated and copied whole once per request, and each level of
    /// the engine that awaits a future held in place copies it again: large ones cost more
    /// than the allocation that boxing a rare path costs (perf: 8% of a proxied request's CPU
    /// went to `memmove` when this one was ~10 KB in a release build; 4.2 KB later; 1.9 KB in
    /// this test build since the engine lends the request's parts to its phases and the log
    /// line waits in its own box).
    #[tokio::test]
    async fn the_request_future_stays_small() {
        let engine = default_engine().await;
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let info = Arc::new(ConnInfo::new(peer, "http", None));
        let req = http::Request::new(cratopus_upstream::ClientBody::Empty);
        let fut = engine.handle_owned(req, info);
        let size = std::mem::size_of_val(&fut);
        eprintln!("a request's future: {size} bytes");
        assert!(size < 3_072, "a request's future is {size} bytes");
    }
}
