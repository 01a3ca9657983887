//! Rate limits and quotas over real sockets: local limits with their headers, soft mode,
//! shared and per-key counters, quotas, and cluster-wide limits on a real redis-server shared
//! by two gateway processes (including Redis going away and coming back) and on a real
//! three-node Redis Cluster.

mod common_ops;

use common_ops::{TestBackend, dump, get_with, load_until, start_gateway, wait_log};
use std::time::Duration;
use test_support::redis::{RedisCluster, RedisServer};
use test_support::{Gateway, Reply};

fn gateway(org: &str, extra: &str) -> Gateway {
    start_gateway(&test_support::gateway_yaml(&format!("\n  - {org}"), extra), &[])
}

fn org(backend: &TestBackend, body: &str) -> String {
    format!(
        "name: shop
    upstreams:
      api:
        targets: [\"{}\"]
{body}",
        backend.url()
    )
}

fn statuses(rs: &[Reply]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_refuses_over_its_burst_with_ietf_headers_and_429() {
    let b = TestBackend::start("b").await;
    let gw = gateway(
        &org(
            &b,
            "    routes:
      - name: limited
        path: /limited
        upstream: api
        rate_limit:
          limits:
            - {rate: 3, per: 1m}
            - {rate: 100, per: 1h, burst: 10}
          x_headers: true
      - name: free
        path: /free
        upstream: api
",
        ),
        "",
    );
    let c = test_support::client();
    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(get_with(&c, &gw.url("/limited"), &[]).await);
    }
    assert_eq!(statuses(&replies), [200, 200, 200, 429], "{}", dump(&gw));
    let first = &replies[0];
    assert_eq!(first.header("ratelimit-limit"), Some("3"));
    assert_eq!(first.header("ratelimit-remaining"), Some("2"));
    assert_eq!(first.header("ratelimit-policy"), Some("3;w=60, 100;w=3600;burst=10"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("2"));
    let reset: u64 = first.header("ratelimit-reset").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "reset {reset}");
    assert_eq!(replies[2].header("ratelimit-remaining"), Some("0"));

    let refused = &replies[3];
    let retry: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry), "a third of a minute at most: {retry}");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    let body = refused.json();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["status"], 429);
    assert_eq!(b.knobs.hits(), 3, "the refused request never reached the backend");

    // Another route has no limit and no headers.
    let free = get_with(&c, &gw.url("/free"), &[]).await;
    assert_eq!(free.status, 200);
    assert!(free.header("ratelimit-limit").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_separate_clients_and_named_and_org_policies_share_counters() {
    shared_counters("").await;
}

/// The same with the counters in Redis, where a route's two policies are asked together.
#[tokio::test(flavor = "multi_thread")]
async fn named_and_org_policies_share_counters_in_redis() {
    let redis = RedisServer::start();
    shared_counters(&redis_extra(&[redis.url()], false, "closed")).await;
    let keys = redis.command(&["DBSIZE"]).unwrap().int().unwrap_or(0);
    assert!(keys >= 2, "the counters are in Redis ({keys} keys)");
}

async fn shared_counters(extra: &str) {
    let b = TestBackend::start("b").await;
    let gw = gateway(
        &org(
            &b,
            "    rate_limit:
      limits: [{rate: 5, per: 1m}]
      key: route
    policies:
      per-key:
        rate_limit:
          limits: [{rate: 2, per: 1m}]
          key: header:X-Api-Key
    routes:
      - path: /a
        upstream: api
        policies: [per-key]
      - path: /b
        upstream: api
        policies: [per-key]
",
        ),
        extra,
    );
    let c = test_support::client();
    let k1 = [("x-api-key", "k1")];
    let k2 = [("x-api-key", "k2")];
    // The named policy's counter for k1 is shared by /a and /b.
    assert_eq!(get_with(&c, &gw.url("/a"), &k1).await.status, 200);
    assert_eq!(get_with(&c, &gw.url("/b"), &k1).await.status, 200);
    let r = get_with(&c, &gw.url("/a"), &k1).await;
    assert_eq!(r.status, 429, "{}", dump(&gw));
    // k2 has its own.
    assert_eq!(get_with(&c, &gw.url("/b"), &k2).await.status, 200);
    assert_eq!(get_with(&c, &gw.url("/a"), &k2).await.status, 200);
    // The organization's limit (5 for everyone, one counter) has seen 4 allowed requests plus
    // the refused one, which it counted before the named policy refused it.
    let r = get_with(&c, &gw.url("/a"), &[("x-api-key", "k3")]).await;
    assert_eq!(r.status, 429, "org limit spent: {}", r.text());
    assert_eq!(r.header("ratelimit-limit"), Some("5"), "the refusing limit's headers");
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_mode_lets_everything_through_with_headers_and_logs_it() {
    let b = TestBackend::start("b").await;
    let gw = gateway(
        &org(
            &b,
            "    routes:
      - path: /soft
        upstream: api
        rate_limit:
          limits: [{rate: 2, per: 1m}]
          mode: soft
",
        ),
        "",
    );
    let c = test_support::client();
    let mut rs = Vec::new();
    for _ in 0..5 {
        rs.push(get_with(&c, &gw.url("/soft"), &[]).await);
    }
    assert_eq!(statuses(&rs), [200; 5]);
    assert_eq!(rs[4].header("ratelimit-remaining"), Some("0"));
    assert!(rs[4].header("retry-after").is_none());
    assert_eq!(b.knobs.hits(), 5);
    assert!(
        wait_log(&gw, &["soft rate limit", "shop/route:/soft"], 1, Duration::from_secs(5)).await,
        "{}",
        dump(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_quota_answers_429_until_its_window_ends() {
    let b = TestBackend::start("b").await;
    let gw = gateway(
        &org(
            &b,
            "    routes:
      - path: /q
        upstream: api
        quota: {limit: 3, per: day, key: header:X-Api-Key}
",
        ),
        "",
    );
    let c = test_support::client();
    for _ in 0..3 {
        assert_eq!(get_with(&c, &gw.url("/q"), &[("x-api-key", "a")]).await.status, 200);
    }
    let r = get_with(&c, &gw.url("/q"), &[("x-api-key", "a")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "quota_exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry));
    assert_eq!(get_with(&c, &gw.url("/q"), &[("x-api-key", "b")]).await.status, 200);
    assert_eq!(b.knobs.hits(), 4);
}

/// Redis settings for the tests. The timeout is long because these tests stop Redis cleanly
/// (its connections close at once) and must not see a slow answer on a loaded machine taken
/// for an outage.
fn redis_extra(urls: &[String], cluster: bool, on_failure: &str) -> String {
    let list = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "state:\n  redis:\n    urls: [{list}]\n    cluster: {cluster}\n    timeout: 2s\n    retry_interval: 300ms\n    on_failure: {on_failure}\n"
    )
}

/// Requests allowed (200) and refused (429); panics on anything else.
fn allowed(outcomes: &[Result<(u16, String), String>]) -> (usize, usize) {
    let mut ok = 0;
    let mut limited = 0;
    for o in outcomes {
        match o {
            Ok((200, _)) => ok += 1,
            Ok((429, _)) => limited += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    (ok, limited)
}

async fn load_both(a: &Gateway, b: &Gateway, secs: f64) -> Vec<Result<(u16, String), String>> {
    let stop = || tokio::time::sleep(Duration::from_secs_f64(secs));
    let (x, y) = tokio::join!(load_until(a.url("/r"), 3, stop()), load_until(b.url("/r"), 3, stop()));
    x.into_iter().chain(y).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_one_limit_in_redis_and_fail_open_while_it_is_gone() {
    let mut redis = RedisServer::start();
    let backend = TestBackend::start("b").await;
    let body = "    routes:
      - path: /r
        upstream: api
        rate_limit:
          limits: [{rate: 100, per: 1s, burst: 5}]
          key: route
";
    let extra = redis_extra(&[redis.url()], false, "open");
    let a = gateway(&org(&backend, body), &extra);
    let b = gateway(&org(&backend, body), &extra);
    // Both nodes reach Redis before the measured window starts.
    for gw in [&a, &b] {
        assert_eq!(get_with(&test_support::client(), &gw.url("/r"), &[]).await.status, 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // the burst refills

    // 5 s of traffic split over both nodes: 100/s in all, not per node.
    let (ok, limited) = allowed(&load_both(&a, &b, 5.0).await);
    eprintln!("shared limit over 5 s: {ok} allowed, {limited} refused");
    assert!(
        limited > ok,
        "the load is well over the limit: {ok} allowed, {limited} refused"
    );
    assert!((475..=525).contains(&ok), "allowed {ok}, want 500 ± 5% (+ burst 5)");

    // Redis goes away mid-run: every request is still answered, each node limits alone.
    let (stopped, during) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tokio::task::block_in_place(|| redis.stop());
        },
        load_both(&a, &b, 2.5)
    );
    let () = stopped;
    let (ok, limited) = allowed(&during);
    eprintln!("during the outage (2.5 s): {ok} allowed, {limited} refused");
    assert!(
        limited > 0 && ok > 0,
        "{ok} allowed, {limited} refused during the outage"
    );
    for gw in [&a, &b] {
        assert!(
            wait_log(gw, &["redis unreachable"], 1, Duration::from_secs(5)).await,
            "{}",
            dump(gw)
        );
    }

    // Redis returns: the nodes go back to the shared counter.
    tokio::task::block_in_place(|| redis.restart());
    for gw in [&a, &b] {
        // Any request after retry_interval probes Redis again.
        assert!(
            test_support::eventually(Duration::from_secs(10), || async {
                let _ = get_with(&test_support::client(), &gw.url("/r"), &[]).await;
                common_ops::count_log(gw, &["redis reachable again"]) >= 1
            })
            .await,
            "{}",
            dump(gw)
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // let the burst refill
    let (ok, limited) = allowed(&load_both(&a, &b, 3.0).await);
    eprintln!("after Redis returned (3 s): {ok} allowed");
    // Shared: about 300 + 5 (one node alone would allow 300, both about 600).
    assert!(
        (255..=320).contains(&ok),
        "shared again: allowed {ok}, want about 300 + 5"
    );
    // Every one of those requests was decided in Redis (the restarted server counts from 0).
    // (Its key is not checked: it expires as soon as the bucket is full again, within 60 ms.)
    let info = redis.command(&["INFO", "commandstats"]).unwrap().text();
    let calls: usize = info
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("cmdstat_evalsha:calls=")
                .or(l.strip_prefix("cmdstat_eval:calls="))?;
            rest.split(',').next()?.parse::<usize>().ok()
        })
        .sum();
    assert!(
        calls >= ok + limited,
        "{calls} scripts run for {} requests:\n{info}",
        ok + limited
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_closed_refuses_with_503_while_redis_is_unreachable() {
    let dead = test_support::dead_port();
    let backend = TestBackend::start("b").await;
    let gw = gateway(
        &org(
            &backend,
            "    routes:
      - path: /r
        upstream: api
        rate_limit:
          limits: [{rate: 100, per: 1s}]
      - path: /local
        upstream: api
        rate_limit:
          limits: [{rate: 100, per: 1s}]
          state: local
",
        ),
        &redis_extra(&[format!("redis://127.0.0.1:{dead}")], false, "closed"),
    );
    let c = test_support::client();
    let r = get_with(&c, &gw.url("/r"), &[]).await;
    assert_eq!(r.status, 503, "{}", dump(&gw));
    assert_eq!(r.json()["error"]["code"], "limits_unavailable");
    assert_eq!(backend.knobs.hits(), 0);
    // A limit kept on the node does not need Redis.
    assert_eq!(get_with(&c, &gw.url("/local"), &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_on_redis_cluster_is_enforced_across_two_nodes() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let backend = TestBackend::start("b").await;
    let body = "    routes:
      - path: /r
        upstream: api
        rate_limit:
          limits:
            - {rate: 4, per: 1m}
            - {rate: 1000, per: 1d}
          key: header:X-Tenant
";
    let extra = redis_extra(&cluster.urls(), true, "closed");
    let a = gateway(&org(&backend, body), &extra);
    let b = gateway(&org(&backend, body), &extra);
    let c = test_support::client();
    let mut got = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &a } else { &b };
        got.push(get_with(&c, &gw.url("/r"), &[("x-tenant", "t1")]).await.status);
    }
    assert_eq!(got, [200, 200, 200, 200, 429, 429], "{}{}", dump(&a), dump(&b));
    // Other tenants have their own counters, spread over the cluster's masters.
    for t in 0..20 {
        let r = get_with(&c, &a.url("/r"), &[("x-tenant", &format!("tenant-{t}"))]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut total = 0;
    for port in cluster.ports() {
        let n = test_support::redis::command(port, &["DBSIZE"])
            .unwrap()
            .int()
            .unwrap_or(0);
        total += n;
    }
    // (The daily limit's keys live for 86 s, so none has expired yet.)
    assert_eq!(total, 42, "21 keys × 2 limits, every stack in one slot");
}
