//! Keep-alive connections to upstream targets.
//!
//! A request takes an idle connection to its target (or opens one), sends on it with the
//! gateway's own HTTP/1.1 client ([`crate::h1_client`]), and the connection goes back to the
//! idle list when the response body has been read to its end. A connection whose response was
//! abandoned half-way is not reused. For `h2c` one multiplexed connection per target, on
//! hyper's HTTP/2 client, is shared by every request; upgrades (WebSocket) use a fresh hyper
//! HTTP/1.1 connection of their own.
//!
//! The pool is keyed by the resolved address (no URI parsing or hashing of authorities per
//! request), and errors are ours to classify (refused → 502, connect timeout → 504).

use crate::backend::BackendError;
use crate::body::RequestBody;
use crate::h1_client::{Added, Conn, Exchange, H1Body, Io, RequestError};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How an upstream's connections are made and kept.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_target: usize,
    /// HTTP/2: one multiplexed connection per target (h2c, or h2 over TLS).
    pub http2: bool,
    /// TLS to `https://` targets.
    pub tls: Option<Arc<crate::UpstreamTls>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The connections of one upstream, by target address.
pub struct ConnPool {
    settings: PoolSettings,
    /// Per target, oldest first: reuse takes the newest, pruning drops from the front.
    /// Hashed with foldhash: looked up twice a request, where SipHash cost ~400 instructions;
    /// the keys are the configured targets' addresses, not chosen by clients.
    idle: Mutex<HashMap<SocketAddr, VecDeque<Idle>, foldhash::fast::RandomState>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<RequestBody>, foldhash::fast::RandomState>>,
}

/// Why a send failed, and whether the request may have reached the target.
#[derive(Debug)]
pub enum SendError {
    Connect(BackendError),
    Request(RequestError),
}

/// A response body from a target: from the gateway's own HTTP/1.1 client, or hyper's (HTTP/2,
/// upgrades).
pub enum UpstreamBody {
    Own(H1Body),
    Hyper(Incoming),
}

impl UpstreamBody {
    pub fn is_end_stream(&self) -> bool {
        use http_body::Body;
        match self {
            UpstreamBody::Own(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }
}

impl ConnPool {
    pub fn new(settings: PoolSettings) -> Arc<ConnPool> {
        Arc::new(ConnPool {
            settings,
            idle: Mutex::new(HashMap::default()),
            h2: Mutex::new(HashMap::default()),
        })
    }

    /// Sends `req` to `addr`, whose URL names `host` (the TLS server name). An HTTP/1.1
    /// connection goes back to the idle list when the response body has been read to its end.
    ///
    /// Not an `async fn`: its future would keep the request twice, as the argument and as
    /// its parts (the upstream call's future, which holds this one, went from 1,488 to ~1,100
    /// bytes, copied whole once per request).
    pub fn send<'a>(
        self: &'a Arc<Self>,
        addr: SocketAddr,
        host: &'a str,
        req: Request<RequestBody>,
        added: Added<'a>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send + 'a {
        let (parts, mut body) = req.into_parts();
        async move {
            if self.settings.http2 {
                return Box::pin(self.send_h2(addr, host, Request::from_parts(parts, body)))
                    .await
                    .map(|r| r.map(UpstreamBody::Hyper));
            }
            // A pooled connection may have been closed by the target just as it was taken; an
            // idempotent request whose body is all in hand then goes once more on a new
            // connection.
            loop {
                let (conn, reused) = match self.checkout(addr) {
                    Some(c) => (c, true),
                    // Connecting is the cold path: boxed, so that every request's future stays small.
                    None => (Box::pin(self.connect_own(addr, host)).await?, false),
                };
                // Only an idempotent request goes again: the target may have acted on the first
                // copy before it closed (nginx likewise never resends a POST that went out).
                let replay = if reused && parts.method.is_idempotent() {
                    body.whole()
                } else {
                    None
                };
                let exchange = Exchange::new(self.clone(), addr, conn, &parts, body, added);
                match exchange.response(reused).await {
                    Ok(res) => return Ok(res.map(UpstreamBody::Own)),
                    Err(f) => match replay {
                        Some(bytes) if f.stale => {
                            tracing::debug!(target_addr = %addr, error = %f.error, "pooled upstream connection was closed; sending again on a new one");
                            body = RequestBody::full(bytes);
                        }
                        _ => return Err(SendError::Request(f.error)),
                    },
                }
            }
        }
    }

    /// An idle connection that is still open, if any.
    fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        loop {
            let idle = {
                let mut map = self.idle.lock().ok()?;
                map.get_mut(&addr)?.pop_back()?
            };
            let mut conn = idle.conn;
            if idle.since.elapsed() <= self.settings.idle_timeout && conn.is_usable() {
                return Some(conn);
            }
            // dropping it closes the connection
        }
    }

    /// A connection whose exchange is over, ready for the next request to `addr`.
    pub(crate) fn put_h1(&self, addr: SocketAddr, conn: Conn) {
        let now = Instant::now();
        let Ok(mut map) = self.idle.lock() else { return };
        let list = map.entry(addr).or_default();
        // The oldest idle connections are at the front; drop those past the idle timeout.
        while list
            .front()
            .is_some_and(|i| now.duration_since(i.since) > self.settings.idle_timeout)
        {
            list.pop_front();
        }
        if list.len() < self.settings.max_idle_per_target {
            list.push_back(Idle { conn, since: now });
        }
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> Result<tokio::net::TcpStream, SendError> {
        let stream =
            match tokio::time::timeout(self.settings.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
                Err(_) => return Err(SendError::Connect(BackendError::Timeout)),
                Ok(Err(e)) => {
                    tracing::debug!(target_addr = %addr, error = %e, "upstream connect failed");
                    return Err(SendError::Connect(BackendError::Unreachable));
                }
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The TLS handshake on a new connection, within what is left of the connect timeout. A
    /// target whose certificate fails verification gets a warning with the reason.
    async fn connect_tls(
        &self,
        tls: &crate::UpstreamTls,
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SendError> {
        match tokio::time::timeout(self.settings.connect_timeout, tls.connect(stream, host)).await {
            Err(_) => Err(SendError::Connect(BackendError::Timeout)),
            Ok(Err(e)) => {
                tracing::warn!(target_addr = %addr, server_name = %host, error = %e, "TLS handshake with upstream failed");
                Err(SendError::Connect(BackendError::Tls))
            }
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// A new connection for the gateway's own HTTP/1.1 client, plain or TLS.
    async fn connect_own(&self, addr: SocketAddr, host: &str) -> Result<Conn, SendError> {
        let stream = self.connect_tcp(addr).await?;
        Ok(Conn::new(match &self.settings.tls {
            None => Io::Plain(stream),
            Some(tls) => Io::Tls(Box::new(self.connect_tls(tls, stream, addr, host).await?)),
        }))
    }

    /// A fresh HTTP/1.1 connection to `addr` that may switch protocols (a WebSocket upgrade),
    /// on hyper's client: never taken from nor given back to the idle list, whatever the
    /// upstream's protocol. On a `101` its task hands the stream to the response's `OnUpgrade`.
    pub async fn connect_upgradable(
        &self,
        addr: SocketAddr,
        host: &str,
    ) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let stream = self.connect_tcp(addr).await?;
        let mut builder = http1::Builder::new();
        builder.max_buf_size(1024 * 1024).max_headers(1000);
        match &self.settings.tls {
            None => handshake_h1(&builder, addr, stream).await,
            Some(tls) => handshake_h1(&builder, addr, self.connect_tls(tls, stream, addr, host).await?).await,
        }
    }

    async fn send_h2(
        &self,
        addr: SocketAddr,
        host: &str,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let existing = self
            .h2
            .lock()
            .ok()
            .and_then(|m| m.get(&addr).filter(|s| !s.is_closed()).cloned());
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let stream = self.connect_tcp(addr).await?;
                let mut builder = http2::Builder::new(TokioExecutor::new());
                builder.timer(TokioTimer::new());
                let sender = match &self.settings.tls {
                    None => handshake_h2(&builder, addr, stream).await?,
                    Some(tls) => handshake_h2(&builder, addr, self.connect_tls(tls, stream, addr, host).await?).await?,
                };
                if let Ok(mut m) = self.h2.lock() {
                    m.insert(addr, sender.clone());
                }
                sender
            }
        };
        sender.ready().await.map_err(|e| SendError::Request(e.into()))?;
        sender.send_request(req).await.map_err(|e| SendError::Request(e.into()))
    }
}

/// HTTP/1.1 on hyper over a connected stream, plain or TLS, driven by its own task, which
/// hands the stream over on a `101`.
async fn handshake_h1<S>(
    builder: &http1::Builder,
    addr: SocketAddr,
    io: S,
) -> Result<http1::SendRequest<RequestBody>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Request(e.into()))?;
    spawn_conn(addr, conn.with_upgrades());
    Ok(sender)
}

/// HTTP/2 over a connected stream, plain (h2c) or TLS.
async fn handshake_h2<S>(
    builder: &http2::Builder<TokioExecutor>,
    addr: SocketAddr,
    io: S,
) -> Result<http2::SendRequest<RequestBody>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Request(e.into()))?;
    spawn_conn(addr, conn);
    Ok(sender)
}

/// Drives an upstream connection until it closes.
fn spawn_conn<F>(addr: SocketAddr, conn: F)
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(target_addr = %addr, error = %e, "upstream connection ended with an error");
        }
    });
}
