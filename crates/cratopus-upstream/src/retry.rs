//! Retries: which failures may be tried again ([`RetryPolicy`]), how long to wait before the
//! next try ([`backoff`]), and how many retries an upstream may receive at all
//! ([`RetryBudget`]).
//!
//! A retry is only safe when sending the request twice cannot do harm:
//! - a **connect error** (no connection could be made) means the request never left the
//!   gateway, so it may be retried whatever its method;
//! - a **status** listed in `on_status` (502, 503, 504 by default), a **timeout** waiting for
//!   the response head (counted as 504) and a connection **reset** after the request was sent
//!   (counted as 502) mean the target may have acted on the request, so only idempotent methods
//!   (GET, HEAD, OPTIONS, PUT, DELETE, TRACE; RFC 9110 §9.2.2) are retried, unless the route
//!   says its non-idempotent requests are safe to repeat (`allow_non_idempotent`).
//!
//! A request whose body was streamed to the target cannot be sent again: the engine retries
//! only requests without a body or whose body it kept (up to `buffer_body` bytes, read before
//! the first try).
//!
//! Retries also multiply load exactly when an upstream is struggling: with three tries per
//! request an outage triples the traffic that keeps it down. The [`RetryBudget`] (Linkerd's
//! design) caps retries at `budget_ratio` of the original requests over a rolling window plus
//! `min_retries_per_sec`, so that retries fix the odd failure but cannot snowball.

use crate::breaker::{RollingCounts, millis};
use http::Method;
use std::time::{Duration, Instant};

/// The runtime form of a retry config (`RetryConfig` in cratopus-config), without the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included: 1 means no retries.
    pub attempts: u32,
    /// Statuses that are retried (for idempotent requests).
    pub on_status: Vec<u16>,
    /// Whether connect errors are retried (for every method: the request was not sent).
    pub on_connect_error: bool,
    /// The first retry waits up to this long; each further retry up to twice as long.
    pub backoff_base: Duration,
    /// The longest wait before a retry.
    pub backoff_max: Duration,
    /// Also retry POST, PATCH and other non-idempotent requests after a status, timeout or
    /// reset.
    pub allow_non_idempotent: bool,
    /// Request bodies up to this many bytes are kept for a retry; larger ones are not retried.
    pub buffer_body: u64,
    /// gRPC status codes retried from a Trailers-Only answer, one bit per code (bit 14:
    /// UNAVAILABLE); retried whatever the method.
    pub on_grpc: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            on_status: vec![502, 503, 504],
            on_connect_error: true,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            allow_non_idempotent: false,
            buffer_body: 64 * 1024,
            on_grpc: 0,
        }
    }
}

/// How one try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No connection could be made (refused, connect timeout, TLS handshake): the request was
    /// not sent.
    Connect,
    /// The target answered with this status.
    Status(u16),
    /// No response head within the response timeout (treated as a 504).
    Timeout,
    /// The connection broke after the request was (maybe) sent, before a response head
    /// (treated as a 502).
    Reset,
    /// A gRPC call failed with this status before any message (a Trailers-Only answer).
    Grpc(u8),
}

impl RetryPolicy {
    /// Whether a request that failed with `failure` on try number `tries` (1 for the first)
    /// may be tried again, the budget aside: ask [`RetryBudget::try_retry`] only when this says
    /// yes, so that refused retries do not use the budget.
    pub fn should_retry(&self, method: &Method, failure: Failure, tries: u32) -> bool {
        if tries >= self.attempts {
            return false;
        }
        let status = match failure {
            Failure::Connect => return self.on_connect_error,
            Failure::Status(s) => s,
            Failure::Timeout => 504,
            Failure::Reset => 502,
            // The route named the code: a gRPC call is a POST, and naming a code says it is
            // safe to repeat (UNAVAILABLE is, by the gRPC spec, always safe to retry).
            Failure::Grpc(code) => return self.on_grpc & (1 << code.min(31)) != 0,
        };
        self.on_status.contains(&status) && (self.allow_non_idempotent || is_idempotent(method))
    }

    /// Whether a request with this method could be retried at all (after some failure), so
    /// that its body is worth keeping.
    pub fn may_retry(&self, method: &Method) -> bool {
        self.attempts > 1
            && (self.on_connect_error
                || self.on_grpc != 0
                || (!self.on_status.is_empty() && (self.allow_non_idempotent || is_idempotent(method))))
    }

    /// The wait before retry number `retry` (1 for the first retry): see [`backoff`].
    pub fn backoff(&self, retry: u32) -> Duration {
        backoff(retry, self.backoff_base, self.backoff_max)
    }
}

/// Whether sending `method` twice has the effect of sending it once (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The wait before retry number `retry` (1 for the first): exponential backoff with full
/// jitter, a random time between zero and `min(max, base × 2^(retry − 1))`. The randomness
/// spreads the retries of many clients that failed at the same moment, so that they do not
/// all come back at once (AWS Architecture Blog, "Exponential Backoff And Jitter").
pub fn backoff(retry: u32, base: Duration, max: Duration) -> Duration {
    Duration::from_nanos(fastrand::u64(..=backoff_cap(retry, base, max)))
}

/// [`backoff`] with the given random number generator (seed it for a reproducible sequence).
pub fn backoff_with(rng: &mut fastrand::Rng, retry: u32, base: Duration, max: Duration) -> Duration {
    Duration::from_nanos(rng.u64(..=backoff_cap(retry, base, max)))
}

/// The upper bound of [`backoff`], in nanoseconds.
fn backoff_cap(retry: u32, base: Duration, max: Duration) -> u64 {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let doublings = retry.saturating_sub(1).min(63);
    nanos(base).saturating_mul(1 << doublings).min(nanos(max))
}

/// A retry budget shared by the requests of one route (or upstream): retries may be at most
/// `ratio` of the original requests of the last `window`, plus `min_per_sec` retries a second
/// so that a quiet route can still retry.
///
/// Call [`on_request`](Self::on_request) once per original request (not per retry), and
/// [`try_retry`](Self::try_retry) before each retry; a `false` means give up and return the
/// failure. Each call is one compare-exchange on the current bucket (plus, in `try_retry`, a
/// read of ten buckets). The check and the withdrawal are two steps, so callers racing at the
/// edge of the budget can overdraw it by one retry each; that is well within its purpose.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    /// `min_per_sec` over the whole window.
    reserve: f64,
    epoch: Instant,
    /// `a`: original requests, `b`: retries.
    counts: RollingCounts,
}

impl RetryBudget {
    /// A budget of `ratio` (0.2 = one retry per five requests) plus `min_per_sec`, over a
    /// rolling `window`. `epoch` starts its time line: every later `now` must come from the
    /// same clock.
    pub fn new(ratio: f64, min_per_sec: u32, window: Duration, epoch: Instant) -> RetryBudget {
        RetryBudget {
            ratio: if ratio.is_finite() { ratio.max(0.0) } else { 0.0 },
            reserve: f64::from(min_per_sec) * window.as_secs_f64(),
            epoch,
            counts: RollingCounts::new(window),
        }
    }

    /// Counts one original request: it adds `ratio` of a retry to the budget.
    pub fn on_request(&self, now: Instant) {
        self.counts.add(self.ms(now), 1, 0);
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_retry(&self, now: Instant) -> bool {
        let now_ms = self.ms(now);
        if self.remaining_at(now_ms) < 1.0 {
            return false;
        }
        self.counts.add(now_ms, 0, 1);
        true
    }

    /// Retries left in the budget at `now` (for metrics and the admin API).
    pub fn remaining(&self, now: Instant) -> u64 {
        self.remaining_at(self.ms(now)).max(0.0) as u64
    }

    fn remaining_at(&self, now_ms: u64) -> f64 {
        let (requests, retries) = self.counts.sum(now_ms);
        self.ratio * requests as f64 + self.reserve - retries as f64
    }

    fn ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn named_grpc_codes_are_retried_whatever_the_method() {
        let p = RetryPolicy {
            attempts: 3,
            on_status: Vec::new(),
            on_connect_error: false,
            on_grpc: 1 << 14, // UNAVAILABLE
            ..RetryPolicy::default()
        };
        assert!(p.may_retry(&Method::POST));
        assert!(p.should_retry(&Method::POST, Failure::Grpc(14), 1));
        assert!(p.should_retry(&Method::POST, Failure::Grpc(14), 2));
        assert!(!p.should_retry(&Method::POST, Failure::Grpc(14), 3), "attempts spent");
        assert!(!p.should_retry(&Method::POST, Failure::Grpc(8), 1), "not named");
        assert!(!p.should_retry(&Method::POST, Failure::Grpc(200), 1), "no such code");
        assert!(!RetryPolicy::default().should_retry(&Method::POST, Failure::Grpc(14), 1));
    }

    #[test]
    fn a_body_is_worth_keeping_only_when_its_request_may_be_retried() {
        let p = RetryPolicy::default();
        assert!(p.may_retry(&Method::PUT));
        assert!(
            p.may_retry(&Method::POST),
            "connect errors are retried for every method"
        );
        let statuses_only = RetryPolicy {
            on_connect_error: false,
            ..RetryPolicy::default()
        };
        assert!(statuses_only.may_retry(&Method::PUT));
        assert!(!statuses_only.may_retry(&Method::POST));
        let once = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        assert!(!once.may_retry(&Method::GET));
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m), "{m}");
        }
        assert!(!is_idempotent(&Method::from_bytes(b"PURGE").unwrap()));
    }

    #[test]
    fn what_is_retried() {
        let p = RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        };
        let get = Method::GET;
        let post = Method::POST;
        // Connect errors: any method, the request was not sent.
        assert!(p.should_retry(&post, Failure::Connect, 1));
        assert!(p.should_retry(&get, Failure::Connect, 2));
        // Listed statuses, timeouts (504) and resets (502): idempotent methods only.
        assert!(p.should_retry(&get, Failure::Status(503), 1));
        assert!(p.should_retry(&get, Failure::Timeout, 1));
        assert!(p.should_retry(&get, Failure::Reset, 1));
        assert!(!p.should_retry(&post, Failure::Status(503), 1));
        assert!(!p.should_retry(&post, Failure::Timeout, 1));
        assert!(!p.should_retry(&get, Failure::Status(500), 1));
        assert!(!p.should_retry(&get, Failure::Status(404), 1));
        // `attempts` counts the first try.
        assert!(!p.should_retry(&get, Failure::Connect, 3));

        let p = RetryPolicy {
            attempts: 2,
            on_status: vec![500, 503],
            on_connect_error: false,
            allow_non_idempotent: true,
            ..RetryPolicy::default()
        };
        assert!(p.should_retry(&post, Failure::Status(500), 1));
        assert!(!p.should_retry(&post, Failure::Status(500), 2));
        assert!(!p.should_retry(&get, Failure::Connect, 1));
        assert!(!p.should_retry(&get, Failure::Timeout, 1)); // 504 not listed

        let none = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        assert!(!none.should_retry(&get, Failure::Connect, 1));
    }

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter_below() {
        let (base, max) = (ms(25), ms(250));
        assert_eq!(backoff_cap(1, base, max), 25_000_000);
        assert_eq!(backoff_cap(2, base, max), 50_000_000);
        assert_eq!(backoff_cap(4, base, max), 200_000_000);
        assert_eq!(backoff_cap(5, base, max), 250_000_000);
        assert_eq!(backoff_cap(0, base, max), 25_000_000);
        assert_eq!(backoff_cap(u32::MAX, ms(u64::MAX / 2), Duration::MAX), u64::MAX);
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 1..8 {
            let cap = Duration::from_nanos(backoff_cap(retry, base, max));
            let waits: Vec<Duration> = (0..200).map(|_| backoff_with(&mut rng, retry, base, max)).collect();
            assert!(waits.iter().all(|w| *w <= cap), "retry {retry}");
            // Full jitter: the waits spread over the whole range.
            assert!(waits.iter().any(|w| *w < cap / 4) && waits.iter().any(|w| *w > cap * 3 / 4));
        }
        assert!(backoff(3, base, max) <= ms(100));
        assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
        let p = RetryPolicy::default();
        assert!(p.backoff(10) <= p.backoff_max);
    }

    #[test]
    fn budget_allows_a_share_of_requests() {
        let t0 = Instant::now();
        let b = RetryBudget::new(0.2, 0, Duration::from_secs(10), t0);
        assert!(!b.try_retry(t0), "no requests, no reserve: no retries");
        for _ in 0..100 {
            b.on_request(t0);
        }
        assert_eq!(b.remaining(t0), 20);
        assert_eq!((0..30).filter(|_| b.try_retry(t0 + ms(500))).count(), 20);
        assert_eq!(b.remaining(t0 + ms(500)), 0);
        // Requests and retries leave the window together.
        assert_eq!(b.remaining(t0 + ms(20_000)), 0);
        for _ in 0..10 {
            b.on_request(t0 + ms(20_000));
        }
        assert_eq!((0..5).filter(|_| b.try_retry(t0 + ms(20_000))).count(), 2);
    }

    #[test]
    fn budget_reserve_lets_a_quiet_route_retry() {
        let t0 = Instant::now();
        let b = RetryBudget::new(0.2, 10, Duration::from_secs(10), t0);
        // 10 a second over 10 s: 100 retries with no traffic at all, then none.
        assert_eq!((0..150).filter(|_| b.try_retry(t0)).count(), 100);
        for _ in 0..50 {
            b.on_request(t0 + ms(100));
        }
        assert_eq!((0..50).filter(|_| b.try_retry(t0 + ms(100))).count(), 10);
        // Once those retries leave the window, the reserve is back.
        assert_eq!(b.remaining(t0 + ms(10_500)), 100);
        // A nonsensical ratio counts as none rather than as an unlimited budget.
        let b = RetryBudget::new(f64::NAN, 0, Duration::from_secs(10), t0);
        b.on_request(t0);
        assert!(!b.try_retry(t0));
    }
}
