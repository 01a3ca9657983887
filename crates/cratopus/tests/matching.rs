//! Matching beyond the path, end to end: routes of one path and method told apart by a header,
//! a query parameter, a cookie, a regular expression, an absent header, and the consumer behind
//! a real API key; their order of specificity; 404 when nothing holds; and what `cratopus check`
//! and `cratopus routes` say about such routes. Each upstream is a real backend that names
//! itself in `x-backend`, so every assertion is about which backend the request reached.

mod common_proxy;

use common_proxy::*;
use std::path::PathBuf;
use std::process::Command;
use test_support::http::Request;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, send};

/// `method path` with `headers`, through `gw`.
async fn call(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&test_support::client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// The backend that answered `GET path` with `headers` (or the status, when none did).
async fn backend(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> String {
    let r = call(gw, "GET", path, headers).await;
    match r.header("x-backend") {
        Some(b) if r.status == 200 => b.to_string(),
        _ => r.status.to_string(),
    }
}

/// A directory of its own for one `check`/`routes` case, with `gateway.yaml` written.
fn config_dir(name: &str, gateway: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cratopus-matching-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("gateway.yaml"), gateway).expect("write gateway.yaml");
    dir
}

/// Runs `cratopus <args> -c <dir>/gateway.yaml`: (exit code, stdout, stderr).
fn cratopus(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(dir.join("gateway.yaml"))
        .env_remove("CRATOPUS_CONFIG")
        .output()
        .expect("run cratopus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An inline organization with upstream `u` at `url` and these routes (YAML list items).
fn single_org(url: &str, routes: &str) -> String {
    test_support::gateway_yaml(
        &format!("\n  - name: t\n    upstreams:\n      u: {{targets: [\"{url}\"]}}\n    routes:\n{routes}"),
        "",
    )
}

#[test]
fn identical_conditions_are_a_conflict_with_their_line() {
    let dir = config_dir(
        "conflict",
        &single_org(
            "http://127.0.0.1:9",
            "      - {name: a, path: /x, upstream: u, match: {headers: {X-Api-Version: \"2\"}}}
      - {name: b, path: /x, upstream: u, match: {headers: {x-api-version: \"2\"}}}
",
        ),
    );
    let (code, out, err) = cratopus(&dir, &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("route `b` conflicts with route `a` (line 9)") && err.contains("same `match` conditions"),
        "{err}"
    );
    assert!(
        err.contains("gateway.yaml:10:"),
        "the error is at the second route: {err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_warns_about_overlaps_it_cannot_order_and_routes_shows_conditions() {
    let dir = config_dir(
        "overlap",
        &single_org(
            "http://127.0.0.1:9",
            "      - {name: by-header, path: /x, upstream: u, match: {headers: {A: \"1\"}}}
      - {name: by-query, path: /x, upstream: u, match: {query: {b: \"1\"}}}
      - {name: exclusive, path: /x, upstream: u, match: {headers: {A: \"2\"}, query: {b: \"2\"}}}
      - {name: plain, path: /x, upstream: u}
",
        ),
    );
    let (code, out, err) = cratopus(&dir, &["check"]);
    assert_eq!(code, 0, "a warning only: {out}{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("neither is more specific"))
        .unwrap_or_else(|| panic!("no overlap warning:\n{err}"));
    assert!(
        warning.contains("`by-header` (") && warning.contains("gateway.yaml:9)"),
        "{warning}"
    );
    assert!(
        warning.contains("`by-query` (") && warning.contains("gateway.yaml:10)"),
        "{warning}"
    );
    assert_eq!(err.matches("neither is more specific").count(), 1, "{err}");
    let (code, _, err) = cratopus(&dir, &["check", "--strict"]);
    assert_eq!(code, 1, "--strict fails on it: {err}");

    let (code, out, err) = cratopus(&dir, &["routes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("route by-header → upstream u"), "{out}");
    assert!(out.contains("[match header A = \"1\"]"), "{out}");
    assert!(out.contains("[match header A = \"2\" & query b = \"2\"]"), "{out}");
    let (_, json, _) = cratopus(&dir, &["routes", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let routes = v["organizations"][0]["routes"].as_array().expect("routes");
    let by_query = routes.iter().find(|r| r["name"] == "by-query").expect("by-query");
    assert_eq!(by_query["match"]["query"]["b"]["exact"], "1", "{json}");
    let plain = routes.iter().find(|r| r["name"] == "plain").expect("plain");
    assert!(plain["match"].is_null(), "{json}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_regex_and_unknown_consumer_are_errors_with_their_place() {
    let dir = config_dir(
        "bad",
        &single_org(
            "http://127.0.0.1:9",
            "      - path: /x
        upstream: u
        match:
          headers:
            X-A: {regex: \"(unclosed\"}
          consumers: [nobody]
",
        ),
    );
    let (code, out, err) = cratopus(&dir, &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("regex `(unclosed` is not a valid regular expression"),
        "{err}"
    );
    assert!(err.contains("`nobody` is not a consumer"), "{err}");
    assert!(
        err.contains("gateway.yaml:13:"),
        "the regex is placed at its header: {err}"
    );
    assert!(err.contains("regular expression: unclosed group"), "{err}");
    assert!(err.contains("gateway.yaml:14:"), "the consumer at its list: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_example_runs_check_strictly() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/matching");
    let (code, out, err) = cratopus(&example, &["check", "--strict"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A request (path and query, headers) and the backend it must reach.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread")]
async fn one_path_split_by_header_query_cookie_regex_and_absent() {
    let stable = Backend::fixed("stable", "stable").await;
    let v2 = Backend::fixed("v2", "v2").await;
    let v3 = Backend::fixed("v3", "v3").await;
    let beta = Backend::fixed("beta", "beta").await;
    let canary = Backend::fixed("canary", "canary").await;
    // The most specific route is written last: the order of the file does not decide.
    let org = format!(
        "name: t
upstreams:
  stable: {{targets: [\"{}\"]}}
  v2: {{targets: [\"{}\"]}}
  v3: {{targets: [\"{}\"]}}
  beta: {{targets: [\"{}\"]}}
  canary: {{targets: [\"{}\"]}}
routes:
  - {{name: stable, path: \"/items/{{id}}\", upstream: stable}}
  - {{name: v2, path: \"/items/{{id}}\", upstream: v2, match: {{headers: {{X-Api-Version: \"2\"}}}}}}
  - {{name: v3, path: \"/items/{{id}}\", upstream: v3, match: {{headers: {{X-Api-Version: {{regex: \"3(\\\\.[0-9]+)?\"}}}}}}}}
  - {{name: beta, path: \"/items/{{id}}\", upstream: beta, match: {{query: {{beta: \"1\"}}}}}}
  - name: canary
    path: /items/{{id}}
    upstream: canary
    match:
      cookies: {{canary: \"yes\"}}
      headers: {{X-No-Canary: {{present: false}}}}
",
        stable.url(),
        v2.url(),
        v3.url(),
        beta.url(),
        canary.url()
    );
    let gw = gateway_one_org(&org);
    let cases: &[Case] = &[
        ("/items/1", &[], "stable"),
        // Header: exact value, any case of the name; another value is not it.
        ("/items/1", &[("X-Api-Version", "2")], "v2"),
        ("/items/1", &[("x-api-version", "2")], "v2"),
        ("/items/1", &[("X-Api-Version", "20")], "stable"),
        // Regex: the whole value.
        ("/items/1", &[("X-Api-Version", "3")], "v3"),
        ("/items/1", &[("X-Api-Version", "3.14")], "v3"),
        ("/items/1", &[("X-Api-Version", "3.x")], "stable"),
        ("/items/1", &[("X-Api-Version", "13")], "stable"),
        // Query.
        ("/items/1?beta=1", &[], "beta"),
        ("/items/1?a=b&beta=1", &[], "beta"),
        ("/items/1?beta=0", &[], "stable"),
        // Cookie, with the absent header: both must hold.
        ("/items/1", &[("Cookie", "session=s; canary=yes")], "canary"),
        ("/items/1", &[("Cookie", "canary=yes"), ("X-No-Canary", "1")], "stable"),
        ("/items/1", &[("Cookie", "canary=no")], "stable"),
        // Specificity: two conditions before one, whatever the file order.
        ("/items/1?beta=1", &[("Cookie", "canary=yes")], "canary"),
        (
            "/items/1?beta=1",
            &[("Cookie", "canary=yes"), ("X-No-Canary", "1")],
            "beta",
        ),
    ];
    for (path, headers, want) in cases {
        assert_eq!(
            backend(&gw, path, headers).await,
            *want,
            "GET {path} {headers:?}\n{}",
            logs(&gw)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_matching_is_404_and_a_less_specific_route_takes_the_rest() {
    let beta = Backend::fixed("beta", "beta").await;
    let api = Backend::fixed("api", "api").await;
    let org = format!(
        "name: t
upstreams:
  beta: {{targets: [\"{}\"]}}
  api: {{targets: [\"{}\"]}}
routes:
  - {{name: only, path: /only, methods: [GET], upstream: beta, match: {{headers: {{X-Beta: \"1\"}}}}}}
  - {{name: beta-users, path: /api/users, upstream: beta, match: {{headers: {{X-Beta: \"1\"}}}}}}
  - {{name: api, path: \"/api/{{*rest}}\", upstream: api}}
",
        beta.url(),
        api.url()
    );
    let gw = gateway_one_org(&org);
    assert_eq!(backend(&gw, "/only", &[("X-Beta", "1")]).await, "beta");
    let r = call(&gw, "GET", "/only", &[]).await;
    assert_gateway_error(&r, 404, "no_route", &gw);
    let r = call(&gw, "GET", "/only", &[("X-Beta", "2")]).await;
    assert_gateway_error(&r, 404, "no_route", &gw);
    // A method the path has no route for at all is still 405.
    let r = call(&gw, "POST", "/only", &[("X-Beta", "1")]).await;
    assert_gateway_error(&r, 405, "method_not_allowed", &gw);
    // Where the less specific pattern has a route without conditions, it takes the rest.
    assert_eq!(backend(&gw, "/api/users", &[("X-Beta", "1")]).await, "beta");
    assert_eq!(backend(&gw, "/api/users", &[]).await, "api");
}

/// What `cratopus hash-key` prints for `key`.
fn hash_key(key: &str) -> String {
    let out = Command::new(BIN).args(["hash-key", key]).output().expect("hash-key");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn by_consumer_and_tier_with_real_api_keys() {
    let acme = Backend::fixed("acme", "acme").await;
    let gold = Backend::fixed("gold", "gold").await;
    let shared = Backend::fixed("shared", "shared").await;
    let header_only = Backend::fixed("header", "header").await;
    let org = format!(
        "name: t
consumers:
  - {{id: acme, tier: free, keys: [\"{}\"]}}
  - {{id: initech, tier: gold, keys: [\"{}\"]}}
  - {{id: globex, tier: free, keys: [\"{}\"]}}
auth: {{api_key: {{}}}}
upstreams:
  acme: {{targets: [\"{}\"]}}
  gold: {{targets: [\"{}\"]}}
  shared: {{targets: [\"{}\"]}}
  header: {{targets: [\"{}\"]}}
routes:
  - {{name: reports, path: /reports, upstream: shared}}
  - {{name: reports-gold, path: /reports, upstream: gold, match: {{tiers: [gold]}}}}
  - {{name: reports-acme, path: /reports, upstream: acme, match: {{consumers: [acme]}}}}
  # Decided before authentication (more conditions), open: it needs no key.
  - name: reports-public
    path: /reports
    upstream: header
    auth: {{}}
    match: {{headers: {{X-Public: \"1\"}}, query: {{sample: \"1\"}}}}
",
        hash_key("key-acme-0123456789"),
        hash_key("key-initech-0123456789"),
        hash_key("key-globex-0123456789"),
        acme.url(),
        gold.url(),
        shared.url(),
        header_only.url()
    );
    let gw = gateway_one_org(&org);
    let with_key = |k: &'static str| [("X-Api-Key", k)];
    assert_eq!(backend(&gw, "/reports", &with_key("key-acme-0123456789")).await, "acme");
    assert_eq!(
        backend(&gw, "/reports", &with_key("key-initech-0123456789")).await,
        "gold"
    );
    assert_eq!(
        backend(&gw, "/reports", &with_key("key-globex-0123456789")).await,
        "shared"
    );
    // Authentication still decides first: no key, or a wrong one, is 401.
    let r = call(&gw, "GET", "/reports", &[]).await;
    assert_gateway_error(&r, 401, "missing_credentials", &gw);
    let r = call(&gw, "GET", "/reports", &with_key("key-nobody-0123456789")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    // The open route with more conditions is chosen before any key is asked for.
    assert_eq!(backend(&gw, "/reports?sample=1", &[("X-Public", "1")]).await, "header");
}
