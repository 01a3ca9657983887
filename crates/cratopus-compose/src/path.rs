//! Dotted field paths (`data.user.name`, `numerals.*.numeral`, `numerals.0`), parsed once at
//! config load. A segment is a key, which also addresses an array element when it is a plain
//! decimal number (`0`, `12`: the form KrakenD's flatmap gives array members), or, where the
//! caller allows it, the wildcard `*`, which matches every member of an array or an object.

use serde_json::{Map, Value};
use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object key; `index` is set when the key is also an array index (`"0"`, `"12"`).
    Key { name: Box<str>, index: Option<usize> },
    /// `*`: every member of an array or an object.
    Any,
}

impl Segment {
    fn new(text: &str) -> Self {
        if text == "*" {
            return Segment::Any;
        }
        // Only the canonical form is an index, as the labels KrakenD gives array members are
        // (`strconv.Itoa`): `01` or `+1` stay keys.
        let canonical =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
        Segment::Key {
            name: text.into(),
            index: if canonical { text.parse().ok() } else { None },
        }
    }

    /// The key's text (`*` for the wildcard).
    pub fn label(&self) -> &str {
        match self {
            Segment::Key { name, .. } => name,
            Segment::Any => "*",
        }
    }
}

/// A parsed dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: Box<str>,
    segments: Box<[Segment]>,
}

/// Why a dotted path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a field path cannot be empty")]
    Empty,
    #[error("`{0}` has an empty field name (two dots in a row, or a dot at an end)")]
    EmptySegment(String),
    #[error("`{0}`: the wildcard `*` only works in flatmap_filter")]
    Wildcard(String),
}

impl FieldPath {
    /// Parses `text`; `wildcards` says whether `*` segments are allowed.
    pub fn parse(text: &str, wildcards: bool) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            if part.is_empty() {
                return Err(PathError::EmptySegment(text.to_string()));
            }
            let s = Segment::new(part);
            if s == Segment::Any && !wildcards {
                return Err(PathError::Wildcard(text.to_string()));
            }
            segments.push(s);
        }
        Ok(FieldPath {
            text: text.into(),
            segments: segments.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::Any)
    }

    /// The value at this (wildcard-free) path under `map`: keys step into objects, indexes into
    /// arrays.
    pub fn get_in<'a>(&self, map: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.segments.split_first()?;
        let mut at = map.get(first.label())?;
        for s in rest {
            at = step(at, s)?;
        }
        Some(at)
    }

    /// Removes and returns the value at this (wildcard-free) path under `map`; only object
    /// members are removed (an array keeps its length).
    pub fn take_in(&self, map: &mut Map<String, Value>) -> Option<Value> {
        let (last, parents) = self.segments.split_last()?;
        let mut at = map;
        for s in parents {
            at = at.get_mut(s.label())?.as_object_mut()?;
        }
        at.remove(last.label())
    }

    /// Puts `value` at this (wildcard-free) path under `map`, creating the objects on the way and
    /// replacing anything that is not an object there.
    pub fn put_in(&self, map: &mut Map<String, Value>, value: Value) {
        let Some((last, parents)) = self.segments.split_last() else {
            return;
        };
        let mut at = map;
        for s in parents {
            let slot = at
                .entry(s.label().to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(next) = slot else { return };
            at = next;
        }
        at.insert(last.label().to_string(), value);
    }
}

/// One step down from `v` along `s` (no wildcard).
fn step<'a>(v: &'a Value, s: &Segment) -> Option<&'a Value> {
    match (v, s) {
        (Value::Object(m), Segment::Key { name, .. }) => m.get(&**name),
        (Value::Array(a), Segment::Key { index: Some(i), .. }) => a.get(*i),
        _ => None,
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parse_table() {
        for (text, wild, ok) in [
            ("a", false, true),
            ("a.b.c", false, true),
            ("numerals.0", false, true),
            ("numerals.*.numeral", true, true),
            ("numerals.*.numeral", false, false),
            ("", false, false),
            ("a..b", false, false),
            (".a", false, false),
            ("a.", false, false),
        ] {
            assert_eq!(FieldPath::parse(text, wild).is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn indexes_are_canonical_numbers() {
        let p = FieldPath::parse("a.0.01.12.+1.*", true).unwrap();
        let idx: Vec<_> = p
            .segments()
            .iter()
            .map(|s| match s {
                Segment::Key { index, .. } => *index,
                Segment::Any => None,
            })
            .collect();
        assert_eq!(idx, [None, Some(0), None, Some(12), None, None]);
    }

    #[test]
    fn get_take_put() {
        let mut m = map(json!({"a": {"b": [10, {"c": 3}]}, "x": 1}));
        let p = FieldPath::parse("a.b.1.c", false).unwrap();
        assert_eq!(p.get_in(&m), Some(&json!(3)));
        assert_eq!(FieldPath::parse("a.b.0", false).unwrap().get_in(&m), Some(&json!(10)));
        assert_eq!(FieldPath::parse("a.z", false).unwrap().get_in(&m), None);
        assert_eq!(FieldPath::parse("x.y", false).unwrap().get_in(&m), None);
        let t = FieldPath::parse("a.b", false).unwrap().take_in(&mut m);
        assert_eq!(t, Some(json!([10, {"c": 3}])));
        FieldPath::parse("x.y.z", false).unwrap().put_in(&mut m, json!(true));
        assert_eq!(Value::Object(m), json!({"a": {}, "x": {"y": {"z": true}}}));
    }

    proptest! {
        /// Whatever is put at a path is found there, and taken from there.
        #[test]
        fn put_then_get(keys in proptest::collection::vec("[a-z]{1,3}", 1..5), v in any::<i64>()) {
            let text = keys.join(".");
            let p = FieldPath::parse(&text, false).unwrap();
            let mut m = map(json!({"a": {"b": 1}, "c": [1, 2]}));
            p.put_in(&mut m, json!(v));
            prop_assert_eq!(p.get_in(&m), Some(&json!(v)));
            prop_assert_eq!(p.take_in(&mut m), Some(json!(v)));
            prop_assert_eq!(p.get_in(&m), None);
        }

        /// Parsing keeps the text and splits it at every dot.
        #[test]
        fn parse_round_trip(keys in proptest::collection::vec("[a-z0-9_*-]{1,4}", 1..6)) {
            let text = keys.join(".");
            let p = FieldPath::parse(&text, true).unwrap();
            prop_assert_eq!(p.as_str(), text.as_str());
            let labels: Vec<&str> = p.segments().iter().map(Segment::label).collect();
            prop_assert_eq!(labels, keys.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
