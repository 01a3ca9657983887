//! A small YAML writer for the configs `cratopus import` makes.
//!
//! The importer builds a tree of [`Node`]s in the order a person would write the keys, with
//! comments on the entries (the source's `@comment`s, and what could not be converted), and
//! writes it in block style. A serializer from a YAML crate would lose both the order and the
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
