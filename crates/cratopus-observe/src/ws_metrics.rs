//! The metrics of WebSockets, per route, written after the route families by
//! [`render_websockets`] once a route has upgraded a socket. The counters live in
//! [`WsMetrics`], one per (organization, route), kept by the engine across reloads.
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `cratopus_websocket_open` | gauge | org, route |
//! | `cratopus_websocket_opened_total` | counter | org, route |
//! | `cratopus_websocket_received_bytes_total` | counter | org, route (from the client) |
//! | `cratopus_websocket_sent_bytes_total` | counter | org, route (to the client) |

use crate::metrics::{header, label_list, sample};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// The counters of one route's WebSockets. The relay adds bytes as they pass.
#[derive(Debug, Default)]
pub struct WsMetrics {
    open: AtomicU64,
    opened: AtomicU64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

impl WsMetrics {
    pub fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
        self.opened.fetch_add(1, Relaxed);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }
}

/// One route's sockets at the time of the scrape.
#[derive(Debug, Clone, Copy)]
pub struct WsSample<'a> {
    pub org: &'a str,
    pub route: &'a str,
    pub metrics: &'a WsMetrics,
}

/// A family: its name, type, help and value.
type Family = (&'static str, &'static str, &'static str, fn(&WsMetrics) -> u64);

/// Appends the WebSocket families; nothing when no route has upgraded a socket.
pub fn render_websockets(out: &mut String, routes: &[WsSample<'_>]) {
    if routes.is_empty() {
        return;
    }
    let labels: Vec<String> = routes
        .iter()
        .map(|s| label_list(&[("org", s.org), ("route", s.route)]))
        .collect();
    let families: [Family; 4] = [
        ("cratopus_websocket_open", "gauge", "WebSockets open now.", |m| m.open()),
        (
            "cratopus_websocket_opened_total",
            "counter",
            "WebSockets upgraded.",
            |m| m.opened.load(Relaxed),
        ),
        (
            "cratopus_websocket_received_bytes_total",
            "counter",
            "Bytes received from WebSocket clients (frames as on the wire).",
            |m| m.received.load(Relaxed),
        ),
        (
            "cratopus_websocket_sent_bytes_total",
            "counter",
            "Bytes sent to WebSocket clients (frames as on the wire).",
            |m| m.sent.load(Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help);
        for (s, l) in routes.iter().zip(&labels) {
            sample(out, name, l, "", value(s.metrics));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_gets_its_series() {
        let mut out = String::new();
        render_websockets(&mut out, &[]);
        assert!(out.is_empty());
        let m = WsMetrics::default();
        m.opened();
        m.opened();
        m.closed();
        m.received.fetch_add(10, Relaxed);
        render_websockets(
            &mut out,
            &[WsSample {
                org: "acme",
                route: "chat",
                metrics: &m,
            }],
        );
        for line in [
            "cratopus_websocket_open{org=\"acme\",route=\"chat\"} 1",
            "cratopus_websocket_opened_total{org=\"acme\",route=\"chat\"} 2",
            "cratopus_websocket_received_bytes_total{org=\"acme\",route=\"chat\"} 10",
            "cratopus_websocket_sent_bytes_total{org=\"acme\",route=\"chat\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
