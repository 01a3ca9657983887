//! Retries and bulkheads as a route runs them: compiled from the config once per snapshot (or
//! once per upstream, carried over reloads with it), and the per-attempt bookkeeping of the
//! circuit breaker and outlier detection.

use cratopus_config::{BulkheadConfig, RetryConfig};
use cratopus_upstream::breaker::{Permit, Transition};
use cratopus_upstream::bulkhead::QueueSettings;
use cratopus_upstream::outlier::Outcome;
use cratopus_upstream::retry::Failure;
use cratopus_upstream::{Bulkhead, BulkheadPermit, RetryBudget, RetryPolicy, Target, UpstreamPool};
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

/// The bulkhead places a request holds until its response ends.
#[derive(Debug, Default)]
pub struct Permits {
    pub route: Option<BulkheadPermit>,
    pub upstream: Option<BulkheadPermit>,
}

/// How one attempt ended, for the breaker, outlier detection and the retry decision.
#[derive(Debug, Clone, Copy)]
pub enum AttemptEnd {
    Status(u16),
    Connect,
    Timeout,
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
    if let Some(p) = permit {
        let success = matches!(end.outcome(), Outcome::Success);
        match p.record(success, now) {
            Some(Transition::Opened) => {
                target.set_breaker_open(true);
                let open_for = target.breaker.as_ref().map(|b| b.settings().open_for);
                tracing::warn!(upstream = %pool.name, target = %target.label, ?open_for, "circuit opened");
            }
            Some(Transition::Closed) => {
                tracing::info!(upstream = %pool.name, target = %target.label, "circuit closed");
            }
            _ => {}
        }
    }
    pool.record_outcome(target, end.outcome(), now);
}
