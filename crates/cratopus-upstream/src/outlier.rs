//! Outlier detection (passive health checking) for one upstream pool: a target whose real
//! requests keep failing is taken out of the balancer's rotation for a while, without waiting
//! for an active health check to notice (and also when there is none).
//!
//! Modelled on Envoy's consecutive-error detectors with `split_external_local_origin_errors`
//! on, so that the two kinds of failure are counted apart:
//! - **5xx**: the target answered with a 5xx status (or did not answer in time, see
//!   [`Outcome`]). `consecutive_5xx` of them in a row eject the target. A response below 500
//!   ends the run; a connect error neither ends nor extends it.
//! - **connect errors**: no connection could be made (refused, reset, connect timeout, TLS
//!   failure). `consecutive_connect_errors` of them in a row eject the target. Any response
//!   (a connection was made) ends the run.
//!
//! # Ejection time
//! A target is ejected for `base_ejection_time × n`, where `n` counts its ejections, capped at
//! `max_ejection_time`: a target that fails again right after it comes back stays out longer
//! each time. As in Envoy, the count decays while the target behaves: it drops by one for every
//! `base_ejection_time` the target spends in rotation (worked out when it is next ejected, so no
//! timer is needed). A target comes back when its time is up, checked lazily by
//! [`OutlierDetector::is_ejected`] (which the balancer calls on every pick) or by
//! [`OutlierDetector::tick`].
//!
//! # The ejection cap (`max_ejection_percent`)
//! Passive signals can be wrong in a way that takes out a whole pool (a bad deploy answering
//! 500 everywhere, a client sending requests that make every target fail). So a target is
//! ejected only if, counting it, no more than `max_ejection_percent` of the pool's targets are
//! ejected: `(ejected + 1) × 100 ≤ max_ejection_percent × targets`. This is current Envoy's rule
//! with `always_eject_one_host` left off (older Envoy always allowed one ejection, whatever the
//! percentage, which could take out a single-target pool). What it means:
//! - with any value below 100, at least one target always stays in rotation;
//! - a pool too small for the percentage ejects nothing: at 50 %, a pool of one target never
//!   ejects and a pool of two or three ejects at most one; at Envoy's 10 %, ejection starts at
//!   ten targets (hence our default of 50 %);
//! - at 100 every target may be ejected, and then the balancer finds none (see the wiring notes
//!   below for what to do then);
//! - a target refused by the cap keeps its failure run, so it is ejected on its next failure
//!   once a place is free.
//!
//! # Where the state lives
//! [`Target`](crate::target::Target) has its own health (active checks) and drain flags; the
//! ejection state lives here, indexed by the target's position in the pool's target list,
//! because the cap is a property of the pool. Wiring:
//! - keep the detector **beside the target list it indexes** (in `TargetSet`, built with
//!   `OutlierDetector::new(settings, targets.len(), epoch)`), so that a pick's index and the
//!   detector always agree; when DNS refresh builds a new list, build its detector with
//!   [`OutlierDetector::remapped`] so that ejections and failure runs follow their target;
//! - in the balancer, a target is a candidate when `target.is_available() &&
//!   !detector.is_ejected(i, now)`; read `now` once per pick;
//! - if that leaves no candidate (only possible with `max_ejection_percent: 100`, or with
//!   active health checks taking out the rest), pick again ignoring ejections, as Envoy's panic
//!   routing would: a passive guess should not turn a degraded pool into a dead one;
//! - after each attempt, [`OutlierDetector::record`] its [`Outcome`] with the index picked, and
//!   log a returned [`Ejection`].

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::breaker::millis;

/// The runtime form of outlier detection's config (`OutlierConfig` in cratopus-config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSettings {
    /// 5xx responses in a row that eject a target.
    pub consecutive_5xx: u32,
    /// Connect errors in a row that eject a target.
    pub consecutive_connect_errors: u32,
    /// Ejection time of a first ejection; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// The longest an ejection lasts.
    pub max_ejection_time: Duration,
    /// The largest share of the pool's targets ejected at once, in percent (0–100).
    pub max_ejection_percent: u32,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        OutlierSettings {
            consecutive_5xx: 5,
            consecutive_connect_errors: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// The result of one request to a target, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response. Count a response timeout (the gateway answers 504) and a connection
    /// lost after the request was sent (502) here too: the target was reached and failed.
    ServerError,
    /// No connection: refused, reset while connecting, connect timeout, TLS handshake failure.
    ConnectError,
}

impl Outcome {
    /// `ServerError` for 500–599, `Success` for anything else.
    pub fn from_status(status: u16) -> Outcome {
        if (500..600).contains(&status) {
            Outcome::ServerError
        } else {
            Outcome::Success
        }
    }
}

/// Why a target was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectReason {
    Consecutive5xx,
    ConsecutiveConnectErrors,
}

impl EjectReason {
    /// `consecutive_5xx` or `consecutive_connect_errors`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::Consecutive5xx => "consecutive_5xx",
            EjectReason::ConsecutiveConnectErrors => "consecutive_connect_errors",
        }
    }
}

/// A target was just ejected: returned once, to the caller whose result ejected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// The target's position in the pool's target list.
    pub target: usize,
    pub reason: EjectReason,
    /// How long the target is out.
    pub duration: Duration,
    /// The ejection multiplier used (1 for a first ejection; decays while the target behaves).
    pub times: u32,
}

/// Per-target state. All times are ms since the detector's epoch.
#[derive(Debug, Default)]
struct TargetState {
    /// End of the current ejection, or 0 when not ejected.
    until_ms: AtomicU64,
    run_5xx: AtomicU32,
    run_connect: AtomicU32,
    /// The ejection multiplier of the last ejection.
    times: AtomicU32,
    /// When the last ejection ended (or ends): where the multiplier's decay starts.
    back_at_ms: AtomicU64,
}

/// What [`OutlierDetector::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Available,
    Ejected,
    /// Was ejected, its time is up, and this call put it back.
    Returned,
}

/// Outlier detection for one pool's targets. Lock-free; share it between all requests.
#[derive(Debug)]
pub struct OutlierDetector {
    settings: OutlierSettings,
    epoch: Instant,
    targets: Box<[TargetState]>,
    /// Targets ejected now (including ones whose time is up but that nobody checked yet).
    ejected: AtomicUsize,
    ejections: AtomicU64,
}

impl OutlierDetector {
    /// A detector for `n_targets` targets, none ejected. `epoch` starts its time line: every
    /// later `now` must come from the same clock.
    pub fn new(settings: OutlierSettings, n_targets: usize, epoch: Instant) -> OutlierDetector {
        OutlierDetector {
            settings,
            epoch,
            targets: (0..n_targets).map(|_| TargetState::default()).collect(),
            ejected: AtomicUsize::new(0),
            ejections: AtomicU64::new(0),
        }
    }

    /// A detector for a new target list of `n_targets`, where `old_index(i)` is the position
    /// in this detector's list of the target now at `i` (`None` for a new target). Ejections,
    /// failure runs and multipliers follow their targets; new targets start clean. Results
    /// recorded on this detector while the copy is made may be missed, which only delays an
    /// ejection by a request or two.
    pub fn remapped(&self, n_targets: usize, old_index: impl Fn(usize) -> Option<usize>) -> OutlierDetector {
        let fresh = OutlierDetector::new(self.settings.clone(), n_targets, self.epoch);
        let mut ejected = 0;
        for (i, new) in fresh.targets.iter().enumerate() {
            let Some(old) = old_index(i).and_then(|j| self.targets.get(j)) else {
                continue;
            };
            let until = old.until_ms.load(Ordering::Acquire);
            ejected += usize::from(until != 0);
            new.until_ms.store(until, Ordering::Relaxed);
            for (to, from) in [
                (&new.run_5xx, &old.run_5xx),
                (&new.run_connect, &old.run_connect),
                (&new.times, &old.times),
            ] {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            new.back_at_ms
                .store(old.back_at_ms.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        fresh.ejected.store(ejected, Ordering::Release);
        fresh
    }

    pub fn settings(&self) -> &OutlierSettings {
        &self.settings
    }

    /// Number of targets this detector covers.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether the target at `target` is ejected at `now`. A target whose time is up is put back
    /// by this call. One atomic load when the target is not ejected. `false` for an index out of
    /// range.
    pub fn is_ejected(&self, target: usize, now: Instant) -> bool {
        self.targets
            .get(target)
            .is_some_and(|t| self.check(t, self.ms(now)) == Check::Ejected)
    }

    /// The time left of the target's ejection, `None` when it is not ejected (for the admin
    /// API).
    pub fn ejected_for(&self, target: usize, now: Instant) -> Option<Duration> {
        let until = self.targets.get(target)?.until_ms.load(Ordering::Acquire);
        let now_ms = self.ms(now);
        (until > now_ms).then(|| Duration::from_millis(until - now_ms))
    }

    /// Targets ejected now. Counts a target whose time is up until someone checks it
    /// ([`is_ejected`](Self::is_ejected), [`tick`](Self::tick)).
    pub fn ejected_count(&self) -> usize {
        self.ejected.load(Ordering::Acquire)
    }

    /// How many ejections there have been (a counter for metrics).
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Puts back every target whose ejection time is up, calling `on_return` with its index (to
    /// log "back in rotation"). For a pool's background task; picks do the same lazily, target
    /// by target.
    pub fn tick(&self, now: Instant, mut on_return: impl FnMut(usize)) {
        let now_ms = self.ms(now);
        for (i, t) in self.targets.iter().enumerate() {
            if self.check(t, now_ms) == Check::Returned {
                on_return(i);
            }
        }
    }

    /// Records the outcome of one request to the target at `target`; returns the ejection it
    /// caused, if any. Results for a target that is ejected (requests that were in flight when
    /// it was ejected) are ignored.
    pub fn record(&self, target: usize, outcome: Outcome, now: Instant) -> Option<Ejection> {
        let t = self.targets.get(target)?;
        let now_ms = self.ms(now);
        if self.check(t, now_ms) == Check::Ejected {
            return None;
        }
        let (run, threshold, reason) = match outcome {
            Outcome::Success => {
                reset(&t.run_5xx);
                reset(&t.run_connect);
                return None;
            }
            Outcome::ServerError => {
                reset(&t.run_connect); // a connection was made
                (&t.run_5xx, self.settings.consecutive_5xx, EjectReason::Consecutive5xx)
            }
            Outcome::ConnectError => (
                &t.run_connect,
                self.settings.consecutive_connect_errors,
                EjectReason::ConsecutiveConnectErrors,
            ),
        };
        let threshold = threshold.max(1);
        // Stop counting at the threshold: a run held there by the cap ejects on its next
        // failure, and never wraps around.
        let n = if run.load(Ordering::Relaxed) >= threshold {
            threshold
        } else {
            run.fetch_add(1, Ordering::Relaxed).saturating_add(1)
        };
        if n < threshold {
            return None;
        }
        self.eject(target, t, reason, now_ms)
    }

    fn eject(&self, index: usize, t: &TargetState, reason: EjectReason, now_ms: u64) -> Option<Ejection> {
        if !self.reserve(now_ms) {
            return None;
        }
        let base = millis(self.settings.base_ejection_time).max(1);
        let max = millis(self.settings.max_ejection_time).max(base);
        let back_at = t.back_at_ms.load(Ordering::Relaxed);
        let previous = t.times.load(Ordering::Relaxed);
        let healthy_steps = u32::try_from(now_ms.saturating_sub(back_at) / base).unwrap_or(u32::MAX);
        let times = previous.saturating_sub(healthy_steps).saturating_add(1);
        let duration = base.saturating_mul(u64::from(times)).min(max);
        let until = now_ms.saturating_add(duration).max(1);
        // Among callers ejecting the same target at once, one wins; the others give their
        // place under the cap back.
        if t.until_ms
            .compare_exchange(0, until, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        t.times.store(times, Ordering::Relaxed);
        t.back_at_ms.store(until, Ordering::Relaxed);
        t.run_5xx.store(0, Ordering::Relaxed);
        t.run_connect.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        Some(Ejection {
            target: index,
            reason,
            duration: Duration::from_millis(duration),
            times,
        })
    }

    /// Takes a place under the ejection cap. When the cap is reached, targets whose time is up
    /// may still hold places nobody gave back yet: put those back and try once more.
    fn reserve(&self, now_ms: u64) -> bool {
        let cap = self.targets.len() as u64 * u64::from(self.settings.max_ejection_percent.min(100));
        let take = |ejected: usize| ((ejected as u64 + 1) * 100 <= cap).then_some(ejected + 1);
        for first in [true, false] {
            if self
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
                .is_ok()
            {
                return true;
            }
            if first {
                for t in self.targets.iter() {
                    self.check(t, now_ms);
                }
            }
        }
        false
    }

    /// Whether `t` is ejected at `now_ms`; puts it back (once, whoever gets here first) when its
    /// time is up.
    fn check(&self, t: &TargetState, now_ms: u64) -> Check {
        let until = t.until_ms.load(Ordering::Acquire);
        if until == 0 {
            Check::Available
        } else if now_ms < until {
            Check::Ejected
        } else if t
            .until_ms
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            Check::Returned
        } else {
            // Someone else put it back (and maybe ejected it again): look once more.
            match t.until_ms.load(Ordering::Acquire) {
                0 => Check::Available,
                u if now_ms < u => Check::Ejected,
                _ => Check::Available,
            }
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

/// Sets a run counter to zero, without writing when it already is (the common case on the hot
/// path, which then leaves the cache line shared).
fn reset(run: &AtomicU32) {
    if run.load(Ordering::Relaxed) != 0 {
        run.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn settings(percent: u32) -> OutlierSettings {
        OutlierSettings {
            consecutive_5xx: 3,
            consecutive_connect_errors: 2,
            base_ejection_time: secs(10),
            max_ejection_time: secs(25),
            max_ejection_percent: percent,
        }
    }

    /// Records `n` results; returns the last one's ejection.
    fn repeat(d: &OutlierDetector, target: usize, outcome: Outcome, n: usize, now: Instant) -> Option<Ejection> {
        (0..n).map(|_| d.record(target, outcome, now)).last().flatten()
    }

    #[test]
    fn consecutive_5xx_eject_and_a_success_ends_the_run() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(100), 2, t0);
        assert_eq!(repeat(&d, 0, Outcome::ServerError, 2, t0), None);
        assert_eq!(d.record(0, Outcome::Success, t0), None);
        assert_eq!(repeat(&d, 0, Outcome::ServerError, 2, t0), None);
        let e = d.record(0, Outcome::from_status(503), t0).expect("ejected");
        assert_eq!(
            e,
            Ejection {
                target: 0,
                reason: EjectReason::Consecutive5xx,
                duration: secs(10),
                times: 1
            }
        );
        assert!(d.is_ejected(0, t0 + secs(9)));
        assert!(!d.is_ejected(1, t0 + secs(9)));
        assert_eq!(d.ejected_for(0, t0 + secs(4)), Some(secs(6)));
        assert_eq!(d.ejected_count(), 1);
        // Results of requests still in flight when it was ejected change nothing.
        assert_eq!(repeat(&d, 0, Outcome::ServerError, 5, t0 + secs(1)), None);
        assert!(!d.is_ejected(0, t0 + secs(10)));
        assert_eq!(d.ejected_count(), 0);
        assert_eq!(d.ejections(), 1);
    }

    #[test]
    fn connect_errors_and_5xx_are_counted_apart() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(100), 1, t0);
        assert_eq!(d.record(0, Outcome::ConnectError, t0), None);
        // A 5xx means a connection was made: the connect-error run starts over.
        assert_eq!(d.record(0, Outcome::ServerError, t0), None);
        assert_eq!(d.record(0, Outcome::ConnectError, t0), None);
        // Connect errors do not end the 5xx run: this is its second 5xx.
        assert_eq!(d.record(0, Outcome::ServerError, t0), None);
        let e = repeat(&d, 0, Outcome::ConnectError, 2, t0).expect("ejected");
        assert_eq!(e.reason, EjectReason::ConsecutiveConnectErrors);
        assert_eq!(Outcome::from_status(404), Outcome::Success);
        assert_eq!(Outcome::from_status(599), Outcome::ServerError);
    }

    #[test]
    fn ejection_time_grows_is_capped_and_decays() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(100), 1, t0);
        let mut now = t0;
        let mut durations = Vec::new();
        for _ in 0..4 {
            let e = repeat(&d, 0, Outcome::ServerError, 3, now).expect("ejected");
            durations.push(e.duration);
            now += e.duration; // fails again right when it comes back
        }
        assert_eq!(durations, [secs(10), secs(20), secs(25), secs(25)]);
        // 20 s of good behaviour take two off the multiplier (4 → 2): the next is 3 × 10 s,
        // capped at 25 s; after a long quiet time it starts over at 10 s.
        let e = repeat(&d, 0, Outcome::ServerError, 3, now + secs(20)).unwrap();
        assert_eq!((e.times, e.duration), (3, secs(25)));
        let now = now + secs(20) + e.duration + secs(3600);
        let e = repeat(&d, 0, Outcome::ServerError, 3, now).unwrap();
        assert_eq!((e.times, e.duration), (1, secs(10)));
    }

    #[test]
    fn the_cap_keeps_targets_in_rotation() {
        let t0 = Instant::now();
        // 4 targets at 50 %: two may be out at once.
        let d = OutlierDetector::new(settings(50), 4, t0);
        assert!(repeat(&d, 0, Outcome::ServerError, 3, t0).is_some());
        assert!(repeat(&d, 1, Outcome::ServerError, 3, t0 + secs(5)).is_some());
        assert_eq!(repeat(&d, 2, Outcome::ServerError, 3, t0 + secs(5)), None);
        assert_eq!(d.ejected_count(), 2);
        // Target 0 is back at 10 s (nobody looked at it): its place goes to target 2, whose run
        // was kept, on its next failure.
        let e = d.record(2, Outcome::ServerError, t0 + secs(10)).expect("ejected");
        assert_eq!(e.target, 2);
        assert!(!d.is_ejected(0, t0 + secs(10)));
        assert_eq!(d.ejected_count(), 2);

        // One target at 50 % is never ejected; at 100 % it is.
        let one = OutlierDetector::new(settings(50), 1, t0);
        assert_eq!(repeat(&one, 0, Outcome::ServerError, 10, t0), None);
        let one = OutlierDetector::new(settings(100), 1, t0);
        assert!(repeat(&one, 0, Outcome::ServerError, 3, t0).is_some());
        // 0 % turns ejection off.
        let none = OutlierDetector::new(settings(0), 3, t0);
        assert_eq!(repeat(&none, 0, Outcome::ConnectError, 10, t0), None);
    }

    #[test]
    fn tick_returns_targets_whose_time_is_up() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(100), 3, t0);
        repeat(&d, 0, Outcome::ServerError, 3, t0);
        repeat(&d, 2, Outcome::ServerError, 3, t0 + secs(5));
        let mut back = Vec::new();
        d.tick(t0 + secs(12), |i| back.push(i));
        assert_eq!(back, [0]);
        assert_eq!(d.ejected_count(), 1);
        d.tick(t0 + secs(15), |i| back.push(i));
        assert_eq!(back, [0, 2]);
        assert_eq!(d.ejected_count(), 0);
    }

    #[test]
    fn remapping_carries_state_with_the_target() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(100), 3, t0);
        repeat(&d, 1, Outcome::ServerError, 3, t0);
        repeat(&d, 2, Outcome::ConnectError, 1, t0);
        // New list: old 2, a new target, old 1 (old 0 is gone).
        let map = [Some(2), None, Some(1)];
        let r = d.remapped(3, |i| map[i]);
        assert_eq!(r.len(), 3);
        assert!(r.is_ejected(2, t0 + secs(1)));
        assert!(!r.is_ejected(0, t0 + secs(1)));
        assert_eq!(r.ejected_count(), 1);
        // Old 2's connect-error run continues.
        assert!(r.record(0, Outcome::ConnectError, t0).is_some());
        assert_eq!(r.record(1, Outcome::ConnectError, t0), None);
    }

    #[test]
    fn out_of_range_indices_are_harmless() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(OutlierSettings::default(), 0, t0);
        assert!(d.is_empty());
        assert_eq!(d.record(3, Outcome::ServerError, t0), None);
        assert!(!d.is_ejected(3, t0));
        assert_eq!(d.ejected_for(3, t0), None);
    }

    /// Threads failing every target at once never eject more than the cap allows, and the
    /// ejected count matches the targets actually ejected.
    #[test]
    fn the_cap_holds_under_concurrency() {
        const TARGETS: usize = 10;
        let t0 = Instant::now();
        let d = Arc::new(OutlierDetector::new(settings(30), TARGETS, t0));
        let handles: Vec<_> = (0..8)
            .map(|id| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(id);
                    let mut ejected = 0;
                    for round in 0..20_000u64 {
                        let now = t0 + Duration::from_millis(round * 5);
                        let outcome = match rng.u8(..10) {
                            0 => Outcome::Success,
                            1..5 => Outcome::ConnectError,
                            _ => Outcome::ServerError,
                        };
                        ejected += usize::from(d.record(rng.usize(..TARGETS), outcome, now).is_some());
                        d.is_ejected(rng.usize(..TARGETS), now);
                        // A place is taken before a target is marked and given back after it
                        // is unmarked, so the count bounds the marked targets at every moment.
                        let out = d.ejected_count();
                        assert!(out <= 3, "{out} targets ejected");
                    }
                    ejected
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total as u64, d.ejections());
        assert!(total > 10);
        let really = d
            .targets
            .iter()
            .filter(|t| t.until_ms.load(Ordering::Relaxed) != 0)
            .count();
        assert_eq!(d.ejected_count(), really);
        assert!(really <= 3);
    }
}
