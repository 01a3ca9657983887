//! A small YAML document model and writer: for the configs `cratopus import` makes, and for the
//! organization files the admin API edits.
//!
//! The importer builds a tree of [`Node`]s in the order a person would write the keys, with
//! comments on the entries (the source's `@comment`s, and what could not be converted), and
//! writes it in block style. The admin API reads a file (or a JSON body) into the same tree,
//! keys in their written order (a `serde_json::Value` would sort them), changes it and writes it
//! back. A serializer from a YAML crate would lose both the order and the
//! comments; the subset needed here (maps, lists, strings, numbers, booleans) is small enough
//! to write directly. Strings that could be misread (numbers, booleans, anything with YAML
//! syntax in it) are written as JSON strings, which YAML reads as double-quoted scalars.

use std::fmt::Write as _;

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Entries in order, each with an optional comment written above it.
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Null,
}

/// One key of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Node,
    pub comment: Option<String>,
}

impl Node {
    pub fn map() -> Node {
        Node::Map(Vec::new())
    }

    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Node {
        Node::Seq(items.into_iter().map(|s| Node::str(s.as_ref())).collect())
    }

    pub fn int(n: u64) -> Node {
        Node::Num(n.into())
    }

    /// Adds `key: value` at the end of a map (no-op on other nodes).
    pub fn set(&mut self, key: &str, value: Node) {
        self.set_commented(key, value, None)
    }

    /// Adds `key: value` with a comment above it.
    pub fn set_commented(&mut self, key: &str, value: Node, comment: Option<String>) {
        if let Node::Map(entries) = self {
            entries.push(Entry {
                key: key.to_string(),
                value,
                comment,
            });
        }
    }

    /// The JSON value as YAML, keys in the JSON's order.
    pub fn from_json(v: &serde_json::Value) -> Node {
        match v {
            serde_json::Value::Null => Node::Null,
            serde_json::Value::Bool(b) => Node::Bool(*b),
            serde_json::Value::Number(n) => Node::Num(n.clone()),
            serde_json::Value::String(s) => Node::Str(s.clone()),
            serde_json::Value::Array(items) => Node::Seq(items.iter().map(Node::from_json).collect()),
            serde_json::Value::Object(m) => Node::Map(
                m.iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        value: Node::from_json(v),
                        comment: None,
                    })
                    .collect(),
            ),
        }
    }

    fn is_empty_collection(&self) -> bool {
        matches!(self, Node::Map(e) if e.is_empty()) || matches!(self, Node::Seq(s) if s.is_empty())
    }
}

/// The document, with a header comment.
pub fn write(header: &str, root: &Node) -> String {
    let mut out = String::new();
    for line in header.lines() {
        comment_line(&mut out, 0, line);
    }
    match root {
        Node::Map(entries) => map(&mut out, 0, entries),
        other => {
            scalar_or_flow(&mut out, other);
            out.push('\n');
        }
    }
    out
}

fn comment_line(out: &mut String, indent: usize, line: &str) {
    let _ = writeln!(out, "{:indent$}# {}", "", line.trim_end());
}

fn map(out: &mut String, indent: usize, entries: &[Entry]) {
    for e in entries {
        if let Some(c) = &e.comment {
            for line in c.lines() {
                comment_line(out, indent, line);
            }
        }
        let _ = write!(out, "{:indent$}{}:", "", string(&e.key));
        value_after_key(out, indent, &e.value);
    }
}

/// What follows `key:` (or `- `): a scalar on the same line, or a block below.
fn value_after_key(out: &mut String, indent: usize, v: &Node) {
    match v {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            map(out, indent + 2, entries);
        }
        Node::Seq(items) if !items.is_empty() => {
            if items
                .iter()
                .all(|i| !matches!(i, Node::Map(_) | Node::Seq(_)) || i.is_empty_collection())
            {
                // A list of scalars fits on one line, as people write them.
                out.push_str(" [");
                for (n, i) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    scalar_or_flow(out, i);
                }
                out.push_str("]\n");
            } else {
                out.push('\n');
                seq(out, indent + 2, items);
            }
        }
        other => {
            out.push(' ');
            scalar_or_flow(out, other);
            out.push('\n');
        }
    }
}

fn seq(out: &mut String, indent: usize, items: &[Node]) {
    for i in items {
        match i {
            Node::Map(entries) if !entries.is_empty() => {
                // `- key: value` then the other keys under the first one's column.
                let mut first = true;
                for e in entries {
                    if let Some(c) = &e.comment {
                        for line in c.lines() {
                            comment_line(out, if first { indent } else { indent + 2 }, line);
                        }
                    }
                    if first {
                        let _ = write!(out, "{:indent$}- {}:", "", string(&e.key));
                        first = false;
                    } else {
                        let _ = write!(out, "{:w$}{}:", "", string(&e.key), w = indent + 2);
                    }
                    value_after_key(out, indent + 2, &e.value);
                }
            }
            Node::Seq(inner) if !inner.is_empty() => {
                let _ = write!(out, "{:indent$}-", "");
                value_after_key(out, indent, i);
            }
            other => {
                let _ = write!(out, "{:indent$}- ", "");
                scalar_or_flow(out, other);
                out.push('\n');
            }
        }
    }
}

fn scalar_or_flow(out: &mut String, v: &Node) {
    match v {
        Node::Map(e) if e.is_empty() => out.push_str("{}"),
        Node::Seq(s) if s.is_empty() => out.push_str("[]"),
        Node::Map(_) | Node::Seq(_) => {
            // Nested collections inside a one-line list: JSON is valid YAML flow style.
            out.push_str(&serde_json::to_string(&to_json(v)).unwrap_or_default());
        }
        Node::Str(s) => out.push_str(&string(s)),
        Node::Num(n) => out.push_str(&n.to_string()),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null => out.push_str("null"),
    }
}

impl Node {
    /// The value as JSON (keys keep their order only in the JSON text of [`Node`]'s `Serialize`).
    pub fn to_json(&self) -> serde_json::Value {
        to_json(self)
    }

    /// The value of `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The value of `key` in a map, to change it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries) => entries.iter_mut().find(|e| e.key == key).map(|e| &mut e.value),
            _ => None,
        }
    }

    /// Sets `key` in place when it is there (keeping its comment and position), else adds it.
    pub fn replace(&mut self, key: &str, value: Node) {
        match self.get_mut(key) {
            Some(v) => *v = value,
            None => self.set(key, value),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Node::Map(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for e in entries {
                    m.serialize_entry(&e.key, &e.value)?;
                }
                m.end()
            }
            Node::Seq(items) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    q.serialize_element(i)?;
                }
                q.end()
            }
            Node::Str(v) => s.serialize_str(v),
            Node::Num(n) => serde::Serialize::serialize(n, s),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Null => s.serialize_unit(),
        }
    }
}

/// Reads any self-describing format (YAML through serde-saphyr, JSON through serde_json) into a
/// tree whose maps keep their keys in the order written. Map keys must be strings (numbers and
/// booleans are taken as their text), as in every cratopus config.
impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a YAML or JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Num(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Num(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
                serde_json::Number::from_f64(v)
                    .map(Node::Num)
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                <Node as serde::Deserialize>::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(i) = a.next_element()? {
                    items.push(i);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut entries: Vec<Entry> = Vec::new();
                while let Some(key) = a.next_key::<Node>()? {
                    let key = match key {
                        Node::Str(s) => s,
                        Node::Num(n) => n.to_string(),
                        Node::Bool(b) => b.to_string(),
                        _ => return Err(serde::de::Error::custom("a map key that is not a string")),
                    };
                    let value = a.next_value()?;
                    if entries.iter().any(|e| e.key == key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    entries.push(Entry {
                        key,
                        value,
                        comment: None,
                    });
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads YAML text (not `${ENV}`-interpolated) into a document, with the loader's options:
/// only `true` and `false` are booleans, so `yes` stays a string as the loader reads it.
pub fn parse(text: &str) -> Result<Node, String> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| e.to_string())
}

fn to_json(v: &Node) -> serde_json::Value {
    match v {
        Node::Map(e) => serde_json::Value::Object(e.iter().map(|e| (e.key.clone(), to_json(&e.value))).collect()),
        Node::Seq(s) => serde_json::Value::Array(s.iter().map(to_json).collect()),
        Node::Str(s) => serde_json::Value::String(s.clone()),
        Node::Num(n) => serde_json::Value::Number(n.clone()),
        Node::Bool(b) => serde_json::Value::Bool(*b),
        Node::Null => serde_json::Value::Null,
    }
}

/// A string as a plain scalar when YAML reads it back as the same string, else quoted.
fn string(s: &str) -> String {
    let starts_well = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        // `2s`, `100ms`, `12h`: a digit first is plain when YAML cannot read it as a number.
        || (s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().any(|c| c.is_ascii_alphabetic())
            && !s.contains(['e', 'E', 'x', 'o', 'b', '.']));
    let plain = !s.is_empty()
        && starts_well
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./*".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "nan" | "inf"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_maps_lists_and_comments_that_read_back_the_same() {
        let mut root = Node::map();
        root.set("name", Node::str("shop"));
        root.set_commented("port", Node::int(8080), Some("the listener".into()));
        root.set("hosts", Node::strs(["http://a:1", "b"]));
        root.set("durations", Node::strs(["2s", "100ms", "1e3", "0x10", "1.5h", "12"]));
        let mut item = Node::map();
        item.set("path", Node::str("/users/{id}"));
        item.set("allow", Node::strs(["a.b"]));
        item.set("empty", Node::map());
        item.set("flag", Node::Bool(true));
        item.set("yes", Node::str("yes"));
        root.set("routes", Node::Seq(vec![item.clone(), item]));
        root.set(
            "schema",
            Node::from_json(&serde_json::json!({"type": "object", "enum": [1, "x: y", {"a": []}]})),
        );
        let text = write("made by a test", &root);
        assert!(text.starts_with("# made by a test\n"), "{text}");
        assert!(text.contains("# the listener\nport: 8080\n"), "{text}");
        assert!(
            text.contains("durations: [2s, 100ms, \"1e3\", \"0x10\", \"1.5h\", \"12\"]"),
            "{text}"
        );
        let back: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(back, to_json(&root), "{text}");
    }
}
