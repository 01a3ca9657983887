//! Accepting connections and serving HTTP/1.1 and HTTP/2 (h2c) on them.

use crate::conn_io::{ClientStream, ConnIo, ConnState, Proto, StreamGuard};
use crate::watchdog::{self, Expired};
use bytes::Bytes;
use cratopus_config::Limits;
use cratopus_core::body::ResponseBody;
use cratopus_core::tls::{ClientCert, TlsConn};
use cratopus_core::{ConnInfo, Engine};
use http_body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::LazyConfigAcceptor;

/// Binds `addr` (`ip:port` or `name:port`) with a deep accept backlog.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address");
    for a in addrs {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a) {
            Ok(()) => return socket.listen(4096),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// How connections are served; from the config's `limits`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no stream open and nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// hyper's read buffer: a request head larger than this gets hyper's own 431.
    pub max_buf_size: usize,
    pub max_headers: usize,
    /// The own HTTP/1 server's limits ([`crate::h1`]), the same room above `max_header_bytes`
    /// as hyper's buffer: the engine answers most oversized heads itself (with its JSON body),
    /// the codec's 431 is the backstop.
    pub http1: cratopus_http1::Limits,
}

impl ServeOptions {
    pub fn from_limits(l: &Limits) -> ServeOptions {
        // Room above the limit, for both servers (see `http1`).
        let max_buf_size = (l.max_header_bytes.0 as usize).saturating_mul(2).max(16 * 1024);
        ServeOptions {
            header_read_timeout: l.header_read_timeout.0,
            idle_timeout: l.idle_timeout.0,
            max_buf_size,
            max_headers: l.max_headers,
            http1: cratopus_http1::Limits {
                max_head_bytes: max_buf_size,
                max_headers: l.max_headers,
                max_request_line: max_buf_size,
                max_header_line: max_buf_size,
                ..cratopus_http1::Limits::default()
            },
        }
    }
}

/// Counts open connections so that shutdown can wait for them.
#[derive(Debug, Clone, Default)]
pub struct ConnTracker(Arc<(AtomicUsize, Notify)>);

impl ConnTracker {
    fn enter(&self) -> ConnGuard {
        self.0.0.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Resolves when no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ConnGuard(ConnTracker);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.1.notify_waiters();
        }
    }
}

/// What a listener does besides handing requests to the engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerMode {
    /// HTTPS: a TLS handshake first, the certificate chosen by SNI.
    pub tls: bool,
    /// Answer with 308 to HTTPS (ACME challenges and the health path aside); the port written
    /// in `Location` (none for 443).
    pub redirect_to_https: Option<u16>,
}

/// Accepts on `listener` until `stop` turns true; each connection is served in its own task and
/// finishes its in-flight requests after `stop`.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    opts: ServeOptions,
    mode: ListenerMode,
    mut stop: watch::Receiver<bool>,
    tracker: ConnTracker,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_buf_size)
        .max_headers(opts.max_headers)
        // The response head and body copied into one buffer and sent with one `write` instead
        // of a `writev` of queued pieces: ~4% less CPU per proxied request (the gateway's own
        // HTTP/1 server and upstream client write the same way).
        .writev(false)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size((opts.max_buf_size as u32).max(16 * 1024))
        // A PING after the idle time without a frame from the peer; no answer within the
        // timeout (20 s at most) closes the connection: a peer gone without a word does not hold
        // its streams open. (hyper's server pings while idle too.)
        .keep_alive_interval(Some(opts.idle_timeout))
        .keep_alive_timeout(opts.idle_timeout.min(Duration::from_secs(20)))
        // WebSocket over HTTP/2 (RFC 8441): the client may CONNECT with `:protocol`.
        .enable_connect_protocol();
    // Shared: each connection's task holds a pointer, not a copy of every setting.
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let engine = engine.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        let guard = tracker.enter();
        let opts = opts.clone();
        let opts_header_timeout = opts.header_read_timeout;
        tokio::spawn(async move {
            let _guard = guard;
            // hyper starts its header timer only once it knows the protocol, which takes a first
            // byte: a client that connects and sends nothing would otherwise hold the socket.
            let mut first = [0u8; 1];
            tokio::select! {
                r = tokio::time::timeout(opts_header_timeout, stream.peek(&mut first)) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                // Shutting down: a connection that has not asked for anything is simply closed.
                _ = stop.changed() => return,
            }
            if mode.tls {
                // Boxed: the task keeps room for its largest state for as long as the
                // connection lives, and a TLS stream (rustls' connection state, kept by value
                // at each level of the futures that serve it) is several KiB; a plain
                // connection would pay for it too.
                Box::pin(serve_tls(&builder, stream, peer, engine, &mut stop, &opts)).await;
                return;
            }
            let info = ConnInfo::new(peer, "http", None);
            serve_any(&builder, stream, engine, info, mode.redirect_to_https, &mut stop, &opts).await;
        });
    }
}

/// The TLS handshake, then the connection over it.
async fn serve_tls(
    builder: &auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    engine: Arc<Engine>,
    stop: &mut watch::Receiver<bool>,
    opts: &ServeOptions,
) {
    let Some((stream, tls)) = tls_handshake(&engine, stream, peer, opts.header_read_timeout).await else {
        return;
    };
    let info = ConnInfo::new(peer, "https", Some(tls));
    serve_any(builder, stream, engine, info, None, stop, opts).await;
}

/// Serves a client connection: HTTP/1.1 on the gateway's own loop ([`crate::h1`]), unless TLS
/// chose HTTP/2, the connection opens with HTTP/2's preface, or `CRATOPUS_HTTP1=hyper`; those go
/// to hyper ([`serve_client`]).
async fn serve_any<S: ClientStream>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    engine: Arc<Engine>,
    info: ConnInfo,
    redirect: Option<u16>,
    stop: &mut watch::Receiver<bool>,
    opts: &ServeOptions,
) {
    // hyper's connection is large: boxed, so that the task of an HTTP/1 connection that never
    // goes to hyper keeps no room for it.
    if stream.alpn_h2() || !crate::h1::enabled() {
        Box::pin(serve_client(builder, stream, engine, info, redirect, stop, opts)).await;
        return;
    }
    // One copy of the connection's facts, shared: a second kept by value for the HTTP/2 case
    // would be room in every connection's task.
    let mut info = info;
    info.redirect_https = redirect;
    let info = Arc::new(info);
    match crate::h1::serve(stream, engine.clone(), info.clone(), stop, opts).await {
        crate::h1::Ended::Closed => {}
        crate::h1::Ended::Http2(stream) => {
            let info = Arc::unwrap_or_clone(info);
            Box::pin(serve_client(builder, stream, engine, info, redirect, stop, opts)).await;
        }
    }
}

/// The response body as served: the engine's body and, on HTTP/2, the stream's place in the
/// connection's count of open streams (for the idle timeout), given back when the body ends or
/// is dropped.
pub struct ServedBody {
    body: ResponseBody,
    _stream: Option<StreamGuard>,
}

impl ServedBody {
    /// A response body on HTTP/1, where no stream is counted.
    pub fn h1(body: ResponseBody) -> ServedBody {
        ServedBody { body, _stream: None }
    }
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = cratopus_core::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, cratopus_core::body::BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request handler of one connection: the engine (whose edge phase answers ACME challenges
/// and redirects to HTTPS).
fn service(
    engine: Arc<Engine>,
    info: ConnInfo,
    redirect: Option<u16>,
    state: Arc<ConnState>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<ServedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<ServedBody>, Infallible>> + Send,
> + Clone {
    let mut info = info;
    info.redirect_https = redirect;
    let info = Arc::new(info);
    service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let engine = engine.clone();
        let info = info.clone();
        let mut stream = state.stream_opened();
        // An HTTP/2 CONNECT may become a WebSocket that outlives its (empty) response body: the
        // stream stays counted as open for as long as the socket does.
        if req.method() == http::Method::CONNECT
            && req.extensions().get::<hyper::ext::Protocol>().is_some()
            && let Some(s) = stream.take()
        {
            req.extensions_mut()
                .insert(cratopus_core::websocket::ConnHold(Arc::new(s)));
        }
        // Boxed: hyper keeps a slot for the request's future in every connection for as long
        // as the connection lives, sized for the future (about 10 KiB), idle or not. Boxed, the
        // slot is a pointer and the future's memory is taken per request and given back after.
        let handled: Pin<Box<dyn Future<Output = Result<http::Response<ServedBody>, Infallible>> + Send>> =
            Box::pin(async move {
                let res = engine.handle(req, &info).await;
                Ok::<_, Infallible>(res.map(|body| ServedBody { body, _stream: stream }))
            });
        handled
    })
}

/// Serves one client connection, plain or TLS, with HTTP/1.1 or HTTP/2, until it closes; after
/// `stop`, finishes the requests in flight and closes.
///
/// A request head that does not arrive within `header_read_timeout` is answered 408 (written as
/// the connection drops; over HTTP/2, where no answer is possible, the connection just closes),
/// and an idle HTTP/2 connection is closed (see [`watchdog`]). A request refused before the
/// engine saw it (hyper's 400/414/431, the 408) is logged and counted ([`crate::refusal`]).
async fn serve_client<S: ClientStream>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    engine: Arc<Engine>,
    info: ConnInfo,
    redirect: Option<u16>,
    stop: &mut watch::Receiver<bool>,
    opts: &ServeOptions,
) {
    let peer = info.peer;
    let (io, state) = ConnIo::new(stream);
    let svc = service(engine.clone(), info, redirect, state.clone());
    drive(builder, TokioIo::new(io), svc, &state, stop, opts, |e| {
        let hyper_error = e.downcast_ref::<hyper::Error>();
        let timed_out = hyper_error.is_some_and(hyper::Error::is_timeout);
        if timed_out && state.proto() == Proto::Http1 && state.is_partial() {
            state.request_timeout();
        } else if let Some(status) = hyper_error.and_then(crate::refusal::status_of) {
            state.refuse(status);
        } else {
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    })
    .await;
    // The IO is gone with the connection, the 408 written if one was due, the refusal left.
    if let Some(refusal) = state.take_refusal() {
        crate::refusal::log(&engine, peer.ip(), refusal);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves HTTP/1.1 or HTTP/2 on `io` until it closes, a limit of the [`watchdog`] is reached or
/// `stop` turns true (then the requests in flight finish first). `on_error` sees a connection
/// error while the IO is still alive (it is dropped, and the connection closed, when this
/// returns).
async fn drive<I, Svc>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: Svc,
    state: &ConnState,
    stop: &mut watch::Receiver<bool>,
    opts: &ServeOptions,
    on_error: impl FnOnce(&BoxError),
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    Svc: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<ServedBody>,
            Error = Infallible,
        > + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    // With upgrades: a WebSocket's `101` hands the connection to its relay.
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        // The connection first: its first read tells the protocol, which the watchdog needs.
        biased;
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
        expired = watchdog::watch(state, opts.header_read_timeout, opts.idle_timeout) => match expired {
            Expired::Idle => {
                tracing::debug!("closing an idle HTTP/2 connection");
                conn.as_mut().graceful_shutdown();
                // GOAWAY goes out at once; a peer that does not take it is not waited for long.
                tokio::time::timeout(opts.header_read_timeout, conn.as_mut())
                    .await
                    .unwrap_or(Ok(()))
            }
            Expired::Head => {
                // Nothing can be answered to a header block that never ended: the connection
                // closes, and the refusal is logged.
                tracing::debug!("closing an HTTP/2 connection whose header block did not complete in time");
                state.refuse(408);
                Ok(())
            }
        },
    };
    if let Err(e) = &result {
        on_error(e);
    }
}

/// The TLS handshake: reads the ClientHello, picks the config for its server name from the
/// current snapshot (the organization's certificates and client-certificate rule, or the
/// default certificate, or a refusal), and completes the handshake within `timeout`.
async fn tls_handshake(
    engine: &Engine,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    timeout: Duration,
) -> Option<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Arc<TlsConn>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match tokio::time::timeout_at(deadline, acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed: no valid ClientHello");
            return None;
        }
        Err(_) => return None,
    };
    let chosen = engine.snapshot().tls.config_for(start.client_hello().server_name());
    // No config at all (it could not be built): close the connection.
    let (org, config) = chosen?;
    let sni = start.client_hello().server_name().map(str::to_string);
    match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
        Ok(Ok(s)) => {
            let client_cert = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| ClientCert::parse(c.as_ref()));
            Some((s, Arc::new(TlsConn { org, client_cert })))
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, sni = sni.as_deref().unwrap_or("-"), error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}
