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

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A client connection's stream: plain TCP or TLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes the 408 as the connection is dropped (its send buffer is empty then).
    fn answer_408(self);
}

impl ClientStream for TcpStream {
    fn answer_408(self) {
        // A short non-blocking write goes out whole into an empty send buffer.
        let _ = self.try_write(&timeout_response());
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn answer_408(mut self) {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                self.write_all(&timeout_response()).await?;
                self.shutdown().await
            })
            .await;
        });
    }
}

/// Flags shared between the IO (owned by hyper) and the task serving the connection.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Bytes arrived since the last write: a request is partly read.
    partial: AtomicBool,
    /// The serving task wants a 408 written when the IO is dropped.
    send_408: AtomicBool,
}

impl ConnState {
    pub fn is_partial(&self) -> bool {
        self.partial.load(Ordering::Relaxed)
    }

    /// Asks the IO to answer 408 when it is dropped.
    pub fn request_timeout(&self) {
        self.send_408.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct ConnIo<S: ClientStream> {
    /// Always there until the IO is dropped (taken then to write a 408).
    stream: Option<S>,
    state: Arc<ConnState>,
}

impl<S: ClientStream> ConnIo<S> {
    pub fn new(stream: S) -> (ConnIo<S>, Arc<ConnState>) {
        let state = Arc::new(ConnState::default());
        (
            ConnIo {
                stream: Some(stream),
                state: state.clone(),
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
}

/// The 408 answer, with a fresh request id like every answer of the gateway.
fn timeout_response() -> Vec<u8> {
    let id = cratopus_core::forward::new_request_id();
    let id = id.to_str().unwrap_or("");
    let body = format!(
        "{{\"error\":{{\"status\":408,\"code\":\"request_timeout\",\"message\":\"the request head did not arrive in time\",\"request_id\":\"{id}\"}}}}\n"
    );
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: ClientStream> Drop for ConnIo<S> {
    fn drop(&mut self) {
        if self.state.send_408.load(Ordering::Relaxed)
            && let Some(stream) = self.stream.take()
        {
            stream.answer_408();
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
            self.state.partial.store(true, Ordering::Relaxed);
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
    #[test]
    fn timeout_response_is_well_formed() {
        let bytes = super::timeout_response();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["status"], 408);
        let id = v["error"]["request_id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(head.contains(&format!("x-request-id: {id}")));
    }
}
