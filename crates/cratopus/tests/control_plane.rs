//! `cratopus control`, the control plane, against a real PostgreSQL and a real redis-server:
//! CRUD through the API and every write compiled as `cratopus check` compiles (a bad route is
//! refused with the check's message), versions with their audit record and diff, restore,
//! If-Match, tenant isolation over every path of the OpenAPI document, publishing to Redis
//! (version key, current number, the channel message), republishing after a Redis outage,
//! migrations applied once by two control planes starting together, certificates, tokens,
//! the registry and the node list.

mod common_ops;

use common_ops::BIN;
use serde_json::{Value, json};
use std::time::Duration;
use test_support::control::ControlPlane;
use test_support::postgres::PostgresServer;
use test_support::redis::{RedisServer, Reply as RedisReply};
use test_support::{Reply, eventually};

const OPERATOR: &str = "operator-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    pg: PostgresServer,
    redis: RedisServer,
    cp: ControlPlane,
}

fn control_yaml(pg: &PostgresServer, redis: &RedisServer) -> String {
    format!(
        "bind: 127.0.0.1:0\ndatabase: {}\nredis: {{urls: [\"{}\"], timeout: 500ms}}\noperator_token: ${{CP_TEST_TOKEN:-{OPERATOR}}}\nrepublish_interval: 200ms\n",
        pg.url("control"),
        redis.url()
    )
}

fn start() -> Env {
    let pg = PostgresServer::start();
    pg.create_database("control");
    let redis = RedisServer::start();
    let cp = ControlPlane::start(BIN, &control_yaml(&pg, &redis), &[]);
    Env { pg, redis, cp }
}

/// One API call with a bearer token, optional JSON body and extra headers.
async fn call(
    cp: &ControlPlane,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    cp.call(method, path, token, body, headers).await
}

async fn op(cp: &ControlPlane, method: &str, path: &str, body: Option<Value>) -> Reply {
    call(cp, method, path, OPERATOR, body, &[]).await
}

fn acme() -> Value {
    json!({"name": "acme", "domains": ["api.acme.test"],
        "upstreams": {"m": {"targets": ["mirror://"]}},
        "routes": [{"name": "root", "path": "/", "upstream": "m"}]})
}

fn redis_get(redis: &RedisServer, key: &str) -> Option<String> {
    match redis.command(&["GET", key]).ok()? {
        RedisReply::Bulk(s) => s,
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_through_the_api_and_a_bad_route_is_refused_with_the_check_message() {
    let env = start();
    let cp = &env.cp;
    let r = op(cp, "POST", "/api/v1/organizations", Some(acme())).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-config-version"), Some("1"));
    assert!(r.header("etag").is_some());
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 409);

    // Resources one by one.
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/upstreams/users",
        Some(json!({"targets": ["mirror://"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/users",
        Some(json!({"path": "/users/{*rest}", "upstream": "users"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["name"], "users", "the path names the route");
    let r = op(cp, "GET", "/api/v1/organizations/acme/routes", None).await;
    let names: Vec<Value> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("root"), json!("users")], "routes keep their order");
    let r = op(cp, "PUT", "/api/v1/organizations/acme/domains/www.acme.test", None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = op(cp, "PUT", "/api/v1/organizations/acme/consumers/alice", Some(json!({"tier": "gold", "keys": ["sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], "alice", "the path names the consumer");
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/policies/slow",
        Some(json!({"rate_limit": {"limits": [{"rate": 10, "per": "1s"}]}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let doc = op(cp, "GET", "/api/v1/organizations/acme", None).await.json();
    assert_eq!(doc["domains"], json!(["api.acme.test", "www.acme.test"]));
    assert_eq!(doc["upstreams"]["users"]["targets"], json!(["mirror://"]));

    // A route to an upstream that does not exist: refused with the compile's message, placed
    // in the version's document, and nothing is written.
    let before = op(cp, "GET", "/api/v1/versions", None).await.json()["current"].clone();
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/bad",
        Some(json!({"path": "/bad", "upstream": "nowhere"})),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"]["code"], "invalid_config");
    let problem = body["error"]["problems"][0].as_str().unwrap().to_string();
    assert!(problem.starts_with("cluster/v"), "{problem}");
    assert!(
        problem.contains("/acme.json:") && problem.contains("nowhere"),
        "{problem}"
    );
    assert_eq!(op(cp, "GET", "/api/v1/versions", None).await.json()["current"], before);
    assert_eq!(
        op(cp, "GET", "/api/v1/organizations/acme/routes/bad", None)
            .await
            .status,
        404
    );

    // An unknown field is the config's own error too.
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/upstreams/users",
        Some(json!({"targets": ["mirror://"], "colour": "blue"})),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("colour"), "{}", r.text());

    // A document with an unnamed route: the API needs route names.
    let mut unnamed = acme();
    unnamed["routes"] = json!([{"path": "/", "upstream": "m"}]);
    let r = op(cp, "PUT", "/api/v1/organizations/acme", Some(unnamed)).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("`name` is required"), "{}", r.text());

    // Bad bodies and missing tokens.
    let r = call(cp, "PUT", "/api/v1/organizations/acme/routes/x", OPERATOR, None, &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        call(cp, "GET", "/api/v1/organizations", "wrong-token", None, &[])
            .await
            .status,
        401
    );

    // Deletes.
    let r = op(cp, "DELETE", "/api/v1/organizations/acme/routes/users", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        op(cp, "GET", "/api/v1/organizations/acme/routes/users", None)
            .await
            .status,
        404
    );
    let r = op(cp, "DELETE", "/api/v1/organizations/acme", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(op(cp, "GET", "/api/v1/organizations/acme", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_carry_their_audit_record_and_diff_and_an_old_one_is_restored() {
    let env = start();
    let cp = &env.cp;
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/root",
        Some(json!({"path": "/v2", "upstream": "m"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/extra",
        Some(json!({"path": "/extra", "upstream": "m"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());

    let list = op(cp, "GET", "/api/v1/versions", None).await.json();
    assert_eq!(list["current"], 3);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["version"], 3);
    assert_eq!(items[0]["kind"], "route");
    assert_eq!(items[0]["name"], "extra");
    assert_eq!(items[0]["action"], "create");
    assert_eq!(items[0]["who"], "operator");
    assert_eq!(items[2]["action"], "create");
    assert_eq!(items[2]["kind"], "organization");

    let v2 = op(cp, "GET", "/api/v1/versions/2", None).await.json();
    assert_eq!(v2["audit"]["action"], "update");
    assert_eq!(
        v2["audit"]["diff"],
        json!([{"op": "replace", "path": "/acme/routes/0/path", "value": "/v2"}]),
        "an RFC 6902 patch from version 1"
    );
    assert_eq!(v2["bundle"]["version"], 2);
    assert_eq!(op(cp, "GET", "/api/v1/versions/99", None).await.status, 404);

    let r = op(cp, "POST", "/api/v1/versions/1/restore", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"version": 4, "restored": 1}));
    let doc = op(cp, "GET", "/api/v1/organizations/acme", None).await.json();
    assert_eq!(doc, acme(), "version 1's document is back");
    let v4 = op(cp, "GET", "/api/v1/versions/4", None).await.json();
    assert_eq!(v4["audit"]["action"], "restore");
    assert_eq!(v4["audit"]["kind"], "version");
    assert_eq!(v4["audit"]["name"], "1");
    assert_eq!(
        v4["bundle"]["organizations"],
        op(cp, "GET", "/api/v1/versions/1", None).await.json()["bundle"]["organizations"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_a_stale_if_match_is_refused_with_412() {
    let env = start();
    let cp = &env.cp;
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    let read = op(cp, "GET", "/api/v1/organizations/acme/routes/root", None).await;
    let etag = read.header("etag").unwrap().to_string();
    // Editor one writes with the ETag it read: accepted, new ETag.
    let r = call(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/root",
        OPERATOR,
        Some(json!({"path": "/one", "upstream": "m"})),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let new_etag = r.header("etag").unwrap().to_string();
    assert_ne!(new_etag, etag);
    // Editor two read the same version: refused, and the route is editor one's.
    let r = call(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/root",
        OPERATOR,
        Some(json!({"path": "/two", "upstream": "m"})),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "precondition_failed");
    assert_eq!(
        op(cp, "GET", "/api/v1/organizations/acme/routes/root", None)
            .await
            .json()["path"],
        "/one"
    );
    // The same for a whole document and a delete.
    let r = call(
        cp,
        "PUT",
        "/api/v1/organizations/acme",
        OPERATOR,
        Some(acme()),
        &[("if-match", "\"stale\"")],
    )
    .await;
    assert_eq!(r.status, 412);
    let r = call(
        cp,
        "DELETE",
        "/api/v1/organizations/acme/routes/root",
        OPERATOR,
        None,
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 412);
    let doc_etag = op(cp, "GET", "/api/v1/organizations/acme", None)
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let r = call(
        cp,
        "PUT",
        "/api/v1/organizations/acme",
        OPERATOR,
        Some(acme()),
        &[("if-match", &doc_etag)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Without If-Match a write is allowed (documented).
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/root",
        Some(json!({"path": "/three", "upstream": "m"})),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// Fills an OpenAPI path's parameters.
fn fill(path: &str, org: &str) -> String {
    path.replace("{org}", org)
        .replace("{name}", "root")
        .replace("{domain}", "api.acme.test")
        .replace("{n}", "1")
        .replace("{service}", "users")
        .replace("{id}", "a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_token_reaches_only_its_organization_on_every_path_of_the_openapi_document() {
    let env = start();
    let cp = &env.cp;
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    let mut globex = acme();
    globex["name"] = json!("globex");
    globex["domains"] = json!(["api.globex.test"]);
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(globex)).await.status, 201);
    let r = op(
        cp,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "globex-ci", "organization": "globex"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    // Stored hashed: the secret is nowhere in the database.
    let dump = env.pg.psql("control", "SELECT name || ' ' || hash FROM tokens");
    assert!(dump.contains("globex-ci") && !dump.contains(&token), "{dump}");

    let doc = op(cp, "GET", "/api/v1/openapi.json", None).await.json();
    let mut tried = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        if path.ends_with("openapi.json") || path.ends_with("/health") {
            continue; // public
        }
        for (method, operation) in methods.as_object().unwrap() {
            let m = method.to_uppercase();
            let body = operation.get("requestBody").map(|_| json!({"name": "x", "url": "http://127.0.0.1:1", "path": "/", "upstream": "m", "cert_pem": "", "key_pem": ""}));
            if path.contains("{org}") {
                // Another organization: 404, exactly as for one that does not exist.
                let theirs = call(cp, &m, &fill(path, "acme"), &token, body.clone(), &[]).await;
                let nobody = call(cp, &m, &fill(path, "nobody"), &token, body.clone(), &[]).await;
                assert_eq!(theirs.status, 404, "{m} {path}: {}", theirs.text());
                assert_eq!(nobody.status, 404, "{m} {path}");
                assert_eq!(
                    theirs.text().replace("acme", "nobody"),
                    nobody.text(),
                    "{m} {path}: nothing tells them apart"
                );
            } else if path.starts_with("/api/v1/registry/") {
                // The registry is shared by every token.
                let r = call(cp, &m, &fill(path, "acme"), &token, body.clone(), &[]).await;
                assert!(r.status != 401 && r.status != 403, "{m} {path}: {}", r.status);
            } else if m == "GET" && path == "/api/v1/organizations" {
                let r = call(cp, &m, path, &token, None, &[]).await;
                let names: Vec<Value> = r.json()["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["name"].clone())
                    .collect();
                assert_eq!(names, [json!("globex")], "only its own organization is listed");
            } else {
                let r = call(cp, &m, &fill(path, "acme"), &token, body.clone(), &[]).await;
                assert_eq!(r.status, 403, "{m} {path}: operator only: {}", r.text());
            }
            tried += 1;
        }
    }
    assert_eq!(tried, 39, "the 39 operations of the API, each tried");
    // Nothing of acme changed, and the token does reach its own organization.
    assert_eq!(op(cp, "GET", "/api/v1/organizations/acme", None).await.json(), acme());
    let r = call(cp, "GET", "/api/v1/organizations/globex/routes/root", &token, None, &[]).await;
    assert_eq!(r.status, 200);
    let r = call(
        cp,
        "PUT",
        "/api/v1/organizations/globex/routes/root",
        &token,
        Some(json!({"path": "/mine", "upstream": "m"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let audit = op(cp, "GET", "/api/v1/versions?limit=1", None).await.json();
    assert_eq!(audit["items"][0]["who"], "globex/globex-ci");
    // Taking acme's domain is refused, without naming acme.
    let r = call(
        cp,
        "PUT",
        "/api/v1/organizations/globex/domains/api.acme.test",
        &token,
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("already claimed") && !r.text().contains("`acme`"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_published_to_redis_and_announced_to_subscribers() {
    let env = start();
    let cp = &env.cp;
    let limiter = cratopus_state::RedisLimiter::new(cratopus_state::RedisConfig {
        urls: vec![env.redis.url()],
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let mut sub = limiter.subscribe("cratopus:config", 0).await.expect("subscribe");
    let r = op(cp, "POST", "/api/v1/organizations", Some(acme())).await;
    assert_eq!(r.status, 201);
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message")
        .expect("open");
    assert_eq!(msg, b"1");
    assert_eq!(redis_get(&env.redis, "cratopus:config:current").as_deref(), Some("1"));
    let bundle: Value = serde_json::from_str(&redis_get(&env.redis, "cratopus:config:v:1").unwrap()).unwrap();
    assert_eq!(bundle["version"], 1);
    assert_eq!(bundle["organizations"][0]["document"], acme());
    // The next change: the next number.
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/more",
        Some(json!({"path": "/more", "upstream": "m"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message")
        .expect("open");
    assert_eq!(msg, b"2");
    assert_eq!(redis_get(&env.redis, "cratopus:config:current").as_deref(), Some("2"));
    // The superseded version goes in a while; the current one stays.
    let ttl = |k: &str| env.redis.command(&["PTTL", k]).unwrap().int().unwrap();
    assert!(ttl("cratopus:config:v:1") > 0, "version 1 expires");
    assert_eq!(ttl("cratopus:config:v:2"), -1, "version 2 stays");
    // A refused change publishes nothing.
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/routes/bad",
        Some(json!({"path": "/bad", "upstream": "nowhere"})),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(redis_get(&env.redis, "cratopus:config:v:3").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_redis_is_down_is_published_when_it_is_back() {
    let mut env = start();
    assert_eq!(
        op(&env.cp, "POST", "/api/v1/organizations", Some(acme())).await.status,
        201
    );
    env.redis.stop();
    // The change is stored (the database is the truth) though it cannot be published.
    let r = op(
        &env.cp,
        "PUT",
        "/api/v1/organizations/acme/routes/more",
        Some(json!({"path": "/more", "upstream": "m"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(env.cp.wait_for_log("not published", WAIT));
    // So is an uploaded certificate.
    let cert = rcgen::generate_simple_self_signed(vec!["api.acme.test".to_string()]).unwrap();
    let body = json!({"cert_pem": cert.cert.pem(), "key_pem": cert.signing_key.serialize_pem()});
    let r = op(
        &env.cp,
        "PUT",
        "/api/v1/organizations/acme/certificates/site",
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Redis comes back empty (nothing persisted): the latest version is published again.
    env.redis.restart();
    let redis = &env.redis;
    assert!(
        eventually(WAIT, || async {
            redis_get(redis, "cratopus:config:current").as_deref() == Some("2")
        })
        .await,
        "republished; log:\n{}",
        env.cp.logs().join("\n")
    );
    let bundle: Value = serde_json::from_str(&redis_get(redis, "cratopus:config:v:2").unwrap()).unwrap();
    assert_eq!(bundle["organizations"][0]["document"]["routes"][1]["name"], "more");
    assert!(env.cp.wait_for_log("published again", WAIT));
    assert!(
        eventually(WAIT, || async { redis_get(redis, "cratopus:cert:acme/site").is_some() }).await,
        "the certificate is published again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_each_get_a_version_of_their_own() {
    let env = start();
    let other = ControlPlane::start(BIN, &control_yaml(&env.pg, &env.redis), &[]);
    let cp = &env.cp;
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    // 16 writers at once, on two control planes over one database: their serializable
    // transactions conflict and are retried, none is lost and no two get the same number.
    let planes = [&env.cp, &other];
    let writes = (0..16).map(|i| async move {
        let cp = planes[i % 2];
        let path = format!("/api/v1/organizations/acme/routes/r{i}");
        let r = op(
            cp,
            "PUT",
            &path,
            Some(json!({"path": format!("/r{i}"), "upstream": "m"})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.header("x-config-version").unwrap().parse::<u64>().unwrap()
    });
    let mut versions = futures_util::future::join_all(writes).await;
    versions.sort_unstable();
    assert_eq!(versions, (2..=17).collect::<Vec<u64>>());
    let routes = op(cp, "GET", "/api/v1/organizations/acme/routes", None).await.json();
    assert_eq!(routes["items"].as_array().unwrap().len(), 17);
    let retries = cp.log_lines_with("retrying").len() + other.log_lines_with("retrying").len();
    eprintln!("conflicts retried: {retries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_starting_together_apply_the_migrations_once() {
    let pg = PostgresServer::start();
    pg.create_database("control");
    let redis = RedisServer::start();
    let yaml = control_yaml(&pg, &redis);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ControlPlane::start(BIN, &yaml, &[]));
        let b = s.spawn(|| ControlPlane::start(BIN, &yaml, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let applied = a.log_lines_with("migration applied").len() + b.log_lines_with("migration applied").len();
    assert_eq!(
        applied,
        1,
        "one of them applied it:\n{}\n---\n{}",
        a.logs().join("\n"),
        b.logs().join("\n")
    );
    assert_eq!(pg.psql("control", "SELECT count(*) FROM schema_migrations").trim(), "1");
    // Both serve, on the same store; a third start applies nothing.
    assert_eq!(op(&a, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    assert_eq!(op(&b, "GET", "/api/v1/organizations/acme", None).await.json(), acme());
    let c = ControlPlane::start(BIN, &yaml, &[]);
    assert!(c.log_lines_with("migration applied").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_certificate_is_checked_stored_and_published() {
    let env = start();
    let cp = &env.cp;
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    let good = rcgen::generate_simple_self_signed(vec!["api.acme.test".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["api.acme.test".to_string()]).unwrap();
    let foreign = rcgen::generate_simple_self_signed(vec!["shop.globex.test".to_string()]).unwrap();
    let body = |c: &rcgen::CertifiedKey<rcgen::KeyPair>, k: &rcgen::CertifiedKey<rcgen::KeyPair>| json!({"cert_pem": c.cert.pem(), "key_pem": k.signing_key.serialize_pem()});
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/certificates/site",
        Some(body(&good, &other)),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("does not belong"), "{}", r.text());
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/certificates/site",
        Some(body(&foreign, &foreign)),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("shop.globex.test"), "{}", r.text());
    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/certificates/site",
        Some(json!({"cert_pem": "nope", "key_pem": "nope"})),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());

    let r = op(
        cp,
        "PUT",
        "/api/v1/organizations/acme/certificates/site",
        Some(body(&good, &good)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["domains"], json!(["api.acme.test"]));
    assert!(answer.get("key_pem").is_none(), "the key is never answered");
    let stored: Value =
        serde_json::from_str(&redis_get(&env.redis, "cratopus:cert:acme/site").expect("published")).unwrap();
    assert_eq!(stored["source"], "upload");
    assert_eq!(stored["cert_pem"], good.cert.pem());
    assert!(stored["key_pem"].as_str().unwrap().contains("PRIVATE KEY"));
    let index = env.redis.command(&["HGET", "cratopus:certs", "acme/site"]).unwrap();
    assert_eq!(index.int(), stored["updated_ms"].as_i64());
    let r = op(cp, "DELETE", "/api/v1/organizations/acme/certificates/site", None).await;
    assert_eq!(r.status, 200);
    assert!(redis_get(&env.redis, "cratopus:cert:acme/site").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_keeps_instances_within_their_ttl_and_nodes_are_listed() {
    let env = start();
    let cp = &env.cp;
    let r = op(
        cp,
        "PUT",
        "/api/v1/registry/services/users/instances/a",
        Some(json!({"url": "http://127.0.0.1:8081", "ttl": "1h"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "a");
    let r = op(
        cp,
        "PUT",
        "/api/v1/registry/services/users/instances/b",
        Some(json!({"url": "http://127.0.0.1:8082", "ttl": "1s"})),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = op(
        cp,
        "PUT",
        "/api/v1/registry/services/users/instances/c",
        Some(json!({"url": "not a url"})),
    )
    .await;
    assert_eq!(r.status, 422);
    let ids = || async {
        op(cp, "GET", "/api/v1/registry/services/users", None).await.json()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(ids().await.contains(&"a".to_string()));
    // b stops heartbeating: it is gone once its TTL ran out; a stays.
    assert!(eventually(WAIT, || async { ids().await == ["a"] }).await);
    assert_eq!(
        op(cp, "DELETE", "/api/v1/registry/services/users/instances/a", None)
            .await
            .status,
        200
    );
    assert!(ids().await.is_empty());

    // Health, without a token: the database's newest version and Redis's.
    let r = call(cp, "GET", "/api/v1/health", "", None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"status": "ok", "database": "up", "redis": "up", "version": 0, "published": null})
    );

    // Nodes as they report themselves in Redis.
    assert_eq!(op(cp, "POST", "/api/v1/organizations", Some(acme())).await.status, 201);
    for (name, version) in [("n1", 1), ("n2", 0)] {
        let v = json!({"name": name, "version": version, "seen_ms": 1_800_000_000_000i64, "started_ms": 1_700_000_000_000i64, "error": null}).to_string();
        env.redis.command(&["HSET", "cratopus:nodes", name, &v]).unwrap();
    }
    let nodes = op(cp, "GET", "/api/v1/nodes", None).await.json();
    assert_eq!(nodes["current"], 1);
    assert_eq!(nodes["nodes"][0]["name"], "n1");
    assert_eq!(nodes["nodes"][0]["current"], true);
    assert_eq!(nodes["nodes"][1]["current"], false);
    assert_eq!(nodes["nodes"][0]["last_seen"], "2027-01-15T08:00:00Z");
    let r = call(cp, "GET", "/api/v1/health", "", None, &[]).await;
    assert_eq!(r.json()["published"], 1);
}
