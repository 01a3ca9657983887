//! The open WebSockets, as the server and the metrics see them: how many are open, each
//! route's counters (kept across reloads, like the routes' own), and the signal that closes
//! them all at shutdown.

use cratopus_observe::ws_metrics::WsMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// (organization, route).
type RouteKey = (Arc<str>, Arc<str>);

/// The engine's register of open sockets; cheap to clone.
#[derive(Clone)]
pub struct Sockets(Arc<Inner>);

struct Inner {
    open: AtomicUsize,
    idle: Notify,
    closing: watch::Sender<bool>,
    /// Per (organization, route). Looked up once per upgrade, never per message.
    routes: Mutex<HashMap<RouteKey, Arc<WsMetrics>>>,
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets(Arc::new(Inner {
            open: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: watch::Sender::new(false),
            routes: Mutex::new(HashMap::new()),
        }))
    }
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets").field("open", &self.open()).finish()
    }
}

impl Sockets {
    /// The counters of a route's sockets.
    pub(super) fn metrics_for(&self, org: &str, route: &str) -> Arc<WsMetrics> {
        let Ok(mut map) = self.0.routes.lock() else {
            return Arc::default();
        };
        map.entry((Arc::from(org), Arc::from(route))).or_default().clone()
    }

    /// A socket opened; it counts until the ticket drops.
    pub(super) fn enter(&self, metrics: Arc<WsMetrics>) -> Ticket {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        metrics.opened();
        Ticket {
            sockets: self.clone(),
            metrics,
        }
    }

    /// Resolves (true) when the server closes every socket.
    pub(super) fn closing(&self) -> watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }

    /// Resolves when no socket is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Shutdown: every relay closes its sockets with 1001 (going away) and logs.
    pub fn close_all(&self) {
        self.0.closing.send_replace(true);
    }

    /// Every route that has upgraded a socket, with its counters, for `/metrics`.
    pub fn routes(&self) -> Vec<(Arc<str>, Arc<str>, Arc<WsMetrics>)> {
        let Ok(map) = self.0.routes.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = map
            .iter()
            .map(|((o, r), m)| (o.clone(), r.clone(), m.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

/// An open socket's place in the count.
pub(super) struct Ticket {
    sockets: Sockets,
    pub(super) metrics: Arc<WsMetrics>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.metrics.closed();
        if self.sockets.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.sockets.0.idle.notify_waiters();
        }
    }
}
