//! Nodes of a cluster: real gateway processes with a `cluster:` section on one real
//! redis-server, and versions published with the real `cratopus push`. A version answers on
//! every node; a broken one is refused by all (the old one serving, the error in the nodes
//! hash); nodes ride out a Redis restart and catch up; a node restarted with Redis down serves
//! its disk copy; a lost announcement or a dropped subscription costs at most a heartbeat or a
//! resubscription; and swaps under load fail no request. The time from push to every node
//! serving is printed (run with `--nocapture` to see it).

mod common_ops;

use common_ops::{BIN, admin_get, metrics};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use test_support::redis::{RedisServer, Reply as RedisReply};
use test_support::{Gateway, eventually, get};

const TOKEN: &str = "cluster-nodes-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

/// gateway.yaml of node `name`: no organizations of its own, everything from the cluster.
fn node_yaml(name: &str, redis: &str, heartbeat: &str, cache_file: Option<&Path>) -> String {
    let cache = cache_file
        .map(|p| format!("  cache_file: {}\n", p.display()))
        .unwrap_or_default();
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: {TOKEN}\nwatch: false\ncluster:\n  node: {name}\n  redis:\n    urls: [\"{redis}\"]\n    timeout: 2s\n    retry_interval: 200ms\n  heartbeat: {heartbeat}\n{cache}"
    )
}

fn start_node(name: &str, redis: &str, heartbeat: &str, cache_file: Option<&Path>) -> Gateway {
    let yaml = node_yaml(name, redis, heartbeat, cache_file);
    tokio::task::block_in_place(|| Gateway::start(BIN, &yaml, &[]))
}

/// Organization `acme` of version tag `n`: `/stable` in every version, `/v<n>` in this one.
fn org(n: u64) -> String {
    format!(
        "name: acme\nupstreams:\n  m:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /stable\n    upstream: m\n  - path: /v{n}\n    upstream: m\n"
    )
}

/// Runs `cratopus push -c <gateway.yaml> <dir>/acme.yaml` with `text` as the file.
fn push_text(gateway_yaml: &Path, dir: &Path, text: &str) -> Output {
    let file = dir.join("acme.yaml");
    std::fs::write(&file, text).unwrap();
    tokio::task::block_in_place(|| {
        std::process::Command::new(BIN)
            .arg("push")
            .arg("-c")
            .arg(gateway_yaml)
            .arg(&file)
            .output()
            .expect("run cratopus push")
    })
}

/// Pushes [`org`]`(n)`, expecting success; answers the pushed version number.
fn push(gateway_yaml: &Path, dir: &Path, n: u64) -> u64 {
    let out = push_text(gateway_yaml, dir, &org(n));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "push failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pushed_version(&stdout).unwrap_or_else(|| panic!("no version in {stdout}"))
}

fn pushed_version(text: &str) -> Option<u64> {
    text.split("version ").nth(1)?.split_whitespace().next()?.parse().ok()
}

async fn status(gw: &Gateway, path: &str) -> u16 {
    get(&gw.url(path), None).await.status
}

async fn all_serve(nodes: &[&Gateway], path: &str) -> bool {
    for n in nodes {
        if status(n, path).await != 200 {
            return false;
        }
    }
    true
}

async fn cluster_info(gw: &Gateway) -> serde_json::Value {
    admin_get(gw, TOKEN, "/api/cluster").await.json()
}

/// The nodes hash: node name → its JSON line.
fn nodes_hash(redis: &RedisServer) -> Vec<(String, serde_json::Value)> {
    let Ok(RedisReply::Array(Some(items))) = redis.command(&["HGETALL", "cratopus:nodes"]) else {
        return Vec::new();
    };
    items
        .chunks(2)
        .map(|kv| (kv[0].text(), serde_json::from_str(&kv[1].text()).unwrap_or_default()))
        .collect()
}

fn current(redis: &RedisServer) -> Option<i64> {
    redis.command(&["GET", "cratopus:config:current"]).ok()?.int()
}

/// Stores a bundle straight into Redis (as a control plane would), without announcing it
/// unless `announce`.
fn store_bundle(redis: &RedisServer, version: u64, document: serde_json::Value, announce: bool) {
    let bundle = serde_json::json!({"version": version, "organizations": [{"name": "acme", "document": document}]});
    let key = format!("cratopus:config:v:{version}");
    redis.command(&["SET", &key, &bundle.to_string()]).unwrap();
    redis
        .command(&["SET", "cratopus:config:current", &version.to_string()])
        .unwrap();
    if announce {
        redis
            .command(&["PUBLISH", "cratopus:config", &version.to_string()])
            .unwrap();
    }
}

fn mirror_org(path: &str) -> serde_json::Value {
    serde_json::json!({"name": "acme", "upstreams": {"m": {"targets": ["mirror://"]}},
        "routes": [{"path": "/stable", "upstream": "m"}, {"path": path, "upstream": "m"}]})
}

/// Prometheus' own checker reads the exposition without a complaint.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not on PATH; install it: apt-get install -y --no-install-recommends prometheus");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A client loop on `/stable` of every node, counting answers that are not 2xx.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = urls
            .into_iter()
            .map(|url| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let client = test_support::client();
                    while !stop.load(Ordering::Relaxed) {
                        let req = test_support::http::Request::get(&url)
                            .body(test_support::http_body_util::Full::new(
                                test_support::hyper::body::Bytes::new(),
                            ))
                            .unwrap();
                        let status = test_support::send(&client, req).await.status;
                        if (200..300).contains(&status) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pushed_version_answers_on_every_node_and_swaps_fail_no_request() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let nodes: Vec<Gateway> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| start_node(n, &redis.url(), "1s", None))
        .collect();
    let all: Vec<&Gateway> = nodes.iter().collect();
    assert!(nodes[0].wait_for_log("serving this node's own organizations only", WAIT));
    assert_eq!(
        status(&nodes[0], "/stable").await,
        404,
        "nothing to serve before a push"
    );
    let gateway_yaml = nodes[0].path("gateway.yaml");

    let v1 = push(&gateway_yaml, work.path(), 1);
    assert_eq!(v1, 1);
    assert!(
        eventually(WAIT, || all_serve(&all, "/v1")).await,
        "every node serves version 1"
    );
    for n in &nodes {
        let info = cluster_info(n).await;
        assert_eq!(info["version"], 1, "{info}");
        assert_eq!(info["redis_up"], true, "{info}");
        assert_eq!(info["source"], "redis", "{info}");
        let m = metrics(n, TOKEN).await;
        assert!(m.contains("cratopus_cluster_version 1\n"), "{m}");
        assert!(m.contains("cratopus_cluster_redis_up 1\n"), "{m}");
        promtool_accepts(&m);
        // The disk copy, private to the node's user.
        let copy = n.path("cratopus-cluster.json");
        assert!(eventually(WAIT, || async { copy.exists() }).await);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(
        eventually(WAIT, || async {
            let h = nodes_hash(&redis);
            h.len() == 3 && h.iter().all(|(_, v)| v["version"] == 1 && v["error"].is_null())
        })
        .await,
        "every node reports version 1: {:?}",
        nodes_hash(&redis)
    );

    // 20 pushes under a client loop on every node: each swap fails nothing, and each version
    // reaches every node.
    let load = Load::start(nodes.iter().map(|n| n.url("/stable")).collect());
    let mut latencies = Vec::new();
    let mut with_push = Vec::new();
    // CLUSTER_PUSHES=100 for a longer measurement.
    let pushes: u64 = std::env::var("CLUSTER_PUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    for i in 2..=pushes + 1 {
        let invoked = Instant::now();
        let v = push(&gateway_yaml, work.path(), i);
        let pushed = Instant::now();
        let path = format!("/v{i}");
        let mut pending: Vec<&Gateway> = all.clone();
        let deadline = Instant::now() + WAIT;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for n in pending {
                if status(n, &path).await != 200 {
                    still.push(n);
                }
            }
            pending = still;
            assert!(Instant::now() < deadline, "version {v} did not reach every node");
        }
        latencies.push(pushed.elapsed());
        with_push.push(invoked.elapsed());
    }
    let (ok, failed) = load.finish().await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "{failed} of {} requests failed during swaps", ok + failed);
    latencies.sort();
    with_push.sort();
    println!(
        "3 nodes, {} pushes: push exit -> every node serving p50 {:?} max {:?}; push started (check, store, announce) -> every node serving p50 {:?} max {:?}; load during swaps: {ok} requests, {failed} failed",
        latencies.len(),
        percentile(&latencies, 0.5),
        latencies[latencies.len() - 1],
        percentile(&with_push, 0.5),
        with_push[with_push.len() - 1],
    );

    // A node that was not subscribed when the versions were announced starts on the current.
    let last = pushes + 1;
    let late = start_node("n4", &redis.url(), "1s", None);
    assert_eq!(
        status(&late, &format!("/v{last}")).await,
        200,
        "a late node starts on the current version"
    );
    assert_eq!(cluster_info(&late).await["version"], last);
    assert!(late.wait_for_log(&format!("starting on version {last} from redis"), WAIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_version_is_refused_by_every_node_and_the_old_one_serves() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let nodes: Vec<Gateway> = ["b1", "b2"]
        .iter()
        .map(|n| start_node(n, &redis.url(), "500ms", None))
        .collect();
    let all: Vec<&Gateway> = nodes.iter().collect();
    let gateway_yaml = nodes[0].path("gateway.yaml");
    push(&gateway_yaml, work.path(), 1);
    assert!(eventually(WAIT, || all_serve(&all, "/v1")).await);

    // `push` checks first: a broken file is refused at its line and nothing reaches Redis.
    let broken = org(2).replace("upstream: m\n  - path: /v2", "upstream: nowhere\n  - path: /v2");
    let out = push_text(&gateway_yaml, work.path(), &broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("acme.yaml:7"), "{stderr}");
    assert!(
        stderr.contains("nowhere") && stderr.contains("nothing pushed"),
        "{stderr}"
    );
    assert_eq!(current(&redis), Some(1));

    // A broken version stored by someone else (a control plane of another build) is refused
    // by every node, reported at its document's line, and the old version keeps serving.
    let mut bad = mirror_org("/v2");
    bad["routes"][1]["upstream"] = "nowhere".into();
    store_bundle(&redis, 2, bad, true);
    for n in &nodes {
        assert!(n.wait_for_log("version 2 rejected, still running version 1", WAIT));
    }
    assert!(
        eventually(WAIT, || async {
            let h = nodes_hash(&redis);
            h.len() == 2
                && h.iter().all(|(_, v)| {
                    v["version"] == 1 && v["error"].as_str().is_some_and(|e| e.contains("cluster/v2/acme.json:"))
                })
        })
        .await,
        "every node reports the refusal: {:?}",
        nodes_hash(&redis)
    );
    assert!(all_serve(&all, "/v1").await, "the old version serves");
    assert_eq!(status(&nodes[0], "/v2").await, 404);
    let info = cluster_info(&nodes[1]).await;
    assert_eq!(info["version"], 1);
    assert!(info["last_error"].as_str().unwrap().contains("nowhere"), "{info}");
    assert!(
        metrics(&nodes[0], TOKEN)
            .await
            .contains("cratopus_cluster_rejected_total 1\n")
    );

    // The next good version goes in everywhere and clears the error.
    let v = push(&gateway_yaml, work.path(), 3);
    assert_eq!(v, 3);
    assert!(eventually(WAIT, || all_serve(&all, "/v3")).await);
    assert!(
        eventually(WAIT, || async {
            nodes_hash(&redis)
                .iter()
                .all(|(_, v)| v["version"] == 3 && v["error"].is_null())
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_keep_serving_without_redis_and_catch_up_after_its_restart() {
    let mut redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let nodes: Vec<Gateway> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| start_node(n, &redis.url(), "500ms", None))
        .collect();
    let all: Vec<&Gateway> = nodes.iter().collect();
    let gateway_yaml = nodes[0].path("gateway.yaml");
    push(&gateway_yaml, work.path(), 1);
    assert!(eventually(WAIT, || all_serve(&all, "/v1")).await);

    redis.stop();
    for n in &nodes {
        assert!(
            eventually(WAIT, || async { cluster_info(n).await["redis_up"] == false }).await,
            "the node notices"
        );
    }
    for _ in 0..20 {
        assert!(all_serve(&all, "/v1").await, "nodes serve their version without Redis");
    }

    // Redis comes back empty (it persists nothing here): the nodes report themselves again,
    // and a push numbers its version above theirs, which they all take.
    redis.restart();
    assert!(
        eventually(WAIT, || async { nodes_hash(&redis).len() == 3 }).await,
        "every node reports again"
    );
    let v = push(&gateway_yaml, work.path(), 2);
    assert!(v > 1, "numbered above the nodes' version, got {v}");
    assert!(eventually(WAIT, || all_serve(&all, "/v2")).await, "all catch up");
    for n in &nodes {
        assert_eq!(cluster_info(n).await["version"], v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_with_redis_down_serves_its_disk_copy() {
    let mut redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("last-good.json");
    let node = start_node("d1", &redis.url(), "500ms", Some(&copy));
    let gateway_yaml = node.path("gateway.yaml");
    push(&gateway_yaml, work.path(), 1);
    assert!(eventually(WAIT, || async { status(&node, "/v1").await == 200 }).await);
    assert!(eventually(WAIT, || async { copy.exists() }).await);
    drop(node);
    redis.stop();

    let node = start_node("d1", &redis.url(), "500ms", Some(&copy));
    assert_eq!(status(&node, "/v1").await, 200, "serves the disk copy from the start");
    assert!(node.wait_for_log("starting on version 1 from the disk copy", WAIT));
    let info = cluster_info(&node).await;
    assert_eq!(info["source"], "disk", "{info}");
    assert_eq!(info["version"], 1, "{info}");

    // Without a copy either, the node still starts, on its own organizations, and says so.
    let fresh = start_node("d2", &redis.url(), "500ms", Some(&work.path().join("none.json")));
    assert!(fresh.wait_for_log("serving this node's own organizations only", WAIT));
    assert_eq!(status(&fresh, "/v1").await, 404);
    assert_eq!(cluster_info(&fresh).await["source"], "local");

    // Redis back: both take the next version.
    redis.restart();
    assert!(
        eventually(WAIT, || async { nodes_hash(&redis).len() == 2 }).await,
        "both nodes report again"
    );
    push(&node.path("gateway.yaml"), work.path(), 2);
    let both = [&node, &fresh];
    assert!(eventually(WAIT, || all_serve(&both, "/v2")).await);
    assert_eq!(cluster_info(&node).await["source"], "redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_announcement_is_caught_up_at_the_next_heartbeat() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let node = start_node("h1", &redis.url(), "300ms", None);
    push(&node.path("gateway.yaml"), work.path(), 1);
    assert!(eventually(WAIT, || async { status(&node, "/v1").await == 200 }).await);

    // The node reports at every heartbeat.
    let seen = |redis: &RedisServer| nodes_hash(redis).first().and_then(|(_, v)| v["seen_ms"].as_u64());
    let first = seen(&redis);
    assert!(first.is_some());
    assert!(
        eventually(WAIT, || async { seen(&redis) > first }).await,
        "seen_ms moves on"
    );

    // Stored and made current, never announced: only the heartbeat's check can find it.
    store_bundle(&redis, 2, mirror_org("/v2"), false);
    assert!(eventually(WAIT, || async { status(&node, "/v2").await == 200 }).await);
    assert!(node.wait_for_log("running version 2", WAIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_subscription_is_renewed_and_catches_up() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    // A heartbeat far beyond the test's deadline: only the renewed subscription's catch-up
    // can bring the next version in.
    let node = start_node("s1", &redis.url(), "10m", None);
    push(&node.path("gateway.yaml"), work.path(), 1);
    assert!(eventually(WAIT, || async { status(&node, "/v1").await == 200 }).await);

    store_bundle(&redis, 2, mirror_org("/v2"), false);
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    // The config follower's subscription, and the certificate follower's beside it.
    assert!(
        killed.int().is_some_and(|n| n >= 1),
        "the node's subscription was dropped ({killed:?})"
    );
    assert!(node.wait_for_log("subscribed again", WAIT));
    assert!(eventually(WAIT, || async { status(&node, "/v2").await == 200 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pushers_never_take_the_same_number() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let gateway_yaml = work.path().join("gateway.yaml");
    std::fs::write(&gateway_yaml, node_yaml("p", &redis.url(), "1s", None)).unwrap();
    let spawn = |n: u64| -> std::process::Child {
        let dir: PathBuf = work.path().join(format!("p{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("acme.yaml");
        std::fs::write(&file, org(n)).unwrap();
        std::process::Command::new(BIN)
            .arg("push")
            .arg("-c")
            .arg(&gateway_yaml)
            .arg(&file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(1), spawn(2));
    let outs: Vec<Output> =
        tokio::task::block_in_place(|| [a, b].into_iter().map(|c| c.wait_with_output().unwrap()).collect());
    let numbers: Vec<u64> = outs
        .iter()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            pushed_version(&text).unwrap_or_else(|| panic!("no version in {text}"))
        })
        .collect();
    assert_ne!(numbers[0], numbers[1], "{numbers:?}");
    assert!(outs.iter().any(|o| o.status.success()));
    assert_eq!(current(&redis), numbers.iter().max().map(|&n| n as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_reload_keeps_the_cluster_version_and_a_version_keeps_the_files() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let local = |path: &str| {
        format!(
            "name: local\ndomains: [local.test]\nupstreams:\n  m:\n    targets: [\"mirror://\"]\nroutes:\n  - path: {path}\n    upstream: m\n"
        )
    };
    let yaml = node_yaml("f1", &redis.url(), "1s", None)
        .replace("watch: false\n", "watch: true\norganizations: orgs/*.yaml\n");
    let node = tokio::task::block_in_place(|| Gateway::start(BIN, &yaml, &[("orgs/local.yaml", &local("/a"))]));
    let on_local = |path: &'static str| {
        let url = node.url(path);
        async move { get(&url, Some("local.test")).await.status == 200 }
    };
    let on_acme = |path: &'static str| {
        let url = node.url(path);
        async move { get(&url, Some("acme.test")).await.status }
    };
    // Beside another organization, the cluster's needs a domain of its own.
    let push_acme = |n: u64| {
        let text = org(n).replace("name: acme\n", "name: acme\ndomains: [acme.test]\n");
        let out = push_text(&node.path("gateway.yaml"), work.path(), &text);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    assert!(
        on_local("/a").await,
        "the node's own organization serves before any version"
    );
    push_acme(1);
    assert!(eventually(WAIT, || async { on_acme("/v1").await == 200 }).await);

    // An edit of the node's own file: the cluster's organizations stay.
    node.write_file("orgs/local.yaml", &local("/b"));
    assert!(eventually(WAIT, || on_local("/b")).await, "the file change is in");
    assert_eq!(on_acme("/v1").await, 200, "the cluster version stayed");
    assert_eq!(cluster_info(&node).await["version"], 1);

    // A new version: the node's own files stay.
    push_acme(2);
    assert!(eventually(WAIT, || async { on_acme("/v2").await == 200 }).await);
    assert!(on_local("/b").await, "the file's organization stayed");
    assert_eq!(on_acme("/v1").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_follow_a_redis_cluster() {
    let redis = test_support::redis::RedisCluster::start();
    let work = tempfile::tempdir().unwrap();
    let urls: Vec<String> = redis.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let nodes: Vec<Gateway> = ["c1", "c2"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            // Each node names the seeds in another order: they subscribe on different masters.
            let mut seeds = urls.clone();
            seeds.rotate_left(i);
            let yaml =
                node_yaml(n, "X", "1s", None).replace("[\"X\"]", &format!("[{}]\n    cluster: true", seeds.join(", ")));
            tokio::task::block_in_place(|| Gateway::start(BIN, &yaml, &[]))
        })
        .collect();
    let all: Vec<&Gateway> = nodes.iter().collect();
    let gateway_yaml = nodes[0].path("gateway.yaml");
    for n in 1..=3 {
        push(&gateway_yaml, work.path(), n);
        let path = format!("/v{n}");
        assert!(
            eventually(WAIT, || all_serve(&all, &path)).await,
            "version {n} on every node"
        );
    }
    for n in &nodes {
        assert_eq!(cluster_info(n).await["version"], 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_runs_as_it_is() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    let node_yaml = std::fs::read_to_string(examples.join("node.yaml")).unwrap();
    let check = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(examples.join("node.yaml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let cache_dir = work.path().display().to_string();
    let nodes: Vec<Gateway> = ["edge-1", "edge-2"]
        .iter()
        .map(|name| {
            let env = [
                ("CRATOPUS_BIND", "127.0.0.1:0"),
                ("CRATOPUS_ADMIN_BIND", "127.0.0.1:0"),
                ("NODE", name),
                ("REDIS_URL", &redis.url()),
                ("CACHE_DIR", &cache_dir),
            ];
            tokio::task::block_in_place(|| Gateway::start_with_env(BIN, &node_yaml, &[], &env))
        })
        .collect();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(BIN)
            .arg("push")
            .arg("-c")
            .arg(examples.join("node.yaml"))
            .args(["--redis", &redis.url()])
            .arg(examples.join("orgs/shop.yaml"))
            .output()
            .unwrap()
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all: Vec<&Gateway> = nodes.iter().collect();
    assert!(eventually(WAIT, || all_serve(&all, "/hello")).await);
    let copy = work.path().join("cratopus-edge-2.json");
    assert!(
        eventually(WAIT, || async { copy.exists() }).await,
        "each node's own disk copy"
    );
}

/// A TCP relay to Redis whose "network" can be cut: while cut, and forever for every connection
/// that was open or opened during a cut, bytes are swallowed and nothing is closed (a black hole,
/// as when a NAT or firewall loses a connection's state). Connections made after the cut heals
/// work.
struct CutProxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    /// Incremented at every cut: a connection accepted under an older number is dead after it.
    epoch: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(to: u16) -> CutProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (c, e) = (cut.clone(), epoch.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                // Dead from the start if accepted during a cut.
                let born = if c.load(Ordering::SeqCst) {
                    u64::MAX
                } else {
                    e.load(Ordering::SeqCst)
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(sr), Box::new(cw)),
                ] {
                    let (c, e) = (c.clone(), e.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let alive = !c.load(Ordering::SeqCst) && born == e.load(Ordering::SeqCst);
                            if alive && to.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        if born == e.load(Ordering::SeqCst) {
                            let _ = to.shutdown().await;
                        } else {
                            // A black hole never closes.
                            std::future::pending::<()>().await;
                        }
                    });
                }
            }
        });
        CutProxy { addr, cut, epoch, task }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.cut.store(true, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_a_cut_network_serves_on_and_catches_up_when_it_heals() {
    let redis = RedisServer::start();
    let proxy = CutProxy::start(redis.port()).await;
    let work = tempfile::tempdir().unwrap();
    let node = start_node("x1", &proxy.url(), "500ms", None);
    push(&node.path("gateway.yaml"), work.path(), 1);
    assert!(eventually(WAIT, || async { status(&node, "/v1").await == 200 }).await);
    assert!(eventually(WAIT, || async { cluster_info(&node).await["subscribed"] == true }).await);

    // The cut: no connection closes, nothing arrives. Version 2 is stored and announced on the
    // Redis side; the node cannot see it, notices that Redis does not answer, and serves on.
    proxy.cut();
    store_bundle(&redis, 2, mirror_org("/v2"), true);
    assert!(
        eventually(WAIT, || async { cluster_info(&node).await["redis_up"] == false }).await,
        "the node notices"
    );
    assert_eq!(status(&node, "/v1").await, 200, "and serves on");
    assert_eq!(status(&node, "/v2").await, 404);

    // Healed: new connections work, the old ones stay dead. The node subscribes again and
    // catches up.
    proxy.heal();
    assert!(eventually(WAIT, || async { status(&node, "/v2").await == 200 }).await);
    assert!(node.wait_for_log("subscribed again", WAIT));
    assert!(eventually(WAIT, || async { cluster_info(&node).await["subscribed"] == true }).await);
}

#[test]
fn push_says_why_it_pushed_nothing() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("acme.yaml");
    std::fs::write(&file, org(1)).unwrap();
    let run = |gateway: &str, extra: &[&str]| {
        let yaml = work.path().join("gateway.yaml");
        std::fs::write(&yaml, gateway).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("push")
            .arg("-c")
            .arg(&yaml)
            .args(extra)
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dead = format!("redis://127.0.0.1:{}", test_support::dead_port());
    let err = run(&node_yaml("p", &dead, "1s", None), &[]);
    assert!(
        err.starts_with("error: cannot reach redis at") && err.contains("nothing pushed"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line, no log noise: {err}");
    let without_cluster = "listeners:\n  - bind: 127.0.0.1:0\n";
    let err = run(without_cluster, &[]);
    assert!(err.contains("give --redis URL"), "{err}");
    let err = run(without_cluster, &["--redis", "http://x"]);
    assert!(err.contains("error"), "{err}");
}
