//! Certificates in a cluster: gateway nodes with `cluster:` on one real redis-server.
//!
//! - ACME against a real pebble: one node orders (the lock in Redis), pebble's HTTP-01
//!   validations are sent to the *other* node (a TCP relay in front of the nodes picks, at each
//!   connection, the node that does not hold the lock), which answers from Redis; both nodes
//!   serve the certificate (checked with a rustls client against pebble's root), and both swap
//!   in the renewed one.
//! - Certificates written to the store as the control plane uploads them: served by every node
//!   without a restart (exact and wildcard names), below an organization's own files, replaced
//!   and deleted live, read at start by a node started later, and served from the disk copy by a
//!   node started while Redis is down.
//! - `key_type: ecdsa_p384` gives a P-384 certificate; a token written to Redis is answered, an
//!   unknown one is 404.

mod common_ops;

use common_ops::{BIN, count_log, dump, wait_log};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use test_support::pebble::Pebble;
use test_support::redis::RedisServer;
use test_support::tls::{ClientOpts, KeyKind, TestCa, der_of, handshake};
use test_support::{Gateway, eventually};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "acme-cluster-token-0123456789";
/// An ACME order against pebble on a loaded machine.
const ORDER_WAIT: Duration = Duration::from_secs(90);

fn start(yaml: &str, files: &[(&str, &str)]) -> Gateway {
    tokio::task::block_in_place(|| Gateway::start(BIN, yaml, files))
}

fn redis_cmd(redis: &RedisServer, args: &[&str]) -> test_support::redis::Reply {
    redis.command(args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
}

/// A mirror organization with `domains` and extra `tls` YAML (indented under `tls:`).
fn org(name: &str, domains: &[&str], tls: Option<&str>) -> String {
    let mut s = format!(
        "  - name: {name}\n    domains: [{}]\n    upstreams:\n      m: {{targets: [\"mirror://\"]}}\n    routes:\n      - {{path: \"/{{*rest}}\", upstream: m}}\n",
        domains
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(t) = tls {
        s.push_str("    tls:\n");
        for l in t.lines() {
            s.push_str(&format!("      {l}\n"));
        }
    }
    s
}

/// A node's gateway.yaml: a plain HTTP listener, an HTTPS listener, the cluster on `redis`,
/// ACME settings (when `acme` is given, indented under `tls.acme:`) and `orgs`.
fn node_yaml(node: &str, redis: &RedisServer, acme: Option<&str>, orgs: &str) -> String {
    let acme = acme.map_or(String::new(), |a| {
        let mut s = "tls:\n  acme:\n".to_string();
        for l in a.lines() {
            s.push_str(&format!("    {l}\n"));
        }
        s
    });
    format!(
        "listeners:
  - {{name: http, bind: \"127.0.0.1:0\", redirect_http_to_https: true}}
  - {{name: https, bind: \"127.0.0.1:0\", tls: true}}
admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}
cluster:
  node: {node}
  redis: {{urls: [\"{url}\"], timeout: 1s}}
  heartbeat: 1s
{acme}organizations:
{orgs}",
        url = redis.url()
    )
}

fn pebble_acme(pebble: &Pebble, extra: &str) -> String {
    format!(
        "directory: {}\ndirectory_ca: {}\nstorage: acme-store\nretry_base: 1s\n{extra}",
        pebble.directory_url,
        pebble.ca_pem.display()
    )
}

/// GET `path` on a node's admin API.
async fn admin(gw: &Gateway, path: &str) -> test_support::Reply {
    common_ops::get_with(
        &test_support::client(),
        &format!("http://{}{path}", gw.addrs()[2]),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await
}

/// The leaf a node serves for `name`, verified against `roots` (an error when the handshake
/// fails or the chain does not verify).
async fn served(gw: &Gateway, name: &str, roots: &[&str]) -> Result<Vec<u8>, String> {
    let (_, hs) = handshake(gw.addrs()[1], name, &ClientOpts::trusting(roots)).await?;
    Ok(hs.leaf)
}

/// openssl's description of a DER certificate.
fn describe(der: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().expect("stdin").write_all(der).expect("write der");
    let out = child.wait_with_output().expect("openssl output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The nodes a relay sends to: name and plain HTTP address (filled once they run).
type Nodes = Arc<Mutex<Vec<(String, std::net::SocketAddr)>>>;

/// A TCP relay on a loopback port, for pebble's HTTP-01 validations: each connection goes to
/// the node that does NOT hold the ACME lock of `domain` at that moment. Records
/// (lock holder, node it was sent to) per connection.
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<(String, String)>>>,
}

async fn relay(redis_port: u16, domain: &str, nodes: Nodes) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let port = listener.local_addr().expect("relay addr").port();
    let sent: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let lock_key = format!("cratopus:acme:lock:{domain}");
    let log = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            // A node may order before the other one runs: hold the connection until both do.
            let nodes = nodes.clone();
            let both_known = eventually(WAIT, || async { nodes.lock().unwrap().len() >= 2 }).await;
            assert!(both_known, "the nodes never started");
            let key = lock_key.clone();
            let holder = tokio::task::spawn_blocking(move || test_support::redis::command(redis_port, &["GET", &key]))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|r| r.text())
                .unwrap_or_default();
            let holder = holder.split('/').next().unwrap_or_default().to_string();
            let target = nodes.lock().unwrap().iter().find(|(n, _)| *n != holder).cloned();
            let Some((to, addr)) = target else {
                continue;
            };
            log.lock().unwrap().push((holder, to));
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    Relay { port, sent }
}

/// One order for the cluster, validated on the node that did not order; both nodes serve the
/// certificate and both swap in the renewal.
#[tokio::test(flavor = "multi_thread")]
async fn one_order_for_the_cluster_answered_by_the_other_node_served_and_renewed_on_both() {
    let redis = tokio::task::block_in_place(RedisServer::start);
    // The relay's port is pebble's HTTP-01 port; it learns the nodes' ports once they run.
    let nodes = Nodes::default();
    let relay = relay(redis.port(), "api.gw.test", nodes.clone()).await;
    let pebble = tokio::task::block_in_place(|| Pebble::start(relay.port, 0));
    // Renewal is always due (renew_before longer than the lifetime), and held off by
    // retry_max after each certificate the cluster stored: one renewal every 15 s.
    let acme = pebble_acme(&pebble, "renew_before: 3650d\nretry_max: 15s\n");
    let shop = org("shop", &["gw.test", "api.gw.test"], Some("acme: {email: ops@gw.test}"));
    let a = start(&node_yaml("node-a", &redis, Some(&acme), &shop), &[]);
    let b = start(&node_yaml("node-b", &redis, Some(&acme), &shop), &[]);
    nodes.lock().unwrap().extend([
        ("node-a".to_string(), a.addrs()[0]),
        ("node-b".to_string(), b.addrs()[0]),
    ]);
    let logs = |a: &Gateway, b: &Gateway| format!("{}{}\n--- pebble ---\n{}", dump(a), dump(b), pebble.log());

    // Both nodes serve the same certificate, chained to pebble's root, for both names.
    let roots = [pebble.root_pem.as_str()];
    let started = std::time::Instant::now();
    let both = eventually(ORDER_WAIT, || async {
        let (Ok(la), Ok(lb)) = (
            served(&a, "api.gw.test", &roots).await,
            served(&b, "gw.test", &roots).await,
        ) else {
            return false;
        };
        la == lb
    })
    .await;
    assert!(both, "both nodes serve pebble's certificate{}", logs(&a, &b));
    let first = served(&a, "api.gw.test", &roots).await.expect("served");
    eprintln!(
        "first certificate served by both nodes {:?} after they started",
        started.elapsed()
    );
    // Exactly one node ordered it.
    let orders = count_log(&a, &["ordering an ACME certificate"]) + count_log(&b, &["ordering an ACME certificate"]);
    let issued =
        count_log(&a, &["ACME certificate issued and served"]) + count_log(&b, &["ACME certificate issued and served"]);
    assert_eq!((orders, issued), (1, 1), "one order for the cluster{}", logs(&a, &b));
    let (orderer, other) = if count_log(&a, &["ordering an ACME certificate"]) == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // pebble's validations (one per name) reached the node that did not order, which answered
    // from Redis; the ordering node was asked nothing.
    let sent = relay.sent.lock().unwrap().clone();
    assert!(sent.len() >= 2, "{sent:?}");
    assert!(
        sent.iter().all(|(holder, to)| !holder.is_empty() && holder != to),
        "{sent:?}"
    );
    assert!(
        count_log(other, &["answering an ACME HTTP-01 challenge"]) >= 2,
        "{}",
        logs(&a, &b)
    );
    assert_eq!(count_log(orderer, &["answering an ACME HTTP-01 challenge"]), 0);
    assert!(
        wait_log(
            other,
            &["cluster certificate loaded", "name=api.gw.test", "acme_adopted=true"],
            1,
            WAIT
        )
        .await,
        "{}",
        logs(&a, &b)
    );
    // P-256 by default.
    assert!(describe(&first).contains("P-256"), "{}", describe(&first));
    // Stored for the cluster, indexed, the lock released, the challenges removed.
    let record: serde_json::Value =
        serde_json::from_str(&redis_cmd(&redis, &["GET", "cratopus:cert:api.gw.test"]).text()).expect("record");
    assert_eq!(record["source"], "acme");
    assert_eq!(record["domains"], serde_json::json!(["api.gw.test", "gw.test"]));
    assert!(
        redis_cmd(&redis, &["HGET", "cratopus:certs", "api.gw.test"])
            .int()
            .is_some()
    );
    let no_lock = eventually(WAIT, || async {
        redis_cmd(&redis, &["EXISTS", "cratopus:acme:lock:api.gw.test"]).int() == Some(0)
            && redis_cmd(&redis, &["KEYS", "cratopus:acme:challenge:*"])
                == test_support::redis::Reply::Array(Some(vec![]))
    })
    .await;
    assert!(no_lock, "lock released and challenges removed");

    // Renewal: a new certificate replaces the first on both nodes.
    let renewed = eventually(ORDER_WAIT, || async {
        let (Ok(la), Ok(lb)) = (
            served(&a, "api.gw.test", &roots).await,
            served(&b, "api.gw.test", &roots).await,
        ) else {
            return false;
        };
        la == lb && la != first
    })
    .await;
    assert!(renewed, "both nodes swap in the renewal{}", logs(&a, &b));
    assert!(
        count_log(&a, &["ordering an ACME certificate", "renewing=true"])
            + count_log(&b, &["ordering an ACME certificate", "renewing=true"])
            >= 1
    );
    // Never two orders at once: each order was made under the lock, by one node.
    let sent = relay.sent.lock().unwrap().clone();
    assert!(
        sent.iter().all(|(holder, to)| !holder.is_empty() && holder != to),
        "{sent:?}"
    );
}

/// A record as the control plane writes it, stored, indexed and announced.
fn upload(redis: &RedisServer, name: &str, domains: &[&str], pem: &test_support::tls::Pem) {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let record = serde_json::json!({
        "name": name, "domains": domains, "cert_pem": pem.cert, "key_pem": pem.key,
        "not_after": null, "source": "upload", "updated_ms": ms.parse::<u64>().unwrap(),
    });
    redis_cmd(redis, &["SET", &format!("cratopus:cert:{name}"), &record.to_string()]);
    redis_cmd(redis, &["HSET", "cratopus:certs", name, &ms]);
    redis_cmd(redis, &["PUBLISH", "cratopus:certs", name]);
}

/// Uploaded certificates reach every node without a restart, below an organization's own files.
#[tokio::test(flavor = "multi_thread")]
async fn uploaded_certificates_reach_every_node_live_below_the_organizations_own_files() {
    let redis = tokio::task::block_in_place(RedisServer::start);
    let ca = TestCa::new("upload CA");
    let own_ca = TestCa::new("own files CA");
    let own = own_ca.server(&["own.test"], KeyKind::EcdsaP256);
    let orgs = format!(
        "{}{}{}",
        org("shop", &["shop.test", "*.shop.test"], None),
        org("own", &["own.test"], Some("cert: own.pem\nkey: own.key")),
        org("keep", &["keep.test"], None),
    );
    let files = [("own.pem", own.cert.as_str()), ("own.key", own.key.as_str())];
    let a = start(&node_yaml("node-a", &redis, None, &orgs), &files);
    let b = start(&node_yaml("node-b", &redis, None, &orgs), &files);
    let roots = [ca.cert_pem.as_str(), own_ca.cert_pem.as_str()];
    // Nothing for shop.test yet: no default certificate, so the handshake is refused.
    assert!(served(&a, "shop.test", &roots).await.is_err());

    let first = ca.server(&["shop.test", "*.shop.test"], KeyKind::EcdsaP256);
    let stolen = ca.server(&["own.test"], KeyKind::EcdsaP256);
    upload(&redis, "shop.test", &["shop.test", "*.shop.test"], &first);
    upload(&redis, "own.test", &["own.test"], &stolen);
    let keep = ca.server(&["keep.test"], KeyKind::EcdsaP256);
    upload(&redis, "keep.test", &["keep.test"], &keep);
    for gw in [&a, &b] {
        let ok = eventually(WAIT, || async {
            served(gw, "shop.test", &roots).await.ok() == Some(der_of(&first.cert))
                && served(gw, "www.shop.test", &roots).await.ok() == Some(der_of(&first.cert))
        })
        .await;
        assert!(
            ok,
            "the upload is served for the exact name and the wildcard{}",
            dump(gw)
        );
        assert!(
            wait_log(gw, &["cluster certificate loaded", "name=own.test"], 1, WAIT).await,
            "{}",
            dump(gw)
        );
        // The organization's own file wins over the store.
        assert_eq!(served(gw, "own.test", &roots).await.unwrap(), der_of(&own.cert));
    }
    let pid_a = a.pid();
    // Listed by the admin API and exported with the certificates' expiry.
    let all_three = eventually(WAIT, || async {
        admin(&a, "/api/certificates").await.json()["cluster"]
            .as_array()
            .map(Vec::len)
            == Some(3)
    })
    .await;
    assert!(all_three, "{}", dump(&a));
    let listed = admin(&a, "/api/certificates").await.json();
    let names: Vec<&str> = listed["cluster"]
        .as_array()
        .expect("cluster list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["keep.test", "own.test", "shop.test"], "{listed}");
    assert_eq!(listed["cluster"][2]["source"], "upload", "{listed}");
    assert_eq!(
        listed["cluster"][2]["domains"],
        serde_json::json!(["shop.test", "*.shop.test"])
    );
    let metrics = admin(&a, "/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cratopus_certificate_expiry_timestamp_seconds{")
                && l.contains("source=\"cluster\"")
                && l.contains("shop.test")),
        "{metrics}"
    );

    // Replaced: every node swaps it in.
    let second = ca.server(&["shop.test", "*.shop.test"], KeyKind::Rsa2048);
    let announced = std::time::Instant::now();
    upload(&redis, "shop.test", &["shop.test", "*.shop.test"], &second);
    for gw in [&a, &b] {
        let ok = eventually(WAIT, || async {
            served(gw, "api.shop.test", &roots).await.ok() == Some(der_of(&second.cert))
        })
        .await;
        assert!(ok, "the replacement is served{}", dump(gw));
    }
    // A measurement for the notes, not a condition (includes this test's own handshakes).
    eprintln!(
        "replacement served by both nodes {:?} after it was announced",
        announced.elapsed()
    );
    assert_eq!(a.pid(), pid_a, "no restart");

    // A node started later reads every stored certificate at start.
    let c = start(&node_yaml("node-c", &redis, None, &orgs), &files);
    let ok = eventually(WAIT, || async {
        served(&c, "shop.test", &roots).await.ok() == Some(der_of(&second.cert))
    })
    .await;
    assert!(ok, "{}", dump(&c));
    let copied = eventually(WAIT, || async { c.path("acme/cluster/shop.test.json").exists() }).await;
    assert!(copied, "a disk copy{}", dump(&c));
    let copy = std::fs::read_to_string(c.path("acme/cluster/shop.test.json")).expect("disk copy");
    let mode = std::fs::metadata(c.path("acme/cluster/shop.test.json"))
        .unwrap()
        .permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    drop(c);

    // Deleted: no node serves it any more.
    redis_cmd(&redis, &["DEL", "cratopus:cert:shop.test"]);
    redis_cmd(&redis, &["HDEL", "cratopus:certs", "shop.test"]);
    redis_cmd(&redis, &["PUBLISH", "cratopus:certs", "shop.test"]);
    for gw in [&a, &b] {
        let gone = eventually(WAIT, || async { served(gw, "shop.test", &roots).await.is_err() }).await;
        assert!(gone, "{}", dump(gw));
    }

    // With Redis down, the nodes keep what they serve, and a node that starts serves its disk
    // copy.
    for gw in [&a, &b] {
        let ok = eventually(WAIT, || async {
            served(gw, "keep.test", &roots).await.ok() == Some(der_of(&keep.cert))
        })
        .await;
        assert!(ok, "{}", dump(gw));
    }
    let mut redis = redis;
    tokio::task::block_in_place(|| redis.stop());
    for gw in [&a, &b] {
        assert!(
            wait_log(gw, &["the cluster's certificate channel closed"], 1, WAIT).await,
            "{}",
            dump(gw)
        );
        assert_eq!(served(gw, "keep.test", &roots).await.unwrap(), der_of(&keep.cert));
        assert_eq!(served(gw, "own.test", &roots).await.unwrap(), der_of(&own.cert));
    }
    let d = start(
        &node_yaml("node-d", &redis, None, &orgs),
        &[files[0], files[1], ("acme/cluster/shop.test.json", copy.as_str())],
    );
    assert!(
        wait_log(&d, &["cluster certificate loaded", "name=shop.test"], 1, WAIT).await,
        "{}",
        dump(&d)
    );
    assert_eq!(served(&d, "shop.test", &roots).await.unwrap(), der_of(&second.cert));
}

/// `key_type: ecdsa_p384` gives a P-384 certificate, and a change of key type replaces it;
/// challenges are answered from Redis.
#[tokio::test(flavor = "multi_thread")]
async fn p384_keys_a_key_type_change_and_challenges_from_redis() {
    let redis = tokio::task::block_in_place(RedisServer::start);
    let http_port = test_support::free_port();
    let pebble = tokio::task::block_in_place(|| Pebble::start(http_port, 0));
    let acme = pebble_acme(&pebble, "retry_max: 2s\n");
    let shop = org(
        "shop",
        &["p384.test"],
        Some("acme: {email: ops@p384.test, key_type: ecdsa_p384}"),
    );
    let yaml = node_yaml("node-a", &redis, Some(&acme), &shop).replace(
        "bind: \"127.0.0.1:0\", redirect_http_to_https: true",
        &format!("bind: \"127.0.0.1:{http_port}\", redirect_http_to_https: true"),
    );
    let gw = start(&yaml, &[]);
    let roots = [pebble.root_pem.as_str()];
    let ok = eventually(ORDER_WAIT, || async { served(&gw, "p384.test", &roots).await.is_ok() }).await;
    assert!(ok, "{}\n--- pebble ---\n{}", dump(&gw), pebble.log());
    let leaf = served(&gw, "p384.test", &roots).await.unwrap();
    let text = describe(&leaf);
    assert!(text.contains("P-384"), "{text}");
    assert!(
        count_log(&gw, &["ordering an ACME certificate", "EcdsaP384"]) == 1,
        "{}",
        dump(&gw)
    );

    // Another key type asked for: the certificate is replaced (once retry_max has passed).
    gw.write_file(
        "gateway.yaml",
        &yaml.replace("key_type: ecdsa_p384", "key_type: ecdsa_p256"),
    );
    let replaced = eventually(ORDER_WAIT, || async {
        served(&gw, "p384.test", &roots)
            .await
            .is_ok_and(|leaf| describe(&leaf).contains("P-256"))
    })
    .await;
    assert!(replaced, "{}", dump(&gw));

    // A token another node wrote to Redis is answered; an unknown one is 404.
    redis_cmd(
        &redis,
        &[
            "SET",
            "cratopus:acme:challenge:tok-123_x",
            "tok-123_x.thumb",
            "EX",
            "600",
        ],
    );
    let r = test_support::get(
        &format!("http://127.0.0.1:{http_port}/.well-known/acme-challenge/tok-123_x"),
        Some("p384.test"),
    )
    .await;
    assert_eq!((r.status, r.text()), (200, "tok-123_x.thumb".to_string()));
    let r = test_support::get(
        &format!("http://127.0.0.1:{http_port}/.well-known/acme-challenge/unknown"),
        Some("p384.test"),
    )
    .await;
    assert_eq!(r.status, 404);
}

/// The example of the docs' "Certificates in a cluster" passes `cratopus check --strict`.
#[test]
fn the_cluster_acme_example_passes_check_strictly() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster/acme.yaml");
    let out = std::process::Command::new(BIN)
        .args(["check", "--strict", "-c"])
        .arg(&example)
        .output()
        .expect("run cratopus check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
