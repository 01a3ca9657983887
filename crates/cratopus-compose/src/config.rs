//! The serde types of composition, with KrakenD's field names, so that a KrakenD endpoint reads
//! the same here (`url_pattern`, `encoding`, `group`, `target`, `allow`, `deny`, `mapping`,
//! `is_collection`, `output_encoding`, `flatmap_filter`, `sequential`).
//!
//! They live in this crate (not in `cratopus-config`) because checking them needs this crate's
//! parsers: a dotted path, a flatmap operation, a URL template. `cratopus-config` depends on this
//! crate and holds them in its model; [`ComposeEndpointConfig::problems`] returns every problem
//! with the key path of the value at fault, for the config's file:line placement.
//!
//! What KrakenD keeps under `extra_config` (`proxy.flatmap_filter`, `proxy.sequential`) is a plain
//! field here: there is no namespace to get wrong, and the schema can check it.

use crate::flatmap::Flatmap;
pub use crate::martian::{BasicAuth, Martian};
use crate::path::FieldPath;
use crate::template::{Placeholder, UrlTemplate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How a backend's answer body is read (KrakenD's backend `encoding`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum BackendEncoding {
    /// A JSON object (or, with `is_collection`, a JSON array, kept under `collection`).
    #[default]
    #[serde(rename = "json")]
    Json,
    /// Any JSON: an object as it is, an array under `collection`, anything else under `content`.
    #[serde(rename = "safejson")]
    SafeJson,
    /// XML, read into JSON as KrakenD does (attributes as `-name`, text beside them as `#text`,
    /// repeated elements as arrays, every value a string).
    #[serde(rename = "xml")]
    Xml,
    /// Not parsed: the whole body as one string under `content`.
    #[serde(rename = "string")]
    String,
    /// Not read at all: the backend's status, headers and body go to the client as they are.
    /// Only for an endpoint with one backend and `output_encoding: no-op`.
    #[serde(rename = "no-op")]
    NoOp,
}

impl BackendEncoding {
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::SafeJson => "safejson",
            Self::Xml => "xml",
            Self::String => "string",
            Self::NoOp => "no-op",
        }
    }
}

/// How the endpoint's answer is written (KrakenD's `output_encoding`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum OutputEncoding {
    /// The merged object as JSON.
    #[serde(rename = "json")]
    Json,
    /// The array under the merged object's `collection` key, as JSON (`[]` when there is none).
    #[serde(rename = "json-collection")]
    JsonCollection,
    /// The merged object as XML.
    #[serde(rename = "xml")]
    Xml,
    /// The string under the merged object's `content` key, as text (empty when there is none).
    #[serde(rename = "string")]
    String,
    /// JSON, XML or YAML, whichever the client's `Accept` prefers.
    #[serde(rename = "negotiate")]
    Negotiate,
    /// The single `no-op` backend's answer as it is.
    #[serde(rename = "no-op")]
    NoOp,
}

impl OutputEncoding {
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::JsonCollection => "json-collection",
            Self::Xml => "xml",
            Self::String => "string",
            Self::Negotiate => "negotiate",
            Self::NoOp => "no-op",
        }
    }

    /// The encoding an endpoint answers with: its `output_encoding`, or, when it has none and one
    /// backend, the encoding of that backend where there is a writer of that name (`xml`,
    /// `string`, `no-op`), else JSON — KrakenD's rule.
    pub fn effective(declared: Option<OutputEncoding>, backends: &[BackendEncoding]) -> Self {
        if let Some(d) = declared {
            return d;
        }
        match backends {
            [BackendEncoding::Xml] => Self::Xml,
            [BackendEncoding::String] => Self::String,
            [BackendEncoding::NoOp] => Self::NoOp,
            _ => Self::Json,
        }
    }
}

/// The kind of a `flatmap_filter` operation.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlatmapKind {
    /// `args: [from, to]`: move or rename what `from` matches to `to`.
    Move,
    /// `args: [path, ...]`: delete what each path matches.
    Del,
    /// `args: [from, to]`: append the array at `from` to the array at `to`, then delete `from`.
    Append,
}

/// One `flatmap_filter` operation (KrakenD's `{"type": ..., "args": [...]}`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlatmapOpConfig {
    #[serde(rename = "type")]
    pub kind: FlatmapKind,
    /// Dotted paths; `*` matches every member of an array or object, a number an array index.
    pub args: Vec<String>,
}

/// One backend of a composed endpoint: where its answer comes from and how it is shaped before
/// it is merged. The shaping runs in KrakenD's order: `target`, then `allow` or `deny`, then
/// `mapping`, then `group` (with `flatmap_filter`: `target`, the operations, `group`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeBackendConfig {
    /// The backend path, with the endpoint's `{params}` and, in a sequential endpoint, fields of
    /// earlier answers (`{resp0_calendar_id}`, `{resp1_user.id}`), in the path or the query.
    pub url_pattern: String,
    /// The upstream of the organization this backend is called on (KrakenD's `host`); by
    /// default the route's `upstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The method of the call (KrakenD's `method`); by default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// How long this backend may take to its answer's head and whole body (`500ms`, `2s`); by
    /// default its upstream's response timeout. The route's `timeout` bounds every backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How the answer body is read.
    #[serde(default)]
    pub encoding: BackendEncoding,
    /// When this backend fails with an HTTP status, add its status and body to the answer under
    /// `error_<this name>` (KrakenD's `backend/http.return_error_details`); the client still
    /// gets a 200. By default a failure's details are hidden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_error_details: Option<String>,
    /// When this, the endpoint's only backend, fails with an HTTP status, answer with that
    /// status and body (KrakenD's `backend/http.return_error_code`) instead of a 500.
    #[serde(default, skip_serializing_if = "is_false")]
    pub return_error_code: bool,
    /// The answer is an array (or, with `xml`, any document) to keep under `collection`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_collection: bool,
    /// Keep only what is under this dotted path (`data.user`); `{}` when it is missing or not an
    /// object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Keep only these dotted fields (objects only; arrays are not entered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Remove these dotted fields (objects only; arrays are not entered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Renames, old field to new field; both may be dotted paths.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mapping: BTreeMap<String, String>,
    /// Wrap the shaped answer under this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Operations on arrays and nested objects, in order. With them, `allow`, `deny` and
    /// `mapping` cannot be used (KrakenD ignores them silently; here it is an error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flatmap_filter: Vec<FlatmapOpConfig>,
    /// KrakenD's static modifiers of this backend's request and answer (`modifier/martian`),
    /// in KrakenD's DSL: one `header.Modifier`, `fifo.Group`, … block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub martian: Option<Martian>,
    /// Basic authentication towards this backend: `Authorization: Basic …` on every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Hedged calls: this backend is called this many times at once, the first good answer
    /// wins and the other calls are dropped (KrakenD's `concurrent_calls`); by default the
    /// endpoint's `concurrent_calls`, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_calls: Option<u32>,
    /// The most calls per second the gateway makes to this backend, all clients together
    /// (KrakenD's `qos/ratelimit/proxy`); a call over the limit fails at once, without reaching
    /// the backend, which leaves the answer partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ProxyRateLimit>,
}

/// A backend's proxy rate limit: a token bucket of `capacity` tokens refilled at `max_rate`
/// per `every` (KrakenD's `qos/ratelimit/proxy`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRateLimit {
    /// Calls allowed per `every` (per second by default); fractions allowed (`0.5`: one call
    /// every two seconds).
    pub max_rate: f64,
    /// The bucket's size: how many calls may go at once after a quiet time; by default
    /// `max_rate` (at least 1), as in KrakenD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// The period of `max_rate` (`1s` by default, `1m`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
}

impl PartialEq for ProxyRateLimit {
    fn eq(&self, o: &Self) -> bool {
        self.max_rate.to_bits() == o.max_rate.to_bits() && self.capacity == o.capacity && self.every == o.every
    }
}

impl Eq for ProxyRateLimit {}

impl ProxyRateLimit {
    /// The bucket's size (`capacity`, else `max_rate` rounded down, at least 1).
    pub fn burst(&self) -> u32 {
        self.capacity
            .unwrap_or_else(|| (self.max_rate.floor() as u32).max(1))
            .max(1)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A composed endpoint: its backends, whether they run one after the other, what is done to the
/// merged answer and how it is written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeEndpointConfig {
    /// The backends, merged in this order (a later backend's key wins over an earlier one's).
    pub backend: Vec<ComposeBackendConfig>,
    /// Call the backends one after the other, each one's URL able to use the earlier answers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sequential: bool,
    /// How the answer is written; by default JSON, or the single backend's `xml`, `string` or
    /// `no-op`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_encoding: Option<OutputEncoding>,
    /// Operations on the merged answer (KrakenD's endpoint-level `proxy.flatmap_filter`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flatmap_filter: Vec<FlatmapOpConfig>,
    /// KrakenD's zero-trust forwarding: only these client headers reach the backends (names
    /// ignore case; `*`: all), besides those the gateway always sends (`X-Forwarded-*`,
    /// `X-Request-Id`, the body's framing and type, …). Left out: the request's headers as the
    /// route's policies left them; `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_headers: Option<Vec<String>>,
    /// Only these query parameters of the client reach the backends, after the `url_pattern`'s
    /// own (case-sensitive; `*`: all). Left out or `[]`: none (KrakenD's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_query_strings: Option<Vec<String>>,
    /// Hedged calls for every backend (KrakenD's endpoint `concurrent_calls`): each backend
    /// is called this many times at once and the first good answer wins. A backend's own
    /// `concurrent_calls` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_calls: Option<u32>,
}

/// A problem of a composed endpoint: the key path of the value at fault under the endpoint's
/// section (`["backend", "1", "url_pattern"]`), and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub keys: Vec<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.keys.join("."), self.message)
    }
}

fn push(out: &mut Vec<Problem>, keys: &[&str], message: impl Into<String>) {
    out.push(Problem {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        message: message.into(),
    });
}

impl ComposeEndpointConfig {
    /// Values serde accepts but the runtime cannot use. `params` are the endpoint path's
    /// parameter names (`id` in `/users/{id}`), the only ones a `url_pattern` may use.
    pub fn problems(&self, params: &[String]) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.backend.is_empty() {
            push(&mut out, &["backend"], "an endpoint needs at least one backend");
        }
        let output = OutputEncoding::effective(
            self.output_encoding,
            &self.backend.iter().map(|b| b.encoding).collect::<Vec<_>>(),
        );
        let no_op_backends = self
            .backend
            .iter()
            .filter(|b| b.encoding == BackendEncoding::NoOp)
            .count();
        if output == OutputEncoding::NoOp && (self.backend.len() != 1 || no_op_backends != 1) {
            push(
                &mut out,
                &["output_encoding"],
                "no-op passes one backend's answer through as it is: it needs exactly one backend, with encoding no-op",
            );
        } else if no_op_backends > 0 && output != OutputEncoding::NoOp {
            let i = self
                .backend
                .iter()
                .position(|b| b.encoding == BackendEncoding::NoOp)
                .unwrap_or(0);
            push(
                &mut out,
                &["backend", &i.to_string(), "encoding"],
                "a no-op backend's answer is not read, so it cannot be merged or encoded: use output_encoding no-op with a single backend",
            );
        }
        if !self.flatmap_filter.is_empty() {
            if self.backend.len() < 2 {
                push(
                    &mut out,
                    &["flatmap_filter"],
                    "an endpoint's flatmap_filter works on the merge of several backends; with one backend, put it on the backend",
                );
            }
            flatmap_problems(&self.flatmap_filter, &["flatmap_filter"], &mut out);
        }
        if let Some(e) = self.concurrent_calls.and_then(hedge_problem) {
            push(&mut out, &["concurrent_calls"], e);
        }
        if let Some(list) = &self.input_headers {
            for (i, h) in list.iter().enumerate() {
                if h != "*" && http::HeaderName::from_bytes(h.trim().as_bytes()).is_err() {
                    push(
                        &mut out,
                        &["input_headers", &i.to_string()],
                        format!("`{h}` is not a header name"),
                    );
                }
            }
        }
        if let Some(list) = &self.input_query_strings {
            for (i, q) in list.iter().enumerate() {
                if q.is_empty() {
                    push(
                        &mut out,
                        &["input_query_strings", &i.to_string()],
                        "a parameter name cannot be empty",
                    );
                }
            }
        }
        for (i, b) in self.backend.iter().enumerate() {
            b.problems(i, self.sequential, params, &mut out);
            if b.return_error_code && self.backend.len() != 1 {
                push(
                    &mut out,
                    &["backend", &i.to_string(), "return_error_code"],
                    "return_error_code answers with the backend's own status, which only an endpoint with one backend has; use return_error_details to show several backends' errors",
                );
            }
            if b.return_error_details.as_deref().is_some_and(str::is_empty) {
                push(
                    &mut out,
                    &["backend", &i.to_string(), "return_error_details"],
                    "return_error_details needs a name: the error goes under `error_<name>`",
                );
            }
        }
        out
    }
}

impl ComposeBackendConfig {
    fn problems(&self, index: usize, sequential: bool, params: &[String], out: &mut Vec<Problem>) {
        let at = index.to_string();
        let keys = |k: &'static str| ["backend", at.as_str(), k];
        match UrlTemplate::parse(&self.url_pattern) {
            Err(e) => push(out, &keys("url_pattern"), e.to_string()),
            Ok(t) => {
                for p in t.placeholders() {
                    match p {
                        Placeholder::Param(name) if !params.iter().any(|p| p == name) => push(
                            out,
                            &keys("url_pattern"),
                            format!(
                                "`{{{name}}}` is not a parameter of the endpoint's path{}",
                                if params.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (it has {})", params.join(", "))
                                }
                            ),
                        ),
                        Placeholder::Answer { index: n, path } => {
                            if !sequential {
                                push(
                                    out,
                                    &keys("url_pattern"),
                                    format!(
                                        "`{{resp{n}_{path}}}` uses an earlier answer, which only a sequential endpoint has (sequential: true)"
                                    ),
                                );
                            } else if n >= index {
                                push(
                                    out,
                                    &keys("url_pattern"),
                                    format!(
                                        "`{{resp{n}_{path}}}` must name an earlier backend (0 to {}), the backends run in order",
                                        index as isize - 1
                                    ),
                                );
                            }
                        }
                        Placeholder::Param(_) => {}
                    }
                }
            }
        }
        if self.encoding == BackendEncoding::NoOp
            && (self.target.is_some()
                || !self.allow.is_empty()
                || !self.deny.is_empty()
                || !self.mapping.is_empty()
                || self.group.is_some()
                || self.is_collection
                || !self.flatmap_filter.is_empty())
        {
            push(
                out,
                &keys("encoding"),
                "a no-op answer is not read, so it cannot be shaped",
            );
        }
        if let Some(m) = &self.martian {
            for (path, message) in m.problems() {
                let mut k = vec!["backend", at.as_str(), "martian"];
                k.extend(path.iter().map(String::as_str));
                push(out, &k, message);
            }
        }
        if let Some(e) = self.concurrent_calls.and_then(hedge_problem) {
            push(out, &keys("concurrent_calls"), e);
        }
        if let Some(r) = &self.rate_limit
            && !(r.max_rate.is_finite() && r.max_rate > 0.0)
        {
            push(
                out,
                &["backend", at.as_str(), "rate_limit", "max_rate"],
                "max_rate must be a number above 0",
            );
        }
        if let Some(a) = &self.basic_auth
            && a.user.contains(':')
        {
            push(
                out,
                &["backend", at.as_str(), "basic_auth", "user"],
                "a basic authentication user cannot contain `:`",
            );
        }
        if self.is_collection && matches!(self.encoding, BackendEncoding::SafeJson | BackendEncoding::String) {
            push(
                out,
                &keys("is_collection"),
                format!(
                    "{} decides by itself where the answer goes; is_collection is for json and xml",
                    self.encoding.name()
                ),
            );
        }
        if let Some(Err(e)) = self.target.as_deref().map(|t| FieldPath::parse(t, false)) {
            push(out, &keys("target"), e.to_string());
        }
        if self.group.as_deref() == Some("") {
            push(out, &keys("group"), "a group name cannot be empty");
        }
        if !self.allow.is_empty() && !self.deny.is_empty() {
            push(
                out,
                &keys("deny"),
                "allow and deny cannot be used together (KrakenD keeps allow and ignores deny); keep one",
            );
        }
        for (list, name) in [(&self.allow, "allow"), (&self.deny, "deny")] {
            for (j, p) in list.iter().enumerate() {
                if let Err(e) = FieldPath::parse(p, false) {
                    push(out, &["backend", &at, name, &j.to_string()], e.to_string());
                }
            }
        }
        for (from, to) in &self.mapping {
            for p in [from, to] {
                if let Err(e) = FieldPath::parse(p, false) {
                    push(out, &["backend", &at, "mapping", from], e.to_string());
                }
            }
        }
        if !self.flatmap_filter.is_empty() {
            if !self.allow.is_empty() || !self.deny.is_empty() || !self.mapping.is_empty() {
                push(
                    out,
                    &keys("flatmap_filter"),
                    "with flatmap_filter, allow, deny and mapping do nothing (KrakenD ignores them): do them with flatmap operations",
                );
            }
            flatmap_problems(&self.flatmap_filter, &keys("flatmap_filter"), out);
        }
    }
}

/// The most calls of one backend a request may make at once.
pub const MAX_CONCURRENT_CALLS: u32 = 16;

fn hedge_problem(n: u32) -> Option<String> {
    match n {
        0 => Some("concurrent_calls must be 1 or more".into()),
        n if n > MAX_CONCURRENT_CALLS => Some(format!(
            "concurrent_calls is at most {MAX_CONCURRENT_CALLS}: each client request would make {n} calls of the backend"
        )),
        _ => None,
    }
}

fn flatmap_problems(ops: &[FlatmapOpConfig], at: &[&str], out: &mut Vec<Problem>) {
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = Flatmap::compile_one(op) {
            let mut keys = at.to_vec();
            let i = i.to_string();
            keys.push(&i);
            push(out, &keys, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(endpoint: serde_json::Value, params: &[&str]) -> Vec<String> {
        let cfg: ComposeEndpointConfig = serde_json::from_value(endpoint).unwrap();
        let params: Vec<String> = params.iter().map(|p| p.to_string()).collect();
        cfg.problems(&params).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_endpoint_has_no_problems() {
        let p = problems(
            json!({"sequential": true, "output_encoding": "negotiate", "backend": [
                {"url_pattern": "/hotels/{id}.json", "target": "data", "allow": ["a.b"], "mapping": {"a": "b"}, "group": "g"},
                {"url_pattern": "/calendar/{resp0_g.calendar_id}?x={id}", "encoding": "xml", "is_collection": true},
                {"url_pattern": "/n", "encoding": "safejson", "flatmap_filter": [{"type": "del", "args": ["x.*.y"]}]}
            ], "flatmap_filter": [{"type": "move", "args": ["a", "b"]}]}),
            &["id"],
        );
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn each_problem_at_its_key() {
        for (endpoint, params, want) in [
            (
                json!({"backend": []}),
                vec![],
                "backend: an endpoint needs at least one backend",
            ),
            (
                json!({"backend": [{"url_pattern": "/u/{id}"}]}),
                vec!["uid"],
                "backend.0.url_pattern: `{id}` is not a parameter of the endpoint's path (it has uid)",
            ),
            (
                json!({"backend": [{"url_pattern": "u"}]}),
                vec![],
                "backend.0.url_pattern: url_pattern must start with `/`",
            ),
            (
                json!({"backend": [{"url_pattern": "/a"}, {"url_pattern": "/c/{resp0_id}"}]}),
                vec![],
                "backend.1.url_pattern: `{resp0_id}` uses an earlier answer, which only a sequential endpoint has",
            ),
            (
                json!({"sequential": true, "backend": [{"url_pattern": "/c/{resp0_id}"}]}),
                vec![],
                "backend.0.url_pattern: `{resp0_id}` must name an earlier backend",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "allow": ["a"], "deny": ["b"]}]}),
                vec![],
                "backend.0.deny: allow and deny cannot be used together",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "allow": ["a..b"]}]}),
                vec![],
                "backend.0.allow.0: `a..b` has an empty field name",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "deny": ["a.*"]}]}),
                vec![],
                "backend.0.deny.0: `a.*`: the wildcard `*` only works in flatmap_filter",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "target": ""}]}),
                vec![],
                "backend.0.target: a field path cannot be empty",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "group": ""}]}),
                vec![],
                "backend.0.group: a group name cannot be empty",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "mapping": {"a": "b."}}]}),
                vec![],
                "backend.0.mapping.a: `b.` has an empty field name",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "mapping": {"a": "b"}, "flatmap_filter": [{"type": "del", "args": ["x"]}]}]}),
                vec![],
                "backend.0.flatmap_filter: with flatmap_filter, allow, deny and mapping do nothing",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "flatmap_filter": [{"type": "move", "args": ["x"]}]}]}),
                vec![],
                "backend.0.flatmap_filter.0: move needs two paths",
            ),
            (
                json!({"backend": [{"url_pattern": "/", "encoding": "safejson", "is_collection": true}]}),
                vec![],
                "backend.0.is_collection: safejson decides by itself",
            ),
            (
                json!({"output_encoding": "json", "backend": [{"url_pattern": "/", "encoding": "no-op"}]}),
                vec![],
                "backend.0.encoding: a no-op backend's answer is not read",
            ),
            (
                json!({"backend": [{"url_pattern": "/"}, {"url_pattern": "/", "encoding": "no-op"}]}),
                vec![],
                "backend.1.encoding: a no-op backend's answer is not read, so it cannot be merged",
            ),
            (
                json!({"output_encoding": "no-op", "backend": [{"url_pattern": "/"}]}),
                vec![],
                "output_encoding: no-op passes one backend's answer through",
            ),
            (
                json!({"output_encoding": "no-op", "backend": [{"url_pattern": "/", "encoding": "no-op", "group": "g"}]}),
                vec![],
                "backend.0.encoding: a no-op answer is not read, so it cannot be shaped",
            ),
            (
                json!({"backend": [{"url_pattern": "/"}], "flatmap_filter": [{"type": "del", "args": ["x"]}]}),
                vec![],
                "flatmap_filter: an endpoint's flatmap_filter works on the merge of several backends",
            ),
        ] {
            let p = problems(endpoint.clone(), &params);
            assert!(
                p.iter().any(|p| p.starts_with(want)),
                "{endpoint}: want `{want}`, got {p:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_names_are_refused() {
        for bad in [
            json!({"backend": [{"url_pattern": "/", "encoding": "yaml"}]}),
            json!({"backend": [{"url_pattern": "/", "whitelist": ["a"]}]}),
            json!({"backend": [], "output_encoding": "html"}),
            json!({"backend": [{"url_pattern": "/", "flatmap_filter": [{"type": "move", "args": [], "x": 1}]}]}),
            json!({"endpoint": "/x", "backend": []}),
        ] {
            assert!(
                serde_json::from_value::<ComposeEndpointConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn effective_output_encoding() {
        use BackendEncoding as B;
        use OutputEncoding as O;
        assert_eq!(O::effective(None, &[B::Json]), O::Json);
        assert_eq!(O::effective(None, &[B::SafeJson]), O::Json);
        assert_eq!(O::effective(None, &[B::Xml]), O::Xml);
        assert_eq!(O::effective(None, &[B::String]), O::String);
        assert_eq!(O::effective(None, &[B::NoOp]), O::NoOp);
        assert_eq!(O::effective(None, &[B::Xml, B::Xml]), O::Json);
        assert_eq!(O::effective(Some(O::Negotiate), &[B::Xml]), O::Negotiate);
    }

    #[test]
    fn schema_names_krakend_fields() {
        let schema = serde_json::to_value(schemars::schema_for!(ComposeEndpointConfig)).unwrap();
        let text = schema.to_string();
        for name in [
            "url_pattern",
            "is_collection",
            "flatmap_filter",
            "output_encoding",
            "json-collection",
            "safejson",
            "no-op",
            "negotiate",
            "append",
        ] {
            assert!(text.contains(&format!("\"{name}\"")), "{name} missing from the schema");
        }
        assert_eq!(schema["additionalProperties"], json!(false));
    }
}
