//! Retries and bulkheads as a route runs them: compiled from the config once per snapshot (or
//! once per upstream, carried over reloads with it), and the per-attempt bookkeeping of the
//! circuit breaker and outlier detection.

use crate::breaker::{Permit, Ticket, Transition};
use crate::bulkhead::QueueSettings;
use crate::outlier::Outcome;
use crate::retry::Failure;
use crate::{Bulkhead, RetryBudget, RetryPolicy, Target, UpstreamPool};
use cratopus_config::{BulkheadConfig, RetryConfig};
use std::sync::Arc;
use std::time::Instant;

/// A retry policy with its budget; the routes or the upstream it is written on share the budget.
#[derive(Debug)]
pub struct Retry {
    pub policy: RetryPolicy,
    pub budget: RetryBudget,
}

impl Retry {
    pub fn compile(c: &RetryConfig) -> Arc<Retry> {
        Arc::new(Retry {
            policy: RetryPolicy {
                attempts: c.attempts,
                on_status: c.on_status.clone(),
                on_connect_error: c.on_connect_error,
                backoff_base: c.backoff_base.0,
                backoff_max: c.backoff_max.0,
                allow_non_idempotent: c.allow_non_idempotent,
                buffer_body: c.buffer_body.0,
                on_grpc: c.on_grpc.iter().fold(0, |m, c| m | 1 << c.number()),
            },
            budget: RetryBudget::new(c.budget_ratio, c.min_retries_per_sec, c.budget_window.0, Instant::now()),
        })
    }
}

pub fn bulkhead(c: &BulkheadConfig) -> Arc<Bulkhead> {
    Arc::new(Bulkhead::new(
        c.max_inflight as usize,
        c.queue.as_ref().map(|q| QueueSettings {
            max_waiting: q.max_waiting as usize,
            max_wait: q.max_wait.0,
        }),
    ))
}

/// How one attempt ended, for the breaker, outlier detection and the retry decision.
#[derive(Debug, Clone, Copy)]
pub enum AttemptEnd {
    Status(u16),
    Connect,
    Timeout,
    /// The connection failed after the request was sent, or the answer made no sense (an
    /// unsolicited `101`).
    Reset,
}

impl AttemptEnd {
    /// What a retry policy sees; `None` for a response it would never retry (below 500).
    pub fn failure(self) -> Option<Failure> {
        match self {
            AttemptEnd::Status(s) if s >= 500 => Some(Failure::Status(s)),
            AttemptEnd::Status(_) => None,
            AttemptEnd::Connect => Some(Failure::Connect),
            AttemptEnd::Timeout => Some(Failure::Timeout),
            AttemptEnd::Reset => Some(Failure::Reset),
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            AttemptEnd::Status(s) => Outcome::from_status(s),
            AttemptEnd::Connect => Outcome::ConnectError,
            AttemptEnd::Timeout | AttemptEnd::Reset => Outcome::ServerError,
        }
    }
}

/// Records an attempt's end in the target's breaker (logging its state changes and taking the
/// target out of rotation when it opens) and in the pool's outlier detection.
pub fn record_attempt(pool: &UpstreamPool, target: &Arc<Target>, permit: Option<Permit<'_>>, end: AttemptEnd) {
    let now = Instant::now();
    let outcome = end.outcome();
    if let Some(p) = permit {
        breaker_moved(pool, target, p.record(outcome == Outcome::Success, now));
    }
    pool.record_outcome(target, outcome, now);
}

/// Logs a breaker's state change, and takes the target out of rotation when it opened.
fn breaker_moved(pool: &UpstreamPool, target: &Target, t: Option<Transition>) {
    match t {
        Some(Transition::Opened) => {
            target.set_breaker_open(true);
            let open_for = target.breaker.as_ref().map(|b| b.settings().open_for);
            if let Some(d) = open_for {
                pool.announce(target, true, crate::shared_state::Cause::Breaker, d);
            }
            tracing::warn!(upstream = %pool.name, target = %target.label, ?open_for, "circuit opened");
        }
        Some(Transition::Closed) => {
            tracing::info!(upstream = %pool.name, target = %target.label, "circuit closed");
        }
        _ => {}
    }
}

/// An attempt whose response head was good and whose body is still to come. A target can send
/// `200` and then cut the body short; judged at the head, that would count as a success. So
/// such an attempt is recorded once, when the body ends ([`PendingAttempt::finish`]): a success
/// if the body arrived whole, a failure if the target cut it. One result per request, so
/// nothing is counted twice. Dropped unfinished (the client went away, or broke its own
/// request), it counts as nothing and gives a half-open probe's place back.
pub struct PendingAttempt {
    pool: Arc<UpstreamPool>,
    target: Arc<Target>,
    ticket: Option<Ticket>,
}

impl PendingAttempt {
    /// `None` when nothing would be recorded: no breaker on the target and no outlier
    /// detection on the pool (then the response costs nothing extra).
    pub fn new(pool: &Arc<UpstreamPool>, target: &Arc<Target>, permit: Option<Permit<'_>>) -> Option<Self> {
        if permit.is_none() && !pool.detects_outliers() {
            return None;
        }
        Some(PendingAttempt {
            pool: pool.clone(),
            target: target.clone(),
            ticket: permit.map(Permit::detach),
        })
    }

    /// The body ended: whole (`true`) or cut short by the target.
    pub fn finish(mut self, whole: bool) {
        let now = Instant::now();
        if let (Some(t), Some(b)) = (self.ticket.take(), &self.target.breaker) {
            breaker_moved(&self.pool, &self.target, b.redeem(t, whole, now));
        }
        let outcome = if whole { Outcome::Success } else { Outcome::ServerError };
        self.pool.record_outcome(&self.target, outcome, now);
    }
}

impl Drop for PendingAttempt {
    fn drop(&mut self) {
        if let (Some(t), Some(b)) = (self.ticket.take(), &self.target.breaker) {
            b.release(t);
        }
    }
}
