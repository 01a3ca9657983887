//! The config model of cratopus and its loading pipeline.
//!
//! `gateway.yaml` and the organization files are described by the serde types in [`model`];
//! [`load`] reads them (with `${ENV}` interpolation and globbing) and [`validate`] checks what
//! serde cannot: references, duplicates, values out of range. Every problem carries its file,
//! line and column so that an operator can find it; all problems are reported at once.
//! [`schema`] gives the JSON Schemas of both kinds of file, generated from the same types, for
//! editors.
//!
//! The runtime never reads these types on the hot path: `cratopus-core` compiles them into a
//! `Snapshot` first.

pub mod access;
pub mod auth_limits;
pub mod cache;
pub mod cluster;
pub mod cluster_certs;
pub mod compose;
pub mod compress;
pub mod discovery;
pub mod error;
pub mod files;
pub mod graphql;
pub mod grpc;
pub mod http_policies;
pub mod interpolate;
pub mod lint;
pub mod load;
pub mod locate;
pub mod matching;
pub mod model;
pub mod modify;
pub mod policies;
pub mod report;
pub mod resilience;
mod reuse;
pub mod schema;
pub mod shadow;
mod shape;
pub mod split;
pub mod tls;
pub mod units;
pub mod validate;
pub mod websocket;
pub mod yaml_doc;

pub use access::*;
pub use auth_limits::*;
pub use discovery::{DiscoveryConfig, SharedStateConfig};
pub use error::{ConfigError, ConfigErrors};
pub use grpc::GrpcCode;
pub use load::{
    LoadedConfig, LoadedOrg, Overlay, load_file, load_file_overlaid, load_file_reusing, load_str, load_with_bundle,
    load_with_bundle_reusing, load_with_documents,
};
pub use matching::{MatchConfig, ValueMatch};
pub use model::*;
pub use policies::*;
pub use resilience::*;
pub use schema::{gateway_schema, organization_schema};
pub use shadow::ShadowConfig;
pub use split::*;
pub use tls::*;
pub use units::{ByteSize, Dur};

/// The config `cratopus run` uses when no file is given: one listener on 127.0.0.1:8080 and one
/// default organization that sends every request to the built-in mirror.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// YAML parsing for the config modules' unit tests.
#[cfg(test)]
mod test_yaml {
    use serde::de::DeserializeOwned;

    pub fn parse<T: DeserializeOwned>(yaml: &str) -> T {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    pub fn refused<T: DeserializeOwned + std::fmt::Debug>(yaml: &str) -> String {
        serde_saphyr::from_str::<T>(yaml).unwrap_err().to_string()
    }
}
