//! The in-memory rate limiter of one node.

use crate::clock::{Clock, MonotonicClock, nanos};
use crate::gcra::{self, Rate, Verdict};
use crate::sharded::ShardedMap;
use std::sync::Arc;

/// GCRA rate limits in memory, keyed by string, for one node (and the fallback when Redis is
/// unreachable).
///
/// Thread-safe and synchronous: a check locks one of 64 shards for a hash-table lookup and a
/// few integer operations, never across an `.await`.
///
/// Why not governor (which DESIGN.md names for local limits): governor's keyed limiter checks
/// one quota per limiter and commits as it goes, so a stack such as 10/s + 100/min cannot be
/// checked atomically (a request denied by the second limit would already have used the
/// first), and it has no non-consuming test to check first and commit after. It also reports
/// no reset time (only the remaining burst). Its arithmetic is the same GCRA as ours (its
/// `tau = (burst − 1) × T` plus the cell being admitted equals our `burst × T`), so nothing
/// is lost by doing it here: the crate's `gcra` module holds the arithmetic, this type the storage.
///
/// Memory: one entry per key that has state (a key that never had an allowed request stores
/// nothing). Call [`LocalLimiter::retain_recent`] periodically (say every 10 s) to drop the
/// keys whose limits are all fully replenished: their state equals a fresh key's, so dropping
/// them changes no answer.
///
/// A key names one stack: use the same `rates` (in the same order) with a key every time,
/// e.g. by putting the policy's name in the key. If the stack's length changes (a reload),
/// that key's state starts afresh.
pub struct LocalLimiter {
    map: ShardedMap<Box<[u64]>>,
    clock: Arc<dyn Clock>,
}

impl LocalLimiter {
    /// A limiter on the real monotonic clock.
    pub fn new() -> LocalLimiter {
        LocalLimiter::with_clock(Arc::new(MonotonicClock::new()))
    }

    /// A limiter on the given clock (tests pass a [`crate::ManualClock`]).
    pub fn with_clock(clock: Arc<dyn Clock>) -> LocalLimiter {
        LocalLimiter {
            map: ShardedMap::new(),
            clock,
        }
    }

    /// Checks one request under `key` against every limit of `rates`, consuming one cell of
    /// each if (and only if) all of them allow it.
    pub fn check(&self, key: &str, rates: &[Rate]) -> Verdict {
        self.check_n(key, rates, 1)
    }

    /// Like [`check`](Self::check) for a request that costs `cost` cells. A cost above a
    /// limit's burst can never be allowed.
    pub fn check_n(&self, key: &str, rates: &[Rate], cost: u32) -> Verdict {
        if rates.is_empty() {
            return Verdict::unlimited();
        }
        // A TAT of 0 (a fresh entry) is never after `now`, so it reads as "fully replenished".
        let now = nanos(self.clock.now());
        self.map.update(
            key,
            |tats| {
                if tats.len() != rates.len() {
                    *tats = vec![0; rates.len()].into_boxed_slice();
                }
                gcra::decide(tats, rates, now, cost)
            },
            || {
                let mut tats = vec![0; rates.len()].into_boxed_slice();
                let verdict = gcra::decide(&mut tats, rates, now, cost);
                // A denied request changed nothing, so there is nothing to remember.
                let insert = verdict.allowed.then_some(tats);
                (verdict, insert)
            },
        )
    }

    /// What [`check_n`](Self::check_n) would answer, without consuming anything or storing
    /// state: "would a request of `cost` be allowed now?".
    pub fn peek(&self, key: &str, rates: &[Rate], cost: u32) -> Verdict {
        if rates.is_empty() {
            return Verdict::unlimited();
        }
        let now = nanos(self.clock.now());
        self.map.update(
            key,
            // A stack of another length is state for other limits: as if unseen.
            |tats| gcra::judge(if tats.len() == rates.len() { tats } else { &[] }, rates, now, cost),
            || (gcra::judge(&[], rates, now, cost), None),
        )
    }

    /// Drops every key whose limits are all fully replenished (TAT not after now). Such a
    /// key behaves exactly like an unseen one, so this only frees memory.
    pub fn retain_recent(&self) {
        let now = nanos(self.clock.now());
        self.map.retain(|tats| tats.iter().any(|&tat| tat > now));
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn limiter() -> (LocalLimiter, ManualClock) {
        let clock = ManualClock::new(Duration::from_secs(1000));
        (LocalLimiter::with_clock(Arc::new(clock.clone())), clock)
    }

    #[test]
    fn burst_then_deny_then_replenish_with_fake_clock() {
        let (l, clock) = limiter();
        let rates = [Rate::per_second(3)];
        for remaining in [2, 1, 0] {
            let v = l.check("a", &rates);
            assert!(v.allowed);
            assert_eq!(v.remaining, remaining);
        }
        let v = l.check("a", &rates);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Duration::from_nanos(333_333_333));
        // Other keys are independent.
        assert!(l.check("b", &rates).allowed);
        clock.advance(v.retry_after);
        let v = l.check("a", &rates);
        assert!(v.allowed, "allowed exactly at retry_after");
        assert_eq!(v.remaining, 0);
        assert!(!l.check("a", &rates).allowed);
    }

    #[test]
    fn stacked_limits_deny_without_consuming() {
        let (l, clock) = limiter();
        let rates = [Rate::per_second(2), Rate::per_minute(3)];
        assert!(l.check("k", &rates).allowed);
        assert!(l.check("k", &rates).allowed);
        for _ in 0..10 {
            let v = l.check("k", &rates);
            assert!(!v.allowed);
            assert_eq!(v.tightest, 0);
        }
        // The ten denials did not use the per-minute limit: one is left after a second.
        clock.advance(Duration::from_secs(1));
        let v = l.check("k", &rates);
        assert!(v.allowed);
        assert_eq!((v.tightest, v.remaining), (1, 0));
        clock.advance(Duration::from_secs(1));
        let v = l.check("k", &rates);
        assert!(!v.allowed);
        assert_eq!(v.tightest, 1);
    }

    #[test]
    fn denied_unseen_key_stores_nothing_and_purge_drops_replenished_keys() {
        let (l, clock) = limiter();
        let rates = [Rate::per_second(1)];
        assert!(!l.check_n("too-big", &rates, 2).allowed);
        assert_eq!(l.len(), 0);
        for i in 0..100 {
            assert!(l.check(&format!("k{i}"), &rates).allowed);
        }
        clock.advance(Duration::from_millis(500));
        assert!(l.check("late", &[Rate::per_minute(1)]).allowed);
        assert_eq!(l.len(), 101);
        l.retain_recent();
        assert_eq!(l.len(), 101, "nothing replenished yet");
        clock.advance(Duration::from_millis(500));
        l.retain_recent();
        assert_eq!(l.len(), 1, "only the per-minute key is still counting");
        // A purged key starts fresh, exactly as it would have been anyway.
        assert_eq!(l.check("k1", &rates).remaining, 0);
        assert!(l.check("k1", &rates).retry_after > Duration::ZERO);
    }

    #[test]
    fn changing_the_stack_length_restarts_the_key() {
        let (l, _clock) = limiter();
        assert!(l.check("k", &[Rate::per_second(1)]).allowed);
        assert!(!l.check("k", &[Rate::per_second(1)]).allowed);
        let v = l.check("k", &[Rate::per_second(1), Rate::per_minute(10)]);
        assert!(v.allowed);
    }

    #[test]
    fn concurrent_checks_allow_exactly_the_burst() {
        let (l, _clock) = limiter();
        let l = Arc::new(l);
        let rates = [Rate::per_minute(1000)];
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let l = l.clone();
                    s.spawn(move || (0..500).filter(|_| l.check("shared", &rates).allowed).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(allowed, 1000);
    }

    #[test]
    fn peek_answers_like_check_without_consuming() {
        let (l, clock) = limiter();
        let rates = [Rate::per_minute(2)];
        assert!(l.peek("k", &rates, 1).allowed);
        assert!(l.is_empty(), "a peek stores nothing");
        assert!(l.check("k", &rates).allowed);
        for _ in 0..5 {
            let v = l.peek("k", &rates, 1);
            assert!(v.allowed);
            assert_eq!(v.remaining, 0, "one left: this one");
        }
        assert!(l.check("k", &rates).allowed);
        let v = l.peek("k", &rates, 1);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Duration::from_secs(30));
        clock.advance(Duration::from_secs(30));
        assert!(l.peek("k", &rates, 1).allowed);
        // Another stack under the key reads as fresh.
        assert!(l.peek("k", &[rates[0], Rate::per_second(1)], 1).allowed);
    }

    #[test]
    fn empty_stack_allows_and_stores_nothing() {
        let (l, _clock) = limiter();
        assert!(l.check("k", &[]).allowed);
        assert!(l.is_empty());
    }
}
