//! The serde types of policies: rate limits and quotas, and the state store they count in.
//!
//! A policy is written on a route, on an organization (then it covers every route of the
//! organization with one set of counters), or once under `policies:` by name and referenced
//! from routes (then the routes that name it share its counters).

use crate::auth_limits::TierLimits;
use crate::units::Dur;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A named policy of an organization, referenced from routes by name.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
}

/// A rate limit: one or more limits checked together under one key (GCRA). A request that does
/// not fit in every limit is refused with 429 and uses none of them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limits, e.g. 10 per second and 500 per minute. With `tiers`, the default: for
    /// consumers of a tier not listed and for anonymous requests (without it, they are not
    /// limited by this rate limit).
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// What is counted separately: `client_ip` (default), `route` (one counter for all
    /// clients, like KrakenD's `max_rate`), or `header:<name>` (clients without the header
    /// share one counter).
    #[serde(default)]
    pub key: RateKey,
    /// `enforce` refuses with 429; `soft` only adds the headers and logs, for a rollout.
    #[serde(default)]
    pub mode: LimitMode,
    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset` besides the IETF headers.
    #[serde(default)]
    pub x_headers: bool,
    /// Where the counters live: `cluster` (Redis, shared by every node) or `local` (this node).
    /// Default: `cluster` when the gateway has `state.redis`, else `local`.
    #[serde(default)]
    pub state: Option<StateScope>,
    /// Check this limit before authentication, so that requests with bad credentials count
    /// too (brute force against keys and tokens). Only with a key that needs no identity:
    /// `client_ip`, `route` or `header:<name>`.
    #[serde(default)]
    pub before_auth: bool,
    /// Other limits for the consumers of some tiers (the consumer's `tier`), e.g.
    /// `{free: 10/s, gold: 1000/s}`; each tier counts apart.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierLimits>,
}

/// `rate` requests per `per`, with up to `burst` at once.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub rate: u32,
    pub per: Dur,
    /// Requests allowed at once before the rate applies; default: `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A quota: `limit` requests per calendar day or month (UTC) and key.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub limit: u64,
    pub per: QuotaPeriod,
    /// What is counted separately, as for a rate limit; default `client_ip`.
    #[serde(default)]
    pub key: RateKey,
    /// As for a rate limit.
    #[serde(default)]
    pub state: Option<StateScope>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    #[default]
    Enforce,
    Soft,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateScope {
    Local,
    Cluster,
}

/// What a limit counts separately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RateKey {
    #[default]
    ClientIp,
    /// One counter for everyone.
    Route,
    /// The value of a request header (lower-cased name).
    Header(String),
    /// The authenticated consumer (requests without one are counted by client address).
    Consumer,
    /// A claim of the verified JWT (requests without it are counted by client address).
    Claim(String),
}

impl<'de> Deserialize<'de> for RateKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "client_ip" => Ok(RateKey::ClientIp),
            "route" => Ok(RateKey::Route),
            "consumer" => Ok(RateKey::Consumer),
            _ if s.starts_with("claim:") && s.len() > 6 => Ok(RateKey::Claim(s[6..].trim().to_string())),
            _ => match s.strip_prefix("header:") {
                Some(h) if http::HeaderName::from_bytes(h.trim().as_bytes()).is_ok() => {
                    Ok(RateKey::Header(h.trim().to_ascii_lowercase()))
                }
                _ => Err(serde::de::Error::custom(format!(
                    "unknown key `{s}`: expected `client_ip`, `route`, `consumer`, `claim:<name>` or `header:<name>`"
                ))),
            },
        }
    }
}

impl JsonSchema for RateKey {
    fn schema_name() -> Cow<'static, str> {
        "RateKey".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "What is counted separately: `client_ip`, `route`, `consumer`, `claim:<name>` or `header:<name>`.",
            "type": "string",
            "pattern": "^(client_ip|route|consumer|claim:.+|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"
        })
    }
}

/// The shared state store of a cluster of gateways.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Count rate limits and quotas in Redis, shared by every node. Default: in memory.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port` (or `redis://:password@host:port/db`); for a cluster, one or more
    /// of its nodes.
    pub urls: Vec<String>,
    /// The URLs are nodes of a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    /// Longest wait for Redis on a request; past it the node answers from its local counters.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Dur,
    /// After a failure, how long the node uses its local counters before trying Redis again.
    #[serde(default = "default_redis_retry")]
    pub retry_interval: Dur,
    /// With Redis unreachable: `open` counts on this node alone (default), `closed` refuses
    /// limited requests with 503.
    #[serde(default)]
    pub on_failure: FailMode,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    #[default]
    Open,
    Closed,
}

fn default_redis_timeout() -> Dur {
    Dur(std::time::Duration::from_millis(50))
}

fn default_redis_retry() -> Dur {
    Dur::secs(1)
}
