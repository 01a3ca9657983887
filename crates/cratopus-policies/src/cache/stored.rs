//! A stored answer: its head and body, when it was stored and how long it stays fresh, the
//! request header values it varies on, its validators and its tags.

use super::control::{self, Directives};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Stored {
    pub status: StatusCode,
    /// The answer's headers as the cache saw them (no `Age`, no hop-by-hop, no `Set-Cookie`).
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stored_at: Instant,
    /// The `Age` it came with, in seconds.
    pub initial_age: u64,
    pub fresh_for: Duration,
    /// How long past freshness it may be served while refreshed, or when the backend fails.
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// Never served stale, and revalidated each time when `no_cache`.
    pub must_revalidate: bool,
    pub no_cache: bool,
    /// The header names of the answer's `Vary` (lowercase, sorted), and the request's values
    /// of them (`accept-encoding` normalized, see [`control::accept_encoding`]).
    pub vary_names: Vec<HeaderName>,
    pub vary: Vec<Option<HeaderValue>>,
    /// `Surrogate-Key` and `Cache-Tag` values, for purge by tag.
    pub tags: Vec<Box<str>>,
}

impl Stored {
    /// Bytes it takes, as the store weighs it.
    pub fn weight(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum();
        self.body.len() + headers + self.tags.iter().map(|t| t.len() + 16).sum::<usize>() + 256
    }

    /// Its age now, in seconds (§4.2.3: the age it came with plus its time here).
    pub fn age(&self, now: Instant) -> u64 {
        self.initial_age + now.saturating_duration_since(self.stored_at).as_secs()
    }

    /// Seconds of freshness left; negative when stale.
    pub fn ttl(&self, now: Instant) -> i64 {
        let age = self.initial_age as i64 + now.saturating_duration_since(self.stored_at).as_secs() as i64;
        self.fresh_for.as_secs() as i64 - age
    }

    /// Fresh and usable without asking the backend.
    pub fn is_fresh(&self, now: Instant) -> bool {
        !self.no_cache && self.elapsed(now) < self.fresh_for
    }

    /// How long it has been stale (zero while fresh).
    pub fn stale_for(&self, now: Instant) -> Duration {
        self.elapsed(now).saturating_sub(self.fresh_for)
    }

    fn elapsed(&self, now: Instant) -> Duration {
        Duration::from_secs(self.initial_age) + now.saturating_duration_since(self.stored_at)
    }

    /// Whether it may be served stale, `for_how_long` past its freshness at most.
    pub fn usable_stale(&self, now: Instant, window: Duration) -> bool {
        !self.must_revalidate && self.stale_for(now) <= window && !window.is_zero()
    }

    /// Whether the request's values of the `Vary` headers are the stored ones.
    pub fn matches(&self, req: &HeaderMap) -> bool {
        self.vary_names
            .iter()
            .zip(&self.vary)
            .all(|(name, stored)| vary_value(name, req).as_ref() == stored.as_ref())
    }

    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(header::ETAG)
    }

    pub fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(header::LAST_MODIFIED)
    }

    /// Whether the request's conditionals (`If-None-Match`, else `If-Modified-Since`) hold
    /// for this answer, so that the client gets a 304 (RFC 9110 §13.2.2).
    pub fn not_modified_for(&self, req: &HeaderMap) -> bool {
        if let Some(inm) = req.get(header::IF_NONE_MATCH) {
            let Some(etag) = self.etag().and_then(|e| e.to_str().ok()) else {
                return false;
            };
            let Ok(inm) = inm.to_str() else { return false };
            // Weak comparison: `W/"x"` and `"x"` match.
            let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
            return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
        }
        if let (Some(ims), Some(lm)) = (
            req.get(header::IF_MODIFIED_SINCE).and_then(control::date),
            self.last_modified().and_then(control::date),
        ) {
            return lm <= ims;
        }
        false
    }

    /// The same answer, refreshed by a backend's 304 (RFC 9111 §4.3.4): the 304's headers
    /// replace the stored ones of the same name, and it is fresh again.
    pub fn refreshed(&self, not_modified: &HeaderMap, fresh: Freshness) -> Stored {
        let mut headers = self.headers.clone();
        for name in not_modified.keys() {
            if is_stored_header(name) && name != header::CONTENT_LENGTH {
                headers.remove(name);
                for v in not_modified.get_all(name) {
                    headers.append(name.clone(), v.clone());
                }
            }
        }
        Stored {
            status: self.status,
            headers,
            body: self.body.clone(),
            stored_at: Instant::now(),
            initial_age: fresh.initial_age,
            fresh_for: fresh.fresh_for,
            stale_while_revalidate: fresh.stale_while_revalidate,
            stale_if_error: fresh.stale_if_error,
            must_revalidate: fresh.must_revalidate,
            no_cache: fresh.no_cache,
            vary_names: self.vary_names.clone(),
            vary: self.vary.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// What the headers of an answer say about keeping it.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub initial_age: u64,
    pub fresh_for: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub must_revalidate: bool,
    pub no_cache: bool,
}

impl Freshness {
    pub fn of(d: &Directives, headers: &HeaderMap, settings: &super::Settings) -> Freshness {
        let fresh_for = control::lifetime(d, headers, std::time::SystemTime::now())
            .unwrap_or(settings.ttl)
            .min(settings.max_ttl);
        let secs =
            |s: Option<u64>, default: Duration| s.map_or(default, Duration::from_secs).min(super::store::LONGEST_LIFE);
        Freshness {
            initial_age: control::age(headers),
            fresh_for,
            stale_while_revalidate: secs(d.stale_while_revalidate, settings.stale_while_revalidate),
            stale_if_error: secs(d.stale_if_error, settings.stale_if_error),
            must_revalidate: d.must_revalidate,
            no_cache: d.no_cache,
        }
    }
}

/// A request's value of a `Vary` header as the stored variant keeps it.
pub fn vary_value(name: &HeaderName, req: &HeaderMap) -> Option<HeaderValue> {
    if name == header::ACCEPT_ENCODING {
        return HeaderValue::from_str(&control::accept_encoding(req)).ok();
    }
    let mut values = req.get_all(name).iter();
    let first = values.next()?.clone();
    match values.next() {
        None => Some(first),
        // Several lines: joined, as a list header's lines mean the same joined.
        Some(_) => {
            let joined: Vec<&[u8]> = req.get_all(name).iter().map(|v| v.as_bytes()).collect();
            HeaderValue::from_bytes(&joined.join(&b", "[..])).ok()
        }
    }
}

/// Headers a stored answer keeps: not the hop-by-hop ones, not `Age` (recomputed), not
/// `Set-Cookie` (one client's).
pub fn is_stored_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "age"
            | "set-cookie"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "cache-status"
    )
}
