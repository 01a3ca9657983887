//! The response cache's Redis second level: two gateway processes sharing a real
//! redis-server (`state.redis`) in front of one backend that counts its requests. One node's
//! miss is the other's hit, purges by URL and by tag on one node reach the other, and with
//! Redis gone both keep serving from memory and the backend.

mod common_ops;

use common_ops::{BIN, dump, metrics, wait_log};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::redis::{RedisCluster, RedisServer, Reply as RedisReply};
use test_support::{Backend, Gateway, Reply, client, eventually, send};

const TOKEN: &str = "cache-cluster-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// Requests per path, counted as they arrive.
type Seen = Arc<Mutex<HashMap<String, usize>>>;

fn hits(seen: &Seen, path: &str) -> usize {
    seen.lock().unwrap().get(path).copied().unwrap_or(0)
}

/// Answers `<path> #<n>` (n: the path's request count), fresh for a minute; paths under
/// `/tagged/` carry the Surrogate-Key `blue`.
async fn backend() -> (Backend, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let b = Backend::start(move |req, _| {
        let s = s.clone();
        async move {
            let path = req.uri().path().to_string();
            let n = {
                let mut hits = s.lock().unwrap();
                let n = hits.entry(path.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let mut res = Response::builder()
                .status(200)
                .header("cache-control", "max-age=60, stale-if-error=30")
                .header("content-type", "text/plain");
            if path.starts_with("/tagged/") {
                res = res.header("surrogate-key", "blue");
            }
            res.body(Full::new(Bytes::from(format!("{path} #{n}")))).unwrap()
        }
    })
    .await;
    (b, seen)
}

/// A gateway node with every route cached, the admin API, and Redis at `urls` (a Redis
/// Cluster when `cluster`) as its state store.
fn node(target: &str, urls: &[String], cluster: bool) -> Gateway {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let urls = urls.join(", ");
    let org = format!(
        "name: shop
upstreams:
  b:
    targets: [\"{target}\"]
routes:
  - path: /{{*rest}}
    upstream: b
    cache: {{}}
"
    );
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${{ADMIN_TOKEN}}\norganizations: orgs/*.yaml\nwatch: false\nstate:\n  redis:\n    urls: [{urls}]\n    cluster: {cluster}\n    timeout: 2s\n    retry_interval: 300ms\n"
    );
    tokio::task::block_in_place(|| {
        Gateway::start_with_env(BIN, &yaml, &[("orgs/shop.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)])
    })
}

/// Two nodes on one Redis, each subscribed to the purges (so the second level is on).
async fn two_nodes(target: &str, urls: &[String], cluster: bool) -> (Gateway, Gateway) {
    let a = node(target, urls, cluster);
    let b = node(target, urls, cluster);
    for gw in [&a, &b] {
        assert!(wait_log(gw, &["second level on"], 1, WAIT).await, "{}", dump(gw));
    }
    (a, b)
}

async fn get(gw: &Gateway, path: &str) -> Reply {
    send(
        &client(),
        Request::get(gw.url(path)).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

async fn purge(gw: &Gateway, body: &str) -> Reply {
    let req = Request::post(format!("http://{}/api/cache/purge", gw.addrs()[1]))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

fn status(r: &Reply) -> &str {
    r.header("cache-status").unwrap_or("")
}

/// The cache's entries in Redis of the current generation (a purge moves to the next).
fn entries(redis: &RedisServer) -> usize {
    entries_on(&[redis.port()])
}

/// [`entries`] over the masters of a Redis Cluster (or one server): the generation is read
/// from the master that holds it (the others answer `MOVED`), the keys from every one.
fn entries_on(ports: &[u16]) -> usize {
    let command = test_support::redis::command;
    let generation = ports
        .iter()
        .find_map(|p| match command(*p, &["GET", "cratopus:cache:generation"]) {
            Ok(RedisReply::Bulk(Some(g))) => g.parse::<u64>().ok(),
            _ => None,
        })
        .unwrap_or(0);
    ports
        .iter()
        .map(
            |p| match command(*p, &["KEYS", &format!("cratopus:cache:{generation}:*")]) {
                Ok(RedisReply::Array(Some(keys))) => keys.len(),
                _ => 0,
            },
        )
        .sum()
}

/// Waits until Redis holds `n` cache entries (they are written in the background).
async fn wait_entries(redis: &RedisServer, n: usize) {
    assert!(
        eventually(WAIT, || async { entries(redis) >= n }).await,
        "Redis holds {} cache entries, want {n}",
        entries(redis)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_nodes_miss_is_the_other_nodes_hit() {
    let redis = RedisServer::start();
    let (b, seen) = backend().await;
    let (a, bnode) = two_nodes(&b.url(), &[redis.url()], false).await;

    let first = get(&a, "/item").await;
    assert_eq!(first.status, 200);
    assert!(status(&first).contains("fwd=miss"), "{first:?}");
    wait_entries(&redis, 1).await;

    let shared = get(&bnode, "/item").await;
    assert_eq!(shared.status, 200);
    assert!(
        status(&shared).starts_with("cratopus; hit") && status(&shared).contains("detail=shared"),
        "{shared:?}"
    );
    assert_eq!(shared.text(), first.text(), "the same answer, byte for byte");
    assert_eq!(shared.header("content-type"), Some("text/plain"));
    assert!(shared.header("age").is_some());
    // The shared hit filled B's memory: the next one is a plain hit.
    let again = get(&bnode, "/item").await;
    assert!(
        status(&again).starts_with("cratopus; hit") && !status(&again).contains("shared"),
        "{again:?}"
    );
    assert_eq!(hits(&seen, "/item"), 1, "the backend saw one request for both nodes");

    let m = metrics(&bnode, TOKEN).await;
    assert!(m.contains("cratopus_cache_requests_total{result=\"hit_l2\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_by_url_and_tag_on_one_node_reach_the_other() {
    let redis = RedisServer::start();
    let (b, seen) = backend().await;
    let (a, bnode) = two_nodes(&b.url(), &[redis.url()], false).await;
    for p in ["/u/one", "/u/two", "/tagged/x"] {
        assert!(status(&get(&a, p).await).contains("fwd=miss"));
    }
    wait_entries(&redis, 3).await;
    for p in ["/u/one", "/u/two", "/tagged/x"] {
        let r = get(&bnode, p).await;
        assert!(status(&r).contains("detail=shared"), "{p}: {r:?}");
    }

    // By URL on A: B drops its copy and the Redis entries are out of reach.
    let host = a.addr().ip().to_string();
    let r = purge(&a, &format!("{{\"url\": \"http://{host}/u/one\"}}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["cluster"], true, "{r:?}");
    assert!(
        eventually(WAIT, || async {
            status(&get(&bnode, "/u/one").await).contains("fwd=miss")
        })
        .await,
        "B still serves the purged URL"
    );
    assert_eq!(hits(&seen, "/u/one"), 2);
    assert_eq!(get(&bnode, "/u/one").await.text(), "/u/one #2");
    // Only that URL left B's memory.
    assert!(status(&get(&bnode, "/u/two").await).starts_with("cratopus; hit"));
    assert_eq!(hits(&seen, "/u/two"), 1);

    // By tag on A.
    let r = purge(&a, "{\"tag\": \"blue\"}").await;
    assert_eq!(
        (r.status, r.json()["cluster"].clone()),
        (200, serde_json::json!(true)),
        "{r:?}"
    );
    assert!(
        eventually(WAIT, || async {
            status(&get(&bnode, "/tagged/x").await).contains("fwd=miss")
        })
        .await,
        "B still serves the purged tag"
    );
    assert_eq!(hits(&seen, "/tagged/x"), 2);
    // A purged its own memory too; B's fresh answer, stored under the new generation, is
    // now what A finds in Redis.
    wait_entries(&redis, 1).await;
    let r = get(&a, "/tagged/x").await;
    assert!(
        eventually(WAIT, || async {
            let r = get(&a, "/tagged/x").await;
            r.text() == "/tagged/x #2" && status(&r).starts_with("cratopus; hit")
        })
        .await,
        "{r:?}"
    );
    assert_eq!(hits(&seen, "/tagged/x"), 2, "A's answer came from B's, through Redis");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_gone_both_nodes_keep_serving() {
    let mut redis = RedisServer::start();
    let (b, seen) = backend().await;
    let (a, bnode) = two_nodes(&b.url(), &[redis.url()], false).await;
    assert!(status(&get(&a, "/kept").await).contains("fwd=miss"));
    wait_entries(&redis, 1).await;
    assert!(status(&get(&bnode, "/kept").await).contains("detail=shared"));

    tokio::task::block_in_place(|| redis.stop());
    for gw in [&a, &bnode] {
        assert!(wait_log(gw, &["second level off"], 1, WAIT).await, "{}", dump(gw));
    }
    for gw in [&a, &bnode] {
        // Memory hits as before.
        let r = get(gw, "/kept").await;
        assert_eq!((r.status, r.text().as_str()), (200, "/kept #1"), "{r:?}");
        assert!(status(&r).starts_with("cratopus; hit"), "{r:?}");
    }
    // Misses go to the backend (one per node: nothing shared now), then hit in memory.
    for gw in [&a, &bnode] {
        let r = get(gw, "/new").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(status(&r).contains("fwd=miss"), "{r:?}");
        assert!(status(&get(gw, "/new").await).starts_with("cratopus; hit"));
    }
    assert_eq!(hits(&seen, "/new"), 2);
    assert_eq!(hits(&seen, "/kept"), 1);
    // A purge still works on the node it was sent to, and says it stayed there.
    let r = purge(&a, "{\"prefix\": \"/new\"}").await;
    assert_eq!((r.status, r.json()["purged"].as_u64()), (200, Some(1)), "{r:?}");
    assert_eq!(r.json()["cluster"], false, "{r:?}");

    // Redis back: the nodes subscribe again and share again.
    tokio::task::block_in_place(|| redis.restart());
    for gw in [&a, &bnode] {
        assert!(wait_log(gw, &["second level on"], 2, WAIT).await, "{}", dump(gw));
    }
    // Redis answers again once the limiter's retry interval has passed: poll until A's
    // answer lands there.
    assert!(
        eventually(WAIT, || async {
            let _ = get(&a, "/later").await;
            entries(&redis) >= 1
        })
        .await
    );
    let r = get(&bnode, "/later").await;
    assert!(status(&r).contains("detail=shared"), "{r:?}");
    assert_eq!(hits(&seen, "/later"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_cluster_is_shared_and_purged_too() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let (b, seen) = backend().await;
    let (a, bnode) = two_nodes(&b.url(), &cluster.urls(), true).await;
    let ports = cluster.ports();
    // Answers spread over the cluster's masters, one key each.
    let paths: Vec<String> = (0..12).map(|i| format!("/tagged/k{i}")).collect();
    for p in &paths {
        assert!(status(&get(&a, p).await).contains("fwd=miss"));
    }
    assert!(
        eventually(WAIT, || async { entries_on(&ports) >= paths.len() }).await,
        "{} entries in the cluster",
        entries_on(&ports)
    );
    let holding = ports
        .iter()
        .filter(|p| matches!(test_support::redis::command(**p, &["DBSIZE"]).map(|r| r.int()), Ok(Some(n)) if n > 0))
        .count();
    assert!(holding >= 2, "the keys spread over the masters ({holding} hold some)");
    for p in &paths {
        let r = get(&bnode, p).await;
        assert!(status(&r).contains("detail=shared"), "{p}: {r:?}");
    }
    assert!(paths.iter().all(|p| hits(&seen, p) == 1));
    // A purge on B (published on whichever master, heard through A's seed) reaches A.
    let r = purge(&bnode, "{\"tag\": \"blue\"}").await;
    assert_eq!(r.json()["cluster"], true, "{r:?}");
    assert!(
        eventually(WAIT, || async {
            status(&get(&a, "/tagged/k0").await).contains("fwd=miss")
        })
        .await,
        "A still serves the purged tag"
    );
    assert_eq!(hits(&seen, "/tagged/k0"), 2);
}
