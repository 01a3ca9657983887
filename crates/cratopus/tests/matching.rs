//! Matching beyond the path, end to end: routes of one path and method told apart by a header,
//! a query parameter, a cookie, a regular expression, an absent header, and the consumer behind
//! a real API key; their order of specificity; 404 when nothing holds; and what `cratopus check`
//! and `cratopus routes` say about such routes. Each upstream is a real backend that names
//! itself in `x-backend`, so every assertion is about which backend the request reached.

mod common_proxy;

use common_proxy::*;
use std::path::PathBuf;
use std::process::Command;

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
