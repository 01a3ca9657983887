//! The generic Redis calls a cluster's certificates use (cratopus-server's `cluster_certs`): a
//! lock taken with `SET NX PX`, kept and released by its owner only, records without expiry, and
//! a hash index — against a real standalone redis-server and a real 3-master Redis Cluster
//! (every call names one key, so no hash tag is needed).

use cratopus_state::{RedisConfig, RedisLimiter};
use std::time::Duration;
use test_support::redis::{RedisCluster, RedisServer, Reply};

fn limiter(urls: Vec<String>, cluster: bool) -> RedisLimiter {
    RedisLimiter::new(RedisConfig {
        urls,
        cluster,
        timeout: Duration::from_secs(2),
        retry_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
    })
    .expect("config")
}

/// Redis may still be connecting on the first call: try again until it answers.
async fn first<T>(mut f: impl AsyncFnMut() -> Result<T, cratopus_state::StateError>) -> T {
    for _ in 0..100 {
        if let Ok(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("redis never answered");
}

async fn lock_refresh_release_and_records(l: &RedisLimiter, pttl: impl Fn(&str) -> i64) {
    let key = "cratopus:acme:lock:api.acme.test";
    assert!(first(async || l.set_nx(key, b"node-a/1", Duration::from_secs(5)).await).await);
    // Taken: another node cannot take it, refresh it or release it.
    assert!(!l.set_nx(key, b"node-b/2", Duration::from_secs(5)).await.unwrap());
    assert!(!l.refresh_if(key, b"node-b/2", Duration::from_secs(60)).await.unwrap());
    assert!(!l.delete_if(key, b"node-b/2").await.unwrap());
    assert!(pttl(key) <= 5000);
    // Its owner refreshes it, then releases it; then another node takes it.
    assert!(l.refresh_if(key, b"node-a/1", Duration::from_secs(60)).await.unwrap());
    assert!(pttl(key) > 5000, "refreshed");
    assert!(l.delete_if(key, b"node-a/1").await.unwrap());
    assert!(l.set_nx(key, b"node-b/2", Duration::from_secs(5)).await.unwrap());

    // A record without expiry, and the index.
    l.set_persistent("cratopus:cert:api.acme.test", b"{}").await.unwrap();
    assert_eq!(pttl("cratopus:cert:api.acme.test"), -1);
    l.hset("cratopus:certs", "api.acme.test", b"17").await.unwrap();
    l.hset("cratopus:certs", "www.acme.test", b"18").await.unwrap();
    let mut index = l.hgetall("cratopus:certs").await.unwrap();
    index.sort();
    assert_eq!(
        index,
        [
            ("api.acme.test".to_string(), b"17".to_vec()),
            ("www.acme.test".to_string(), b"18".to_vec())
        ]
    );
    l.delete("cratopus:cert:api.acme.test").await.unwrap();
    assert_eq!(l.get_bytes("cratopus:cert:api.acme.test").await.unwrap(), None);
}

fn int(r: std::io::Result<Reply>) -> i64 {
    r.ok().and_then(|r| r.int()).unwrap_or(i64::MIN)
}

#[tokio::test]
async fn a_lock_is_kept_and_released_by_its_owner_only_on_a_standalone_redis() {
    let server = tokio::task::spawn_blocking(RedisServer::start).await.unwrap();
    let l = limiter(vec![server.url()], false);
    lock_refresh_release_and_records(&l, |k| int(server.command(&["PTTL", k]))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_is_kept_and_released_by_its_owner_only_on_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.unwrap();
    let l = limiter(cluster.urls(), true);
    let pttl = |k: &str| {
        // Whichever master holds the key answers; the others say MOVED.
        cluster
            .ports()
            .iter()
            .map(|p| int(test_support::redis::command(*p, &["PTTL", k])))
            .find(|v| *v != i64::MIN)
            .unwrap_or(i64::MIN)
    };
    lock_refresh_release_and_records(&l, pttl).await;
}
