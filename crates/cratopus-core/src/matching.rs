//! A route's `match:` conditions, compiled: header names parsed, regular expressions built
//! (anchored at both ends, see `cratopus_config::matching`) and query and cookie names kept
//! decoded, all at config load, so that a request only compares.
//!
//! Two kinds of condition, decided at two moments. Headers, query parameters and cookies are
//! the request's own and are decided by the router ([`Conditions::holds`]). Consumers and tiers
//! need the authenticated identity, so the router only chooses a first candidate; after
//! authenticating with that candidate's `auth` the engine asks the router again with the
//! identity ([`Conditions::admits`], `OrgRouter::find_admitted`). Compile makes sure that every
//! candidate that can be chosen then authenticates the same way (`OrgRouter::finish`).
//!
//! None of this is security: a client picks its headers, query and cookies, so it picks
//! between the routes those split; each route applies its own authentication and policies.

use cratopus_config::matching::{Specificity, anchored};
use cratopus_config::{MatchConfig, ValueMatch};
use cratopus_policies::auth::Identity;
use http::header::{COOKIE, HeaderMap, HeaderName};
use regex::Regex;
use std::borrow::Cow;

/// What the router reads of a request besides its method and path.
#[derive(Clone, Copy)]
pub struct Head<'r> {
    pub headers: &'r HeaderMap,
    /// The query string, undecoded, without `?`.
    pub query: Option<&'r str>,
}

impl<'r> Head<'r> {
    pub fn new(headers: &'r HeaderMap, query: Option<&'r str>) -> Head<'r> {
        Head { headers, query }
    }
}

/// One test of a value.
#[derive(Debug)]
enum Test {
    Exact(Box<str>),
    Regex(Regex),
    Present,
    Absent,
}

impl Test {
    fn compile(v: &ValueMatch) -> Result<Test, String> {
        Ok(match v {
            ValueMatch::Exact(x) => Test::Exact(x.as_str().into()),
            ValueMatch::Regex(r) => Test::Regex(anchored(r).map_err(|e| format!("regex `{r}`: {e}"))?),
            ValueMatch::Present => Test::Present,
            ValueMatch::Absent => Test::Absent,
        })
    }

    /// Whether the values a request has under one name pass: present/absent look at whether
    /// there is any; exact and regex want one value that passes.
    fn passes<V: AsRef<[u8]>>(&self, mut values: impl Iterator<Item = V>) -> bool {
        match self {
            Test::Present => values.next().is_some(),
            Test::Absent => values.next().is_none(),
            Test::Exact(x) => values.any(|v| v.as_ref() == x.as_bytes()),
            Test::Regex(re) => values.any(|v| std::str::from_utf8(v.as_ref()).is_ok_and(|s| re.is_match(s))),
        }
    }
}

/// A route's conditions, ready for requests.
#[derive(Debug)]
pub struct Conditions {
    headers: Box<[(HeaderName, Test)]>,
    /// Parameter names decoded.
    query: Box<[(Box<[u8]>, Test)]>,
    cookies: Box<[(Box<[u8]>, Test)]>,
    consumers: Box<[Box<str>]>,
    tiers: Box<[Box<str>]>,
    /// The router's order of candidates: greater first.
    pub specificity: Specificity,
    /// As written, to tell identical conditions (a conflict) at compile.
    pub config: MatchConfig,
}

impl Conditions {
    /// Compiles `cfg` (which `validate` has checked).
    pub fn compile(cfg: &MatchConfig) -> Result<Conditions, String> {
        let mut headers = Vec::new();
        for (name, v) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
            headers.push((name, Test::compile(v)?));
        }
        let decoded = |m: &std::collections::BTreeMap<String, ValueMatch>| -> Result<Box<[_]>, String> {
            m.iter()
                .map(|(k, v)| Ok((k.as_bytes().into(), Test::compile(v)?)))
                .collect()
        };
        Ok(Conditions {
            headers: headers.into(),
            query: decoded(&cfg.query)?,
            cookies: decoded(&cfg.cookies)?,
            consumers: cfg.consumers.iter().map(|c| c.as_str().into()).collect(),
            tiers: cfg.tiers.iter().map(|t| t.as_str().into()).collect(),
            specificity: cfg.specificity(),
            config: cfg.clone(),
        })
    }

    /// Whether the request's headers, query parameters and cookies meet the conditions
    /// (consumers and tiers are left to [`Conditions::admits`]).
    pub fn holds(&self, head: &Head<'_>) -> bool {
        self.headers
            .iter()
            .all(|(name, test)| test.passes(head.headers.get_all(name).iter().map(|v| v.as_bytes())))
            && self
                .query
                .iter()
                .all(|(name, test)| test.passes(query_values(head.query, name)))
            && self
                .cookies
                .iter()
                .all(|(name, test)| test.passes(cookie_values(head.headers, name)))
    }

    /// Whether a consumer or tier condition waits for authentication.
    pub fn needs_identity(&self) -> bool {
        !self.consumers.is_empty() || !self.tiers.is_empty()
    }

    /// Whether the authenticated identity meets the consumer and tier conditions. A request
    /// without a consumer (an open route, a JWT whose subject names none) meets neither.
    pub fn admits(&self, identity: Option<&Identity>) -> bool {
        let consumer = identity.and_then(|i| i.consumer.as_deref());
        (self.consumers.is_empty() || consumer.is_some_and(|c| self.consumers.iter().any(|x| **x == *c.id)))
            && (self.tiers.is_empty()
                || consumer
                    .and_then(|c| c.tier.as_deref())
                    .is_some_and(|t| self.tiers.iter().any(|x| **x == *t)))
    }
}

/// The decoded values of query parameter `name` (a bare `?name` has the empty value).
fn query_values<'q>(query: Option<&'q str>, name: &'q [u8]) -> impl Iterator<Item = Cow<'q, [u8]>> + 'q {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(move |pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (*decode(n) == *name).then(|| decode(v))
        })
}

/// The values of cookie `name` in the request's `Cookie` headers (surrounding quotes removed,
/// as RFC 6265 allows them).
fn cookie_values<'h>(headers: &'h HeaderMap, name: &'h [u8]) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(move |kv| {
            let kv = kv.trim_ascii();
            let eq = kv.iter().position(|b| *b == b'=')?;
            let (k, v) = (kv[..eq].trim_ascii(), kv[eq + 1..].trim_ascii());
            (k == name).then(|| v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v))
        })
}

/// Percent-decoding with `+` as a space, as forms encode queries; borrowed when there is
/// nothing to decode.
fn decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.iter().any(|c| matches!(c, b'%' | b'+')) {
        return Cow::Borrowed(b);
    }
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// The compiled conditions of a route: `None` without `match` or with an empty one.
/// Consumer and tier conditions need authentication (`authenticated`).
pub fn for_route(cfg: Option<&MatchConfig>, authenticated: bool) -> Result<Option<Box<Conditions>>, String> {
    let Some(cfg) = cfg.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    if cfg.needs_identity() && !authenticated {
        return Err(
            "consumers and tiers are known only after authentication, and this route has no `auth` (nor its organization)"
                .into(),
        );
    }
    Conditions::compile(cfg).map(|c| Some(Box::new(c)))
}
