//! Shared state of cratopus nodes: rate-limit counters and quotas, on Redis when several nodes
//! must agree, in memory otherwise.
//!
//! - [`Rate`], [`Verdict`]: a stack of GCRA limits under one key and the answer to a check
//!   (the arithmetic is in one place, the `gcra` module, and the Redis script is a port of it).
//! - [`LocalLimiter`], [`MemoryQuotas`]: one node's state, sharded, synchronous.
//! - [`RedisLimiter`]: the same checks on Redis or Redis Cluster, one round trip each, never
//!   blocking the gateway when Redis is away.
//! - [`SharedLimiter`]: what a policy calls: Redis, falling back to local ([`FailMode`]),
//!   saying which answered ([`Source`]).

mod clock;
mod gcra;
mod local;
mod quota;
mod redis;
mod sharded;
mod shared;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use gcra::{Rate, Verdict};
pub use local::LocalLimiter;
pub use quota::{MemoryQuotas, QuotaPeriod, QuotaState};
pub use redis::{RedisConfig, RedisLimiter, Subscription, quota_key, rate_limit_key};
pub use shared::{FailMode, SharedLimiter, Source};

/// Why a shared-state call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store (Redis) is unreachable, too slow or failing; with [`FailMode::Open`] the
    /// local state answers instead, with [`FailMode::Closed`] the gateway answers 503.
    #[error("shared state store unavailable")]
    Unavailable,
    /// The store's configuration is invalid (caught when it is built, never per request).
    #[error("invalid state store configuration: {0}")]
    Config(String),
}
