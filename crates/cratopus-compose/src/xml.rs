//! XML to JSON and back, with the conventions KrakenD uses (those of the Go library mxj, which
//! its `xml` encoding is built on), so that a KrakenD user's XML endpoints answer the same.
//!
//! Reading (`decode`):
//! - the document is an object with one key, the root element's name: `<user>…</user>` is
//!   `{"user": …}`; names lose their namespace prefix (`<a:b>` is `b`);
//! - an element with neither attributes nor child elements is its text, trimmed (`""` when
//!   empty); every value is a string (`<age>3</age>` is `"3"`), as mxj reads without casting;
//! - otherwise it is an object: attributes as `-name`, child elements by name, several
//!   children of the same name as an array in document order, and its text (if any) as `#text`;
//! - comments, processing instructions and the DTD are ignored; only UTF-8 is read (mxj also
//!   converts other charsets).
//!
//! Writing (`encode`):
//! - an object with one key is written as that element (`{"user": {...}}` is `<user>…</user>`),
//!   anything else inside a `<doc>` root — also a single key holding an array, which mxj would
//!   write as several root elements, not a well-formed document;
//! - `-name` keys with scalar values become attributes, `#text` the element's text, other keys
//!   child elements in key order, arrays repeated elements, `null`, `""` and `[]` empty elements;
//! - text and attribute values are escaped (`& < > " '`); a key that is not an XML name has its
//!   other characters replaced by `_` (and `_` put in front when it does not start as a name
//!   does), where mxj would write a document no parser accepts.

use crate::decode::DecodeError;
use serde_json::{Map, Value};

/// Deepest element nesting read; deeper documents are refused rather than recursed into.
const MAX_DEPTH: usize = 256;

/// What mxj trims from text: tab, CR, backspace, LF and space.
fn trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, '\t' | '\r' | '\u{8}' | '\n' | ' '))
}

/// Reads an XML document into an object keyed by its root element's name.
pub fn decode(body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::Xml(format!("not UTF-8: {e}")))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| DecodeError::Xml(e.to_string()))?;
    let root = doc.root_element();
    let mut out = Map::new();
    out.insert(root.tag_name().name().to_string(), element(root, 0)?);
    Ok(out)
}

fn element(node: roxmltree::Node<'_, '_>, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Xml(format!(
            "elements nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut map = Map::new();
    for a in node.attributes() {
        map.insert(format!("-{}", a.name()), Value::String(a.value().to_string()));
    }
    let mut text = String::new();
    let mut has_children = false;
    for child in node.children() {
        if child.is_text() {
            text.push_str(child.text().unwrap_or_default());
        } else if child.is_element() {
            has_children = true;
            let v = element(child, depth + 1)?;
            let name = child.tag_name().name();
            match map.get_mut(name) {
                None => {
                    map.insert(name.to_string(), v);
                }
                Some(Value::Array(list)) => list.push(v),
                Some(first) => {
                    let first = first.take();
                    map.insert(name.to_string(), Value::Array(vec![first, v]));
                }
            }
        }
    }
    let text = trim(&text);
    if map.is_empty() && !has_children {
        return Ok(Value::String(text.to_string()));
    }
    if !text.is_empty() {
        map.insert("#text".to_string(), Value::String(text.to_string()));
    }
    Ok(Value::Object(map))
}

/// Writes an object as an XML document.
pub fn encode(data: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    match data.iter().next() {
        Some((k, v)) if data.len() == 1 && !v.is_array() => write(&mut out, k, v),
        _ => write_object(&mut out, "doc", data),
    }
    out
}

fn write(out: &mut String, key: &str, v: &Value) {
    match v {
        Value::Object(m) => write_object(out, key, m),
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                write(out, key, item);
            }
        }
        Value::Array(_) | Value::Null => empty(out, key),
        Value::String(s) if s.is_empty() => empty(out, key),
        Value::String(s) => simple(out, key, s),
        Value::Number(n) => simple(out, key, &n.to_string()),
        Value::Bool(b) => simple(out, key, if *b { "true" } else { "false" }),
    }
}

fn empty(out: &mut String, key: &str) {
    out.push('<');
    name(out, key);
    out.push_str("/>");
}

fn simple(out: &mut String, key: &str, text: &str) {
    out.push('<');
    name(out, key);
    out.push('>');
    escape(out, text);
    out.push_str("</");
    name(out, key);
    out.push('>');
}

fn is_attribute(k: &str) -> bool {
    k.len() > 1 && k.starts_with('-')
}

fn write_object(out: &mut String, key: &str, m: &Map<String, Value>) {
    out.push('<');
    name(out, key);
    // Map keys iterate sorted, so attributes and children come out in key order, as mxj sorts.
    for (k, v) in m.iter().filter(|(k, _)| is_attribute(k)) {
        out.push(' ');
        name(out, &k[1..]);
        out.push_str("=\"");
        match v {
            Value::String(s) => escape(out, s),
            Value::Null => {}
            other => escape(out, &other.to_string()),
        }
        out.push('"');
    }
    let text = m.get("#text");
    let mut children = m.iter().filter(|(k, _)| !is_attribute(k) && *k != "#text").peekable();
    if text.is_none() && children.peek().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    match text {
        Some(Value::String(s)) => escape(out, s),
        Some(Value::Null) | None => {}
        Some(other) => escape(out, &other.to_string()),
    }
    for (k, v) in children {
        write(out, k, v);
    }
    out.push_str("</");
    name(out, key);
    out.push('>');
}

/// Writes `key` as an XML name: characters a name cannot have become `_`, and a `_` goes in
/// front of a name that does not start with a letter or `_`.
fn name(out: &mut String, key: &str) {
    let ok_start = key.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_');
    if !ok_start {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
            c
        } else {
            '_'
        });
    }
}

fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow at all.
            '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(xml: &str) -> Value {
        Value::Object(decode(xml.as_bytes()).unwrap())
    }

    fn write_json(v: Value) -> String {
        encode(v.as_object().unwrap())
    }

    #[test]
    fn reads_as_mxj_does() {
        assert_eq!(
            read(
                r#"<?xml version="1.0" encoding="UTF-8"?>
                <!-- a comment -->
                <user id="7" xmlns:x="urn:x">
                  <name>Alice</name>
                  <age>30</age>
                  <tag>a</tag><tag>b</tag><tag/>
                  <x:note lang="en">  hello  </x:note>
                  <empty></empty>
                  <![CDATA[ raw <text> ]]>
                </user>"#
            ),
            json!({"user": {
                "-id": "7",
                "name": "Alice",
                "age": "30",
                "tag": ["a", "b", ""],
                "note": {"-lang": "en", "#text": "hello"},
                "empty": "",
                "#text": "raw <text>"
            }})
        );
        assert_eq!(read("<a>&amp;&lt;</a>"), json!({"a": "&<"}));
        assert_eq!(read("\u{feff}<a/>"), json!({"a": ""}));
    }

    #[test]
    fn refuses_what_is_not_xml() {
        for bad in [
            "",
            "{\"json\": true}",
            "<!DOCTYPE html><html><head><meta charset=utf-8></head><body><br></body></html>",
            "<a><b></a>",
            "<a/><b/>",
        ] {
            let e = decode(bad.as_bytes()).unwrap_err();
            assert!(e.to_string().starts_with("invalid XML"), "{bad}: {e}");
        }
        assert!(decode(b"<a>\xff</a>").unwrap_err().to_string().contains("UTF-8"));
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert!(decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn writes_as_mxj_does() {
        assert_eq!(
            write_json(json!({"user": {"name": "Alice", "age": 30}})),
            "<user><age>30</age><name>Alice</name></user>"
        );
        assert_eq!(
            write_json(
                json!({"a": 1, "b": [true, null, ""], "c": {"-id": 5, "#text": "t<"}, "d": {"-x": "y"}, "e": []})
            ),
            r#"<doc><a>1</a><b>true</b><b/><b/><c id="5">t&lt;</c><d x="y"/><e/></doc>"#
        );
        assert_eq!(write_json(json!({})), "<doc/>");
        assert_eq!(
            write_json(json!({"collection": [{"a": 1}, {"a": 2}]})),
            "<doc><collection><a>1</a></collection><collection><a>2</a></collection></doc>"
        );
        assert_eq!(
            write_json(json!({"1st key": "a'b\"c&\u{1}"})),
            "<_1st_key>a&apos;b&quot;c&amp;\u{fffd}</_1st_key>"
        );
    }

    #[test]
    fn round_trip() {
        let doc = json!({"order": {"-id": "1", "item": ["a", "b"], "note": {"-lang": "en", "#text": "x"}}});
        assert_eq!(read(&write_json(doc.clone())), doc);
    }
}
