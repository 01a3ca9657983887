//! One target: an address requests can go to, with its health and load.

use crate::breaker::Breaker;
use http::HeaderValue;
use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// An HTTP server. `authority` is the configured `host:port`, sent as Host unless the
    /// upstream preserves the client's.
    Http { addr: SocketAddr, authority: Authority },
    /// The built-in echo service, answered in process.
    Mirror,
}

#[derive(Debug)]
pub struct Target {
    pub kind: TargetKind,
    /// `10.0.0.1:8080` or `mirror`: the name in logs and metrics.
    pub label: Arc<str>,
    /// The host of an HTTP target's URL without IPv6 brackets (the TLS server name), found
    /// once here: `Authority::host` scans the authority again on every call.
    host: Box<str>,
    /// An HTTP target's `host:port` as a `Host` value, made once here rather than per request.
    authority_value: Option<HeaderValue>,
    pub weight: u32,
    healthy: AtomicBool,
    /// Taken out by an operator (admin API): no new requests, in-flight ones finish.
    drained: AtomicBool,
    inflight: AtomicUsize,
    successes: AtomicU32,
    failures: AtomicU32,
    /// The circuit breaker of this target, when its upstream has one.
    pub breaker: Option<Breaker>,
    /// Out of rotation while its breaker is open: set when it opens, cleared by the pool's
    /// ticker once the breaker would admit a probe. A flag rather than a clock read, so that a
    /// pick stays a few relaxed loads.
    breaker_open: AtomicBool,
    /// Ejected by outlier detection (passive health); cleared by the pool's ticker.
    ejected: AtomicBool,
    /// Another node of the cluster found this target down (`shared_state`): out of rotation
    /// until `remote_until_ms` (ms since the pool's epoch), when the pool's ticker clears it,
    /// or until that node announces it up, or this node's own health check passes.
    remote_down: AtomicBool,
    remote_until_ms: AtomicU64,
    /// In-flight requests of the other nodes of the cluster to this target, as last exchanged
    /// (`shared_state.inflight`); least-connections adds it to this node's own.
    remote_inflight: AtomicUsize,
}

impl Target {
    pub fn new(kind: TargetKind, weight: u32) -> Target {
        Target::with_breaker(kind, weight, None)
    }

    /// A target with a circuit breaker.
    pub fn with_breaker(kind: TargetKind, weight: u32, breaker: Option<Breaker>) -> Target {
        let label: Arc<str> = match &kind {
            TargetKind::Http { addr, .. } => addr.to_string().into(),
            TargetKind::Mirror => "mirror".into(),
        };
        let (host, authority_value) = match &kind {
            TargetKind::Http { authority, .. } => (
                crate::tls::host_of(authority).into(),
                HeaderValue::from_str(authority.as_str()).ok(),
            ),
            TargetKind::Mirror => ("".into(), None),
        };
        Target {
            kind,
            host,
            authority_value,
            label,
            weight: weight.max(1),
            healthy: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            breaker,
            breaker_open: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            remote_down: AtomicBool::new(false),
            remote_until_ms: AtomicU64::new(0),
            remote_inflight: AtomicUsize::new(0),
        }
    }

    /// The host named by an HTTP target's URL (the TLS server name), without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// An HTTP target's configured `host:port`, as the `Host` it is sent.
    pub fn authority_value(&self) -> Option<&HeaderValue> {
        self.authority_value.as_ref()
    }

    /// The socket address of an HTTP target.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        match &self.kind {
            TargetKind::Http { addr, .. } => Some(*addr),
            TargetKind::Mirror => None,
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Healthy, not drained, not ejected and its breaker not open: new requests may go here.
    pub fn is_available(&self) -> bool {
        self.is_healthy()
            && !self.is_drained()
            && !self.is_ejected()
            && !self.breaker_open.load(Ordering::Relaxed)
            && !self.remote_down.load(Ordering::Relaxed)
    }

    /// Whether another node's announcement keeps this target out.
    pub fn is_remote_down(&self) -> bool {
        self.remote_down.load(Ordering::Relaxed)
    }

    /// Takes the target out on another node's word until `until_ms` (ms since the pool's
    /// epoch), or puts it back (`None`).
    pub fn set_remote_down(&self, until_ms: Option<u64>) {
        match until_ms {
            Some(t) => {
                self.remote_until_ms.store(t, Ordering::Relaxed);
                self.remote_down.store(true, Ordering::Relaxed);
            }
            None => self.remote_down.store(false, Ordering::Relaxed),
        }
    }

    /// Clears a remote mark whose time is up at `now_ms`; true when it did.
    pub fn expire_remote_down(&self, now_ms: u64) -> bool {
        self.is_remote_down()
            && now_ms >= self.remote_until_ms.load(Ordering::Relaxed)
            && self.remote_down.swap(false, Ordering::Relaxed)
    }

    /// The other nodes' in-flight requests to this target, as last exchanged.
    pub fn remote_inflight(&self) -> usize {
        self.remote_inflight.load(Ordering::Relaxed)
    }

    pub fn set_remote_inflight(&self, n: usize) {
        self.remote_inflight.store(n, Ordering::Relaxed);
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Relaxed);
    }

    /// Whether the target is out of rotation because its breaker is open.
    pub fn breaker_blocks(&self) -> bool {
        self.breaker_open.load(Ordering::Relaxed)
    }

    pub fn set_breaker_open(&self, open: bool) {
        self.breaker_open.store(open, Ordering::Relaxed);
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Drains (`true`) or restores (`false`) the target.
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request against this target until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// Records one health-check result; returns `Some(new_state)` when the state flips.
    pub fn record_check(&self, ok: bool, healthy_after: u32, unhealthy_after: u32) -> Option<bool> {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self.successes.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if !self.is_healthy() && n >= healthy_after {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if self.is_healthy() && n >= unhealthy_after {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

/// Holds one in-flight count on a target.
#[derive(Debug)]
pub struct InflightGuard(Arc<Target>);

impl InflightGuard {
    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_state() {
        let t = Target::new(TargetKind::Mirror, 1);
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(true, 2, 3), None); // resets the failure run
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(false, 2, 3), None);
        assert_eq!(t.record_check(false, 2, 3), Some(false));
        assert!(!t.is_healthy());
        assert_eq!(t.record_check(true, 2, 3), None);
        assert_eq!(t.record_check(true, 2, 3), Some(true));
        assert!(t.is_healthy());
    }
}
