//! The timers hyper keeps for HTTP/1 but not for HTTP/2.
//!
//! hyper's HTTP/1 server times the request head itself (`header_read_timeout`, which also runs
//! while a keep-alive connection waits for its next request). Its HTTP/2 server has no such
//! timer: a client that sends the preface and SETTINGS and then nothing, or a HEADERS frame whose
//! header block never ends, holds the connection (and a file descriptor) for good. Each
//! connection therefore has a watchdog, reading what the IO noted in [`ConnState`]:
//! - a header block (or the HTTP/2 preface itself) not complete within `header_read_timeout`
//!   ends the connection;
//! - an HTTP/2 connection with no stream open and nothing received for `idle_timeout` is closed
//!   with GOAWAY, as nginx's and Envoy's idle timeouts do.
//!
//! (A peer that stops answering altogether while a stream is open is found by hyper's HTTP/2
//! keep-alive pings; see `listener::serve`.)
//!
//! The watchdog wakes at the earliest moment a limit can be reached, and at least once per the
//! shorter timeout, so it sees a header block that began while it slept in time. On an HTTP/1
//! connection it does nothing.

use crate::conn_io::{ConnState, Proto};
use std::time::{Duration, Instant};

/// Which limit a connection reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A header block did not complete in time.
    Head,
    /// No stream open and nothing received for the idle time.
    Idle,
}

/// Resolves when the connection reaches one of its limits; never on HTTP/1.
pub async fn watch(state: &ConnState, header_timeout: Duration, idle_timeout: Duration) -> Expired {
    // The connection is polled first, so the protocol is usually known by now (its first bytes
    // were waiting): an HTTP/1 connection then never arms a timer here.
    if state.proto() == Proto::Http1 {
        return std::future::pending().await;
    }
    let tick = header_timeout.min(idle_timeout);
    let mut wake = Instant::now() + tick;
    loop {
        tokio::time::sleep_until(wake.into()).await;
        let proto = state.proto();
        if proto == Proto::Http1 {
            return std::future::pending().await;
        }
        let now = Instant::now();
        let mut next = now + tick;
        if let Some(since) = state.head_since() {
            let deadline = since + header_timeout;
            if deadline <= now {
                return Expired::Head;
            }
            next = next.min(deadline);
        }
        if state.streams() == 0 {
            let deadline = state.last_active() + idle_timeout;
            if deadline <= now {
                return Expired::Idle;
            }
            next = next.min(deadline);
        }
        wake = next;
    }
}
