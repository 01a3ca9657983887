//! The relay of one upgraded socket: from the client's `101` (or HTTP/2 `200`) to the close of
//! both sides, then the request's traffic-log line.
//!
//! - **Copy mode** (no limit on the route): bytes are copied both ways as they come; the
//!   gateway does not parse a frame. Who closed is the side whose stream ended first; the close
//!   code is not known (the frames are not read).
//! - **Frame mode** (an idle timeout, a message size or a message rate): each side is a
//!   tungstenite stream on the already upgraded connection (server role towards the client,
//!   client role towards the backend; no second handshake). Messages are forwarded one by one;
//!   each side's pings are answered by the gateway (and passed on), pongs are not passed on (the
//!   other side got the gateway's). A message over the size closes the client with 1009, over
//!   the rate with 1008 (policy violation, as for any refused request), an idle socket with 1001;
//!   the backend leg is closed with 1001 (going away) in each case.
//! - **Shutdown**: after the drain deadline the server closes every socket: 1001 to both sides.
//!   In copy mode the close frame is written when the copying stops, so a frame the copy was in
//!   the middle of is cut and the client sees a broken frame rather than the close (the
//!   caveat of not reading frames; a route that must close cleanly sets a limit).
//!
//! The relay holds nothing of the snapshot it started on: its limits, its route's socket
//! counters and the log line's writer; a reload leaves it running.

use super::registry::Sockets;
use super::{ClientSide, ConnHold, Limits};
use crate::body::PendingLog;
use cratopus_observe::traffic_log::LogValue;
use cratopus_observe::ws_metrics::WsMetrics;
use cratopus_upstream::backend::SocketGuard;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long a side may take to finish closing once the other has (its close answer, its end
/// of stream); then the socket is dropped.
const LINGER: Duration = Duration::from_secs(5);

/// What the relay needs; see [`super::Upgrade::hand_over`].
pub(super) struct Sides {
    pub client: ClientSide,
    pub upstream: OnUpgrade,
    pub limits: Option<Arc<Limits>>,
    pub sockets: Sockets,
    pub metrics: Arc<WsMetrics>,
    pub log: Option<Box<PendingLog>>,
    /// Held until the socket closes: the client connection's hold, the target's count.
    pub held: (Option<ConnHold>, Option<SocketGuard>),
}

/// How the socket ended, for the log.
struct End {
    by: &'static str,
    code: Option<u16>,
    /// Why the gateway closed it.
    reason: Option<&'static str>,
}

impl End {
    fn peer(by: &'static str, code: Option<u16>) -> End {
        End { by, code, reason: None }
    }

    fn gateway(code: u16, reason: &'static str) -> End {
        End {
            by: "gateway",
            code: Some(code),
            reason: Some(reason),
        }
    }
}

pub(super) fn spawn(sides: Sides) {
    tokio::spawn(run(sides));
}

async fn run(s: Sides) {
    let Sides {
        client,
        upstream,
        limits,
        sockets,
        metrics,
        log,
        held,
    } = s;
    let upstream = async { upstream.await.map_err(|e| e.to_string()) };
    let (client, upstream) = match tokio::try_join!(client.into_io(), upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed after the handshake");
            if let Some(p) = log {
                let PendingLog {
                    mut line, log, start, ..
                } = *p;
                line.error = Some("upgrade_failed");
                line.total_ms = start.elapsed().as_secs_f64() * 1000.0;
                log.log(line);
            }
            return;
        }
    };
    let opened = Instant::now();
    let ticket = sockets.enter(metrics);
    let counts = Arc::new(Counts::default());
    let client = Counted {
        io: client,
        counts: counts.clone(),
        metrics: ticket.metrics.clone(),
    };
    let upstream = TokioIo::new(upstream);
    let closing = sockets.closing();
    let end = match limits.as_deref() {
        None => copy(client, upstream, closing).await,
        Some(l) => frames(client, upstream, l, closing).await,
    };
    drop(ticket);
    drop(held);
    if let Some(p) = log {
        let PendingLog {
            mut line, log, start, ..
        } = *p;
        line.bytes_in = counts.received.load(Ordering::Relaxed);
        line.bytes_out = counts.sent.load(Ordering::Relaxed);
        line.total_ms = start.elapsed().as_secs_f64() * 1000.0;
        line.fields.push((
            "ws_duration_ms",
            LogValue::Float(opened.elapsed().as_secs_f64() * 1000.0),
        ));
        line.fields.push(("ws_closed_by", LogValue::Str(Arc::from(end.by))));
        if let Some(c) = end.code {
            line.fields.push(("ws_close_code", LogValue::Int(i64::from(c))));
        }
        if let Some(r) = end.reason {
            line.fields.push(("ws_close_reason", LogValue::Str(Arc::from(r))));
        }
        log.log(line);
    }
}

/// Copies bytes both ways until one side ends (then the other gets [`LINGER`] to end too) or
/// the server closes every socket.
async fn copy<C, U>(client: C, upstream: U, mut closing: watch::Receiver<bool>) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let ended = {
        let c2u = async {
            let _ = tokio::io::copy(&mut cr, &mut uw).await;
            let _ = uw.shutdown().await;
        };
        let u2c = async {
            let _ = tokio::io::copy(&mut ur, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        tokio::pin!(c2u, u2c);
        tokio::select! {
            _ = &mut c2u => {
                let _ = tokio::time::timeout(LINGER, u2c).await;
                Some("client")
            }
            _ = &mut u2c => {
                let _ = tokio::time::timeout(LINGER, c2u).await;
                Some("upstream")
            }
            _ = closed(&mut closing) => None,
        }
    };
    match ended {
        Some(by) => End::peer(by, None),
        None => {
            // A server's frame is unmasked, a client's masked (RFC 6455 §5.3): 1001 each way.
            let code = 1001u16.to_be_bytes();
            let _ = cw.write_all(&[0x88, 0x02, code[0], code[1]]).await;
            let _ = cw.shutdown().await;
            let mask: [u8; 4] = std::array::from_fn(|_| fastrand::u8(..));
            let _ = uw
                .write_all(&[
                    0x88,
                    0x82,
                    mask[0],
                    mask[1],
                    mask[2],
                    mask[3],
                    code[0] ^ mask[0],
                    code[1] ^ mask[1],
                ])
                .await;
            let _ = uw.shutdown().await;
            End::gateway(1001, "shutdown")
        }
    }
}

/// Forwards messages one by one, enforcing the route's limits.
async fn frames<C, U>(client: C, upstream: U, limits: &Limits, mut closing: watch::Receiver<bool>) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    // Without a size of the route's, tungstenite's defaults (64 MiB a message, 16 MiB a frame)
    // still bound what the gateway buffers.
    let mut config = WebSocketConfig::default();
    if let Some(max) = limits.max_message {
        config = config.max_message_size(Some(max)).max_frame_size(Some(max));
    }
    let mut client = WebSocketStream::from_raw_socket(client, Role::Server, Some(config)).await;
    let mut upstream = WebSocketStream::from_raw_socket(upstream, Role::Client, None).await;
    let mut bucket = limits.rate.map(|(rate, burst)| Bucket::new(rate, burst));
    // Without an idle timeout the timer is never polled.
    let idle = limits.idle.unwrap_or(Duration::from_secs(86400));
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            m = client.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let _ = upstream.send(Message::Close(frame)).await;
                    drain_to_close(&mut upstream).await;
                    let _ = client.flush().await; // the gateway's answer to the client's close
                    return End::peer("client", code);
                }
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(msg)) => {
                    if bucket.as_mut().is_some_and(|b| !b.take(Instant::now())) {
                        return gateway_close(client, upstream, CloseCode::Policy, "message_rate").await;
                    }
                    if upstream.send(msg).await.is_err() {
                        return gateway_close(client, upstream, CloseCode::Away, "upstream_gone").await;
                    }
                }
                Some(Err(WsError::Capacity(_))) => {
                    return gateway_close(client, upstream, CloseCode::Size, "message_too_big").await;
                }
                Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => {
                    return gateway_close(client, upstream, CloseCode::Protocol, "protocol_error").await;
                }
                Some(Err(_)) | None => {
                    // The client went without a close: the backend is told it went away.
                    let _ = upstream.close(Some(close_frame(CloseCode::Away))).await;
                    return End::peer("client", None);
                }
            },
            m = upstream.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let _ = upstream.flush().await;
                    let _ = client.send(Message::Close(frame)).await;
                    drain_to_close(&mut client).await;
                    return End::peer("upstream", code);
                }
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(msg)) => {
                    if client.send(msg).await.is_err() {
                        let _ = upstream.close(Some(close_frame(CloseCode::Away))).await;
                        return End::peer("client", None);
                    }
                }
                Some(Err(_)) | None => {
                    let _ = client.close(Some(close_frame(CloseCode::Away))).await;
                    return End::peer("upstream", None);
                }
            },
            _ = &mut timer, if limits.idle.is_some() => {
                return gateway_close(client, upstream, CloseCode::Away, "idle").await;
            }
            _ = closed(&mut closing) => {
                return gateway_close(client, upstream, CloseCode::Away, "shutdown").await;
            }
        }
        if let Some(d) = limits.idle {
            timer.as_mut().reset(tokio::time::Instant::now() + d);
        }
    }
}

/// Resolves when the server closes every socket.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

fn close_frame(code: CloseCode) -> CloseFrame {
    CloseFrame {
        code,
        reason: "".into(),
    }
}

/// The gateway closes the socket: `code` to the client, 1001 to the backend. Each side's
/// connection is then shut down and read (and what it still sends dropped) until it ends or
/// [`LINGER`] passes, so that unread bytes (the rest of an oversized message) do not turn the
/// close into a reset that would lose the close frame (nginx's lingering close).
async fn gateway_close<C, U>(
    mut client: WebSocketStream<C>,
    mut upstream: WebSocketStream<U>,
    code: CloseCode,
    reason: &'static str,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let _ = client.send(Message::Close(Some(close_frame(code)))).await;
    let _ = upstream.send(Message::Close(Some(close_frame(CloseCode::Away)))).await;
    tokio::join!(linger(client.get_mut()), linger(upstream.get_mut()));
    End::gateway(u16::from(code), reason)
}

async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let _ = io.shutdown().await;
    let mut sink = [0u8; 8192];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Reads a side (what it still sends is dropped) until its close answer or its end.
async fn drain_to_close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

/// A token bucket of one socket's messages.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Bytes of one socket as the client's connection carried them.
#[derive(Default)]
struct Counts {
    received: AtomicU64,
    sent: AtomicU64,
}

/// The client's side of the socket, counting bytes for its log line and its route's metrics.
struct Counted<S> {
    io: S,
    counts: Arc<Counts>,
    metrics: Arc<WsMetrics>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.counts.received.fetch_add(n, Ordering::Relaxed);
            self.metrics.received.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.counts.sent.fetch_add(*n as u64, Ordering::Relaxed);
            self.metrics.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3.0);
        b.last = t0;
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
    }
}
