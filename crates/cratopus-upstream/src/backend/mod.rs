//! The backend seam: whatever answers a request once the route's policies have let it through.
//!
//! A route holds one [`Backend`] and the engine calls it without knowing which kind it is:
//! - [`UpstreamCall`]: one upstream — pick a healthy target, the circuit breaker, retries,
//!   outlier recording, the pooled connection; `mirror://` targets answer in process.
//! - [`Shadow`]: the real backend, plus a copy of a share of the requests to another one whose
//!   answers are only measured.
//! - [`Split`]: a weighted split (canary, blue/green, A/B): one backend per arm, the arm chosen
//!   per request, a failing canary rolled back.
//! - [`Compose`]: several backends per request, their answers shaped and merged into one
//!   (KrakenD's composition); it needs the route's path parameters ([`Call::params`]).
//! - [`ByService`]: the service named by the path's first segment (`service_from_path`), each
//!   service an upstream made on first use from a discovery template.
//! - [`Service`]: anything else that answers a request in process (the engine's tests). A new kind of backend is a new implementation here, never a
//!   special case in the engine.
//!
//! A WebSocket handshake goes through [`Backend::upgrade`] (`upgrade.rs`): the same kinds,
//! each answering an upgrade its own way.
//!
//! Errors are the backend's own small enum ([`BackendError`]); the core turns them into the
//! gateway's JSON answers in one place.

mod by_service;
mod compose;
mod decompress;
mod shadow;
mod split;
mod upgrade;
mod upstream;

pub use by_service::ByService;
pub use compose::{COMPLETED, CallModifier, Compose, ComposeBackend, ErrorPolicy, MAX_ANSWER_BYTES, ProxyLimit};
pub use shadow::{Shadow, ShadowStats};
pub use split::Split;
pub use upgrade::SocketGuard;
pub use upstream::{Upstream, UpstreamCall};

use crate::body::{BackendBody, BodyFault, BodyStats, RequestBody};
use crate::forwarded::Forwarded;
use http::{HeaderValue, Request, Response};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A boxed future of a backend's answer, for [`Service`]s.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Response<BackendBody>, BackendError>> + Send + 'a>>;

/// Why a backend gave no answer. The core maps each to a status and the gateway's JSON error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("no healthy target in upstream `{0}`")]
    NoHealthyTarget(Arc<str>),
    #[error("the upstream could not be reached")]
    Unreachable,
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream failed to answer")]
    Failed,
    #[error("the TLS handshake with the upstream failed")]
    Tls,
    #[error("too many requests in flight to this upstream")]
    Overloaded,
    /// The call failed by the client's doing: its body grew too large, broke or stalled.
    #[error("the client broke its request body")]
    Client(BodyFault),
}

/// What a backend may read of a request besides the request itself, and what it reports back
/// for the traffic log, the metrics and the spans.
#[derive(Debug)]
pub struct Call {
    pub client: IpAddr,
    pub peer: SocketAddr,
    /// The client's `Host`, for upstreams that preserve it (and `X-Forwarded-Host`).
    pub client_host: Option<HeaderValue>,
    /// The headers the gateway adds, for the backend to add: see [`crate::forwarded`]. Every
    /// kind but an upstream's puts them in the request's map at once ([`Call::apply_forwarded`]);
    /// an upstream's HTTP/1.1 client writes them into the head it sends.
    pub forwarded: Option<Forwarded>,
    /// The consumer the request was authenticated as, for stickiness by consumer.
    pub consumer: Option<Arc<str>>,
    /// The client's body as it streams: its bytes and faults.
    pub body: Option<Arc<BodyStats>>,
    /// The route's body limit, for reading a body whole (retries, shadow copies).
    pub body_limit: Option<u64>,
    /// The request is gRPC (read once by the engine from its `content-type`).
    pub grpc: bool,
    /// A gRPC caller's deadline (`grpc-timeout`): no attempt waits longer than what is left
    /// of it, whatever the route's timeout.
    pub deadline: Option<Instant>,
    /// The route's path parameters, filled only for a backend that asks for them
    /// ([`Backend::wants_params`]), so that other routes pay nothing for them.
    pub params: Vec<(Arc<str>, String)>,
    /// Reported: fields for the traffic-log line (a composition's failed backends), written
    /// after the fixed fields.
    pub log_fields: Vec<(&'static str, Arc<str>)>,
    /// Reported: the label of the target that answered (or was tried last).
    pub target: Option<Arc<str>>,
    /// Reported: the name of the upstream that answered.
    pub upstream: Option<Arc<str>>,
    /// Reported: when the first attempt began, and how long the call took to its answer's head.
    pub started: Option<Instant>,
    pub elapsed: Option<Duration>,
    /// Reported: the call failed by the client's fault; its time measures nothing of the target.
    pub client_fault: bool,
    /// Reported: the answer was made whole in process (the mirror), so the call ended with its head.
    pub whole: bool,
}

impl Call {
    pub fn new(client: IpAddr, peer: SocketAddr) -> Call {
        Call {
            client,
            peer,
            client_host: None,
            forwarded: None,
            consumer: None,
            body: None,
            body_limit: None,
            grpc: false,
            deadline: None,
            params: Vec::new(),
            log_fields: Vec::new(),
            target: None,
            upstream: None,
            started: None,
            elapsed: None,
            client_fault: false,
            whole: false,
        }
    }

    /// Puts the gateway's headers ([`Call::forwarded`]) into `headers`, for a backend that
    /// passes them on as a map. They are taken: whatever this backend calls in turn gets them
    /// in the map, as the request is.
    pub fn apply_forwarded(&mut self, headers: &mut http::HeaderMap) {
        self.forwarded_into(headers);
        self.forwarded = None;
    }

    /// Puts the gateway's headers into `headers` and keeps them, for one attempt of several
    /// (another may go to a target whose client writes them itself).
    pub fn forwarded_into(&self, headers: &mut http::HeaderMap) {
        if let Some(f) = &self.forwarded {
            f.apply(headers, self.client_host.as_ref());
        }
    }

    /// The call begins now (a retry keeps the first attempt's start).
    pub fn begin(&mut self) -> Instant {
        *self.started.get_or_insert_with(Instant::now)
    }

    /// The call failed before it timed itself: it ends now.
    pub fn end_if_unset(&mut self) {
        if self.elapsed.is_none() {
            self.end();
        }
    }

    /// The answer's head arrived (or the call failed) now.
    pub fn end(&mut self) {
        if let Some(s) = self.started {
            self.elapsed = Some(s.elapsed());
        }
    }
}

/// Anything else that answers requests in process.
pub trait Service: Send + Sync + 'static {
    /// A name for logs, metrics and `cratopus routes`.
    fn name(&self) -> &str;
    fn call<'a>(&'a self, call: &'a mut Call, req: Request<RequestBody>) -> Answer<'a>;
}

/// What answers a route's requests.
#[derive(Clone)]
pub enum Backend {
    Upstream(Arc<UpstreamCall>),
    Shadow(Arc<Shadow>),
    Split(Arc<Split>),
    Service(Arc<dyn Service>),
    Compose(Arc<Compose>),
    ByService(Arc<ByService>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.name())
    }
}

impl Backend {
    /// Calls the backend. Each kind's call is boxed, the common upstream's too, and the box is
    /// what the engine awaits: a future held in place is copied whole at every level that
    /// awaits it (an `async fn` here added one more level, a 400-byte future between the
    /// engine and the upstream's call), and an upstream's call (~4 KB) inline once made the
    /// request's future ~10 KB, copied level by level (perf: 8% of a proxied request's CPU in
    /// `memmove`); one allocation is cheaper.
    pub fn call<'a>(&'a self, call: &'a mut Call, mut req: Request<RequestBody>) -> Answer<'a> {
        // An upstream adds the gateway's headers itself (its HTTP/1.1 client writes them).
        if !matches!(self, Backend::Upstream(_)) {
            call.apply_forwarded(req.headers_mut());
        }
        match self {
            Backend::Upstream(u) => u.call(call, req), // boxed by `call`
            Backend::Shadow(s) => s.call(call, req),   // likewise
            Backend::Split(s) => Box::pin(s.call(call, req)),
            Backend::Service(s) => s.call(call, req),
            Backend::Compose(c) => Box::pin(c.call(call, req)),
            Backend::ByService(b) => Box::pin(b.call(call, req)),
        }
    }

    /// The upstream (or service) name that answers, for `cratopus routes`, the admin API and spans.
    pub fn name(&self) -> &str {
        match self {
            Backend::Upstream(u) => &u.upstream.name,
            Backend::Shadow(s) => s.primary.name(),
            Backend::Split(_) => "split",
            Backend::Service(s) => s.name(),
            Backend::Compose(c) => &c.name,
            Backend::ByService(b) => &b.name,
        }
    }

    /// Whether the engine must fill [`Call::params`] with the route's path parameters.
    pub fn wants_params(&self) -> bool {
        match self {
            Backend::Compose(_) => true,
            Backend::Shadow(s) => s.primary.wants_params(),
            _ => false,
        }
    }

    /// The split behind this backend, if it is one (the admin API, metrics, carrying its state
    /// over a reload).
    pub fn split(&self) -> Option<&Arc<Split>> {
        match self {
            Backend::Split(s) => Some(s),
            Backend::Shadow(s) => s.primary.split(),
            _ => None,
        }
    }

    /// The plain upstream behind this backend, if it is one (the admin API's target lists).
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        match self {
            Backend::Upstream(u) => Some(&u.upstream),
            Backend::Shadow(s) => s.primary.upstream(),
            _ => None,
        }
    }
}
