//! Authorization: what an authenticated request must have to use a route.

use crate::auth::Identity;
use cratopus_config::{AuthorizeConfig, ClaimRule};

/// The compiled `authorize` of a route or organization.
#[derive(Debug, Clone)]
pub struct Authorizer {
    cfg: AuthorizeConfig,
}

impl Authorizer {
    pub fn compile(cfg: &AuthorizeConfig) -> Authorizer {
        Authorizer { cfg: cfg.clone() }
    }

    /// Answer 404 rather than 401/403.
    pub fn hides(&self) -> bool {
        self.cfg.hide
    }

    /// `Ok` when every condition holds; otherwise the first that does not, for the log.
    pub fn check(&self, id: &Identity) -> Result<(), &'static str> {
        let c = &self.cfg;
        if !c.scopes.iter().all(|s| id.has_scope(s)) {
            return Err("missing_scope");
        }
        if !c.roles.is_empty() && !c.roles.iter().any(|r| id.has_role(r)) {
            return Err("missing_role");
        }
        for (claim, rule) in &c.claims {
            let values = id.claim_values(claim);
            let ok = match rule {
                ClaimRule::Equals(want) => values.iter().any(|v| v == want),
                ClaimRule::OneOf(allowed) => values.iter().any(|v| allowed.contains(v)),
            };
            if !ok {
                return Err("claim_mismatch");
            }
        }
        let consumer = id.consumer.as_ref();
        if !c.consumers.is_empty() && !consumer.is_some_and(|k| c.consumers.iter().any(|x| **x == *k.id)) {
            return Err("consumer_not_allowed");
        }
        if !c.tiers.is_empty()
            && !consumer
                .and_then(|k| k.tier.as_ref())
                .is_some_and(|t| c.tiers.contains(t))
        {
            return Err("tier_not_allowed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Consumer;
    use serde_json::json;
    use std::sync::Arc;

    fn id(claims: serde_json::Value, consumer: Option<Consumer>) -> Identity {
        Identity {
            consumer: consumer.map(Arc::new),
            claims: claims.as_object().cloned().map(Arc::new),
        }
    }

    #[test]
    fn scopes_roles_claims_consumers_tiers() {
        let a = Authorizer::compile(&AuthorizeConfig {
            scopes: vec!["orders:read".into()],
            claims: [(
                "tenant".to_string(),
                ClaimRule::OneOf(vec!["acme".into(), "globex".into()]),
            )]
            .into(),
            ..Default::default()
        });
        assert_eq!(
            a.check(&id(json!({"scope": "orders:read x", "tenant": "acme"}), None)),
            Ok(())
        );
        assert_eq!(
            a.check(&id(
                json!({"scp": ["orders:read"], "tenant": ["other", "globex"]}),
                None
            )),
            Ok(())
        );
        assert_eq!(
            a.check(&id(json!({"scope": "orders:write", "tenant": "acme"}), None)),
            Err("missing_scope")
        );
        assert_eq!(
            a.check(&id(json!({"scope": "orders:read", "tenant": "evil"}), None)),
            Err("claim_mismatch")
        );

        let gold = Consumer {
            id: "c1".into(),
            header: None,
            tier: Some("gold".into()),
            scopes: vec!["orders:read".into()],
            roles: vec!["admin".into()],
        };
        let t = Authorizer::compile(&AuthorizeConfig {
            scopes: vec!["orders:read".into()],
            roles: vec!["admin".into(), "ops".into()],
            consumers: vec!["c1".into()],
            tiers: vec!["gold".into()],
            ..Default::default()
        });
        assert_eq!(t.check(&id(json!(null), Some(gold))), Ok(()));
        let free = Consumer {
            id: "c1".into(),
            header: None,
            tier: Some("free".into()),
            scopes: vec!["orders:read".into()],
            roles: vec!["admin".into()],
        };
        assert_eq!(t.check(&id(json!(null), Some(free))), Err("tier_not_allowed"));
        assert_eq!(
            t.check(&id(json!({"scope": "orders:read", "roles": ["ops"]}), None)),
            Err("consumer_not_allowed")
        );
    }
}
