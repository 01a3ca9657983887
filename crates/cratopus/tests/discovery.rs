//! Service discovery and shared target state, against real servers started by the tests: a
//! dnsmasq serving SRV records, an etcd read through its HTTP/JSON gateway, and (for the
//! cluster's shared target state) a redis-server with two gateway nodes.
//!
//! Targets are added and removed while a client loop runs; not one request may fail.

mod common_ops;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common_ops::{TestBackend, dump, gateway_with_org_files, load_until, start_gateway, tally};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use test_support::{Gateway, eventually, free_port, get};

const WAIT: Duration = Duration::from_secs(20);
const TAKEN_OUT: &str = "target is unhealthy, taken out";
const ADMIN_TOKEN: &str = "t0ken-t0ken-t0ken";

/// A dnsmasq in the foreground on a loopback port, answering only the records it is given.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    /// `records`: (SRV name, target host, port, priority, weight); every target host resolves
    /// to 127.0.0.1.
    fn start(port: u16, records: &[(&str, &str, u16, u16, u16)]) -> Dnsmasq {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "-k",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--local-ttl=0",
            // The test's zone is this server's own: a name without records gets NXDOMAIN
            // (with no upstream server, dnsmasq would answer REFUSED, a failure).
            "--local=/disc.test/",
        ])
        .arg(format!("--port={port}"));
        let mut hosts: Vec<&str> = Vec::new();
        for (name, host, p, prio, weight) in records {
            cmd.arg(format!("--srv-host={name},{host},{p},{prio},{weight}"));
            if !hosts.contains(host) {
                hosts.push(host);
            }
        }
        for h in hosts {
            cmd.arg(format!("--host-record={h},127.0.0.1"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (apt-get install dnsmasq-base)");
        Dnsmasq { child, port }
    }

    /// Serves `records` instead (a restart on the same port: queries meanwhile fail, which the
    /// gateway must ride out on its last known targets).
    fn change(&mut self, records: &[(&str, &str, u16, u16, u16)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Dnsmasq::start(self.port, records);
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A single-member etcd on loopback ports, its data in a temp dir.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    async fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--name", "t"])
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (apt-get install etcd-server)");
        let etcd = Etcd { child, url, _dir: dir };
        let ready = eventually(WAIT, || async {
            etcd.post("/v3/kv/range", serde_json::json!({"key": B64.encode("x")}))
                .await
                .is_some()
        })
        .await;
        assert!(ready, "etcd did not start");
        etcd
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Option<serde_json::Value> {
        let client = test_support::client();
        let req = test_support::http::Request::post(format!("{}{path}", self.url))
            .body(test_support::http_body_util::Full::new(body.to_string().into()))
            .ok()?;
        let res = client.request(req).await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        use test_support::http_body_util::BodyExt;
        let bytes = res.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&bytes).ok()
    }

    async fn put(&self, key: &str, value: &str) {
        let r = self
            .post(
                "/v3/kv/put",
                serde_json::json!({"key": B64.encode(key), "value": B64.encode(value)}),
            )
            .await;
        assert!(r.is_some(), "etcd put {key}");
    }

    async fn delete(&self, key: &str) {
        let r = self
            .post("/v3/kv/deleterange", serde_json::json!({"key": B64.encode(key)}))
            .await;
        assert!(r.is_some(), "etcd delete {key}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `backend` answers requests through the gateway (or, with `false`, until it
/// stopped getting any out of 20 in a row).
async fn wait_serving(gw: &Gateway, name: &str, serving: bool) -> bool {
    let url = gw.url("/x");
    eventually(WAIT, || {
        let url = url.clone();
        async move {
            let mut seen = Vec::new();
            for _ in 0..20 {
                let r = get(&url, None).await;
                seen.push(r.header("x-backend").unwrap_or("-").to_string());
            }
            seen.iter().any(|s| s == name) == serving
        }
    })
    .await
}

/// Every outcome of a load run was a 200 from a backend.
fn assert_no_failure(outcomes: &[Result<(u16, String), String>], gw: &Gateway) {
    let failed: Vec<_> = outcomes.iter().filter(|o| !matches!(o, Ok((200, _)))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, first: {:?}{}",
        failed.len(),
        outcomes.len(),
        failed.first(),
        dump(gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_srv_targets_follow_the_records_and_keep_their_health() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let (pa, pb, pc) = (a.addr().port(), b.addr().port(), c.addr().port());
    let name = "_http._tcp.users.disc.test";
    let port = free_port();
    let mut dns = Dnsmasq::start(
        port,
        &[
            (name, "a.disc.test", pa, 10, 1),
            (name, "b.disc.test", pb, 10, 1),
            (name, "c.disc.test", pc, 20, 1),
        ],
    );
    let org = format!(
        "name: acme
upstreams:
  users:
    discovery:
      dns_srv: {{name: {name}, resolver: '127.0.0.1:{port}', refresh: 200ms}}
    health_check: {{type: http, path: /health, interval: 100ms, timeout: 2s, unhealthy_threshold: 1, healthy_threshold: 1}}
routes:
  - path: /{{*rest}}
    upstream: users
"
    );
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &org)]);
    // c has a higher priority value: a backup, not used while a and b are listed.
    assert!(
        wait_serving(&gw, "a", true).await && wait_serving(&gw, "b", true).await,
        "a and b serve{}",
        dump(&gw)
    );
    let seen = tally(&common_ops::backends_of_n(&gw, &gw.url("/x"), 40).await);
    assert!(!seen.contains_key("c"), "the backup record got requests: {seen:?}");
    assert_eq!(seen.get("a"), seen.get("b"), "equal SRV weights: {seen:?}");

    // b fails its health check and is taken out.
    b.knobs.set_health(500);
    assert!(gw.wait_for_log(TAKEN_OUT, WAIT), "b taken out{}", dump(&gw));

    // Records change under load: c joins at a's priority, a leaves, b stays (unhealthy).
    let (stop, load) = start_load(&gw);
    let checks = b.knobs.health_checks.load(std::sync::atomic::Ordering::SeqCst);
    dns.change(&[(name, "b.disc.test", pb, 10, 1), (name, "c.disc.test", pc, 10, 1)]);
    assert!(wait_serving(&gw, "c", true).await, "c serves{}", dump(&gw));
    assert!(wait_serving(&gw, "a", false).await, "a no longer serves{}", dump(&gw));
    let outcomes = stop_load(stop, load).await;
    assert_no_failure(&outcomes, &gw);
    assert!(outcomes.len() > 50, "the load ran: {}", outcomes.len());
    let a_hits = a.knobs.hits();
    // b stayed out the whole time: the target that stays keeps its health state, so it is
    // neither put back in (as a fresh target would be) nor taken out a second time.
    let checked = eventually(WAIT, || async {
        b.knobs.health_checks.load(std::sync::atomic::Ordering::SeqCst) >= checks + 5
    })
    .await;
    assert!(checked, "b is still checked");
    assert_eq!(
        gw.log_lines_with(TAKEN_OUT).len(),
        1,
        "b was taken out once{}",
        dump(&gw)
    );
    assert!(
        outcomes.iter().all(|o| !matches!(o, Ok((_, n)) if n == "b")),
        "b got requests while unhealthy"
    );
    let seen = tally(&common_ops::backends_of_n(&gw, &gw.url("/x"), 20).await);
    assert_eq!(seen.get("c"), Some(&20), "{seen:?}");
    assert_eq!(a.knobs.hits(), a_hits, "a left the records but got requests");

    // Every record goes: the server says there are none, so the upstream has no target left.
    dns.change(&[("_http._tcp.other.disc.test", "c.disc.test", pc, 10, 1)]);
    let empty = eventually(WAIT, || async { get(&gw.url("/x"), None).await.status == 503 }).await;
    assert!(empty, "no record, no target{}", dump(&gw));
    dns.change(&[(name, "c.disc.test", pc, 10, 1)]);
    assert!(wait_serving(&gw, "c", true).await, "c is back{}", dump(&gw));

    // The DNS server goes away: the last known targets stay.
    drop(dns);
    assert!(
        gw.wait_for_log("service discovery failed; keeping the last known targets", WAIT),
        "the failure is logged{}",
        dump(&gw)
    );
    let seen = tally(&common_ops::backends_of_n(&gw, &gw.url("/x"), 20).await);
    assert_eq!(seen.get("c"), Some(&20), "{seen:?}");
}

type Load = tokio::task::JoinHandle<Vec<Result<(u16, String), String>>>;

/// A client loop on 4 connections against the gateway until [`stop_load`].
fn start_load(gw: &Gateway) -> (tokio::sync::oneshot::Sender<()>, Load) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(load_until(gw.url("/x"), 4, async move {
        let _ = rx.await;
    }));
    (tx, load)
}

async fn stop_load(stop: tokio::sync::oneshot::Sender<()>, load: Load) -> Vec<Result<(u16, String), String>> {
    let _ = stop.send(());
    load.await.expect("load task")
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_targets_follow_the_keys_under_load_and_survive_an_etcd_outage() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let etcd = Etcd::start().await;
    etcd.put("/services/users/a", &a.url()).await;
    etcd.put(
        "/services/users/b",
        &format!(r#"{{"url": "{}", "weight": 1}}"#, b.url()),
    )
    .await;
    etcd.put("/services/orders/x", "http://127.0.0.1:1").await;
    let org = format!(
        "name: acme
upstreams:
  users:
    discovery:
      etcd: {{endpoints: ['{}'], prefix: /services/users/, refresh: 200ms}}
routes:
  - path: /{{*rest}}
    upstream: users
",
        etcd.url
    );
    let admin = format!("admin:\n  bind: 127.0.0.1:0\n  token: {ADMIN_TOKEN}\n");
    let gw = start_gateway(&gateway_with_org_files(&admin), &[("orgs/acme.yaml", &org)]);
    assert!(
        wait_serving(&gw, "a", true).await && wait_serving(&gw, "b", true).await,
        "a and b serve{}",
        dump(&gw)
    );

    let (stop, load) = start_load(&gw);
    let c_addr = c.addr();
    etcd.put(
        "/services/users/c",
        &format!(r#"{{"host": "{}", "port": {}}}"#, c_addr.ip(), c_addr.port()),
    )
    .await;
    assert!(wait_serving(&gw, "c", true).await, "c joins{}", dump(&gw));
    etcd.delete("/services/users/a").await;
    assert!(wait_serving(&gw, "a", false).await, "a leaves{}", dump(&gw));
    let outcomes = stop_load(stop, load).await;
    assert_no_failure(&outcomes, &gw);
    let seen: std::collections::BTreeSet<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(_, n)| n.clone()))
        .collect();
    assert!(seen.contains("c") && seen.contains("b"), "{seen:?}");

    // etcd goes away: the gateway keeps b and c.
    drop(etcd);
    assert!(
        gw.wait_for_log("service discovery failed; keeping the last known targets", WAIT),
        "the failure is logged{}",
        dump(&gw)
    );
    let seen = tally(&common_ops::backends_of_n(&gw, &gw.url("/x"), 20).await);
    assert_eq!(
        seen.get("b").unwrap_or(&0) + seen.get("c").unwrap_or(&0),
        20,
        "{seen:?}"
    );
    // A reload that changes the upstream (a new pool) while etcd is away keeps the targets
    // etcd last gave.
    gw.write_file(
        "orgs/acme.yaml",
        &org.replace("  users:\n", "  users:\n    max_idle_per_target: 100\n"),
    );
    gw.signal("HUP");
    assert!(gw.wait_for_log("config reloaded", WAIT), "reloaded{}", dump(&gw));
    let seen = tally(&common_ops::backends_of_n(&gw, &gw.url("/x"), 20).await);
    assert_eq!(
        seen.get("b").unwrap_or(&0) + seen.get("c").unwrap_or(&0),
        20,
        "after the reload: {seen:?}"
    );
    let m = common_ops::metrics(&gw, ADMIN_TOKEN).await;
    assert!(
        m.contains("cratopus_discovery_targets{org=\"acme\",upstream=\"users\"} 2"),
        "{m}"
    );
    let failures = m
        .lines()
        .find_map(|l| l.strip_prefix("cratopus_discovery_failures_total{org=\"acme\",upstream=\"users\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 1), "{m}");
}

/// gateway.yaml of a cluster node named `node` on `redis`.
fn cluster_node(node: &str, redis: &test_support::redis::RedisServer, org: &str) -> Gateway {
    let extra = format!(
        "watch: false\nadmin:\n  bind: 127.0.0.1:0\n  token: {ADMIN_TOKEN}\ncluster:\n  node: {node}\n  redis:\n    urls: ['{}']\n    timeout: 2s\n    retry_interval: 300ms\n",
        redis.url()
    );
    start_gateway(&gateway_with_org_files(&extra), &[("orgs/acme.yaml", org)])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_one_node_finds_down_is_taken_out_on_the_other_at_once() {
    let redis = test_support::redis::RedisServer::start();
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let org = |interval: &str| {
        format!(
            "name: acme
upstreams:
  users:
    targets: ['{}', '{}']
    health_check: {{type: http, path: /health, interval: {interval}, timeout: 2s, unhealthy_threshold: 1, healthy_threshold: 1}}
routes:
  - path: /{{*rest}}
    upstream: users
",
            a.url(),
            b.url()
        )
    };
    // Node A checks every 100 ms; node B every 10 minutes (its first check is at start).
    let node_a = cluster_node("node-a", &redis, &org("100ms"));
    let node_b = cluster_node("node-b", &redis, &org("10m"));
    assert!(
        wait_serving(&node_b, "b", true).await,
        "B sends to b at first{}",
        dump(&node_b)
    );
    // Both nodes subscribe when they start; wait until A's announcements would reach B.
    let subscribed = eventually(WAIT, || async {
        test_support::redis::command(redis.port(), &["PUBSUB", "NUMSUB", "cratopus:targets"])
            .map(|r| format!("{r:?}").contains("Int(2)"))
            .unwrap_or(false)
    })
    .await;
    assert!(subscribed, "both nodes subscribe to cratopus:targets");

    b.knobs.set_health(500);
    assert!(node_a.wait_for_log(TAKEN_OUT, WAIT), "A takes b out{}", dump(&node_a));
    assert!(
        node_b.wait_for_log("target down on another node's word", WAIT),
        "B hears of it{}",
        dump(&node_b)
    );
    let hits = b.knobs.hits();
    let seen = tally(&common_ops::backends_of_n(&node_b, &node_b.url("/x"), 20).await);
    assert_eq!(seen.get("a"), Some(&20), "B still sent to b: {seen:?}{}", dump(&node_b));
    assert_eq!(b.knobs.hits(), hits);
    assert!(
        node_b.log_lines_with(TAKEN_OUT).is_empty(),
        "B's own check did not run meanwhile"
    );
    // The admin API tells why: healthy by B's own check, down on the cluster's word.
    let targets = common_ops::targets(&node_b, ADMIN_TOKEN).await;
    let tb = targets
        .iter()
        .find(|t| t["target"] == b.addr().to_string())
        .expect("b listed");
    assert_eq!(
        (tb["healthy"].as_bool(), tb["cluster_down"].as_bool()),
        (Some(true), Some(true)),
        "{tb}"
    );

    // b recovers: A's check says so, and B sends to it again.
    b.knobs.set_health(200);
    assert!(
        node_b.wait_for_log("target up again on another node's word", WAIT),
        "B hears b is back{}",
        dump(&node_b)
    );
    assert!(
        wait_serving(&node_b, "b", true).await,
        "B sends to b again{}",
        dump(&node_b)
    );
    drop(node_a);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_connections_counts_the_other_nodes_requests() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use test_support::http::Response;
    use test_support::http_body_util::Full;
    use test_support::hyper::body::Bytes;
    let redis = test_support::redis::RedisServer::start();
    // Both backends answer `/x` at once; `/slow` is held until the test ends.
    let release = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(AtomicUsize::new(0));
    let backend = |name: &'static str| {
        let release = release.clone();
        let held = held.clone();
        test_support::Backend::start(move |req, _| {
            let release = release.clone();
            let held = held.clone();
            async move {
                if req.uri().path() == "/slow" {
                    held.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                }
                Response::builder()
                    .header("x-backend", name)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }
        })
    };
    let a = backend("a").await;
    let b = backend("b").await;
    let org = format!(
        "name: acme
upstreams:
  users:
    balance: least_connections
    targets: ['{}', '{}']
routes:
  - path: /{{*rest}}
    upstream: users
",
        a.url(),
        b.url()
    );
    let node_a = cluster_node("node-a", &redis, &org);
    let node_b = cluster_node("node-b", &redis, &org);
    // Two requests held on node A: least-connections puts one on each target.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let url = node_a.url("/slow");
        slow.push(tokio::spawn(async move { get(&url, None).await }));
        let n = slow.len();
        assert!(eventually(WAIT, || async { held.load(Ordering::SeqCst) >= n }).await);
    }
    // A third on whichever target it picks holds it at two.
    let url = node_a.url("/slow");
    slow.push(tokio::spawn(async move { get(&url, None).await }));
    assert!(eventually(WAIT, || async { held.load(Ordering::SeqCst) >= 3 }).await);
    let counts = test_support::redis::command(redis.port(), &["HGETALL", "cratopus:inflight:node-a"]);
    // Node B, with nothing in flight itself, sends every request to the target A loads less.
    let url_b = node_b.url("/x");
    let shared = eventually(WAIT, || {
        let url_b = url_b.clone();
        async move {
            let seen = tally(&backends_at(&url_b, 20).await);
            seen.len() == 1
        }
    })
    .await;
    assert!(
        shared,
        "B balances on A's in-flight counts ({counts:?}){}",
        dump(&node_b)
    );
    let seen = tally(&common_ops::backends_of_n(&node_b, &url_b, 20).await);
    let report = test_support::redis::command(redis.port(), &["HGETALL", "cratopus:inflight:node-a"])
        .map(|r| format!("{r:?}"))
        .unwrap_or_default();
    // The target B avoids is the one with two of A's requests.
    let busy_addr = if seen.contains_key("a") { b.addr } else { a.addr };
    assert!(
        report.contains(&format!("Bulk(Some(\"acme/users|{busy_addr}\")), Bulk(Some(\"2\"))")),
        "{report}"
    );
    release.notify_waiters();
    for s in slow {
        let _ = s.await;
    }
}

/// The `x-backend` of `n` GETs of `url`, one after the other.
async fn backends_at(url: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(url, None).await.header("x-backend").unwrap_or("-").to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_path_segment_names_the_service() {
    use test_support::http::Response;
    use test_support::http_body_util::Full;
    use test_support::hyper::body::Bytes;
    // Each backend answers with its name and the path it was sent.
    let backend = |name: &'static str| {
        test_support::Backend::start(move |req, _| async move {
            Response::builder()
                .header("x-backend", name)
                .header("x-path", req.uri().path())
                .body(Full::new(Bytes::new()))
                .unwrap()
        })
    };
    let users = backend("users").await;
    let orders = backend("orders").await;
    let port = free_port();
    let _dns = Dnsmasq::start(
        port,
        &[
            ("_http._tcp.users.svc.test", "users.svc.test", users.addr.port(), 10, 1),
            (
                "_http._tcp.orders.svc.test",
                "orders.svc.test",
                orders.addr.port(),
                10,
                1,
            ),
        ],
    );
    let org = format!(
        "name: acme
upstreams:
  services:
    discovery:
      dns_srv: {{name: '_http._tcp.{{service}}.svc.test', resolver: '127.0.0.1:{port}', refresh: 200ms}}
routes:
  - path: /{{*rest}}
    upstream: services
    service_from_path: true
"
    );
    let gw = start_gateway(&gateway_with_org_files(""), &[("orgs/acme.yaml", &org)]);
    for (path, name) in [
        ("/users/123", "users"),
        ("/orders/9?x=1", "orders"),
        ("/users", "users"),
    ] {
        let r = get(&gw.url(path), None).await;
        assert_eq!(r.status, 200, "{path}: {}{}", r.text(), dump(&gw));
        assert_eq!(r.header("x-backend"), Some(name), "{path}");
        // The path goes upstream as it came, the service's segment included.
        assert_eq!(r.header("x-path"), path.split('?').next(), "{path}");
    }
    // No such service, or no service name at all: 503 with the gateway's JSON error.
    for path in ["/nobody/1", "/", "/.hidden/x", "/a%20b/c"] {
        let r = get(&gw.url(path), None).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "no_healthy_target", "{path}: {}", r.text());
    }
    assert!(gw.wait_for_log("service found", WAIT));
}

/// The registry source against the real `cratopus control` (on a real PostgreSQL): instances
/// register and heartbeat through its API, deregister, or stop heartbeating and run out of
/// their TTL; the gateway's targets follow while load runs, and no request fails.
#[tokio::test(flavor = "multi_thread")]
async fn registry_instances_become_targets() {
    use test_support::control::ControlPlane;
    use test_support::postgres::PostgresServer;
    use test_support::redis::RedisServer;
    const OPERATOR: &str = "reg-token-0123456789";
    let pg = PostgresServer::start();
    pg.create_database("control");
    let redis = RedisServer::start();
    let control = tokio::task::block_in_place(|| {
        ControlPlane::start(
            common_ops::BIN,
            &format!(
                "bind: 127.0.0.1:0\ndatabase: {}\nredis: {{urls: [\"{}\"]}}\noperator_token: {OPERATOR}\n",
                pg.url("control"),
                redis.url()
            ),
            &[],
        )
    });
    // One call to the registry API as the operator; its status.
    let registry = |method: &'static str, id: &'static str, body: Option<serde_json::Value>| {
        let path = format!("/api/v1/registry/services/users/instances/{id}");
        let control = &control;
        async move { control.call(method, &path, OPERATOR, body, &[]).await.status }
    };
    let register = |id: &'static str, url: String, ttl: &'static str| async move {
        let status = registry("PUT", id, Some(serde_json::json!({"url": url, "ttl": ttl}))).await;
        assert_eq!(status, 200, "register {id}");
    };
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    register("a", a.url(), "1h").await;

    let org = format!(
        "name: acme
upstreams:
  users:
    discovery:
      registry: {{url: '{}', token: '${{REGISTRY_TOKEN}}', service: users, refresh: 200ms}}
routes:
  - path: /{{*rest}}
    upstream: users
",
        control.url("")
    );
    let gw = tokio::task::block_in_place(|| {
        Gateway::start_with_env(
            common_ops::BIN,
            &gateway_with_org_files(""),
            &[("orgs/acme.yaml", &org)],
            &[("REGISTRY_TOKEN", OPERATOR)],
        )
    });
    assert!(wait_serving(&gw, "a", true).await, "a serves{}", dump(&gw));
    let (stop, load) = start_load(&gw);
    register("b", b.url(), "1h").await;
    assert!(wait_serving(&gw, "b", true).await, "b registers{}", dump(&gw));
    // a deregisters (DELETE): its requests move to b.
    assert_eq!(registry("DELETE", "a", None).await, 200, "deregister a");
    assert!(wait_serving(&gw, "a", false).await, "a deregisters{}", dump(&gw));
    // c registers with a short TTL and never heartbeats: it serves, then runs out.
    register("c", c.url(), "5s").await;
    assert!(wait_serving(&gw, "c", true).await, "c registers{}", dump(&gw));
    assert!(wait_serving(&gw, "c", false).await, "c's TTL runs out{}", dump(&gw));
    let outcomes = stop_load(stop, load).await;
    assert_no_failure(&outcomes, &gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejection_on_one_node_holds_on_the_other_for_the_ejection_time() {
    let redis = test_support::redis::RedisServer::start();
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let org = |outlier: &str| {
        format!(
            "name: acme
upstreams:
  users:
    targets: ['{}', '{}']
{outlier}routes:
  - path: /{{*rest}}
    upstream: users
",
            a.url(),
            b.url()
        )
    };
    // Only node A detects outliers; B has no means of its own to notice b failing.
    let node_a = cluster_node(
        "node-a",
        &redis,
        &org("    outlier_detection: {consecutive_5xx: 2, base_ejection_time: 1s}\n"),
    );
    let node_b = cluster_node("node-b", &redis, &org(""));
    let subscribed = eventually(WAIT, || async {
        test_support::redis::command(redis.port(), &["PUBSUB", "NUMSUB", "cratopus:targets"])
            .map(|r| format!("{r:?}").contains("Int(2)"))
            .unwrap_or(false)
    })
    .await;
    assert!(subscribed, "both nodes subscribe to cratopus:targets");

    b.knobs.set_status(500);
    let url_a = node_a.url("/x");
    let ejected = eventually(WAIT, || {
        let url_a = url_a.clone();
        let gw = &node_a;
        async move {
            get(&url_a, None).await;
            gw.log_lines_with("target ejected (outlier detection)").len() == 1
        }
    })
    .await;
    assert!(ejected, "A ejects b{}", dump(&node_a));
    assert!(
        node_b.wait_for_log("cause=outlier", WAIT),
        "B hears of the ejection{}",
        dump(&node_b)
    );
    let seen = tally(&backends_at(&node_b.url("/x"), 20).await);
    assert_eq!(seen.get("a"), Some(&20), "B sent to the ejected target: {seen:?}");
    // The mark runs out with the ejection time.
    assert!(
        node_b.wait_for_log("another node's down mark ran out", WAIT),
        "B's mark runs out{}",
        dump(&node_b)
    );
    b.knobs.set_status(200);
    assert!(
        wait_serving(&node_b, "b", true).await,
        "B sends to b again{}",
        dump(&node_b)
    );
}
