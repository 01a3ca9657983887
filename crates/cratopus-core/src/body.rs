//! The bodies that flow through the gateway. Both stream: nothing here buffers a whole body.
//!
//! [`RequestBody`] wraps the client's body on its way upstream: it counts bytes for the traffic
//! log, enforces the route's body limit and the client body idle timeout as the bytes pass, and
//! notes a body the client broke ([`BodyFault`]), so that the engine answers for the client's
//! fault and counts it against no target. [`ResponseBody`] is what the client receives, from
//! the upstream or from the gateway itself; when it ends (or the client goes away) it writes the
//! request's traffic-log line, releases the target's in-flight count, and records the attempt
//! for the breaker and outlier detection when that waited for the body ([`PendingAttempt`]).

use crate::conn_pool::PoolReturn;
use crate::resilience::{PendingAttempt, Permits};
use bytes::Bytes;
use cratopus_observe::metrics::RouteMetrics;
use cratopus_observe::spans::{RequestSpan, SpanSink};
use cratopus_observe::{LogLine, TrafficLog};
use cratopus_upstream::InflightGuard;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body grew past the route's limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// The client stopped sending its body for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of its request body for {0:?}")]
pub struct BodyStalled(pub Duration);

/// What the client did wrong with its request body. The request is then answered for the
/// client's fault (413, 400, 408) and recorded against no target: no breaker failure, no
/// outlier ejection, no retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// It grew past the route's limit.
    TooLarge = 1,
    /// It could not be read: malformed chunked framing, or the client closed its connection
    /// (or reset its stream) before the body's end.
    Broken = 2,
    /// Nothing came for longer than `limits.client_body_timeout` between two reads.
    Stalled = 3,
}

/// What the request body did, shared with the response side for the log and the engine.
#[derive(Debug, Default)]
pub struct BodyStats {
    pub bytes: AtomicU64,
    /// A [`BodyFault`] as its number, 0 for none.
    fault: AtomicU8,
    /// The body is waiting for the client's next bytes right now (rather than being done, or
    /// waiting for the upstream to take what came): a response timeout that fires then is the
    /// slow client's doing.
    waiting: AtomicBool,
}

impl BodyStats {
    /// The client's fault with its body, if any.
    pub fn fault(&self) -> Option<BodyFault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(BodyFault::TooLarge),
            2 => Some(BodyFault::Broken),
            3 => Some(BodyFault::Stalled),
            _ => None,
        }
    }

    fn set_fault(&self, f: BodyFault) {
        self.fault.store(f as u8, Ordering::Relaxed);
    }

    /// Whether the body is waiting for the client's next bytes at this moment.
    pub fn waiting_on_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// The client's fault with a request body, if it had one and did something wrong.
pub fn fault_of(stats: Option<&Arc<BodyStats>>) -> Option<BodyFault> {
    stats.and_then(|s| s.fault())
}

pub struct RequestBody {
    /// `None` for the empty body of a retried request (only bodiless requests are retried)
    /// and for a body read whole for validation (then in `buffered`).
    inner: Option<Incoming>,
    buffered: Option<Bytes>,
    limit: u64,
    seen: u64,
    stats: Option<Arc<BodyStats>>,
    /// The client body idle timeout; `None` when off (or for a body already read).
    idle: Option<Duration>,
    /// Armed when a read finds nothing yet, at that moment plus `idle`; the next bytes disarm
    /// it. Allocated on the first wait only.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `stall` is armed for the current wait.
    waiting: bool,
}

impl RequestBody {
    /// Wraps `inner`; `stats` is only allocated for requests that have a body. `idle` is the
    /// longest the client may pause between two pieces of its body.
    pub fn new(inner: Incoming, limit: Option<u64>, idle: Option<Duration>) -> (RequestBody, Option<Arc<BodyStats>>) {
        let stats = (!inner.is_end_stream()).then(|| Arc::new(BodyStats::default()));
        (
            RequestBody {
                inner: Some(inner),
                buffered: None,
                limit: limit.unwrap_or(u64::MAX),
                seen: 0,
                idle: idle.filter(|_| stats.is_some()),
                stats: stats.clone(),
                stall: None,
                waiting: false,
            },
            stats,
        )
    }

    /// Nothing came from the client on this poll: notes the wait and starts the idle clock
    /// when a wait begins, and fails the body once the clock has run out.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(stats) = &self.stats else {
            return Poll::Pending; // no body to speak of
        };
        if !self.waiting {
            self.waiting = true;
            stats.waiting.store(true, Ordering::Relaxed);
            if let Some(idle) = self.idle {
                let deadline = tokio::time::Instant::now() + idle;
                match &mut self.stall {
                    Some(sleep) => sleep.as_mut().reset(deadline),
                    None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
            }
        }
        if let (Some(sleep), Some(idle)) = (&mut self.stall, self.idle)
            && sleep.as_mut().poll(cx).is_ready()
        {
            self.fail(BodyFault::Stalled);
            return Poll::Ready(Some(Err(Box::new(BodyStalled(idle)))));
        }
        Poll::Pending
    }

    /// Bytes (or the end) came: the wait, if any, is over.
    fn progressed(&mut self) {
        if self.waiting {
            self.waiting = false;
            if let Some(s) = &self.stats {
                s.waiting.store(false, Ordering::Relaxed);
            }
        }
    }

    fn fail(&mut self, fault: BodyFault) {
        self.progressed();
        if let Some(s) = &self.stats {
            s.set_fault(fault);
        }
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
            idle: None,
            stall: None,
            waiting: false,
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
                this.progressed();
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if let Some(s) = &this.stats {
                        s.bytes.store(this.seen, Ordering::Relaxed);
                        if this.seen > this.limit {
                            s.set_fault(BodyFault::TooLarge);
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(BodyFault::Broken);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.progressed();
                Poll::Ready(None)
            }
            Poll::Pending => this.poll_stall(cx),
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

/// The traffic log's `error` for a response whose body the target cut short (the head, and
/// its status, had already gone to the client).
pub const UPSTREAM_BODY_INCOMPLETE: &str = "upstream_body_incomplete";

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
    pending: Option<Box<PendingLog>>,
    _inflight: Option<InflightGuard>,
    /// The attempt, when the breaker or outlier detection waits for the body to judge it.
    attempt: Option<PendingAttempt>,
    /// The upstream's body failed before its end (cut short, reset).
    cut: bool,
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
            pending: None,
            _inflight: None,
            attempt: None,
            cut: false,
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
            pending: None,
            _inflight: None,
            attempt: None,
            cut: false,
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

    /// Records `attempt` for the breaker and outlier detection when this body is done: a
    /// success if it arrived whole, a failure if the target cut it short.
    pub fn with_attempt(mut self, attempt: Option<PendingAttempt>) -> Self {
        self.attempt = attempt;
        self
    }

    /// Keeps the target's in-flight count until this body is done.
    pub fn with_inflight(mut self, guard: Option<InflightGuard>) -> Self {
        self._inflight = guard;
        self
    }

    /// The stats of the request's own body, if it had one.
    fn request_stats(&self) -> Option<&Arc<BodyStats>> {
        self.metrics
            .as_ref()
            .and_then(|m| m.request.as_ref())
            .or_else(|| self.pending.as_ref().and_then(|p| p.request.as_ref()))
    }

    fn finish(&mut self) {
        // A body cut while the client was breaking its own request (the upstream connection
        // closed because the request body failed) is the client's doing.
        let target_cut = self.cut && crate::body::fault_of(self.request_stats()).is_none();
        let whole = !self.cut && matches!(&self.kind, Kind::Upstream(b) if b.is_end_stream());
        if let Some(a) = self.attempt.take() {
            match (target_cut, whole) {
                (true, _) => a.finish(false),
                (false, true) => a.finish(true),
                // Abandoned by the client, or cut by the client's fault: counts as nothing.
                (false, false) => drop(a),
            }
        }
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
        if let Some(mut s) = self.span.take() {
            if target_cut {
                s.span.error.get_or_insert(UPSTREAM_BODY_INCOMPLETE);
            }
            s.finish();
        }
        if let Some(mut p) = self.pending.take() {
            p.line.bytes_out = self.sent;
            p.line.total_ms = p.start.elapsed().as_secs_f64() * 1000.0;
            if let Some(s) = &p.request {
                p.line.bytes_in = s.bytes.load(Ordering::Relaxed);
            }
            if target_cut && p.line.error.is_none() {
                p.line.error = Some(UPSTREAM_BODY_INCOMPLETE);
            }
            let PendingLog { line, log, .. } = *p;
            log.log(line);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body the target cut was judged and logged when it failed (`finish`).
        if !self.done && !self.cut && !self.is_end_stream() {
            self.cut_short();
        }
        self.finish();
    }
}

impl ResponseBody {
    /// The body is dropped before its end by the client going away mid-body (a reset stream, a
    /// closed connection): the log line and the span say so (their status stays the one already
    /// sent), unless the response has no body to send at all (an answer to HEAD, a 204 or 304),
    /// which hyper drops unread.
    fn cut_short(&mut self) {
        let why = "client_closed";
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
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, sent = this.sent, "upstream response body failed before its end");
                this.cut = true;
                this.finish();
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish();
            }
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
