//! Shaping one backend's decoded answer, compiled once from its config and run per answer, in
//! KrakenD's order: `target` (keep a sub-object), then `allow` or `deny` (filter fields), then
//! `mapping` (rename), then `group` (wrap under a key). With `flatmap_filter`: `target`, the
//! flatmap operations, `group` — `allow`, `deny` and `mapping` are not run (KrakenD ignores
//! them; the config check refuses them).
//!
//! Semantics follow KrakenD's (lura's `proxy/formatter.go`) where it defines them:
//! - `target`: a missing path, or one that ends on something other than an object, gives `{}`.
//! - `allow`: keeps only the listed paths; a parent object left empty is removed, a path through
//!   a non-object (an array, a scalar) keeps nothing, and an answer with nothing allowed is `{}`.
//! - `deny`: removes the listed paths; a path through a non-object removes nothing.
//! - allow and deny together: allow is used (the config check refuses it).
//! - `mapping`: renames the fields present and ignores the missing ones.
//!
//! Where this goes further than KrakenD: `target` also steps into an array by index
//! (`items.0`); `mapping` takes dotted paths on both sides (KrakenD renames only top-level
//! keys and cuts a dotted new name at its first dot) — a top-level key that itself contains
//! dots is still renamed as it is; all renames of one mapping take their values first and
//! place them after, so `{a: b, b: a}` swaps (KrakenD's result depends on map order).

use crate::config::ComposeBackendConfig;
use crate::flatmap::Flatmap;
use crate::path::{FieldPath, Segment};
use serde_json::{Map, Value};

/// One backend's compiled shaping.
#[derive(Debug, Clone, Default)]
pub struct Shaper {
    target: Option<FieldPath>,
    filter: Filter,
    mapping: Box<[(FieldPath, FieldPath)]>,
    group: Option<Box<str>>,
    flatmap: Option<Flatmap>,
}

#[derive(Debug, Clone, Default)]
enum Filter {
    #[default]
    None,
    Allow(FieldTree),
    Deny(FieldTree),
}

/// A set of dotted paths as a tree: a leaf ends a path (and wins over longer paths through it).
#[derive(Debug, Clone, Default)]
struct FieldTree(Vec<(Box<str>, Tree)>);

#[derive(Debug, Clone)]
enum Tree {
    Leaf,
    Branch(FieldTree),
}

impl FieldTree {
    fn build(paths: &[FieldPath]) -> Self {
        let mut root = FieldTree::default();
        for p in paths {
            root.insert(p.segments());
        }
        root
    }

    fn insert(&mut self, segs: &[Segment]) {
        let Some((first, rest)) = segs.split_first() else {
            return;
        };
        let key = first.label();
        let i = match self.0.iter().position(|(k, _)| &**k == key) {
            Some(i) => i,
            None => {
                let node = if rest.is_empty() {
                    Tree::Leaf
                } else {
                    Tree::Branch(FieldTree::default())
                };
                self.0.push((key.into(), node));
                self.0.len() - 1
            }
        };
        let slot = &mut self.0[i].1;
        match (slot, rest.is_empty()) {
            (slot, true) => *slot = Tree::Leaf,
            (Tree::Leaf, false) => {}
            (Tree::Branch(t), false) => t.insert(rest),
        }
    }

    /// The members of `m` this tree allows, moved into a new map.
    fn allow(&self, mut m: Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, node) in &self.0 {
            let Some(v) = m.remove(&**k) else { continue };
            match (node, v) {
                (Tree::Leaf, v) => {
                    out.insert(k.to_string(), v);
                }
                (Tree::Branch(t), Value::Object(inner)) => {
                    let kept = t.allow(inner);
                    if !kept.is_empty() {
                        out.insert(k.to_string(), Value::Object(kept));
                    }
                }
                (Tree::Branch(_), _) => {}
            }
        }
        out
    }

    fn deny(&self, m: &mut Map<String, Value>) {
        for (k, node) in &self.0 {
            match node {
                Tree::Leaf => {
                    m.remove(&**k);
                }
                Tree::Branch(t) => {
                    if let Some(Value::Object(inner)) = m.get_mut(&**k) {
                        t.deny(inner);
                    }
                }
            }
        }
    }
}

/// Why a backend's shaping could not be compiled (the config check reports the same).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

impl Shaper {
    /// Compiles a backend's `target`, `allow`/`deny`, `mapping`, `group` and `flatmap_filter`.
    pub fn compile(b: &ComposeBackendConfig) -> Result<Self, ShapeError> {
        let path = |s: &String, what: &str| FieldPath::parse(s, false).map_err(|e| ShapeError(format!("{what}: {e}")));
        let list = |l: &[String], what: &str| l.iter().map(|s| path(s, what)).collect::<Result<Vec<_>, _>>();
        let target = b.target.as_ref().map(|t| path(t, "target")).transpose()?;
        let flatmap = if b.flatmap_filter.is_empty() {
            None
        } else {
            Some(Flatmap::compile(&b.flatmap_filter).map_err(|e| ShapeError(format!("flatmap_filter: {e}")))?)
        };
        let filter = if !b.allow.is_empty() {
            Filter::Allow(FieldTree::build(&list(&b.allow, "allow")?))
        } else if !b.deny.is_empty() {
            Filter::Deny(FieldTree::build(&list(&b.deny, "deny")?))
        } else {
            Filter::None
        };
        let mapping = b
            .mapping
            .iter()
            .filter(|(from, to)| from != to)
            .map(|(from, to)| Ok((path(from, "mapping")?, path(to, "mapping")?)))
            .collect::<Result<Vec<_>, ShapeError>>()?;
        Ok(Shaper {
            target,
            filter,
            mapping: mapping.into(),
            group: b.group.as_deref().map(Into::into),
            flatmap,
        })
    }

    /// Whether shaping leaves every answer as it is (the engine may skip it).
    pub fn is_identity(&self) -> bool {
        self.target.is_none()
            && matches!(self.filter, Filter::None)
            && self.mapping.is_empty()
            && self.group.is_none()
            && self.flatmap.as_ref().is_none_or(Flatmap::is_empty)
    }

    /// The shaped answer.
    pub fn apply(&self, mut data: Map<String, Value>) -> Map<String, Value> {
        if let Some(t) = &self.target {
            data = extract_target(t, data);
        }
        if let Some(f) = &self.flatmap {
            data = f.apply(data);
        } else {
            if !data.is_empty() {
                match &self.filter {
                    Filter::None => {}
                    Filter::Allow(tree) => data = tree.allow(data),
                    Filter::Deny(tree) => tree.deny(&mut data),
                }
            }
            if !data.is_empty() && !self.mapping.is_empty() {
                self.rename(&mut data);
            }
        }
        match &self.group {
            Some(g) => {
                let mut wrapped = Map::new();
                wrapped.insert(g.to_string(), Value::Object(data));
                wrapped
            }
            None => data,
        }
    }

    fn rename(&self, data: &mut Map<String, Value>) {
        let mut moved = Vec::with_capacity(self.mapping.len());
        for (from, to) in self.mapping.iter() {
            // A top-level key spelt with dots is renamed as it is (KrakenD's reading).
            let taken = match from.segments().len() {
                1 => data.remove(from.as_str()),
                _ => data.remove(from.as_str()).or_else(|| from.take_in(data)),
            };
            if let Some(v) = taken {
                moved.push((to, v));
            }
        }
        for (to, v) in moved {
            to.put_in(data, v);
        }
    }
}

/// The object under `target`, or `{}`.
fn extract_target(target: &FieldPath, data: Map<String, Value>) -> Map<String, Value> {
    let mut at = Value::Object(data);
    for s in target.segments() {
        at = match (at, s) {
            (Value::Object(mut m), Segment::Key { name, .. }) => match m.remove(&**name) {
                Some(v) => v,
                None => return Map::new(),
            },
            (Value::Array(mut a), Segment::Key { index: Some(i), .. }) if *i < a.len() => a.swap_remove(*i),
            _ => return Map::new(),
        };
    }
    match at {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shaper(cfg: Value) -> Shaper {
        let mut cfg = cfg;
        cfg["url_pattern"] = json!("/");
        let b: ComposeBackendConfig = serde_json::from_value(cfg).unwrap();
        Shaper::compile(&b).unwrap()
    }

    fn shape(cfg: Value, input: Value) -> Value {
        Value::Object(shaper(cfg).apply(input.as_object().cloned().unwrap()))
    }

    #[test]
    fn target() {
        let doc = json!({"apiVersion": "2.0", "data": {"totalItems": 800, "items": [], "user": {"id": 1}}});
        assert_eq!(shape(json!({"target": "data.user"}), doc.clone()), json!({"id": 1}));
        // Missing, or not an object: `{}`.
        assert_eq!(shape(json!({"target": "data.nope"}), doc.clone()), json!({}));
        assert_eq!(shape(json!({"target": "data.totalItems"}), doc.clone()), json!({}));
        assert_eq!(shape(json!({"target": "data.items"}), doc.clone()), json!({}));
        assert_eq!(shape(json!({"target": "apiVersion.x"}), doc.clone()), json!({}));
        // Beyond KrakenD: an index steps into an array.
        assert_eq!(
            shape(json!({"target": "l.1"}), json!({"l": [{"a": 1}, {"b": 2}]})),
            json!({"b": 2})
        );
        assert_eq!(shape(json!({"target": "l.5"}), json!({"l": [{"a": 1}]})), json!({}));
        // Then the other steps on the target, then the group.
        assert_eq!(
            shape(json!({"target": "data", "allow": ["user.id"], "group": "g"}), doc),
            json!({"g": {"user": {"id": 1}}})
        );
    }

    #[test]
    fn allow() {
        let doc = json!({"a": {"b": {"c": 1, "d": 2}, "e": []}, "f": 3, "l": [{"x": 1}], "s": "t"});
        // A missing field is no error; what is left empty goes.
        assert_eq!(
            shape(json!({"allow": ["a.b.c", "nope", "a.zz.y"]}), doc.clone()),
            json!({"a": {"b": {"c": 1}}})
        );
        assert_eq!(shape(json!({"allow": ["nope"]}), doc.clone()), json!({}));
        // Arrays and scalars are not entered.
        assert_eq!(
            shape(json!({"allow": ["l.x", "s.t", "f"]}), doc.clone()),
            json!({"f": 3})
        );
        // A whole object, and a shorter path wins over a longer one through it.
        assert_eq!(
            shape(json!({"allow": ["a.b.c", "a.b"]}), doc.clone()),
            json!({"a": {"b": {"c": 1, "d": 2}}})
        );
        assert_eq!(
            shape(json!({"allow": ["a.b", "a.b.c"]}), doc.clone()),
            json!({"a": {"b": {"c": 1, "d": 2}}})
        );
        // An empty object allowed as a leaf stays; through a branch it goes.
        assert_eq!(shape(json!({"allow": ["x"]}), json!({"x": {}})), json!({"x": {}}));
        assert_eq!(shape(json!({"allow": ["x.y"]}), json!({"x": {}})), json!({}));
        // allow wins over deny (the config check refuses both).
        assert_eq!(shape(json!({"allow": ["f"], "deny": ["f"]}), doc), json!({"f": 3}));
    }

    #[test]
    fn deny() {
        let doc = json!({"a": {"b": {"c": 1, "d": 2}}, "f": 3, "l": [{"x": 1}]});
        assert_eq!(
            shape(json!({"deny": ["a.b.c", "nope", "f.g"]}), doc.clone()),
            json!({"a": {"b": {"d": 2}}, "f": 3, "l": [{"x": 1}]})
        );
        assert_eq!(shape(json!({"deny": ["l.x", "l.0"]}), doc.clone()), doc);
        assert_eq!(
            shape(json!({"deny": ["a.b.c", "a"]}), doc.clone()),
            json!({"f": 3, "l": [{"x": 1}]})
        );
        assert_eq!(
            shape(json!({"deny": ["a", "a.b.c"]}), doc),
            json!({"f": 3, "l": [{"x": 1}]})
        );
    }

    #[test]
    fn mapping() {
        let doc = json!({"email": "e", "a": {"b": 1}, "x.y": 2, "n": 0});
        assert_eq!(
            shape(
                json!({"mapping": {"email": "personal_email", "missing": "z", "n": "n"}}),
                doc.clone()
            ),
            json!({"personal_email": "e", "a": {"b": 1}, "x.y": 2, "n": 0})
        );
        // Nested both ways, a literal dotted key, and a swap.
        assert_eq!(
            shape(
                json!({"mapping": {"a.b": "top", "x.y": "xy", "email": "contact.email"}}),
                doc.clone()
            ),
            json!({"top": 1, "a": {}, "xy": 2, "contact": {"email": "e"}, "n": 0})
        );
        assert_eq!(
            shape(json!({"mapping": {"a": "n", "n": "a"}}), doc),
            json!({"n": {"b": 1}, "a": 0, "email": "e", "x.y": 2})
        );
    }

    #[test]
    fn group_wraps_even_an_empty_answer() {
        assert_eq!(shape(json!({"group": "g"}), json!({})), json!({"g": {}}));
        assert_eq!(
            shape(json!({"group": "g", "target": "nope"}), json!({"a": 1})),
            json!({"g": {}})
        );
    }

    #[test]
    fn flatmap_replaces_allow_deny_and_mapping() {
        let s = shaper(json!({
            "target": "data",
            "group": "g",
            "flatmap_filter": [{"type": "del", "args": ["b"]}]
        }));
        let out = s.apply(json!({"data": {"a": 1, "b": 2}, "z": 0}).as_object().cloned().unwrap());
        assert_eq!(Value::Object(out), json!({"g": {"a": 1}}));
    }

    #[test]
    fn identity() {
        assert!(shaper(json!({})).is_identity());
        assert!(shaper(json!({"mapping": {"a": "a"}})).is_identity());
        assert!(!shaper(json!({"group": "g"})).is_identity());
    }
}
