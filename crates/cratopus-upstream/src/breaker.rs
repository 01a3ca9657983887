//! A circuit breaker per upstream target: it stops sending requests to a target that keeps
//! failing, so that while the target is broken clients get a fast 503 instead of a timeout per
//! request, and the target is not buried under traffic while it tries to recover.
//!
//! ```text
//!            N consecutive failures, or
//!            error rate ≥ threshold over the window
//!   Closed ───────────────────────────────────────────▶ Open ◀──────────┐
//!     ▲                                                  │              │ any probe fails
//!     │ `half_open_probes` probes succeed                │ `open_for`   │
//!     │                                                  ▼ elapsed      │
//!     └──────────────────────────────────────────── HalfOpen ───────────┘
//! ```
//!
//! - **Closed**: every request passes. Results are counted twice: a run of consecutive failures
//!   (a success ends it), and per-bucket request and failure counts over a rolling `window`.
//!   The breaker opens when the run reaches `consecutive_failures`, or when the window holds at
//!   least `min_requests` results of which a share of at least `error_rate` failed. The first
//!   trigger catches a target that went down hard; the second a target failing intermittently
//!   (every other request), where no run ever gets long.
//! - **Open**: [`Breaker::try_acquire`] refuses at once (the gateway answers 503, with a
//!   `Retry-After` from [`Rejected::retry_after`]) until `open_for` has passed since opening.
//! - **HalfOpen**: the first request after `open_for` moves the breaker here and is a probe.
//!   At most `half_open_probes` probes are in flight at once; everything else is refused as in
//!   Open. When `half_open_probes` probes have succeeded the breaker closes with a fresh window;
//!   the first probe that fails re-opens it for another `open_for`. A probe that ends frees its
//!   place for the next one, so a single hung probe (it holds its place until its request times
//!   out, which then counts as a failure) does not keep the others from closing the breaker. A
//!   probe whose permit is dropped without a result (the client went away) counts as nothing
//!   and gives its place back.
//!
//! The transition to HalfOpen is lazy: nothing runs on a timer, the first request that finds
//! the open time elapsed makes it. [`Breaker::state`] therefore says `Open` until that request
//! comes.
//!
//! # Concurrency
//! The state, a generation number and the state's data (the open deadline, or the half-open
//! probe counts) are packed into one `AtomicU64`, so every transition is one compare-exchange
//! and happens exactly once, reported to exactly one caller (who logs it). Each permit remembers
//! the generation it was issued in; a result that comes back after the state moved on (a slow
//! request admitted while Closed that fails after the breaker already opened) is ignored rather
//! than extending the open time or counting as a probe.
//!
//! Per request in the closed state the cost is: one atomic load in `try_acquire`; in `record`
//! one load, one compare-exchange on the current window bucket, and on failures one
//! `fetch_add` (plus, only when a failure is recorded, a read of the window's buckets).
//!
//! # Time
//! Nothing here reads the clock: every call takes `now`, and the breaker measures time from
//! the `epoch` it was built with (resolution 1 ms). Tests pass `epoch + n ms`; the gateway
//! passes `Instant::now()` (read once per request).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The runtime form of a circuit breaker's config (`CircuitBreakerConfig` in cratopus-config).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Failures in a row (with no success between) that open the breaker.
    pub consecutive_failures: u32,
    /// Share of failed requests in the window, from 0.0 to 1.0, that opens the breaker.
    pub error_rate: f64,
    /// Requests the window must hold before `error_rate` is looked at, so that two failures
    /// out of three requests at night do not open it.
    pub min_requests: u32,
    /// Length of the rolling window over which the error rate is measured.
    pub window: Duration,
    /// Time the breaker stays open before it lets probes through.
    pub open_for: Duration,
    /// Probes let through in the half-open state; that many must succeed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(10),
            half_open_probes: 3,
        }
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests pass; results are counted.
    Closed,
    /// Requests are refused until the open time has passed.
    Open,
    /// A few probe requests pass; their results decide between Closed and Open.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`: for logs, metrics labels and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A state change, reported to the one caller whose call made it, so that it is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Closed → Open or HalfOpen → Open.
    Opened,
    /// Open → HalfOpen (reported by [`Permit::transition`] of the first probe).
    HalfOpened,
    /// HalfOpen → Closed.
    Closed,
}

/// Why [`Breaker::try_acquire`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// `Open`, or `HalfOpen` when every probe place is taken.
    pub state: BreakerState,
    /// Time until the breaker lets probes through, when it is open: a `Retry-After` for the
    /// client. `None` when half-open (the probes decide, no time is known).
    pub retry_after: Option<Duration>,
}

/// Requests and failures in the breaker's rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    pub requests: u64,
    pub failures: u64,
}

/// A circuit breaker for one target. Share it by reference (or `Arc`) between all requests.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    /// `half_open_probes` clamped to what the state word can count.
    probes: u64,
    open_for_ms: u64,
    epoch: Instant,
    /// The packed state: see [`Word`].
    word: AtomicU64,
    /// The current run of failures (Closed only).
    consecutive: AtomicU32,
    window: RollingCounts,
    opens: AtomicU64,
}

impl Breaker {
    /// A closed breaker. `epoch` starts its time line: every later `now` must come from the same
    /// clock (an earlier instant counts as the epoch).
    pub fn new(settings: BreakerSettings, epoch: Instant) -> Breaker {
        Breaker {
            probes: u64::from(settings.half_open_probes).clamp(1, HALF_MASK),
            open_for_ms: millis(settings.open_for),
            window: RollingCounts::new(settings.window),
            settings,
            epoch,
            word: AtomicU64::new(Word::closed(0).0),
            consecutive: AtomicU32::new(0),
            opens: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Asks to send one request. `Ok` carries the permit the result is recorded with; `Err`
    /// means refuse the request now (503) and do not contact the target.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        let now_ms = self.ms(now);
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let w = Word(cur);
            let next = match w.state() {
                BreakerState::Closed => return Ok(Permit::new(self, w.generation(), false, None)),
                BreakerState::Open => {
                    let until = w.payload();
                    if now_ms < until {
                        return Err(Rejected {
                            state: BreakerState::Open,
                            retry_after: Some(Duration::from_millis(until - now_ms)),
                        });
                    }
                    Word::half_open(next_generation(w.generation()), 1, 0)
                }
                BreakerState::HalfOpen => {
                    if w.inflight() >= self.probes {
                        return Err(Rejected {
                            state: BreakerState::HalfOpen,
                            retry_after: None,
                        });
                    }
                    Word::half_open(w.generation(), w.inflight() + 1, w.successes())
                }
            };
            match self
                .word
                .compare_exchange_weak(cur, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let t = (w.state() == BreakerState::Open).then_some(Transition::HalfOpened);
                    return Ok(Permit::new(self, next.generation(), true, t));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) would admit a request now, without taking a
    /// place. For a balancer that skips targets whose breaker refuses, so that one open breaker
    /// sends its share to the other targets instead of answering 503. Reads one atomic.
    pub fn would_admit(&self, now: Instant) -> bool {
        let w = Word(self.word.load(Ordering::Acquire));
        match w.state() {
            BreakerState::Closed => true,
            BreakerState::Open => self.ms(now) >= w.payload(),
            BreakerState::HalfOpen => w.inflight() < self.probes,
        }
    }

    /// The current state. `Open` until the first request after the open time (see the module
    /// docs).
    pub fn state(&self) -> BreakerState {
        Word(self.word.load(Ordering::Acquire)).state()
    }

    /// How many times the breaker has opened since it was built (a counter for metrics).
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// The current run of failures (meaningful while Closed).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// The rolling window's counts at `now` (Closed only; cleared when the breaker closes).
    pub fn window(&self, now: Instant) -> WindowCounts {
        let (requests, failures) = self.window.sum(self.ms(now));
        WindowCounts { requests, failures }
    }

    fn ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }

    fn record(&self, generation: u32, probe: bool, success: bool, now: Instant) -> Option<Transition> {
        let now_ms = self.ms(now);
        if probe {
            return self.record_probe(generation, success, now_ms);
        }
        let w = Word(self.word.load(Ordering::Acquire));
        if w.state() != BreakerState::Closed || w.generation() != generation {
            return None; // admitted before the last transition: no longer relevant
        }
        if success {
            // Load first: the common case (no run) then writes nothing to the shared line.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            self.window.add(now_ms, 1, 0);
            return None;
        }
        self.window.add(now_ms, 1, 1);
        let run = self.consecutive.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if run < self.settings.consecutive_failures && !self.rate_exceeded(now_ms) {
            return None;
        }
        let open = Word::open(next_generation(generation), self.open_until(now_ms));
        // Of all callers that see the trigger at once, one wins and reports it.
        self.word
            .compare_exchange(w.0, open.0, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| self.opened())
    }

    fn record_probe(&self, generation: u32, success: bool, now_ms: u64) -> Option<Transition> {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let w = Word(cur);
            if w.state() != BreakerState::HalfOpen || w.generation() != generation {
                return None; // another probe already decided this episode
            }
            let (next, transition) = if !success {
                let until = self.open_until(now_ms);
                (Word::open(next_generation(generation), until), Transition::Opened)
            } else if w.successes() + 1 >= self.probes {
                // Start the closed state with no history: the failures that opened the breaker
                // must not count again. Cleared before the switch so that nothing counted in the
                // new closed state is lost; if the switch fails the state is Open, where the
                // counts are unused.
                self.consecutive.store(0, Ordering::Relaxed);
                self.window.clear();
                (Word::closed(next_generation(generation)), Transition::Closed)
            } else {
                let inflight = w.inflight().saturating_sub(1);
                (
                    Word::half_open(generation, inflight, w.successes() + 1),
                    Transition::HalfOpened,
                )
            };
            match self
                .word
                .compare_exchange_weak(cur, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return match transition {
                        Transition::Opened => Some(self.opened()),
                        Transition::Closed => Some(Transition::Closed),
                        Transition::HalfOpened => None, // still half-open: no change to report
                    };
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// A probe permit dropped without a result gives its place back.
    fn release_probe(&self, generation: u32) {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let w = Word(cur);
            if w.state() != BreakerState::HalfOpen || w.generation() != generation || w.inflight() == 0 {
                return;
            }
            let next = Word::half_open(generation, w.inflight() - 1, w.successes());
            match self
                .word
                .compare_exchange_weak(cur, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn opened(&self) -> Transition {
        self.opens.fetch_add(1, Ordering::Relaxed);
        Transition::Opened
    }

    fn open_until(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.open_for_ms).min(PAYLOAD_MASK)
    }

    fn rate_exceeded(&self, now_ms: u64) -> bool {
        let (requests, failures) = self.window.sum(now_ms);
        requests > 0
            && requests >= u64::from(self.settings.min_requests)
            && failures as f64 >= self.settings.error_rate * requests as f64
    }
}

/// Leave to send one request through a [`Breaker`]. Record its result with
/// [`record`](Permit::record) when the response head (or the error) is known, or
/// [`detach`](Permit::detach) it to record when a streamed body has ended. Dropping it
/// unrecorded (the request was cancelled) counts as nothing.
#[derive(Debug)]
#[must_use = "record the request's result with `Permit::record`"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    generation: u32,
    probe: bool,
    transition: Option<Transition>,
    recorded: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, generation: u32, probe: bool, transition: Option<Transition>) -> Self {
        Permit {
            breaker,
            generation,
            probe,
            transition,
            recorded: false,
        }
    }

    /// Whether this request is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// `Some(HalfOpened)` for the one permit whose acquisition moved the breaker from Open to
    /// HalfOpen, so that the caller logs it.
    pub fn transition(&self) -> Option<Transition> {
        self.transition
    }

    /// Records the request's result; returns the state change it caused, if any (`Opened` or
    /// `Closed`), for the caller to log.
    pub fn record(mut self, success: bool, now: Instant) -> Option<Transition> {
        self.recorded = true;
        self.breaker.record(self.generation, self.probe, success, now)
    }

    /// The permit without its borrow of the breaker, for a result known only later (when a
    /// streamed response body ends). Hand it back with [`Breaker::redeem`] or
    /// [`Breaker::release`]; the holder keeps the breaker alive meanwhile.
    pub fn detach(mut self) -> Ticket {
        self.recorded = true; // the ticket carries the duty now
        Ticket {
            generation: self.generation,
            probe: self.probe,
        }
    }
}

/// A [`Permit`] detached from the breaker (see [`Permit::detach`]). Dropping it unredeemed
/// would keep a half-open probe's place taken: give it back with [`Breaker::release`].
#[derive(Debug)]
#[must_use = "redeem it with `Breaker::redeem` or give it back with `Breaker::release`"]
pub struct Ticket {
    generation: u32,
    probe: bool,
}

impl Breaker {
    /// Records the result of the request `ticket` was issued for, as [`Permit::record`].
    pub fn redeem(&self, ticket: Ticket, success: bool, now: Instant) -> Option<Transition> {
        self.record(ticket.generation, ticket.probe, success, now)
    }

    /// Gives `ticket` back without a result (the request was cancelled): counts as nothing.
    pub fn release(&self, ticket: Ticket) {
        if ticket.probe {
            self.release_probe(ticket.generation);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe(self.generation);
        }
    }
}

// The state word: bits 62–63 the state, bits 40–61 a generation that changes with every
// transition, bits 0–39 the state's data: the open deadline in ms since the epoch (2^40 ms is
// about 34 years) when Open, probes in flight (bits 20–39) and probe successes (bits 0–19)
// when HalfOpen, zero when Closed.
const STATE_SHIFT: u32 = 62;
const GEN_SHIFT: u32 = 40;
const GEN_MASK: u64 = (1 << 22) - 1;
const PAYLOAD_MASK: u64 = (1 << 40) - 1;
const HALF_SHIFT: u32 = 20;
const HALF_MASK: u64 = (1 << 20) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn pack(state: u64, generation: u32, payload: u64) -> Word {
        Word(state << STATE_SHIFT | (u64::from(generation) & GEN_MASK) << GEN_SHIFT | payload & PAYLOAD_MASK)
    }
    fn closed(generation: u32) -> Word {
        Word::pack(0, generation, 0)
    }
    fn open(generation: u32, until_ms: u64) -> Word {
        Word::pack(1, generation, until_ms)
    }
    fn half_open(generation: u32, inflight: u64, successes: u64) -> Word {
        let payload = (inflight & HALF_MASK) << HALF_SHIFT | successes & HALF_MASK;
        Word::pack(2, generation, payload)
    }
    fn state(self) -> BreakerState {
        match self.0 >> STATE_SHIFT {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
    fn generation(self) -> u32 {
        ((self.0 >> GEN_SHIFT) & GEN_MASK) as u32
    }
    fn payload(self) -> u64 {
        self.0 & PAYLOAD_MASK
    }
    fn inflight(self) -> u64 {
        (self.0 >> HALF_SHIFT) & HALF_MASK
    }
    fn successes(self) -> u64 {
        self.0 & HALF_MASK
    }
}

fn next_generation(generation: u32) -> u32 {
    ((u64::from(generation) + 1) & GEN_MASK) as u32
}

/// Whole milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Buckets of a [`RollingCounts`] window.
const BUCKETS: u64 = 10;
const TAG_BITS: u32 = 24;
const COUNT_BITS: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Two counters (`a`, `b`: requests and failures, or requests and retries) over a rolling
/// window of ten buckets, lock-free. Shared by the breaker and the retry budget.
///
/// Each bucket is one `AtomicU64`: a 24-bit tag (the bucket's number, time / bucket width,
/// modulo 2^24) and two saturating 20-bit counts (1,048,575 per bucket, per target or route:
/// past that the share is still right within rounding). A bucket whose tag is not the
/// expected number is from an earlier round and is counted as empty; adding to it starts it
/// afresh. So the window needs no timer, and a quiet window costs nothing. The window seen at
/// any moment covers the current bucket and the nine before it, between 90% and 100% of its
/// nominal length.
#[derive(Debug)]
pub(crate) struct RollingCounts {
    width_ms: u64,
    slots: [AtomicU64; BUCKETS as usize],
}

impl RollingCounts {
    pub(crate) fn new(window: Duration) -> RollingCounts {
        RollingCounts {
            width_ms: (millis(window) / BUCKETS).max(1),
            slots: Default::default(),
        }
    }

    /// Adds `a` and `b` to the bucket of `now_ms`.
    pub(crate) fn add(&self, now_ms: u64, a: u64, b: u64) {
        let number = now_ms / self.width_ms;
        let tag = number & TAG_MASK;
        let slot = &self.slots[(number % BUCKETS) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let cur_tag = cur >> (2 * COUNT_BITS);
            let (ca, cb) = if cur_tag == tag {
                ((cur >> COUNT_BITS) & COUNT_MASK, cur & COUNT_MASK)
            } else if tag.wrapping_sub(cur_tag) & TAG_MASK > TAG_MASK / 2 {
                // The bucket already holds a later round: this result was measured long
                // before it was recorded. Drop it rather than wipe newer counts.
                return;
            } else {
                (0, 0)
            };
            let next = tag << (2 * COUNT_BITS) | (ca + a).min(COUNT_MASK) << COUNT_BITS | (cb + b).min(COUNT_MASK);
            if next == cur {
                return;
            }
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The sums of `a` and `b` over the window ending at `now_ms`.
    pub(crate) fn sum(&self, now_ms: u64) -> (u64, u64) {
        let number = now_ms / self.width_ms;
        let (mut a, mut b) = (0, 0);
        for back in 0..BUCKETS.min(number + 1) {
            let n = number - back;
            let word = self.slots[(n % BUCKETS) as usize].load(Ordering::Relaxed);
            if word >> (2 * COUNT_BITS) == n & TAG_MASK {
                a += (word >> COUNT_BITS) & COUNT_MASK;
                b += word & COUNT_MASK;
            }
        }
        (a, b)
    }

    pub(crate) fn clear(&self) {
        for slot in &self.slots {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            error_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    fn fail(b: &Breaker, at: Instant) -> Option<Transition> {
        b.try_acquire(at).expect("admitted").record(false, at)
    }

    fn succeed(b: &Breaker, at: Instant) -> Option<Transition> {
        b.try_acquire(at).expect("admitted").record(true, at)
    }

    #[test]
    fn word_round_trips() {
        let w = Word::open(GEN_MASK as u32, PAYLOAD_MASK);
        assert_eq!(
            (w.state(), w.generation(), w.payload()),
            (BreakerState::Open, GEN_MASK as u32, PAYLOAD_MASK)
        );
        let w = Word::half_open(7, 3, HALF_MASK);
        assert_eq!(
            (w.state(), w.generation(), w.inflight(), w.successes()),
            (BreakerState::HalfOpen, 7, 3, HALF_MASK)
        );
        assert_eq!(next_generation(GEN_MASK as u32), 0);
    }

    #[test]
    fn opens_after_consecutive_failures_and_refuses_fast() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        assert_eq!(fail(&b, t0), None);
        assert_eq!(fail(&b, t0), None);
        assert_eq!(succeed(&b, t0), None); // ends the run
        assert_eq!(fail(&b, t0), None);
        assert_eq!(fail(&b, t0), None);
        assert_eq!(b.consecutive_failures(), 2);
        assert_eq!(fail(&b, t0 + ms(100)), Some(Transition::Opened));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.opens(), 1);
        let refused = b.try_acquire(t0 + ms(1100)).unwrap_err();
        assert_eq!(refused.state, BreakerState::Open);
        assert_eq!(refused.retry_after, Some(ms(4000)));
        assert!(!b.would_admit(t0 + ms(5099)));
        assert!(b.would_admit(t0 + ms(5100)));
    }

    #[test]
    fn opens_on_error_rate_once_the_window_has_enough_requests() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        // Alternating results never make a run of 3, but half of them fail.
        for i in 0..9u64 {
            let at = t0 + ms(i * 100);
            let t = if i % 2 == 0 { fail(&b, at) } else { succeed(&b, at) };
            assert_eq!(t, None, "request {i}: only {} in the window", i + 1);
        }
        assert_eq!(
            b.window(t0 + ms(900)),
            WindowCounts {
                requests: 9,
                failures: 5
            }
        );
        // The tenth request reaches min_requests: 5 of 10 failed.
        assert_eq!(succeed(&b, t0 + ms(900)), None);
        assert_eq!(fail(&b, t0 + ms(950)), Some(Transition::Opened));
    }

    #[test]
    fn old_results_leave_the_window() {
        let t0 = Instant::now();
        let s = BreakerSettings {
            consecutive_failures: 100,
            ..settings()
        };
        let b = Breaker::new(s, t0);
        for _ in 0..8 {
            fail(&b, t0);
        }
        // 12 s later the failures are gone: 1 failure out of 10 requests.
        let later = t0 + ms(12_000);
        assert_eq!(b.window(later), WindowCounts::default());
        for _ in 0..9 {
            assert_eq!(succeed(&b, later), None);
        }
        assert_eq!(fail(&b, later), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            b.window(later),
            WindowCounts {
                requests: 10,
                failures: 1
            }
        );
    }

    #[test]
    fn half_open_admits_limited_probes_and_closes_on_their_success() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for _ in 0..3 {
            fail(&b, t0);
        }
        let t1 = t0 + ms(5000);
        let p1 = b.try_acquire(t1).unwrap();
        assert!(p1.is_probe());
        assert_eq!(p1.transition(), Some(Transition::HalfOpened));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p2 = b.try_acquire(t1).unwrap();
        assert_eq!(p2.transition(), None);
        let refused = b.try_acquire(t1).unwrap_err();
        assert_eq!(
            refused,
            Rejected {
                state: BreakerState::HalfOpen,
                retry_after: None
            }
        );
        assert!(!b.would_admit(t1));
        assert_eq!(p1.record(true, t1), None);
        // The first probe's place is free again: p2 may hang, p3 can still close the breaker.
        let p3 = b.try_acquire(t1).unwrap();
        assert!(p3.is_probe());
        assert!(b.try_acquire(t1).is_err());
        assert_eq!(p3.record(true, t1), Some(Transition::Closed));
        // The hung probe's late result belongs to an episode that is over.
        assert_eq!(p2.record(false, t1), None);
        assert_eq!(b.state(), BreakerState::Closed);
        // Closed with a fresh history: the failures that opened it are forgotten.
        assert_eq!(b.window(t1), WindowCounts::default());
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(fail(&b, t1), None);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_open_time() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for _ in 0..3 {
            fail(&b, t0);
        }
        let t1 = t0 + ms(6000);
        let p1 = b.try_acquire(t1).unwrap();
        let p2 = b.try_acquire(t1).unwrap();
        assert_eq!(p1.record(false, t1), Some(Transition::Opened));
        assert_eq!(b.opens(), 2);
        // The other probe's result belongs to the episode that just ended.
        assert_eq!(p2.record(true, t1), None);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(t1 + ms(1000)).unwrap_err().retry_after, Some(ms(4000)));
        assert!(b.try_acquire(t1 + ms(5000)).is_ok());
    }

    #[test]
    fn results_from_before_a_transition_are_ignored() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        let slow = b.try_acquire(t0).unwrap();
        for _ in 0..3 {
            fail(&b, t0);
        }
        // A request admitted while closed fails after the breaker opened: it must not count.
        assert_eq!(slow.record(false, t0 + ms(4000)), None);
        assert_eq!(b.opens(), 1);
        assert_eq!(b.try_acquire(t0 + ms(4000)).unwrap_err().retry_after, Some(ms(1000)));
    }

    #[test]
    fn a_dropped_probe_gives_its_place_back() {
        let t0 = Instant::now();
        let s = BreakerSettings {
            half_open_probes: 1,
            ..settings()
        };
        let b = Breaker::new(s, t0);
        for _ in 0..3 {
            fail(&b, t0);
        }
        let t1 = t0 + ms(5000);
        let probe = b.try_acquire(t1).unwrap();
        assert!(b.try_acquire(t1).is_err());
        drop(probe); // the client went away
        let probe = b.try_acquire(t1).unwrap();
        assert_eq!(probe.record(true, t1), Some(Transition::Closed));
        // A closed-state permit dropped unrecorded changes nothing.
        drop(b.try_acquire(t1).unwrap());
        assert_eq!(b.window(t1), WindowCounts::default());
    }

    #[test]
    fn a_detached_permit_is_redeemed_or_released_later() {
        let t0 = Instant::now();
        let s = BreakerSettings {
            half_open_probes: 1,
            ..settings()
        };
        let b = Breaker::new(s, t0);
        // Failures redeemed later count as recorded ones do.
        let tickets: Vec<Ticket> = (0..3).map(|_| b.try_acquire(t0).unwrap().detach()).collect();
        let opened: Vec<_> = tickets.into_iter().map(|t| b.redeem(t, false, t0)).collect();
        assert_eq!(opened, [None, None, Some(Transition::Opened)]);
        // A probe's ticket holds its place until released, and a released one counts nothing.
        let t1 = t0 + ms(5000);
        let probe = b.try_acquire(t1).unwrap().detach();
        assert!(b.try_acquire(t1).is_err());
        b.release(probe);
        let probe = b.try_acquire(t1).unwrap().detach();
        assert_eq!(b.redeem(probe, true, t1), Some(Transition::Closed));
    }

    #[test]
    fn rolling_counts_saturate_and_skip_stale_rounds() {
        let w = RollingCounts::new(Duration::from_secs(10)); // 1 s buckets
        w.add(0, COUNT_MASK, 1);
        w.add(0, 5, 0);
        assert_eq!(w.sum(0), (COUNT_MASK, 1));
        w.add(9_999, 1, 1);
        assert_eq!(w.sum(9_999), (COUNT_MASK + 1, 2));
        // At 10 s the bucket of 0 s is out of the window; 20 s later everything is.
        assert_eq!(w.sum(10_000), (1, 1));
        assert_eq!(w.sum(30_000), (0, 0));
        // A late result for a bucket a newer round already took is dropped.
        w.add(20_000, 2, 0);
        w.add(0, 1, 1);
        assert_eq!(w.sum(20_000), (2, 0));
        w.clear();
        assert_eq!(w.sum(20_000), (0, 0));
    }

    /// Many threads acquire and record at once with a shared, ever-advancing fake clock. Every
    /// transition must be reported exactly once and in a possible order, and no half-open
    /// episode has more probes in flight at once than configured.
    #[test]
    fn concurrent_use_keeps_the_state_machine_consistent() {
        const THREADS: usize = 8;
        const ROUNDS: u64 = 20_000;
        let t0 = Instant::now();
        let s = BreakerSettings {
            consecutive_failures: 4,
            error_rate: 0.3,
            min_requests: 20,
            window: ms(200),
            open_for: ms(20),
            half_open_probes: 3,
        };
        let b = Arc::new(Breaker::new(s, t0));
        let clock = Arc::new(AtomicU64::new(0));
        // Probes between acquire and record, per episode (generation); the most seen at once.
        let probes: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
        let most_probes = Arc::new(AtomicUsize::new(0));
        let reports: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let handles: Vec<_> = (0..THREADS)
            .map(|id| {
                let (b, clock, probes, most_probes, reports) = (
                    b.clone(),
                    clock.clone(),
                    probes.clone(),
                    most_probes.clone(),
                    reports.clone(),
                );
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(id as u64);
                    let count = |t: Option<Transition>| {
                        let i = match t {
                            Some(Transition::Opened) => 0,
                            Some(Transition::HalfOpened) => 1,
                            Some(Transition::Closed) => 2,
                            None => return,
                        };
                        reports[i].fetch_add(1, Ordering::Relaxed);
                    };
                    for _ in 0..ROUNDS {
                        let now = t0 + ms(clock.fetch_add(1, Ordering::Relaxed) / THREADS as u64);
                        let Ok(permit) = b.try_acquire(now) else { continue };
                        count(permit.transition());
                        if permit.is_probe() {
                            let mut map = probes.lock().unwrap();
                            let n = map.entry(permit.generation).or_default();
                            *n += 1;
                            most_probes.fetch_max(*n, Ordering::SeqCst);
                            drop(map);
                            std::thread::yield_now(); // hold the probe while others try
                            *probes.lock().unwrap().entry(permit.generation).or_default() -= 1;
                        }
                        // Failure-heavy and healthy phases, so that every transition happens.
                        let healthy = (now - t0).as_millis() / 300 % 2 == 1;
                        let success = rng.u8(..100) < if healthy { 99 } else { 40 };
                        match rng.u8(..50) {
                            0 => drop(permit), // cancelled
                            _ => count(permit.record(success, now)),
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let [opened, half_opened, closed] = [0, 1, 2].map(|i| reports[i].load(Ordering::Relaxed));
        assert!(most_probes.load(Ordering::SeqCst) <= 3);
        // At least one full cycle (usually dozens; a descheduled thread acts as a hung probe).
        assert!(opened >= 1 && closed >= 1, "opened {opened}, closed {closed}");
        assert_eq!(opened, b.opens());
        assert!(closed <= half_opened);
        let expected_half_opened = match b.state() {
            BreakerState::Open => opened - 1,
            BreakerState::HalfOpen | BreakerState::Closed => opened,
        };
        assert_eq!(
            half_opened,
            expected_half_opened,
            "opened {opened}, state {:?}",
            b.state()
        );
    }
}
