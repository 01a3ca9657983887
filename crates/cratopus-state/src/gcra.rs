//! The GCRA (generic cell rate algorithm) arithmetic, pure and shared by every limiter.
//!
//! GCRA keeps one number per limit and key, the *theoretical arrival time* (TAT): the instant
//! at which the limit would be fully replenished if no more requests came. With the emission
//! interval `T = period / limit` and the tolerance `burst × T`, a request of `cost` cells at
//! `now` gives
//!
//! ```text
//! new_tat      = max(tat, now) + cost × T
//! allowed      = new_tat − now <= burst × T
//! remaining    = floor((burst × T − (new_tat − now)) / T)      (allowed)
//! reset_after  = new_tat − now                                 (allowed: after this request)
//! retry_after  = (new_tat − now) − burst × T                   (denied)
//! ```
//!
//! A *stack* of limits under one key (say 10/s and 100/min) is decided atomically: the request
//! is allowed only if every limit allows it, and if any limit denies, no TAT is changed, so a
//! denied request costs nothing. The Redis Lua script in [`crate::redis`] is a line-by-line
//! port of [`decide`] (in microseconds of the server clock instead of nanoseconds), including
//! the choice of the tightest limit, so that a node falling back from Redis to its local
//! limiter answers the same way.

use std::time::Duration;

/// One limit: `limit` requests per `period`, with up to `burst` at once.
///
/// `burst` is usually equal to `limit` ("100 per minute, all at once if you like"); a smaller
/// burst spreads the requests out (`burst = 1` allows one every `period / limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Rate {
    /// `limit` per `period` with `burst = limit`.
    pub const fn new(limit: u32, period: Duration) -> Rate {
        Rate {
            limit,
            period,
            burst: limit,
        }
    }

    /// `limit` per second.
    pub const fn per_second(limit: u32) -> Rate {
        Rate::new(limit, Duration::from_secs(1))
    }

    /// `limit` per minute.
    pub const fn per_minute(limit: u32) -> Rate {
        Rate::new(limit, Duration::from_secs(60))
    }

    /// The same rate with another burst.
    pub const fn with_burst(self, burst: u32) -> Rate {
        Rate { burst, ..self }
    }

    /// The emission interval `T = period / limit` in units of `unit_nanos` nanoseconds
    /// (1 for nanoseconds, 1000 for microseconds), at least 1.
    ///
    /// A zero `limit` is treated as 1: a limit that allows nothing is a configuration error
    /// that validation should catch, and here it must not divide by zero.
    pub(crate) fn interval(&self, unit_nanos: u64) -> u64 {
        // u64 division (a period of more than 584 years saturates): this runs on every
        // check, and 128-bit division costs several times more.
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX) / unit_nanos.max(1);
        (period / u64::from(self.limit.max(1))).max(1)
    }

    /// The burst, at least 1 (a burst of 0 could never allow anything).
    pub(crate) fn burst(&self) -> u64 {
        u64::from(self.burst.max(1))
    }
}

/// Outcome of checking a request against a stack of limits under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Index into the rates slice of the tightest limit: the one with the fewest requests
    /// remaining (ties: the one that takes longest to replenish) when allowed, the one that
    /// denied (the longest wait, if several) when denied. Its numbers below feed the
    /// `RateLimit-*` headers. 0 for an empty stack.
    pub tightest: usize,
    /// Requests still allowed right now under that limit, after this one (0 when denied).
    pub remaining: u32,
    /// Time until that limit is fully replenished (`RateLimit-Reset`). When denied, nothing
    /// was consumed, so this is measured from the unchanged state.
    pub reset_after: Duration,
    /// When denied: time until the request would be allowed (`Retry-After`); zero when
    /// allowed.
    pub retry_after: Duration,
}

impl Verdict {
    /// The verdict for an empty stack of limits: allowed, nothing to report.
    pub(crate) const fn unlimited() -> Verdict {
        Verdict {
            allowed: true,
            tightest: 0,
            remaining: u32::MAX,
            reset_after: Duration::ZERO,
            retry_after: Duration::ZERO,
        }
    }
}

/// Decides a request of `cost` cells at `now` against `rates`, whose TATs are `tats` (same
/// length; 0 = no state yet), all in nanoseconds of one monotonic clock. Updates `tats` only
/// when the request is allowed.
pub(crate) fn decide(tats: &mut [u64], rates: &[Rate], now: u64, cost: u32) -> Verdict {
    let verdict = judge(tats, rates, now, cost);
    if verdict.allowed {
        for (rate, tat) in rates.iter().zip(tats.iter_mut()) {
            let t = rate.interval(1);
            *tat = (*tat).max(now).saturating_add(u64::from(cost).saturating_mul(t));
        }
    }
    verdict
}

/// What [`decide`] would answer, without changing any TAT: a *peek*, for a caller that asks
/// "would one more be allowed?" without spending it (a lockout gate that only counts
/// failures, for instance). An empty `tats` stands for a key without state (every TAT 0),
/// so that peeking at an unseen key allocates nothing.
pub(crate) fn judge(tats: &[u64], rates: &[Rate], now: u64, cost: u32) -> Verdict {
    debug_assert!(tats.is_empty() || tats.len() == rates.len());
    if rates.is_empty() {
        return Verdict::unlimited();
    }
    let cost = u64::from(cost);
    let mut allowed = true;
    // The pick so far: index, remaining, reset (ticks), retry (ticks). `None` until the first
    // limit is seen; a denial replaces any allowed pick.
    let mut pick: Option<(usize, u64, u64, u64)> = None;
    for (i, rate) in rates.iter().enumerate() {
        let tat = tats.get(i).copied().unwrap_or(0);
        let t = rate.interval(1);
        let tolerance = rate.burst().saturating_mul(t);
        let base = tat.max(now);
        let diff = (base - now).saturating_add(cost.saturating_mul(t));
        if diff > tolerance {
            let retry = diff - tolerance;
            let longer = match pick {
                Some((_, _, _, r)) if !allowed => retry > r,
                _ => true,
            };
            if longer {
                pick = Some((i, 0, base - now, retry));
            }
            allowed = false;
        } else if allowed {
            let remaining = (tolerance - diff) / t;
            let tighter = match pick {
                None => true,
                Some((_, rem, reset, _)) => remaining < rem || (remaining == rem && diff > reset),
            };
            if tighter {
                pick = Some((i, remaining, diff, 0));
            }
        }
    }
    let (tightest, remaining, reset, retry) = pick.unwrap_or((0, 0, 0, 0));
    Verdict {
        allowed,
        tightest,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_after: Duration::from_nanos(reset),
        retry_after: Duration::from_nanos(retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn interval_is_period_over_limit_and_never_zero() {
        assert_eq!(Rate::per_second(10).interval(1), 100 * MS);
        assert_eq!(Rate::per_second(10).interval(1000), 100_000);
        assert_eq!(Rate::per_second(3).interval(1), 333_333_333);
        assert_eq!(Rate::new(0, Duration::from_secs(1)).interval(1), S, "limit 0 acts as 1");
        assert_eq!(Rate::new(10, Duration::ZERO).interval(1), 1);
        assert_eq!(Rate::per_second(5).with_burst(0).burst(), 1);
    }

    #[test]
    fn burst_then_deny_with_retry_after_and_remaining() {
        let rates = [Rate::per_second(5)]; // T = 200 ms, burst 5
        let mut tats = [0];
        let now = 10 * S;
        for expect_remaining in (0..5).rev() {
            let v = decide(&mut tats, &rates, now, 1);
            assert!(v.allowed);
            assert_eq!(v.remaining, expect_remaining);
            assert_eq!(v.retry_after, Duration::ZERO);
        }
        // After 5 at once the limit is full again in 5 × 200 ms.
        assert_eq!(tats[0], now + S);
        let v = decide(&mut tats, &rates, now, 1);
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
        assert_eq!(v.retry_after, ms(200), "one emission interval until the next cell");
        assert_eq!(v.reset_after, ms(1000));
        assert_eq!(tats[0], now + S, "a denied request changes nothing");

        // 150 ms later: still 50 ms to wait.
        let v = decide(&mut tats, &rates, now + 150 * MS, 1);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, ms(50));
        // 200 ms later: exactly one cell back.
        let v = decide(&mut tats, &rates, now + 200 * MS, 1);
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
        assert_eq!(v.reset_after, ms(1000));
    }

    #[test]
    fn reset_after_counts_down_and_state_empties() {
        let rates = [Rate::per_second(10)];
        let mut tats = [0];
        let v = decide(&mut tats, &rates, S, 1);
        assert_eq!(v.reset_after, ms(100));
        assert_eq!(v.remaining, 9);
        // Long after: fully replenished, as if new.
        let v = decide(&mut tats, &rates, 100 * S, 1);
        assert_eq!(v.remaining, 9);
        assert_eq!(v.reset_after, ms(100));
    }

    #[test]
    fn smaller_burst_spreads_requests() {
        let rates = [Rate::per_second(10).with_burst(2)]; // T = 100 ms, tolerance 200 ms
        let mut tats = [0];
        assert!(decide(&mut tats, &rates, S, 1).allowed);
        assert!(decide(&mut tats, &rates, S, 1).allowed);
        let v = decide(&mut tats, &rates, S, 1);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, ms(100));
    }

    #[test]
    fn cost_uses_several_cells() {
        let rates = [Rate::per_second(10)];
        let mut tats = [0];
        let v = decide(&mut tats, &rates, S, 4);
        assert!(v.allowed);
        assert_eq!(v.remaining, 6);
        let v = decide(&mut tats, &rates, S, 7);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, ms(100));
        let v = decide(&mut tats, &rates, S, 6);
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
    }

    #[test]
    fn stack_denies_without_consuming_any_limit() {
        // 2 per second (T = 500 ms) and 3 per minute (T = 20 s).
        let rates = [Rate::per_second(2), Rate::per_minute(3)];
        let mut tats = [0, 0];
        let v = decide(&mut tats, &rates, S, 1);
        assert!(v.allowed);
        assert_eq!((v.tightest, v.remaining), (0, 1), "1 left per second, 2 per minute");
        let v = decide(&mut tats, &rates, S, 1);
        assert!(v.allowed);
        assert_eq!((v.tightest, v.remaining), (0, 0));
        let before = tats;
        // The per-second limit denies; the per-minute limit would still allow one.
        let v = decide(&mut tats, &rates, S, 1);
        assert!(!v.allowed);
        assert_eq!(v.tightest, 0, "the per-second limit denied");
        assert_eq!(v.retry_after, ms(500));
        assert_eq!(tats, before, "nothing consumed on deny");
        // A second later the per-second limit is back; the last per-minute cell is used, and
        // with 0 left the per-minute limit is now the tightest.
        let v = decide(&mut tats, &rates, 2 * S, 1);
        assert!(v.allowed);
        assert_eq!((v.tightest, v.remaining), (1, 0));
        assert_eq!(v.reset_after, Duration::from_secs(59));
        // Now the per-minute limit denies: its TAT is at 61 s, so one cell is back at 21 s.
        let v = decide(&mut tats, &rates, 3 * S, 1);
        assert!(!v.allowed);
        assert_eq!(v.tightest, 1);
        assert_eq!(v.retry_after, Duration::from_secs(18));
        assert_eq!(v.reset_after, Duration::from_secs(58), "from the unchanged state");
    }

    #[test]
    fn when_several_deny_the_longest_wait_wins() {
        let rates = [Rate::per_second(1), Rate::per_minute(1)];
        let mut tats = [0, 0];
        assert!(decide(&mut tats, &rates, S, 1).allowed);
        let v = decide(&mut tats, &rates, S, 1);
        assert!(!v.allowed);
        assert_eq!(v.tightest, 1);
        assert_eq!(v.retry_after, Duration::from_secs(60));
    }

    #[test]
    fn tightest_is_smallest_remaining_when_allowed() {
        let rates = [Rate::per_minute(100), Rate::per_second(3)];
        let mut tats = [0, 0];
        let v = decide(&mut tats, &rates, S, 1);
        assert_eq!((v.tightest, v.remaining), (1, 2));
        assert_eq!(v.reset_after, Duration::from_nanos(333_333_333));
    }

    #[test]
    fn empty_stack_allows() {
        let v = decide(&mut [], &[], S, 1);
        assert!(v.allowed);
        assert_eq!(v, Verdict::unlimited());
    }

    #[test]
    fn cost_above_burst_is_never_allowed_and_does_not_overflow() {
        let rates = [Rate::per_second(2)];
        let mut tats = [0];
        let v = decide(&mut tats, &rates, S, 3);
        assert!(!v.allowed);
        assert_eq!(tats, [0]);
        let huge = [Rate::new(1, Duration::from_secs(u64::MAX)).with_burst(u32::MAX)];
        let mut tats = [0];
        let v = decide(&mut tats, &huge, S, u32::MAX);
        assert!(v.allowed, "saturates instead of overflowing");
    }
}
