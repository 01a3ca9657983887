//! The serde types of the response cache: `cache:` on an organization (the default of its
//! routes) and on a route (each field it sets replaces the organization's), and the gateway's
//! `cache:` section (the memory bound of the one store every organization shares). The runtime
//! is `cratopus_policies::cache`; docs/configuration.md "Response cache" describes the behaviour.

use crate::units::{ByteSize, Dur};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `cache:` of an organization or a route. Every field is optional so that a route's section
/// can change one setting of its organization's and keep the others.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether the route's `GET`/`HEAD` answers are cached. Default: `true` when a `cache:`
    /// section is present (a route's `enabled: false` turns its organization's off).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Freshness of an answer that says nothing about it (no `Cache-Control` max-age or
    /// s-maxage, no `Expires`). Default: `0s`, such answers are not stored.
    #[serde(default)]
    pub ttl: Option<Dur>,
    /// The longest freshness the cache grants, whatever the backend says. Default: `1h`; at
    /// most `24h` (as the stale windows: nothing is kept longer than a day).
    #[serde(default)]
    pub max_ttl: Option<Dur>,
    /// What the cache key is made of, besides method (HEAD is keyed as GET), host and path.
    #[serde(default)]
    pub key: Option<CacheKeyConfig>,
    /// Answers to authenticated requests are shared between consumers (they are the same for
    /// everyone). Default: `false`: an authenticated answer is cached per consumer (keyed by
    /// it), and not at all when the request authenticated with no consumer to key by.
    #[serde(default)]
    pub public: Option<bool>,
    /// Largest body stored; a larger answer streams through uncached. Default: `1MiB`.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// How long past its freshness a stale answer may be served while one background request
    /// refreshes it, when the backend's `Cache-Control` does not say (`stale-while-revalidate`).
    /// Default: `0s`.
    #[serde(default)]
    pub stale_while_revalidate: Option<Dur>,
    /// How long past its freshness a stale answer may be served when the backend fails (an
    /// error, a timeout, an open breaker, a 5xx), when its `Cache-Control` does not say
    /// (`stale-if-error`). Default: `0s`.
    #[serde(default)]
    pub stale_if_error: Option<Dur>,
    /// Concurrent misses of one key make one backend request; the others wait for its answer
    /// this long at most, then go to the backend themselves. `0s` turns coalescing off.
    /// Default: `5s`.
    #[serde(default)]
    pub coalesce_wait: Option<Dur>,
}

/// The parts of the cache key a route chooses.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheKeyConfig {
    /// Query parameters in the key (sorted, so their order does not matter); the others are
    /// ignored. Default: every parameter, sorted.
    #[serde(default)]
    pub query: Option<Vec<String>>,
    /// Request headers in the key (besides those the backend's `Vary` names).
    #[serde(default)]
    pub headers: Vec<String>,
    /// The consumer in the key, on a route that does not authenticate too (a consumer
    /// chosen by a header on an open route). Authenticated routes always key by consumer
    /// unless `public`.
    #[serde(default)]
    pub consumer: bool,
}

/// The gateway's `cache:` section: the memory store every organization's routes share.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheStoreConfig {
    /// The most bytes the stored answers take (bodies, headers and keys, weighed in bytes);
    /// the least recently used go first beyond it. Default: `64MiB`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
}

impl Default for CacheStoreConfig {
    fn default() -> Self {
        CacheStoreConfig {
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_max_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

/// A route's cache settings with its organization's filled in and the defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub max_ttl: Duration,
    /// `None`: every query parameter.
    pub query: Option<Vec<String>>,
    pub headers: Vec<String>,
    pub consumer: bool,
    pub public: bool,
    pub max_body: u64,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub coalesce_wait: Duration,
}

impl CacheConfig {
    /// The settings of a route whose own section is `route` and whose organization's is `org`;
    /// `None` when the route does not cache.
    pub fn resolve(org: Option<&CacheConfig>, route: Option<&CacheConfig>) -> Option<CacheSettings> {
        if org.is_none() && route.is_none() {
            return None;
        }
        fn pick<T: Clone>(
            org: Option<&CacheConfig>,
            route: Option<&CacheConfig>,
            f: impl Fn(&CacheConfig) -> Option<T>,
        ) -> Option<T> {
            route.and_then(&f).or_else(|| org.and_then(&f))
        }
        if !pick(org, route, |c| c.enabled).unwrap_or(true) {
            return None;
        }
        let key = pick(org, route, |c| c.key.clone()).unwrap_or_default();
        let dur = |f: fn(&CacheConfig) -> Option<Dur>, default: Duration| pick(org, route, f).map_or(default, |d| d.0);
        Some(CacheSettings {
            ttl: dur(|c| c.ttl, Duration::ZERO),
            max_ttl: dur(|c| c.max_ttl, Duration::from_secs(3600)),
            query: key.query.map(|mut q| {
                q.sort();
                q.dedup();
                q
            }),
            headers: key.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            consumer: key.consumer,
            public: pick(org, route, |c| c.public).unwrap_or(false),
            max_body: pick(org, route, |c| c.max_body).map_or(1 << 20, |b| b.0),
            stale_while_revalidate: dur(|c| c.stale_while_revalidate, Duration::ZERO),
            stale_if_error: dur(|c| c.stale_if_error, Duration::ZERO),
            coalesce_wait: dur(|c| c.coalesce_wait, Duration::from_secs(5)),
        })
    }

    /// Values serde accepts but the runtime cannot use, each starting with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(ttl), Some(max)) = (self.ttl, self.max_ttl)
            && ttl.0 > max.0
        {
            out.push(format!(
                "ttl ({:?}) must not be longer than max_ttl ({:?})",
                ttl.0, max.0
            ));
        }
        if self.max_ttl.is_some_and(|m| m.0.is_zero()) {
            out.push("max_ttl must be more than 0".into());
        }
        // The store keeps nothing longer than a day (its invalidation marks live that long).
        let day = Duration::from_secs(24 * 3600);
        for (name, d) in [
            ("ttl", self.ttl),
            ("max_ttl", self.max_ttl),
            ("stale_while_revalidate", self.stale_while_revalidate),
            ("stale_if_error", self.stale_if_error),
        ] {
            if d.is_some_and(|d| d.0 > day) {
                out.push(format!("{name} must be at most 24h"));
            }
        }
        if self.max_body.is_some_and(|b| b.0 == 0) {
            out.push("max_body must be more than 0".into());
        }
        if self.coalesce_wait.is_some_and(|w| w.0 > Duration::from_secs(60)) {
            out.push("coalesce_wait must be at most 60s: a waiting request holds its client".into());
        }
        if let Some(key) = &self.key {
            for h in &key.headers {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    out.push(format!("key: headers: `{h}` is not a header name"));
                }
            }
            for q in key.query.iter().flatten() {
                if q.is_empty() {
                    out.push("key: query: a parameter name is empty".into());
                }
            }
        }
        out
    }
}

impl CacheStoreConfig {
    /// Values serde accepts but the runtime cannot use.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_bytes.0 < 64 << 10 {
            out.push("max_bytes must be at least 64KiB".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> CacheConfig {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn a_route_setting_replaces_its_organizations_and_keeps_the_others() {
        let org = cfg("ttl: 30s\nstale_if_error: 1m\nkey: {query: [b, a]}\n");
        let route = cfg("ttl: 5s\n");
        let s = CacheConfig::resolve(Some(&org), Some(&route)).expect("caches");
        assert_eq!(s.ttl, Duration::from_secs(5));
        assert_eq!(s.stale_if_error, Duration::from_secs(60));
        assert_eq!(s.query, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.coalesce_wait, Duration::from_secs(5));
        let off = cfg("enabled: false\n");
        assert_eq!(CacheConfig::resolve(Some(&org), Some(&off)), None);
        assert_eq!(CacheConfig::resolve(None, None), None);
    }

    #[test]
    fn out_of_range_values_are_problems() {
        let p = cfg("ttl: 2h\nmax_ttl: 1h\nmax_body: 0\nkey: {headers: [\"bad header\"]}\n").problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("ttl"), "{p:?}");
        assert!(p[2].starts_with("key: headers"), "{p:?}");
    }
}
