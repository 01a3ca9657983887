//! The serde types of header and query modifiers (`modify:` on an organization or a route), the
//! one parser of their value templates, and their checks at load. The runtime counterpart is
//! `cratopus-policies`' `modify`, which compiles these into per-request operations.
//!
//! The shape follows what Envoy (`request_headers_to_add`, `response_headers_to_remove`) and
//! Kong's request-transformer (`remove`, `rename`, `replace`, `add`) users expect, keyed by
//! where the change happens and then by operation:
//!
//! ```yaml
//! modify:
//!   request_headers:  {set: {X-User-Id: "{claim.sub}"}, remove: [X-Debug]}
//!   request_query:    {rename: {q: search}}
//!   response_headers: {set: {X-Gateway: cratopus}, remove: [Server], remove_matching: ["^x-internal-"]}
//! ```
//!
//! Within one block the operations run in a fixed order, as Kong's do: `remove`
//! (`remove_matching`), `rename`, `set`, `add`. Every template of the block is filled from the
//! request as it entered the block, so an operation never reads what another one wrote.

use crate::error::ConfigError;
use crate::model::OrganizationConfig;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Header and query modifiers of an organization or a route. On a route they run after the
/// organization's (so a route's `set` wins), unless the route says `inherit: false`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyConfig {
    /// Routes only: run the organization's modifiers before this route's (the default), or,
    /// with `false`, this route's alone (as a route's `auth` replaces the organization's).
    #[serde(default)]
    pub inherit: Option<bool>,
    /// Changes to the request's headers on their way to the backend.
    #[serde(default)]
    pub request_headers: Option<Ops>,
    /// Changes to the request's query parameters on their way to the backend.
    #[serde(default)]
    pub request_query: Option<Ops>,
    /// Changes to the response's headers on their way to the client, the gateway's own answers
    /// (401, 429, …) of the route included.
    #[serde(default)]
    pub response_headers: Option<ResponseOps>,
}

/// Operations on request headers or query parameters, run in this order: `remove`, `rename`,
/// `set`, `add`. Header names ignore case; query parameter names are compared decoded and
/// case-sensitively.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Removed, every value.
    #[serde(default)]
    pub remove: Vec<String>,
    /// `{old: new}`: the old name's values move to the new name (replacing its values). Nothing
    /// happens when the old name is absent.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `{name: template}`: the name gets exactly this one value, whatever the client sent. When
    /// a variable of the template has no value (`{consumer}` on an anonymous request), the name
    /// is removed rather than set to an empty or partial value.
    #[serde(default)]
    pub set: BTreeMap<String, TemplateText>,
    /// `{name: template}`: one more value after those already there. Nothing is added when a
    /// variable of the template has no value.
    #[serde(default)]
    pub add: BTreeMap<String, TemplateText>,
}

/// Operations on response headers: those of request headers, and removal by pattern.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseOps {
    /// Removed, every value, e.g. `[Server, X-Powered-By]`.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Every header whose name matches one of these regular expressions is removed (names are
    /// matched in lower case, the expressions ignore case), e.g. `["^x-internal-", "^x-debug"]`.
    #[serde(default)]
    pub remove_matching: Vec<String>,
    /// `{old: new}`: the old name's values move to the new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `{name: template}`: the name gets exactly this one value, e.g. `{X-Gateway: cratopus}`;
    /// removed when a variable of the template has no value.
    #[serde(default)]
    pub set: BTreeMap<String, TemplateText>,
    /// `{name: template}`: one more value after those already there.
    #[serde(default)]
    pub add: BTreeMap<String, TemplateText>,
}

impl ResponseOps {
    /// The operations shared with the request side, for the checks they share.
    fn as_ops(&self) -> Ops {
        Ops {
            remove: self.remove.clone(),
            rename: self.rename.clone(),
            set: self.set.clone(),
            add: self.add.clone(),
        }
    }
}

/// A value template as written: literal text with `{variable}`s, `{{` and `}}` for literal
/// braces. A string in YAML; an unquoted `{claim.sub}` (which YAML reads as a mapping) is
/// refused with a hint to quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateText(pub String);

impl<'de> Deserialize<'de> for TemplateText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TemplateText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value template such as \"{client_ip}\" or cratopus")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TemplateText, E> {
                Ok(TemplateText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TemplateText, E> {
                Ok(TemplateText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TemplateText, E> {
                Ok(TemplateText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TemplateText, E> {
                Ok(TemplateText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TemplateText, E> {
                Ok(TemplateText(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TemplateText, A::Error> {
                let first: Option<String> = map.next_key().ok().flatten();
                let written = first.map_or_else(|| "{…}".to_string(), |k| format!("{{{k}}}"));
                Err(de::Error::custom(format!(
                    "YAML reads an unquoted `{{` as the start of a mapping: quote the template, as in \"{written}\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for TemplateText {
    fn schema_name() -> Cow<'static, str> {
        "TemplateText".into()
    }
    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::TemplateText").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "A value template: text with `{client_ip}`, `{request_id}`, `{consumer}`, `{claim.NAME}`, `{param.NAME}`, `{header.NAME}`, `{query.NAME}`, `{env.NAME}`, `{route}`, `{org}`; `{{` and `}}` for literal braces. Quote it when it starts with `{`.",
            "type": ["string", "number", "boolean"]
        })
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Var(Var),
}

/// A template variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// The client's address (after `trusted_proxies`).
    ClientIp,
    /// The request id, as `X-Request-Id` carries it.
    RequestId,
    /// The authenticated consumer's id.
    Consumer,
    /// A claim of the verified JWT: the whole name as a top-level claim if there is one
    /// (`https://example.com/roles`), else a path through nested objects split at dots.
    Claim(String),
    /// A path parameter of the route (`{id}` in `/users/{id}`).
    Param(String),
    /// A request header (all its values, joined with `, `).
    Header(String),
    /// A query parameter of the request (its first value, decoded).
    Query(String),
    /// An environment variable of the gateway, read when the config is compiled.
    Env(String),
    /// The route's name.
    Route,
    /// The organization's name.
    Org,
}

/// The variables a template may name, for error hints.
const VARIABLES: [&str; 10] = [
    "client_ip",
    "request_id",
    "consumer",
    "route",
    "org",
    "claim.",
    "param.",
    "header.",
    "query.",
    "env.",
];

/// Parses a template into literal pieces and variables; the error says what to write instead.
pub fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        lit.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("{{") {
            lit.push('{');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("}}") {
            lit.push('}');
            rest = tail;
        } else if after.starts_with('}') {
            return Err(format!("`{text}`: a lone `}}` is written `}}}}`"));
        } else {
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "`{text}`: `{{` opens a variable that is not closed (write `{{{{` for a literal brace)"
                ));
            };
            let var = parse_var(after[1..end].trim()).map_err(|e| format!("`{text}`: {e}"))?;
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Var(var));
            rest = &after[end + 1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

fn parse_var(name: &str) -> Result<Var, String> {
    let simple = match name {
        "client_ip" => Some(Var::ClientIp),
        "request_id" => Some(Var::RequestId),
        "consumer" => Some(Var::Consumer),
        "route" => Some(Var::Route),
        "org" => Some(Var::Org),
        _ => None,
    };
    if let Some(v) = simple {
        return Ok(v);
    }
    let Some((kind, arg)) = name.split_once('.') else {
        return Err(format!(
            "`{{{name}}}` is not a variable{}",
            crate::validate::hint(name, &VARIABLES)
        ));
    };
    if arg.is_empty() {
        return Err(format!("`{{{name}}}` names no {kind}"));
    }
    match kind {
        "claim" => Ok(Var::Claim(arg.to_string())),
        "param" => Ok(Var::Param(arg.to_string())),
        "header" if http::HeaderName::from_bytes(arg.as_bytes()).is_ok() => Ok(Var::Header(arg.to_ascii_lowercase())),
        "header" => Err(format!("`{{{name}}}`: `{arg}` is not a header name")),
        "query" => Ok(Var::Query(arg.to_string())),
        "env" if arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => Ok(Var::Env(arg.to_string())),
        "env" => Err(format!("`{{{name}}}`: `{arg}` is not an environment variable name")),
        _ => Err(format!(
            "`{{{name}}}` is not a variable{}",
            crate::validate::hint(&format!("{kind}."), &VARIABLES)
        )),
    }
}

/// Headers no modifier may set, rename or remove, and why. The hop-by-hop ones are those
/// `cratopus-core`'s `forward::HOP_BY_HOP` strips; the others the gateway itself sets or
/// frames the message by.
const PROTECTED: [(&str, &str); 17] = [
    ("connection", "a hop-by-hop header"),
    ("keep-alive", "a hop-by-hop header"),
    ("proxy-connection", "a hop-by-hop header"),
    ("te", "a hop-by-hop header"),
    ("trailer", "a hop-by-hop header"),
    ("transfer-encoding", "a hop-by-hop header that frames the body"),
    ("upgrade", "a hop-by-hop header"),
    ("proxy-authorization", "a hop-by-hop header"),
    ("proxy-authenticate", "a hop-by-hop header"),
    ("content-length", "the body's framing, which the gateway keeps right"),
    (
        "host",
        "set by the gateway for the target (see the upstream's `preserve_host`)",
    ),
    ("x-forwarded-for", "set by the gateway (see `trusted_proxies`)"),
    ("x-forwarded-proto", "set by the gateway"),
    ("x-forwarded-host", "set by the gateway"),
    (
        "x-consumer-id",
        "the gateway's identity header, set from the authenticated consumer",
    ),
    (
        "x-request-id",
        "the gateway's request id, set on the request and the response",
    ),
    ("traceparent", "set by the gateway for its span of the trace"),
];

/// Of [`PROTECTED`], those that still mean something on a response: the framing. The others
/// are the request's (`Host`, `X-Forwarded-*`, `X-Consumer-Id`) or already removed by the
/// gateway both ways (hop-by-hop), so naming them on a response is refused as pointless or
/// harmful all the same.
fn protected(name: &str, identity: &[String]) -> Option<String> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some((_, why)) = PROTECTED.iter().find(|(n, _)| *n == lower) {
        return Some(format!("`{name}` is {why}; no modifier may change it"));
    }
    if identity.iter().any(|i| i.eq_ignore_ascii_case(&lower)) {
        return Some(format!(
            "`{name}` is an identity header the gateway sets from a verified credential (`forward_claims` or `tls.client_auth`); no modifier may change it"
        ));
    }
    None
}

/// Why no modifier may touch this header, if it is one the gateway owns (the route
/// modifiers' list, shared by a composition backend's `martian` block).
pub fn refused_header(name: &str) -> Option<String> {
    protected(name, &[])
}

/// Whether the runtime must leave a response header alone even when a `remove_matching`
/// pattern matches it: the body's framing and the hop-by-hop headers.
pub fn is_protected_response_header(lower_name: &str) -> bool {
    PROTECTED[..10].iter().any(|(n, _)| *n == lower_name)
}

/// Where a block of operations is, for the checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    RequestHeaders,
    RequestQuery,
    ResponseHeaders,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::RequestHeaders => "request_headers",
            Side::RequestQuery => "request_query",
            Side::ResponseHeaders => "response_headers",
        }
    }
}

/// What the checks of one `modify` section need to know about where it is.
pub struct Context<'a> {
    /// The header names the organization's authentication and client certificates set
    /// (`forward_claims` values, `tls.client_auth.header`).
    pub identity: &'a [String],
    /// The route's path parameters; `None` on an organization (any route may have them).
    pub params: Option<&'a [String]>,
    /// Whether this section is a route's.
    pub on_route: bool,
}

/// A problem of a `modify` section: the key path of the value at fault under the section
/// (`["request_headers", "set", "X-User"]`), and a sentence starting with that path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub keys: Vec<String>,
    pub message: String,
    /// Whether the fault is the last key itself (a header name), not its value.
    pub in_key: bool,
}

fn push(out: &mut Vec<Problem>, keys: &[&str], what: impl fmt::Display) {
    out.push(Problem {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        message: format!("{}: {what}", keys.join(": ")),
        in_key: false,
    });
}

/// [`push`] for a problem of the last key itself.
fn push_key(out: &mut Vec<Problem>, keys: &[&str], what: impl fmt::Display) {
    push(out, keys, what);
    if let Some(p) = out.last_mut() {
        p.in_key = true;
    }
}

impl ModifyConfig {
    /// Every problem, each at its key.
    pub fn problems(&self, cx: &Context) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.inherit.is_some() && !cx.on_route {
            push(
                &mut out,
                &["inherit"],
                "only a route's modifiers can inherit the organization's",
            );
        }
        if let Some(o) = &self.request_headers {
            o.problems(Side::RequestHeaders, cx, &mut out);
        }
        if let Some(o) = &self.request_query {
            o.problems(Side::RequestQuery, cx, &mut out);
        }
        if let Some(o) = &self.response_headers {
            o.as_ops().problems(Side::ResponseHeaders, cx, &mut out);
            for (i, p) in o.remove_matching.iter().enumerate() {
                if let Err(e) = regex::RegexBuilder::new(p).case_insensitive(true).build() {
                    let why = e.to_string().lines().last().unwrap_or_default().trim().to_string();
                    push(
                        &mut out,
                        &["response_headers", "remove_matching", &i.to_string()],
                        format!("`{p}` is not a regular expression: {why}"),
                    );
                }
            }
        }
        out
    }
}

impl Ops {
    fn problems(&self, side: Side, cx: &Context, out: &mut Vec<Problem>) {
        let block = side.key();
        let headers = side != Side::RequestQuery;
        let name_problem = |name: &str| -> Option<String> {
            if !headers {
                return name.is_empty().then(|| "a parameter name cannot be empty".to_string());
            }
            if http::HeaderName::from_bytes(name.trim().as_bytes()).is_err() {
                return Some(format!("`{name}` is not a header name"));
            }
            protected(name, cx.identity)
        };
        for (i, n) in self.remove.iter().enumerate() {
            if let Some(p) = name_problem(n) {
                push(out, &[block, "remove", &i.to_string()], p);
            }
        }
        let norm = |s: &str| {
            if headers {
                s.trim().to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (from, to) in &self.rename {
            let here = [block, "rename", from.as_str()];
            if let Some(p) = name_problem(from) {
                push_key(out, &here, p);
            }
            if let Some(p) = name_problem(to) {
                push(out, &here, p);
            }
            if self.rename.keys().any(|k| norm(k) == norm(to)) {
                push(
                    out,
                    &here,
                    format!("`{to}` is itself renamed; rename each name once, to its final name"),
                );
            }
            if let Some(prev) = seen.insert(norm(from), from) {
                push_key(out, &here, format!("`{prev}` is the same name"));
            }
        }
        for (op, map) in [("set", &self.set), ("add", &self.add)] {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for (name, value) in map {
                let here = [block, op, name.as_str()];
                if let Some(p) = name_problem(name) {
                    push_key(out, &here, p);
                }
                if let Some(prev) = seen.insert(norm(name), name) {
                    push_key(out, &here, format!("`{prev}` is the same name"));
                }
                template_problems(&here, &value.0, side, cx, out);
            }
        }
    }
}

/// The problems of one template: its syntax, its variables where it is, its literal text in a
/// header.
fn template_problems(here: &[&str], text: &str, side: Side, cx: &Context, out: &mut Vec<Problem>) {
    if text.is_empty() {
        return push(out, here, "the value is empty; `remove` takes a name away");
    }
    let pieces = match parse_template(text) {
        Ok(p) => p,
        Err(e) => return push(out, here, e),
    };
    for piece in &pieces {
        match piece {
            Piece::Literal(l) if side != Side::RequestQuery && http::HeaderValue::from_str(l).is_err() => push(
                out,
                here,
                format!(
                    "`{}` cannot be in a header value (control characters and line breaks cannot)",
                    l.escape_debug()
                ),
            ),
            Piece::Var(Var::Header(_) | Var::Query(_)) if side == Side::ResponseHeaders => push(
                out,
                here,
                format!(
                    "`{text}`: a response template reads the request's context (client_ip, request_id, consumer, claim, param, env, route, org), not its headers or query"
                ),
            ),
            Piece::Var(Var::Param(p)) => {
                if let Some(params) = cx.params
                    && !params.iter().any(|k| k == p)
                {
                    let known: Vec<&str> = params.iter().map(String::as_str).collect();
                    push(
                        out,
                        here,
                        format!(
                            "`{{param.{p}}}`: the route's path has no parameter `{p}`{}",
                            crate::validate::hint(p, &known)
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

/// The `modify` problems of an organization and of its routes, each placed at its key under
/// `base` (the organization's key path in `f`).
pub(crate) fn check_org(f: &Path, base: &str, o: &OrganizationConfig, errors: &mut Vec<ConfigError>) {
    let auths = o.auth.iter().chain(o.routes.iter().filter_map(|r| r.auth.as_ref()));
    let mut identity: Vec<String> = auths
        .filter_map(|a| a.jwt.as_ref())
        .flat_map(|j| j.forward_claims.values().cloned())
        .collect();
    identity.extend(
        o.tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref())
            .map(|c| c.header.clone()),
    );
    let mut place = |section: &str, what: &str, list: Vec<Problem>| {
        for p in list {
            let mut pointer = format!("{section}/modify");
            for k in &p.keys {
                pointer.push('/');
                pointer.push_str(&crate::shape::escape(k));
            }
            if p.in_key {
                // The place of the key itself (see `shape::Index::nearest`).
                pointer.push_str("#key");
            }
            errors.push(ConfigError::at_key(
                f,
                pointer,
                format!("{what}: modify: {}", p.message),
            ));
        }
    };
    if let Some(m) = &o.modify {
        let cx = Context {
            identity: &identity,
            params: None,
            on_route: false,
        };
        place(base, &format!("organization `{}`", o.name.value), m.problems(&cx));
    }
    for (i, r) in o.routes.iter().enumerate() {
        if let Some(m) = &r.modify {
            let params = path_params(&r.path.value);
            let cx = Context {
                identity: &identity,
                params: Some(&params),
                on_route: true,
            };
            let section = format!("{base}/routes/{i}");
            place(&section, &format!("route `{}`", r.path.value), m.problems(&cx));
        }
    }
}

/// The parameter names of a route pattern: `id` and `rest` in `/users/{id}/{*rest}`.
pub fn path_params(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('{') {
        let Some(end) = rest[i..].find('}') else { break };
        let name = rest[i + 1..i + end].trim_start_matches('*');
        if !name.is_empty() {
            out.push(name.to_string());
        }
        rest = &rest[i + end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};

    fn cx<'a>(identity: &'a [String], params: Option<&'a [String]>) -> Context<'a> {
        Context {
            identity,
            params,
            on_route: params.is_some(),
        }
    }

    #[test]
    fn templates_parse_into_pieces() {
        use Piece::*;
        assert_eq!(parse_template("cratopus"), Ok(vec![Literal("cratopus".into())]));
        assert_eq!(
            parse_template("Bearer {claim.sub} @ { client_ip }"),
            Ok(vec![
                Literal("Bearer ".into()),
                Var(super::Var::Claim("sub".into())),
                Literal(" @ ".into()),
                Var(super::Var::ClientIp),
            ])
        );
        assert_eq!(
            parse_template("{{literal}} {header.X-Tenant}{query.page}"),
            Ok(vec![
                Literal("{literal} ".into()),
                Var(super::Var::Header("x-tenant".into())),
                Var(super::Var::Query("page".into())),
            ])
        );
        assert_eq!(
            parse_template("{claim.realm_access.roles}{env.REGION}{param.id}{request_id}{consumer}{route}{org}")
                .map(|p| p.len()),
            Ok(7)
        );
        assert_eq!(parse_template(""), Ok(vec![]));
        for (bad, says) in [
            ("{client}", "did you mean `client_ip`"),
            ("a } b", "lone `}`"),
            ("{claim.sub", "not closed"),
            ("{claim.}", "names no claim"),
            ("{header.bad name}", "not a header name"),
            ("{env.A-B}", "not an environment variable"),
            ("{heder.x}", "did you mean `header.`"),
        ] {
            let e = parse_template(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn unquoted_template_is_explained() {
        let e = refused::<Ops>("set: {X-User: {claim.sub}}");
        assert!(e.contains("quote the template") && e.contains("\"{claim.sub}\""), "{e}");
        let ok: Ops = parse("set: {X-User: \"{claim.sub}\", X-Version: 2}");
        assert_eq!(ok.set["X-User"].0, "{claim.sub}");
        assert_eq!(ok.set["X-Version"].0, "2");
    }

    #[test]
    fn problems_name_their_key() {
        let identity = vec!["X-User-Id".to_string()];
        let params = vec!["id".to_string()];
        let m: ModifyConfig = parse(
            "inherit: false\n\
             request_headers:\n  \
               remove: [Connection, X-Debug, 'bad name']\n  \
               rename: {X-A: X-B, X-B: X-C}\n  \
               set: {X-User-Id: x, Host: h, X-Ok: '{param.idd}', X-Empty: ''}\n  \
               add: {X-Ctl: \"a\\nb\", x-ok: '{client_ip}', X-OK: '{header.x}'}\n\
             request_query:\n  \
               set: {page: '{query.p}', '': x}\n\
             response_headers:\n  \
               remove: [Server, Transfer-Encoding]\n  \
               remove_matching: ['^x-internal-', '(unclosed']\n  \
               set: {X-Echo: '{header.x-tenant}', X-Gateway: cratopus}\n",
        );
        let p: Vec<String> = m
            .problems(&cx(&identity, Some(&params)))
            .into_iter()
            .map(|p| p.message)
            .collect();
        let expect = [
            "request_headers: remove: 0: `Connection` is a hop-by-hop header",
            "request_headers: remove: 2: `bad name` is not a header name",
            "request_headers: rename: X-A: `X-B` is itself renamed",
            "request_headers: set: Host: `Host` is set by the gateway",
            "request_headers: set: X-Empty: the value is empty",
            "request_headers: set: X-Ok: `{param.idd}`: the route's path has no parameter `idd`, did you mean `id`?",
            "request_headers: set: X-User-Id: `X-User-Id` is an identity header",
            "request_headers: add: X-Ctl: `a\\nb` cannot be in a header value",
            "request_headers: add: x-ok: `X-OK` is the same name",
            "request_query: set: : a parameter name cannot be empty",
            "response_headers: remove: 1: `Transfer-Encoding` is a hop-by-hop header",
            "response_headers: set: X-Echo: `{header.x-tenant}`: a response template reads",
            "response_headers: remove_matching: 1: `(unclosed` is not a regular expression",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x.starts_with(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");

        // On an organization: `inherit` is refused, params are not checked.
        let org: ModifyConfig = parse("inherit: true\nrequest_headers: {set: {X-Id: '{param.any}'}}");
        let p = org.problems(&cx(&[], None));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].keys, ["inherit"]);
        assert!(p[0].message.starts_with("inherit: "), "{p:?}");

        let fine: ModifyConfig = parse(
            "request_headers: {set: {X-Gateway: cratopus, Authorization: 'Bearer abc'}, remove: [Cookie]}\n\
             request_query: {remove: [debug], rename: {q: search}, add: {source: gw}}\n\
             response_headers: {remove: [Server, X-Powered-By], set: {X-Gateway-Version: '{env.VERSION}'}}",
        );
        assert_eq!(fine.problems(&cx(&[], None)), vec![]);
    }

    /// Problems reach `check` placed at the line of the value at fault, in the organization's
    /// and in a route's section, with the forwarded-claim headers of any route protected.
    #[test]
    fn errors_have_lines() {
        let yaml = "\
organizations:
  - name: a
    domains: [a.test]
    upstreams: {api: {targets: [\"http://127.0.0.1:1\"]}}
    modify:
      request_headers:
        set: {X-Gateway: cratopus}
        remove: [Keep-Alive]
    routes:
      - path: /users/{id}
        upstream: api
        auth: {jwt: {secret: s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t, forward_claims: {sub: X-User-Id}}}
      - path: /orders/{order}
        upstream: api
        modify:
          request_headers:
            set:
              X-Order: '{param.id}'
              x-user-id: '{claim.sub}'
          response_headers:
            remove_matching: ['[']
";
        let errs = crate::load::load_str(Path::new("gw.yaml"), yaml).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let at = |line: u32, says: &str| {
            assert!(
                errs.iter().any(|e| e.line == Some(line) && e.message.contains(says)),
                "no error at line {line} saying {says:?}: {text:#?}"
            );
        };
        at(
            8,
            "organization `a`: modify: request_headers: remove: 0: `Keep-Alive` is a hop-by-hop header",
        );
        at(
            18,
            "route `/orders/{order}`: modify: request_headers: set: X-Order: `{param.id}`",
        );
        at(19, "`x-user-id` is an identity header");
        let col = |says: &str| errs.iter().find(|e| e.message.contains(says)).and_then(|e| e.column);
        assert_eq!(col("identity header"), Some(15), "at the name: {text:#?}");
        assert_eq!(col("no parameter"), Some(24), "at the value: {text:#?}");
        at(
            21,
            "response_headers: remove_matching: 0: `[` is not a regular expression",
        );
        assert_eq!(errs.len(), 4, "{text:#?}");
    }

    #[test]
    fn route_params() {
        assert_eq!(path_params("/users/{id}/files/{*rest}"), ["id", "rest"]);
        assert!(path_params("/plain").is_empty());
    }

    #[test]
    fn protected_response_headers() {
        assert!(is_protected_response_header("content-length"));
        assert!(is_protected_response_header("connection"));
        assert!(!is_protected_response_header("server"));
        assert!(!is_protected_response_header("x-consumer-id"));
    }
}
