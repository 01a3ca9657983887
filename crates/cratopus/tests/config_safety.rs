//! A reload never empties the gateway: a gateway.yaml truncated while the gateway runs (an
//! editor's first step, a full disk), or one left without organizations, is rejected and logged
//! with its file, the old config keeps answering, and a later good write is picked up.

use std::time::Duration;
use test_support::{Gateway, eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");
const WAIT: Duration = Duration::from_secs(10);

/// gateway.yaml with one inline organization whose `paths` go to the built-in mirror.
fn config(paths: &[&str]) -> String {
    let mut org =
        String::from("\n  - name: acme\n    upstreams:\n      m:\n        targets: [\"mirror://\"]\n    routes:\n");
    for p in paths {
        org.push_str(&format!("      - path: {p}\n        upstream: m\n"));
    }
    test_support::gateway_yaml(&org, "")
}

async fn status(gw: &Gateway, path: &str) -> u16 {
    get(&gw.url(path), None).await.status
}

fn dump(gw: &Gateway) -> String {
    format!("\ngateway log:\n{}", gw.logs().join("\n"))
}

/// Rewrites gateway.yaml with `text` until the gateway reloads it: then its watcher runs.
async fn prime_watcher(gw: &Gateway, text: &str) {
    let ok = eventually(Duration::from_secs(30), || async {
        let n = gw.log_lines_with("config reloaded").len();
        gw.write_file("gateway.yaml", text);
        gw.wait_for_log_count("config reloaded", n + 1, WAIT)
    })
    .await;
    assert!(ok, "the gateway never reloaded gateway.yaml{}", dump(gw));
}

/// Waits for a rejection whose reasons include `reason`, on a line naming gateway.yaml.
fn wait_rejection(gw: &Gateway, count: usize, reason: &str) {
    let file = gw.path("gateway.yaml").display().to_string();
    let rejected = gw.wait_for_log_count("config rejected, still serving version", count, WAIT);
    let named = wait_line(gw, |l| l.contains(&file) && l.contains(reason));
    assert!(rejected && named, "no rejection for `{reason}` in {file}{}", dump(gw));
}

/// Polls the log for a line matching `pred`.
fn wait_line(gw: &Gateway, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if gw.logs().iter().any(|l| pred(l)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_gateway_yaml_is_rejected_and_the_old_config_keeps_serving() {
    let first = config(&["/a"]);
    let gw = Gateway::start(BIN, &first, &[]);
    prime_watcher(&gw, &first).await;
    assert_eq!(status(&gw, "/a").await, 200);

    // Truncated in place, as `>` in a shell or an editor's first write does.
    std::fs::File::create(gw.path("gateway.yaml")).expect("truncate gateway.yaml");
    wait_rejection(&gw, 1, "the file is empty");
    assert_eq!(
        status(&gw, "/a").await,
        200,
        "the old config must keep serving{}",
        dump(&gw)
    );

    // A config that parses but has no organization: rejected as well.
    gw.write_file("gateway.yaml", &test_support::gateway_yaml("[]", ""));
    wait_rejection(&gw, 2, "no organization");
    assert_eq!(
        status(&gw, "/a").await,
        200,
        "the old config must keep serving{}",
        dump(&gw)
    );

    // Then a good write is picked up.
    gw.write_file("gateway.yaml", &config(&["/a", "/b"]));
    let b = eventually(WAIT, || async { status(&gw, "/b").await == 200 }).await;
    assert!(b, "the good config was not picked up{}", dump(&gw));
    assert_eq!(status(&gw, "/a").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_yaml_of_comments_only_is_rejected_on_sighup() {
    let gw = Gateway::start(BIN, &config(&["/a"]), &[]);
    std::fs::write(gw.path("gateway.yaml"), "# being rewritten\n").expect("write");
    gw.signal("HUP");
    wait_rejection(&gw, 1, "the file is empty");
    assert_eq!(
        status(&gw, "/a").await,
        200,
        "the old config must keep serving{}",
        dump(&gw)
    );
}

#[test]
fn run_without_a_config_still_serves_the_embedded_default() {
    // The embedded default is not a file: the empty-file rule does not apply to it. It binds
    // 127.0.0.1:8080, which another process may hold; it must at least load (no config error).
    let out = std::process::Command::new(BIN)
        .args(["check", "-c", "/dev/null"])
        .env_remove("CRATOPUS_CONFIG")
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1), "an empty file is refused");
    let mut child = std::process::Command::new(BIN)
        .arg("run")
        .env_remove("CRATOPUS_CONFIG")
        .env("CRATOPUS_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cratopus");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    let mut loaded = false;
    for line in lines.map_while(Result::ok) {
        seen.push(line.clone());
        if line.contains("serving the embedded default") {
            loaded = true;
            break;
        }
        if line.contains("invalid config") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(loaded, "the embedded default did not load:\n{}", seen.join("\n"));
}
