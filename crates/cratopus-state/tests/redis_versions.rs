//! The generic calls a cluster's config versions use, on a real redis-server: a counter that
//! never answers at or below a floor (and never twice the same number, however many callers
//! race), a number that only goes up, and a hash.

use cratopus_state::{RedisConfig, RedisLimiter};
use std::collections::HashSet;
use std::time::Duration;
use test_support::redis::RedisServer;

fn limiter(url: &str) -> RedisLimiter {
    RedisLimiter::new(RedisConfig {
        urls: vec![url.to_string()],
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_above_lifts_past_the_floor_and_never_repeats() {
    let redis = RedisServer::start();
    let r = limiter(&redis.url());
    assert_eq!(r.incr_above("cratopus:test:next", 0).await.unwrap(), 1);
    assert_eq!(r.incr_above("cratopus:test:next", 0).await.unwrap(), 2);
    assert_eq!(r.incr_above("cratopus:test:next", 10).await.unwrap(), 11, "lifted");
    assert_eq!(r.incr_above("cratopus:test:next", 5).await.unwrap(), 12, "never back");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.incr_above("cratopus:test:next", 12).await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        assert!(seen.insert(t.await.unwrap()), "a number was handed out twice");
    }
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|&n| n > 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_to_only_goes_up_and_hashes_read_back() {
    let redis = RedisServer::start();
    let r = limiter(&redis.url());
    assert!(r.raise_to("cratopus:test:current", 3).await.unwrap());
    assert!(!r.raise_to("cratopus:test:current", 2).await.unwrap());
    assert!(!r.raise_to("cratopus:test:current", 3).await.unwrap());
    assert!(r.raise_to("cratopus:test:current", 4).await.unwrap());
    assert_eq!(
        r.get_bytes("cratopus:test:current").await.unwrap().as_deref(),
        Some(&b"4"[..])
    );

    r.set_persistent("cratopus:test:kept", b"x").await.unwrap();
    assert_eq!(redis.command(&["PTTL", "cratopus:test:kept"]).unwrap().int(), Some(-1));

    assert!(r.hgetall("cratopus:test:nodes").await.unwrap().is_empty());
    r.hset("cratopus:test:nodes", "a", b"1").await.unwrap();
    r.hset("cratopus:test:nodes", "b", b"2").await.unwrap();
    r.hset("cratopus:test:nodes", "a", b"3").await.unwrap();
    let mut all = r.hgetall("cratopus:test:nodes").await.unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![("a".to_string(), b"3".to_vec()), ("b".to_string(), b"2".to_vec())]
    );
    assert_eq!(r.publish_counted("cratopus:test:channel", b"1").await.unwrap(), 0);
}
