//! The dashboard in a real browser (Debian's headless chromium): it signs in with the admin
//! token, draws the configured routes, shows a target that is down and a split whose canary was
//! rolled back. A screenshot is saved in the test's output directory
//! (`$CARGO_TARGET_TMPDIR/dashboard.png`).

use std::process::Command;
use std::time::Duration;
use test_support::{Gateway, dead_port, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");
const TOKEN: &str = "dashboard-token-0123456789";

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile_dir("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is not on PATH; install it: apt-get install -y chromium");
    let _ = std::fs::remove_dir_all(profile);
    out
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_signs_in_and_draws_the_routing_map() {
    let org = format!(
        "name: acme
domains: [api.acme.test]
upstreams:
  echo:
    targets: [\"mirror://\"]
  billing:
    targets: [\"http://127.0.0.1:{}\"]
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1}}
routes:
  - {{name: echo, path: \"/echo/{{*rest}}\", upstream: echo}}
  - {{name: invoices, path: \"/billing/invoices/{{id}}\", upstream: billing, methods: [GET]}}
  - name: rollout
    path: /rollout
    split:
      backends: [{{upstream: echo, weight: 3}}, {{upstream: billing, weight: 1, canary: true}}]
      rollback: {{max_error_rate: 0.5, min_requests: 3, window: 10s}}
",
        dead_port()
    );
    let yaml = "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\norganizations: orgs/*.yaml\n";
    let gw = Gateway::start_with_env(BIN, yaml, &[("orgs/acme.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)]);
    let admin = gw.addrs()[1];
    // Some traffic for the rate table, and the billing target marked down by its check.
    for _ in 0..3 {
        test_support::get(&gw.url("/echo/x"), Some("api.acme.test")).await;
    }
    let client = test_support::client();
    let down = eventually(Duration::from_secs(5), || async {
        let req = test_support::http::Request::get(format!("http://{admin}/api/upstreams"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(test_support::http_body_util::Full::new(
                test_support::hyper::body::Bytes::new(),
            ))
            .unwrap();
        test_support::send(&client, req)
            .await
            .text()
            .contains("\"healthy\":false")
    })
    .await;
    assert!(down, "the billing target should be down first");
    // The split's canary (the dead billing upstream) answers 503s until it is rolled back.
    let rolled = eventually(Duration::from_secs(10), || async {
        for _ in 0..10 {
            test_support::get(&gw.url("/rollout"), Some("api.acme.test")).await;
        }
        let req = test_support::http::Request::get(format!("http://{admin}/api/splits"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(test_support::http_body_util::Full::new(
                test_support::hyper::body::Bytes::new(),
            ))
            .unwrap();
        test_support::send(&client, req).await.json()["splits"][0]["rollback"]["rolled_back"] == true
    })
    .await;
    assert!(rolled, "the canary of /rollout should be rolled back");

    let url = format!("http://{admin}/dashboard#token={TOKEN}");
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &url]))
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        html.contains("data-loaded=\"true\""),
        "the page never loaded its data:\n{html}"
    );
    // Signed in: the form is hidden, the app shown.
    assert!(
        html.contains("<form id=\"login\" hidden=\"\""),
        "still on the sign-in form:\n{html}"
    );
    for text in [
        "acme",
        "api.acme.test",
        "/echo/{*rest}",
        "/billing/invoices/{id}",
        "mirror up",
    ] {
        assert!(html.contains(text), "`{text}` is not on the page:\n{html}");
    }
    assert!(
        html.contains("data-state=\"down\""),
        "the down target is not marked:\n{html}"
    );
    assert!(html.contains("class=\"target down\""), "{html}");
    // The split route with its arms, the canary rolled back (and listed among the errors).
    assert!(html.contains("data-arm=\"echo\""), "{html}");
    assert!(html.contains("class=\"arm rolled-back\""), "{html}");
    assert!(html.contains("canary billing rolled back: 5xx rate"), "{html}");

    // A wrong token stays on the sign-in form with a message.
    let bad = format!("http://{admin}/dashboard#token=wrong-token-000000000");
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &bad]))
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(html.contains("That token was refused."), "{html}");
    assert!(!html.contains("data-loaded=\"true\""), "{html}");

    // The screenshot, for people.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let url = format!("http://{admin}/dashboard#token={TOKEN}");
    let arg = format!("--screenshot={}", shot.display());
    let out = tokio::task::spawn_blocking(move || chromium(&["--window-size=1280,900", &arg, &url]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );
}
