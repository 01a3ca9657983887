//! The cratopus runtime.
//!
//! A config is compiled ([`snapshot::compile`]) into an immutable [`Snapshot`]: the host table,
//! one router per organization, the routes with everything they need precomputed, and the
//! upstream pools. The [`engine::Engine`] holds the current snapshot in an `ArcSwap`; each
//! request loads it once and runs the fixed pipeline of [`engine`] against it.

pub mod body;
pub mod chain_builder;
pub mod engine;
pub mod error;
pub mod forward;
pub mod host;
pub mod matching;
pub mod normalize;
pub mod overrides;
pub mod phases;
mod route_backend;
pub mod router;
pub mod shared_certs;
pub mod snapshot;
pub mod tls;
pub mod websocket;

pub use engine::{ConnInfo, Engine};
pub use error::GatewayError;
pub use snapshot::{Compiled, Services, Snapshot, compile, compile_only};

/// The hash of an API key as a consumer's `keys:` stores it (`cratopus hash-key`).
pub fn hash_api_key(key: &str) -> String {
    cratopus_policies::auth::hash_key(key)
}
