//! Every shape problem of a file at once. serde stops at the first unknown key or wrong type, so
//! when it fails the file is read again as a plain YAML tree, with the place of every node, and
//! checked against the JSON Schema generated from the same serde types ([`crate::schema`]). Each
//! violation becomes an error at its line and column, with a hint for a misspelt key.
//!
//! This runs only for a file serde refused: a valid file never pays for it, and serde's own error
//! always stays in the report, so the schema can add errors but never hide one.

use crate::error::ConfigError;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A YAML node, each child with its place.
enum Tree {
    Value(Value),
    Seq(Vec<Spanned<Tree>>),
    Map(Vec<(Spanned<Key>, Spanned<Tree>)>),
}

/// A mapping key as text (YAML allows numbers and booleans as keys too).
struct Key(String);

/// (line, column) of a node, 1-based.
type Place = (u32, u32);

/// The problems of `text` (already interpolated) against `schema`, each at its place, in the
/// order of the file. Empty when the text is not YAML at all (the parser's error says why).
pub fn problems(file: &Path, text: &str, schema: &Value) -> Vec<ConfigError> {
    let Ok(tree) = serde_saphyr::from_str::<Spanned<Tree>>(text) else {
        return Vec::new();
    };
    let mut places = HashMap::new();
    let instance = to_json(tree, String::new(), &mut places);
    let Ok(validator) = jsonschema::validator_for(schema) else {
        return Vec::new();
    };
    let mut out: Vec<(Place, ConfigError)> = Vec::new();
    for e in validator.iter_errors(&instance) {
        report(file, &e, schema, &places, &mut out);
    }
    out.sort_by_key(|(p, _)| *p);
    out.dedup_by(|a, b| a.0 == b.0);
    out.into_iter().map(|(_, e)| e).collect()
}

/// Turns one violation into errors. An `anyOf`/`oneOf` (a value that may take several forms)
/// is reported through the form whose type the value has, so that the message says what is
/// wrong inside it rather than "not valid under any of the schemas".
fn report(
    file: &Path,
    e: &jsonschema::ValidationError<'_>,
    schema: &Value,
    places: &HashMap<String, Place>,
    out: &mut Vec<(Place, ConfigError)>,
) {
    use jsonschema::error::ValidationErrorKind as K;
    let pointer = e.instance_path().to_string();
    match e.kind() {
        K::AdditionalProperties { unexpected } => {
            // One error per unknown key, at the key.
            let known = known_keys(&e.schema_path().to_string(), schema);
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            for key in unexpected {
                let at = places.get(&format!("{pointer}/{}#key", escape(key))).copied();
                let hint = crate::validate::hint(key, &known);
                let msg = if hint.is_empty() {
                    format!("unknown key `{key}`")
                } else {
                    format!("unknown key `{key}`{hint}")
                };
                out.push(placed(file, at, msg, &pointer));
            }
        }
        K::AnyOf { context } | K::OneOfNotValid { context } => {
            // A form whose errors are all inside the value (not "wrong type" at the value itself).
            let fitting = context.iter().find(|branch| fits(branch, &pointer));
            match fitting {
                Some(branch) => {
                    for b in branch {
                        report(file, b, schema, places, out);
                    }
                }
                None => {
                    // A choice among fixed values: name them, with a hint for a near miss.
                    let choices: Vec<String> = context
                        .iter()
                        .flatten()
                        .filter_map(|b| match b.kind() {
                            K::Constant { expected_value } => expected_value.as_str().map(str::to_string),
                            _ => None,
                        })
                        .collect();
                    let msg = match e.instance().as_str() {
                        Some(got) if !choices.is_empty() => {
                            let known: Vec<&str> = choices.iter().map(String::as_str).collect();
                            let hint = crate::validate::hint(got, &known);
                            if hint.is_empty() {
                                format!("unknown value `{got}`; expected one of: {}", known.join(", "))
                            } else {
                                format!("unknown value `{got}`{hint}")
                            }
                        }
                        _ => describe(e, &pointer),
                    };
                    out.push(placed(file, places.get(&pointer).copied(), msg, &pointer));
                }
            }
        }
        K::Pattern { .. } => {
            // The schema's own wording for its pattern (durations, sizes, keys).
            let own = e
                .schema_path()
                .to_string()
                .strip_suffix("/pattern")
                .and_then(|p| schema_at(schema, p))
                .and_then(|n| n.get("patternErrorMessage"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let msg = match (own, e.instance().as_str()) {
                (Some(own), Some(got)) => {
                    let what = readable_path(&pointer);
                    format!("{what}: `{got}`: {own}")
                }
                _ => describe(e, &pointer),
            };
            out.push(placed(file, places.get(&pointer).copied(), msg, &pointer));
        }
        _ => out.push(placed(
            file,
            places.get(&pointer).copied(),
            describe(e, &pointer),
            &pointer,
        )),
    }
}

/// Whether a form of an `anyOf`/`oneOf` fits the value at `pointer`: none of its errors says the
/// value itself has another type (directly, or in every form of a nested `anyOf`).
fn fits(branch: &[jsonschema::ValidationError<'_>], pointer: &str) -> bool {
    use jsonschema::error::ValidationErrorKind as K;
    !branch.is_empty()
        && branch.iter().all(|b| {
            if b.instance_path().to_string() != pointer {
                return true;
            }
            match b.kind() {
                K::Type { .. } | K::Constant { .. } | K::Enum { .. } => false,
                K::AnyOf { context } | K::OneOfNotValid { context } => context.iter().any(|c| fits(c, pointer)),
                _ => true,
            }
        })
}

/// The error at `at`, or (when the tree has no place for it) at the nearest node of `pointer`,
/// found later ([`crate::locate`]).
fn placed(file: &Path, at: Option<Place>, message: String, pointer: &str) -> (Place, ConfigError) {
    match at {
        Some((l, c)) => ((l, c), ConfigError::new(file, message).with_position(l, c)),
        None => ((0, 0), ConfigError::at_key(file, pointer, message)),
    }
}

/// The message of a violation, naming where it is (`routes[2].timeout`).
fn describe(e: &jsonschema::ValidationError<'_>, pointer: &str) -> String {
    let what = readable_path(pointer);
    let why = e.to_string();
    // jsonschema's messages start with the offending value, which can be long.
    let why = if why.len() > 160 {
        format!("{}…", &why[..why.floor_char_boundary(160)])
    } else {
        why
    };
    if what.is_empty() { why } else { format!("{what}: {why}") }
}

/// `/routes/2/timeout` → `routes[2].timeout`.
fn readable_path(pointer: &str) -> String {
    let mut s = String::new();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.parse::<usize>().is_ok() {
            s.push_str(&format!("[{part}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(&part);
        }
    }
    s
}

/// The keys the schema at `schema_path` (ending in `/additionalProperties`) allows, for a hint.
fn known_keys(schema_path: &str, schema: &Value) -> Vec<String> {
    schema_path
        .strip_suffix("/additionalProperties")
        .and_then(|parent| schema_at(schema, parent))
        .and_then(|node| node.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The subschema at a JSON Pointer into `schema`, following `$ref`s to `$defs`.
fn schema_at<'s>(schema: &'s Value, path: &str) -> Option<&'s Value> {
    let mut node = schema;
    for part in path.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(m) => m.get(&part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
        while let Some(r) = node.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix("#/$defs/").and_then(|d| schema.get("$defs")?.get(d)) {
                Some(n) => node = n,
                None => break,
            }
        }
    }
    Some(node)
}

/// A parsed YAML file for finding places: its value as JSON and the place of every node (and
/// of every mapping key) by key path.
pub(crate) struct Index {
    value: Value,
    places: HashMap<String, Place>,
}

impl Index {
    /// `None` when `text` is not YAML.
    pub(crate) fn build(text: &str) -> Option<Index> {
        let tree = serde_saphyr::from_str::<Spanned<Tree>>(text).ok()?;
        let mut places = HashMap::new();
        let value = to_json(tree, String::new(), &mut places);
        Some(Index { value, places })
    }

    /// The value at key path `pointer`.
    pub(crate) fn value(&self, pointer: &str) -> Option<&Value> {
        self.value.pointer(pointer)
    }

    /// The place of the deepest node along `pointer` that the file has: the value itself for a
    /// scalar, its key for a section or a list (the line that names it).
    pub(crate) fn nearest(&self, pointer: &str) -> Place {
        let mut p = pointer;
        loop {
            let container = self.value(p).is_some_and(|v| v.is_object() || v.is_array());
            let key = container.then(|| self.places.get(&format!("{p}#key"))).flatten();
            if let Some(place) = key.or_else(|| self.places.get(p)) {
                return *place;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }
}

/// JSON Pointer escaping of one key.
pub(crate) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The tree as JSON, recording the place of every node under its JSON Pointer (and of every key
/// under `pointer#key`).
fn to_json(node: Spanned<Tree>, pointer: String, places: &mut HashMap<String, Place>) -> Value {
    let at = place(&node);
    places.insert(pointer.clone(), at);
    match node.value {
        Tree::Value(v) => v,
        Tree::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, n)| to_json(n, format!("{pointer}/{i}"), places))
                .collect(),
        ),
        Tree::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let child = format!("{pointer}/{}", escape(&k.value.0));
                places.insert(format!("{child}#key"), place(&k));
                let value = to_json(v, child, places);
                m.insert(k.value.0, value);
            }
            Value::Object(m)
        }
    }
}

fn place<T>(s: &Spanned<T>) -> Place {
    let loc = s.referenced;
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).max(1);
    (clamp(loc.line()), clamp(loc.column()))
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Value(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Value(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Value(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(Tree::Value(
                    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Value(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Tree, E> {
                Ok(Tree::Value(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Value(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Tree, E> {
                Ok(Tree::Value(Value::Null))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
                Tree::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
                    items.push(item);
                }
                Ok(Tree::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<Key>, Spanned<Tree>>()? {
                    entries.push(entry);
                }
                Ok(Tree::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::problems;
    use crate::schema::{gateway_schema, organization_schema};
    use std::path::Path;

    /// The schema must accept what serde accepts, or `check` would add false errors to a file
    /// with one real mistake: every example (all valid) has no schema problem.
    #[test]
    fn the_schema_accepts_every_example() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let (gateway, org) = (gateway_schema(), organization_schema());
        let mut seen = 0;
        for dir in std::fs::read_dir(&root).expect("examples/") {
            let dir = dir.expect("entry").path();
            let mut files = vec![(dir.join("gateway.yaml"), &gateway)];
            if let Ok(orgs) = std::fs::read_dir(dir.join("orgs")) {
                files.extend(orgs.map(|f| (f.expect("entry").path(), &org)));
            }
            for (file, schema) in files {
                let text = std::fs::read_to_string(&file).expect("read");
                let text = crate::interpolate::interpolate(&file, &text, &|_| None).expect("interpolate");
                let found = problems(&file, &text, schema);
                assert!(found.is_empty(), "{}: {found:?}", file.display());
                seen += 1;
            }
        }
        assert!(seen >= 10, "only {seen} example files");
    }

    #[test]
    fn every_problem_is_found_with_its_place() {
        let text = "listeners:\n  - bind: 127.0.0.1:0\nhealth_pth: /ping\norganizations:\n  - name: a\n    upstreams:\n      u: {targets: [\"mirror://\"], balance: round_robbin}\n    routes:\n      - {path: /a, upstream: u, timeout: soon}\n";
        let found = problems(Path::new("g.yaml"), text, &gateway_schema());
        let got: Vec<(Option<u32>, String)> = found.iter().map(|e| (e.line, e.message.clone())).collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert_eq!(got[0].0, Some(3));
        assert!(got[0].1.starts_with("unknown key `health_pth`"), "{got:#?}");
        assert_eq!(got[1].0, Some(7));
        assert!(got[1].1.starts_with("unknown value `round_robbin`"), "{got:#?}");
        assert_eq!(got[2].0, Some(9));
        assert!(got[2].1.contains("`soon`: expected a duration"), "{got:#?}");
    }
}
