//! Keep-alive connections to upstream targets.
//!
//! A request takes an idle connection to its target (or opens one), sends on it, and the
//! connection goes back to the idle list when the response body has been read to its end. A
//! connection whose response was abandoned half-way is not reused. For `h2c` one multiplexed
//! connection per target is shared by every request.
//!
//! Built on hyper's connection API rather than hyper-util's pooled client: the pool is keyed by
//! the resolved address (no URI parsing or hashing of authorities per request), and errors are
//! ours to classify (refused → 502, connect timeout → 504).

use crate::body::RequestBody;
use crate::error::GatewayError;
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
    pub h2c: bool,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// The connections of one upstream, by target address.
pub struct ConnPool {
    settings: PoolSettings,
    /// Per target, oldest first: reuse takes the newest, pruning drops from the front.
    idle: Mutex<HashMap<SocketAddr, VecDeque<Idle>>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<RequestBody>>>,
}

/// Hands an HTTP/1.1 connection back to its pool once the response body is done with it.
pub struct PoolReturn {
    pool: Arc<ConnPool>,
    addr: SocketAddr,
    sender: http1::SendRequest<RequestBody>,
}

impl PoolReturn {
    pub fn put_back(self) {
        self.pool.put(self.addr, self.sender);
    }
}

/// Why a send failed, and whether the request may have reached the target.
#[derive(Debug)]
pub enum SendError {
    Connect(GatewayError),
    Request(hyper::Error),
}

impl ConnPool {
    pub fn new(settings: PoolSettings) -> Arc<ConnPool> {
        Arc::new(ConnPool {
            settings,
            idle: Mutex::new(HashMap::new()),
            h2: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `req` to `addr`. For HTTP/1.1 the returned [`PoolReturn`] must be used when the
    /// response body ends for the connection to be reused.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<PoolReturn>), SendError> {
        if self.settings.h2c {
            return Box::pin(self.send_h2(addr, req)).await.map(|r| (r, None));
        }
        let mut req = req;
        // A pooled connection may have been closed by the target just now; the request then
        // comes back unsent and goes out once more on a new connection.
        loop {
            let (mut sender, reused) = match self.checkout(addr).await {
                Some(s) => (s, true),
                // Connecting is the cold path: boxed, so that every request's future stays small.
                None => (Box::pin(self.connect_h1(addr)).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let back = PoolReturn {
                        pool: self.clone(),
                        addr,
                        sender,
                    };
                    return Ok((res, Some(back)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// An idle connection that is still open and ready, if any.
    async fn checkout(&self, addr: SocketAddr) -> Option<http1::SendRequest<RequestBody>> {
        loop {
            let idle = {
                let mut map = self.idle.lock().ok()?;
                map.get_mut(&addr)?.pop_back()?
            };
            if idle.since.elapsed() > self.settings.idle_timeout || idle.sender.is_closed() {
                continue; // dropping it closes the connection
            }
            let mut sender = idle.sender;
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put(&self, addr: SocketAddr, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
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
            list.push_back(Idle { sender, since: now });
        }
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> Result<TokioIo<tokio::net::TcpStream>, SendError> {
        let stream =
            match tokio::time::timeout(self.settings.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
                Err(_) => return Err(SendError::Connect(GatewayError::UpstreamTimeout)),
                Ok(Err(e)) => {
                    tracing::debug!(target_addr = %addr, error = %e, "upstream connect failed");
                    return Err(SendError::Connect(GatewayError::UpstreamUnreachable));
                }
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    async fn connect_h1(&self, addr: SocketAddr) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let io = self.connect_tcp(addr).await?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(1024 * 1024)
            .max_headers(1000)
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target_addr = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn send_h2(&self, addr: SocketAddr, req: Request<RequestBody>) -> Result<Response<Incoming>, SendError> {
        let existing = self
            .h2
            .lock()
            .ok()
            .and_then(|m| m.get(&addr).filter(|s| !s.is_closed()).cloned());
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let io = self.connect_tcp(addr).await?;
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(SendError::Request)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(target_addr = %addr, error = %e, "upstream h2 connection ended with an error");
                    }
                });
                if let Ok(mut m) = self.h2.lock() {
                    m.insert(addr, sender.clone());
                }
                sender
            }
        };
        sender.ready().await.map_err(SendError::Request)?;
        sender.send_request(req).await.map_err(SendError::Request)
    }
}
