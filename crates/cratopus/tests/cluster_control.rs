//! The cloud edition end to end: a real PostgreSQL, a real redis-server, one control plane and
//! three gateway nodes, all real processes on loopback. A route added through the control
//! plane's API answers on all three nodes (the time from the API's answer to the last node
//! serving it is printed for 100 changes: run with `--nocapture`); with Redis gone the nodes
//! serve their version, and after Redis and the control plane come back a new change reaches
//! every node; with the control plane gone traffic flows on; a node restarted while Redis is
//! down serves its disk copy; the control plane lists the nodes and the version each runs.

mod common_ops;

use common_ops::BIN;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::control::ControlPlane;
use test_support::postgres::PostgresServer;
use test_support::redis::RedisServer;
use test_support::{Gateway, Reply, eventually, get};

const OPERATOR: &str = "operator-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

fn control_yaml(pg: &PostgresServer, redis: &RedisServer) -> String {
    format!(
        "bind: 127.0.0.1:0\ndatabase: {}\nredis: {{urls: [\"{}\"], timeout: 500ms}}\noperator_token: {OPERATOR}\nrepublish_interval: 200ms\n",
        pg.url("control"),
        redis.url()
    )
}

/// A node with no organizations of its own, a short heartbeat, and its disk copy in `dir`.
fn node_yaml(name: &str, redis: &RedisServer, dir: &Path) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nwatch: false\ncluster:\n  node: {name}\n  redis:\n    urls: [\"{}\"]\n    timeout: 1s\n    retry_interval: 200ms\n  heartbeat: 500ms\n  cache_file: {}\n",
        redis.url(),
        dir.join(format!("{name}.json")).display()
    )
}

fn start_node(name: &str, redis: &RedisServer, dir: &Path) -> Gateway {
    let yaml = node_yaml(name, redis, dir);
    tokio::task::block_in_place(|| Gateway::start(BIN, &yaml, &[]))
}

async fn api(cp: &ControlPlane, method: &str, path: &str, body: Option<Value>) -> Reply {
    cp.call(method, path, OPERATOR, body, &[]).await
}

async fn serves(node: &Gateway, path: &str) -> bool {
    get(&node.url(path), Some("api.acme.test")).await.status == 200
}

async fn all_serve(nodes: &[&Gateway], path: &str) -> bool {
    for n in nodes {
        if !serves(n, path).await {
            return false;
        }
    }
    true
}

/// Adds route `/r{i}` through the API; the time from the API's answer until every node
/// serves it.
async fn add_route_and_time(cp: &ControlPlane, nodes: &[&Gateway], i: usize) -> Duration {
    let path = format!("/r{i}");
    let res = api(
        cp,
        "PUT",
        &format!("/api/v1/organizations/acme/routes/r{i}"),
        Some(json!({"path": path, "upstream": "m"})),
    )
    .await;
    assert!(res.status == 200 || res.status == 201, "{}: {}", res.status, res.text());
    let answered = Instant::now();
    let mut pending: Vec<&Gateway> = nodes.to_vec();
    let deadline = answered + WAIT;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for n in pending {
            if !serves(n, &path).await {
                still.push(n);
            }
        }
        pending = still;
        assert!(Instant::now() < deadline, "route {path} did not reach every node");
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    answered.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_through_the_control_plane_reaches_three_nodes_and_survives_outages() {
    let pg = tokio::task::block_in_place(PostgresServer::start);
    pg.create_database("control");
    let mut redis = tokio::task::block_in_place(RedisServer::start);
    let cp_yaml = control_yaml(&pg, &redis);
    let mut cp = tokio::task::block_in_place(|| ControlPlane::start(BIN, &cp_yaml, &[]));
    let disk = tempfile::tempdir().unwrap();
    let a = start_node("edge-a", &redis, disk.path());
    let b = start_node("edge-b", &redis, disk.path());
    let mut c = start_node("edge-c", &redis, disk.path());

    let created = api(
        &cp,
        "POST",
        "/api/v1/organizations",
        Some(json!({"name": "acme", "domains": ["api.acme.test"],
            "upstreams": {"m": {"targets": ["mirror://"]}},
            "routes": [{"name": "root", "path": "/", "upstream": "m"}]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(
        eventually(WAIT, || async { all_serve(&[&a, &b, &c], "/").await }).await,
        "the organization did not reach every node"
    );

    // 100 changes, each timed from the API's answer to the last of three nodes serving it.
    let changes: usize = std::env::var("CLUSTER_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut times: Vec<Duration> = Vec::with_capacity(changes);
    for i in 0..changes {
        times.push(add_route_and_time(&cp, &[&a, &b, &c], i).await);
    }
    times.sort();
    println!(
        "control plane -> 3 nodes, {changes} route changes: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1])
    );

    // The control plane lists the three nodes, each on its newest version (one version for
    // the organization, one per change).
    assert!(
        eventually(WAIT, || async {
            let nodes = api(&cp, "GET", "/api/v1/nodes", None).await.json();
            let list = nodes["nodes"].as_array().cloned().unwrap_or_default();
            nodes["current"].as_u64() == Some(changes as u64 + 1)
                && list.len() == 3
                && list
                    .iter()
                    .all(|n| n["current"] == json!(true) && n["last_seen"].is_string())
        })
        .await,
        "{}",
        api(&cp, "GET", "/api/v1/nodes", None).await.text()
    );

    // The control plane gone: traffic flows on.
    cp.kill();
    assert!(all_serve(&[&a, &b, &c], &format!("/r{}", changes - 1)).await);

    // Redis gone too: the nodes serve their version.
    tokio::task::block_in_place(|| redis.stop());
    assert!(all_serve(&[&a, &b, &c], "/r0").await);

    // A node restarted while Redis is down starts from its disk copy.
    drop(c);
    c = start_node("edge-c", &redis, disk.path());
    assert!(serves(&c, "/r0").await, "the restarted node serves its disk copy");
    assert!(
        c.wait_for_log("from the disk copy", Duration::from_secs(5)),
        "{:?}",
        c.logs()
    );

    // Redis and the control plane back: a new change reaches every node.
    tokio::task::block_in_place(|| redis.restart());
    cp = tokio::task::block_in_place(|| ControlPlane::start(BIN, &cp_yaml, &[]));
    let after = add_route_and_time(&cp, &[&a, &b, &c], changes).await;
    println!(
        "after Redis and the control plane came back: {:.1} ms to every node",
        ms(after)
    );
    assert!(all_serve(&[&a, &b, &c], "/r0").await, "earlier routes still served");
}
