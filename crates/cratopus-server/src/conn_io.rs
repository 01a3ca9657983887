//! The connection's socket as hyper sees it.
//!
//! hyper closes a connection silently when a client is too slow to send its request head. We
//! want to answer such a client with 408 first, so the IO remembers whether part of a request
//! has arrived since the last response was written, and writes the 408 itself when the serving
//! task asks for it before dropping the connection.
//!
//! Reads and writes go straight to tokio's `TcpStream`, which reads into uninitialised memory
//! and skips the extra `recv` after a short read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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
pub struct ConnIo {
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl ConnIo {
    pub fn new(stream: TcpStream) -> (ConnIo, Arc<ConnState>) {
        let state = Arc::new(ConnState::default());
        (
            ConnIo {
                stream,
                state: state.clone(),
            },
            state,
        )
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

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.state.send_408.load(Ordering::Relaxed) {
            // The socket's send buffer is empty here: a short non-blocking write goes out whole.
            let _ = self.stream.try_write(&timeout_response());
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.partial.store(true, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.state.partial.store(false, Ordering::Relaxed);
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.state.partial.store(false, Ordering::Relaxed);
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
