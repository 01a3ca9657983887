//! Header and query modifiers: set, add, remove and rename request headers and query
//! parameters on their way to the backend, and response headers on their way to the client,
//! with values filled from templates (`{client_ip}`, `{claim.sub}`, `{param.id}`, …).
//!
//! Everything that does not depend on the request is done once, at compile: templates are
//! parsed into pieces, `{route}`, `{org}` and `{env.NAME}` become literal text, a template
//! without variables becomes a ready `HeaderValue`, names become `HeaderName`s and regexes one
//! `RegexSet`. Per request a modifier only fills variables and edits the head.
//!
//! Choices (see the `modify` section of docs/configuration.md):
//! - A template whose variable has no value (no consumer on an anonymous request, a claim the
//!   token lacks) leaves the header out; so does one that renders empty. Kong's
//!   request-transformer renders a missing value as an empty string (a header `X-User: ` or a
//!   half-filled `Bearer `); Envoy renders it empty and then drops headers whose whole value is
//!   empty (`keep_empty_value: false`) but sends half-filled ones. Leaving the header out
//!   whenever any variable is missing is Envoy's rule made consistent. A `set` whose value is
//!   missing also removes the client's own copy: `set` means "this value or none", so a client
//!   can never supply the value the gateway would have set.
//! - A value that cannot be a header value (a claim with a line break) is treated as missing.
//! - Within one block the operations run as Kong's do: remove, rename, set, add, and every
//!   template reads the request as it entered the block.
//! - The organization's block runs before the route's (so the route's `set` wins), unless the
//!   route says `inherit: false`.

use cratopus_config::modify::{self as cfg, ModifyConfig, Piece, Var};
use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};
use regex::RegexSet;
use serde_json::{Map, Value};
use std::io::Write;
use std::net::IpAddr;

use crate::auth::Identity;
use crate::chain::RequestCx;
use crate::forwarding::decoded_eq;

/// What a template may read about a request besides its head. The chain's request context
/// implements it; [`Vars`] is a ready one.
pub trait TemplateVars {
    /// The client's address (after `trusted_proxies`).
    fn client_ip(&self) -> IpAddr;
    /// The request id (`X-Request-Id`).
    fn request_id(&self) -> &HeaderValue;
    /// The authenticated consumer's id.
    fn consumer(&self) -> Option<&str>;
    /// The verified JWT's claims.
    fn claims(&self) -> Option<&Map<String, Value>>;
    /// A path parameter of the route.
    fn param(&self, name: &str) -> Option<&str>;
}

/// A [`TemplateVars`] from its parts.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub client: IpAddr,
    pub request_id: &'a HeaderValue,
    pub identity: Option<&'a Identity>,
    /// The route's path parameters, name and value.
    pub params: &'a [(&'a str, &'a str)],
}

impl TemplateVars for Vars<'_> {
    fn client_ip(&self) -> IpAddr {
        self.client
    }
    fn request_id(&self) -> &HeaderValue {
        self.request_id
    }
    fn consumer(&self) -> Option<&str> {
        self.identity?.consumer.as_deref().map(|c| &*c.id)
    }
    fn claims(&self) -> Option<&Map<String, Value>> {
        self.identity?.claims.as_deref()
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl TemplateVars for RequestCx {
    fn client_ip(&self) -> IpAddr {
        self.client
    }
    fn request_id(&self) -> &HeaderValue {
        &self.request_id
    }
    fn consumer(&self) -> Option<&str> {
        self.consumer.as_deref()
    }
    fn claims(&self) -> Option<&Map<String, Value>> {
        self.identity.as_ref()?.claims.as_deref()
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| &**k == name).map(|(_, v)| v.as_str())
    }
}

/// The names `{route}` and `{org}` stand for, and where `{env.NAME}` is read.
pub struct Names<'a> {
    pub route: &'a str,
    pub org: &'a str,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// The compiled modifiers of one route: the organization's blocks, then the route's.
#[derive(Debug)]
pub struct Modifiers {
    request: Box<[RequestBlock]>,
    response: Box<[HeaderBlock]>,
}

#[derive(Debug)]
struct RequestBlock {
    headers: Option<HeaderBlock>,
    query: Option<QueryBlock>,
}

/// Operations on one header map, in the order they run.
#[derive(Debug, Default)]
struct HeaderBlock {
    remove: Box<[HeaderName]>,
    /// Response blocks only: names removed by pattern.
    remove_matching: Option<RegexSet>,
    rename: Box<[(HeaderName, HeaderName)]>,
    set: Box<[(HeaderName, Template)]>,
    add: Box<[(HeaderName, Template)]>,
    /// Whether some template reads the request's headers or query, so that values must be
    /// filled before any operation changes them.
    reads_head: bool,
}

/// Operations on a query string; names are kept decoded (to compare) and encoded (to write).
#[derive(Debug, Default)]
struct QueryBlock {
    remove: Box<[Box<[u8]>]>,
    rename: Box<[(Box<[u8]>, String)]>,
    set: Box<[SetParam]>,
    add: Box<[(String, Template)]>,
}

/// A query parameter a block sets: its name decoded (to find the client's) and encoded (to
/// write), and its value.
#[derive(Debug)]
struct SetParam {
    decoded: Box<[u8]>,
    encoded: String,
    value: Template,
}

/// A compiled value template.
#[derive(Debug)]
enum Template {
    /// No variables: the value itself (for a header; for a query, [`HeaderValue`] holds the
    /// encoded text).
    Fixed(HeaderValue),
    /// A variable that never has a value here (an unset `{env.NAME}`, a request header in a
    /// response template): the operation never sets anything.
    Never,
    Parts(Box<[Part]>),
}

#[derive(Debug)]
enum Part {
    Literal(Box<[u8]>),
    ClientIp,
    RequestId,
    Consumer,
    Claim(Box<str>),
    Param(Box<str>),
    Header(HeaderName),
    Query(Box<[u8]>),
}

/// Where a template's value goes, which decides what a literal must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    RequestHeader,
    Query,
    ResponseHeader,
}

impl Modifiers {
    /// Compiles the organization's and the route's sections (both passed `ModifyConfig::problems`;
    /// names it would have flagged are skipped). `None` when there is nothing to do, so that a
    /// route without modifiers carries no policy at all.
    pub fn compile(org: Option<&ModifyConfig>, route: Option<&ModifyConfig>, names: &Names) -> Option<Modifiers> {
        let org = org.filter(|_| route.and_then(|r| r.inherit) != Some(false));
        let mut request = Vec::new();
        let mut response = Vec::new();
        for m in org.into_iter().chain(route) {
            let headers = m
                .request_headers
                .as_ref()
                .map(|o| HeaderBlock::compile(o, &[], Target::RequestHeader, names))
                .filter(|b| !b.is_empty());
            let query = m
                .request_query
                .as_ref()
                .map(|o| QueryBlock::compile(o, names))
                .filter(|b| !b.is_empty());
            if headers.is_some() || query.is_some() {
                request.push(RequestBlock { headers, query });
            }
            if let Some(o) = &m.response_headers {
                let ops = cfg::Ops {
                    remove: o.remove.clone(),
                    rename: o.rename.clone(),
                    set: o.set.clone(),
                    add: o.add.clone(),
                };
                let block = HeaderBlock::compile(&ops, &o.remove_matching, Target::ResponseHeader, names);
                if !block.is_empty() {
                    response.push(block);
                }
            }
        }
        (!request.is_empty() || !response.is_empty()).then(|| Modifiers {
            request: request.into(),
            response: response.into(),
        })
    }

    /// Whether a template reads the route's path parameters, which the routing phase then
    /// keeps for the chain.
    pub fn reads_params(&self) -> bool {
        let blocks = self.request.iter().flat_map(|b| b.headers.iter());
        let templates = blocks
            .chain(self.response.iter())
            .flat_map(|h| h.set.iter().chain(h.add.iter()).map(|(_, t)| t))
            .chain(
                self.request
                    .iter()
                    .flat_map(|b| b.query.iter())
                    .flat_map(|q| q.set.iter().map(|s| &s.value).chain(q.add.iter().map(|(_, t)| t))),
            );
        templates
            .into_iter()
            .any(|t| matches!(t, Template::Parts(parts) if parts.iter().any(|p| matches!(p, Part::Param(_)))))
    }

    /// Whether there is anything to do to requests.
    pub fn modifies_requests(&self) -> bool {
        !self.request.is_empty()
    }

    /// Whether there is anything to do to responses.
    pub fn modifies_responses(&self) -> bool {
        !self.response.is_empty()
    }

    /// Applies the request blocks to the request's headers and query.
    pub fn on_request<V: TemplateVars + ?Sized>(&self, vars: &V, req: &mut http::request::Parts) {
        for block in &self.request {
            // Every value is filled from the request as it enters the block.
            let early = block.headers.as_ref().and_then(|h| h.fill(vars, req));
            let query = block.query.as_ref().map(|q| q.apply(vars, req));
            if let Some(h) = &block.headers {
                h.edit(vars, early, &mut req.headers);
            }
            if let Some(q) = query {
                crate::chain::set_query(&mut req.uri, q.as_deref());
            }
        }
    }

    /// Applies the response blocks to a response's headers.
    pub fn on_response<V: TemplateVars + ?Sized>(&self, vars: &V, res: &mut http::response::Parts) {
        for block in &self.response {
            block.edit(vars, None, &mut res.headers);
        }
    }
}

impl HeaderBlock {
    fn compile(ops: &cfg::Ops, patterns: &[String], target: Target, names: &Names) -> HeaderBlock {
        let name = |n: &str| HeaderName::from_bytes(n.trim().as_bytes()).ok();
        let values = |map: &std::collections::BTreeMap<String, cfg::TemplateText>| -> Box<[(HeaderName, Template)]> {
            map.iter()
                .filter_map(|(n, t)| Some((name(n)?, Template::compile(&t.0, target, names))))
                .collect()
        };
        let set = values(&ops.set);
        let add = values(&ops.add);
        let reads_head = set.iter().chain(add.iter()).any(|(_, t)| t.reads_head());
        let patterns: Vec<String> = patterns.iter().map(|p| format!("(?i:{p})")).collect();
        HeaderBlock {
            remove: ops.remove.iter().filter_map(|n| name(n)).collect(),
            remove_matching: (!patterns.is_empty()).then(|| RegexSet::new(&patterns).ok()).flatten(),
            rename: ops
                .rename
                .iter()
                .filter_map(|(a, b)| Some((name(a)?, name(b)?)))
                .collect(),
            set,
            add,
            reads_head,
        }
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.remove_matching.is_none()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// The values of the templates that read the request's head, filled before any operation
    /// changes it (`None` when no template reads it: those are filled as they are used).
    fn fill<V: TemplateVars + ?Sized>(&self, vars: &V, req: &http::request::Parts) -> Option<Vec<Option<HeaderValue>>> {
        self.reads_head.then(|| {
            let mut buf = Vec::new();
            self.set
                .iter()
                .chain(self.add.iter())
                .map(|(_, t)| t.header_value(vars, Some(req), &mut buf))
                .collect()
        })
    }

    /// Runs the operations on `h`, with the values [`HeaderBlock::fill`] gave, if any.
    fn edit<V: TemplateVars + ?Sized>(&self, vars: &V, early: Option<Vec<Option<HeaderValue>>>, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        if let Some(set) = &self.remove_matching {
            let matching: Vec<HeaderName> = h
                .keys()
                .filter(|k| set.is_match(k.as_str()) && !cfg::is_protected_response_header(k.as_str()))
                .cloned()
                .collect();
            for k in matching {
                h.remove(k);
            }
        }
        for (from, to) in &self.rename {
            if let Entry::Occupied(e) = h.entry(from) {
                let mut values = e.remove_entry_mult().1.collect::<Vec<_>>().into_iter();
                if let Some(first) = values.next() {
                    h.insert(to.clone(), first);
                }
                for v in values {
                    h.append(to.clone(), v);
                }
            }
        }
        let mut buf = Vec::new();
        let mut early = early.map(Vec::into_iter);
        let mut value = |t: &Template| match early.as_mut() {
            Some(e) => e.next().flatten(),
            None => t.header_value(vars, None, &mut buf),
        };
        for (name, t) in &self.set {
            match value(t) {
                Some(v) => {
                    h.insert(name.clone(), v);
                }
                None => {
                    h.remove(name);
                }
            }
        }
        for (name, t) in &self.add {
            if let Some(v) = value(t) {
                h.append(name.clone(), v);
            }
        }
    }
}

impl QueryBlock {
    fn compile(ops: &cfg::Ops, names: &Names) -> QueryBlock {
        let decoded = |n: &str| -> Box<[u8]> { n.as_bytes().into() };
        let valued = |t: &cfg::TemplateText| Template::compile(&t.0, Target::Query, names);
        QueryBlock {
            remove: ops
                .remove
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| decoded(n))
                .collect(),
            rename: ops
                .rename
                .iter()
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| (decoded(a), encode(b.as_bytes())))
                .collect(),
            set: ops
                .set
                .iter()
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, t)| SetParam {
                    decoded: decoded(n),
                    encoded: encode(n.as_bytes()),
                    value: valued(t),
                })
                .collect(),
            add: ops
                .add
                .iter()
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, t)| (encode(n.as_bytes()), valued(t)))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rename.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// The query the block makes of the request's (without `?`; `None` for no query at all).
    /// Pairs it does not name keep their place and their bytes; set, then added, pairs go
    /// last, each in name order.
    fn apply<V: TemplateVars + ?Sized>(&self, vars: &V, req: &http::request::Parts) -> Option<String> {
        let old = req.uri.query().unwrap_or("");
        let mut out = String::with_capacity(old.len() + 32);
        for pair in old.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            if self.remove.iter().any(|n| decoded_eq(name, n)) || self.set.iter().any(|s| decoded_eq(name, &s.decoded))
            {
                continue;
            }
            let renamed = self.rename.iter().find(|(from, _)| decoded_eq(name, from));
            push_pair(&mut out, renamed.map_or(name, |(_, to)| to.as_str()), value);
        }
        let mut buf = Vec::new();
        let pairs = self
            .set
            .iter()
            .map(|s| (&s.encoded, &s.value))
            .chain(self.add.iter().map(|(n, t)| (n, t)));
        for (name, t) in pairs {
            if let Template::Fixed(encoded) = t {
                push_pair(&mut out, name, encoded.to_str().ok());
            } else if t.fill(vars, Some(req), &mut buf) {
                push_pair(&mut out, name, Some(&encode(&buf)));
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

fn push_pair(out: &mut String, name: &str, value: Option<&str>) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    if let Some(v) = value {
        out.push('=');
        out.push_str(v);
    }
}

impl Template {
    fn compile(text: &str, target: Target, names: &Names) -> Template {
        let Ok(pieces) = cfg::parse_template(text) else {
            return Template::Never;
        };
        let mut parts: Vec<Part> = Vec::with_capacity(pieces.len());
        let literal = |parts: &mut Vec<Part>, text: &str| match parts.last_mut() {
            Some(Part::Literal(l)) => *l = [&l[..], text.as_bytes()].concat().into(),
            _ => parts.push(Part::Literal(text.as_bytes().into())),
        };
        for piece in pieces {
            let part = match piece {
                Piece::Literal(l) => {
                    literal(&mut parts, &l);
                    continue;
                }
                Piece::Var(v) => match v {
                    Var::Route => {
                        literal(&mut parts, names.route);
                        continue;
                    }
                    Var::Org => {
                        literal(&mut parts, names.org);
                        continue;
                    }
                    Var::Env(name) => match (names.env)(&name) {
                        Some(value) if !value.is_empty() => {
                            literal(&mut parts, &value);
                            continue;
                        }
                        _ => return Template::Never,
                    },
                    Var::ClientIp => Part::ClientIp,
                    Var::RequestId => Part::RequestId,
                    Var::Consumer => Part::Consumer,
                    Var::Claim(c) => Part::Claim(c.into()),
                    Var::Param(p) => Part::Param(p.into()),
                    Var::Header(_) | Var::Query(_) if target == Target::ResponseHeader => return Template::Never,
                    Var::Header(h) => match HeaderName::from_bytes(h.as_bytes()) {
                        Ok(n) => Part::Header(n),
                        Err(_) => return Template::Never,
                    },
                    Var::Query(q) => Part::Query(q.as_bytes().into()),
                },
            };
            parts.push(part);
        }
        match parts.as_slice() {
            [] => Template::Never,
            [Part::Literal(l)] => {
                let fixed = match target {
                    Target::Query => HeaderValue::from_str(&encode(l)),
                    _ => HeaderValue::from_bytes(l),
                };
                fixed.map_or(Template::Never, Template::Fixed)
            }
            _ => Template::Parts(parts.into()),
        }
    }

    /// Whether filling the template reads the request's headers or query.
    fn reads_head(&self) -> bool {
        match self {
            Template::Parts(parts) => parts.iter().any(|p| matches!(p, Part::Header(_) | Part::Query(_))),
            _ => false,
        }
    }

    /// The template's value as a header value; `None` when a variable has no value or the
    /// result is empty or not a valid header value.
    fn header_value<V: TemplateVars + ?Sized>(
        &self,
        vars: &V,
        req: Option<&http::request::Parts>,
        buf: &mut Vec<u8>,
    ) -> Option<HeaderValue> {
        match self {
            Template::Fixed(v) => Some(v.clone()),
            Template::Never => None,
            Template::Parts(_) => self
                .fill(vars, req, buf)
                .then(|| HeaderValue::from_bytes(buf).ok())
                .flatten(),
        }
    }

    /// Fills `buf` with the template's raw (unencoded) value; false when a variable has no
    /// value or the result is empty. (A fixed template is used as it is, never filled.)
    fn fill<V: TemplateVars + ?Sized>(&self, vars: &V, req: Option<&http::request::Parts>, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let parts = match self {
            Template::Never => return false,
            Template::Fixed(v) => {
                buf.extend_from_slice(v.as_bytes());
                return true;
            }
            Template::Parts(parts) => parts,
        };
        for part in parts {
            let ok = match part {
                Part::Literal(l) => {
                    buf.extend_from_slice(l);
                    true
                }
                Part::ClientIp => write!(buf, "{}", vars.client_ip()).is_ok(),
                Part::RequestId => {
                    buf.extend_from_slice(vars.request_id().as_bytes());
                    true
                }
                Part::Consumer => vars.consumer().map(|c| buf.extend_from_slice(c.as_bytes())).is_some(),
                Part::Claim(path) => vars
                    .claims()
                    .and_then(|c| claim(c, path))
                    .is_some_and(|v| write_claim(v, buf)),
                Part::Param(p) => vars.param(p).map(|v| buf.extend_from_slice(v.as_bytes())).is_some(),
                Part::Header(name) => {
                    let mut values = req.map(|r| r.headers.get_all(name).iter()).into_iter().flatten();
                    match values.next() {
                        Some(first) => {
                            buf.extend_from_slice(first.as_bytes());
                            for v in values {
                                buf.extend_from_slice(b", ");
                                buf.extend_from_slice(v.as_bytes());
                            }
                            true
                        }
                        None => false,
                    }
                }
                Part::Query(name) => req
                    .and_then(|r| r.uri.query())
                    .and_then(|q| {
                        q.split('&').find_map(|pair| {
                            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                            decoded_eq(n, name).then_some(v)
                        })
                    })
                    .map(|v| decode_into(v, buf))
                    .is_some(),
            };
            if !ok {
                return false;
            }
        }
        !buf.is_empty()
    }
}

/// A claim by its whole name, else by a path through nested objects split at dots.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut keys = path.split('.');
    let mut v = claims.get(keys.next()?)?;
    for k in keys {
        v = v.as_object()?.get(k)?;
    }
    Some(v)
}

/// A claim's value as text: strings as they are, numbers and booleans as JSON writes them, a
/// list of those joined with `,`. Objects and `null` have no text: false.
fn write_claim(v: &Value, buf: &mut Vec<u8>) -> bool {
    match v {
        Value::String(s) => buf.extend_from_slice(s.as_bytes()),
        Value::Number(n) => {
            let _ = write!(buf, "{n}");
        }
        Value::Bool(b) => {
            let _ = write!(buf, "{b}");
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                if matches!(item, Value::Array(_) | Value::Object(_) | Value::Null) || !write_claim(item, buf) {
                    return false;
                }
            }
        }
        Value::Object(_) | Value::Null => return false,
    }
    true
}

/// Percent-encodes everything but the unreserved characters (RFC 3986 §2.3), so that any value
/// is one query component that every parser reads back the same.
fn encode(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

/// Appends the form-urlencoded `raw` decoded (`%XX`, `+` for a space; a `%` without two hex
/// digits stands for itself).
fn decode_into(raw: &str, out: &mut Vec<u8>) {
    let raw = raw.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Consumer;
    use std::sync::Arc;

    fn section(yaml: &str) -> ModifyConfig {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn env(name: &str) -> Option<String> {
        (name == "REGION").then(|| "eu-west".to_string())
    }

    fn names() -> Names<'static> {
        Names {
            route: "users",
            org: "acme",
            env: &env,
        }
    }

    fn compile(org: Option<&str>, route: Option<&str>) -> Modifiers {
        let (o, r) = (org.map(section), route.map(section));
        Modifiers::compile(o.as_ref(), r.as_ref(), &names()).expect("something to do")
    }

    fn identity() -> Identity {
        let claims = serde_json::json!({
            "sub": "user-42",
            "https://acme.test/tenant": "t1",
            "realm": {"roles": ["admin", "ops"], "level": 3, "deep": {"x": true}},
            "empty": "",
            "bad": "a\nb",
        });
        Identity {
            consumer: Some(Arc::new(Consumer {
                id: "mobile-app".into(),
                header: None,
                tier: None,
                scopes: vec![],
                roles: vec![],
            })),
            claims: serde_json::from_value(claims).ok().map(Arc::new),
        }
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    const RID: HeaderValue = HeaderValue::from_static("rid-1");

    /// Runs `set: {X-Out: template}` on a request and gives X-Out's values.
    fn render(template: &str, id: Option<&Identity>, req: &mut http::request::Parts) -> Vec<String> {
        let yaml = format!("request_headers: {{set: {{X-Out: '{template}'}}}}");
        let m = compile(None, Some(&yaml));
        let vars = Vars {
            client: "203.0.113.7".parse().expect("ip"),
            request_id: &RID,
            identity: id,
            params: &[("id", "17")],
        };
        m.on_request(&vars, req);
        values(&req.headers, "x-out")
    }

    #[test]
    fn templates_fill_from_the_request() {
        let id = identity();
        let req = || {
            request(
                "/users/17?page=2&q=caf%C3%A9+au+lait&q=second",
                &[("x-tag", "a"), ("x-tag", "b"), ("x-tenant", "t9")],
            )
        };
        let cases: &[(&str, Option<&str>)] = &[
            ("cratopus", Some("cratopus")),
            (
                "{client_ip}|{request_id}|{consumer}",
                Some("203.0.113.7|rid-1|mobile-app"),
            ),
            ("{route}@{org} in {env.REGION}", Some("users@acme in eu-west")),
            ("Bearer {claim.sub}", Some("Bearer user-42")),
            ("{claim.https://acme.test/tenant}", Some("t1")),
            ("{claim.realm.roles}/{claim.realm.level}", Some("admin,ops/3")),
            ("{param.id}", Some("17")),
            ("{header.X-Tag}", Some("a, b")),
            ("{query.q}", Some("café au lait")),
            ("{{literal}} {query.page}", Some("{literal} 2")),
            // Missing variables leave the header out, whole.
            ("v={env.UNSET}", None),
            ("Bearer {claim.nope}", None),
            ("{claim.realm}", None),
            ("{claim.realm.deep.x.y}", None),
            ("{param.other}", None),
            ("{header.x-none}", None),
            ("{query.none}", None),
            // Empty and invalid values too.
            ("{claim.empty}", None),
            ("x{claim.bad}", None),
        ];
        for (template, want) in cases {
            let got = render(template, Some(&id), &mut req());
            assert_eq!(
                got,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{template}"
            );
        }
        // No identity: no consumer, no claims.
        assert!(render("{consumer}", None, &mut req()).is_empty());
        assert!(render("{claim.sub}", None, &mut req()).is_empty());
    }

    #[test]
    fn set_owns_its_header() {
        // The client's own value never survives a `set`, whether it is filled or not.
        let mut req = request("/", &[("x-out", "forged"), ("x-out", "twice")]);
        assert_eq!(render("{consumer}", Some(&identity()), &mut req), ["mobile-app"]);
        let mut req = request("/", &[("x-out", "forged")]);
        assert!(render("{consumer}", None, &mut req).is_empty());
    }

    #[test]
    fn header_operations_run_in_order() {
        let m = compile(
            None,
            Some(
                "request_headers:\n  \
                   remove: [X-Debug, Cookie]\n  \
                   rename: {X-Old: X-New}\n  \
                   set: {X-Was-Old: '{header.x-old}', X-Gateway: cratopus}\n  \
                   add: {X-Tag: '{header.x-tag}-gw', Cookie: 'added={consumer}'}\n",
            ),
        );
        let mut req = request(
            "/",
            &[
                ("x-debug", "1"),
                ("cookie", "a=1"),
                ("x-old", "o1"),
                ("x-old", "o2"),
                ("x-new", "replaced"),
                ("x-tag", "t"),
                ("x-gateway", "forged"),
            ],
        );
        let vars = Vars {
            client: "::1".parse().expect("ip"),
            request_id: &RID,
            identity: None,
            params: &[],
        };
        m.on_request(&vars, &mut req);
        let h = &req.headers;
        assert!(h.get("x-debug").is_none() && h.get("x-old").is_none());
        assert_eq!(values(h, "x-new"), ["o1", "o2"]);
        // Templates read the request as it entered the block: before the rename.
        assert_eq!(values(h, "x-was-old"), ["o1, o2"]);
        assert_eq!(values(h, "x-gateway"), ["cratopus"]);
        assert_eq!(values(h, "x-tag"), ["t", "t-gw"]);
        // Removed, and the add's value has a missing consumer: nothing at all.
        assert!(h.get("cookie").is_none());
    }

    #[test]
    fn query_operations() {
        let m = compile(
            None,
            Some(
                "request_query:\n  \
                   remove: [debug]\n  \
                   rename: {q: search}\n  \
                   set: {page: '{param.id}', 'tenant id': '{header.x-tenant}', region: eu/west}\n  \
                   add: {source: gateway, who: '{consumer}', 'ids[]': '{query.q} & co'}\n",
            ),
        );
        let vars = Vars {
            client: "::1".parse().expect("ip"),
            request_id: &RID,
            identity: None,
            params: &[("id", "3")],
        };
        let mut req = request(
            "http://a.test/items/list?q=caf%C3%A9&debug=1&page=1&keep=%2B+x&page=9&debug&bare",
            &[("x-tenant", "t 1")],
        );
        m.on_request(&vars, &mut req);
        assert_eq!(req.uri.path(), "/items/list");
        assert_eq!(req.uri.authority().map(|a| a.as_str()), Some("a.test"));
        assert_eq!(
            req.uri.query(),
            Some(
                "search=caf%C3%A9&keep=%2B+x&bare&page=3&region=eu%2Fwest&tenant%20id=t%201&ids%5B%5D=caf%C3%A9%20%26%20co&source=gateway"
            )
        );

        // Everything removed: no `?` at all. A `set` without a value removes the client's.
        let m = compile(None, Some("request_query: {remove: [a], set: {b: '{consumer}'}}"));
        let mut req = request("/x?a=1&b=forged", &[]);
        m.on_request(&vars, &mut req);
        assert_eq!(req.uri.to_string(), "/x");
    }

    #[test]
    fn response_operations() {
        let m = compile(
            Some("response_headers: {remove: [Server], set: {X-Gateway: cratopus}}"),
            Some(
                "response_headers:\n  \
                   remove_matching: ['^x-internal-', 'POWERED', '^content-length$']\n  \
                   rename: {X-Backend-Time: X-Upstream-Time}\n  \
                   set: {X-Served-For: '{consumer}', X-Region: '{env.REGION}', X-Echo: '{header.x-tag}'}\n  \
                   add: {Set-Cookie: 'gw=1; Path=/'}\n",
            ),
        );
        assert!(!m.modifies_requests() && m.modifies_responses());
        let mut res = http::Response::builder()
            .header("server", "nginx/1.25")
            .header("x-powered-by", "PHP/8")
            .header("X-Internal-Trace", "abc")
            .header("x-internal-host", "10.0.0.3")
            .header("content-length", "12")
            .header("x-backend-time", "5ms")
            .header("set-cookie", "session=1")
            .header("x-served-for", "forged")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        let id = identity();
        let vars = Vars {
            client: "::1".parse().expect("ip"),
            request_id: &RID,
            identity: Some(&id),
            params: &[],
        };
        m.on_response(&vars, &mut res);
        let mut names: Vec<&str> = res.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-length",
                "set-cookie",
                "x-gateway",
                "x-region",
                "x-served-for",
                "x-upstream-time"
            ]
        );
        assert_eq!(values(&res.headers, "set-cookie"), ["session=1", "gw=1; Path=/"]);
        assert_eq!(values(&res.headers, "x-served-for"), ["mobile-app"]);
        assert_eq!(values(&res.headers, "x-region"), ["eu-west"]);
    }

    #[test]
    fn organization_then_route() {
        let org = "request_headers: {set: {X-Gateway: cratopus, X-Who: org}, add: {X-Trail: org}}";
        let route = "request_headers: {set: {X-Who: route}, add: {X-Trail: route}}";
        let vars = Vars {
            client: "::1".parse().expect("ip"),
            request_id: &RID,
            identity: None,
            params: &[],
        };
        let mut req = request("/", &[]);
        compile(Some(org), Some(route)).on_request(&vars, &mut req);
        assert_eq!(values(&req.headers, "x-who"), ["route"]);
        assert_eq!(values(&req.headers, "x-trail"), ["org", "route"]);
        assert_eq!(values(&req.headers, "x-gateway"), ["cratopus"]);

        // `inherit: false`: the route's alone.
        let mut req = request("/", &[]);
        let alone = format!("inherit: false\n{route}");
        compile(Some(org), Some(&alone)).on_request(&vars, &mut req);
        assert_eq!(values(&req.headers, "x-trail"), ["route"]);
        assert!(req.headers.get("x-gateway").is_none());

        // Nothing to do: no policy.
        let empty = section("request_headers: {}");
        assert!(Modifiers::compile(Some(&empty), None, &names()).is_none());
        assert!(Modifiers::compile(None, None, &names()).is_none());
        let off = section("inherit: false");
        assert!(Modifiers::compile(Some(&section(org)), Some(&off), &names()).is_none());
    }

    #[test]
    fn encoding_round_trips() {
        let mut out = Vec::new();
        for raw in ["a b&c=d/é", "100%", "x+y", "~._-"] {
            out.clear();
            decode_into(&encode(raw.as_bytes()), &mut out);
            assert_eq!(out, raw.as_bytes());
        }
        assert_eq!(encode(b"a b"), "a%20b");
        out.clear();
        decode_into("%zz%4", &mut out);
        assert_eq!(out, b"%zz%4");
    }
}
