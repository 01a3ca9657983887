//! The bodies that flow through the gateway. Both stream: nothing here buffers a whole body.
//!
//! [`RequestBody`] wraps the client's body on its way upstream: it counts bytes for the traffic
//! log and enforces the route's body limit as the bytes pass. [`ResponseBody`] is what the
//! client receives, from the upstream or from the gateway itself; when it ends (or the client
//! goes away) it writes the request's traffic-log line and releases the target's in-flight count.

use crate::conn_pool::PoolReturn;
use crate::resilience::Permits;
use bytes::Bytes;
use cratopus_observe::metrics::RouteMetrics;
use cratopus_observe::spans::{RequestSpan, SpanSink};
use cratopus_observe::{LogLine, TrafficLog};
use cratopus_upstream::InflightGuard;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body grew past the route's limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// What the request body did, shared with the response side for the log and the 413.
#[derive(Debug, Default)]
pub struct BodyStats {
    pub bytes: AtomicU64,
    pub too_large: AtomicBool,
}

pub struct RequestBody {
    /// `None` for the empty body of a retried request (only bodiless requests are retried)
    /// and for a body read whole for validation (then in `buffered`).
    inner: Option<Incoming>,
    buffered: Option<Bytes>,
    limit: u64,
    seen: u64,
    stats: Option<Arc<BodyStats>>,
}

impl RequestBody {
    /// Wraps `inner`; `stats` is only allocated for requests that have a body.
    pub fn new(inner: Incoming, limit: Option<u64>) -> (RequestBody, Option<Arc<BodyStats>>) {
        let stats = (!inner.is_end_stream()).then(|| Arc::new(BodyStats::default()));
        (
            RequestBody {
                inner: Some(inner),
                buffered: None,
                limit: limit.unwrap_or(u64::MAX),
                seen: 0,
                stats: stats.clone(),
            },
            stats,
        )
    }
}

impl RequestBody {
    /// No body: what a retry of a bodiless request sends.
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            buffered: None,
            limit: u64::MAX,
            seen: 0,
            stats: None,
        }
    }

    /// A body already read whole (for validation), sent as it is.
    pub fn full(bytes: Bytes) -> RequestBody {
        RequestBody {
            buffered: (!bytes.is_empty()).then_some(bytes),
            ..RequestBody::empty()
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(b) = this.buffered.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if let Some(s) = &this.stats {
                        s.bytes.store(this.seen, Ordering::Relaxed);
                        if this.seen > this.limit {
                            s.too_large.store(true, Ordering::Relaxed);
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            other => other.map(|o| o.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffered.is_none() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.buffered, &self.inner) {
            (Some(b), _) => SizeHint::with_exact(b.len() as u64),
            (None, Some(b)) => b.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// The traffic-log line waiting for the response to end.
pub struct PendingLog {
    pub line: LogLine,
    pub log: TrafficLog,
    pub start: Instant,
    pub request: Option<Arc<BodyStats>>,
}

/// The route's metrics waiting for the response to end.
pub struct PendingMetrics {
    pub route: Arc<RouteMetrics>,
    pub method: http::Method,
    pub status: u16,
    pub start: Instant,
    pub upstream: Option<std::time::Duration>,
    pub request: Option<Arc<BodyStats>>,
}

/// The spans of a sampled request, exported when the response ends.
pub struct PendingSpan {
    pub sink: Arc<SpanSink>,
    pub span: RequestSpan,
    pub start: Instant,
    /// When the upstream call began, and when it ended if it failed or was answered whole
    /// (otherwise it lasts until the streamed body ends).
    pub upstream: Option<(Instant, Option<Instant>)>,
}

impl PendingSpan {
    pub(crate) fn finish(self: Box<Self>) {
        let PendingSpan {
            sink,
            mut span,
            start,
            upstream,
        } = *self;
        // Spans carry wall-clock times; the request was timed with the monotonic clock.
        let (now, now_wall) = (Instant::now(), SystemTime::now());
        let wall = |t: Instant| {
            now_wall
                .checked_sub(now.saturating_duration_since(t))
                .unwrap_or(now_wall)
        };
        span.start = wall(start);
        span.end = now_wall;
        if let (Some(u), Some((began, ended))) = (&mut span.upstream, upstream) {
            u.start = wall(began);
            u.end = ended.map_or(now_wall, wall);
        }
        sink.record(span);
    }
}

pub struct ResponseBody {
    kind: Kind,
    span: Option<Box<PendingSpan>>,
    /// Bulkhead places of the request, freed when the response ends.
    _permits: Option<Box<Permits>>,
    metrics: Option<PendingMetrics>,
    /// The upstream connection, handed back to its pool when the body has been read whole.
    conn: Option<PoolReturn>,
    sent: u64,
    /// The body reached its end (hyper polled it to `None`).
    done: bool,
    /// The upstream's body failed while streaming.
    failed: bool,
    pending: Option<Box<PendingLog>>,
    _inflight: Option<InflightGuard>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            conn: None,
            span: None,
            _permits: None,
            metrics: None,
            sent: 0,
            done: false,
            failed: false,
            pending: None,
            _inflight: None,
        }
    }

    /// The upstream's body; `conn` goes back to the pool once the body ends.
    pub fn upstream(body: Incoming, conn: Option<PoolReturn>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream(body),
            conn,
            span: None,
            _permits: None,
            metrics: None,
            sent: 0,
            done: false,
            failed: false,
            pending: None,
            _inflight: None,
        }
    }

    /// Writes `pending` to the traffic log when this body is done.
    pub fn with_log(mut self, pending: Option<Box<PendingLog>>) -> Self {
        self.pending = pending;
        self
    }

    /// Records the request in its route's metrics when this body is done.
    pub fn with_metrics(mut self, m: Option<PendingMetrics>) -> Self {
        self.metrics = m;
        self
    }

    /// Holds the request's bulkhead places until this body is done.
    pub fn with_permits(mut self, permits: Option<Box<Permits>>) -> Self {
        self._permits = permits;
        self
    }

    /// Exports the request's spans when this body is done.
    pub fn with_span(mut self, span: Option<Box<PendingSpan>>) -> Self {
        self.span = span;
        self
    }

    /// Keeps the target's in-flight count until this body is done.
    pub fn with_inflight(mut self, guard: Option<InflightGuard>) -> Self {
        self._inflight = guard;
        self
    }

    fn finish(&mut self) {
        if let Some(m) = self.metrics.take() {
            let bytes_in = m.request.as_ref().map_or(0, |s| s.bytes.load(Ordering::Relaxed));
            m.route
                .request_finished(&m.method, m.status, m.start.elapsed(), m.upstream, bytes_in, self.sent);
        }
        if let Some(conn) = self.conn.take() {
            // Reusable only if the upstream's body was read to its end.
            if let Kind::Upstream(b) = &self.kind
                && b.is_end_stream()
            {
                conn.put_back();
            }
        }
        self._inflight = None;
        self._permits = None;
        if let Some(s) = self.span.take() {
            s.finish();
        }
        if let Some(mut p) = self.pending.take() {
            p.line.bytes_out = self.sent;
            p.line.total_ms = p.start.elapsed().as_secs_f64() * 1000.0;
            if let Some(s) = &p.request {
                p.line.bytes_in = s.bytes.load(Ordering::Relaxed);
            }
            let PendingLog { line, log, .. } = *p;
            log.log(line);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if !self.done && !self.is_end_stream() {
            self.cut_short();
        }
        self.finish();
    }
}

impl ResponseBody {
    /// The body is dropped before its end: the client went away mid-body (a reset stream, a
    /// closed connection), or the upstream's body failed. The log line and the span say which
    /// (their status stays the one already sent), unless the response has no body to send at all
    /// (an answer to HEAD, a 204 or 304), which hyper drops unread.
    fn cut_short(&mut self) {
        let why = if self.failed {
            "upstream_failed"
        } else {
            "client_closed"
        };
        if let Some(p) = &mut self.pending
            && p.line.error.is_none()
            && !bodiless(p.line.method.as_ref(), p.line.status)
        {
            p.line.error = Some(why);
        }
        if let Some(s) = &mut self.span
            && s.span.error.is_none()
            && !bodiless(Some(&s.span.method), s.span.status)
        {
            s.span.error = Some(why);
        }
    }
}

/// A response that carries no body on the wire (RFC 9110 §6.4.1).
fn bodiless(method: Option<&http::Method>, status: u16) -> bool {
    method == Some(&http::Method::HEAD) || status < 200 || status == 204 || status == 304
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish();
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(b) => b.size_hint(),
        }
    }
}
