//! The policies a route runs between matching and forwarding, one module each.
//!
//! A policy is compiled from its config once, when a snapshot is built, and shared by the
//! routes it covers; per request it only reads the request's head and its state store. The
//! engine (`cratopus-core`) calls them in the fixed order of `docs/architecture.md` and turns
//! their refusals into the gateway's JSON errors.

pub mod auth;
pub mod auth_failures;
pub mod authz;
pub mod cache;
pub mod chain;
pub mod compress;
pub mod cors;
pub mod forwarding;
pub mod graphql;
pub mod grpc_web;
pub mod ip_rules;
pub mod jwks;
pub mod key;
pub mod martian;
pub mod modify;
pub mod quota;
pub mod rate_limit;
pub mod validation;

pub use auth_failures::{AuthFailureGuard, AuthFailureLimit, LockedOut};
pub use quota::{QuotaDecision, QuotaPolicy};
pub use rate_limit::{RateDecision, RateLimitPolicy};
