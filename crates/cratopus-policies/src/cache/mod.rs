//! The response cache as a policy of the chain (RFC 9111, a shared cache).
//!
//! - **Request side** ([`CachePolicy::on_request`]): a `GET`/`HEAD` is looked up by its key
//!   (organization, host, path, the route's chosen query parameters sorted, chosen headers,
//!   the consumer) and the variant whose `Vary` values match. A fresh entry answers at once
//!   ([`Halt::Answer`]: the policies before the cache run their response side on it, the
//!   backend is not called), as a `304` when the client's `If-None-Match` / `If-Modified-Since`
//!   hold. A stale one within its `stale-while-revalidate` window answers too, and one
//!   background request refreshes it. Otherwise the request goes on to the backend — with the
//!   stored validators when there is a stale entry — and concurrent misses of one key wait
//!   for the first (coalescing, bounded by `coalesce_wait`).
//! - **Response side** ([`CachePolicy::on_response`], then [`CachePolicy::wrap_response_body`]):
//!   a storable answer is relayed to the client as it arrives while a copy is kept
//!   ([`fill::Tee`]), stored when the body ends whole and within `max_body`; a `304` refreshes
//!   the stale entry; a `5xx` within the entry's `stale-if-error` window is answered stale.
//!   An unsafe method that succeeds invalidates its path.
//! - **Backend failure** ([`CachePolicy::on_backend_error`]): a backend that could not be
//!   reached, timed out, or whose breaker is open is answered with the stale entry within its
//!   `stale-if-error` window.
//!
//! Answers carry `Age` and `Cache-Status` (RFC 9211); the traffic log gets `cache`.

mod codec;
pub mod control;
mod fill;
pub mod purge;
mod second;
pub mod store;
pub mod stored;

use crate::chain::{Answer, Halt, RequestCx};
use bytes::Bytes;
use control::Directives;
use cratopus_config::cache::CacheSettings;
use cratopus_observe::traffic_log::LogValue;
use cratopus_upstream::{BackendBody, BackendError};
use fill::{Pending, Replaced, Tee};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
pub use purge::Purge;
use second::SecondLevel;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use store::Flight;
pub use store::{CacheStats, CacheStore, FlightGuard};
use stored::{Freshness, Stored};

/// `Cache-Status` (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// A route's cache settings, compiled.
#[derive(Debug)]
pub struct Settings {
    pub ttl: std::time::Duration,
    pub max_ttl: std::time::Duration,
    /// Query parameters in the key, sorted; `None`: all of them.
    pub query: Option<Box<[String]>>,
    pub headers: Box<[HeaderName]>,
    pub consumer: bool,
    pub public: bool,
    pub max_body: u64,
    pub stale_while_revalidate: std::time::Duration,
    pub stale_if_error: std::time::Duration,
    pub coalesce_wait: std::time::Duration,
}

/// The cache of one route.
#[derive(Debug)]
pub struct CachePolicy {
    settings: Settings,
    store: Arc<CacheStore>,
    org: Arc<str>,
    /// The route authenticates: answers are keyed by consumer unless `public`.
    authenticates: bool,
    /// The traffic log's `cache` values, made once rather than per request.
    labels: [Arc<str>; 5],
}

/// The traffic log's `cache` values, in [`CachePolicy::labels`]' order.
const LABELS: [&str; 5] = ["hit", "miss", "stale", "revalidated", "bypass"];

/// What the cache does with one request, decided on the request side.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// An unsafe method: its path is invalidated when it succeeds.
    Invalidate,
    /// Not cached (why, for `Cache-Status`'s detail).
    Bypass(&'static str),
    /// A miss: the answer may be stored.
    Fetch,
    /// A stale entry asked again with its validators.
    Revalidate,
    /// The background request of stale-while-revalidate.
    Refresh,
    /// The cache answered the backend's failure with a stale entry.
    Answered,
}

/// What the cache learned about one request ([`RequestCx::cache`]).
#[derive(Debug)]
pub struct CacheCx {
    mode: Mode,
    key: Arc<str>,
    path_id: u64,
    /// The client's request headers, kept on a miss: the `Vary` values to store, the client's
    /// own conditionals (the cache sends its validators instead).
    req_headers: HeaderMap,
    head: bool,
    /// The stale entry: revalidated, or served if the backend fails.
    stale: Option<Arc<Stored>>,
    /// The miss this request leads (coalescing).
    flight: Option<Arc<FlightGuard>>,
    /// Decided on the response side, for the body.
    then: Then,
}

#[derive(Debug)]
enum Then {
    Relay,
    Store(Box<Stored>),
    /// A stored body instead of the backend's (`None`: no body, a 304 or a HEAD).
    Replace(Option<Bytes>),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("key", &self.key).finish()
    }
}

impl CachePolicy {
    pub fn compile(s: &CacheSettings, store: Arc<CacheStore>, org: Arc<str>, authenticates: bool) -> CachePolicy {
        CachePolicy {
            settings: Settings {
                ttl: s.ttl,
                max_ttl: s.max_ttl,
                query: s.query.as_ref().map(|q| q.clone().into_boxed_slice()),
                headers: s
                    .headers
                    .iter()
                    .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                    .collect(),
                consumer: s.consumer,
                public: s.public,
                max_body: s.max_body,
                stale_while_revalidate: s.stale_while_revalidate,
                stale_if_error: s.stale_if_error,
                coalesce_wait: s.coalesce_wait,
            },
            store,
            org,
            authenticates,
            labels: LABELS.map(Arc::from),
        }
    }

    /// The log value `name` (one of [`LABELS`]).
    fn label(&self, name: &str) -> LogValue {
        let i = LABELS.iter().position(|l| *l == name).unwrap_or(0);
        LogValue::Str(self.labels[i].clone())
    }

    pub fn store(&self) -> &Arc<CacheStore> {
        &self.store
    }

    pub async fn on_request(&self, cx: &mut RequestCx, req: &mut http::request::Parts) -> Result<(), Halt> {
        if cx.upgrade {
            return Ok(()); // a WebSocket handshake: neither answered nor stored
        }
        let head = req.method == Method::HEAD;
        let host = host_of(req);
        let path_id = path_id(&self.org, &host, req.uri.path());
        if req.method != Method::GET && !head {
            if !matches!(req.method, Method::OPTIONS | Method::TRACE) {
                cx.cache = Some(Box::new(self.cx(Mode::Invalidate, Arc::from(""), path_id, head)));
            }
            return Ok(());
        }
        let asked = Directives::of(&req.headers);
        let keyed_by_consumer = (self.authenticates && !self.settings.public) || self.settings.consumer;
        let why_not = if asked.no_store {
            Some("no-store")
        } else if keyed_by_consumer && self.authenticates && cx.consumer.is_none() {
            Some("no-consumer")
        } else if !self.authenticates && !self.settings.public && req.headers.contains_key(header::AUTHORIZATION) {
            // Credentials the gateway did not check: the answer may be this client's alone.
            Some("authorization")
        } else {
            None
        };
        if let Some(why) = why_not {
            self.store.stats.bypassed.fetch_add(1, Ordering::Relaxed);
            cx.log_fields.push(("cache", self.label("bypass")));
            cx.cache = Some(Box::new(self.cx(Mode::Bypass(why), Arc::from(""), path_id, head)));
            return Ok(());
        }
        let consumer = keyed_by_consumer.then(|| cx.consumer.as_deref().unwrap_or("-"));
        let key: Arc<str> = self.key(&host, req, consumer).into();
        let now = Instant::now();
        let revalidate_asked = asked.no_cache || asked.max_age == Some(0);
        let mut found = self.store.get(&key, path_id, |s| s.matches(&req.headers));
        // A memory miss asks the second level (Redis), when there is one.
        let mut shared = false;
        if found.is_none()
            && let Some(second) = self.store.second_level()
        {
            found = self.ask_second_level(&second, &key, path_id, &req.headers).await;
            shared = found.is_some();
        }
        if let Some(s) = &found
            && !revalidate_asked
        {
            if s.is_fresh(now) {
                let (counter, detail) = if shared {
                    (&self.store.stats.hits_l2, "; detail=shared")
                } else {
                    (&self.store.stats.hits, "")
                };
                counter.fetch_add(1, Ordering::Relaxed);
                cx.log_fields.push(("cache", self.label("hit")));
                let status = format!("cratopus; hit; ttl={}{detail}", s.ttl(now));
                return Err(Halt::Answer(Box::new(answer(s, &req.headers, head, now, &status))));
            }
            // Stale within stale-while-revalidate: answered now, and refreshed behind it by
            // one background request (none while one is out already).
            if !head && s.usable_stale(now, s.stale_while_revalidate) {
                self.store.stats.stale.fetch_add(1, Ordering::Relaxed);
                cx.log_fields.push(("cache", self.label("stale")));
                let status = format!("cratopus; hit; ttl={}; detail=stale-while-revalidate", s.ttl(now));
                let mut a = answer(s, &req.headers, head, now, &status);
                if let Flight::Lead(guard) = self.store.join(&key) {
                    let mut bg = cx.fork();
                    let mut c = self.cx(Mode::Refresh, key.clone(), path_id, false);
                    c.req_headers = req.headers.clone();
                    c.stale = Some(s.clone());
                    c.flight = Some(Arc::new(guard));
                    bg.cache = Some(Box::new(c));
                    set_validators(&mut req.headers, s);
                    a.background = Some(Box::new(bg));
                }
                return Err(Halt::Answer(Box::new(a)));
            }
        }
        if head {
            // A HEAD answer has no body to store: a miss forwarded as it is, the stale entry
            // kept for stale-if-error.
            let mut c = self.cx(Mode::Fetch, key, path_id, head);
            c.stale = found;
            cx.cache = Some(Box::new(c));
            return Ok(());
        }
        let mut flight = None;
        if !self.settings.coalesce_wait.is_zero() {
            match self.store.join(&key) {
                Flight::Lead(guard) => flight = Some(Arc::new(guard)),
                Flight::Wait(mut rx) => {
                    let _ = tokio::time::timeout(self.settings.coalesce_wait, rx.changed()).await;
                    let now = Instant::now();
                    if let Some(s) = self.store.get(&key, path_id, |s| s.matches(&req.headers))
                        && s.is_fresh(now)
                    {
                        self.store.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                        self.store.stats.hits.fetch_add(1, Ordering::Relaxed);
                        cx.log_fields.push(("cache", self.label("hit")));
                        let status = format!("cratopus; hit; ttl={}; detail=coalesced", s.ttl(now));
                        return Err(Halt::Answer(Box::new(answer(&s, &req.headers, head, now, &status))));
                    }
                }
            }
        }
        let mode = if found.is_some() { Mode::Revalidate } else { Mode::Fetch };
        let mut c = self.cx(mode, key, path_id, head);
        c.req_headers = req.headers.clone();
        c.flight = flight;
        // The client's conditionals are answered by the cache; the backend gets the cache's.
        req.headers.remove(header::IF_NONE_MATCH);
        req.headers.remove(header::IF_MODIFIED_SINCE);
        if let Some(s) = &found {
            set_validators(&mut req.headers, s);
        }
        c.stale = found;
        cx.cache = Some(Box::new(c));
        Ok(())
    }

    /// The variants the second level holds for `key`, put in memory (except those stored
    /// before this node invalidated their path); the one matching the request's `Vary` values.
    async fn ask_second_level(
        &self,
        second: &SecondLevel,
        key: &Arc<str>,
        path_id: u64,
        req: &HeaderMap,
    ) -> Option<Arc<Stored>> {
        let invalidated = self.store.invalidated_at(path_id);
        let variants: Vec<Arc<Stored>> = second
            .get(key)
            .await
            .into_iter()
            .filter(|v| invalidated.is_none_or(|at| v.stored_at > at))
            .map(Arc::new)
            .collect();
        if variants.is_empty() {
            return None;
        }
        let found = variants.iter().rev().find(|v| v.matches(req)).cloned();
        self.store.put_local(key.clone(), variants);
        found
    }

    fn cx(&self, mode: Mode, key: Arc<str>, path_id: u64, head: bool) -> CacheCx {
        CacheCx {
            mode,
            key,
            path_id,
            req_headers: HeaderMap::new(),
            head,
            stale: None,
            flight: None,
            then: Then::Relay,
        }
    }

    /// `org \n host \n path \n query \n headers \n consumer`: the store's purges read the
    /// first three.
    fn key(&self, host: &str, req: &http::request::Parts, consumer: Option<&str>) -> String {
        let mut key = String::with_capacity(128);
        key.push_str(&self.org);
        key.push('\n');
        key.push_str(host);
        key.push('\n');
        key.push_str(req.uri.path());
        key.push('\n');
        if let Some(q) = req.uri.query() {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| {
                    self.settings
                        .query
                        .as_ref()
                        .is_none_or(|names| names.binary_search_by(|n| n.as_str().cmp(k)).is_ok())
                })
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            pairs.sort();
            let mut out = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                out.append_pair(k, v);
            }
            key.push_str(&out.finish());
        }
        key.push('\n');
        for h in &self.settings.headers {
            key.push_str(h.as_str());
            key.push('=');
            if let Some(v) = stored::vary_value(h, &req.headers) {
                key.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            key.push('\t');
        }
        key.push('\n');
        if let Some(c) = consumer {
            key.push_str(c);
        }
        key
    }

    pub fn on_response(&self, cx: &mut RequestCx, res: &mut http::response::Parts) {
        let Some(c) = cx.cache.as_deref_mut() else { return };
        let (log, status) = self.decide(c, res);
        if let Some(log) = log {
            cx.log_fields.push(("cache", self.label(log)));
        }
        if let Some(status) = status
            && let Ok(v) = HeaderValue::from_str(&status)
        {
            res.headers.insert(CACHE_STATUS.clone(), v);
        }
    }

    /// What becomes of the answer: the log's `cache` value and the `Cache-Status`.
    fn decide(&self, c: &mut CacheCx, res: &mut http::response::Parts) -> (Option<&'static str>, Option<String>) {
        let stats = &self.store.stats;
        match c.mode {
            Mode::Invalidate => {
                if res.status.as_u16() < 400 {
                    self.store.invalidate_path(c.path_id);
                }
                return (None, None);
            }
            Mode::Bypass(why) => return (None, Some(format!("cratopus; fwd=bypass; detail={why}"))),
            Mode::Answered => return (None, None),
            Mode::Fetch | Mode::Revalidate | Mode::Refresh => {}
        }
        let now = Instant::now();
        let code = res.status.as_u16();
        // The stale entry, refreshed by the backend's 304.
        // (Only when the cache sent its own validators: a HEAD passes the client's on.)
        if res.status == StatusCode::NOT_MODIFIED
            && matches!(c.mode, Mode::Revalidate | Mode::Refresh)
            && let Some(stale) = &c.stale
        {
            let d = Directives::of(&res.headers);
            let fresh = Freshness::of(&d, &res.headers, &self.settings);
            let new = Arc::new(stale.refreshed(&res.headers, fresh));
            self.store.put(c.key.clone(), new.clone());
            stats.revalidated.fetch_add(1, Ordering::Relaxed);
            let not_modified = new.not_modified_for(&c.req_headers);
            set_head(res, &new, not_modified, now);
            c.then = Then::Replace((!not_modified && !c.head).then(|| new.body.clone()));
            return (
                Some("revalidated"),
                Some(format!("cratopus; fwd=stale; fwd-status=304; ttl={}", new.ttl(now))),
            );
        }
        // The backend failed with a 5xx: the stale entry within stale-if-error.
        if code >= 500
            && let Some(stale) = &c.stale
            && stale.usable_stale(now, stale.stale_if_error)
        {
            stats.stale.fetch_add(1, Ordering::Relaxed);
            let not_modified = stale.not_modified_for(&c.req_headers);
            let stale = stale.clone();
            set_head(res, &stale, not_modified, now);
            c.then = Then::Replace((!not_modified && !c.head).then(|| stale.body.clone()));
            return (
                Some("stale"),
                Some(format!(
                    "cratopus; fwd=stale; fwd-status={code}; ttl={}; detail=stale-if-error",
                    stale.ttl(now)
                )),
            );
        }
        if c.mode != Mode::Refresh {
            stats.misses.fetch_add(1, Ordering::Relaxed);
        }
        let fwd = if c.mode == Mode::Fetch { "miss" } else { "stale" };
        match self.storable(c, res) {
            Some(answer) => {
                c.then = Then::Store(Box::new(answer));
                (
                    Some("miss"),
                    Some(format!("cratopus; fwd={fwd}; fwd-status={code}; stored")),
                )
            }
            None => (Some("miss"), Some(format!("cratopus; fwd={fwd}; fwd-status={code}"))),
        }
    }

    /// The answer to store, when it may be (RFC 9111 §3), with an empty body for now.
    fn storable(&self, c: &CacheCx, res: &http::response::Parts) -> Option<Stored> {
        if c.head
            || !matches!(
                res.status.as_u16(),
                200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
            )
        {
            return None;
        }
        let d = Directives::of(&res.headers);
        if d.no_store || d.private || res.headers.contains_key(header::SET_COOKIE) {
            return None;
        }
        // Credentials the gateway did not check: only what the backend says is shareable.
        if c.req_headers.contains_key(header::AUTHORIZATION)
            && !self.authenticates
            && !(d.public || d.s_maxage.is_some() || d.must_revalidate)
        {
            return None;
        }
        if res
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.settings.max_body)
        {
            return None;
        }
        let mut vary_names: Vec<HeaderName> = Vec::new();
        for v in res.headers.get_all(header::VARY) {
            for name in v.to_str().ok()?.split(',') {
                let name = name.trim();
                if name == "*" {
                    return None;
                }
                if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                    vary_names.push(n);
                }
            }
        }
        vary_names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        vary_names.dedup();
        let fresh = Freshness::of(&d, &res.headers, &self.settings);
        // Nothing to serve it for: not fresh, no stale window, no validators to revalidate.
        let validators = res.headers.contains_key(header::ETAG) || res.headers.contains_key(header::LAST_MODIFIED);
        if fresh.fresh_for.is_zero()
            && fresh.stale_if_error.is_zero()
            && fresh.stale_while_revalidate.is_zero()
            && !validators
        {
            return None;
        }
        let mut headers = HeaderMap::with_capacity(res.headers.len());
        for (k, v) in &res.headers {
            if stored::is_stored_header(k) {
                headers.append(k.clone(), v.clone());
            }
        }
        let tags = [&SURROGATE_KEY, &CACHE_TAG]
            .into_iter()
            .flat_map(|n| res.headers.get_all(n))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([' ', ',']))
            .filter(|t| !t.is_empty())
            .map(Box::from)
            .collect();
        Some(Stored {
            status: res.status,
            headers,
            body: Bytes::new(),
            stored_at: Instant::now(),
            initial_age: fresh.initial_age,
            fresh_for: fresh.fresh_for,
            stale_while_revalidate: fresh.stale_while_revalidate,
            stale_if_error: fresh.stale_if_error,
            must_revalidate: fresh.must_revalidate,
            no_cache: fresh.no_cache,
            vary: vary_names
                .iter()
                .map(|n| stored::vary_value(n, &c.req_headers))
                .collect(),
            vary_names,
            tags,
        })
    }

    pub fn wrap_response_body(&self, cx: &mut RequestCx, body: BackendBody) -> BackendBody {
        let Some(c) = cx.cache.as_deref_mut() else { return body };
        match std::mem::replace(&mut c.then, Then::Relay) {
            Then::Relay => body,
            Then::Replace(bytes) => body.wrap(|frames| Replaced::new(frames, bytes)),
            Then::Store(answer) => {
                let pending = Box::new(Pending {
                    store: self.store.clone(),
                    key: c.key.clone(),
                    answer: *answer,
                    max_body: self.settings.max_body,
                    flight: c.flight.take(),
                });
                body.wrap(|frames| Tee::new(frames, pending))
            }
        }
    }

    /// The backend failed (unreachable, timed out, breaker open, overloaded): the stale entry
    /// within its `stale-if-error` window answers instead.
    pub fn on_backend_error(&self, cx: &mut RequestCx, err: &BackendError) -> Option<http::Response<BackendBody>> {
        if matches!(err, BackendError::Client(_)) {
            return None;
        }
        let c = cx.cache.as_deref()?;
        let stale = c.stale.as_ref()?;
        let now = Instant::now();
        if !stale.usable_stale(now, stale.stale_if_error) {
            return None;
        }
        self.store.stats.stale.fetch_add(1, Ordering::Relaxed);
        let status = format!("cratopus; fwd=stale; ttl={}; detail=stale-if-error", stale.ttl(now));
        let a = answer(stale, &c.req_headers, c.head, now, &status);
        cx.log_fields.push(("cache", self.label("stale")));
        // The entry answered: the response side leaves this answer as it is.
        if let Some(c) = cx.cache.as_deref_mut() {
            c.mode = Mode::Answered;
            c.flight = None;
        }
        Some(a.response)
    }
}

/// A stored answer as the client gets it: `304` when its conditionals hold, no body to a HEAD,
/// `Age` and `Cache-Status` set.
fn answer(s: &Stored, req: &HeaderMap, head: bool, now: Instant, status: &str) -> Answer {
    let not_modified = s.not_modified_for(req);
    let mut res = http::Response::new(if not_modified || head {
        BackendBody::empty()
    } else {
        BackendBody::full(s.body.clone())
    });
    let (mut parts, body) = res.into_parts();
    set_head(&mut parts, s, not_modified, now);
    if let Ok(v) = HeaderValue::from_str(status) {
        parts.headers.insert(CACHE_STATUS.clone(), v);
    }
    res = http::Response::from_parts(parts, body);
    Answer {
        response: res,
        background: None,
    }
}

/// The head of a stored answer (or its 304) in place of `res`'s.
fn set_head(res: &mut http::response::Parts, s: &Stored, not_modified: bool, now: Instant) {
    res.status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        s.status
    };
    res.headers = s.headers.clone();
    if not_modified {
        res.headers.remove(header::CONTENT_LENGTH);
    } else {
        res.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(s.body.len()));
    }
    res.headers.insert(header::AGE, HeaderValue::from(s.age(now)));
}

/// The request the cache sends to revalidate `s`: its validators.
fn set_validators(headers: &mut HeaderMap, s: &Stored) {
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    if let Some(etag) = s.etag() {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
    } else if let Some(lm) = s.last_modified() {
        headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
}

/// The request's host, lowercase, without its port.
fn host_of(req: &http::request::Parts) -> String {
    let raw = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
        .unwrap_or("");
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => raw,
    };
    host.to_ascii_lowercase()
}

/// What invalidations and purges by URL mark: an organization's host and path.
pub fn path_id(org: &str, host: &str, path: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (org, host, path).hash(&mut h);
    h.finish()
}
