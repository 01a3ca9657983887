//! RedisLimiter against a real 3-master Redis Cluster.

use cratopus_state::{QuotaPeriod, Rate, RedisConfig, RedisLimiter, rate_limit_key};
use std::time::Duration;
use test_support::redis::{RedisCluster, command};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const RETURNS_WITHIN: Duration = Duration::from_secs(20);

fn cluster_limiter(cluster: &RedisCluster) -> RedisLimiter {
    let config = RedisConfig {
        // One seed is enough: the client learns the other masters from CLUSTER SLOTS.
        urls: cluster.urls().into_iter().take(1).collect(),
        cluster: true,
        timeout: Duration::from_secs(2),
        retry_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
    };
    match RedisLimiter::new(config) {
        Ok(l) => l,
        Err(e) => panic!("config: {e}"),
    }
}

/// The first call connects in the background; on a loaded machine that may take longer than
/// one call's timeout, so wait (bounded) for the limiter to come up.
/// It ends with one successful check, so the `warm-up` key (kept for a day) is in the cluster.
async fn wait_up(l: &RedisLimiter) {
    let deadline = tokio::time::Instant::now() + RETURNS_WITHIN;
    loop {
        let checked = tokio::time::timeout(RETURNS_WITHIN, l.check("warm-up", &[Rate::new(1000, DAY)])).await;
        if l.is_up() && matches!(checked, Ok(Ok(_))) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "cluster never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stacks_of_limits_work_across_a_cluster_and_keys_spread_over_masters() {
    let cluster = RedisCluster::start();
    let l = cluster_limiter(&cluster);
    wait_up(&l).await;
    // Two limits per key: the script touches two keys, which Redis Cluster only allows when
    // they hash to one slot (else CROSSSLOT), i.e. thanks to the hash tag.
    let rates = [Rate::new(2, HOUR), Rate::new(3, DAY)];
    for i in 0..60 {
        let key = format!("consumer-{i}");
        for remaining in [1, 0] {
            let v = match tokio::time::timeout(RETURNS_WITHIN, l.check(&key, &rates)).await {
                Ok(Ok(v)) => v,
                other => panic!("{key}: {other:?}"),
            };
            assert!(v.allowed);
            assert_eq!((v.tightest, v.remaining), (0, remaining));
        }
        let v = match tokio::time::timeout(RETURNS_WITHIN, l.check(&key, &rates)).await {
            Ok(Ok(v)) => v,
            other => panic!("{key}: {other:?}"),
        };
        assert!(!v.allowed, "{key}");
        assert_eq!(v.tightest, 0);
    }
    assert_eq!(l.fallbacks(), 0);

    // Every master holds some of the keys, and both keys of a stack sit on the same master.
    let mut per_node = Vec::new();
    for port in cluster.ports() {
        let n = command(port, &["DBSIZE"]).expect("DBSIZE").int().unwrap_or(0);
        per_node.push(n);
    }
    assert!(per_node.iter().all(|&n| n > 0), "keys per master: {per_node:?}");
    assert_eq!(
        per_node.iter().sum::<i64>(),
        2 * 60 + 1,
        "60 stacks of 2 keys plus the warm-up key"
    );
    for port in cluster.ports() {
        let slot0 = command(port, &["CLUSTER", "KEYSLOT", &rate_limit_key("consumer-7", 0)]).expect("KEYSLOT");
        let slot1 = command(port, &["CLUSTER", "KEYSLOT", &rate_limit_key("consumer-7", 1)]).expect("KEYSLOT");
        assert_eq!(slot0, slot1);
    }
}

#[tokio::test]
async fn quotas_on_a_cluster() {
    let cluster = RedisCluster::start();
    let l = cluster_limiter(&cluster);
    wait_up(&l).await;
    for i in 0..20 {
        let key = format!("tenant-{i}");
        for used in 1..=2 {
            match tokio::time::timeout(RETURNS_WITHIN, l.quota_add(&key, QuotaPeriod::Month, 2, 1)).await {
                Ok(Ok(q)) => assert_eq!((q.allowed, q.used), (true, used)),
                other => panic!("{other:?}"),
            }
        }
        match tokio::time::timeout(RETURNS_WITHIN, l.quota_add(&key, QuotaPeriod::Month, 2, 1)).await {
            Ok(Ok(q)) => assert_eq!((q.allowed, q.used), (false, 2)),
            other => panic!("{other:?}"),
        }
    }
}
