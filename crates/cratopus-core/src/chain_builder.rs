//! The one place the order of a route's policies is written.
//!
//! The route compile gathers the route's compiled policies (its own, its organization's, the
//! named ones it lists) into [`RouteParts`]; [`chain`] lays them out in the order they run.
//! A new policy is a new module in `cratopus-policies`, a new [`Policy`] variant, and one line
//! here.

use cratopus_policies::auth::Authenticator;
use cratopus_policies::authz::Authorizer;
use cratopus_policies::cache::CachePolicy;
use cratopus_policies::chain::{Policy, Quotas, RateLimits};
use cratopus_policies::compress::Compression;
use cratopus_policies::cors::Cors;
use cratopus_policies::forwarding::Forwarding;
use cratopus_policies::graphql::GraphqlGuard;
use cratopus_policies::ip_rules::IpRules;
use cratopus_policies::modify::Modifiers;
use cratopus_policies::validation::Validator;
use cratopus_policies::{AuthFailureGuard, AuthFailureLimit, QuotaPolicy, RateLimitPolicy};
use cratopus_state::SharedLimiter;
use cratopus_upstream::Bulkhead;
use std::sync::Arc;

/// A route's compiled policies, before they are put in order.
pub struct RouteParts {
    /// The organization's lists, then the route's.
    pub ip_rules: Vec<Arc<IpRules>>,
    pub cors: Option<Arc<Cors>>,
    pub auth: Option<Arc<Authenticator>>,
    pub authorize: Option<Arc<Authorizer>>,
    /// The organization's, the named policies', the route's (those with `before_auth` run
    /// ahead of authentication).
    pub rate_limits: Vec<Arc<RateLimitPolicy>>,
    /// The organization's `auth_failures`, the route's.
    pub auth_failures: Vec<Arc<AuthFailureLimit>>,
    pub quotas: Vec<Arc<QuotaPolicy>>,
    /// Where the limits count.
    pub store: Arc<SharedLimiter>,
    pub max_body: Option<u64>,
    pub validator: Option<Arc<Validator>>,
    pub bulkhead: Option<Arc<Bulkhead>>,
    pub forwarding: Option<Arc<Forwarding>>,
    /// The organization's and the route's modifiers, compiled together.
    pub modifiers: Option<Arc<Modifiers>>,
    pub graphql: Option<Arc<GraphqlGuard>>,
    /// The route translates gRPC-Web.
    pub grpc_web: bool,
    /// The route's response compression (its own, else its organization's).
    pub compression: Option<Arc<Compression>>,
    pub cache: Option<Arc<CachePolicy>>,
}

/// The route's chain, in the order its policies run on the request (the response runs it
/// backwards).
pub fn chain(p: RouteParts) -> Vec<Policy> {
    let mut chain = Vec::new();
    // gRPC-Web ahead of CORS: its request side only reads the head (it refuses nothing), and
    // its response side runs last, adding the gRPC headers to what CORS exposes.
    if p.grpc_web {
        chain.push(Policy::GrpcWeb);
    }
    // CORS first: it only notes the `Origin`, so that every refusal below carries its headers.
    chain.extend(p.cors.map(Policy::Cors));
    chain.extend(p.ip_rules.into_iter().map(Policy::IpRules));
    // Ahead of authentication: the lockout after failed authentications (only where
    // something authenticates, so that something can fail), then the limits placed there.
    let failures = (p.auth.is_some() && !p.auth_failures.is_empty()).then(|| {
        Arc::new(AuthFailureGuard {
            limits: p.auth_failures,
            store: p.store.clone(),
        })
    });
    chain.extend(failures.clone().map(Policy::AuthFailures));
    let (before_auth, rate_limits): (Vec<_>, Vec<_>) = p.rate_limits.into_iter().partition(|l| l.before_auth);
    if !before_auth.is_empty() {
        chain.push(Policy::RateLimits(Arc::new(RateLimits {
            limits: before_auth,
            store: p.store.clone(),
        })));
    }
    let hides = p.authorize.as_ref().is_some_and(|a| a.hides());
    chain.extend(p.auth.map(|auth| Policy::Authenticate { auth, hides, failures }));
    chain.extend(p.authorize.map(Policy::Authorize));
    if !rate_limits.is_empty() {
        chain.push(Policy::RateLimits(Arc::new(RateLimits {
            limits: rate_limits,
            store: p.store.clone(),
        })));
    }
    if !p.quotas.is_empty() {
        chain.push(Policy::Quotas(Arc::new(Quotas {
            quotas: p.quotas,
            store: p.store,
        })));
    }
    chain.extend(p.validator.map(Policy::Validate));
    chain.extend(p.max_body.map(Policy::BodyLimit));
    // After the body limit, so that an oversized body is refused by its declared length before
    // the guard asks for it whole; before the bulkhead, so a refused operation holds no place.
    chain.extend(p.graphql.map(Policy::Graphql));
    // The cache after everything that admits a request (a hit has been authenticated, limited
    // and validated) and before the bulkhead (a hit holds no place); forwarding and modifiers
    // shape only what goes to the backend, and a modifier's response side has run on what is
    // stored. A compression policy comes after it, so that what is stored is compressed.
    chain.extend(p.cache.map(Policy::Cache));
    chain.extend(p.bulkhead.map(Policy::Bulkhead));
    chain.extend(p.forwarding.map(Policy::Forward));
    // Last: what a modifier sets is not filtered by `forward`'s lists, and its response side
    // runs first on the way back, on the backend's headers before the gateway adds its own.
    chain.extend(p.modifiers.map(Policy::Modify));
    // Compression last: on the way back it runs first, on the backend's head and body, so that
    // the steps before it (a cache) see the encoded answer and store it per encoding.
    chain.extend(p.compression.map(Policy::Compress));
    chain
}
