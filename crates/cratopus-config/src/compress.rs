//! The serde type of response compression (`compression:`), on an organization (the default of
//! its routes) and on a route (which replaces the organization's; `enabled: false` turns it
//! off). The runtime is `cratopus_policies::compress`.
//!
//! The defaults follow what proxies use where CPU per request matters more than the last
//! percent of ratio: gzip level 1 (nginx's `gzip_comp_level`), brotli quality 3 (Envoy's
//! default), zstd level 3 (zstd's own default, already faster than gzip 1); the server prefers
//! br, then zstd, then gzip among what the client accepts; answers under 1 KiB are sent as they
//! are (Traefik's default): the headers cost more than the bytes saved.

use crate::error::ConfigError;
use crate::model::OrganizationConfig;
use crate::units::ByteSize;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// `false` turns compression off (on a route: the organization's default too).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The encodings the gateway may use, in its order of preference; among those the client
    /// accepts with the highest q-value, the first listed wins.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Media types that are compressed (the answer's `Content-Type` without parameters); `*`
    /// matches any run of characters: `text/*`, `application/*+json`.
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
    /// Answers whose `Content-Length` is below this are sent as they are; an answer of unknown
    /// length (chunked, a stream) is compressed.
    #[serde(default = "default_min_size")]
    pub min_size: ByteSize,
    /// The effort of each encoder.
    #[serde(default)]
    pub levels: CompressionLevels,
    /// An answer the backend encoded in gzip, br or zstd, for a client that does not accept
    /// that encoding, is decoded on the way (nginx's `gunzip`).
    #[serde(default = "yes")]
    pub decompress: bool,
}

/// One content coding.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Gzip,
    /// Brotli (`br`).
    #[serde(alias = "brotli")]
    Br,
    Zstd,
}

impl Algorithm {
    /// The name in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Br => "br",
            Algorithm::Zstd => "zstd",
        }
    }
}

/// Encoder levels; higher is smaller and slower.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressionLevels {
    /// 1 (fastest) to 9.
    #[serde(default = "gzip_level")]
    pub gzip: u32,
    /// 0 (fastest) to 11.
    #[serde(default = "br_level")]
    pub br: u32,
    /// -7 (fastest) to 22.
    #[serde(default = "zstd_level")]
    pub zstd: i32,
}

impl Default for CompressionLevels {
    fn default() -> Self {
        CompressionLevels {
            gzip: gzip_level(),
            br: br_level(),
            zstd: zstd_level(),
        }
    }
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            algorithms: default_algorithms(),
            content_types: default_content_types(),
            min_size: default_min_size(),
            levels: CompressionLevels::default(),
            decompress: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip]
}

/// Text formats that compress well; images, audio, video and archives are compressed already.
fn default_content_types() -> Vec<String> {
    [
        "text/*",
        "application/json",
        "application/*+json",
        "application/x-ndjson",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xml",
        "application/*+xml",
        "application/wasm",
        "image/svg+xml",
        "image/x-icon",
        "font/ttf",
        "font/otf",
    ]
    .map(String::from)
    .to_vec()
}

fn default_min_size() -> ByteSize {
    ByteSize(1024)
}

fn gzip_level() -> u32 {
    1
}

fn br_level() -> u32 {
    3
}

fn zstd_level() -> i32 {
    3
}

/// A problem of the section: the keys under `compression` where it is, and what is wrong.
pub type Problem = (Vec<String>, String);

impl CompressionConfig {
    /// Values serde accepts but the runtime cannot use.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out: Vec<Problem> = Vec::new();
        let at = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        if self.algorithms.is_empty() {
            out.push((
                at(&["algorithms"]),
                "algorithms must list at least one of gzip, br, zstd".into(),
            ));
        }
        for (i, a) in self.algorithms.iter().enumerate() {
            if self.algorithms[..i].contains(a) {
                out.push((
                    at(&["algorithms", &i.to_string()]),
                    format!("algorithms: `{}` is listed twice", a.token()),
                ));
            }
        }
        if self.content_types.is_empty() {
            out.push((
                at(&["content_types"]),
                "content_types must list at least one media type".into(),
            ));
        }
        for (i, t) in self.content_types.iter().enumerate() {
            if !is_type_pattern(t) {
                out.push((
                    at(&["content_types", &i.to_string()]),
                    format!("content_types: `{t}` is not a media type pattern (type/subtype, `*` for any run of characters: `text/*`, `application/*+json`)"),
                ));
            }
        }
        let l = &self.levels;
        if !(1..=9).contains(&l.gzip) {
            out.push((
                at(&["levels", "gzip"]),
                format!("levels: gzip must be 1 to 9, not {}", l.gzip),
            ));
        }
        if l.br > 11 {
            out.push((
                at(&["levels", "br"]),
                format!("levels: br must be 0 to 11, not {}", l.br),
            ));
        }
        if !(-7..=22).contains(&l.zstd) || l.zstd == 0 {
            out.push((
                at(&["levels", "zstd"]),
                format!("levels: zstd must be -7 to 22 and not 0, not {}", l.zstd),
            ));
        }
        out
    }
}

/// `type/subtype`, each a token or `*` patterns; no parameters.
fn is_type_pattern(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b))
    };
    match t.split_once('/') {
        Some((ty, sub)) => token(ty) && token(sub),
        None => t == "*",
    }
}

/// Places the problems of the organization's and its routes' `compression` at their keys.
pub(crate) fn check_org(f: &Path, base: &str, o: &OrganizationConfig, errors: &mut Vec<ConfigError>) {
    let mut place = |section: String, what: String, c: &CompressionConfig| {
        for (keys, message) in c.problems() {
            let mut pointer = format!("{section}/compression");
            for k in &keys {
                pointer.push('/');
                pointer.push_str(&crate::shape::escape(k));
            }
            errors.push(ConfigError::at_key(
                f,
                pointer,
                format!("{what}: compression: {message}"),
            ));
        }
    };
    if let Some(c) = &o.compression {
        place(base.to_string(), format!("organization `{}`", o.name.value), c);
    }
    for (i, r) in o.routes.iter().enumerate() {
        if let Some(c) = &r.compression {
            place(format!("{base}/routes/{i}"), format!("route `{}`", r.path.value), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_yaml::{parse, refused};

    #[test]
    fn defaults_are_fast_and_cover_text_formats() {
        let c: CompressionConfig = parse("{}");
        assert_eq!(c, CompressionConfig::default());
        assert_eq!(c.algorithms, [Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip]);
        assert!(c.content_types.iter().any(|t| t == "application/json"));
        assert_eq!(c.min_size, ByteSize(1024));
        assert!(c.problems().is_empty());
        let c: CompressionConfig = parse("algorithms: [gzip, brotli]\nmin_size: 0\nlevels: {br: 11}");
        assert_eq!(c.algorithms, [Algorithm::Gzip, Algorithm::Br]);
        assert_eq!(c.levels.br, 11);
        assert_eq!(c.levels.gzip, 1);
    }

    #[test]
    fn bad_values_are_named_at_their_keys() {
        let c: CompressionConfig = parse(
            "algorithms: [gzip, gzip]\ncontent_types: [text/*, 'text/html; charset=utf-8', json]\nlevels: {gzip: 0, br: 12, zstd: 23}",
        );
        let p = c.problems();
        let keys: Vec<String> = p.iter().map(|(k, _)| k.join("/")).collect();
        assert_eq!(
            keys,
            [
                "algorithms/1",
                "content_types/1",
                "content_types/2",
                "levels/gzip",
                "levels/br",
                "levels/zstd"
            ],
            "{p:?}"
        );
        let c: CompressionConfig = parse("algorithms: []\ncontent_types: []");
        assert_eq!(c.problems().len(), 2);
        assert!(refused::<CompressionConfig>("algorithms: [deflate]").contains("deflate"));
        assert!(refused::<CompressionConfig>("level: 3").contains("level"));
    }
}
