//! The admin API over a real socket: the token, status, organizations, upstream health, reload
//! and the OpenAPI document.

use std::time::Duration;
use test_support::http::Request;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Gateway, Reply, client, dead_port, eventually, send};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");
const TOKEN: &str = "admin-token-0123456789";

fn org(extra_route: &str) -> String {
    format!(
        "name: acme
domains: [api.acme.test]
upstreams:
  echo:
    targets: [\"mirror://\"]
  gone:
    targets: [\"http://127.0.0.1:{}\"]
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1}}
routes:
  - {{name: echo, path: /echo, upstream: echo, methods: [GET]}}
  - {{name: gone, path: /gone, upstream: gone}}
{extra_route}",
        dead_port()
    )
}

fn start() -> Gateway {
    let yaml = "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\norganizations: orgs/*.yaml\nwatch: false\n";
    Gateway::start_with_env(BIN, yaml, &[("orgs/acme.yaml", &org(""))], &[("ADMIN_TOKEN", TOKEN)])
}

async fn admin(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> Reply {
    let admin = gw.addrs()[1];
    let mut b = Request::builder().method(method).uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_needs_the_token() {
    let gw = start();
    for (method, path) in [
        ("GET", "/api/status"),
        ("GET", "/api/upstreams"),
        ("POST", "/api/reload"),
        ("GET", "/nope"),
    ] {
        let none = admin(&gw, method, path, None).await;
        assert_eq!(none.status, 401, "{method} {path}: {}", none.text());
        assert!(none.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));
        assert_eq!(none.json()["error"]["code"], "unauthorized");
        let wrong = admin(&gw, method, path, Some("admin-token-0123456780")).await;
        assert_eq!(wrong.status, 401, "{method} {path}");
    }
    assert_eq!(admin(&gw, "GET", "/nope", Some(TOKEN)).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_organizations_and_upstream_health() {
    let gw = start();
    let status = admin(&gw, "GET", "/api/status", Some(TOKEN)).await;
    assert_eq!(status.status, 200, "{}", status.text());
    let s = status.json();
    assert_eq!(s["config"]["version"], 1);
    assert!(s["uptime_seconds"].as_f64().is_some());
    assert!(s["config"]["last_reload_error"].is_null());

    let orgs = admin(&gw, "GET", "/api/organizations", Some(TOKEN)).await.json();
    let acme = &orgs["organizations"][0];
    assert_eq!(acme["name"], "acme");
    assert_eq!(acme["domains"][0], "api.acme.test");
    let routes: Vec<&str> = acme["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["echo", "gone"]);

    // The target nothing listens on is reported down once its health check failed.
    let down = eventually(Duration::from_secs(5), || async {
        let u = admin(&gw, "GET", "/api/upstreams", Some(TOKEN)).await.json();
        u["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "gone" && u["targets"][0]["healthy"] == false)
    })
    .await;
    assert!(
        down,
        "{}",
        admin(&gw, "GET", "/api/upstreams", Some(TOKEN)).await.text()
    );
    let u = admin(&gw, "GET", "/api/upstreams", Some(TOKEN)).await.json();
    let echo = u["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(echo["targets"][0]["healthy"], true);
    assert_eq!(echo["targets"][0]["target"], "mirror");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_a_good_config_and_reports_a_bad_one() {
    let gw = start();
    gw.write_file("orgs/acme.yaml", &org("  - {name: new, path: /new, upstream: echo}\n"));
    let r = admin(&gw, "POST", "/api/reload", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let new = test_support::get(&gw.url("/new"), Some("api.acme.test")).await;
    assert_eq!(new.status, 200);

    gw.write_file(
        "orgs/acme.yaml",
        &org("  - {name: bad, path: /bad, upstream: nosuch}\n"),
    );
    let r = admin(&gw, "POST", "/api/reload", Some(TOKEN)).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "config_rejected");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("nosuch"));
    let s = admin(&gw, "GET", "/api/status", Some(TOKEN)).await.json();
    assert_eq!(s["config"]["version"], 2);
    assert!(
        s["config"]["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("acme.yaml:")
    );
    assert_eq!(
        test_support::get(&gw.url("/new"), Some("api.acme.test")).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_lists_every_endpoint() {
    let gw = start();
    let doc = admin(&gw, "GET", "/api/openapi.json", Some(TOKEN)).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/api/status",
        "/api/organizations",
        "/api/upstreams",
        "/api/reload",
        "/api/openapi.json",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_and_pass_promtool() {
    let gw = start();
    for _ in 0..3 {
        assert_eq!(
            test_support::get(&gw.url("/echo"), Some("api.acme.test")).await.status,
            200
        );
    }
    assert_eq!(
        test_support::request("POST", &gw.url("/echo"), Some("api.acme.test"), b"")
            .await
            .status,
        405
    );
    assert_eq!(
        test_support::get(&gw.url("/nothing"), Some("api.acme.test"))
            .await
            .status,
        404
    );
    // A request is counted when its response body has been handed over, which can be a moment
    // after the client has read it.
    let want = "cratopus_requests_total{org=\"acme\",route=\"echo\",method=\"GET\",class=\"2xx\"} 3";
    let counted = eventually(Duration::from_secs(5), || async {
        admin(&gw, "GET", "/metrics", Some(TOKEN))
            .await
            .text()
            .lines()
            .any(|l| l == want)
    })
    .await;
    let m = admin(&gw, "GET", "/metrics", Some(TOKEN)).await;
    assert!(counted, "{}", m.text());
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let text = m.text();
    let line = |prefix: &str| -> Option<String> { text.lines().find(|l| l.starts_with(prefix)).map(str::to_string) };
    assert_eq!(
        line("cratopus_requests_total{org=\"acme\",route=\"echo\",method=\"GET\",class=\"2xx\"}").as_deref(),
        Some("cratopus_requests_total{org=\"acme\",route=\"echo\",method=\"GET\",class=\"2xx\"} 3"),
        "{text}"
    );
    assert!(
        line("cratopus_request_duration_seconds_count{org=\"acme\",route=\"echo\"}").is_some_and(|l| l.ends_with(" 3")),
        "{text}"
    );
    assert!(
        line("cratopus_unrouted_requests_total{class=\"4xx\"}").is_some_and(|l| l.ends_with(" 2")),
        "{text}"
    );
    assert!(
        line("cratopus_upstream_target_healthy{org=\"acme\",upstream=\"echo\",target=\"mirror\"}")
            .is_some_and(|l| l.ends_with(" 1")),
        "{text}"
    );

    // The exposition as Prometheus' own checker reads it.
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not on PATH; install it: apt-get install -y --no-install-recommends prometheus");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn admin_post(gw: &Gateway, path: &str, body: &str) -> Reply {
    let admin = gw.addrs()[1];
    let req = Request::post(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_disable_and_block_at_run_time() {
    // Two backends behind one upstream, to see a drained one stop getting requests.
    let a = test_support::Backend::fixed("a", "from a").await;
    let b = test_support::Backend::fixed("b", "from b").await;
    let org = format!(
        "name: acme\ndomains: [api.acme.test]\nupstreams:\n  two:\n    targets: [\"{}\", \"{}\"]\nroutes:\n  - {{name: two, path: /two, upstream: two}}\n  - {{name: other, path: /other, upstream: two}}\n",
        a.url(),
        b.url()
    );
    let yaml = "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\norganizations: orgs/*.yaml\nwatch: false\n";
    let gw = Gateway::start_with_env(BIN, yaml, &[("orgs/acme.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)]);
    let backend_of = |r: &Reply| r.header("x-backend").unwrap_or("").to_string();
    let two = gw.url("/two");
    let hit = || test_support::get(&two, Some("api.acme.test"));

    // Drain b: every request goes to a; undrain: b gets requests again.
    let r = admin_post(
        &gw,
        "/api/targets/drain",
        &format!(r#"{{"organization":"acme","upstream":"two","target":"{}"}}"#, b.addr),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["drained"], true);
    for _ in 0..10 {
        assert_eq!(backend_of(&hit().await), "a");
    }
    let u = admin(&gw, "GET", "/api/upstreams", Some(TOKEN)).await.json();
    let drained: Vec<bool> = u["upstreams"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["drained"].as_bool().unwrap())
        .collect();
    assert_eq!(drained.iter().filter(|d| **d).count(), 1, "{u}");
    admin_post(
        &gw,
        "/api/targets/undrain",
        &format!(r#"{{"organization":"acme","upstream":"two","target":"{}"}}"#, b.addr),
    )
    .await;
    let mut seen_b = false;
    for _ in 0..10 {
        seen_b |= backend_of(&hit().await) == "b";
    }
    assert!(seen_b, "b should get requests again after undrain");
    let missing = admin_post(
        &gw,
        "/api/targets/drain",
        r#"{"organization":"acme","upstream":"two","target":"127.0.0.1:1"}"#,
    )
    .await;
    assert_eq!(missing.status, 404);
    let bad = admin_post(&gw, "/api/targets/drain", "not json").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "bad_request");

    // Disable one route: it answers 503 route_disabled, the other keeps working; enable again.
    let r = admin_post(&gw, "/api/routes/disable", r#"{"organization":"acme","route":"two"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let off = hit().await;
    assert_eq!(off.status, 503);
    assert_eq!(off.json()["error"]["code"], "route_disabled");
    assert_eq!(
        test_support::get(&gw.url("/other"), Some("api.acme.test")).await.status,
        200
    );
    admin_post(&gw, "/api/routes/enable", r#"{"organization":"acme","route":"two"}"#).await;
    assert_eq!(hit().await.status, 200);
    assert_eq!(
        admin_post(&gw, "/api/routes/disable", r#"{"organization":"acme","route":"nope"}"#)
            .await
            .status,
        404
    );

    // Block the client's own address: 403 ip_blocked at once; the admin API still answers.
    let r = admin_post(&gw, "/api/blocks", r#"{"cidr":"127.0.0.0/8"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["blocks"][0], "127.0.0.0/8");
    let blocked = hit().await;
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.json()["error"]["code"], "ip_blocked");
    assert_eq!(
        admin_post(&gw, "/api/blocks", r#"{"cidr":"10.0.0.0/99"}"#).await.status,
        400
    );
    let r = admin_post(&gw, "/api/blocks/remove", r#"{"cidr":"127.0.0.0/8"}"#).await;
    assert_eq!(r.json()["blocks"].as_array().unwrap().len(), 0);
    assert_eq!(hit().await.status, 200);
}
