//! The serde types of the limits that guard authentication: a limit on failed authentications
//! per client address (`auth_failures`), and the per-tier rates of a rate limit (`tiers`).
//!
//! Rate limits placed before authentication are a flag of the rate limit itself
//! (`before_auth`, in [`crate::policies`]); what they may be keyed by is checked in
//! [`crate::validate`].

use crate::error::ConfigError;
use crate::model::OrganizationConfig;
use crate::policies::{LimitConfig, RateLimitConfig, StateScope};
use crate::shape::escape;
use crate::units::{Dur, parse_duration};
use crate::validate::hint;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Brute-force protection: failed authentications counted per client address. A client with
/// `limit` failures within `window` is refused with 429 before authentication is tried, even
/// with good credentials, until `block_for` has passed (fail2ban's `maxretry`, `findtime`
/// and `bantime`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthFailuresConfig {
    /// Failed authentications a client address may have within `window` (at least 1).
    pub limit: u32,
    /// The window the failures are counted in (a GCRA limit of `limit` per `window`: one
    /// more attempt comes back every `window / limit`).
    pub window: Dur,
    /// Once at the limit, the client is refused this long. Default: until one more failure
    /// fits in the window again.
    #[serde(default)]
    pub block_for: Option<Dur>,
    /// Where failures are counted: `cluster` (Redis, every node counts the same failures)
    /// or `local`. Default: `cluster` when the gateway has `state.redis`, else `local`.
    #[serde(default)]
    pub state: Option<StateScope>,
}

/// The rate of one tier: `10/s`, `1000/1m`, `5/h`, or a list of limits as `limits` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimits(pub Vec<LimitConfig>);

impl<'de> Deserialize<'de> for TierLimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so that a mistake (`10`, `ten/s`) gets
        // the rate's own message instead of "did not match any variant".
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TierLimits;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rate such as `10/s` or a list of limits")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TierLimits, E> {
                parse_rate(s).map(|l| TierLimits(vec![l])).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<TierLimits, E> {
                Err(E::custom(rate_error(&n.to_string())))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<TierLimits, E> {
                Err(E::custom(rate_error(&n.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TierLimits, A::Error> {
                Vec::<LimitConfig>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(TierLimits)
            }
        }
        d.deserialize_any(V)
    }
}

fn rate_error(s: &str) -> String {
    format!("invalid rate `{s}`: expected `<requests>/<period>`, e.g. `10/s`, `1000/1m`, `5/h`")
}

/// `<rate>/<period>`: the period a unit alone (`s`, `m`, `min`, `h`, `d`, meaning one of it)
/// or a duration (`10s`, `1m`). The burst is the rate, as for a limit written in full.
pub fn parse_rate(s: &str) -> Result<LimitConfig, String> {
    let bad = || rate_error(s);
    let (n, per) = s.split_once('/').ok_or_else(bad)?;
    let rate: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let per = match per {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        _ => parse_duration(per).map_err(|e| format!("invalid rate `{s}`: {e}"))?,
    };
    Ok(LimitConfig {
        rate,
        per: Dur(per),
        burst: None,
    })
}

impl JsonSchema for TierLimits {
    fn schema_name() -> Cow<'static, str> {
        "TierLimits".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let limit = g.subschema_for::<LimitConfig>();
        json_schema!({
            "description": "The rate of a tier: `<requests>/<period>` (`10/s`, `1000/1m`, `5/h`), or a list of limits as `limits` takes.",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]+\\s*/\\s*[0-9.]*\\s*[a-zµ]+\\s*$"},
                {"type": "array", "items": limit}
            ]
        })
    }
}

/// Warnings for rate-limit tiers that no consumer of the organization has: a typo there
/// (`glod`) would silently give the tier's consumers the default limits.
pub(crate) fn unknown_tiers(f: &Path, base: &str, o: &OrganizationConfig) -> Vec<ConfigError> {
    let known: Vec<&str> = o.consumers.iter().filter_map(|c| c.tier.as_deref()).collect();
    let mut limits: Vec<(String, &RateLimitConfig)> = Vec::new();
    limits.extend(o.rate_limit.as_ref().map(|r| (format!("{base}/rate_limit"), r)));
    for (name, p) in &o.policies {
        limits.extend(
            p.rate_limit
                .as_ref()
                .map(|r| (format!("{base}/policies/{}/rate_limit", escape(name)), r)),
        );
    }
    for (i, r) in o.routes.iter().enumerate() {
        limits.extend(
            r.rate_limit
                .as_ref()
                .map(|r| (format!("{base}/routes/{i}/rate_limit"), r)),
        );
    }
    let mut out = Vec::new();
    for (at, r) in limits {
        for tier in r.tiers.keys().filter(|t| !known.contains(&t.as_str())) {
            out.push(ConfigError::at_key(
                f,
                format!("{at}/tiers/{}", escape(tier)),
                format!(
                    "rate_limit tier `{tier}` is the tier of no consumer of organization `{}`{}",
                    o.name.value,
                    hint(tier, &known)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};

    #[test]
    fn tier_rates_short_and_full() {
        let t: TierLimits = parse("10/s");
        assert_eq!(
            t.0,
            vec![LimitConfig {
                rate: 10,
                per: Dur::secs(1),
                burst: None
            }]
        );
        let t: TierLimits = parse("1000/1m");
        assert_eq!(t.0[0].per, Dur::secs(60));
        let t: TierLimits = parse("5 / h");
        assert_eq!((t.0[0].rate, t.0[0].per), (5, Dur::secs(3600)));
        let t: TierLimits = parse("[{rate: 10, per: 1s, burst: 20}, {rate: 500, per: 1m}]");
        assert_eq!(t.0.len(), 2);
        assert_eq!(t.0[0].burst, Some(20));
        for bad in ["10", "ten/s", "10/fortnight", "-1/s"] {
            let e = refused::<TierLimits>(bad);
            assert!(e.contains("invalid rate"), "{bad}: {e}");
        }
    }

    fn errors(yaml: &str) -> Vec<String> {
        match crate::load::load_str(std::path::Path::new("gw.yaml"), yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const HEAD: &str = "\
organizations:
  - name: a
    upstreams: {app: {targets: [\"mirror://\"]}}
    consumers: [{id: c, tier: gold, keys: [\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"]}]
    auth: {api_key: {}}
";

    #[test]
    fn a_valid_setup_loads() {
        let yaml = format!(
            "{HEAD}    auth_failures: {{limit: 5, window: 1m, block_for: 5m}}
    routes:
      - path: /login
        upstream: app
        auth_failures: {{limit: 3, window: 10s}}
        rate_limit: {{before_auth: true, limits: [{{rate: 10, per: 1s}}]}}
      - path: /data
        upstream: app
        rate_limit:
          key: consumer
          tiers: {{free: 10/s, gold: [{{rate: 1000, per: 1s}}, {{rate: 50000, per: 1h}}]}}
"
        );
        assert_eq!(errors(&yaml), Vec::<String>::new());
    }

    #[test]
    fn mistakes_are_refused_at_their_line() {
        let yaml = format!(
            "{HEAD}    routes:
      - path: /a
        upstream: app
        rate_limit:
          before_auth: true
          key: consumer
          limits: [{{rate: 1, per: 1s}}]
      - path: /b
        upstream: app
        rate_limit:
          tiers:
            free: 0/s
            gold: [{{rate: 5, per: 1s, burst: 0}}]
      - path: /c
        upstream: app
        auth_failures: {{limit: 0, window: 1m, block_for: 0s}}
      - path: /d
        upstream: app
        auth: {{}}
        auth_failures: {{limit: 5, window: 1m}}
      - path: /e
        upstream: app
        rate_limit: {{before_auth: true, key: route, tiers: {{gold: 10/s}}}}
"
        );
        let errs = errors(&yaml);
        let has = |line: u32, text: &str| {
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("gw.yaml:{line}:")) && e.contains(text)),
                "no `{text}` at line {line}: {errs:#?}"
            )
        };
        has(11, "cannot be keyed by the consumer");
        has(17, "`rate` must be at least 1");
        has(18, "`burst` must be at least 1");
        has(21, "`limit` must be at least 1");
        has(21, "`block_for` must be above 0");
        has(25, "no request here is authenticated");
        has(28, "cannot have `tiers`");
        assert_eq!(errs.len(), 7, "{errs:#?}");
    }

    #[test]
    fn a_tier_no_consumer_has_is_a_warning() {
        let yaml = format!(
            "{HEAD}    routes:
      - path: /data
        upstream: app
        rate_limit: {{key: consumer, tiers: {{glod: 10/s, gold: 100/s}}}}
"
        );
        let cfg = crate::load::load_str(std::path::Path::new("gw.yaml"), &yaml).expect("valid");
        let w: Vec<String> = crate::lint::lint(&cfg).iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].starts_with("gw.yaml:9:") && w[0].contains("did you mean `gold`"),
            "{w:#?}"
        );
    }

    #[test]
    fn auth_failures_fields() {
        let a: AuthFailuresConfig = parse("{limit: 5, window: 1m, block_for: 5m}");
        assert_eq!(a.limit, 5);
        assert_eq!(a.window, Dur::secs(60));
        assert_eq!(a.block_for, Some(Dur::secs(300)));
        let a: AuthFailuresConfig = parse("{limit: 3, window: 10s, state: local}");
        assert_eq!((a.block_for, a.state), (None, Some(StateScope::Local)));
        assert!(refused::<AuthFailuresConfig>("{limit: 3, window: 10s, ban: 1m}").contains("ban"));
    }
}
