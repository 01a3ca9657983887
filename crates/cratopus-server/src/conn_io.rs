//! The connection's socket as hyper sees it, shared with the task that serves it.
//!
//! hyper owns the IO while it serves a connection and closes it silently when a client is too
//! slow to send its request head. We want to answer such a client with 408 first, so the socket
//! is shared (`Arc`) and the IO remembers whether part of a request has arrived since the last
//! response was written.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Shared {
    pub stream: TcpStream,
    /// Bytes arrived since the last write: a request is partly read.
    pub partial: AtomicBool,
}

/// `AsyncRead + AsyncWrite` over a shared `TcpStream`.
#[derive(Debug, Clone)]
pub struct ConnIo(pub Arc<Shared>);

impl ConnIo {
    pub fn new(stream: TcpStream) -> ConnIo {
        ConnIo(Arc::new(Shared {
            stream,
            partial: AtomicBool::new(false),
        }))
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let s = &self.0.stream;
        loop {
            ready!(s.poll_read_ready(cx))?;
            match s.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    if n > 0 {
                        self.0.partial.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let s = &self.0.stream;
        loop {
            ready!(s.poll_write_ready(cx))?;
            match s.try_write(buf) {
                Ok(n) => {
                    self.0.partial.store(false, Ordering::Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let s = &self.0.stream;
        loop {
            ready!(s.poll_write_ready(cx))?;
            match s.try_write_vectored(bufs) {
                Ok(n) => {
                    self.0.partial.store(false, Ordering::Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sock = socket2_shutdown(&self.0.stream);
        Poll::Ready(sock)
    }
}

fn socket2_shutdown(stream: &TcpStream) -> io::Result<()> {
    // tokio offers write shutdown only through `&mut`; the socket itself needs no exclusivity.
    match socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}
