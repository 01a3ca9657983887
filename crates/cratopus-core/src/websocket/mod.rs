//! WebSocket through the gateway: an HTTP/1.1 `Upgrade: websocket` or an HTTP/2 extended
//! CONNECT (RFC 8441) runs the phases like any request — routing, the route's policies
//! (authentication, IP rules, CORS, rate limits), the backend — and when the backend answers
//! `101` the sockets of both sides are handed to a relay task.
//!
//! - routing: [`intent`] notes the ask before the hop-by-hop headers go (an HTTP/2 CONNECT is
//!   routed as the `GET` it stands for); a route with WebSocket off refuses it (403);
//! - backend: [`prepare`] completes the handshake request (an HTTP/2 client sends no
//!   `Sec-WebSocket-Key`), `Backend::upgrade` sends it on a fresh HTTP/1.1 connection, and
//!   [`Upgrade::accept`] turns the backend's `101` into the client's answer (`101` on
//!   HTTP/1.1, `200` on HTTP/2);
//! - log: [`Upgrade::hand_over`] spawns the relay ([`relay`]), which writes the request's one
//!   traffic-log line when the socket closes.
//!
//! Every open socket is known to the engine's [`Sockets`]: the metrics, and shutdown (after the
//! drain deadline the relays close their sockets with 1001).

mod registry;
mod relay;

pub use registry::Sockets;

use crate::body::PendingLog;
use cratopus_config::websocket::WebSocketConfig;
use cratopus_upstream::{BackendBody, backend::SocketGuard};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
static SEC_WEBSOCKET_EXTENSIONS: HeaderName = HeaderName::from_static("sec-websocket-extensions");

/// A route's WebSocket settings, compiled at load.
#[derive(Debug, Clone)]
pub struct WsRoute {
    /// Upgrades are relayed (the default); off, they are refused with 403.
    pub enabled: bool,
    /// Set when the gateway reads frames (a limit is configured); `None`: bytes are copied.
    pub limits: Option<Arc<Limits>>,
}

impl Default for WsRoute {
    fn default() -> Self {
        WsRoute {
            enabled: true,
            limits: None,
        }
    }
}

/// The limits of one socket, for the frame-reading relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub idle: Option<Duration>,
    /// Largest message from the client.
    pub max_message: Option<usize>,
    /// Messages per second from the client, and the burst.
    pub rate: Option<(f64, f64)>,
}

impl WsRoute {
    pub fn compile(c: Option<&WebSocketConfig>) -> WsRoute {
        let Some(c) = c else { return WsRoute::default() };
        let limits = c.reads_frames().then(|| {
            Arc::new(Limits {
                idle: c.idle_timeout.map(|d| d.0),
                max_message: c.max_message_size.and_then(|m| usize::try_from(m.0).ok()),
                rate: c.message_rate.as_ref().map(|r| {
                    let per_second = f64::from(r.per_second.max(1));
                    (per_second, r.burst.map_or(per_second, |b| f64::from(b.max(1))))
                }),
            })
        });
        WsRoute {
            enabled: c.enabled,
            limits,
        }
    }
}

/// How the client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// `GET` with `Connection: Upgrade` and `Upgrade: websocket`; answered `101`.
    Http1,
    /// HTTP/2 `CONNECT` with `:protocol websocket` (RFC 8441); answered `200`.
    Http2,
}

/// Whether `req` asks for a WebSocket. Two cheap tests (an `Upgrade` header, the CONNECT
/// method) before anything is read, so plain requests pay one branch each.
pub fn intent(req: &http::request::Parts) -> Option<Intent> {
    if req.method == Method::CONNECT {
        let protocol = req.extensions.get::<hyper::ext::Protocol>()?;
        return protocol
            .as_str()
            .eq_ignore_ascii_case("websocket")
            .then_some(Intent::Http2);
    }
    let upgrade = req.headers.get(header::UPGRADE)?;
    let websocket = upgrade
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket")));
    let connection_upgrade = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    (websocket && connection_upgrade && req.method == Method::GET).then_some(Intent::Http1)
}

/// Keeps something of the client's connection alive for as long as its socket is open; the
/// server puts it in an HTTP/2 CONNECT's extensions (the stream's place in the connection's
/// count of open streams, so that an idle timer does not close a connection with a socket).
#[derive(Clone)]
pub struct ConnHold(pub Arc<dyn std::any::Any + Send + Sync>);

/// The client's connection once its `101` is written, whichever server wrote it.
pub trait UpgradedIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> UpgradedIo for T {}

/// The gateway's own HTTP/1 server puts this in a request that asks to upgrade (hyper's
/// server puts its `OnUpgrade` instead): the connection arrives on it after the `101` has been
/// written, with any bytes the client sent early in front of it.
/// (Extensions must be `Clone`: a clone shares the one receiver, which the first taker gets.)
#[derive(Clone)]
pub struct ClientUpgrade(Arc<std::sync::Mutex<Option<UpgradeReceiver>>>);

type UpgradeReceiver = tokio::sync::oneshot::Receiver<Box<dyn UpgradedIo>>;

impl ClientUpgrade {
    pub fn new(rx: UpgradeReceiver) -> ClientUpgrade {
        ClientUpgrade(Arc::new(std::sync::Mutex::new(Some(rx))))
    }

    fn take(&self) -> Option<UpgradeReceiver> {
        self.0.lock().ok()?.take()
    }
}

/// Where the client's side of an upgrade comes from.
pub(crate) enum ClientSide {
    Hyper(OnUpgrade),
    Own(UpgradeReceiver),
}

impl ClientSide {
    fn take(ext: &mut http::Extensions) -> Option<ClientSide> {
        match ext.remove::<ClientUpgrade>().and_then(|u| u.take()) {
            Some(rx) => Some(ClientSide::Own(rx)),
            None => ext.remove::<OnUpgrade>().map(ClientSide::Hyper),
        }
    }

    /// The connection, once the server hands it over.
    pub(crate) async fn into_io(self) -> Result<Box<dyn UpgradedIo>, String> {
        match self {
            ClientSide::Hyper(on) => on
                .await
                .map(|u| Box::new(hyper_util::rt::TokioIo::new(u)) as Box<dyn UpgradedIo>)
                .map_err(|e| e.to_string()),
            ClientSide::Own(rx) => rx
                .await
                .map_err(|_| "the connection closed before the upgrade".to_string()),
        }
    }
}

/// A WebSocket being set up, from the routing phase to the log phase.
pub struct Upgrade {
    pub intent: Intent,
    client: Option<ClientSide>,
    hold: Option<ConnHold>,
    /// The backend's side, once it answered `101`.
    upstream: Option<(OnUpgrade, Option<SocketGuard>)>,
    /// The route's limits, once the route is known.
    limits: Option<Arc<Limits>>,
}

impl Upgrade {
    /// Takes the client's side out of the request's extensions (the server's
    /// [`ClientUpgrade`] or hyper's `OnUpgrade`, the connection hold).
    pub fn new(intent: Intent, ext: &mut http::Extensions) -> Upgrade {
        Upgrade {
            intent,
            client: ClientSide::take(ext),
            hold: ext.remove::<ConnHold>(),
            upstream: None,
            limits: None,
        }
    }

    /// The backend's answer to the handshake, made the client's: a `101` with its `OnUpgrade`
    /// becomes the client's `101` (HTTP/1.1) or `200` (HTTP/2); any other answer goes as it is,
    /// except a 2xx to an HTTP/2 CONNECT, which the client would take for an open socket
    /// (`false`: the caller answers 502).
    pub fn accept(&mut self, res: &mut Response<BackendBody>) -> bool {
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            return !(self.intent == Intent::Http2 && res.status().is_success());
        }
        let (Some(on), Some(_)) = (res.extensions_mut().remove::<OnUpgrade>(), &self.client) else {
            return false;
        };
        let guard = res.extensions_mut().remove::<SocketGuard>();
        self.upstream = Some((on, guard));
        let headers = res.headers_mut();
        match self.intent {
            Intent::Http1 => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            Intent::Http2 => {
                *res.status_mut() = StatusCode::OK;
                res.headers_mut().remove(&SEC_WEBSOCKET_ACCEPT);
            }
        }
        true
    }

    /// Whether the backend switched protocols and the sockets can be relayed.
    pub fn upgraded(&self) -> bool {
        self.upstream.is_some() && self.client.is_some()
    }

    /// Spawns the relay, which writes `log` when the socket closes.
    pub fn hand_over(self, sockets: &Sockets, org: &str, route: &str, log: Option<Box<PendingLog>>) {
        let (Some(client), Some((upstream, guard))) = (self.client, self.upstream) else {
            return;
        };
        let metrics = sockets.metrics_for(org, route);
        relay::spawn(relay::Sides {
            client,
            upstream,
            limits: self.limits,
            sockets: sockets.clone(),
            metrics,
            log,
            held: (self.hold, guard),
        });
    }
}

/// Completes the handshake request for the route: an HTTP/2 client's ask gets the HTTP/1.1
/// handshake's key and version; when the gateway reads frames, no extension is offered
/// (its frame reader speaks none, permessage-deflate included).
pub fn prepare(up: &mut Upgrade, route: &WsRoute, headers: &mut HeaderMap) {
    up.limits = route.limits.clone();
    if up.intent == Intent::Http2 {
        let key: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        if let Ok(v) = HeaderValue::from_str(&key) {
            headers.insert(SEC_WEBSOCKET_KEY.clone(), v);
        }
        headers.insert(SEC_WEBSOCKET_VERSION.clone(), HeaderValue::from_static("13"));
    }
    if route.limits.is_some() {
        headers.remove(&SEC_WEBSOCKET_EXTENSIONS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn req(method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut r = Request::builder().method(method).uri("/ws");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_a_websocket_upgrade_is_an_intent() {
        let ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")];
        assert_eq!(intent(&req(Method::GET, &ws)), Some(Intent::Http1));
        assert_eq!(intent(&req(Method::POST, &ws)), None);
        assert_eq!(intent(&req(Method::GET, &[("upgrade", "websocket")])), None);
        assert_eq!(
            intent(&req(Method::GET, &[("connection", "upgrade"), ("upgrade", "h2c")])),
            None
        );
        assert_eq!(intent(&req(Method::GET, &[])), None);
        let mut connect = req(Method::CONNECT, &[]);
        assert_eq!(intent(&connect), None);
        connect
            .extensions
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert_eq!(intent(&connect), Some(Intent::Http2));
    }
}
