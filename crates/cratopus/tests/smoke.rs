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
