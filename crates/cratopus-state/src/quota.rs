//! Quotas: a number of requests per UTC calendar day or month, counted in fixed windows.
//!
//! Unlike rate limits, quotas are what a consumer bought ("10,000 calls a month") and reset
//! at a calendar boundary everybody can name, so they are plain counters per window rather
//! than GCRA. The window is computed from the node's wall clock (UTC); nodes of one cluster
//! are expected to run NTP, and a node a second off only counts a request into the
//! neighbouring window at the boundary.
//!
//! A request that would exceed the quota is denied and not counted: a client hammering a
//! spent quota does not push its counter further, and raising the limit mid-window frees
//! exactly the difference.

use crate::sharded::ShardedMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A calendar window in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    /// 00:00 to 24:00 UTC.
    Day,
    /// The 1st of the month 00:00 UTC to the 1st of the next month.
    Month,
}

/// The outcome of [`MemoryQuotas::quota_add`] or [`crate::RedisLimiter::quota_add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    /// Whether the request fits in the quota (and was counted).
    pub allowed: bool,
    /// Requests counted in the current window, including this one if it was allowed.
    pub used: u64,
    pub limit: u64,
    /// Time until the window ends and the count starts again from 0.
    pub resets_in: Duration,
}

/// One calendar window: an id that names it (`20250131` for a day, `202501` for a month) and
/// its end in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub id: u32,
    pub end: u64,
}

const DAY: u64 = 86_400;

impl QuotaPeriod {
    /// The window containing `now` (times before 1970 count as 1970-01-01).
    pub(crate) fn window(self, now: SystemTime) -> Window {
        let secs = since_epoch(now).as_secs();
        let days = secs / DAY;
        let (y, m, d) = civil_from_days(days);
        match self {
            QuotaPeriod::Day => Window {
                id: y * 10_000 + m * 100 + d,
                end: (days + 1) * DAY,
            },
            QuotaPeriod::Month => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Window {
                    id: y * 100 + m,
                    end: days_from_civil(ny, nm, 1) * DAY,
                }
            }
        }
    }

    /// A short tag used in storage keys.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "d",
            QuotaPeriod::Month => "m",
        }
    }

    fn index(self) -> usize {
        match self {
            QuotaPeriod::Day => 0,
            QuotaPeriod::Month => 1,
        }
    }
}

pub(crate) fn since_epoch(now: SystemTime) -> Duration {
    now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Time from `now` to the end of `window`.
pub(crate) fn resets_in(window: Window, now: SystemTime) -> Duration {
    Duration::from_secs(window.end).saturating_sub(since_epoch(now))
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`, for non-negative day counts: eras
/// of 400 years (146,097 days) starting on 0000-03-01, so that the leap day is the last day
/// of the "year" and month lengths follow a fixed 153-day pattern.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (
        u32::try_from(y).unwrap_or(u32::MAX),
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Days since 1970-01-01 of a date on or after it (inverse of [`civil_from_days`]).
fn days_from_civil(y: u32, m: u32, d: u32) -> u64 {
    let y = u64::from(y) - u64::from(m <= 2);
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + u64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// Quota counters in memory, for one node (and the fallback when Redis is unreachable).
///
/// Each key holds the current window's id and count per period; a request in a newer window
/// starts the count afresh. Call [`MemoryQuotas::retain_current`] now and then (say hourly)
/// to drop keys whose windows have all ended.
pub struct MemoryQuotas {
    /// Per key: (window id, used) for [`QuotaPeriod::Day`] and [`QuotaPeriod::Month`];
    /// `None` where that period was never used. The window end is kept to purge by.
    map: ShardedMap<[Option<Counter>; 2]>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window: Window,
    used: u64,
}

impl MemoryQuotas {
    pub fn new() -> MemoryQuotas {
        MemoryQuotas { map: ShardedMap::new() }
    }

    /// Counts `cost` requests for `key` in the current `period` window if that keeps the
    /// count within `limit`; otherwise counts nothing and denies.
    pub fn quota_add(&self, key: &str, period: QuotaPeriod, limit: u64, cost: u64) -> QuotaState {
        self.quota_add_at(key, period, limit, cost, SystemTime::now())
    }

    /// [`quota_add`](Self::quota_add) at a given wall-clock time.
    pub fn quota_add_at(&self, key: &str, period: QuotaPeriod, limit: u64, cost: u64, now: SystemTime) -> QuotaState {
        let window = period.window(now);
        let resets_in = resets_in(window, now);
        let add = |slot: &mut Option<Counter>| {
            let used = match slot {
                Some(c) if c.window.id == window.id => c.used,
                _ => 0,
            };
            let allowed = used.checked_add(cost).is_some_and(|n| n <= limit);
            let used = if allowed { used + cost } else { used };
            if allowed {
                *slot = Some(Counter { window, used });
            }
            QuotaState {
                allowed,
                used,
                limit,
                resets_in,
            }
        };
        self.map.update(
            key,
            |slots| add(&mut slots[period.index()]),
            || {
                let mut slots = [None, None];
                let state = add(&mut slots[period.index()]);
                (state, state.allowed.then_some(slots))
            },
        )
    }

    /// Drops the counters of windows that have ended, and keys left with none.
    pub fn retain_current(&self) {
        self.retain_current_at(SystemTime::now());
    }

    /// [`retain_current`](Self::retain_current) at a given wall-clock time.
    pub fn retain_current_at(&self, now: SystemTime) {
        let now = since_epoch(now).as_secs();
        self.map
            .retain(|slots| slots.iter().flatten().any(|c| c.window.end > now));
    }

    /// Number of keys with counters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryQuotas {
    fn default() -> Self {
        MemoryQuotas::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since the epoch of a UTC date and time, computed independently of the code
    /// under test (by counting days month by month).
    fn utc(y: u32, m: u32, d: u32, hh: u64, mm: u64, ss: u64) -> SystemTime {
        let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = |y: u32, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut days = 0u64;
        for year in 1970..y {
            days += if leap(year) { 366 } else { 365 };
        }
        for month in 1..m {
            days += month_len(y, month);
        }
        days += u64::from(d - 1);
        UNIX_EPOCH + Duration::from_secs(days * DAY + hh * 3600 + mm * 60 + ss)
    }

    fn secs(t: SystemTime) -> u64 {
        since_epoch(t).as_secs()
    }

    #[test]
    fn civil_round_trips_every_day_for_five_centuries() {
        for days in 0..(530 * 366) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(secs(utc(2024, 2, 29, 12, 0, 0)) / DAY), (2024, 2, 29));
        assert_eq!(civil_from_days(secs(utc(2000, 3, 1, 0, 0, 0)) / DAY), (2000, 3, 1));
    }

    #[test]
    fn day_window() {
        let w = QuotaPeriod::Day.window(utc(2025, 3, 14, 15, 9, 26));
        assert_eq!(w.id, 20250314);
        assert_eq!(w.end, secs(utc(2025, 3, 15, 0, 0, 0)));
        let w = QuotaPeriod::Day.window(utc(2025, 12, 31, 23, 59, 59));
        assert_eq!(w.id, 20251231);
        assert_eq!(w.end, secs(utc(2026, 1, 1, 0, 0, 0)));
        let w = QuotaPeriod::Day.window(utc(2026, 1, 1, 0, 0, 0));
        assert_eq!(w.id, 20260101, "midnight belongs to the new day");
    }

    #[test]
    fn month_window_rolls_over_december_and_leap_februaries() {
        let w = QuotaPeriod::Month.window(utc(2025, 12, 31, 23, 59, 59));
        assert_eq!(w.id, 202512);
        assert_eq!(w.end, secs(utc(2026, 1, 1, 0, 0, 0)));
        let w = QuotaPeriod::Month.window(utc(2026, 1, 1, 0, 0, 0));
        assert_eq!(w.id, 202601);
        assert_eq!(w.end, secs(utc(2026, 2, 1, 0, 0, 0)));
        // Leap years: 2024 (÷4), 2000 (÷400); not 1900-style 2100 (÷100).
        for (y, feb) in [(2024, 29), (2000, 29), (2100, 28), (2025, 28)] {
            let w = QuotaPeriod::Month.window(utc(y, 2, 10, 8, 0, 0));
            assert_eq!(w.id, y * 100 + 2);
            assert_eq!(w.end, secs(utc(y, 3, 1, 0, 0, 0)));
            assert_eq!(w.end - secs(utc(y, 2, 1, 0, 0, 0)), feb * DAY, "{y}");
        }
        let w = QuotaPeriod::Month.window(utc(2024, 2, 29, 23, 0, 0));
        assert_eq!(w.id, 202402);
        assert_eq!(resets_in(w, utc(2024, 2, 29, 23, 0, 0)), Duration::from_secs(3600));
        let w = QuotaPeriod::Month.window(utc(2025, 4, 30, 0, 0, 0));
        assert_eq!(w.end, secs(utc(2025, 5, 1, 0, 0, 0)), "30-day month");
    }

    #[test]
    fn memory_quota_counts_denies_and_does_not_count_denied() {
        let q = MemoryQuotas::new();
        let now = utc(2025, 6, 30, 22, 0, 0);
        for used in 1..=3 {
            let s = q.quota_add_at("c", QuotaPeriod::Day, 3, 1, now);
            assert!(s.allowed);
            assert_eq!(s.used, used);
            assert_eq!(s.resets_in, Duration::from_secs(2 * 3600));
        }
        for _ in 0..5 {
            let s = q.quota_add_at("c", QuotaPeriod::Day, 3, 1, now);
            assert!(!s.allowed);
            assert_eq!(s.used, 3, "denied requests are not counted");
        }
        // The same key's month counter is separate.
        let s = q.quota_add_at("c", QuotaPeriod::Month, 10, 4, now);
        assert_eq!((s.allowed, s.used), (true, 4));
        // A raised limit frees exactly the difference.
        assert!(q.quota_add_at("c", QuotaPeriod::Day, 4, 1, now).allowed);
        assert!(!q.quota_add_at("c", QuotaPeriod::Day, 4, 1, now).allowed);
        // A cost that does not fit is denied whole.
        let s = q.quota_add_at("c", QuotaPeriod::Month, 10, 7, now);
        assert_eq!((s.allowed, s.used), (false, 4));
        // The next day (and month) start from zero.
        let tomorrow = utc(2025, 7, 1, 0, 0, 1);
        let s = q.quota_add_at("c", QuotaPeriod::Day, 3, 1, tomorrow);
        assert_eq!((s.allowed, s.used), (true, 1));
        let s = q.quota_add_at("c", QuotaPeriod::Month, 10, 1, tomorrow);
        assert_eq!((s.allowed, s.used), (true, 1));
        assert_eq!(s.resets_in, Duration::from_secs(31 * DAY - 1));
    }

    #[test]
    fn memory_quota_purges_past_windows() {
        let q = MemoryQuotas::new();
        let now = utc(2025, 1, 31, 12, 0, 0);
        q.quota_add_at("day", QuotaPeriod::Day, 10, 1, now);
        q.quota_add_at("month", QuotaPeriod::Month, 10, 1, now);
        assert!(!q.quota_add_at("denied", QuotaPeriod::Day, 0, 1, now).allowed);
        assert_eq!(q.len(), 2, "a denied unseen key stores nothing");
        q.retain_current_at(now);
        assert_eq!(q.len(), 2);
        q.retain_current_at(utc(2025, 2, 1, 0, 0, 0));
        assert_eq!(
            q.len(),
            0,
            "both windows ended at midnight, Jan 31 being the month's last day"
        );
        q.quota_add_at("month", QuotaPeriod::Month, 10, 1, now);
        q.retain_current_at(utc(2025, 1, 31, 23, 0, 0));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn cost_overflow_is_denied() {
        let q = MemoryQuotas::new();
        let now = utc(2025, 1, 1, 0, 0, 0);
        assert!(q.quota_add_at("k", QuotaPeriod::Day, u64::MAX, 5, now).allowed);
        assert!(!q.quota_add_at("k", QuotaPeriod::Day, u64::MAX, u64::MAX, now).allowed);
    }
}
