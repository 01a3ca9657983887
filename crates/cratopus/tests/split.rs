//! Weighted splits through a real gateway to real backends: the shares, sticky clients, the
//! override header, weights set through the admin API that survive a reload of another file,
//! and a failing canary rolled back while the stable side keeps serving.

mod common_ops;

use common_ops::{BIN, TestBackend, admin_get, backend_of, dump, get_with, metrics, tally, wait_log};
use std::collections::BTreeMap;
use std::time::Duration;
use test_support::http::Request;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Gateway, Reply, send};

const TOKEN: &str = "split-admin-token-0123456789";
const HOST: &str = "api.acme.test";
const WAIT: Duration = Duration::from_secs(20);

/// A gateway with an admin listener and the organization files `files` (`orgs/*.yaml`).
fn start(files: &[(&str, &str)]) -> Gateway {
    let yaml = "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\norganizations: orgs/*.yaml\nwatch: false\n";
    tokio::task::block_in_place(|| Gateway::start_with_env(BIN, yaml, files, &[("ADMIN_TOKEN", TOKEN)]))
}

/// Organization `acme` with upstreams `stable` and `canary` (one backend each) and the routes
/// given, written in YAML under `routes:`.
fn acme(stable: &TestBackend, canary: &TestBackend, routes: &str) -> String {
    format!(
        "name: acme
domains: [{HOST}]
upstreams:
  stable: {{targets: [\"{}\"]}}
  canary: {{targets: [\"{}\"]}}
routes:
{routes}",
        stable.url(),
        canary.url()
    )
}

/// `n` GETs of `path`, `tasks` at a time over keep-alive connections, each with `headers`;
/// the `x-backend` of each answer (every answer must be a 200).
async fn spread(gw: &Gateway, path: &str, n: usize, tasks: usize, headers: &[(&str, &str)]) -> Vec<String> {
    let url = gw.url(path);
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (url, headers) = (url.clone(), headers.clone());
        let count = n / tasks + usize::from(t < n % tasks);
        handles.push(tokio::spawn(async move {
            let client = test_support::client();
            let mut out = Vec::with_capacity(count);
            let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            h.push(("host", HOST));
            for _ in 0..count {
                let r = get_with(&client, &url, &h).await;
                if r.status != 200 {
                    return Err(format!("{} {}", r.status, r.text()));
                }
                out.push(backend_of(&r));
            }
            Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        match h.await.expect("task") {
            Ok(v) => all.extend(v),
            Err(e) => panic!("GET {path}: {e}{}", dump(gw)),
        }
    }
    all
}

async fn admin_put(gw: &Gateway, body: &str) -> Reply {
    let req = Request::put(format!("http://{}/api/splits", gw.addrs()[1]))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&test_support::client(), req).await
}

async fn split_of(gw: &Gateway, route: &str) -> serde_json::Value {
    let r = admin_get(gw, TOKEN, &format!("/api/splits?organization=acme&route={route}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["splits"][0].clone()
}

fn share(counts: &BTreeMap<String, usize>, name: &str, n: usize) -> f64 {
    100.0 * *counts.get(name).unwrap_or(&0) as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn shares_are_met_within_two_points_over_ten_thousand_requests() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let third = TestBackend::start("third").await;
    let routes = "  - name: canary
    path: /c
    split: {backends: [{upstream: stable, weight: 90}, {upstream: canary, weight: 10}]}
  - name: three
    path: /three
    split:
      backends: [{upstream: stable, weight: 50}, {upstream: canary, weight: 30}, {upstream: third, weight: 20}]
";
    let org = acme(&stable, &canary, routes).replace(
        "routes:",
        &format!("  third: {{targets: [\"{}\"]}}\nroutes:", third.url()),
    );
    let gw = start(&[("orgs/acme.yaml", &org)]);
    let n = 10_000;
    let got = tally(&spread(&gw, "/c", n, 16, &[]).await);
    let canary_share = share(&got, "canary", n);
    assert!((canary_share - 10.0).abs() <= 2.0, "{got:?}");
    assert_eq!(got.values().sum::<usize>(), n);
    println!("90/10 over {n} requests: {got:?}");

    let n = 3000;
    let got = tally(&spread(&gw, "/three", n, 8, &[]).await);
    for (name, want) in [("stable", 50.0), ("canary", 30.0), ("third", 20.0)] {
        assert!((share(&got, name, n) - want).abs() <= 2.0, "{name}: {got:?}");
    }
    // The admin API and the metrics count the same requests.
    let split = split_of(&gw, "three").await;
    let requests: Vec<u64> = split["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(
        requests,
        [got["stable"] as u64, got["canary"] as u64, got["third"] as u64]
    );
    let text = metrics(&gw, TOKEN).await;
    let line = format!(
        "cratopus_split_requests_total{{org=\"acme\",route=\"three\",arm=\"third\"}} {}",
        got["third"]
    );
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_client_stays_on_its_side() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let routes = "  - name: ab
    path: /ab
    split:
      backends: [{upstream: stable, weight: 50}, {upstream: canary, weight: 50}]
      sticky: {header: X-User}
";
    let gw = start(&[("orgs/acme.yaml", &acme(&stable, &canary, routes))]);
    // One client, 1,000 requests over several connections: always the same side.
    let one = tally(&spread(&gw, "/ab", 1000, 4, &[("x-user", "user-42")]).await);
    assert_eq!(one.len(), 1, "user-42 went to {one:?}");
    // Forty clients: each stays, and both sides get some.
    let mut sides = BTreeMap::new();
    for u in 0..40 {
        let user = format!("user-{u}");
        let got = tally(&spread(&gw, "/ab", 10, 1, &[("x-user", &user)]).await);
        assert_eq!(got.len(), 1, "{user} went to {got:?}");
        *sides.entry(got.into_keys().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(sides.len(), 2, "40 users all on one side: {sides:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_override_header_reaches_a_canary_with_no_weight() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let routes = "  - name: dark
    path: /dark
    split:
      backends: [{upstream: stable, weight: 1}, {upstream: canary, weight: 0, canary: true}]
      override: {header: X-Canary}
";
    let gw = start(&[("orgs/acme.yaml", &acme(&stable, &canary, routes))]);
    let plain = tally(&spread(&gw, "/dark", 100, 2, &[]).await);
    assert_eq!(plain.keys().collect::<Vec<_>>(), ["stable"], "{plain:?}");
    let always = tally(&spread(&gw, "/dark", 50, 2, &[("x-canary", "always")]).await);
    assert_eq!(always.keys().collect::<Vec<_>>(), ["canary"], "{always:?}");
    let never = tally(&spread(&gw, "/dark", 50, 2, &[("x-canary", "NEVER")]).await);
    assert_eq!(never.keys().collect::<Vec<_>>(), ["stable"], "{never:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_set_at_run_time_survive_a_reload_of_another_file() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let routes = "  - name: users
    path: /users
    split:
      backends: [{upstream: stable, weight: 99}, {upstream: canary, weight: 1, canary: true}]
";
    let acme_yaml = acme(&stable, &canary, routes);
    let other = |path: &str| {
        format!(
            "name: other\ndomains: [other.test]\nupstreams: {{m: {{targets: [\"mirror://\"]}}}}\nroutes: [{{path: {path}, upstream: m}}]\n"
        )
    };
    let gw = start(&[("orgs/acme.yaml", &acme_yaml), ("orgs/other.yaml", &other("/a"))]);

    // Refusals change nothing.
    for (body, status) in [
        (
            r#"{"organization": "acme", "route": "users", "weights": {"nosuch": 1}}"#,
            404,
        ),
        (
            r#"{"organization": "acme", "route": "users", "weights": {"stable": 0, "canary": 0}}"#,
            409,
        ),
        (
            r#"{"organization": "acme", "route": "users", "weights": {"stable": 1.5}}"#,
            400,
        ),
        (
            r#"{"organization": "acme", "route": "users", "weights": {"stable": -1}}"#,
            400,
        ),
        (
            r#"{"organization": "acme", "route": "nosuch", "weights": {"stable": 1}}"#,
            404,
        ),
        (r#"{"organization": "acme"}"#, 400),
    ] {
        let r = admin_put(&gw, body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    // A rollout step: everything to the canary.
    let r = admin_put(
        &gw,
        r#"{"organization": "acme", "route": "users", "weights": {"stable": 0, "canary": 100}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["arms"][1]["weight"], 100);
    assert_eq!(r.json()["arms"][1]["configured_weight"], 1);
    let all = tally(&spread(&gw, "/users", 50, 2, &[]).await);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["canary"], "{all:?}");

    // Another organization's file changes and the config reloads: the weights stay.
    gw.write_file("orgs/other.yaml", &other("/b"));
    let r = admin_post_reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let all = tally(&spread(&gw, "/users", 50, 2, &[]).await);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["canary"], "after the reload: {all:?}");
    assert_eq!(split_of(&gw, "users").await["arms"][0]["weight"], 0);

    // A change of the split itself starts again from the file.
    gw.write_file("orgs/acme.yaml", &acme_yaml.replace("weight: 99", "weight: 100"));
    assert_eq!(admin_post_reload(&gw).await.status, 200);
    let split = split_of(&gw, "users").await;
    assert_eq!(
        (split["arms"][0]["weight"].as_u64(), split["arms"][1]["weight"].as_u64()),
        (Some(100), Some(1))
    );
}

async fn admin_post_reload(gw: &Gateway) -> Reply {
    let req = Request::post(format!("http://{}/api/reload", gw.addrs()[1]))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&test_support::client(), req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_while_the_stable_side_serves() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let routes = "  - name: users
    path: /users
    split:
      backends: [{upstream: stable, weight: 70}, {upstream: canary, weight: 30, canary: true}]
      rollback: {max_error_rate: 0.2, min_requests: 20, window: 5s}
";
    let gw = start(&[("orgs/acme.yaml", &acme(&stable, &canary, routes))]);
    // Healthy: both sides serve, nothing is rolled back.
    let before = tally(&spread(&gw, "/users", 200, 4, &[]).await);
    assert!(
        before.contains_key("canary") && before.contains_key("stable"),
        "{before:?}"
    );
    assert_eq!(split_of(&gw, "users").await["rollback"]["rolled_back"], false);

    // The canary starts failing: keep the traffic going until it is taken out.
    canary.knobs.set_status(500);
    let client = test_support::client();
    let url = gw.url("/users");
    let mut answers: Vec<(u16, String)> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mut rolled = false;
    while !rolled && std::time::Instant::now() < deadline {
        for _ in 0..20 {
            let r = get_with(&client, &url, &[("host", HOST)]).await;
            answers.push((r.status, backend_of(&r)));
        }
        rolled = split_of(&gw, "users").await["rollback"]["rolled_back"] == true;
    }
    assert!(
        rolled,
        "not rolled back: {:?}{}",
        tally(&answers.iter().map(|a| a.1.clone()).collect::<Vec<_>>()),
        dump(&gw)
    );
    // While it failed, the stable side never did.
    assert!(answers.iter().all(|(s, b)| b != "stable" || *s == 200));
    assert!(answers.iter().any(|(s, b)| b == "canary" && *s == 500));

    let split = split_of(&gw, "users").await;
    assert_eq!(split["arms"][1]["weight"], 0, "{split}");
    assert_eq!(split["rollback"]["rollbacks"], 1, "{split}");
    let reason = split["rollback"]["last"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("5xx rate"), "{split}");
    assert!(
        wait_log(&gw, &["split canary rolled back", "route=users"], 1, WAIT).await,
        "{}",
        dump(&gw)
    );
    let text = metrics(&gw, TOKEN).await;
    assert!(
        text.lines()
            .any(|l| l == "cratopus_split_rollbacks_total{org=\"acme\",route=\"users\"} 1"),
        "{text}"
    );
    // From now on the stable side answers everything.
    let after = tally(&spread(&gw, "/users", 200, 4, &[]).await);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["stable"], "{after:?}");
}
