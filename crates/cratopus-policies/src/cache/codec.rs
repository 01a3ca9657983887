//! The bytes of a stored entry in the second level (Redis): a small length-prefixed format,
//! so that an answer crosses nodes without a serde layer and a value that does not parse (a
//! foreign key, a future version) is a miss rather than an error.
//!
//! ```text
//! "CRC1"  u32 variants, then per variant:
//!   u16 status  u64 stored-at (Unix ms)  u64 initial age (s)
//!   u64 fresh-for, stale-while-revalidate, stale-if-error (ms)  u8 flags (1 must-revalidate, 2 no-cache)
//!   u32 n × (name, u8 present, value)   — the Vary names and the request's values
//!   u32 n × (name, value)               — the headers
//!   u32 n × tag
//!   body
//! ```
//! Every string is a `u32` length and its bytes; integers are big-endian. The stored-at time
//! crosses nodes as wall-clock time (an `Instant` means nothing on another machine), so clocks
//! out of step by a second shift an answer's age by a second.

use super::stored::Stored;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"CRC1";

/// Encodes the variants of one key.
pub fn encode(variants: &[Arc<Stored>], now: Instant) -> Vec<u8> {
    let size: usize = variants.iter().map(|v| v.weight()).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, variants.len());
    let wall_now = SystemTime::now();
    for v in variants {
        out.extend_from_slice(&v.status.as_u16().to_be_bytes());
        let stored_wall = wall_now
            .checked_sub(now.saturating_duration_since(v.stored_at))
            .unwrap_or(wall_now);
        out.extend_from_slice(&millis(stored_wall.duration_since(UNIX_EPOCH).unwrap_or_default()).to_be_bytes());
        out.extend_from_slice(&v.initial_age.to_be_bytes());
        for d in [v.fresh_for, v.stale_while_revalidate, v.stale_if_error] {
            out.extend_from_slice(&millis(d).to_be_bytes());
        }
        out.push(u8::from(v.must_revalidate) | (u8::from(v.no_cache) << 1));
        put_u32(&mut out, v.vary_names.len());
        for (name, value) in v.vary_names.iter().zip(&v.vary) {
            put_bytes(&mut out, name.as_str().as_bytes());
            out.push(u8::from(value.is_some()));
            put_bytes(&mut out, value.as_ref().map_or(&[][..], |v| v.as_bytes()));
        }
        put_u32(&mut out, v.headers.len());
        for (name, value) in &v.headers {
            put_bytes(&mut out, name.as_str().as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_u32(&mut out, v.tags.len());
        for t in &v.tags {
            put_bytes(&mut out, t.as_bytes());
        }
        put_bytes(&mut out, &v.body);
    }
    out
}

/// Decodes what [`encode`] wrote; `None` for anything else.
pub fn decode(bytes: &[u8], now: Instant) -> Option<Vec<Stored>> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return None;
    }
    let count = r.u32()?;
    let wall_now = SystemTime::now();
    let mut variants = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let status = StatusCode::from_u16(u16::from_be_bytes(r.take(2)?.try_into().ok()?)).ok()?;
        let stored_wall = UNIX_EPOCH + Duration::from_millis(r.u64()?);
        let ago = wall_now.duration_since(stored_wall).unwrap_or_default();
        let initial_age = r.u64()?;
        let fresh_for = Duration::from_millis(r.u64()?);
        let stale_while_revalidate = Duration::from_millis(r.u64()?);
        let stale_if_error = Duration::from_millis(r.u64()?);
        let flags = r.take(1)?[0];
        let n = r.u32()?;
        let mut vary_names = Vec::with_capacity(n.min(16));
        let mut vary = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            vary_names.push(HeaderName::from_bytes(r.bytes()?).ok()?);
            let present = r.take(1)?[0] == 1;
            let value = r.bytes()?;
            vary.push(if present {
                Some(HeaderValue::from_bytes(value).ok()?)
            } else {
                None
            });
        }
        let n = r.u32()?;
        let mut headers = HeaderMap::with_capacity(n.min(64));
        for _ in 0..n {
            let name = HeaderName::from_bytes(r.bytes()?).ok()?;
            headers.append(name, HeaderValue::from_bytes(r.bytes()?).ok()?);
        }
        let n = r.u32()?;
        let mut tags = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            tags.push(Box::from(std::str::from_utf8(r.bytes()?).ok()?));
        }
        let body = Bytes::copy_from_slice(r.bytes()?);
        // Stored `ago` on another node: as long before now here (the invalidations of this
        // node compare against it). A clock that cannot go back so far folds it into the age.
        let (stored_at, extra_age) = match now.checked_sub(ago) {
            Some(at) => (at, 0),
            None => (now, ago.as_secs()),
        };
        variants.push(Stored {
            status,
            headers,
            body,
            stored_at,
            initial_age: initial_age.saturating_add(extra_age),
            fresh_for,
            stale_while_revalidate,
            stale_if_error,
            must_revalidate: flags & 1 != 0,
            no_cache: flags & 2 != 0,
            vary_names,
            vary,
            tags,
        });
    }
    r.0.is_empty().then_some(variants)
}

/// How long the second level should keep the variants: the longest remaining fresh and
/// stale window among them; `None` when none is left.
pub fn remaining_life(variants: &[Arc<Stored>], now: Instant) -> Option<Duration> {
    variants
        .iter()
        .filter_map(|v| {
            let life = v.fresh_for + v.stale_while_revalidate.max(v.stale_if_error);
            let elapsed = Duration::from_secs(v.initial_age) + now.saturating_duration_since(v.stored_at);
            life.checked_sub(elapsed).filter(|d| !d.is_zero())
        })
        .max()
        .map(|d| d.min(super::store::LONGEST_LIFE))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now: Instant) -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        Stored {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"hello \x00 world"),
            stored_at: now.checked_sub(Duration::from_secs(3)).unwrap_or(now),
            initial_age: 2,
            fresh_for: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(30),
            must_revalidate: false,
            no_cache: true,
            vary_names: vec![
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("x-v"),
            ],
            vary: vec![Some(HeaderValue::from_static("gzip")), None],
            tags: vec![Box::from("t1"), Box::from("t2")],
        }
    }

    #[test]
    fn round_trips_every_field() {
        let now = Instant::now();
        let s = Arc::new(sample(now));
        let bytes = encode(&[s.clone(), s.clone()], now);
        let back = decode(&bytes, now).expect("decodes");
        assert_eq!(back.len(), 2);
        let b = &back[0];
        assert_eq!(b.status, s.status);
        assert_eq!(b.headers, s.headers);
        assert_eq!(b.body, s.body);
        assert_eq!(b.initial_age, 2);
        assert_eq!(b.fresh_for, s.fresh_for);
        assert_eq!(b.stale_while_revalidate, s.stale_while_revalidate);
        assert_eq!(b.stale_if_error, s.stale_if_error);
        assert!(!b.must_revalidate && b.no_cache);
        assert_eq!(b.vary_names, s.vary_names);
        assert_eq!(b.vary, s.vary);
        assert_eq!(b.tags, s.tags);
        // Milliseconds survive the trip through wall-clock time.
        let drift = b.stored_at.max(s.stored_at) - b.stored_at.min(s.stored_at);
        assert!(drift < Duration::from_millis(50), "{drift:?}");
    }

    #[test]
    fn anything_else_is_none() {
        let now = Instant::now();
        let bytes = encode(&[Arc::new(sample(now))], now);
        for cut in [0, 3, 4, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], now).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, now).is_none());
        assert!(decode(b"not an entry", now).is_none());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge, now).is_none(), "a huge count allocates nothing up front");
    }

    #[test]
    fn remaining_life_is_fresh_plus_the_longest_stale_window() {
        let now = Instant::now();
        let s = Arc::new(sample(now));
        // 60 s fresh + 30 s stale-if-error - (2 s initial age + 3 s here) = 85 s.
        assert_eq!(remaining_life(&[s], now), Some(Duration::from_secs(85)));
        let mut old = sample(now);
        old.initial_age = 1000;
        assert_eq!(remaining_life(&[Arc::new(old)], now), None);
    }
}
