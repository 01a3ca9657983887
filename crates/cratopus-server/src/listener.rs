//! Accepting connections and serving HTTP/1.1 and HTTP/2 (h2c) on them.

use crate::conn_io::ConnIo;
use cratopus_config::Limits;
use cratopus_core::{ConnInfo, Engine};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

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
    /// hyper's read buffer: a request head larger than this gets hyper's own 431.
    pub max_buf_size: usize,
    pub max_headers: usize,
}

impl ServeOptions {
    pub fn from_limits(l: &Limits) -> ServeOptions {
        ServeOptions {
            header_read_timeout: l.header_read_timeout.0,
            // Room above the limit so that the engine, not hyper, answers most oversized heads
            // (with the JSON error body); hyper's 431 is the backstop.
            max_buf_size: (l.max_header_bytes.0 as usize).saturating_mul(2).max(16 * 1024),
            max_headers: l.max_headers,
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

/// Accepts on `listener` until `stop` turns true; each connection is served in its own task and
/// finishes its in-flight requests after `stop`.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    opts: ServeOptions,
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
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size((opts.max_buf_size as u32).max(16 * 1024));
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
            let (io, state) = ConnIo::new(stream);
            let info = ConnInfo { peer, scheme: "http" };
            let svc = service_fn(move |req| {
                let engine = engine.clone();
                async move { Ok::<_, Infallible>(engine.handle(req, &info).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                let timed_out = e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout);
                if timed_out && state.is_partial() {
                    // Written by the IO as the connection drops, just below.
                    state.request_timeout();
                } else {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
            }
        });
    }
}
