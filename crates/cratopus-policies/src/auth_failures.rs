//! Brute-force protection: failed authentications counted per client address, and a gate in
//! front of authentication that refuses a client over the limit, whatever credentials it sends.
//!
//! The semantics are fail2ban's (`maxretry`, `findtime`, `bantime`), which Authelia's
//! regulation and Kong's `brute_force_protection` (basic-auth, 3.13) also follow: a client
//! that fails `limit` times within `window` is refused with 429 and `Retry-After` before
//! authentication is tried, so that even a correct key or token gets 429 until the lockout
//! ends. That is the point: a lockout that a good guess could pass would tell the attacker
//! which guess was good. Other clients are not affected.
//!
//! What counts as a failure: credentials that were presented and refused (an unknown or
//! misplaced API key, a JWT that does not verify, a certificate that names no consumer). A
//! request without credentials does not count: it guesses nothing, and counting it would
//! lock out a browser that opens the URL before it has a key. A success does not reset the
//! count either (unlike a login form's "consecutive failures"): an attacker holding one
//! valid key could otherwise interleave it to keep guessing others forever.
//!
//! Counting uses the state store's GCRA: `limit` failures per `window` under the key
//! `af:<policy>|<client>`. The gate only *peeks* (it consumes nothing), so requests that
//! pass it cost no counter; with `block_for`, reaching the limit also sets a lockout cell
//! (`afban:<policy>|<client>`, one cell per `block_for`) that the gate peeks at instead. In
//! cluster mode both live in Redis, so every node counts the same failures and refuses the
//! same clients.

use crate::auth::AuthError;
use crate::key::in_cluster;
use cratopus_config::AuthFailuresConfig;
use cratopus_state::{Rate, SharedLimiter, Source, StateError, Verdict};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// One compiled `auth_failures`, shared by the routes it covers (an organization's covers all
/// its routes with one set of counters).
#[derive(Debug)]
pub struct AuthFailureLimit {
    /// Names the counters, as for rate limits: `<org>/org` or `<org>/route:<name>`.
    pub id: Arc<str>,
    /// `af:<id>|`: the failure counter's key up to the client address, made once.
    count_prefix: Box<str>,
    /// `afban:<id>|`: the lockout's key up to the client address.
    ban_prefix: Box<str>,
    /// `limit` failures per `window`, all at once if they come at once.
    failures: [Rate; 1],
    /// One cell per `block_for`: set when the limit is reached, the lockout lasts until it
    /// is free again.
    block: Option<[Rate; 1]>,
    cluster: bool,
}

/// A client refused by the gate: seconds until it may try again (`Retry-After`, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut {
    pub retry_after: u64,
}

impl AuthFailureLimit {
    /// `cluster_default`: the gateway counts in Redis unless `state: local` says otherwise.
    pub fn compile(id: String, cfg: &AuthFailuresConfig, cluster_default: bool) -> AuthFailureLimit {
        AuthFailureLimit {
            count_prefix: format!("af:{id}|").into(),
            ban_prefix: format!("afban:{id}|").into(),
            id: id.into(),
            failures: [Rate::new(cfg.limit, cfg.window.0)],
            block: cfg.block_for.map(|b| [Rate::new(1, b.0)]),
            cluster: in_cluster(cfg.state, cluster_default),
        }
    }

    /// The gate, before authentication: `Ok(Some(_))` when the client is locked out. Reads
    /// one counter and changes none. `Err` only when the counters are in Redis, Redis is
    /// unreachable and the gateway fails closed.
    pub async fn gate(
        &self,
        store: &SharedLimiter,
        client: IpAddr,
        scratch: &mut String,
    ) -> Result<Option<LockedOut>, StateError> {
        let (prefix, rates) = match &self.block {
            Some(block) => (&self.ban_prefix, block),
            None => (&self.count_prefix, &self.failures),
        };
        write_client_key(scratch, prefix, client);
        let (v, _) = self.peek(store, scratch, rates).await?;
        Ok((!v.allowed).then(|| LockedOut {
            retry_after: ceil_secs(v.retry_after).max(1),
        }))
    }

    /// Counts one failed authentication of `client`. Returns true when this failure locked
    /// the client out (it reached the limit), for a log line. A store error is `Err`: the
    /// request is refused anyway, so the caller may ignore it.
    pub async fn record_failure(
        &self,
        store: &SharedLimiter,
        client: IpAddr,
        scratch: &mut String,
    ) -> Result<bool, StateError> {
        write_client_key(scratch, &self.count_prefix, client);
        let (v, _) = self.check(store, scratch, &self.failures).await?;
        // `remaining == 0`: this failure used the last one; denied: already over (requests
        // that passed the gate together, before any of them failed).
        let reached = !v.allowed || v.remaining == 0;
        let Some(block) = &self.block else {
            return Ok(reached && v.allowed);
        };
        if !reached {
            return Ok(false);
        }
        write_client_key(scratch, &self.ban_prefix, client);
        // Denied when a lockout is running already: it is not extended.
        let (v, _) = self.check(store, scratch, block).await?;
        Ok(v.allowed)
    }

    async fn peek(&self, store: &SharedLimiter, key: &str, rates: &[Rate]) -> Result<(Verdict, Source), StateError> {
        if self.cluster {
            store.peek(key, rates, 1).await
        } else {
            Ok((store.local().peek(key, rates, 1), Source::Local))
        }
    }

    async fn check(&self, store: &SharedLimiter, key: &str, rates: &[Rate]) -> Result<(Verdict, Source), StateError> {
        if self.cluster {
            store.check(key, rates).await
        } else {
            Ok((store.local().check(key, rates), Source::Local))
        }
    }
}

/// The `auth_failures` a route is covered by (its organization's, its own) and the store they
/// count in: one value shared by the route's gate step and its authentication step, which
/// counts the failures.
pub struct AuthFailureGuard {
    pub limits: Vec<Arc<AuthFailureLimit>>,
    pub store: Arc<SharedLimiter>,
}

impl std::fmt::Debug for AuthFailureGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFailureGuard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AuthFailureGuard {
    /// The gate: the longest lockout among the limits, if the client is locked out by any.
    pub async fn gate(&self, client: IpAddr) -> Result<Option<LockedOut>, StateError> {
        let mut key = String::with_capacity(64);
        let mut out: Option<LockedOut> = None;
        for limit in &self.limits {
            if let Some(l) = limit.gate(&self.store, client, &mut key).await? {
                out = Some(out.map_or(l, |o| LockedOut {
                    retry_after: o.retry_after.max(l.retry_after),
                }));
            }
        }
        Ok(out)
    }

    /// Counts a failed authentication of `client` in every limit, and logs the lockout it
    /// causes. Failing to count (Redis away, failing closed) changes nothing for this request,
    /// which is refused anyway.
    pub async fn record_failure(&self, client: IpAddr, route: &str) {
        let mut key = String::with_capacity(64);
        for limit in &self.limits {
            if let Ok(true) = limit.record_failure(&self.store, client, &mut key).await {
                tracing::warn!(
                    policy = %limit.id,
                    route,
                    %client,
                    "client locked out after failed authentications"
                );
            }
        }
    }
}

/// Whether an authentication failure counts against the client: credentials presented and
/// refused do, no credentials at all do not (see the module's notes).
pub fn counts(e: &AuthError) -> bool {
    !matches!(e, AuthError::Missing)
}

fn write_client_key(out: &mut String, prefix: &str, client: IpAddr) {
    out.clear();
    out.push_str(prefix);
    let _ = write!(out, "{client}");
}

/// Whole seconds, rounded up: a client told to wait 0 s would retry at once and be refused.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_config::Dur;
    use cratopus_state::{LocalLimiter, ManualClock};

    fn setup(block_for: Option<u64>) -> (AuthFailureLimit, SharedLimiter, ManualClock) {
        let clock = ManualClock::new(Duration::from_secs(1000));
        let store = SharedLimiter::local_only(LocalLimiter::with_clock(Arc::new(clock.clone())));
        let cfg = AuthFailuresConfig {
            limit: 3,
            window: Dur::secs(60),
            block_for: block_for.map(Dur::secs),
            state: None,
        };
        (
            AuthFailureLimit::compile("o/route:login".into(), &cfg, false),
            store,
            clock,
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    async fn gate(l: &AuthFailureLimit, s: &SharedLimiter, c: IpAddr) -> Option<LockedOut> {
        l.gate(s, c, &mut String::new()).await.expect("local store")
    }

    async fn fail(l: &AuthFailureLimit, s: &SharedLimiter, c: IpAddr) -> bool {
        l.record_failure(s, c, &mut String::new()).await.expect("local store")
    }

    #[tokio::test]
    async fn the_limit_locks_a_client_out_until_a_failure_fits_again() {
        let (l, s, clock) = setup(None);
        for n in 1..=3 {
            assert_eq!(gate(&l, &s, A).await, None, "attempt {n} is let in");
            assert_eq!(fail(&l, &s, A).await, n == 3, "the third failure locks out");
        }
        // Locked: one failure comes back every 60 s / 3 = 20 s.
        assert_eq!(gate(&l, &s, A).await, Some(LockedOut { retry_after: 20 }));
        assert_eq!(gate(&l, &s, B).await, None, "another client is not affected");
        // The gate counts nothing itself: asking again changes nothing.
        assert_eq!(gate(&l, &s, A).await, Some(LockedOut { retry_after: 20 }));
        clock.advance(Duration::from_secs(20));
        assert_eq!(gate(&l, &s, A).await, None);
        assert!(fail(&l, &s, A).await, "at the limit again");
        assert!(gate(&l, &s, A).await.is_some());
    }

    #[tokio::test]
    async fn block_for_holds_the_lockout_and_is_not_extended() {
        let (l, s, clock) = setup(Some(300));
        assert!(!fail(&l, &s, A).await);
        assert!(!fail(&l, &s, A).await);
        assert_eq!(gate(&l, &s, A).await, None);
        assert!(fail(&l, &s, A).await, "the third failure sets the lockout");
        assert_eq!(gate(&l, &s, A).await, Some(LockedOut { retry_after: 300 }));
        // Failures while locked (requests that passed the gate together) do not extend it.
        clock.advance(Duration::from_secs(100));
        assert!(!fail(&l, &s, A).await);
        assert_eq!(gate(&l, &s, A).await, Some(LockedOut { retry_after: 200 }));
        clock.advance(Duration::from_secs(200));
        assert_eq!(gate(&l, &s, A).await, None, "over after block_for");
        // The failures have long left the window: a fresh start.
        assert!(!fail(&l, &s, A).await);
        assert_eq!(gate(&l, &s, A).await, None);
    }
}
