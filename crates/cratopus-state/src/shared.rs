//! The limiter the gateway's policies call: Redis when it answers, the local limiter (or a
//! refusal) when it does not.

use crate::StateError;
use crate::gcra::{Rate, Verdict};
use crate::local::LocalLimiter;
use crate::quota::{MemoryQuotas, QuotaPeriod, QuotaState};
use crate::redis::RedisLimiter;

/// What to do with a request while the shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Decide on this node alone, with the local limiter. Each node then enforces the full
    /// limit by itself, so a cluster of N nodes lets through up to N times the limit while
    /// Redis is away: availability over precision, the usual choice for rate limits.
    #[default]
    Open,
    /// Refuse: the call returns [`StateError::Unavailable`] and the gateway answers 503.
    /// For limits that must never be exceeded (paid quotas, abuse protection).
    Closed,
}

/// Which store decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Redis,
    Local,
}

/// Redis with a local fallback, or the local stores alone (one node, no Redis).
///
/// The local limiter is not kept in step with Redis while Redis is up (that would double the
/// work of every request); when a fallback starts, the local state is whatever it was, so
/// each key gets its local burst. That is the price of answering at all.
pub struct SharedLimiter {
    redis: Option<RedisLimiter>,
    local: LocalLimiter,
    quotas: MemoryQuotas,
    fail_mode: FailMode,
}

impl SharedLimiter {
    /// Redis first; on [`StateError::Unavailable`] the local stores (fail open) or an error
    /// (fail closed).
    pub fn new(redis: RedisLimiter, local: LocalLimiter, fail_mode: FailMode) -> SharedLimiter {
        SharedLimiter {
            redis: Some(redis),
            local,
            quotas: MemoryQuotas::new(),
            fail_mode,
        }
    }

    /// No Redis: every answer is local (the gateway's memory state backend).
    pub fn local_only(local: LocalLimiter) -> SharedLimiter {
        SharedLimiter {
            redis: None,
            local,
            quotas: MemoryQuotas::new(),
            fail_mode: FailMode::Open,
        }
    }

    /// Checks one request under `key` against the stack `rates`. Says which store decided;
    /// `Err(StateError::Unavailable)` only in [`FailMode::Closed`] with Redis unreachable.
    pub async fn check(&self, key: &str, rates: &[Rate]) -> Result<(Verdict, Source), StateError> {
        self.check_n(key, rates, 1).await
    }

    /// [`check`](Self::check) for a request costing `cost` cells.
    pub async fn check_n(&self, key: &str, rates: &[Rate], cost: u32) -> Result<(Verdict, Source), StateError> {
        if let Some(redis) = &self.redis {
            match redis.check_n(key, rates, cost).await {
                Ok(v) => return Ok((v, Source::Redis)),
                Err(e) if self.fail_mode == FailMode::Closed => return Err(e),
                Err(_) => {}
            }
        }
        Ok((self.local.check_n(key, rates, cost), Source::Local))
    }

    /// What [`check_n`](Self::check_n) would answer, consuming nothing; the same store and
    /// the same fallback decide.
    pub async fn peek(&self, key: &str, rates: &[Rate], cost: u32) -> Result<(Verdict, Source), StateError> {
        if let Some(redis) = &self.redis {
            match redis.peek(key, rates, cost).await {
                Ok(v) => return Ok((v, Source::Redis)),
                Err(e) if self.fail_mode == FailMode::Closed => return Err(e),
                Err(_) => {}
            }
        }
        Ok((self.local.peek(key, rates, cost), Source::Local))
    }

    /// Counts `cost` requests against `key`'s quota for the current `period` window (see
    /// [`RedisLimiter::quota_add`]), falling back like [`check`](Self::check).
    pub async fn quota_add(
        &self,
        key: &str,
        period: QuotaPeriod,
        limit: u64,
        cost: u64,
    ) -> Result<(QuotaState, Source), StateError> {
        if let Some(redis) = &self.redis {
            match redis.quota_add(key, period, limit, cost).await {
                Ok(q) => return Ok((q, Source::Redis)),
                Err(e) if self.fail_mode == FailMode::Closed => return Err(e),
                Err(_) => {}
            }
        }
        Ok((self.quotas.quota_add(key, period, limit, cost), Source::Local))
    }

    /// Drops local state that no longer matters (replenished limits, ended quota windows).
    /// Call it periodically, e.g. every 10 s from a background task.
    pub fn purge(&self) {
        self.local.retain_recent();
        self.quotas.retain_current();
    }

    pub fn redis(&self) -> Option<&RedisLimiter> {
        self.redis.as_ref()
    }

    pub fn local(&self) -> &LocalLimiter {
        &self.local
    }

    pub fn quotas(&self) -> &MemoryQuotas {
        &self.quotas
    }

    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }
}
