//! The one place the order of a route's policies is written.
//!
//! The route compile gathers the route's compiled policies (its own, its organization's, the
//! named ones it lists) into [`RouteParts`]; [`chain`] lays them out in the order they run.
//! A new policy is a new module in `cratopus-policies`, a new [`Policy`] variant, and one line
//! here.

use cratopus_policies::auth::Authenticator;
use cratopus_policies::authz::Authorizer;
use cratopus_policies::chain::{Policy, Quotas, RateLimits};
use cratopus_policies::cors::Cors;
use cratopus_policies::forwarding::Forwarding;
use cratopus_policies::ip_rules::IpRules;
use cratopus_policies::validation::Validator;
use cratopus_policies::{QuotaPolicy, RateLimitPolicy};
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
    /// The organization's, the named policies', the route's.
    pub rate_limits: Vec<Arc<RateLimitPolicy>>,
    pub quotas: Vec<Arc<QuotaPolicy>>,
    /// Where the limits count.
    pub store: Arc<SharedLimiter>,
    pub max_body: Option<u64>,
    pub validator: Option<Arc<Validator>>,
    pub bulkhead: Option<Arc<Bulkhead>>,
    pub forwarding: Option<Arc<Forwarding>>,
}

/// The route's chain, in the order its policies run on the request (the response runs it
/// backwards).
pub fn chain(p: RouteParts) -> Vec<Policy> {
    let mut chain = Vec::new();
    // CORS first: it only notes the `Origin`, so that every refusal below carries its headers.
    chain.extend(p.cors.map(Policy::Cors));
    chain.extend(p.ip_rules.into_iter().map(Policy::IpRules));
    let hides = p.authorize.as_ref().is_some_and(|a| a.hides());
    chain.extend(p.auth.map(|auth| Policy::Authenticate { auth, hides }));
    chain.extend(p.authorize.map(Policy::Authorize));
    if !p.rate_limits.is_empty() {
        chain.push(Policy::RateLimits(Arc::new(RateLimits {
            limits: p.rate_limits,
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
    chain.extend(p.bulkhead.map(Policy::Bulkhead));
    chain.extend(p.forwarding.map(Policy::Forward));
    chain
}
