//! Rate limits: a stack of GCRA limits under one key, decided on this node or in Redis.
//!
//! The answer carries what the IETF RateLimit headers need (draft-ietf-httpapi-ratelimit-headers:
//! `RateLimit-Limit`, `-Remaining`, `-Reset` and `RateLimit-Policy`), for the tightest limit
//! of the stack, and optionally the older `X-RateLimit-*` forms. Everything that does not
//! depend on the request (the policy header, the limit values) is rendered at compile time.

use crate::auth::Identity;
use crate::key::{in_cluster, write_key};
use cratopus_config::{LimitConfig, LimitMode, RateKey, RateLimitConfig};
use cratopus_state::{Rate, SharedLimiter, Source, StateError};
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One compiled rate limit.
#[derive(Debug)]
pub struct RateLimitPolicy {
    /// Names the counters: `<org>/<where it is written>`, e.g. `acme/policy:per-client`.
    pub id: Arc<str>,
    /// The limits of requests that no tier below applies to; `None` when only tiers are
    /// written (such requests are then not limited by this policy).
    default: Option<Stack>,
    /// The consumers' tiers with limits of their own, in the order written. Looked up by a
    /// string comparison per tier: a policy has a handful of tiers, fewer than a hash costs.
    tiers: Vec<(Box<str>, Stack)>,
    key: RateKey,
    pub mode: LimitMode,
    /// Checked before authentication (failed credentials count), not after.
    pub before_auth: bool,
    x_headers: bool,
    /// Counted in Redis (when the gateway has it) rather than on this node.
    cluster: bool,
    /// Soft mode: requests over the limit since the last log line, and when that was.
    soft_over: AtomicU64,
    soft_logged: Mutex<Option<Instant>>,
}

/// One stack of limits with its counters' name and the header values it answers with, all
/// made at compile time.
#[derive(Debug)]
struct Stack {
    /// The counters' name: the policy's id, with `#<tier>` for a tier's own stack (so that
    /// the tiers never share counters, nor a tier with the default).
    id: Arc<str>,
    rates: Vec<Rate>,
    /// `RateLimit-Policy`, e.g. `10;w=1, 500;w=60`.
    policy_header: HeaderValue,
    /// `RateLimit-Limit` of each limit of the stack.
    limit_values: Vec<HeaderValue>,
}

impl Stack {
    fn compile(id: Arc<str>, limits: &[LimitConfig]) -> Stack {
        let rates: Vec<Rate> = limits
            .iter()
            .map(|l| Rate {
                limit: l.rate,
                period: l.per.0,
                burst: l.burst.unwrap_or(l.rate),
            })
            .collect();
        let policy = rates
            .iter()
            .map(|r| {
                let w = window_secs(r.period);
                if r.burst == r.limit {
                    format!("{};w={w}", r.limit)
                } else {
                    format!("{};w={w};burst={}", r.limit, r.burst)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Stack {
            id,
            limit_values: rates.iter().map(|r| HeaderValue::from(r.limit)).collect(),
            policy_header: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            rates,
        }
    }
}

/// Soft mode logs at most this often per policy, with the count since the last line.
const SOFT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a rate limit said about one request.
#[derive(Debug, Clone)]
pub struct RateDecision {
    /// False when the request is over the limit; in soft mode it is let through anyway.
    pub allowed: bool,
    pub mode: LimitMode,
    pub source: Source,
    /// Requests left under the tightest limit, for comparing policies on one route.
    pub remaining: u32,
    /// Seconds until the request would be allowed (denied only; at least 1).
    pub retry_after: u64,
    limit: HeaderValue,
    reset: u64,
    policy: HeaderValue,
    x_headers: bool,
}

impl RateLimitPolicy {
    /// `cluster_default`: the gateway counts in Redis unless the limit says `state: local`.
    pub fn compile(id: String, cfg: &RateLimitConfig, cluster_default: bool) -> RateLimitPolicy {
        let id: Arc<str> = id.into();
        let tiers = cfg
            .tiers
            .iter()
            .map(|(tier, t)| {
                let stack = Stack::compile(format!("{id}#{tier}").into(), &t.0);
                (tier.as_str().into(), stack)
            })
            .collect();
        RateLimitPolicy {
            default: (!cfg.limits.is_empty()).then(|| Stack::compile(id.clone(), &cfg.limits)),
            tiers,
            id,
            key: cfg.key.clone(),
            mode: cfg.mode,
            before_auth: cfg.before_auth,
            x_headers: cfg.x_headers,
            cluster: in_cluster(cfg.state, cluster_default),
            soft_over: AtomicU64::new(0),
            soft_logged: Mutex::new(None),
        }
    }

    /// The stack a request is limited by: its consumer's tier's, else the default.
    fn stack_for(&self, identity: Option<&Identity>) -> Option<&Stack> {
        if !self.tiers.is_empty()
            && let Some(tier) = identity
                .and_then(|i| i.consumer.as_ref())
                .and_then(|c| c.tier.as_deref())
            && let Some((_, stack)) = self.tiers.iter().find(|(t, _)| **t == *tier)
        {
            return Some(stack);
        }
        self.default.as_ref()
    }

    /// Notes a request let through over a soft limit. Logs the first at once, then at most
    /// one line every 10 s with the count, so a rollout shows what enforcing would refuse
    /// without a log line per request. The key is not logged: it may be an API key.
    pub fn note_soft_over(&self, route: &str) {
        let n = self.soft_over.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let Ok(mut last) = self.soft_logged.try_lock() else {
            return;
        };
        if last.is_some_and(|t| now.duration_since(t) < SOFT_LOG_EVERY) {
            return;
        }
        *last = Some(now);
        self.soft_over.fetch_sub(n, Ordering::Relaxed);
        tracing::info!(
            policy = %self.id,
            route,
            over_limit = n,
            "requests over a soft rate limit (let through; `mode: enforce` would refuse them)"
        );
    }

    /// Checks and counts one request. `scratch` is reused for the key. `Ok(None)` when no
    /// limit of the policy applies (a tier without limits here, and no default). `Err` only
    /// when the counters are in Redis, Redis is unreachable and the gateway fails closed.
    pub async fn check(
        &self,
        store: &SharedLimiter,
        headers: &HeaderMap,
        client: IpAddr,
        identity: Option<&Identity>,
        scratch: &mut String,
    ) -> Result<Option<RateDecision>, StateError> {
        let Some(stack) = self.stack_for(identity) else {
            return Ok(None);
        };
        write_key(scratch, &stack.id, &self.key, headers, client, identity);
        let (v, source) = if self.cluster {
            store.check(scratch, &stack.rates).await?
        } else {
            (store.local().check(scratch, &stack.rates), Source::Local)
        };
        let limit = stack
            .limit_values
            .get(v.tightest)
            .cloned()
            .unwrap_or(HeaderValue::from_static("0"));
        Ok(Some(RateDecision {
            allowed: v.allowed,
            mode: self.mode,
            source,
            remaining: v.remaining,
            retry_after: ceil_secs(v.retry_after).max(1),
            limit,
            reset: ceil_secs(v.reset_after),
            policy: stack.policy_header.clone(),
            x_headers: self.x_headers,
        }))
    }
}

impl RateDecision {
    /// Whether the request must be refused (over the limit and enforced).
    pub fn refuses(&self) -> bool {
        !self.allowed && self.mode == LimitMode::Enforce
    }

    /// Adds the rate-limit headers (and `Retry-After` on a refusal) to a response.
    pub fn write_headers(&self, h: &mut HeaderMap) {
        let remaining = HeaderValue::from(self.remaining);
        let reset = HeaderValue::from(self.reset);
        h.insert(RATELIMIT_LIMIT.clone(), self.limit.clone());
        h.insert(RATELIMIT_REMAINING.clone(), remaining.clone());
        h.insert(RATELIMIT_RESET.clone(), reset.clone());
        h.insert(RATELIMIT_POLICY.clone(), self.policy.clone());
        if self.x_headers {
            h.insert(X_RATELIMIT_LIMIT.clone(), self.limit.clone());
            h.insert(X_RATELIMIT_REMAINING.clone(), remaining);
            h.insert(X_RATELIMIT_RESET.clone(), reset);
        }
        if self.refuses() {
            h.insert(RETRY_AFTER, HeaderValue::from(self.retry_after));
        }
    }
}

/// Whole seconds, rounded up: a client told to wait 0 s would retry at once and be refused.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `w` of `RateLimit-Policy`: the window in whole seconds, at least 1.
fn window_secs(d: Duration) -> u64 {
    ceil_secs(d).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Consumer;
    use cratopus_config::{Dur, TierLimits, parse_rate};
    use cratopus_state::LocalLimiter;

    fn cfg(limits: &[(u32, u64, Option<u32>)], key: RateKey, mode: LimitMode) -> RateLimitConfig {
        RateLimitConfig {
            limits: limits
                .iter()
                .map(|&(rate, per, burst)| LimitConfig {
                    rate,
                    per: Dur::secs(per),
                    burst,
                })
                .collect(),
            key,
            mode,
            x_headers: true,
            state: None,
            before_auth: false,
            tiers: Default::default(),
        }
    }

    #[tokio::test]
    async fn stacked_limits_refuse_with_headers_of_the_tightest() {
        let store = SharedLimiter::local_only(LocalLimiter::new());
        // Per minute, so that the four checks need not fall within one emission interval.
        let p = RateLimitPolicy::compile(
            "o/route:r".into(),
            &cfg(
                &[(3, 60, None), (100, 60, Some(5))],
                RateKey::ClientIp,
                LimitMode::Enforce,
            ),
            false,
        );
        assert_eq!(
            p.stack_for(None).expect("default").policy_header,
            "3;w=60, 100;w=60;burst=5"
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut s = String::new();
        let h = HeaderMap::new();
        for left in [2u32, 1, 0] {
            let d = p.check(&store, &h, ip, None, &mut s).await.unwrap().expect("limited");
            assert!(d.allowed && !d.refuses());
            assert_eq!(d.remaining, left);
        }
        let d = p.check(&store, &h, ip, None, &mut s).await.unwrap().expect("limited");
        assert!(d.refuses());
        let mut out = HeaderMap::new();
        d.write_headers(&mut out);
        assert_eq!(out[&RATELIMIT_LIMIT], "3");
        assert_eq!(out[&RATELIMIT_REMAINING], "0");
        assert_eq!(out[&RETRY_AFTER], "20");
        assert_eq!(out[&X_RATELIMIT_LIMIT], "3");
        assert_eq!(out[&RATELIMIT_POLICY], "3;w=60, 100;w=60;burst=5");
        // Another client has its own counters.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            p.check(&store, &h, other, None, &mut s)
                .await
                .unwrap()
                .expect("limited")
                .allowed
        );
    }

    #[tokio::test]
    async fn soft_mode_lets_through_but_reports() {
        let store = SharedLimiter::local_only(LocalLimiter::new());
        let p = RateLimitPolicy::compile(
            "o/p".into(),
            &cfg(&[(1, 60, None)], RateKey::Route, LimitMode::Soft),
            false,
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut s = String::new();
        let h = HeaderMap::new();
        assert!(
            p.check(&store, &h, ip, None, &mut s)
                .await
                .unwrap()
                .expect("limited")
                .allowed
        );
        let d = p.check(&store, &h, ip, None, &mut s).await.unwrap().expect("limited");
        assert!(!d.allowed && !d.refuses());
        let mut out = HeaderMap::new();
        d.write_headers(&mut out);
        assert!(out.get(RETRY_AFTER).is_none());
        assert_eq!(out[&RATELIMIT_REMAINING], "0");
    }

    fn consumer_of(tier: Option<&str>) -> Identity {
        Identity {
            consumer: Some(Arc::new(Consumer {
                id: "c".into(),
                header: None,
                tier: tier.map(str::to_string),
                scopes: Vec::new(),
                roles: Vec::new(),
            })),
            claims: None,
        }
    }

    #[tokio::test]
    async fn tiers_have_their_own_limits_and_counters() {
        let store = SharedLimiter::local_only(LocalLimiter::new());
        let mut c = cfg(&[(1, 60, None)], RateKey::Route, LimitMode::Enforce);
        for (tier, rate) in [("free", "2/m"), ("gold", "5/m")] {
            let limit = parse_rate(rate).expect("rate");
            c.tiers.insert(tier.into(), TierLimits(vec![limit]));
        }
        let p = RateLimitPolicy::compile("o/route:r".into(), &c, false);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        // How many requests in a row the policy lets through.
        let allowed = async |who: Option<Identity>| {
            let mut n = 0;
            let mut s = String::new();
            while p
                .check(&store, &h, ip, who.as_ref(), &mut s)
                .await
                .unwrap()
                .expect("limited")
                .allowed
            {
                n += 1;
            }
            n
        };
        assert_eq!(allowed(Some(consumer_of(Some("free")))).await, 2);
        assert_eq!(allowed(Some(consumer_of(Some("gold")))).await, 5);
        // An unlisted tier, no tier, and anonymous requests share the default.
        assert_eq!(allowed(Some(consumer_of(Some("silver")))).await, 1);
        assert_eq!(allowed(Some(consumer_of(None))).await, 0);
        assert_eq!(allowed(None).await, 0);
        let gold = consumer_of(Some("gold"));
        let d = p
            .check(&store, &h, ip, Some(&gold), &mut String::new())
            .await
            .unwrap()
            .expect("limited");
        let mut out = HeaderMap::new();
        d.write_headers(&mut out);
        assert_eq!(out[&RATELIMIT_LIMIT], "5");
        assert_eq!(out[&RATELIMIT_POLICY], "5;w=60");

        // Without a default, what no tier covers is not limited by the policy.
        c.limits.clear();
        let p = RateLimitPolicy::compile("o/route:t".into(), &c, false);
        let silver = consumer_of(Some("silver"));
        let mut s = String::new();
        assert!(p.check(&store, &h, ip, Some(&silver), &mut s).await.unwrap().is_none());
        assert!(p.check(&store, &h, ip, None, &mut s).await.unwrap().is_none());
        assert!(p.check(&store, &h, ip, Some(&gold), &mut s).await.unwrap().is_some());
    }
}
