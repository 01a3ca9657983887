//! The serde type of a route's `match:` block: conditions beyond path and method (headers,
//! query parameters, cookies, the authenticated consumer or its tier), so that two routes with
//! the same path and method can differ by `X-Api-Version: 2` or `?beta=1`.
//!
//! Its runtime counterpart is `cratopus_core::matching`. This module also holds what `check`
//! needs to reason about two blocks without compiling them: their [`Specificity`] (the order
//! the router tries the routes of one path and method in) and whether both can hold for one
//! request ([`MatchConfig::can_both_hold`]).
//!
//! Regular expressions must match the whole value (they are anchored at both ends, as Envoy's
//! `safe_regex` and the Gateway API's `RegularExpression` matches are): `regex: "2|3"` is the
//! value `2` or `3`, not any value containing a 2; write `.*beta.*` to find a word anywhere.
//! A condition on a value that is left unanchored by mistake would quietly take far more
//! traffic than meant, which is the worse failure for a router.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Conditions a request must meet, besides path and method, for the route to take it. Every
/// condition written must hold. Routes of one path and method are tried most specific first
/// (more conditions, then more exact ones, then more regular expressions, then file order); the
/// first whose conditions hold takes the request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Request headers (names ignore case): `X-Api-Version: "2"` (exact value),
    /// `{regex: "2\\..*"}` (the whole value), `{present: true}` or `{present: false}` (absent).
    /// A header sent several times matches when one of its values does.
    #[serde(default)]
    pub headers: BTreeMap<String, ValueMatch>,
    /// Query parameters (names and values compared after percent-decoding, case-sensitive):
    /// `beta: "1"`, `{regex: …}`, `{present: true}` (a bare `?beta` counts), `{present: false}`.
    #[serde(default)]
    pub query: BTreeMap<String, ValueMatch>,
    /// Cookies of the `Cookie` header (names case-sensitive): `canary: "yes"`, `{regex: …}`,
    /// `{present: true}`, `{present: false}`.
    #[serde(default)]
    pub cookies: BTreeMap<String, ValueMatch>,
    /// The authenticated consumer is one of these (ids of the organization's consumers).
    /// Decided after authentication: the route needs `auth`, and the routes of its path and
    /// method tried after it must authenticate the same way.
    #[serde(default)]
    pub consumers: Vec<String>,
    /// The authenticated consumer's `tier` is one of these. Decided after authentication, as
    /// `consumers`.
    #[serde(default)]
    pub tiers: Vec<String>,
}

/// One condition on a value: `"2"` (or `{exact: "2"}`), `{regex: …}`, `{present: true}`, or
/// `{present: false}` (the value must be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    Exact(String),
    /// The source as written; it must match the whole value.
    Regex(String),
    Present,
    Absent,
}

/// The order of the candidates of one path and method: greater is tried first. Compared field
/// by field: how many conditions, how many of them exact (consumers and tiers count as exact),
/// how many regular expressions (the rest are present/absent tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Specificity {
    pub conditions: u32,
    pub exact: u32,
    pub regex: u32,
}

impl MatchConfig {
    /// No condition at all (`match: {}`): the route is like one without `match`.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.query.is_empty()
            && self.cookies.is_empty()
            && self.consumers.is_empty()
            && self.tiers.is_empty()
    }

    /// Whether a condition needs the authenticated consumer.
    pub fn needs_identity(&self) -> bool {
        !self.consumers.is_empty() || !self.tiers.is_empty()
    }

    pub fn specificity(&self) -> Specificity {
        let mut s = Specificity::default();
        for v in self
            .headers
            .values()
            .chain(self.query.values())
            .chain(self.cookies.values())
        {
            s.conditions += 1;
            match v {
                ValueMatch::Exact(_) => s.exact += 1,
                ValueMatch::Regex(_) => s.regex += 1,
                ValueMatch::Present | ValueMatch::Absent => {}
            }
        }
        let identity = u32::from(!self.consumers.is_empty()) + u32::from(!self.tiers.is_empty());
        s.conditions += identity;
        s.exact += identity;
        s
    }

    /// The header conditions keyed by lower-case name (header names ignore case).
    fn headers_lower(&self) -> BTreeMap<String, &ValueMatch> {
        self.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
    }

    /// The same conditions (header names compared without case, lists as sets): two routes of
    /// one path and method with the same conditions conflict.
    pub fn same_as(&self, other: &MatchConfig) -> bool {
        fn set(l: &[String]) -> Vec<&str> {
            let mut v: Vec<&str> = l.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        self.headers_lower() == other.headers_lower()
            && self.query == other.query
            && self.cookies == other.cookies
            && set(&self.consumers) == set(&other.consumers)
            && set(&self.tiers) == set(&other.tiers)
    }

    /// Whether one request can meet both blocks. False only when some name has tests that
    /// exclude each other (two different exact values, present and absent, an exact value the
    /// other's regular expression refuses) or the consumer or tier lists share nothing; two
    /// regular expressions are assumed to overlap.
    pub fn can_both_hold(&self, other: &MatchConfig) -> bool {
        let disjoint = |a: &[String], b: &[String]| !a.is_empty() && !b.is_empty() && !a.iter().any(|x| b.contains(x));
        if disjoint(&self.consumers, &other.consumers) || disjoint(&self.tiers, &other.tiers) {
            return false;
        }
        let (ha, hb) = (self.headers_lower(), other.headers_lower());
        let pairs = ha
            .iter()
            .filter_map(|(k, a)| hb.get(k).map(|b| (*a, *b)))
            .chain(
                self.query
                    .iter()
                    .filter_map(|(k, a)| other.query.get(k).map(|b| (a, b))),
            )
            .chain(
                self.cookies
                    .iter()
                    .filter_map(|(k, a)| other.cookies.get(k).map(|b| (a, b))),
            );
        for (a, b) in pairs {
            if !compatible(a, b) {
                return false;
            }
        }
        true
    }

    /// The conditions in one line, for `cratopus routes`: `header X-Api-Version = "2" & query
    /// beta present & cookie c ~ /v[0-9]/ & consumer alice|bob & tier gold`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (kind, map) in [
            ("header", &self.headers),
            ("query", &self.query),
            ("cookie", &self.cookies),
        ] {
            for (name, v) in map {
                parts.push(match v {
                    ValueMatch::Exact(x) => format!("{kind} {name} = {x:?}"),
                    ValueMatch::Regex(r) => format!("{kind} {name} ~ /{r}/"),
                    ValueMatch::Present => format!("{kind} {name} present"),
                    ValueMatch::Absent => format!("{kind} {name} absent"),
                });
            }
        }
        if !self.consumers.is_empty() {
            parts.push(format!("consumer {}", self.consumers.join("|")));
        }
        if !self.tiers.is_empty() {
            parts.push(format!("tier {}", self.tiers.join("|")));
        }
        parts.join(" & ")
    }

    /// The conditions as JSON, for `cratopus routes --json`: `{"headers": {"X-A": {"exact":
    /// "2"}}, "query": …, "cookies": …, "consumers": […], "tiers": […]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let map = |m: &BTreeMap<String, ValueMatch>| -> serde_json::Value {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        ValueMatch::Exact(x) => serde_json::json!({"exact": x}),
                        ValueMatch::Regex(r) => serde_json::json!({"regex": r}),
                        ValueMatch::Present => serde_json::json!({"present": true}),
                        ValueMatch::Absent => serde_json::json!({"present": false}),
                    };
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        serde_json::json!({
            "headers": map(&self.headers),
            "query": map(&self.query),
            "cookies": map(&self.cookies),
            "consumers": self.consumers,
            "tiers": self.tiers,
        })
    }

    /// The values serde accepts but a router cannot use: each the keys under `match` it is at
    /// (`["headers", "X-A", "regex"]`) and a sentence starting with them (`headers: X-A: …`),
    /// for `validate` to place and prefix.
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (name, v) in &self.headers {
            let at = vec!["headers".to_string(), name.clone()];
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push((at.clone(), format!("headers: `{name}` is not a header name")));
            }
            let lower = name.to_ascii_lowercase();
            if seen.contains(&lower) {
                out.push((
                    at.clone(),
                    format!("headers: `{name}` is listed twice (header names ignore case): merge the conditions"),
                ));
            }
            seen.push(lower);
            value_problems(&mut out, at, name, v);
        }
        for (name, v) in &self.query {
            let at = vec!["query".to_string(), name.clone()];
            if name.is_empty() {
                out.push((at.clone(), "query: a parameter name is empty".into()));
            }
            value_problems(&mut out, at, name, v);
        }
        for (name, v) in &self.cookies {
            let at = vec!["cookies".to_string(), name.clone()];
            let token = !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !token {
                out.push((at.clone(), format!("cookies: `{name}` is not a cookie name")));
            }
            value_problems(&mut out, at, name, v);
        }
        out
    }
}

/// Whether one value can pass both tests.
fn compatible(a: &ValueMatch, b: &ValueMatch) -> bool {
    use ValueMatch::*;
    match (a, b) {
        (Absent, Absent) => true,
        (Absent, _) | (_, Absent) => false,
        (Exact(x), Exact(y)) => x == y,
        (Exact(v), Regex(r)) | (Regex(r), Exact(v)) => anchored(r).is_ok_and(|re| re.is_match(v)),
        _ => true,
    }
}

/// `source` compiled to match a whole value, as the router compiles it.
pub fn anchored(source: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{source})$"))
        // A route's condition is a short pattern; this bounds what a typo can cost in memory.
        .size_limit(1 << 20)
        .build()
}

fn value_problems(out: &mut Vec<(Vec<String>, String)>, mut at: Vec<String>, name: &str, v: &ValueMatch) {
    let key = at[0].clone();
    if let ValueMatch::Regex(r) = v
        && let Err(e) = anchored(r)
    {
        // The regex crate's message spans several lines, with a caret under the fault.
        let detail = e.to_string();
        let detail = detail.lines().last().unwrap_or("").trim();
        let detail = detail.strip_prefix("error: ").unwrap_or(detail);
        at.push("regex".into());
        out.push((
            at,
            format!("{key}: {name}: regex `{r}` is not a valid regular expression: {detail}"),
        ));
    } else if key == "headers"
        && let ValueMatch::Exact(x) = v
        && http::HeaderValue::from_str(x).is_err()
    {
        out.push((at, format!("{key}: {name}: `{x}` can never be a header value")));
    }
}

impl<'de> Deserialize<'de> for ValueMatch {
    /// A scalar is an exact value (`2` and `true` as written); a map has exactly one of
    /// `exact`, `regex` and `present`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueMatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value to match exactly, or one of `{exact: …}`, `{regex: …}`, `{present: true|false}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ValueMatch, E> {
                Ok(ValueMatch::Exact(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueMatch, E> {
                Err(E::custom(format!(
                    "`{v}` reads as a number, and the text as sent may differ (`1.10` is `1.1`): quote it"
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueMatch, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<String>()? {
                    let v = match key.as_str() {
                        "exact" => ValueMatch::Exact(map.next_value::<Scalar>()?.0),
                        "regex" => ValueMatch::Regex(map.next_value::<String>()?),
                        "present" => match map.next_value::<bool>()? {
                            true => ValueMatch::Present,
                            false => ValueMatch::Absent,
                        },
                        other => return Err(de::Error::unknown_field(other, &["exact", "regex", "present"])),
                    };
                    if out.replace(v).is_some() {
                        return Err(de::Error::custom(
                            "give one of `exact`, `regex` and `present`, not several",
                        ));
                    }
                }
                out.ok_or_else(|| de::Error::custom("give one of `exact`, `regex` and `present`"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or a number or boolean taken as it is written.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ValueMatch::deserialize(d)? {
            ValueMatch::Exact(s) => Ok(Scalar(s)),
            _ => Err(de::Error::custom("`exact` takes a value, not a map")),
        }
    }
}

impl JsonSchema for ValueMatch {
    fn schema_name() -> Cow<'static, str> {
        "ValueMatch".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The exact value, or `{exact: …}`, `{regex: …}` (matching the whole value), `{present: true}`, `{present: false}` (absent).",
            "anyOf": [
                {"type": ["string", "integer", "boolean"]},
                {"type": "object", "additionalProperties": false, "required": ["exact"], "properties": {
                    "exact": {"type": ["string", "integer", "boolean"]}}},
                {"type": "object", "additionalProperties": false, "required": ["regex"], "properties": {
                    "regex": {"type": "string"}}},
                {"type": "object", "additionalProperties": false, "required": ["present"], "properties": {
                    "present": {"type": "boolean"}}}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};

    #[test]
    fn forms() {
        let m: MatchConfig = parse(
            "headers: {X-Api-Version: 2, X-Beta: {present: true}, X-Old: {present: false}, UA: {regex: \"curl/.*\"}}\n\
             query: {beta: \"1\", on: true}\ncookies: {c: {exact: 7}}\nconsumers: [a]\n",
        );
        assert_eq!(m.headers["X-Api-Version"], ValueMatch::Exact("2".into()));
        assert_eq!(m.headers["X-Beta"], ValueMatch::Present);
        assert_eq!(m.headers["X-Old"], ValueMatch::Absent);
        assert_eq!(m.headers["UA"], ValueMatch::Regex("curl/.*".into()));
        assert_eq!(m.query["on"], ValueMatch::Exact("true".into()));
        assert_eq!(m.cookies["c"], ValueMatch::Exact("7".into()));
        assert_eq!(
            m.specificity(),
            Specificity {
                conditions: 8,
                exact: 5,
                regex: 1
            }
        );
        assert!(refused::<MatchConfig>("headers: {A: {exact: a, regex: b}}").contains("not several"));
        assert!(refused::<MatchConfig>("headers: {A: {prefix: a}}").contains("prefix"));
        assert!(refused::<MatchConfig>("headers: {A: 1.10}").contains("quote it"));
        assert!(refused::<MatchConfig>("header: {A: b}").contains("header"));
    }

    #[test]
    fn problems_name_their_key() {
        let m: MatchConfig =
            parse("headers: {\"bad name\": x, A: {regex: \"(\"}, a: y}\ncookies: {\"a;b\": x}\nquery: {\"\": x}");
        let p: Vec<String> = m.problems().into_iter().map(|(_, p)| p).collect();
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(m.problems().iter().any(|(at, _)| at == &["headers", "A", "regex"]));
        assert!(p.iter().any(|m| m.starts_with("headers: `bad name`")));
        assert!(p.iter().any(|m| m.starts_with("headers: A: regex `(`")));
        assert!(p.iter().any(|m| m.contains("listed twice")));
        assert!(p.iter().any(|m| m.starts_with("cookies: `a;b`")));
        assert!(p.iter().any(|m| m.starts_with("query: a parameter name is empty")));
    }

    #[test]
    fn overlap_and_sameness() {
        let m = |y: &str| -> MatchConfig { parse(y) };
        let a = m("headers: {A: \"1\"}");
        let b = m("query: {b: \"1\"}");
        assert!(a.can_both_hold(&b));
        assert!(!a.can_both_hold(&m("headers: {a: \"2\"}")));
        assert!(!a.can_both_hold(&m("headers: {A: {present: false}}")));
        assert!(!a.can_both_hold(&m("headers: {A: {regex: \"[2-9]\"}}")));
        assert!(a.can_both_hold(&m("headers: {A: {regex: \"[0-9]\"}}")));
        // Anchored: `1` is not the whole of `11`.
        assert!(!m("headers: {A: \"11\"}").can_both_hold(&m("headers: {A: {regex: \"1\"}}")));
        assert!(!m("consumers: [x]").can_both_hold(&m("consumers: [y]")));
        assert!(m("consumers: [x, y]").can_both_hold(&m("tiers: [gold]")));
        assert!(a.same_as(&m("headers: {a: \"1\"}")));
        assert!(!a.same_as(&b));
        assert!(m("consumers: [x, y]").same_as(&m("consumers: [y, x]")));
        assert!(m("{}").is_empty());
    }
}
