//! The bodies that cross the backend seam. Both stream: nothing here buffers a whole body.
//!
//! [`RequestBody`] wraps the client's body on its way to a backend: it counts bytes for the
//! traffic log, enforces the route's body limit and the client body idle timeout as the bytes
//! pass, and notes a body the client broke ([`BodyFault`]), so that the gateway answers for the
//! client's fault and counts it against no target. [`BackendBody`] is what a backend answers
//! with: a whole body, an upstream's streamed body (which hands its connection back to the pool
//! and settles the attempt for the breaker when it ends), or any other stream.

use crate::bulkhead::BulkheadPermit;
use crate::conn_pool::UpstreamBody;
use crate::h1_client::H1Body;
use crate::resilience::PendingAttempt;
use crate::target::InflightGuard;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

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
    inner: Option<ClientBody>,
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
    /// A copy of the bytes as they pass, for a retry (gRPC calls, whose bodies stream).
    record: Option<Arc<Recording>>,
}

/// The bytes of a request body kept as they stream to the target, up to a limit, so that a
/// retry can send them again once the body has ended: a gRPC call streams its messages (it has
/// no `Content-Length` to read it whole by, and a bidirectional call would wait forever for a
/// body read whole first), and is retried after a Trailers-Only answer only when all its bytes
/// were kept (Envoy's retry buffer does the same).
#[derive(Debug)]
pub struct Recording {
    limit: u64,
    kept: std::sync::Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    chunks: Vec<Bytes>,
    len: u64,
    ended: bool,
    overflowed: bool,
}

impl Recording {
    fn push(&self, data: &Bytes) {
        let Ok(mut k) = self.kept.lock() else { return };
        if k.overflowed {
            return;
        }
        k.len += data.len() as u64;
        if k.len > self.limit {
            k.overflowed = true;
            k.chunks = Vec::new();
        } else {
            k.chunks.push(data.clone()); // a reference count, not a copy
        }
    }

    fn end(&self) {
        if let Ok(mut k) = self.kept.lock() {
            k.ended = true;
        }
    }

    /// Whether the whole body was kept: it has ended within the limit.
    pub fn complete(&self) -> bool {
        self.kept.lock().is_ok_and(|k| k.ended && !k.overflowed)
    }

    /// The whole body, once it has ended within the limit; `None` before its end or past the
    /// limit (the request cannot be sent again).
    pub fn replay(&self) -> Option<Bytes> {
        let k = self.kept.lock().ok()?;
        if !k.ended || k.overflowed {
            return None;
        }
        Some(match k.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        })
    }
}

impl RequestBody {
    /// Wraps `inner`; `stats` is only allocated for requests that have a body. `idle` is the
    /// longest the client may pause between two pieces of its body.
    pub fn new(
        inner: impl Into<ClientBody>,
        limit: Option<u64>,
        idle: Option<Duration>,
    ) -> (RequestBody, Option<Arc<BodyStats>>) {
        let inner = inner.into();
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
                record: None,
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
            record: None,
        }
    }

    /// Keeps a copy of the bytes as they pass, up to `limit`, for a retry ([`Recording`]).
    pub fn record(&mut self, limit: u64) -> Arc<Recording> {
        let rec = Arc::new(Recording {
            limit,
            kept: Default::default(),
        });
        if self.is_end_stream() {
            rec.end();
        }
        self.record = Some(rec.clone());
        rec
    }

    /// Wraps a body made of this one (a protocol translation on a route: gRPC-Web's), so that
    /// the result is still the body every backend takes. The limit, the idle timeout and the
    /// stats stay with `self`, inside.
    pub fn wrap<B>(self, wrap: impl FnOnce(RequestBody) -> B) -> RequestBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody {
            inner: Some(ClientBody::boxed(wrap(self))),
            ..RequestBody::empty()
        }
    }

    /// The whole body when it is all in hand (none, or read whole), so that it can be sent
    /// again; `None` for a body still streaming from the client.
    pub fn whole(&self) -> Option<Bytes> {
        if self.buffered.is_some() {
            return self.inner.is_none().then(|| self.buffered.clone()).flatten();
        }
        self.is_end_stream().then(Bytes::new)
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
        let polled = self.as_mut().poll_body(cx);
        if let Some(rec) = &self.record {
            match &polled {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        rec.push(d);
                    }
                    // hyper stops polling a body that says it has ended.
                    if self.is_end_stream() {
                        rec.end();
                    }
                }
                Poll::Ready(None) => rec.end(),
                _ => {}
            }
        }
        polled
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

impl RequestBody {
    fn poll_body(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.progressed();
                Poll::Ready(None)
            }
            Poll::Pending => this.poll_stall(cx),
        }
    }
}

/// The client's body as the server hands it over: hyper's, or (for requests made in process:
/// the engine's own tests, later subrequests) any boxed stream.
pub enum ClientBody {
    /// hyper's (HTTP/2, and HTTP/1 when hyper serves it).
    Incoming(Incoming),
    /// The gateway's own HTTP/1 server's, fed by the connection ([`crate::fed_body`]).
    Fed(crate::fed_body::FedBody),
    /// A request without a body (no allocation, unlike an empty boxed one).
    Empty,
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl ClientBody {
    /// A whole body given in process.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> ClientBody {
        use http_body_util::BodyExt;
        let full = http_body_util::Full::new(bytes.into()).map_err(|never| match never {});
        ClientBody::Boxed(UnsyncBoxBody::new(full))
    }

    /// An in-process body from any stream of bytes.
    pub fn boxed<B>(body: B) -> ClientBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        ClientBody::Boxed(UnsyncBoxBody::new(body.map_err(Into::into)))
    }
}

impl From<Incoming> for ClientBody {
    fn from(b: Incoming) -> ClientBody {
        ClientBody::Incoming(b)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Fed(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Incoming(b) => b.is_end_stream(),
            ClientBody::Fed(b) => b.is_end_stream(),
            ClientBody::Empty => true,
            ClientBody::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Incoming(b) => b.size_hint(),
            ClientBody::Fed(b) => b.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Boxed(b) => b.size_hint(),
        }
    }
}

/// The upstream paused its response body longer than the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing of its response body for {0:?}")]
pub struct UpstreamReadTimeout(pub Duration);

/// The read timeout of an upstream's body: armed when a read finds nothing yet, disarmed by the
/// next frame, so that a stream may last any time but not go silent for longer than `limit`.
/// The timer is allocated at the first wait and reset after that.
struct ReadIdle {
    limit: Duration,
    armed: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ReadIdle {
    /// Polled when the upstream had nothing: true once the pause has lasted `limit`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.sleep.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }
}

/// What a backend answers with.
pub struct BackendBody {
    kind: Kind,
    /// The read timeout, for an upstream's streamed body.
    read_idle: Option<ReadIdle>,
    /// The attempt, when the breaker or outlier detection waits for the body to judge it.
    attempt: Option<PendingAttempt>,
    /// Keeps the target's in-flight count until the body is done.
    inflight: Option<InflightGuard>,
    /// The upstream's bulkhead place, held until the body is done.
    permit: Option<BulkheadPermit>,
}

enum Kind {
    Full(Option<Bytes>),
    /// From the gateway's own HTTP/1.1 client, which hands its connection back to the pool
    /// when the body ends.
    Own(H1Body),
    /// From hyper's client (HTTP/2, upgrades).
    Upstream(Incoming),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl BackendBody {
    pub fn full(bytes: impl Into<Bytes>) -> BackendBody {
        let bytes = bytes.into();
        BackendBody::of(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    pub fn empty() -> BackendBody {
        BackendBody::of(Kind::Full(None))
    }

    /// Any other stream (a test backend's, an aggregate's, a converted one).
    pub fn boxed<B>(body: B) -> BackendBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        BackendBody::of(Kind::Boxed(UnsyncBoxBody::new(body.map_err(Into::into))))
    }

    /// An upstream's body; `attempt` is judged once it ends.
    pub fn upstream(
        body: UpstreamBody,
        attempt: Option<PendingAttempt>,
        inflight: Option<InflightGuard>,
    ) -> BackendBody {
        BackendBody {
            kind: match body {
                UpstreamBody::Own(b) => Kind::Own(b),
                UpstreamBody::Hyper(b) => Kind::Upstream(b),
            },
            read_idle: None,
            attempt,
            inflight,
            permit: None,
        }
    }

    fn of(kind: Kind) -> BackendBody {
        BackendBody {
            kind,
            read_idle: None,
            attempt: None,
            inflight: None,
            permit: None,
        }
    }

    /// Cuts the body (with [`UpstreamReadTimeout`]) when it pauses longer than `limit` between
    /// two frames; `None` or zero: never.
    pub fn read_timeout(mut self, limit: Option<Duration>) -> Self {
        self.read_idle = limit.filter(|l| !l.is_zero()).map(|limit| ReadIdle {
            limit,
            armed: false,
            sleep: None,
        });
        self
    }

    /// Holds the target's in-flight count until the body is done.
    pub fn hold(&mut self, inflight: InflightGuard) {
        self.inflight = Some(inflight);
    }

    /// Holds the upstream's bulkhead place until the body is done.
    pub fn hold_permit(&mut self, permit: Option<BulkheadPermit>) {
        self.permit = permit;
    }

    /// Wraps the body's frames in a translation (a route's protocol: gRPC-Web's), keeping
    /// what the body holds (the pooled connection, the pending attempt, the in-flight count),
    /// which is settled when the wrapped body ends as it would have been.
    pub fn wrap<B>(mut self, wrap: impl FnOnce(Frames) -> B) -> BackendBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        let kind = std::mem::replace(&mut self.kind, Kind::Full(None));
        self.kind = Kind::Boxed(UnsyncBoxBody::new(wrap(Frames(kind)).map_err(Into::into)));
        self
    }

    /// Reads the body to its end and drops its bytes (a shadow copy's answer, which nobody
    /// reads), then settles it as the engine's response body would: a body read whole hands its
    /// connection back to the pool and has its attempt judged, one the target cut counts
    /// against it. Dropped unread instead, the connection would close and the attempt be lost.
    pub async fn drain(mut self) {
        use http_body_util::BodyExt;
        loop {
            match self.frame().await {
                None => break,
                Some(Ok(_)) => {}
                Some(Err(_)) => return self.settle(true),
            }
        }
        self.settle(false);
    }

    /// Whether this is an upstream's streamed body (rather than one made in process).
    pub fn is_streamed(&self) -> bool {
        !matches!(self.kind, Kind::Full(_))
    }

    /// The body is over: read whole (`whole`), cut by the target (`target_cut`), or neither
    /// (abandoned by the client, or cut by the client's fault: that counts as nothing). Judges
    /// the pending attempt and releases the target's in-flight count. (An HTTP/1.1 connection
    /// has gone back to its pool on its own, at the body's end.)
    pub fn settle(&mut self, target_cut: bool) {
        // A wrapped body (`wrap`) is whole when its wrapper has ended.
        let whole = !target_cut
            && match &self.kind {
                Kind::Own(b) => b.is_end_stream(),
                Kind::Upstream(b) => b.is_end_stream(),
                Kind::Boxed(b) => b.is_end_stream(),
                Kind::Full(_) => false,
            };
        if let Some(a) = self.attempt.take() {
            match (target_cut, whole) {
                (true, _) => a.finish(false),
                (false, true) => a.finish(true),
                (false, false) => drop(a),
            }
        }
        self.inflight = None;
        self.permit = None;
    }
}

/// A backend body's frames, without what the body holds: what [`BackendBody::wrap`] hands to
/// a wrapper.
pub struct Frames(Kind);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.kind).poll_frame(cx);
        if let Some(idle) = &mut this.read_idle {
            if polled.is_ready() {
                idle.armed = false;
            } else if idle.expired(cx) {
                let limit = idle.limit;
                this.read_idle = None;
                return Poll::Ready(Some(Err(Box::new(UpstreamReadTimeout(limit)))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind.size_hint()
    }
}

impl Body for Kind {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Own(b) => Pin::new(b).poll_frame(cx),
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Kind::Full(b) => b.is_none(),
            Kind::Own(b) => b.is_end_stream(),
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Own(b) => b.size_hint(),
            Kind::Upstream(b) => b.size_hint(),
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}
