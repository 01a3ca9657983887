//! A route's weighted split (canary, blue/green, A/B): which arm a request goes to, and the
//! monitor that takes a failing canary out.
//!
//! # Choosing an arm
//! In order: the override header (`always` → the canary, `never` → the other arms), then the
//! sticky key, then the weights. Both the sticky key and the unsticky choice give a *point* in
//! `[0, 2^64)`, and the arms own consecutive intervals of that range in proportion to their
//! weights (in config order). So:
//! - **Unsticky** requests take the points of a golden-ratio (Weyl) sequence, `n · 2^64/φ` for
//!   the n-th request: a low-discrepancy sequence, so any run of N requests hits each interval
//!   within a few requests of its share (99/1 gives exactly 1 % over 10,000 requests, and the
//!   canary's requests are spread out rather than bunched). It costs one `fetch_add`, like
//!   round robin, and needs no schedule rebuilt when the weights change at run time, which a
//!   smooth weighted round robin would (with a lock).
//! - **Sticky** requests take the hash of their key: a client stays on its arm while the weights
//!   stay, and when a canary grows from 1 % to 5 % only the clients on the moving boundary move
//!   (to the canary), none the other way. The hash is salted apart from the balancers'
//!   consistent hash, so that a canary's clients do not all land on the same targets of its
//!   upstream (the same key would otherwise fall in the same slice of both rings).
//!
//! # Rollback
//! With `rollback`, each arm keeps, over a rolling window of ten buckets, its responses, its 5xx
//! and a histogram of its time to the response head (log-linear buckets, four per doubling,
//! 19 % wide). After a canary response, at most every `window / 50`, the canary is compared with
//! the other arms taken together; when it is worse its weight is set to 0, which is logged,
//! counted and kept for the admin API. Recording is a few relaxed atomic adds, no lock; the
//! histogram bucket that a new time slice reuses is cleared by the first writer, so a result
//! recorded at the very moment of the turnover may be lost: the monitor estimates, it does not
//! account.
//!
//! # Reloads
//! A [`SplitState`] holds everything that changes at run time (weights, counters, the rollback)
//! and is carried over to the next snapshot by [`SplitState::carry_over`] when the route's split
//! settings did not change, so that a reload of unrelated files keeps an operator's weights and
//! a rollback.

use crate::balancer::hash_key;
use crate::breaker::{RollingCounts, millis};
use cratopus_config::{SplitConfig, StickyConfig};
use http::{HeaderMap, HeaderName};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// One arm as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmSettings {
    pub name: Arc<str>,
    pub upstream: Arc<str>,
    /// The configured weight (the running one may differ: admin API, rollback).
    pub weight: u32,
}

/// What a sticky split hashes, with header names parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    Header(HeaderName),
    Cookie(Box<str>),
    Consumer,
    ClientIp,
}

/// When the canary is rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackSettings {
    pub max_error_rate: Option<f64>,
    pub max_p95_ratio: Option<f64>,
    pub min_requests: u64,
    pub window: Duration,
}

/// A split's settings, compiled from its config: what decides whether its runtime state carries
/// over a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSettings {
    pub arms: Vec<ArmSettings>,
    pub canary: Option<usize>,
    pub sticky: Option<Sticky>,
    pub override_header: Option<HeaderName>,
    pub rollback: Option<RollbackSettings>,
}

impl SplitSettings {
    /// Compiles a validated split config.
    pub fn compile(cfg: &SplitConfig) -> Result<SplitSettings, String> {
        let header = |h: &str, what: &str| {
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("split.{what} `{h}` is not a valid header name"))
        };
        let sticky = match &cfg.sticky {
            None => None,
            Some(StickyConfig::Header(h)) => Some(Sticky::Header(header(h, "sticky.header")?)),
            Some(StickyConfig::Cookie(c)) => Some(Sticky::Cookie(c.as_str().into())),
            Some(StickyConfig::Consumer) => Some(Sticky::Consumer),
            Some(StickyConfig::ClientIp) => Some(Sticky::ClientIp),
        };
        let override_header = match &cfg.override_header {
            Some(o) => Some(header(&o.header, "override.header")?),
            None => None,
        };
        Ok(SplitSettings {
            arms: cfg
                .backends
                .iter()
                .map(|b| ArmSettings {
                    name: b.arm_name().into(),
                    upstream: b.upstream.value.as_str().into(),
                    weight: b.weight,
                })
                .collect(),
            canary: cfg.canary(),
            sticky,
            override_header,
            rollback: cfg.rollback.as_ref().map(|r| RollbackSettings {
                max_error_rate: r.max_error_rate,
                max_p95_ratio: r.max_p95_ratio,
                min_requests: u64::from(r.min_requests.max(1)),
                window: r.window.0,
            }),
        })
    }
}

/// Why [`SplitState::set_weights`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    #[error("{0}")]
    UnknownArm(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("every arm would have weight 0: at least one must take requests")]
    AllZero,
}

/// Why and when the canary was rolled back, for the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub at: SystemTime,
    /// A sentence: `5xx rate 0.40 above max_error_rate 0.05 (other arms 0.00)`.
    pub reason: String,
    /// The canary's weight before it was set to 0.
    pub weight_before: u32,
    pub canary: WindowStats,
    pub others: WindowStats,
}

/// One side's figures over the rollback window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowStats {
    pub requests: u64,
    pub errors: u64,
    /// The 95th percentile of the time to the response head (the upper bound of its histogram
    /// bucket), when the window holds responses.
    pub p95: Option<Duration>,
}

impl WindowStats {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// A rollback that just happened: the caller logs nothing, [`SplitState::record`] already did.
/// Returned so that tests and callers can see it.
pub type RollbackEvent = Rollback;

/// The runtime state of one route's split: shared by every snapshot that keeps its settings.
pub struct SplitState {
    org: Arc<str>,
    route: Arc<str>,
    settings: SplitSettings,
    /// The running weights, one per arm.
    weights: Box<[AtomicU32]>,
    /// Requests chosen by weight so far: the index into the golden-ratio sequence.
    sequence: AtomicU64,
    arms: Box<[ArmStats]>,
    /// Windows and histograms, only with `rollback`.
    monitor: Option<Monitor>,
    /// Whether the canary is rolled back now (cleared when the admin API sets weights).
    rolled_back: AtomicBool,
    /// The last rollback, kept after it is cleared.
    last_rollback: Mutex<Option<Rollback>>,
    rollbacks: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for SplitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitState")
            .field("org", &self.org)
            .field("route", &self.route)
            .field("weights", &self.weights())
            .finish_non_exhaustive()
    }
}

/// Counters of one arm since the split was created.
#[derive(Debug, Default)]
struct ArmStats {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// The rollback monitor: per arm, a rolling window of (responses, 5xx) and of latencies.
struct Monitor {
    settings: RollbackSettings,
    counts: Box<[RollingCounts]>,
    latency: Box<[RollingHistogram]>,
    /// Milliseconds since `epoch` before which no comparison is made again.
    next_check_ms: AtomicU64,
    check_every_ms: u64,
}

/// 2^64 / φ: the step of the golden-ratio sequence.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// Mixed into sticky keys so that a split's hash is independent of the balancers' ring.
const STICKY_SALT: u64 = 0x5b1f_c0a7_d3e2_9a41;

/// How a request was placed, for the log and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// By the override header.
    Override,
    /// By the hash of its sticky key.
    Sticky,
    /// By the weights.
    Weighted,
}

impl SplitState {
    /// A fresh state with the configured weights.
    pub fn new(org: Arc<str>, route: Arc<str>, settings: SplitSettings, now: Instant) -> SplitState {
        let n = settings.arms.len();
        let monitor = settings.rollback.clone().map(|r| Monitor {
            counts: (0..n).map(|_| RollingCounts::new(r.window)).collect(),
            latency: (0..n).map(|_| RollingHistogram::new(r.window)).collect(),
            next_check_ms: AtomicU64::new(0),
            check_every_ms: (millis(r.window) / 50).clamp(10, 500),
            settings: r,
        });
        SplitState {
            org,
            route,
            weights: settings.arms.iter().map(|a| AtomicU32::new(a.weight)).collect(),
            sequence: AtomicU64::new(0),
            arms: (0..n).map(|_| ArmStats::default()).collect(),
            monitor,
            rolled_back: AtomicBool::new(false),
            last_rollback: Mutex::new(None),
            rollbacks: AtomicU64::new(0),
            epoch: now,
            settings,
        }
    }

    /// The state for a route's split in a new snapshot: `prev` (the same route's state in the
    /// running snapshot, looked up by organization and route name) when its settings are the
    /// same, so that run-time weights, counters and a rollback survive the reload; else a new
    /// one.
    pub fn carry_over(
        prev: Option<&Arc<SplitState>>,
        org: Arc<str>,
        route: Arc<str>,
        settings: SplitSettings,
        now: Instant,
    ) -> Arc<SplitState> {
        match prev {
            Some(p) if p.settings == settings => p.clone(),
            _ => Arc::new(SplitState::new(org, route, settings, now)),
        }
    }

    pub fn settings(&self) -> &SplitSettings {
        &self.settings
    }

    pub fn org(&self) -> &Arc<str> {
        &self.org
    }

    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// The running weights, in arm order.
    pub fn weights(&self) -> Vec<u32> {
        self.weights.iter().map(|w| w.load(Relaxed)).collect()
    }

    /// Whether the canary is rolled back now.
    pub fn is_rolled_back(&self) -> bool {
        self.rolled_back.load(Relaxed)
    }

    /// The last rollback (also after an operator put the canary back).
    pub fn last_rollback(&self) -> Option<Rollback> {
        self.last_rollback.lock().ok().and_then(|r| r.clone())
    }

    /// Rollbacks since the split was created.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks.load(Relaxed)
    }

    /// Requests and 5xx of arm `i` since the split was created.
    pub fn arm_totals(&self, i: usize) -> (u64, u64) {
        self.arms
            .get(i)
            .map_or((0, 0), |a| (a.requests.load(Relaxed), a.errors.load(Relaxed)))
    }

    /// Arm `i`'s figures over the rollback window (`None` without `rollback`).
    pub fn arm_window(&self, i: usize, now: Instant) -> Option<WindowStats> {
        let m = self.monitor.as_ref()?;
        Some(m.stats(&[i], self.ms(now)))
    }

    /// The arm for a request: by the override header, the sticky key, or the weights.
    /// `consumer` is the authenticated consumer's name, for `sticky: consumer`.
    pub fn choose(&self, headers: &HeaderMap, client: IpAddr, consumer: Option<&str>) -> (usize, Placed) {
        let mut exclude = None;
        if let (Some(h), Some(canary)) = (&self.settings.override_header, self.settings.canary)
            && let Some(v) = headers.get(h)
        {
            let v = v.as_bytes();
            if v.eq_ignore_ascii_case(b"always") {
                return (canary, Placed::Override);
            }
            if v.eq_ignore_ascii_case(b"never") {
                exclude = Some(canary);
            }
        }
        let (point, placed) = match self.sticky_point(headers, client, consumer) {
            Some(p) => (p, Placed::Sticky),
            None => (
                self.sequence.fetch_add(1, Relaxed).wrapping_mul(GOLDEN),
                Placed::Weighted,
            ),
        };
        let placed = if exclude.is_some() { Placed::Override } else { placed };
        (self.arm_at(point, exclude), placed)
    }

    /// The sticky key's point, when the split is sticky and the request has the key.
    fn sticky_point(&self, headers: &HeaderMap, client: IpAddr, consumer: Option<&str>) -> Option<u64> {
        let h = match self.settings.sticky.as_ref()? {
            Sticky::Header(name) => hash_key(headers.get(name)?.as_bytes()),
            Sticky::Cookie(name) => hash_key(crate::headers::cookie(headers, name)?.as_bytes()),
            Sticky::Consumer => hash_key(consumer?.as_bytes()),
            Sticky::ClientIp => match client {
                IpAddr::V4(ip) => hash_key(&ip.octets()),
                IpAddr::V6(ip) => hash_key(&ip.octets()),
            },
        };
        Some(mix(h ^ STICKY_SALT))
    }

    /// The arm whose interval holds `point`, leaving out `exclude`. When every arm left has
    /// weight 0 (a `never` request while the canary takes everything), the first arm left.
    fn arm_at(&self, point: u64, exclude: Option<usize>) -> usize {
        let mut weights = [0u32; cratopus_config::MAX_SPLIT_ARMS];
        let n = self.weights.len().min(weights.len());
        let mut total: u64 = 0;
        for (i, w) in self.weights.iter().take(n).enumerate() {
            if Some(i) != exclude {
                weights[i] = w.load(Relaxed);
                total += u64::from(weights[i]);
            }
        }
        if total == 0 {
            return (0..n).find(|&i| Some(i) != exclude).unwrap_or(0);
        }
        // The point scaled onto [0, total): the high half of a 64×64-bit product.
        let mut at = ((u128::from(point) * u128::from(total)) >> 64) as u64;
        for (i, &w) in weights.iter().take(n).enumerate() {
            let w = u64::from(w);
            if at < w {
                return i;
            }
            at -= w;
        }
        n - 1
    }

    /// Records arm `arm`'s answer: `error` for a 5xx (the gateway's own 502/503/504 included),
    /// `head_time` the time to its response head. With `rollback`, a canary answer may roll the
    /// canary back; the rollback is logged and returned.
    pub fn record(&self, arm: usize, error: bool, head_time: Duration, now: Instant) -> Option<RollbackEvent> {
        let stats = self.arms.get(arm)?;
        stats.requests.fetch_add(1, Relaxed);
        if error {
            stats.errors.fetch_add(1, Relaxed);
        }
        let m = self.monitor.as_ref()?;
        let now_ms = self.ms(now);
        m.counts[arm].add(now_ms, 1, u64::from(error));
        m.latency[arm].add(now_ms, head_time);
        if Some(arm) != self.settings.canary {
            return None;
        }
        self.check(m, now_ms)
    }

    /// Compares the canary with the other arms, at most every `check_every_ms`.
    fn check(&self, m: &Monitor, now_ms: u64) -> Option<RollbackEvent> {
        let canary = self.settings.canary?;
        if self.rolled_back.load(Relaxed) || self.weights[canary].load(Relaxed) == 0 {
            return None;
        }
        let next = m.next_check_ms.load(Relaxed);
        if now_ms < next
            || m.next_check_ms
                .compare_exchange(next, now_ms + m.check_every_ms, Relaxed, Relaxed)
                .is_err()
        {
            return None;
        }
        let c = m.stats(&[canary], now_ms);
        if c.requests < m.settings.min_requests {
            return None;
        }
        let others: Vec<usize> = (0..self.arms.len()).filter(|&i| i != canary).collect();
        let o = m.stats(&others, now_ms);
        let reason = verdict(&m.settings, &c, &o)?;
        if self.rolled_back.swap(true, Relaxed) {
            return None;
        }
        let weight_before = self.weights[canary].swap(0, Relaxed);
        // Someone must take the traffic: other arms all at 0 (the canary had everything) get
        // their configured weights back, or 1 each.
        if others.iter().all(|&i| self.weights[i].load(Relaxed) == 0) {
            let configured: Vec<u32> = others.iter().map(|&i| self.settings.arms[i].weight).collect();
            let fallback = configured.iter().all(|&w| w == 0);
            for (&i, &w) in others.iter().zip(&configured) {
                self.weights[i].store(if fallback { 1 } else { w }, Relaxed);
            }
        }
        self.rollbacks.fetch_add(1, Relaxed);
        let event = Rollback {
            at: SystemTime::now(),
            reason,
            weight_before,
            canary: c,
            others: o,
        };
        tracing::warn!(
            organization = %self.org,
            route = %self.route,
            canary = %self.settings.arms[canary].name,
            reason = %event.reason,
            canary_requests = c.requests,
            "split canary rolled back: its weight is now 0"
        );
        if let Ok(mut last) = self.last_rollback.lock() {
            *last = Some(event.clone());
        }
        Some(event)
    }

    /// Sets running weights by arm name (arms not named keep theirs). Refused, changing
    /// nothing, when a name is unknown, a weight is above the maximum, or every weight would
    /// be 0. Clears a rollback, and the canary's window with it, so that the failures that
    /// caused it do not roll the canary back again at once: setting weights is the operator's
    /// decision to try again.
    pub fn set_weights(&self, weights: &[(&str, u32)]) -> Result<(), WeightsError> {
        let mut next = self.weights();
        for (name, w) in weights {
            let Some(i) = self.settings.arms.iter().position(|a| &*a.name == *name) else {
                let known: Vec<&str> = self.settings.arms.iter().map(|a| &*a.name).collect();
                return Err(WeightsError::UnknownArm(format!(
                    "the split has no arm `{name}` (arms: {})",
                    known.join(", ")
                )));
            };
            if *w > cratopus_config::MAX_SPLIT_WEIGHT {
                return Err(WeightsError::TooLarge(format!(
                    "weight {w} of arm `{name}` is above the maximum, {}",
                    cratopus_config::MAX_SPLIT_WEIGHT
                )));
            }
            next[i] = *w;
        }
        if next.iter().all(|&w| w == 0) {
            return Err(WeightsError::AllZero);
        }
        for (a, w) in self.weights.iter().zip(&next) {
            a.store(*w, Relaxed);
        }
        if self.rolled_back.swap(false, Relaxed)
            && let (Some(m), Some(c)) = (&self.monitor, self.settings.canary)
        {
            m.counts[c].clear();
            m.latency[c].clear();
        }
        tracing::info!(organization = %self.org, route = %self.route, weights = ?next, "split weights changed by the admin API");
        Ok(())
    }

    fn ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

/// Why the canary (`c`) is worse than the others (`o`), or `None`.
fn verdict(s: &RollbackSettings, c: &WindowStats, o: &WindowStats) -> Option<String> {
    if let Some(max) = s.max_error_rate {
        let (cr, or) = (c.error_rate(), o.error_rate());
        if cr > max && cr > or {
            return Some(format!(
                "5xx rate {cr:.3} above max_error_rate {max} (other arms {or:.3}) over {} responses",
                c.requests
            ));
        }
    }
    if let (Some(ratio), Some(cp), Some(op)) = (s.max_p95_ratio, c.p95, o.p95)
        && o.requests >= s.min_requests
        && cp.as_secs_f64() > ratio * op.as_secs_f64()
    {
        return Some(format!(
            "p95 {:.1} ms above max_p95_ratio {ratio} × the other arms' {:.1} ms",
            cp.as_secs_f64() * 1e3,
            op.as_secs_f64() * 1e3
        ));
    }
    None
}

impl Monitor {
    /// The figures of `arms` taken together over the window ending at `now_ms`.
    fn stats(&self, arms: &[usize], now_ms: u64) -> WindowStats {
        let mut s = WindowStats::default();
        let mut hist = [0u64; LATENCY_BUCKETS];
        for &i in arms {
            let (r, e) = self.counts[i].sum(now_ms);
            s.requests += r;
            s.errors += e;
            self.latency[i].sum_into(now_ms, &mut hist);
        }
        s.p95 = quantile(&hist, 0.95);
        s
    }
}

/// splitmix64's finaliser.
fn mix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Latency buckets: four per doubling of microseconds up to 2^27 µs (134 s); longer times
/// share the last.
const LATENCY_BUCKETS: usize = 4 * 27 + 4;
/// Time slices of a rolling histogram.
const SLICES: u64 = 10;

/// The bucket of a time of `us` microseconds: `4·e + m` for `us` in `[2^e, 2^(e+1))`, `m` the
/// two bits after the leading one.
fn latency_bucket(us: u64) -> usize {
    let us = us.max(1);
    let e = 63 - u64::from(us.leading_zeros());
    let i = if e < 2 { us } else { 4 * e + ((us >> (e - 2)) & 3) };
    (i as usize).min(LATENCY_BUCKETS - 1)
}

/// The upper bound of bucket `i`.
fn bucket_upper(i: usize) -> Duration {
    let i = i as u64;
    let us = match i {
        0..4 => i + 1,
        // Never used: 4 µs to 7 µs are in bucket 8 onwards.
        4..8 => 4,
        _ => (5 + (i & 3)) << (i / 4 - 2),
    };
    Duration::from_micros(us)
}

/// The upper bound of the bucket holding the `q` quantile, `None` for an empty histogram.
fn quantile(hist: &[u64; LATENCY_BUCKETS], q: f64) -> Option<Duration> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_upper(i));
        }
    }
    Some(bucket_upper(LATENCY_BUCKETS - 1))
}

/// A latency histogram over a rolling window of ten time slices, lock-free.
struct RollingHistogram {
    width_ms: u64,
    slices: Box<[Slice]>,
}

struct Slice {
    /// The slice's number (time / width) plus one; 0: never used.
    tag: AtomicU64,
    counts: [AtomicU32; LATENCY_BUCKETS],
}

impl RollingHistogram {
    fn new(window: Duration) -> RollingHistogram {
        RollingHistogram {
            width_ms: (millis(window) / SLICES).max(1),
            slices: (0..SLICES)
                .map(|_| Slice {
                    tag: AtomicU64::new(0),
                    counts: std::array::from_fn(|_| AtomicU32::new(0)),
                })
                .collect(),
        }
    }

    fn add(&self, now_ms: u64, d: Duration) {
        let number = now_ms / self.width_ms;
        let slice = &self.slices[(number % SLICES) as usize];
        let want = number + 1;
        let tag = slice.tag.load(Relaxed);
        if tag > want {
            return; // measured long before it was recorded; the slice holds a later round
        }
        if tag < want && slice.tag.compare_exchange(tag, want, Relaxed, Relaxed).is_ok() {
            for c in &slice.counts {
                c.store(0, Relaxed);
            }
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        slice.counts[latency_bucket(us)].fetch_add(1, Relaxed);
    }

    /// Adds the window ending at `now_ms` into `into`.
    fn sum_into(&self, now_ms: u64, into: &mut [u64; LATENCY_BUCKETS]) {
        let number = now_ms / self.width_ms;
        for back in 0..SLICES.min(number + 1) {
            let n = number - back;
            let slice = &self.slices[(n % SLICES) as usize];
            if slice.tag.load(Relaxed) == n + 1 {
                for (acc, c) in into.iter_mut().zip(&slice.counts) {
                    *acc += u64::from(c.load(Relaxed));
                }
            }
        }
    }

    fn clear(&self) {
        for s in self.slices.iter() {
            s.tag.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_config::SplitConfig;
    use std::net::Ipv4Addr;

    fn state(yaml: &str) -> SplitState {
        let cfg: SplitConfig = serde_saphyr::from_str(yaml).expect("split config");
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let settings = SplitSettings::compile(&cfg).expect("compiles");
        SplitState::new("org".into(), "route".into(), settings, Instant::now())
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn counts(s: &SplitState, n: usize, headers: &HeaderMap) -> Vec<usize> {
        let mut out = vec![0; s.settings.arms.len()];
        for _ in 0..n {
            out[s.choose(headers, IP, None).0] += 1;
        }
        out
    }

    #[test]
    fn weights_are_met_within_a_request_or_two_in_any_run() {
        let s = state("backends: [{upstream: a, weight: 99}, {upstream: b, weight: 1}]");
        let none = HeaderMap::new();
        // 10,000 requests: 1 % within one request; and every run of 1,000 within two.
        let c = counts(&s, 10_000, &none);
        assert!((99..=101).contains(&c[1]), "{c:?}");
        for _ in 0..10 {
            let c = counts(&s, 1000, &none);
            assert!((8..=12).contains(&c[1]), "{c:?}");
        }
        let s = state("backends: [{upstream: a, weight: 50}, {upstream: b, weight: 30}, {upstream: c, weight: 20}]");
        let c = counts(&s, 10_000, &none);
        for (got, want) in c.iter().zip([5000, 3000, 2000]) {
            assert!(got.abs_diff(want) <= 5, "{c:?}");
        }
        // A weight of 0 gets nothing.
        let s = state("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 0}]");
        assert_eq!(counts(&s, 1000, &none), [1000, 0]);
    }

    #[test]
    fn sticky_clients_stay_and_only_the_boundary_moves() {
        let s = state("backends: [{upstream: a, weight: 90}, {upstream: b, weight: 10}]\nsticky: {header: X-User}");
        let user = |u: u32| {
            let mut h = HeaderMap::new();
            h.insert("x-user", u.to_string().parse().unwrap());
            h
        };
        let first: Vec<usize> = (0..2000).map(|u| s.choose(&user(u), IP, None).0).collect();
        for _ in 0..3 {
            let again: Vec<usize> = (0..2000).map(|u| s.choose(&user(u), IP, None).0).collect();
            assert_eq!(first, again);
        }
        let on_b = first.iter().filter(|&&a| a == 1).count();
        assert!((150..=250).contains(&on_b), "{on_b} of 2000 on the 10 % arm");
        // Growing b to 20 % moves clients only from a to b.
        s.set_weights(&[("a", 80), ("b", 20)]).unwrap();
        let after: Vec<usize> = (0..2000).map(|u| s.choose(&user(u), IP, None).0).collect();
        assert!(first.iter().zip(&after).all(|(b, a)| !(*b == 1 && *a == 0)));
        assert!(after.iter().filter(|&&a| a == 1).count() > on_b);
        // Without the key: by weight.
        assert_eq!(s.choose(&HeaderMap::new(), IP, None).1, Placed::Weighted);
    }

    #[test]
    fn sticky_by_cookie_consumer_and_address() {
        let s = state("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]\nsticky: {cookie: uid}");
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "x=1; uid=42".parse().unwrap());
        let (arm, how) = s.choose(&h, IP, None);
        assert_eq!(how, Placed::Sticky);
        assert!((0..100).all(|_| s.choose(&h, IP, None).0 == arm));
        let s = state("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]\nsticky: consumer");
        assert_eq!(s.choose(&HeaderMap::new(), IP, Some("ann")).1, Placed::Sticky);
        assert_eq!(s.choose(&HeaderMap::new(), IP, None).1, Placed::Weighted);
        let s = state("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]\nsticky: client_ip");
        let arms: std::collections::HashSet<usize> = (0..64u8)
            .map(|i| {
                s.choose(&HeaderMap::new(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), None)
                    .0
            })
            .collect();
        assert_eq!(arms.len(), 2, "64 addresses land on both arms");
    }

    #[test]
    fn override_header_reaches_or_avoids_the_canary() {
        let s = state(
            "backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}, {upstream: c, weight: 0, canary: true}]
override: {header: X-Canary}",
        );
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-canary", v.parse().unwrap());
            h
        };
        assert_eq!(s.choose(&with("Always"), IP, None), (2, Placed::Override));
        assert_eq!(counts(&s, 100, &HeaderMap::new())[2], 0);
        s.set_weights(&[("c", 1000)]).unwrap();
        let c = counts(&s, 1000, &with("never"));
        assert_eq!(c[2], 0, "{c:?}");
        assert!(c[0].abs_diff(500) <= 2, "{c:?}");
        // Other values leave the request to the weights.
        assert!(counts(&s, 1000, &with("maybe"))[2] > 900);
    }

    #[test]
    fn set_weights_refuses_what_it_cannot_do() {
        let s = state("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]");
        assert!(
            s.set_weights(&[("z", 1)])
                .unwrap_err()
                .to_string()
                .contains("no arm `z`")
        );
        assert_eq!(s.set_weights(&[("a", 0), ("b", 0)]), Err(WeightsError::AllZero));
        assert!(s.set_weights(&[("a", 2_000_000)]).is_err());
        assert_eq!(s.weights(), [1, 1]);
        s.set_weights(&[("b", 3)]).unwrap();
        assert_eq!(s.weights(), [1, 3]);
    }

    fn rollback_state(rules: &str) -> SplitState {
        state(&format!(
            "backends: [{{upstream: stable, weight: 90}}, {{upstream: canary, weight: 10, canary: true}}]
rollback: {{{rules}, min_requests: 20, window: 10s}}"
        ))
    }

    #[test]
    fn a_failing_canary_is_rolled_back_once_it_has_enough_requests() {
        let s = rollback_state("max_error_rate: 0.1");
        let t0 = s.epoch;
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let d = Duration::from_millis(5);
        for i in 0..200 {
            assert!(s.record(0, i % 50 == 0, d, ms(i)).is_none());
        }
        // 19 canary failures: not enough requests to judge yet.
        for i in 0..19 {
            assert!(s.record(1, true, d, ms(200 + i * 20)).is_none());
        }
        assert!(!s.is_rolled_back());
        let event = s.record(1, true, d, ms(1000)).expect("rolled back");
        assert!(event.reason.contains("5xx rate"), "{}", event.reason);
        assert_eq!(event.weight_before, 10);
        assert_eq!(event.canary.requests, 20);
        assert_eq!(s.weights(), [90, 0]);
        assert!(s.is_rolled_back());
        assert_eq!(s.rollbacks(), 1);
        assert!(s.record(1, true, d, ms(2000)).is_none(), "once");
        assert_eq!(counts(&s, 100, &HeaderMap::new()), [100, 0]);
        // Putting the canary back clears the rollback and the canary's window.
        s.set_weights(&[("canary", 5)]).unwrap();
        assert!(!s.is_rolled_back());
        assert!(s.last_rollback().is_some());
        assert_eq!(s.arm_window(1, ms(2000)).unwrap().requests, 0);
        assert_eq!(s.arm_totals(1), (21, 21));
    }

    #[test]
    fn a_canary_failing_no_more_than_the_stable_side_stays() {
        let s = rollback_state("max_error_rate: 0.1");
        let t0 = s.epoch;
        let d = Duration::from_millis(5);
        // Half of each side's answers fail, the canary's never ahead of the stable side's.
        for i in 0..400u64 {
            let at = t0 + Duration::from_millis(i * 10);
            let canary = i % 4 == 0;
            let error = (i / 4) % 2 == u64::from(canary);
            assert!(s.record(usize::from(canary), error, d, at).is_none());
        }
        assert_eq!(s.weights(), [90, 10]);
    }

    #[test]
    fn a_slow_canary_is_rolled_back_by_its_p95() {
        let s = rollback_state("max_p95_ratio: 2.0");
        let t0 = s.epoch;
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i * 10);
            s.record(0, false, Duration::from_millis(10 + i % 5), at);
            // Up to 1.9× the stable side: fine.
            assert!(s.record(1, false, Duration::from_millis(19), at).is_none());
        }
        assert!(!s.is_rolled_back());
        let mut event = None;
        for i in 100..200u64 {
            let at = t0 + Duration::from_millis(i * 10);
            s.record(0, false, Duration::from_millis(10), at);
            event = event.or(s.record(1, false, Duration::from_millis(80), at));
        }
        let event = event.expect("rolled back");
        assert!(event.reason.contains("p95"), "{}", event.reason);
        assert!(event.canary.p95.unwrap() >= Duration::from_millis(80));
    }

    #[test]
    fn failures_leave_the_window() {
        let s = rollback_state("max_error_rate: 0.5");
        let t0 = s.epoch;
        let d = Duration::from_millis(1);
        for i in 0..15 {
            s.record(1, true, d, t0 + Duration::from_millis(i));
        }
        // Twelve seconds later the failures are out of the 10 s window: 15 successes do not
        // make 20 requests with a bad rate.
        for i in 0..15 {
            assert!(
                s.record(1, false, d, t0 + Duration::from_millis(12_000 + i * 20))
                    .is_none()
            );
        }
        assert_eq!(s.arm_window(1, t0 + Duration::from_secs(12)).unwrap().requests, 15);
    }

    #[test]
    fn a_rollback_of_a_canary_with_all_the_traffic_hands_it_back() {
        let s = state(
            "backends: [{upstream: blue, weight: 0}, {upstream: green, weight: 100, canary: true}]
rollback: {max_error_rate: 0.1, min_requests: 5, window: 10s}",
        );
        let t0 = s.epoch;
        let mut rolled = false;
        for i in 0..10 {
            rolled |= s
                .record(1, true, Duration::from_millis(1), t0 + Duration::from_millis(i * 50))
                .is_some();
        }
        assert!(rolled);
        assert_eq!(s.weights(), [1, 0]);
    }

    #[test]
    fn state_carries_over_while_the_settings_stay() {
        let yaml = "backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]";
        let cfg: SplitConfig = serde_saphyr::from_str(yaml).unwrap();
        let settings = SplitSettings::compile(&cfg).unwrap();
        let now = Instant::now();
        let first = SplitState::carry_over(None, "o".into(), "r".into(), settings.clone(), now);
        first.set_weights(&[("a", 7)]).unwrap();
        let kept = SplitState::carry_over(Some(&first), "o".into(), "r".into(), settings.clone(), now);
        assert!(Arc::ptr_eq(&first, &kept));
        let mut changed = settings;
        changed.arms[1].weight = 2;
        let fresh = SplitState::carry_over(Some(&first), "o".into(), "r".into(), changed, now);
        assert_eq!(fresh.weights(), [1, 2]);
    }

    #[test]
    fn latency_buckets_are_ordered_and_bound_their_times() {
        for us in [1u64, 2, 3, 4, 5, 7, 8, 100, 999, 1000, 5000, 65_535, 1 << 20, 1 << 26] {
            let b = latency_bucket(us);
            assert!(bucket_upper(b) > Duration::from_micros(us), "{us} µs in bucket {b}");
            if b > 0 {
                assert!(
                    bucket_upper(b - 1) <= Duration::from_micros(us),
                    "{us} µs in bucket {b}"
                );
            }
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }
}
