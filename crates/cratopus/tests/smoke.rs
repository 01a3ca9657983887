//! The embedded default and the mirror, end to end.

use test_support::{Gateway, get, request};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

#[tokio::test]
async fn mirror_echoes_through_the_gateway() {
    let gw = Gateway::start(
        BIN,
        &test_support::gateway_yaml(
            "\n  - name: default\n    upstreams:\n      m:\n        targets: [\"mirror://\"]\n    routes:\n      - path: /{*rest}\n        upstream: m\n",
            "",
        ),
        &[],
    );
    let r = request("POST", &gw.url("/anything?x=1"), None, b"hi").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/anything");
    assert_eq!(v["args"]["x"], "1");
    assert_eq!(v["body"], "hi");
    assert!(r.header("x-request-id").is_some_and(|id| id.len() == 32));
    let h = get(&gw.url("/__health"), None).await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn trace_context_is_continued_or_started() {
    let dir = tempfile_dir();
    let log = dir.join("traffic.log");
    let gw = Gateway::start(
        BIN,
        &test_support::gateway_yaml(
            "\n  - name: default\n    upstreams:\n      m:\n        targets: [\"mirror://\"]\n    routes:\n      - path: /{*rest}\n        upstream: m\n",
            &format!("traffic_log:\n  path: {}\n", log.display()),
        ),
        &[],
    );
    let client = test_support::client();
    let req = test_support::http::Request::get(gw.url("/t"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(test_support::http_body_util::Full::new(
            test_support::hyper::body::Bytes::new(),
        ))
        .unwrap();
    let echo = test_support::send(&client, req).await.json();
    let seen = echo["headers"]["traceparent"]
        .as_str()
        .expect("traceparent upstream")
        .to_string();
    assert!(seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{seen}");
    assert!(
        !seen.contains("00f067aa0ba902b7"),
        "the gateway's span is the upstream's parent: {seen}"
    );

    let fresh = get(&gw.url("/t"), None).await.json();
    let started = fresh["headers"]["traceparent"]
        .as_str()
        .expect("a trace is started")
        .to_string();
    assert_eq!(started.len(), 55, "{started}");
    assert!(!started.contains("4bf92f3577b34da6"));

    // Both trace ids are in the traffic log.
    let mut lines = String::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&log).unwrap_or_default();
        if lines.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        lines.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("\"trace_id\":\"{}\"", &started[3..35])),
        "{lines}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cratopus-smoke-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
