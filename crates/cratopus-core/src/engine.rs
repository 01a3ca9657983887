//! The engine: holds the current snapshot and runs every request through the phase chain.
//!
//! The phases, in the one order they run (each in its own module of [`crate::phases`]):
//!
//! ```text
//! edge      the gateway's own answers (health, ACME challenge, redirect to HTTPS), blocked
//!           addresses, Host → organization, TLS rules, header size, path normalization
//! routing   CORS preflight, path + method (+ conditions) → route (404 / 405), switched-off routes
//! request   the route's policy chain in order (ip rules → cors → authentication →
//!           authorization → rate limits → quotas → body limit → validation → bulkhead →
//!           forwarding …); the body read whole once if a policy asks; forwarding headers
//! backend   the route's backend answers (an upstream, a split, a shadow, a service)
//! response  the route's policy chain in reverse, on every answer of the route
//! log       the traffic-log line, the route's metrics and the spans: on every path, the
//!           edge's answers, the refusals and a client that went away included
//! ```
//!
//! docs/architecture.md draws this chart from [`PHASES`].

use crate::body::{ClientBody, RequestBody, ResponseBody};
use crate::error::GatewayError;
use crate::forward;
use crate::overrides::Overrides;
use crate::phases::{backend, edge, exchange::Exchange, request, routing};
use crate::snapshot::{Route, Snapshot};
use crate::tls::TlsConn;
use arc_swap::ArcSwap;
use cratopus_observe::metrics::GatewayMetrics;
use http::header::HeaderValue;
use http::{Request, Response};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

/// The phases in the order they run, for docs and `cratopus routes`.
pub const PHASES: [&str; 6] = ["edge", "routing", "request", "backend", "response", "log"];

/// What the server knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `peer`'s address as `X-Forwarded-For` carries it: formatted once per connection rather
    /// than once per request (an address's `Display` is a noticeable part of a proxied
    /// request's cost).
    pub peer_ip: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// On an HTTPS connection: the organization the handshake was for and the client's
    /// verified certificate, if any.
    pub tls: Option<Arc<TlsConn>>,
    /// On a plain listener with `redirect_http_to_https`: the HTTPS port to redirect to.
    pub redirect_https: Option<u16>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, scheme: &'static str, tls: Option<Arc<TlsConn>>) -> ConnInfo {
        ConnInfo {
            peer,
            peer_ip: forward::ip_value(peer.ip()),
            scheme,
            tls,
            redirect_https: None,
        }
    }
}

/// Holds the current snapshot and runs requests against it.
pub struct Engine {
    current: ArcSwap<Snapshot>,
    /// Process-wide counters (reloads, requests no route took), for `/metrics`.
    pub metrics: GatewayMetrics,
    /// Blocked addresses and switched-off routes, set through the admin API.
    pub overrides: Overrides,
    /// Open WebSockets (outlive the snapshot they started on): metrics and shutdown.
    pub sockets: crate::websocket::Sockets,
}

impl Engine {
    pub fn new(snapshot: Snapshot) -> Engine {
        Engine {
            current: ArcSwap::from_pointee(snapshot),
            metrics: GatewayMetrics::new(),
            overrides: Overrides::default(),
            sockets: crate::websocket::Sockets::default(),
        }
    }

    /// The snapshot requests are served from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Serves every new request from `snapshot`; requests in flight finish on the old one.
    pub fn swap(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Answers one request. The [`Exchange`] is the request's context from its first phase to
    /// its last: dropped before an answer exists (the client went away), it still logs.
    pub fn handle<B: Into<ClientBody>>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        exchange(self, conn, req.map(Into::into))
    }

    /// [`Engine::handle`] for a server that boxes the request's future: this one owns its
    /// engine and connection, so it is boxed as it is, not inside another future that would
    /// hold the request a second time (and copy it, and this future, once more).
    pub fn handle_owned(
        self: Arc<Self>,
        req: Request<ClientBody>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        exchange(self, conn, req)
    }

    /// The phases up to the backend; any may answer (or refuse) instead.
    async fn phases(
        &self,
        snap: &Snapshot,
        parts: &mut http::request::Parts,
        body: &mut ClientBody,
        conn: &ConnInfo,
        ex: &mut Exchange<'_>,
    ) -> Result<Phased, GatewayError> {
        let org = match edge::phase(self, snap, parts, conn, ex).await? {
            edge::Edge::Answered(res) => return Ok(Phased::Answered(res)),
            edge::Edge::Pass(org) => org,
        };
        let route = match routing::phase(self, org, parts, conn, ex).await? {
            routing::Routed::Answered(res) => return Ok(Phased::Answered(res)),
            routing::Routed::Route(route) => route,
        };
        match request::phase(snap, org, &route, parts, body, conn, ex).await? {
            request::Requested::Forward(body) => Ok(Phased::Forward(route, body)),
            request::Requested::Answered(res) => Ok(Phased::Answered(res)),
        }
    }
}

/// One request through the phases: held as its parts, which each phase borrows, until the
/// backend takes it whole. (Not an `async fn`: that would keep the request twice in the future,
/// as the argument and as the parts; this future is allocated and copied once per request, and
/// each phase that took the request by value held another copy.)
fn exchange<E, C>(engine: E, conn: C, req: Request<ClientBody>) -> impl Future<Output = Response<ResponseBody>> + Send
where
    E: Deref<Target = Engine> + Send + Sync,
    C: Deref<Target = ConnInfo> + Send + Sync,
{
    let (mut parts, mut body) = req.into_parts();
    async move {
        let (engine, conn) = (&*engine, &*conn);
        let snap = engine.current.load_full();
        let mut ex = Exchange::begin(engine, &snap, conn, &parts);
        let answer = match engine.phases(&snap, &mut parts, &mut body, conn, &mut ex).await {
            Ok(Phased::Forward(route, body)) => {
                let answer = backend::call(&route, Request::from_parts(parts, body), conn, &mut ex).await;
                backend::settle(&route, answer, &mut ex)
            }
            Ok(Phased::Answered(res)) => Ok(*res),
            Err(e) => Err(e),
        };
        ex.finish(answer) // response policies in reverse, the edge's headers, the log
    }
}

/// How the phases before the backend end.
enum Phased {
    /// The request goes to the route's backend with this body.
    Forward(Arc<Route>, RequestBody),
    /// A phase answered (or a policy did).
    Answered(Box<Response<ResponseBody>>),
}

#[cfg(test)]
mod tests {
    /// docs/architecture.md draws the phase chart from [`super::PHASES`]: every phase, in this
    /// order, heads a line of the chart.
    #[test]
    fn the_architecture_chart_follows_the_phase_list() {
        let doc = include_str!("../../../docs/architecture.md");
        let chart = doc
            .split("## The phase chain and the backend seam")
            .nth(1)
            .and_then(|s| s.split("```").nth(1))
            .expect("the chart");
        let heads: Vec<&str> = chart
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("─▶ "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| super::PHASES.contains(w))
            .collect();
        assert_eq!(heads, super::PHASES, "{chart}");
    }
}
