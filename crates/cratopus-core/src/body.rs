//! What the client receives: [`ResponseBody`] wraps a backend's answer (or the gateway's own)
//! and, when it ends or the client goes away, runs the tail of the log phase: it writes the
//! request's traffic-log line, records the route's metrics, exports the spans, releases the
//! bulkhead places, and settles the backend's body (the pooled connection, the attempt the
//! breaker waits to judge). The request side's body types live with the backend seam
//! (`cratopus_upstream::body`).

use bytes::Bytes;
use cratopus_observe::metrics::RouteMetrics;
use cratopus_observe::spans::{RequestSpan, SpanSink};
use cratopus_observe::{LogLine, TrafficLog};
use cratopus_upstream::BackendBody;
use cratopus_upstream::body::UpstreamReadTimeout;
pub use cratopus_upstream::body::{BodyFault, BodyStats, BoxError, ClientBody, RequestBody, fault_of};
use cratopus_upstream::bulkhead::BulkheadPermit;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

/// The traffic log's `error` for a response whose body the target cut short (the head, and
/// its status, had already gone to the client).
pub const UPSTREAM_BODY_INCOMPLETE: &str = "upstream_body_incomplete";
/// The upstream paused its body longer than the read timeout, and the gateway cut it.
pub const UPSTREAM_READ_TIMEOUT: &str = "upstream_read_timeout";

/// The traffic log's field with a gRPC call's `grpc-status`.
pub const GRPC_STATUS_FIELD: &str = "grpc_status";

/// The traffic-log line waiting for the response to end.
pub struct PendingLog {
    pub line: LogLine,
    pub log: TrafficLog,
    pub start: Instant,
    pub request: Option<Arc<BodyStats>>,
}

impl cratopus_observe::traffic_log::Logged for PendingLog {
    fn line(&self) -> &LogLine {
        &self.line
    }
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
    body: BackendBody,
    span: Option<Box<PendingSpan>>,
    /// Bulkhead places of the request, freed when the response ends.
    permits: Vec<BulkheadPermit>,
    metrics: Option<PendingMetrics>,
    sent: u64,
    /// The body reached its end (hyper polled it to `None`).
    done: bool,
    pending: Option<Box<PendingLog>>,
    /// The backend's body failed before its end (cut short, reset, or paused past the read
    /// timeout): the error code for the log.
    cut: Option<&'static str>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::backend(BackendBody::full(bytes))
    }

    /// A backend's answer.
    pub fn backend(body: BackendBody) -> ResponseBody {
        ResponseBody {
            body,
            span: None,
            permits: Vec::new(),
            metrics: None,
            sent: 0,
            done: false,
            pending: None,
            cut: None,
        }
    }

    /// Replaces the backend's body with a wrapper of it (a route's protocol translation).
    pub fn map_backend(mut self, f: impl FnOnce(BackendBody) -> BackendBody) -> Self {
        let body = std::mem::replace(&mut self.body, BackendBody::empty());
        self.body = f(body);
        self
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
    pub fn with_permits(mut self, permits: Vec<BulkheadPermit>) -> Self {
        self.permits = permits;
        self
    }

    /// Exports the request's spans when this body is done.
    pub fn with_span(mut self, span: Option<Box<PendingSpan>>) -> Self {
        self.span = span;
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
        let target_cut = self.cut.is_some() && fault_of(self.request_stats()).is_none();
        let cut_code = self.cut.unwrap_or(UPSTREAM_BODY_INCOMPLETE);
        self.body.settle(target_cut);
        // One clock read for both the metrics and the log line.
        let now = Instant::now();
        if let Some(m) = self.metrics.take() {
            let bytes_in = m.request.as_ref().map_or(0, |s| s.bytes.load(Ordering::Relaxed));
            let took = now.saturating_duration_since(m.start);
            m.route
                .request_finished(&m.method, m.status, took, m.upstream, bytes_in, self.sent);
        }
        self.permits.clear();
        if let Some(mut s) = self.span.take() {
            if target_cut {
                s.span.error.get_or_insert(cut_code);
            }
            s.finish();
        }
        if let Some(mut p) = self.pending.take() {
            p.line.bytes_out = self.sent;
            p.line.total_ms = now.saturating_duration_since(p.start).as_secs_f64() * 1000.0;
            if let Some(s) = &p.request {
                p.line.bytes_in = s.bytes.load(Ordering::Relaxed);
            }
            if target_cut && p.line.error.is_none() {
                p.line.error = Some(cut_code);
            }
            // The box goes to the writer as it is (the handle taken out first: dropped here,
            // on the thread that cloned it).
            let log = std::mem::take(&mut p.log);
            log.send(p);
        }
    }

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

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body the target cut was judged and logged when it failed (`finish`).
        if !self.done && self.cut.is_none() && !self.is_end_stream() {
            self.cut_short();
        }
        self.finish();
    }
}

/// A response that carries no body on the wire (RFC 9110 §6.4.1).
fn bodiless(method: Option<&http::Method>, status: u16) -> bool {
    method == Some(&http::Method::HEAD) || status < 200 || status == 204 || status == 304
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                } else if let (Some(t), Some(p)) = (frame.trailers_ref(), &mut this.pending)
                    && let Some(s) = cratopus_upstream::grpc::head_status(t)
                {
                    // A gRPC call's status, in its trailers.
                    p.line.fields.push((
                        GRPC_STATUS_FIELD,
                        cratopus_observe::traffic_log::LogValue::Int(s.into()),
                    ));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, sent = this.sent, "backend response body failed before its end");
                this.cut = Some(if e.is::<UpstreamReadTimeout>() {
                    UPSTREAM_READ_TIMEOUT
                } else {
                    UPSTREAM_BODY_INCOMPLETE
                });
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
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
