//! The request's context across the phases, and the log phase.
//!
//! An [`Exchange`] is made when a request arrives and ends in [`Exchange::finish`] with the
//! response: the route's response policies run in reverse, the edge's headers are added
//! (`X-Request-Id`, HSTS), and the log phase hands the traffic-log line, the route's metrics
//! and the spans to the response body, which writes them when it ends. This is the only place
//! a request is logged: the gateway's own answers, refusals and errors go through it too.
//!
//! hyper drops the request's future when the client goes away before the response head exists
//! (a timeout over HTTP/1.1, a stream reset over HTTP/2); dropping the exchange unfinished then
//! logs the request with status 499 and error `client_closed` from what was learned so far.

use crate::body::{BodyStats, GRPC_STATUS_FIELD, PendingLog, PendingMetrics, PendingSpan, ResponseBody};
use crate::engine::{ConnInfo, Engine};
use crate::error::GatewayError;
use crate::forward::{self, X_REQUEST_ID};
use crate::host::{host_value, request_host};
use crate::snapshot::{Route, Snapshot};
use cratopus_observe::LogLine;
use cratopus_observe::spans::{RequestSpan, SpanSink, UpstreamSpan};
use cratopus_observe::traffic_log::LogValue;
use cratopus_policies::chain::RequestCx;
use cratopus_policies::ip_rules::client_ip;
use cratopus_upstream::Call;
use http::Response;
use http::header::{self, HeaderValue};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

/// nginx's "client closed request": the status logged for a request whose client went away
/// before the response head existed.
const CLIENT_CLOSED: u16 = 499;

/// One request from its arrival to its response.
pub struct Exchange<'a> {
    engine: &'a Engine,
    conn: &'a ConnInfo,
    pub start: Instant,
    pub request_id: HeaderValue,
    pub trace: forward::TraceContext,
    pub client: IpAddr,
    method: http::Method,
    /// The log line as far as it is known, already in the box the response body carries it
    /// in (allocated here rather than at the end, so that the exchange, copied whole with the
    /// request's future, holds 8 bytes for it rather than 448); `None` with the traffic log off.
    log: Option<Box<PendingLog>>,
    /// Span export of a sampled request: the sink, the path and the host.
    span: Option<(Arc<SpanSink>, String, String)>,
    /// Whether names are kept for the log or the spans.
    pub keeps_names: bool,
    pub org: Option<Arc<str>>,
    /// `Strict-Transport-Security` of the organization, on HTTPS.
    pub hsts: Option<HeaderValue>,
    /// The matched route (its name for the log; its metrics; its chain for the response phase).
    pub route: Option<Arc<Route>>,
    /// The route that answered a CORS preflight, for the log (it runs no policies).
    pub route_name: Option<Arc<str>>,
    /// What the route's policies learned.
    pub cx: Option<RequestCx>,
    /// What the backend reported.
    pub call: Option<Call>,
    /// The client's `Host` as it arrived, for backends that preserve it (set by the request
    /// phase, taken by the backend phase).
    pub client_host: Option<HeaderValue>,
    /// The request body's stats, once it streams.
    pub stats: Option<Arc<BodyStats>>,
    pub error: Option<&'static str>,
    /// Where the request phase starts in the route's chain: past authentication when the
    /// routing phase ran that part already (routes chosen by consumer, see `routing.rs`).
    pub chain_from: usize,
    /// A WebSocket being set up (noted by the routing phase); once the backend switched
    /// protocols, the log phase hands the sockets and the log line to its relay.
    pub websocket: Option<crate::websocket::Upgrade>,
    /// The request is gRPC (`content-type: application/grpc…`): the gateway's own errors are
    /// answered as gRPC statuses.
    pub grpc: bool,
    /// How many steps of the route's chain run their response side: all of them, unless a
    /// policy answered the request itself (a cache hit; then those before it).
    pub chain_end: usize,
    answered: bool,
}

impl<'a> Exchange<'a> {
    pub fn begin(
        engine: &'a Engine,
        snap: &'a Snapshot,
        conn: &'a ConnInfo,
        req: &http::request::Parts,
    ) -> Exchange<'a> {
        let request_id = forward::request_id(&req.headers);
        let trace = forward::TraceContext::from_headers(&req.headers, snap.sample_ratio);
        let client = client_ip(conn.peer.ip(), &req.headers, &snap.trusted_proxies);
        let start = Instant::now();
        let log = snap.traffic_log.enabled().then(|| {
            Box::new(PendingLog {
                line: LogLine {
                    method: Some(req.method.clone()),
                    host: host_value(&req.headers, &req.uri),
                    uri: Some(req.uri.clone()),
                    user_agent: req.headers.get(header::USER_AGENT).cloned(),
                    trace_id: Some(trace.trace_id),
                    ..LogLine::answered(request_id.clone(), client, 0)
                },
                log: snap.traffic_log.clone(),
                start,
                request: None,
            })
        });
        // Spans are built only for sampled requests, and only when an exporter is configured.
        let span = snap.spans.as_ref().filter(|_| trace.sampled()).map(|sink| {
            (
                sink.clone(),
                req.uri.path().to_string(),
                request_host(req).unwrap_or("").to_string(),
            )
        });
        Exchange {
            engine,
            conn,
            start,
            keeps_names: log.is_some() || span.is_some(),
            request_id,
            trace,
            client,
            method: req.method.clone(),
            log,
            span,
            org: None,
            hsts: None,
            route: None,
            route_name: None,
            cx: None,
            call: None,
            client_host: None,
            stats: None,
            error: None,
            chain_from: 0,
            websocket: None,
            grpc: cratopus_upstream::grpc::is_grpc(&req.headers),
            chain_end: usize::MAX,
            answered: false,
        }
    }

    /// The response phase and the log phase: runs on every answer. (Borrowing, not taking,
    /// the exchange: moved into this call, its 1.1 KB would be copied once more per request.)
    pub fn finish(&mut self, answer: Result<Response<ResponseBody>, GatewayError>) -> Response<ResponseBody> {
        self.answered = true;
        let res = match answer {
            Ok(res) => res,
            Err(e) => {
                self.error = Some(e.code());
                if self.grpc {
                    e.to_grpc_response().map(ResponseBody::full)
                } else {
                    e.to_response(&self.request_id).map(ResponseBody::full)
                }
            }
        };
        let (mut parts, mut body) = res.into_parts();
        // Response policies, in reverse order of the chain (only those before the step that
        // answered, when one did: a cache hit); then the body wrappers (gRPC-Web, compression,
        // the cache's store) of the routes that have one, which see the final head.
        if let (Some(route), Some(cx)) = (&self.route, &mut self.cx) {
            let chain = &route.chain[..self.chain_end.min(route.chain.len())];
            if route.wraps_bodies {
                state_length(&self.method, &mut parts, &body);
            }
            for p in chain.iter().rev() {
                p.on_response(cx, &mut parts);
            }
            if route.wraps_bodies {
                body = body.map_backend(|b| chain.iter().rev().fold(b, |b, p| p.wrap_response_body(cx, &parts, b)));
            }
        }
        parts.headers.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        if let Some(hsts) = self.hsts.take() {
            parts.headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        let status = parts.status;
        let span = self
            .span
            .take()
            .map(|(sink, path, host)| self.pending_span(sink, path, host, status));
        let code = status.as_u16();
        let upstream_time = self.call.as_ref().and_then(|c| c.elapsed);
        let client_fault = self.call.as_ref().is_some_and(|c| c.client_fault);
        let mut pending = self.log.take().map(|mut pending| {
            self.fill(&mut pending.line, code);
            // A gRPC call's status: here when it is in the head (the gateway's errors, a
            // Trailers-Only answer); else the response body adds it from the trailers.
            if self.grpc
                && let Some(s) = cratopus_upstream::grpc::head_status(&parts.headers)
            {
                pending.line.fields.push((GRPC_STATUS_FIELD, LogValue::Int(s.into())));
            }
            pending.request = self.stats.clone();
            pending
        });
        // A switched socket: its relay writes the log line when it closes. (The request itself
        // is counted in the route's metrics now, with the handshake's time.)
        if let (Some(ws), Some(route)) = (self.websocket.take().filter(|w| w.upgraded()), &self.route) {
            ws.hand_over(&self.engine.sockets, &route.org, &route.name, pending.take());
        }
        let metrics = match &self.route {
            Some(route) => {
                if let Some(cx) = &self.cx {
                    count_limits(route, cx);
                }
                Some(PendingMetrics {
                    route: route.metrics.clone(),
                    method: self.method.clone(),
                    status: code,
                    start: self.start,
                    upstream: upstream_time.filter(|_| !client_fault),
                    request: self.stats.clone(),
                })
            }
            None => {
                self.engine.metrics.unrouted(code);
                None
            }
        };
        let permits = self
            .cx
            .as_mut()
            .map(|cx| std::mem::take(&mut cx.permits))
            .unwrap_or_default();
        Response::from_parts(
            parts,
            body.with_log(pending)
                .with_metrics(metrics)
                .with_span(span)
                .with_permits(permits),
        )
    }

    /// Moves what was learned into the request's log line, answered with `status`.
    fn fill(&mut self, line: &mut LogLine, status: u16) {
        line.status = status;
        line.org = self.org.clone();
        line.route = self
            .route
            .as_ref()
            .map(|r| r.name.clone())
            .or_else(|| self.route_name.clone());
        if let Some(call) = &self.call {
            line.upstream = call.target.clone();
            line.upstream_ms = call.elapsed.map(|t| t.as_secs_f64() * 1000.0);
        }
        line.error = self.error;
        if let Some(cx) = &mut self.cx {
            line.consumer = cx.consumer.clone();
            line.reason = cx.reason;
            line.fields = std::mem::take(&mut cx.log_fields);
        }
    }

    /// The spans of a sampled request as far as the response head; [`PendingSpan`] adds the
    /// end times when the body is done.
    fn pending_span(
        &self,
        sink: Arc<SpanSink>,
        path: String,
        host: String,
        status: http::StatusCode,
    ) -> Box<PendingSpan> {
        let route = self.route.as_deref();
        let call = self.call.as_ref();
        let upstream = call.and_then(|c| c.started).map(|began| {
            // A failed call ends when it failed; the mirror answers whole; a proxied body
            // streams, so its call ends with the body.
            let whole = self.error.is_some() || call.is_some_and(|c| c.whole);
            let ended = whole.then(|| began + call.and_then(|c| c.elapsed).unwrap_or_default());
            (began, ended)
        });
        let now = SystemTime::now();
        Box::new(PendingSpan {
            sink,
            span: RequestSpan {
                trace_id: self.trace.trace_id,
                span_id: self.trace.span_id,
                parent_id: self.trace.parent_id,
                start: now,
                end: now,
                method: self.method.clone(),
                path,
                scheme: self.conn.scheme,
                host: (!host.is_empty()).then_some(host),
                client_ip: self.conn.peer.ip(),
                status: status.as_u16(),
                request_id: self.request_id.to_str().ok().map(str::to_string),
                org: self.org.clone(),
                route: route.map(|r| r.name.clone()).or_else(|| self.route_name.clone()),
                pattern: route.map(|r| r.pattern.clone()),
                error: self.error,
                upstream: upstream.map(|_| UpstreamSpan {
                    span_id: self.trace.upstream_span_id,
                    start: now,
                    end: now,
                    upstream: call.and_then(|c| c.upstream.clone()),
                    target: call.and_then(|c| c.target.clone()),
                    status: self.error.is_none().then_some(status.as_u16()),
                }),
            },
            start: self.start,
            upstream,
        })
    }
}

/// Requests over a rate limit or quota, for the route's metrics.
fn count_limits(route: &Route, cx: &RequestCx) {
    for _ in 0..cx.soft_over {
        route.metrics.over_limit(true);
    }
    for _ in 0..cx.refused_over {
        route.metrics.over_limit(false);
    }
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.error = Some("client_closed");
        // An upstream call in flight ends here, with the client.
        if let Some(call) = &mut self.call
            && call.elapsed.is_none()
        {
            call.end();
        }
        let bytes_in = self.stats.as_ref().map_or(0, |s| s.bytes.load(Ordering::Relaxed));
        let elapsed = self.start.elapsed();
        if let Some((sink, path, host)) = self.span.take() {
            let status = http::StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(http::StatusCode::BAD_REQUEST);
            self.pending_span(sink, path, host, status).finish();
        }
        match &self.route {
            // The upstream's wait is not recorded: it never ended.
            Some(route) => route
                .metrics
                .request_finished(&self.method, CLIENT_CLOSED, elapsed, None, bytes_in, 0),
            None => self.engine.metrics.unrouted(CLIENT_CLOSED),
        }
        if let Some(pending) = self.log.take() {
            let mut line = pending.line;
            self.fill(&mut line, CLIENT_CLOSED);
            line.bytes_in = bytes_in;
            line.total_ms = elapsed.as_secs_f64() * 1000.0;
            pending.log.log(line);
        }
    }
}

/// Writes the body's length in the head when the body knows it exactly and the head does not
/// say it (an answer made in process: the mirror's, the gateway's errors), for the policies that
/// wrap bodies and judge the answer by its head (compression's minimum size). hyper would write
/// the same header when sending; a `HEAD` answer or a status without a body is left alone.
fn state_length(method: &http::Method, parts: &mut http::response::Parts, body: &ResponseBody) {
    use http_body::Body as _;
    let s = parts.status;
    if *method == http::Method::HEAD
        || s.is_informational()
        || s == http::StatusCode::NO_CONTENT
        || s == http::StatusCode::NOT_MODIFIED
        || parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        return;
    }
    if let Some(n) = body.size_hint().exact() {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}
