//! API composition as KrakenD does it — the data side, without I/O: an endpoint calls several
//! backends, and each backend's answer is decoded ([`decode`]), shaped ([`shape`], with
//! [`flatmap`]), merged with the others ([`merge`]) and written for the client ([`encode`]);
//! a backend's URL is a [`template`] with the request's path parameters and, in a sequential
//! endpoint, fields of earlier answers. [`config`] holds the serde types, with KrakenD's names.
//!
//! Everything that can be is done once, at config load: [`Endpoint::compile`] parses the paths,
//! operations and templates; per request only the answers are walked. The engine owns the
//! calls (concurrency, timeouts, the sequential order, the error policy) and uses this crate as
//! follows:
//!
//! ```
//! use cratopus_compose::{Endpoint, config::ComposeEndpointConfig};
//! let cfg: ComposeEndpointConfig = serde_json::from_str(r#"{"backend": [
//!     {"url_pattern": "/users/{id}", "group": "user"},
//!     {"url_pattern": "/posts?author={id}", "target": "data"}
//! ]}"#).unwrap();
//! assert!(cfg.problems(&["id".to_string()]).is_empty());
//! let endpoint = Endpoint::compile(&cfg).unwrap();
//! let params: &[(&str, &str)] = &[("id", "7")];
//! let mut answers = endpoint.aggregate::<String>();
//! for (i, b) in endpoint.backends().iter().enumerate() {
//!     let url = b.url().render(params, &answers.answers()).unwrap();
//!     let body = if i == 0 { r#"{"name": "Ann"}"# } else { r#"{"data": {"posts": 3}}"# };
//!     match b.read(body.as_bytes()) {
//!         Ok(data) => answers.answered(i, data),
//!         Err(e) => answers.failed(i, e.to_string()),
//!     }
//! }
//! let merged = endpoint.finish(answers);
//! assert!(merged.complete);
//! let out = endpoint.encode(&merged.data, None).unwrap();
//! assert_eq!(&out.body[..], br#"{"posts":3,"user":{"name":"Ann"}}"#);
//! ```

pub mod config;
pub mod decode;
pub mod encode;
pub mod flatmap;
pub mod martian;
pub mod merge;
pub mod path;
pub mod shape;
pub mod template;
pub mod xml;

use config::{BackendEncoding, ComposeBackendConfig, ComposeEndpointConfig, OutputEncoding};
use decode::DecodeError;
use encode::{EncodeError, Encoded};
use flatmap::Flatmap;
use merge::{Aggregate, Merged};
use serde_json::{Map, Value};
use shape::Shaper;
use template::UrlTemplate;

/// A composed endpoint, compiled.
#[derive(Debug, Clone)]
pub struct Endpoint {
    backends: Box<[Backend]>,
    sequential: bool,
    output: OutputEncoding,
    flatmap: Option<Flatmap>,
}

/// One backend of a composed endpoint, compiled.
#[derive(Debug, Clone)]
pub struct Backend {
    url: UrlTemplate,
    encoding: BackendEncoding,
    is_collection: bool,
    shaper: Shaper,
}

impl Backend {
    pub fn compile(cfg: &ComposeBackendConfig) -> Result<Self, String> {
        Ok(Backend {
            url: UrlTemplate::parse(&cfg.url_pattern).map_err(|e| e.to_string())?,
            encoding: cfg.encoding,
            is_collection: cfg.is_collection,
            shaper: Shaper::compile(cfg).map_err(|e| e.to_string())?,
        })
    }

    /// The backend's URL pattern.
    pub fn url(&self) -> &UrlTemplate {
        &self.url
    }

    pub fn encoding(&self) -> BackendEncoding {
        self.encoding
    }

    /// The answer body decoded and shaped, ready to merge.
    pub fn read(&self, body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
        let data = decode::decode(self.encoding, self.is_collection, body)?;
        Ok(if self.shaper.is_identity() {
            data
        } else {
            self.shaper.apply(data)
        })
    }
}

impl Endpoint {
    /// Compiles an endpoint whose config passed [`ComposeEndpointConfig::problems`]; the first
    /// problem left is refused.
    pub fn compile(cfg: &ComposeEndpointConfig) -> Result<Self, String> {
        let backends = cfg
            .backend
            .iter()
            .enumerate()
            .map(|(i, b)| Backend::compile(b).map_err(|e| format!("backend {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let encodings: Vec<_> = cfg.backend.iter().map(|b| b.encoding).collect();
        let flatmap = if cfg.flatmap_filter.is_empty() {
            None
        } else {
            Some(Flatmap::compile(&cfg.flatmap_filter).map_err(|e| format!("flatmap_filter: {e}"))?)
        };
        Ok(Endpoint {
            backends: backends.into(),
            sequential: cfg.sequential,
            output: OutputEncoding::effective(cfg.output_encoding, &encodings),
            flatmap,
        })
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backends run one after the other, later URLs using earlier answers.
    pub fn is_sequential(&self) -> bool {
        self.sequential
    }

    /// The encoding the endpoint answers with (its own, or its single backend's).
    pub fn output(&self) -> OutputEncoding {
        self.output
    }

    /// The single backend's answer goes to the client as it is (no decoding, no encoding).
    pub fn is_pass_through(&self) -> bool {
        self.output == OutputEncoding::NoOp
    }

    /// An empty aggregate for one request's answers.
    pub fn aggregate<E>(&self) -> Aggregate<E> {
        Aggregate::new(self.backends.len())
    }

    /// Merges the answers and runs the endpoint's own flatmap on the result.
    pub fn finish<E>(&self, answers: Aggregate<E>) -> Merged<E> {
        let mut merged = answers.finish();
        match &self.flatmap {
            Some(f) if !merged.is_failure() => merged.data = f.apply(std::mem::take(&mut merged.data)),
            _ => {}
        }
        merged
    }

    /// The merged answer written for the client; `accept` is its `Accept` header.
    pub fn encode(&self, data: &Map<String, Value>, accept: Option<&str>) -> Result<Encoded, EncodeError> {
        encode::encode(self.output, data, accept)
    }
}
