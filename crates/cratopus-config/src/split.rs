//! The serde types of a route's weighted split (canary, blue/green, A/B testing): the route
//! sends shares of its requests to several upstreams instead of one `upstream`. The runtime
//! counterpart is `cratopus_upstream::split`; these types only describe the file.
//!
//! ```yaml
//! split:
//!   backends:
//!     - {upstream: stable, weight: 99}
//!     - {upstream: canary, weight: 1, canary: true}
//!   sticky: {header: X-User}
//!   override: {header: X-Canary}
//!   rollback: {max_error_rate: 0.05, max_p95_ratio: 2.0, min_requests: 100, window: 30s}
//! ```
//!
//! The canary that `override` and `rollback` act on is named explicitly (`canary: true` on one
//! arm) rather than taken by position: a list written the other way round must not make the
//! gateway take the stable side out of service.
//!
//! As in `resilience`, [`SplitConfig::problems`] lists what serde accepts but the runtime cannot
//! use, each problem with the key path of the value at fault (relative to the `split` section),
//! for `validate` to place.

use crate::model::RouteConfig;
use crate::units::Dur;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The largest weight of one arm: weights are shares, and a million gives a resolution of one
/// request in a million while the sum of a few arms stays far from overflowing.
pub const MAX_SPLIT_WEIGHT: u32 = 1_000_000;

/// The most arms a split may have: the pick scans them, and A/B/n tests rarely need more.
pub const MAX_SPLIT_ARMS: usize = 16;

/// A weighted split: each request goes to one of `backends`, in proportion to their weights.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The arms of the split, at least two: an upstream of the organization and its weight.
    pub backends: Vec<SplitBackend>,
    /// Keep a client on one arm: the named value is hashed onto the arms' weights, so a client
    /// stays where it is as long as the weights do not change (and when they change, only the
    /// clients on the moving boundary move). Requests without the value are split by weight.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// A request header that sends a request to the canary (`always`) or away from it (`never`),
    /// whatever the weights, for testers and for excluding a client. Other values, or no header,
    /// leave the request to the weights. Needs an arm marked `canary: true`.
    #[serde(default, rename = "override")]
    pub override_header: Option<OverrideConfig>,
    /// Automatic rollback: when the canary does worse than the other arms within `window`, its
    /// weight is set to 0. Needs an arm marked `canary: true`.
    #[serde(default)]
    pub rollback: Option<RollbackConfig>,
}

/// One arm of a split.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBackend {
    /// The name of an upstream of the same organization.
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// The arm's share relative to the others' (integers: `99` and `1` send 1 % to the second
    /// arm). `0` sends it nothing (a canary reachable only through `override`, or one not
    /// rolled out yet); the admin API changes weights at run time.
    #[schemars(range(max = 1_000_000))]
    pub weight: u32,
    /// The arm's name in the admin API, metrics and logs. Default: the upstream's name. Needed
    /// when two arms use one upstream.
    #[serde(default)]
    pub name: Option<String>,
    /// This arm is the canary: the one `override: always` sends to and `rollback` takes out.
    /// At most one arm.
    #[serde(default)]
    pub canary: bool,
}

impl SplitBackend {
    /// The arm's name: its own, or its upstream's.
    pub fn arm_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.upstream.value)
    }
}

/// What a sticky split hashes: `{header: X-User}`, `{cookie: uid}`, `consumer` (the consumer
/// authentication found) or `client_ip`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StickyConfig {
    /// The value of this request header.
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The authenticated consumer's name (routes with `auth`).
    Consumer,
    /// The client's IP address (after `trusted_proxies`).
    ClientIp,
}

/// The header that overrides the weights for one request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// Its name, e.g. `X-Canary`. `always` sends the request to the canary, even at weight 0 or
    /// after a rollback; `never` to the other arms by their weights (case ignored).
    pub header: String,
}

/// When the canary is taken out. At least one of `max_error_rate` and `max_p95_ratio`.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// Share of the canary's responses in `window` that are 5xx (the gateway's own 502, 503
    /// and 504 for it included), from 0.0 to 1.0, above which it is rolled back, provided it
    /// is also above the other arms' share (a failing database fails both sides alike).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: Option<f64>,
    /// The canary is rolled back when its 95th percentile time to the response head in
    /// `window` is more than this many times the other arms'. At least 1.0.
    #[serde(default)]
    #[schemars(range(min = 1.0))]
    pub max_p95_ratio: Option<f64>,
    /// Responses of the canary the `window` must hold before it is judged, so that a handful
    /// of requests decides nothing.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 1))]
    pub min_requests: u32,
    /// The rolling window both sides are measured over (in ten buckets).
    #[serde(default = "default_window")]
    pub window: Dur,
}

fn default_min_requests() -> u32 {
    100
}
fn default_window() -> Dur {
    Dur::secs(30)
}

impl SplitConfig {
    /// The index of the canary arm, if one is marked.
    pub fn canary(&self) -> Option<usize> {
        self.backends.iter().position(|b| b.canary)
    }

    /// The values serde accepts but a split cannot use, each with the key path (below the
    /// `split` section) of the value at fault.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let n = self.backends.len();
        if !(2..=MAX_SPLIT_ARMS).contains(&n) {
            out.push((
                "/backends".into(),
                format!("split.backends has {n} arm(s); a split needs between 2 and {MAX_SPLIT_ARMS}"),
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, b) in self.backends.iter().enumerate() {
            if b.weight > MAX_SPLIT_WEIGHT {
                out.push((
                    format!("/backends/{i}/weight"),
                    format!(
                        "split.backends[{i}].weight is {}; it must be between 0 and {MAX_SPLIT_WEIGHT}",
                        b.weight
                    ),
                ));
            }
            let name = b.arm_name();
            if name.is_empty() {
                out.push((
                    format!("/backends/{i}/name"),
                    "split arm names must not be empty".into(),
                ));
            } else if names.contains(&name) {
                out.push((
                    format!("/backends/{i}"),
                    format!("split arm `{name}` appears twice: give arms that share an upstream distinct `name`s"),
                ));
            }
            names.push(name);
        }
        if n > 0 && self.backends.iter().all(|b| b.weight == 0) {
            out.push((
                "/backends".into(),
                "every split arm has weight 0: at least one must take requests".into(),
            ));
        }
        let canaries: Vec<usize> = (0..n).filter(|&i| self.backends[i].canary).collect();
        if canaries.len() > 1 {
            out.push((
                format!("/backends/{}/canary", canaries[1]),
                "only one split arm may be the canary".into(),
            ));
        }
        if canaries.len() == n && n > 0 {
            out.push((
                "/backends".into(),
                "a split needs an arm besides the canary to fall back to".into(),
            ));
        }
        for (key, used) in [
            ("/override", self.override_header.is_some()),
            ("/rollback", self.rollback.is_some()),
        ] {
            if used && canaries.is_empty() {
                out.push((
                    key.into(),
                    format!(
                        "split.{} acts on the canary: mark one arm with `canary: true`",
                        &key[1..]
                    ),
                ));
            }
        }
        if let Some(o) = &self.override_header
            && http_token(&o.header).is_err()
        {
            out.push((
                "/override/header".into(),
                format!("split.override.header `{}` is not a valid header name", o.header),
            ));
        }
        match &self.sticky {
            Some(StickyConfig::Header(h)) if http_token(h).is_err() => out.push((
                "/sticky/header".into(),
                format!("split.sticky.header `{h}` is not a valid header name"),
            )),
            Some(StickyConfig::Cookie(c)) if c.is_empty() || http_token(c).is_err() => out.push((
                "/sticky/cookie".into(),
                format!("split.sticky.cookie `{c}` is not a valid cookie name"),
            )),
            _ => {}
        }
        if let Some(r) = &self.rollback {
            if r.max_error_rate.is_none() && r.max_p95_ratio.is_none() {
                out.push((
                    "/rollback".into(),
                    "split.rollback needs max_error_rate, max_p95_ratio or both".into(),
                ));
            }
            if let Some(e) = r.max_error_rate
                && !(0.0..=1.0).contains(&e)
            {
                out.push((
                    "/rollback/max_error_rate".into(),
                    format!("split.rollback.max_error_rate must be between 0.0 and 1.0, not {e}"),
                ));
            }
            if let Some(p) = r.max_p95_ratio
                && !(p.is_finite() && p >= 1.0)
            {
                out.push((
                    "/rollback/max_p95_ratio".into(),
                    format!("split.rollback.max_p95_ratio must be at least 1.0, not {p}"),
                ));
            }
            if r.min_requests == 0 {
                out.push((
                    "/rollback/min_requests".into(),
                    "split.rollback.min_requests must be at least 1".into(),
                ));
            }
            if r.window.0.as_millis() < 100 {
                out.push((
                    "/rollback/window".into(),
                    "split.rollback.window must be at least 100ms".into(),
                ));
            }
        }
        out
    }
}

/// Whether `s` is an HTTP token (a header or cookie name), RFC 9110 §5.6.2.
fn http_token(s: &str) -> Result<(), ()> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok { Ok(()) } else { Err(()) }
}

impl RouteConfig {
    /// The upstreams a route sends requests to: its `upstream`, or every arm of its `split`.
    pub fn upstream_names(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.upstream
            .iter()
            .chain(self.split.iter().flat_map(|s| s.backends.iter().map(|b| &b.upstream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};

    #[test]
    fn a_canary_split_reads_with_its_defaults() {
        let s: SplitConfig = parse(
            "backends: [{upstream: stable, weight: 99}, {upstream: canary, weight: 1, canary: true}]
sticky: {header: X-User}
override: {header: X-Canary}
rollback: {max_error_rate: 0.05}",
        );
        assert_eq!(s.canary(), Some(1));
        assert_eq!(s.backends[0].arm_name(), "stable");
        assert_eq!(s.sticky, Some(StickyConfig::Header("X-User".into())));
        let r = s.rollback.as_ref().unwrap();
        assert_eq!((r.min_requests, r.window), (100, Dur::secs(30)));
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let s: SplitConfig = parse("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]\nsticky: client_ip");
        assert_eq!(s.sticky, Some(StickyConfig::ClientIp));
        assert!(refused::<SplitConfig>("backends: [{upstream: a}]").contains("weight"));
        assert!(refused::<SplitConfig>("backends: []\nsticky: {ip: x}").contains("ip"));
    }

    fn problems(yaml: &str) -> Vec<(String, String)> {
        parse::<SplitConfig>(yaml).problems()
    }

    #[test]
    fn what_a_split_cannot_use_is_named_with_its_key() {
        let p = problems("backends: [{upstream: a, weight: 1}]");
        assert_eq!(p[0].0, "/backends", "{p:?}");
        let p = problems("backends: [{upstream: a, weight: 0}, {upstream: b, weight: 0}]");
        assert!(p[0].1.contains("weight 0"), "{p:?}");
        let p = problems("backends: [{upstream: a, weight: 1}, {upstream: a, weight: 2000000}]");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "/backends/1/weight");
        assert!(p[1].1.contains("appears twice"), "{p:?}");
        // Two arms on one upstream are fine once named.
        assert!(problems("backends: [{upstream: a, weight: 1}, {upstream: a, weight: 1, name: a2}]").is_empty());
        let p =
            problems("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]\nrollback: {max_error_rate: 0.1}");
        assert_eq!(p[0].0, "/rollback");
        assert!(p[0].1.contains("canary: true"), "{p:?}");
        let p = problems("backends: [{upstream: a, weight: 1, canary: true}, {upstream: b, weight: 1, canary: true}]");
        assert_eq!(p[0].0, "/backends/1/canary", "{p:?}");
        let p = problems(
            "backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1, canary: true}]
rollback: {max_p95_ratio: 0.5, min_requests: 0, window: 10ms}
override: {header: 'X Canary'}
sticky: {cookie: ''}",
        );
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/override/header",
                "/sticky/cookie",
                "/rollback/max_p95_ratio",
                "/rollback/min_requests",
                "/rollback/window"
            ],
            "{p:?}"
        );
        let p = problems("backends: [{upstream: a, weight: 1}, {upstream: b, weight: 1, canary: true}]\nrollback: {}");
        assert!(p[0].1.contains("max_error_rate, max_p95_ratio"), "{p:?}");
    }
}
