//! GraphQL guards: a route's limits on the operations clients send, its allow-list of
//! persisted operations, and the automatic persisted-query protocol (APQ).
//!
//! One policy of the chain ([`crate::chain::Policy::Graphql`]). A `GET` is judged from its
//! query string in `on_request`; a `POST` asks the engine for its body whole (`body_limit`) and
//! is judged in `on_body`, which may also rewrite it: a request that names an APQ hash the
//! store holds gets its query filled in, so the upstream always receives a full query. What the
//! guard learns (operation name and type, depth, cost) goes to the request's log line.
//!
//! Requests read (GraphQL over HTTP, as Apollo's clients send them): `POST application/json`
//! with `{"query","operationName","variables","extensions"}` or a JSON array of those (a
//! batch), `POST application/graphql` with the query as the body, and `GET` with the same
//! names as query parameters (`variables` and `extensions` as JSON).

pub mod analyze;
pub mod persisted;
pub mod refusal;

use crate::chain::{RequestCx, set_query};
use analyze::{CostModel, FieldRule, Measures, OpKind};
use bytes::Bytes;
use cratopus_config::graphql::{FieldCost, GraphqlConfig};
use cratopus_observe::traffic_log::LogValue;
use http::{Method, header};
use persisted::{AllowList, ApqStore, Hash};
pub use refusal::{GraphqlRefusal, Kind};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The body read when the config does not say: 1 MiB.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

/// A route's compiled guard.
#[derive(Debug)]
pub struct GraphqlGuard {
    max_depth: Option<u32>,
    max_cost: Option<u64>,
    max_aliases: Option<u32>,
    max_root_fields: Option<u32>,
    introspection: bool,
    max_batch: usize,
    max_tokens: usize,
    body_limit: u64,
    model: CostModel,
    allow: Option<AllowList>,
    apq: Option<ApqStore>,
    /// Refusals by kind, for `/metrics` (reset by a reload, as a counter may be).
    refused: [AtomicU64; Kind::ALL.len()],
}

/// Where one operation's text came from.
enum Source<'a> {
    /// Sent as it is (with the APQ hash the client gave, to store it under).
    Sent(&'a str, Option<Hash>),
    /// Filled in from the APQ store.
    Stored(Arc<str>, Hash),
}

/// The numbers of a request's operations, for the log line.
#[derive(Default)]
struct Summary {
    names: Vec<String>,
    kind: Option<OpKind>,
    depth: u32,
    cost: u64,
    count: usize,
    apq: Option<&'static str>,
}

impl Summary {
    fn add(&mut self, m: &Measures) {
        if let Some(n) = &m.name {
            self.names.push(n.clone());
        }
        self.kind.get_or_insert(m.kind);
        self.depth = self.depth.max(m.depth);
        self.cost = self.cost.saturating_add(m.cost);
        self.count += 1;
    }

    fn log(self, cx: &mut RequestCx) {
        if self.count == 0 && self.apq.is_none() {
            return;
        }
        if !self.names.is_empty() {
            cx.log_fields
                .push(("graphql_operation", LogValue::Str(self.names.join(",").into())));
        }
        if let Some(k) = self.kind {
            cx.log_fields.push(("graphql_type", LogValue::Str(k.as_str().into())));
        }
        if self.count > 0 {
            cx.log_fields
                .push(("graphql_depth", LogValue::Int(i64::from(self.depth))));
            cx.log_fields.push((
                "graphql_cost",
                LogValue::Int(i64::try_from(self.cost).unwrap_or(i64::MAX)),
            ));
        }
        if self.count > 1 {
            cx.log_fields.push(("graphql_batch", LogValue::Int(self.count as i64)));
        }
        if let Some(a) = self.apq {
            cx.log_fields.push(("graphql_apq", LogValue::Str(a.into())));
        }
    }
}

impl GraphqlGuard {
    /// Compiles a config that passed [`GraphqlConfig::problems`]; `base_dir` is the directory
    /// of the file the config is in, for a relative `allow_file`.
    pub fn compile(cfg: &GraphqlConfig, base_dir: &Path) -> Result<GraphqlGuard, String> {
        let mut fields: HashMap<Box<str>, HashMap<Box<str>, FieldRule>> = HashMap::new();
        for (key, f) in &cfg.cost.fields {
            let (parent, name) = key.split_once('.').unwrap_or(("", key));
            let rule = match f {
                FieldCost::Cost(c) => FieldRule {
                    cost: Some(*c),
                    ..FieldRule::default()
                },
                FieldCost::Detail(d) => FieldRule {
                    cost: d.cost,
                    returns: d.returns.as_deref().map(Box::from),
                    list: d.list,
                },
            };
            fields.entry(parent.into()).or_default().insert(name.into(), rule);
        }
        let allow = cfg
            .persisted_queries
            .as_ref()
            .map(|pq| AllowList::compile(pq, base_dir))
            .transpose()
            .map_err(|e| format!("persisted_queries: {e}"))?;
        Ok(GraphqlGuard {
            max_depth: cfg.max_depth,
            max_cost: cfg.max_cost,
            max_aliases: cfg.max_aliases,
            max_root_fields: cfg.max_root_fields,
            introspection: cfg.introspection,
            max_batch: cfg.max_batch.max(1) as usize,
            max_tokens: cfg.max_tokens.max(1) as usize,
            body_limit: cfg.max_body_bytes.map_or(DEFAULT_BODY_LIMIT, |b| b.0),
            model: CostModel {
                default_field: cfg.cost.default_field,
                default_list_size: cfg.cost.default_list_size,
                list_arguments: cfg.cost.list_arguments.iter().map(|a| Box::from(a.as_str())).collect(),
                fields,
                types: cfg
                    .cost
                    .types
                    .iter()
                    .map(|(k, v)| (Box::from(k.as_str()), *v))
                    .collect(),
            },
            allow,
            apq: cfg.apq.as_ref().map(|a| ApqStore::new(a.max_bytes.0)),
            refused: Default::default(),
        })
    }

    /// Refusals so far by the gateway's name of their kind (`graphql_depth`, …), each name
    /// once.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for k in Kind::ALL {
            let n = self.refused[k.index()].load(Ordering::Relaxed);
            match out.iter_mut().find(|(name, _)| *name == k.name()) {
                Some((_, total)) => *total += n,
                None => out.push((k.name(), n)),
            }
        }
        out
    }

    fn count(&self, r: Result<(), GraphqlRefusal>) -> Result<(), GraphqlRefusal> {
        if let Err(e) = &r {
            self.refused[e.kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// The body to read whole: a POST's.
    pub fn body_limit(&self, req: &http::request::Parts) -> Option<u64> {
        (req.method == Method::POST).then_some(self.body_limit)
    }

    /// Judges a GET from its query string (filling in an APQ query there), and checks that a
    /// POST has a body the guard can read before it is read.
    pub fn on_request(&self, cx: &mut RequestCx, req: &mut http::request::Parts) -> Result<(), GraphqlRefusal> {
        let r = match req.method {
            Method::POST => match body_type(&req.headers) {
                Some(_) => Ok(()),
                None => Err(GraphqlRefusal::new(
                    Kind::ContentType,
                    "a GraphQL POST must have content-type application/json or application/graphql".into(),
                )),
            },
            Method::GET | Method::HEAD => {
                let mut summary = Summary::default();
                let r = self.check_get(&mut summary, req);
                summary.log(cx);
                r
            }
            Method::OPTIONS => Ok(()),
            _ => Err(GraphqlRefusal::new(
                Kind::Method,
                "GraphQL requests are sent with GET or POST".into(),
            )),
        };
        self.count(r)
    }

    /// Judges a POST's body; fills in APQ queries, rewriting the body.
    pub fn on_body(
        &self,
        cx: &mut RequestCx,
        headers: &http::HeaderMap,
        body: &mut Bytes,
    ) -> Result<(), GraphqlRefusal> {
        let mut summary = Summary::default();
        let r = match body_type(headers) {
            Some(BodyType::Graphql) => match std::str::from_utf8(body) {
                Ok(q) => self
                    .check_one(&mut summary, Some(q), None, None, None, false)
                    .map(|_| ()),
                Err(_) => Err(invalid("the body is not UTF-8 text")),
            },
            _ => self.check_json(&mut summary, body),
        };
        summary.log(cx);
        self.count(r)
    }

    fn check_json(&self, summary: &mut Summary, body: &mut Bytes) -> Result<(), GraphqlRefusal> {
        let mut doc: Value =
            serde_json::from_slice(body).map_err(|e| invalid(&format!("the body is not JSON: {e}")))?;
        let filled = match &mut doc {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(invalid("the batch is empty"));
                }
                if items.len() > self.max_batch {
                    return Err(batch_refusal(self.max_batch, items.len()));
                }
                let mut any = false;
                for item in items.iter_mut() {
                    any |= self.check_item(summary, item)?;
                }
                any
            }
            item => self.check_item(summary, item)?,
        };
        if filled {
            *body = Bytes::from(serde_json::to_vec(&doc).map_err(|e| invalid(&e.to_string()))?);
        }
        Ok(())
    }

    /// One request object of a POST; `true` when its query was filled in.
    fn check_item(&self, summary: &mut Summary, item: &mut Value) -> Result<bool, GraphqlRefusal> {
        let Value::Object(obj) = item else {
            return Err(invalid("a GraphQL request is a JSON object"));
        };
        let query = match obj.get("query") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(invalid("`query` must be a string")),
        };
        let name = match obj.get("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(invalid("`operationName` must be a string")),
        };
        let variables = match obj.get("variables") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(invalid("`variables` must be a map")),
        };
        let extensions = match obj.get("extensions") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(invalid("`extensions` must be a map")),
        };
        let filled = self.check_one(summary, query, name, variables, extensions, false)?;
        Ok(match filled {
            Some(q) => {
                obj.insert("query".into(), Value::String(q.to_string()));
                true
            }
            None => false,
        })
    }

    fn check_get(&self, summary: &mut Summary, req: &mut http::request::Parts) -> Result<(), GraphqlRefusal> {
        let raw = req.uri.query().unwrap_or("");
        let (mut query, mut name, mut variables, mut extensions) = (None, None, None, None);
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            match &*k {
                "query" => query = Some(v),
                "operationName" => name = Some(v),
                "variables" => variables = Some(v),
                "extensions" => extensions = Some(v),
                _ => {}
            }
        }
        let variables: Option<Map<String, Value>> = match variables.as_deref() {
            None | Some("") | Some("null") => None,
            Some(v) => Some(serde_json::from_str(v).map_err(|_| invalid("`variables` must be a JSON map"))?),
        };
        let extensions: Option<Map<String, Value>> = match extensions.as_deref() {
            None | Some("") | Some("null") => None,
            Some(v) => Some(serde_json::from_str(v).map_err(|_| invalid("`extensions` must be a JSON map"))?),
        };
        let filled = self.check_one(
            summary,
            query.as_deref(),
            name.as_deref().filter(|n| !n.is_empty()),
            variables.as_ref(),
            extensions.as_ref(),
            true,
        )?;
        if let Some(q) = filled {
            let mut out = form_urlencoded::Serializer::new(String::with_capacity(raw.len() + q.len() * 2));
            for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
                if k != "query" {
                    out.append_pair(&k, &v);
                }
            }
            out.append_pair("query", &q);
            set_query(&mut req.uri, Some(&out.finish()));
        }
        Ok(())
    }

    /// Judges one operation. Returns the query filled in from the APQ store, if it was.
    fn check_one(
        &self,
        summary: &mut Summary,
        query: Option<&str>,
        name: Option<&str>,
        variables: Option<&Map<String, Value>>,
        extensions: Option<&Map<String, Value>>,
        get: bool,
    ) -> Result<Option<Arc<str>>, GraphqlRefusal> {
        let hash = match extensions.and_then(|e| e.get("persistedQuery")) {
            None | Some(Value::Null) => None,
            Some(pq) => Some(persisted_hash(pq)?),
        };
        let source = match (hash, query) {
            (Some(h), Some(q)) => {
                if self.apq.is_some() && persisted::sha256(q) != h {
                    return Err(GraphqlRefusal::new(
                        Kind::HashMismatch,
                        "provided sha does not match query".into(),
                    ));
                }
                Source::Sent(q, Some(h))
            }
            (Some(h), None) => match &self.apq {
                Some(store) => match store.get(&h) {
                    Some(q) => {
                        summary.apq = Some("hit");
                        Source::Stored(q, h)
                    }
                    None => {
                        summary.apq = Some("miss");
                        return Err(GraphqlRefusal::new(
                            Kind::PersistedNotFound,
                            "PersistedQueryNotFound".into(),
                        ));
                    }
                },
                None => {
                    return Err(GraphqlRefusal::new(
                        Kind::PersistedNotSupported,
                        "PersistedQueryNotSupported".into(),
                    ));
                }
            },
            (None, Some(q)) => Source::Sent(q, None),
            (None, None) => {
                return Err(invalid(
                    "GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension",
                ));
            }
        };
        let (text, known): (&str, Option<Hash>) = match &source {
            Source::Sent(q, h) => (q, *h),
            Source::Stored(q, h) => (q, Some(*h)),
        };
        if text.trim().is_empty() {
            return Err(invalid("the query is empty"));
        }
        if let Some(allow) = &self.allow {
            // With APQ on a sent hash was checked against the text above; without APQ it was
            // not, so the list is always asked with the text's own hash.
            let h = match known {
                Some(h) if self.apq.is_some() => h,
                _ => persisted::sha256(text),
            };
            if !allow.allows(&h) {
                return Err(GraphqlRefusal::new(
                    Kind::NotInList,
                    "PersistedQueryNotInList: the operation is not in this route's list of persisted queries".into(),
                ));
            }
        }
        let m = analyze::measure(text, name, variables, &self.model, self.max_tokens)?;
        summary.add(&m);
        self.judge(&m, get)?;
        if let (Some(store), Source::Sent(q, Some(h))) = (&self.apq, &source) {
            store.insert(*h, q);
            summary.apq = Some("stored");
        }
        Ok(match source {
            Source::Stored(q, _) => Some(q),
            Source::Sent(..) => None,
        })
    }

    /// The route's limits on one measured operation.
    fn judge(&self, m: &Measures, get: bool) -> Result<(), GraphqlRefusal> {
        if get && m.kind == OpKind::Mutation {
            return Err(GraphqlRefusal::new(
                Kind::Method,
                "Mutations can only be sent over HTTP POST".into(),
            ));
        }
        if m.introspection && !self.introspection {
            return Err(GraphqlRefusal::new(
                Kind::Introspection,
                "introspection has been disabled".into(),
            ));
        }
        if let Some(max) = self.max_depth
            && m.depth > max
        {
            return Err(GraphqlRefusal::new(
                Kind::Depth,
                format!(
                    "Maximum depth limit exceeded in this operation: depth {} over {max}",
                    m.depth
                ),
            ));
        }
        if let Some(max) = self.max_root_fields
            && m.root_fields > max
        {
            return Err(GraphqlRefusal::new(
                Kind::RootFields,
                format!(
                    "Maximum root fields limit exceeded in this operation: {} root fields over {max}",
                    m.root_fields
                ),
            ));
        }
        if let Some(max) = self.max_aliases
            && m.aliases > max
        {
            return Err(GraphqlRefusal::new(
                Kind::Aliases,
                format!(
                    "Maximum aliases limit exceeded in this operation: {} aliases over {max}",
                    m.aliases
                ),
            ));
        }
        if let Some(max) = self.max_cost
            && m.cost > max
        {
            return Err(GraphqlRefusal::new(
                Kind::Cost,
                format!("Operation estimated cost {} exceeded configured maximum {max}", m.cost),
            ));
        }
        Ok(())
    }
}

/// `extensions.persistedQuery`: `{"version": 1, "sha256Hash": "<hex>"}`.
fn persisted_hash(pq: &Value) -> Result<Hash, GraphqlRefusal> {
    if pq.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(GraphqlRefusal::new(
            Kind::PersistedNotSupported,
            "Unsupported persisted query version: only version 1 is".into(),
        ));
    }
    pq.get("sha256Hash")
        .and_then(Value::as_str)
        .and_then(persisted::parse_hex)
        .ok_or_else(|| invalid("`extensions.persistedQuery.sha256Hash` must be a SHA-256 in hex"))
}

fn batch_refusal(max: usize, got: usize) -> GraphqlRefusal {
    if max <= 1 {
        GraphqlRefusal::new(
            Kind::BatchingOff,
            format!("batching is not enabled on this route: the batch has {got} operations"),
        )
    } else {
        GraphqlRefusal::new(
            Kind::Batch,
            format!("the batch has {got} operations, over this route's limit of {max}"),
        )
    }
}

fn invalid(why: &str) -> GraphqlRefusal {
    GraphqlRefusal::new(Kind::InvalidRequest, why.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyType {
    Json,
    Graphql,
}

/// The kind of a POST's body, from its `Content-Type` (parameters ignored).
fn body_type(headers: &http::HeaderMap) -> Option<BodyType> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = v.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Some(BodyType::Json)
    } else if media.eq_ignore_ascii_case("application/graphql") {
        Some(BodyType::Graphql)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn guard(yaml: &str) -> GraphqlGuard {
        let cfg: GraphqlConfig = serde_saphyr::from_str(yaml).unwrap();
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        GraphqlGuard::compile(&cfg, Path::new(".")).unwrap()
    }

    fn cx() -> RequestCx {
        RequestCx::new(
            "127.0.0.1".parse().unwrap(),
            HeaderValue::from_static("r"),
            Arc::from("g"),
        )
    }

    fn post_head() -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    fn hex(text: &str) -> String {
        persisted::sha256(text).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_hash_without_a_query_is_refused_without_apq() {
        let g = guard("max_depth: 3");
        let body = serde_json::json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hex("{ a }")}}});
        let mut body = Bytes::from(body.to_string());
        let e = g.on_body(&mut cx(), &post_head(), &mut body).unwrap_err();
        assert_eq!(e.kind, Kind::PersistedNotSupported);
        // Version 2 of the protocol is not spoken.
        let body = serde_json::json!({"query": "{ a }", "extensions": {"persistedQuery": {"version": 2, "sha256Hash": hex("{ a }")}}});
        let e = g
            .on_body(&mut cx(), &post_head(), &mut Bytes::from(body.to_string()))
            .unwrap_err();
        assert_eq!(e.kind, Kind::PersistedNotSupported);
        assert!(g.refusals().contains(&("graphql_persisted_query_not_supported", 2)));
    }

    #[test]
    fn a_get_hit_gets_its_query_parameter_filled_in() {
        let g = guard("apq: {}");
        let q = "query Q { a }";
        let ext = format!(r#"{{"persistedQuery":{{"version":1,"sha256Hash":"{}"}}}}"#, hex(q));
        let stored = serde_json::json!({"query": q, "extensions": serde_json::from_str::<Value>(&ext).unwrap()});
        g.on_body(&mut cx(), &post_head(), &mut Bytes::from(stored.to_string()))
            .unwrap();
        let uri = format!(
            "/graphql?operationName=Q&extensions={}",
            form_urlencoded::byte_serialize(ext.as_bytes()).collect::<String>()
        );
        let mut req = http::Request::get(uri).body(()).unwrap().into_parts().0;
        let mut c = cx();
        g.on_request(&mut c, &mut req).unwrap();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(req.uri.query().unwrap().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert!(pairs.contains(&("query".into(), q.into())), "{pairs:?}");
        assert!(pairs.contains(&("operationName".into(), "Q".into())), "{pairs:?}");
        assert!(
            c.log_fields
                .iter()
                .any(|(k, v)| *k == "graphql_apq" && matches!(v, LogValue::Str(s) if &**s == "hit"))
        );
    }

    #[test]
    fn methods_and_content_types_outside_graphql_over_http_are_refused() {
        let g = guard("max_depth: 3");
        let mut req = http::Request::get("/g?query=mutation%20%7B%20a%20%7D")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(g.on_request(&mut cx(), &mut req).unwrap_err().kind, Kind::Method);
        let mut req = http::Request::put("/g").body(()).unwrap().into_parts().0;
        assert_eq!(g.on_request(&mut cx(), &mut req).unwrap_err().kind, Kind::Method);
        let mut req = http::Request::post("/g")
            .header("content-type", "text/plain")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(g.on_request(&mut cx(), &mut req).unwrap_err().kind, Kind::ContentType);
        // A body that is not a request object, and one whose variables are not a map.
        for body in [r#""{ a }""#, r#"{"query": "{ a }", "variables": [1]}"#, "[]"] {
            let e = g.on_body(&mut cx(), &post_head(), &mut Bytes::from(body)).unwrap_err();
            assert_eq!(e.kind, Kind::InvalidRequest, "{body}");
        }
    }
}
