//! Giving every config problem a place in the file as written.
//!
//! A problem reaches the report with one of three kinds of position: the parser's (serde, the
//! schema check, [`Spanned`](serde_saphyr::Spanned) values), a key path (a JSON Pointer such as
//! `/upstreams/api/targets/1/weight`, for checks of values that keep no position), or none (an
//! error from compiling, found by the runtime crates). [`Sources::place`] turns a key path into
//! the line and column of the deepest node of it that the file has (a default that is not
//! written is reported at its section), guesses the key path of a message without one from its
//! wording (`upstream `api`: …`), and takes every position from the substituted text back to the
//! text as written ([`PosMap`]), so that the caret is under what the operator typed.

use crate::error::ConfigError;
use crate::interpolate::PosMap;
use crate::shape::{Index, escape};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The text of every YAML file of a config (after `${VAR}` substitution) with its map back to
/// the text as written.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: HashMap<PathBuf, Source>,
}

#[derive(Debug, Clone)]
struct Source {
    text: String,
    map: PosMap,
    /// Key paths of the organizations written in this file: `""` for an organization file,
    /// `/organizations/0`… for inline ones.
    orgs: Vec<String>,
}

impl Sources {
    pub(crate) fn add(&mut self, file: &Path, text: String, map: PosMap) {
        self.files.insert(
            file.to_path_buf(),
            Source {
                text,
                map,
                orgs: Vec::new(),
            },
        );
    }

    /// Records that an organization is written at `pointer` in `file`.
    /// Takes in the files of `other` (read elsewhere, e.g. on another thread).
    pub(crate) fn merge(&mut self, other: Sources) {
        self.files.extend(other.files);
    }

    pub(crate) fn add_org(&mut self, file: &Path, pointer: &str) {
        if let Some(s) = self.files.get_mut(file) {
            s.orgs.push(pointer.to_string());
        }
    }

    /// The substituted text of `file`.
    pub(crate) fn text(&self, file: &Path) -> Option<&str> {
        self.files.get(file).map(|s| s.text.as_str())
    }

    /// The parsed tree of `file`, with the place of every node.
    pub(crate) fn index(&self, file: &Path) -> Option<Index> {
        self.files.get(file).and_then(|s| Index::build(&s.text))
    }

    /// Gives each of `errors` a line and column in the file as written. Call it once per error:
    /// the positions it starts from are those of the substituted text.
    pub fn place(&self, errors: &mut [ConfigError]) {
        let mut indexes: HashMap<PathBuf, Option<Index>> = HashMap::new();
        for e in errors.iter_mut() {
            let Some(src) = self.files.get(&e.file) else {
                continue;
            };
            if e.line.is_none() {
                let index = indexes.entry(e.file.clone()).or_insert_with(|| Index::build(&src.text));
                let (line, column) = match index {
                    Some(index) => {
                        let pointer = e
                            .pointer
                            .clone()
                            .or_else(|| guess(&e.message, &src.orgs, index))
                            .unwrap_or_default();
                        index.nearest(&pointer)
                    }
                    None => (1, 1),
                };
                e.line = Some(line);
                e.column = Some(column);
            }
            if let Some(line) = e.line {
                let (line, column) = src.map.written(line, e.column.unwrap_or(1));
                e.line = Some(line);
                e.column = Some(column);
            }
        }
    }
}

/// One step of a guessed key path.
enum Step {
    Key(String),
    /// The item of list `.0` whose key `.1` is `.2`: the route of a path, the consumer of an id.
    Item(&'static str, &'static str, String),
    /// The organization of this name.
    Org(String),
}

/// The key path a message names by its wording: `upstream `api`: tls: …` is
/// `…/upstreams/api/tls`, `route `/x`: ip: …` the route with path `/x`, `state.redis: …`
/// `/state/redis`. The organizations of the file are tried in turn; the deepest match wins.
fn guess(message: &str, orgs: &[String], index: &Index) -> Option<String> {
    let mut steps = Vec::new();
    if message.starts_with("cannot open traffic log") {
        steps.push(Step::Key("traffic_log".into()));
    }
    for part in message.split(": ") {
        let part = part.trim();
        if let Some((kind, name)) = kind_and_name(part) {
            match kind {
                "upstream" => steps.extend([Step::Key("upstreams".into()), Step::Key(name.into())]),
                "policy" => steps.extend([Step::Key("policies".into()), Step::Key(name.into())]),
                "route" => steps.push(Step::Item("routes", "path", name.into())),
                "consumer" => steps.push(Step::Item("consumers", "id", name.into())),
                "organization" => steps.push(Step::Org(name.into())),
                _ => break,
            }
        } else if !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            steps.extend(part.split('.').map(|k| Step::Key(k.to_string())));
        } else {
            break;
        }
    }
    if steps.is_empty() {
        return None;
    }
    let mut best: Option<(usize, String)> = None;
    for base in orgs.iter().map(String::as_str).chain([""]) {
        let (depth, pointer) = walk(index, base, &steps);
        if best.as_ref().is_none_or(|(d, _)| depth > *d) {
            best = Some((depth, pointer));
        }
    }
    best.filter(|(d, _)| *d > 0).map(|(_, p)| p)
}

/// `upstream `api`` → ("upstream", "api").
fn kind_and_name(part: &str) -> Option<(&str, &str)> {
    let (kind, rest) = part.split_once(" `")?;
    let name = rest.strip_suffix('`')?;
    (!kind.contains(' ') && !name.contains('`')).then_some((kind, name))
}

/// Follows `steps` from `base` as far as the file has them: (steps matched, key path).
fn walk(index: &Index, base: &str, steps: &[Step]) -> (usize, String) {
    let mut pointer = base.to_string();
    if index.value(&pointer).is_none() {
        return (0, String::new());
    }
    let mut depth = 0;
    for step in steps {
        let next = match step {
            Step::Key(k) => Some(format!("{pointer}/{}", escape(k))),
            Step::Item(list, key, want) => {
                position(index.value(&format!("{pointer}/{list}")), key, want).map(|i| format!("{pointer}/{list}/{i}"))
            }
            Step::Org(name) => {
                // Inline organizations are under `/organizations`; a file's own is its root.
                let named = |p: &str| index.value(p).and_then(|v| v.get("name")).and_then(Value::as_str) == Some(name);
                if named(&pointer) {
                    Some(pointer.clone())
                } else if named("/organizations") {
                    Some("/organizations".to_string())
                } else {
                    position(index.value("/organizations"), "name", name).map(|i| format!("/organizations/{i}"))
                }
            }
        };
        match next.filter(|p| index.value(p).is_some()) {
            Some(p) => {
                pointer = p;
                depth += 1;
            }
            None => break,
        }
    }
    (depth, pointer)
}

/// The index of the item of list `v` whose `key` is `want`.
fn position(v: Option<&Value>, key: &str, want: &str) -> Option<usize> {
    v?.as_array()?
        .iter()
        .position(|item| item.get(key).and_then(Value::as_str) == Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
organizations:
  - name: a
    upstreams:
      api:
        targets: [\"http://x:1\"]
        tls: {ca: ca.pem}
    routes:
      - path: /x
        upstream: api
      - path: /y
        upstream: api
  - name: b
";

    fn sources() -> Sources {
        let mut s = Sources::default();
        let f = Path::new("gw.yaml");
        s.add(f, TEXT.to_string(), PosMap::default());
        s.add_org(f, "/organizations/0");
        s.add_org(f, "/organizations/1");
        s
    }

    fn placed(e: ConfigError) -> (Option<u32>, Option<u32>) {
        let mut errors = [e];
        sources().place(&mut errors);
        (errors[0].line, errors[0].column)
    }

    #[test]
    fn a_key_path_is_placed_at_its_deepest_written_node() {
        let f = Path::new("gw.yaml");
        // A scalar: its value; a section: its key; a default (not written): its section.
        let at = |p: &str| placed(ConfigError::at_key(f, p, "x"));
        assert_eq!(at("/organizations/0/upstreams/api/tls/ca"), (Some(6), Some(19)));
        assert_eq!(at("/organizations/0/upstreams/api"), (Some(4), Some(7)));
        assert_eq!(
            at("/organizations/0/upstreams/api/max_idle_per_target"),
            (Some(4), Some(7))
        );
        assert_eq!(at("/nothing/here"), (Some(1), Some(1)));
    }

    #[test]
    fn a_message_without_a_place_is_placed_by_its_wording() {
        let f = Path::new("gw.yaml");
        let at = |m: &str| placed(ConfigError::new(f, m));
        assert_eq!(at("upstream `api`: tls.ca: cannot read `ca.pem`"), (Some(6), Some(19)));
        assert_eq!(at("route `/y`: validate: no such file"), (Some(10), Some(9)));
        assert_eq!(at("organization `b`: something"), (Some(12), Some(5)));
        assert_eq!(at("something else entirely"), (Some(1), Some(1)));
    }
}
