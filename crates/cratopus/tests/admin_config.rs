//! Editing organizations and routes through the admin API (single node, no database): each
//! change is checked like `cratopus check`, written to the organization files atomically and
//! served at once; a refused change writes nothing and the old config keeps serving.

use test_support::http::Request;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Gateway, Reply, client, get, send};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");
const TOKEN: &str = "admin-token-0123456789";

const ACME: &str = "# Acme's APIs: edited by hand and by the admin API.
name: acme
domains: [api.acme.test]
upstreams:
  echo:
    targets: [\"${ECHO_TARGET}\"]
routes:
  - {name: users, path: \"/users/{id}\", upstream: echo, methods: [GET]}
  - {path: /health, upstream: echo}
";

fn start(watch: bool) -> Gateway {
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: {TOKEN}\n\
         organizations:\n  - orgs/*.yaml\n  - name: inline\n    domains: [inline.test]\n    upstreams: {{m: {{targets: [\"mirror://\"]}}}}\n    routes: [{{path: /, upstream: m}}]\nwatch: {watch}\n"
    );
    Gateway::start_with_env(BIN, &yaml, &[("orgs/acme.yaml", ACME)], &[("ECHO_TARGET", "mirror://")])
}

async fn call(gw: &Gateway, method: &str, path: &str, body: Option<&str>, if_match: Option<&str>) -> Reply {
    let admin = gw.addrs()[1];
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json");
    if let Some(m) = if_match {
        b = b.header("if-match", m);
    }
    let body = Bytes::from(body.unwrap_or("").to_string());
    send(&client(), b.body(Full::new(body)).unwrap()).await
}

async fn status_at(gw: &Gateway, host: &str, path: &str) -> u16 {
    get(&gw.url(path), Some(host)).await.status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_added_changed_and_removed_through_the_api_is_served_and_written() {
    let gw = start(false);
    assert_eq!(status_at(&gw, "api.acme.test", "/orders").await, 404);

    // Added: served at once, and in the file, with the rest of the file as it was.
    let added = call(
        &gw,
        "POST",
        "/api/config/organizations/acme/routes",
        Some(r#"{"name": "orders", "path": "/orders", "upstream": "echo", "methods": ["GET", "POST"]}"#),
        None,
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["version"], 2);
    assert_eq!(status_at(&gw, "api.acme.test", "/orders").await, 200);
    let file = std::fs::read_to_string(gw.path("orgs/acme.yaml")).unwrap();
    assert!(
        file.starts_with("# Acme's APIs: edited by hand and by the admin API.\n"),
        "{file}"
    );
    assert!(
        file.contains("${ECHO_TARGET}"),
        "the reference stays as written:\n{file}"
    );
    assert!(
        file.find("name: acme").unwrap() < file.find("domains:").unwrap(),
        "{file}"
    );
    assert!(file.contains("name: orders"), "{file}");

    // Read back with its ETag; a stale ETag is refused, the current one accepted.
    let route = call(&gw, "GET", "/api/config/organizations/acme/routes/orders", None, None).await;
    assert_eq!(route.status, 200, "{}", route.text());
    assert_eq!(route.json()["methods"], serde_json::json!(["GET", "POST"]));
    let etag = route.header("etag").unwrap().to_string();
    let changed = r#"{"name": "orders", "path": "/orders/{id}", "upstream": "echo"}"#;
    let stale = call(
        &gw,
        "PUT",
        "/api/config/organizations/acme/routes/orders",
        Some(changed),
        Some("\"0000\""),
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    assert_eq!(stale.json()["error"]["code"], "precondition_failed");
    let put = call(
        &gw,
        "PUT",
        "/api/config/organizations/acme/routes/orders",
        Some(changed),
        Some(&etag),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(status_at(&gw, "api.acme.test", "/orders/7").await, 200);
    assert_eq!(status_at(&gw, "api.acme.test", "/orders").await, 404);
    // The same ETag again: the route changed since.
    let again = call(
        &gw,
        "PUT",
        "/api/config/organizations/acme/routes/orders",
        Some(changed),
        Some(&etag),
    )
    .await;
    assert_eq!(again.status, 412);

    // An unnamed route is addressed by its path pattern.
    let health = call(
        &gw,
        "GET",
        "/api/config/organizations/acme/routes/%2Fhealth",
        None,
        None,
    )
    .await;
    assert_eq!(health.status, 200, "{}", health.text());
    let removed = call(
        &gw,
        "DELETE",
        "/api/config/organizations/acme/routes/%2Fhealth",
        None,
        None,
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.text());
    assert_eq!(status_at(&gw, "api.acme.test", "/health").await, 404);
    let list = call(&gw, "GET", "/api/config/organizations/acme/routes", None, None).await;
    let ids: Vec<String> = list.json()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["users", "orders"]);
    // What was written loads as it is.
    let check = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(gw.path("gateway.yaml"))
        .env("ECHO_TARGET", "mirror://")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_the_check_refuses_writes_nothing_and_says_why() {
    let gw = start(false);
    let before = std::fs::read_to_string(gw.path("orgs/acme.yaml")).unwrap();
    let bad = call(
        &gw,
        "POST",
        "/api/config/organizations/acme/routes",
        Some(r#"{"name": "bad", "path": "/bad", "upstream": "nowhere"}"#),
        None,
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    let message = bad.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("acme.yaml:"), "names the file and line: {message}");
    assert!(message.contains("nowhere"), "{message}");
    // A misspelt key: the same message as `cratopus check`.
    let typo = call(
        &gw,
        "POST",
        "/api/config/organizations/acme/routes",
        Some(r#"{"name": "t", "path": "/t", "upstream": "echo", "timout": "1s"}"#),
        None,
    )
    .await;
    assert_eq!(typo.status, 422, "{}", typo.text());
    assert!(typo.text().contains("did you mean `timeout`"), "{}", typo.text());
    // A route that conflicts with one there.
    let dup = call(
        &gw,
        "POST",
        "/api/config/organizations/acme/routes",
        Some(r#"{"name": "users", "path": "/u", "upstream": "echo"}"#),
        None,
    )
    .await;
    assert_eq!(dup.status, 409, "{}", dup.text());
    assert_eq!(std::fs::read_to_string(gw.path("orgs/acme.yaml")).unwrap(), before);
    assert_eq!(status_at(&gw, "api.acme.test", "/users/1").await, 200, "still serving");
    let not_json = call(&gw, "POST", "/api/config/organizations/acme/routes", Some("{"), None).await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json()["error"]["code"], "bad_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_are_created_replaced_and_deleted_as_files() {
    let gw = start(true);
    let created = call(
        &gw,
        "POST",
        "/api/config/organizations",
        Some(r#"{"name": "shop", "domains": ["shop.test"], "upstreams": {"m": {"targets": ["mirror://"]}}, "routes": [{"path": "/cart", "upstream": "m"}]}"#),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("location"), Some("/api/config/organizations/shop"));
    assert!(gw.path("orgs/shop.yaml").exists());
    assert_eq!(status_at(&gw, "shop.test", "/cart").await, 200);
    let twice = call(
        &gw,
        "POST",
        "/api/config/organizations",
        Some(r#"{"name": "shop"}"#),
        None,
    )
    .await;
    assert_eq!(twice.status, 409);
    let escape = call(
        &gw,
        "POST",
        "/api/config/organizations",
        Some(r#"{"name": "../etc"}"#),
        None,
    )
    .await;
    assert_eq!(escape.status, 400);

    // Replaced whole, with If-Match.
    let doc = call(&gw, "GET", "/api/config/organizations/shop", None, None).await;
    assert_eq!(doc.status, 200);
    let etag = doc.header("etag").unwrap().to_string();
    let new = r#"{"domains": ["shop.test"], "upstreams": {"m": {"targets": ["mirror://"]}}, "routes": [{"path": "/basket", "upstream": "m"}]}"#;
    let put = call(&gw, "PUT", "/api/config/organizations/shop", Some(new), Some(&etag)).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(status_at(&gw, "shop.test", "/basket").await, 200);
    assert_eq!(status_at(&gw, "shop.test", "/cart").await, 404);

    // The inline organization is not edited here.
    let inline = call(&gw, "GET", "/api/config/organizations/inline", None, None).await;
    assert_eq!(inline.status, 409, "{}", inline.text());
    let missing = call(&gw, "GET", "/api/config/organizations/nobody", None, None).await;
    assert_eq!(missing.status, 404);
    let list = call(&gw, "GET", "/api/config/organizations", None, None).await;
    let editable: Vec<(String, bool)> = list.json()["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["editable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(editable.contains(&("inline".into(), false)), "{editable:?}");
    assert!(editable.contains(&("shop".into(), true)), "{editable:?}");

    let deleted = call(&gw, "DELETE", "/api/config/organizations/shop", None, None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert!(!gw.path("orgs/shop.yaml").exists());
    assert_eq!(status_at(&gw, "shop.test", "/basket").await, 404);
    assert!(
        !gw.logs().iter().any(|l| l.contains("config rejected")),
        "{:?}",
        gw.logs()
    );
}
