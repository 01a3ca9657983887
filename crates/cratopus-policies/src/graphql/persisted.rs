//! Persisted queries: the allow-list of operation hashes, and the store of automatic persisted
//! queries (APQ).
//!
//! Both key a query by the SHA-256 of its exact text, as Apollo's clients compute it. The APQ
//! store is a bounded in-memory cache (moka: concurrent, no lock on the request path, least
//! recently used entries evicted by total query bytes). It lives with the route's compiled
//! chain, so a reload starts it empty: clients then get `PERSISTED_QUERY_NOT_FOUND` once per
//! query and send it again, which is what the protocol is for.

use cratopus_config::graphql::{PersistedQueriesConfig, is_sha256_hex};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

pub type Hash = [u8; 32];

pub fn sha256(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

/// A hex SHA-256 (either case) as bytes; `None` if it is not one.
pub fn parse_hex(s: &str) -> Option<Hash> {
    if !is_sha256_hex(s) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The hashes of the operations a route allows.
#[derive(Debug, Default)]
pub struct AllowList(HashSet<Hash>);

impl AllowList {
    /// From the inline hashes and the file (relative to `base_dir`).
    pub fn compile(cfg: &PersistedQueriesConfig, base_dir: &Path) -> Result<AllowList, String> {
        let mut set = HashSet::new();
        for h in &cfg.allow {
            set.insert(parse_hex(h).ok_or_else(|| format!("allow: `{h}` is not a SHA-256 in hex"))?);
        }
        if let Some(f) = &cfg.allow_file {
            let path = base_dir.join(f);
            let text = cratopus_config::files::read_text_limited(&path)?;
            read_list(&text, &mut set).map_err(|e| format!("allow_file `{}`: {e}", path.display()))?;
        }
        Ok(AllowList(set))
    }

    pub fn allows(&self, h: &Hash) -> bool {
        self.0.contains(h)
    }
}

/// An allow-list file: an Apollo persisted-query manifest (JSON whose `operations` each have a
/// `body`), or one hex hash a line with `#` comments.
fn read_list(text: &str, set: &mut HashSet<Hash>) -> Result<(), String> {
    if text.trim_start().starts_with('{') {
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let ops = doc["operations"]
            .as_array()
            .ok_or("a JSON manifest needs an `operations` list")?;
        for (i, op) in ops.iter().enumerate() {
            let body = op["body"]
                .as_str()
                .ok_or_else(|| format!("operations[{i}] has no `body` string"))?;
            set.insert(sha256(body));
        }
        return Ok(());
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        set.insert(parse_hex(line).ok_or_else(|| format!("line {}: `{line}` is not a SHA-256 in hex", n + 1))?);
    }
    Ok(())
}

/// The APQ store: hash → query text.
#[derive(Debug)]
pub struct ApqStore(moka::sync::Cache<Hash, Arc<str>>);

impl ApqStore {
    pub fn new(max_bytes: u64) -> ApqStore {
        ApqStore(
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &Hash, v: &Arc<str>| u32::try_from(v.len() + 32).unwrap_or(u32::MAX))
                .build(),
        )
    }

    pub fn get(&self, h: &Hash) -> Option<Arc<str>> {
        self.0.get(h)
    }

    pub fn insert(&self, h: Hash, query: &str) {
        if !self.0.contains_key(&h) {
            self.0.insert(h, Arc::from(query));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = sha256("{ a }");
        let hex: String = h.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_hex(&hex), Some(h));
        assert_eq!(parse_hex(&hex[1..]), None);
    }

    #[test]
    fn lists_and_manifests() {
        let mut set = HashSet::new();
        let hex: String = sha256("{ a }").iter().map(|b| format!("{b:02x}")).collect();
        read_list(&format!("# allowed\n{hex}  # the a query\n\n"), &mut set).unwrap();
        assert!(set.contains(&sha256("{ a }")));
        let mut set = HashSet::new();
        read_list(
            r#"{"format":"apollo-persisted-query-manifest","operations":[{"id":"x","body":"{ b }"}]}"#,
            &mut set,
        )
        .unwrap();
        assert!(set.contains(&sha256("{ b }")));
        assert!(read_list("nothex\n", &mut set).unwrap_err().contains("line 1"));
    }
}
