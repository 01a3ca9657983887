//! Quotas: a number of requests per UTC calendar day or month and key, counted in the state
//! store (Redis when the gateway has it, so that every node draws on one quota).

use crate::auth::Identity;
use crate::key::{in_cluster, write_key};
use cratopus_config::{QuotaConfig, RateKey};
use cratopus_state::{QuotaPeriod, SharedLimiter, Source, StateError};
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One compiled quota.
#[derive(Debug)]
pub struct QuotaPolicy {
    pub id: Arc<str>,
    limit: u64,
    period: QuotaPeriod,
    key: RateKey,
    cluster: bool,
}

/// What a quota said about one request.
#[derive(Debug, Clone, Copy)]
pub struct QuotaDecision {
    /// False when the quota is spent; the request was not counted.
    pub allowed: bool,
    pub used: u64,
    pub limit: u64,
    /// Seconds until the window ends (the `Retry-After` of a refusal; at least 1).
    pub resets_in: u64,
    pub source: Source,
}

impl QuotaPolicy {
    pub fn compile(id: String, cfg: &QuotaConfig, cluster_default: bool) -> QuotaPolicy {
        QuotaPolicy {
            id: id.into(),
            limit: cfg.limit,
            period: match cfg.per {
                cratopus_config::QuotaPeriod::Day => QuotaPeriod::Day,
                cratopus_config::QuotaPeriod::Month => QuotaPeriod::Month,
            },
            key: cfg.key.clone(),
            cluster: in_cluster(cfg.state, cluster_default),
        }
    }

    /// Counts one request unless the quota is spent. `Err` only when the quota is in Redis,
    /// Redis is unreachable and the gateway fails closed.
    pub async fn check(
        &self,
        store: &SharedLimiter,
        headers: &HeaderMap,
        client: IpAddr,
        identity: Option<&Identity>,
        scratch: &mut String,
    ) -> Result<QuotaDecision, StateError> {
        write_key(scratch, &self.id, &self.key, headers, client, identity);
        let (q, source) = if self.cluster {
            store.quota_add(scratch, self.period, self.limit, 1).await?
        } else {
            (
                store.quotas().quota_add(scratch, self.period, self.limit, 1),
                Source::Local,
            )
        };
        let resets_in = q.resets_in.as_secs() + u64::from(q.resets_in.subsec_nanos() > 0);
        Ok(QuotaDecision {
            allowed: q.allowed,
            used: q.used,
            limit: q.limit,
            resets_in: resets_in.max(1),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_state::LocalLimiter;

    #[tokio::test]
    async fn a_spent_quota_refuses_until_the_window_ends() {
        let store = SharedLimiter::local_only(LocalLimiter::new());
        let cfg = QuotaConfig {
            limit: 2,
            per: cratopus_config::QuotaPeriod::Day,
            key: RateKey::Header("x-api-key".into()),
            state: None,
        };
        let q = QuotaPolicy::compile("o/route:r".into(), &cfg, false);
        let mut h = HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_static("k"));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut s = String::new();
        assert!(q.check(&store, &h, ip, None, &mut s).await.unwrap().allowed);
        let d = q.check(&store, &h, ip, None, &mut s).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.used, 2);
        let d = q.check(&store, &h, ip, None, &mut s).await.unwrap();
        assert!(!d.allowed);
        assert!((1..=86_400).contains(&d.resets_in));
        // Another key has its own quota.
        h.insert("x-api-key", http::HeaderValue::from_static("other"));
        assert!(q.check(&store, &h, ip, None, &mut s).await.unwrap().allowed);
    }
}
