//! A client stream with bytes already read put back in front of it: the gateway's own HTTP/1
//! loop reads a connection's first bytes itself, and hands the connection on with them when it
//! turns out to be HTTP/2 (to hyper) or after a `101` (to a WebSocket relay).

use crate::conn_io::ClientStream;
use bytes::{Buf, Bytes};
use http::HeaderValue;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub struct Rewind<S> {
    pre: Bytes,
    io: S,
}

impl<S> Rewind<S> {
    pub fn new(io: S, pre: Bytes) -> Rewind<S> {
        Rewind { pre, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<S: ClientStream> ClientStream for Rewind<S> {
    fn answer_408(self, request_id: &HeaderValue) {
        self.io.answer_408(request_id);
    }

    fn alpn_h2(&self) -> bool {
        self.io.alpn_h2()
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pre.is_empty() {
            self.io.poll_readable(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}
