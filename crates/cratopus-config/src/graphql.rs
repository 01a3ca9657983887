//! The serde types of a route's GraphQL guards (`graphql:`): limits on the operations a client
//! may send (depth, cost, aliases, root fields, introspection, batch size), an allow-list of
//! persisted operations, and the automatic persisted-query protocol (APQ). The runtime is
//! `cratopus_policies::graphql`.
//!
//! There is no schema: the gateway judges the operation's text. What a schema would tell
//! (which field is a list, what type a field returns) the config may say per field in
//! `cost.fields`.

use crate::units::ByteSize;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    /// Deepest nesting of fields (a root field is at depth 1); deeper gets 400.
    #[serde(default)]
    pub max_depth: Option<u32>,
    /// Highest estimated cost (see `cost`); costlier gets 400.
    #[serde(default)]
    pub max_cost: Option<u64>,
    /// Most aliased fields in one operation (fragments counted where they are spread).
    #[serde(default)]
    pub max_aliases: Option<u32>,
    /// Most fields at the root of one operation.
    #[serde(default)]
    pub max_root_fields: Option<u32>,
    /// Whether introspection (`__schema`, `__type`) is allowed; `__typename` always is.
    #[serde(default = "yes")]
    pub introspection: bool,
    /// Most operations in one batch (a JSON array of requests). Default 1: batching is off,
    /// as in Apollo Router, and a batch of two or more gets 400.
    #[serde(default = "one")]
    pub max_batch: u32,
    /// Most lexical tokens in one document, so that the parser's work is bounded before any
    /// rule runs (default 15000, as Apollo Router).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Largest request body read (the body is read whole to be judged; default 1MiB). A
    /// route's own `max_body_bytes` still applies.
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// How the cost of an operation is estimated.
    #[serde(default)]
    pub cost: CostConfig,
    /// An allow-list of operations: any other is refused.
    #[serde(default)]
    pub persisted_queries: Option<PersistedQueriesConfig>,
    /// Automatic persisted queries (Apollo's APQ protocol): clients send a query's hash, the
    /// gateway fills in the query before forwarding.
    #[serde(default)]
    pub apq: Option<ApqConfig>,
}

/// The cost model: each field costs `default_field` (or its override); a list field
/// multiplies the cost of itself and what it selects by its size, taken from its
/// `list_arguments` (literal or variable) or, for a field `cost.fields` declares a list,
/// `default_list_size` when it has none.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// The cost of a field without an override.
    #[serde(default = "one_u64")]
    pub default_field: u64,
    /// The size assumed of a list field that has none of the `list_arguments`.
    #[serde(default = "default_list_size")]
    pub default_list_size: u64,
    /// Arguments that give a list's size (the largest given counts).
    #[serde(default = "default_list_arguments")]
    pub list_arguments: Vec<String>,
    /// Per-field overrides, by `Type.field` (the parent type is known at the root —
    /// `Query`, `Mutation`, `Subscription` —, under a fragment's type condition and under a
    /// field whose `type` is given here) or by `field` alone (any parent).
    #[serde(default)]
    pub fields: BTreeMap<String, FieldCost>,
    /// The cost of any field known to return this type (from `fields.*.type`), unless the
    /// field has its own `cost`.
    #[serde(default)]
    pub types: BTreeMap<String, u64>,
}

impl Default for CostConfig {
    fn default() -> CostConfig {
        CostConfig {
            default_field: 1,
            default_list_size: default_list_size(),
            list_arguments: default_list_arguments(),
            fields: BTreeMap::new(),
            types: BTreeMap::new(),
        }
    }
}

/// What the config says of one field: its cost alone (`Query.search: 10`), or a map.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum FieldCost {
    Cost(u64),
    Detail(FieldDetail),
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDetail {
    /// The field's own cost (default: its type's, else `default_field`).
    #[serde(default)]
    pub cost: Option<u64>,
    /// The type the field returns: keys `Type.field` below it, and its cost from `types`.
    #[serde(default, rename = "type")]
    pub returns: Option<String>,
    /// Whether the field is a list (its size `default_list_size` when no list argument
    /// gives it).
    #[serde(default)]
    pub list: bool,
}

/// The allow-list: the SHA-256 of each allowed query text, in hex.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersistedQueriesConfig {
    /// Allowed hashes, written here.
    #[serde(default)]
    pub allow: Vec<String>,
    /// A file of allowed hashes (relative to the file this config is in), read at load: one
    /// hex hash a line (`#` comments), or an Apollo persisted-query manifest (JSON with
    /// `operations: [{body}]`, each body's hash allowed).
    #[serde(default)]
    pub allow_file: Option<String>,
}

/// The APQ store: in memory, per route, least recently used entries evicted beyond its size.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApqConfig {
    /// The store's size, counted in query bytes (default 16MiB).
    #[serde(default = "default_apq_bytes")]
    pub max_bytes: ByteSize,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}
fn default_max_tokens() -> u32 {
    15_000
}
fn default_list_size() -> u64 {
    10
}
fn default_list_arguments() -> Vec<String> {
    vec!["first".into(), "last".into(), "limit".into()]
}
fn default_apq_bytes() -> ByteSize {
    ByteSize(16 << 20)
}

/// Whether `s` is a hex SHA-256 (64 hex digits, either case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl GraphqlConfig {
    /// Values serde accepts but the guard cannot use, each starting with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_batch == 0 {
            out.push("max_batch must be at least 1".into());
        }
        if self.max_tokens == 0 {
            out.push("max_tokens must be at least 1".into());
        }
        if self.max_depth == Some(0) {
            out.push("max_depth must be at least 1".into());
        }
        if self.max_root_fields == Some(0) {
            out.push("max_root_fields must be at least 1".into());
        }
        if self.max_body_bytes.is_some_and(|b| b.0 == 0) {
            out.push("max_body_bytes must be above 0".into());
        }
        if self.cost.default_list_size == 0 {
            out.push("cost: default_list_size must be at least 1".into());
        }
        for a in &self.cost.list_arguments {
            if !is_name(a) {
                out.push(format!("cost: list_arguments: `{a}` is not a GraphQL name"));
            }
        }
        for key in self.cost.fields.keys() {
            let ok = match key.split_once('.') {
                Some((t, f)) => is_name(t) && is_name(f),
                None => is_name(key),
            };
            if !ok {
                out.push(format!("cost: fields: `{key}` is not `Type.field` or `field`"));
            }
        }
        for (key, f) in &self.cost.fields {
            if let FieldCost::Detail(d) = f
                && let Some(t) = &d.returns
                && !is_name(t)
            {
                out.push(format!("cost: fields: `{key}`: type `{t}` is not a GraphQL name"));
            }
        }
        for t in self.cost.types.keys() {
            if !is_name(t) {
                out.push(format!("cost: types: `{t}` is not a GraphQL name"));
            }
        }
        if let Some(pq) = &self.persisted_queries {
            for h in &pq.allow {
                if !is_sha256_hex(h) {
                    out.push(format!(
                        "persisted_queries: allow: `{h}` is not a SHA-256 in hex (64 hex digits)"
                    ));
                }
            }
            if pq.allow.is_empty() && pq.allow_file.is_none() {
                out.push("persisted_queries: give `allow`, `allow_file` or both".into());
            }
            if pq.allow_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
                out.push("persisted_queries: allow_file is empty".into());
            }
        }
        if let Some(apq) = &self.apq
            && apq.max_bytes.0 == 0
        {
            out.push("apq: max_bytes must be above 0".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::parse;

    #[test]
    fn defaults_and_field_overrides() {
        let g: GraphqlConfig = parse(
            "max_depth: 5\ncost:\n  fields:\n    Query.search: 10\n    Query.users: {type: User, list: true}\n  types: {User: 2}\napq: {}",
        );
        assert!(g.problems().is_empty(), "{:?}", g.problems());
        assert!(g.introspection);
        assert_eq!(g.max_batch, 1);
        assert_eq!(g.cost.fields["Query.search"], FieldCost::Cost(10));
        assert_eq!(
            g.cost.fields["Query.users"],
            FieldCost::Detail(FieldDetail {
                cost: None,
                returns: Some("User".into()),
                list: true
            })
        );
        assert_eq!(g.apq.unwrap().max_bytes, ByteSize(16 << 20));
    }

    #[test]
    fn bad_values_are_named() {
        let g: GraphqlConfig = parse(
            "max_batch: 0\ncost: {fields: {'a.b.c': 1}, list_arguments: ['1st']}\npersisted_queries: {allow: [abc]}",
        );
        let p = g.problems().join("\n");
        assert!(p.contains("max_batch must be at least 1"), "{p}");
        assert!(p.contains("`a.b.c` is not `Type.field`"), "{p}");
        assert!(p.contains("`1st` is not a GraphQL name"), "{p}");
        assert!(p.contains("`abc` is not a SHA-256"), "{p}");
    }
}
