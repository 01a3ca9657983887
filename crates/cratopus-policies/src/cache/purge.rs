//! What an admin purge removes, as a value: applied to this node's memory store, and sent as
//! it is to the other nodes (see [`super::second`]), which apply it to theirs.

use super::store::CacheStore;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every variant of one path of an organization's host (queries, `Vary`, consumers).
    Url { org: String, host: String, path: String },
    /// Every path starting with `prefix`, of one organization or all.
    Prefix { org: Option<String>, prefix: String },
    /// Every answer tagged `tag` (`Surrogate-Key`, `Cache-Tag`), of one organization or all.
    Tag { org: Option<String>, tag: String },
}

impl Purge {
    /// Removes the matching entries of `store`; how many keys went.
    pub fn apply(&self, store: &CacheStore) -> u64 {
        match self {
            Purge::Url { org, host, path } => {
                store.invalidate_path(super::path_id(org, host, path));
                store.purge(|k, _| k.org == org && k.host == host && k.path == path)
            }
            Purge::Prefix { org, prefix } => {
                store.purge(|k, _| org.as_deref().is_none_or(|o| o == k.org) && k.path.starts_with(prefix.as_str()))
            }
            Purge::Tag { org, tag } => store.purge(|k, e| {
                org.as_deref().is_none_or(|o| o == k.org)
                    && e.variants.iter().any(|v| v.tags.iter().any(|t| **t == **tag))
            }),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Purge::Url { org, host, path } => json!(["url", org, host, path]),
            Purge::Prefix { org, prefix } => json!(["prefix", org, prefix]),
            Purge::Tag { org, tag } => json!(["tag", org, tag]),
        }
    }

    pub fn from_json(v: &Value) -> Option<Purge> {
        let a = v.as_array()?;
        let s = |i: usize| a.get(i).and_then(Value::as_str).map(str::to_string);
        match a.first()?.as_str()? {
            "url" => Some(Purge::Url {
                org: s(1)?,
                host: s(2)?,
                path: s(3)?,
            }),
            "prefix" => Some(Purge::Prefix {
                org: s(1),
                prefix: s(2)?,
            }),
            "tag" => Some(Purge::Tag { org: s(1), tag: s(2)? }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        for p in [
            Purge::Url {
                org: "o".into(),
                host: "h".into(),
                path: "/p\n".into(),
            },
            Purge::Prefix {
                org: None,
                prefix: "/a/".into(),
            },
            Purge::Tag {
                org: Some("o".into()),
                tag: "t".into(),
            },
        ] {
            assert_eq!(Purge::from_json(&p.to_json()), Some(p));
        }
        assert_eq!(Purge::from_json(&json!(["nope"])), None);
        assert_eq!(Purge::from_json(&json!({"url": 1})), None);
    }
}
