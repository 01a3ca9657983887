//! Requests the client abandons: before the response head (an HTTP/1.1 client that gives up, an
//! HTTP/2 stream reset) they still leave a traffic-log line with status 499, their route's
//! metrics and what was learned of them; in the middle of the body the line says the client
//! went away.

mod common_ops;

use common_ops::{BIN, hash_key, metrics};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::raw::RawBackend;
use test_support::{Backend, Gateway, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "admin-token-0123456789";
const KEY: &str = "abandon-key-0123456789";

/// A backend that takes every request and never answers (until the test ends).
struct Holding {
    _backend: Backend,
    url: String,
    received: Arc<AtomicUsize>,
}

impl Holding {
    async fn start() -> Holding {
        let received = Arc::new(AtomicUsize::new(0));
        let seen = received.clone();
        let backend = Backend::start(move |_req, _peer| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Response<Full<Bytes>>>().await
            }
        })
        .await;
        Holding {
            url: backend.url(),
            _backend: backend,
            received,
        }
    }

    /// Waits until `n` requests have reached the backend: the gateway is waiting for it.
    async fn wait_for(&self, n: usize) {
        let got = eventually(WAIT, || async { self.received.load(Ordering::SeqCst) >= n }).await;
        assert!(got, "the backend did not receive request {n}");
    }
}

/// A gateway with an API-key route `/slow` to `upstream`, a traffic log and the admin API.
fn gateway(upstream: &str) -> Gateway {
    let org = format!(
        "name: acme
domains: [api.acme.test]
consumers:
  - id: mobile-app
    keys: [\"{}\"]
upstreams:
  slow:
    targets: [\"{upstream}\"]
routes:
  - name: slow
    path: /slow
    upstream: slow
    auth:
      api_key: {{}}
",
        hash_key(KEY)
    );
    let yaml = "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\norganizations: orgs/*.yaml\nwatch: false\ntraffic_log:\n  path: logs/traffic.log\n";
    tokio::task::block_in_place(|| {
        Gateway::start_with_env(BIN, yaml, &[("orgs/acme.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)])
    })
}

/// Waits for a traffic-log line with `status` and returns it.
async fn wait_for_line(gw: &Gateway, status: u64) -> Value {
    common_ops::wait_for_status_line(gw, status, WAIT).await
}

fn assert_abandoned_line(line: &Value) {
    assert_eq!(line["error"], "client_closed", "{line}");
    assert_eq!(line["org"], "acme", "{line}");
    assert_eq!(line["route"], "slow", "{line}");
    assert_eq!(line["consumer"], "mobile-app", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/slow", "{line}");
    assert!(
        line["upstream"].as_str().is_some_and(|u| u.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_before_the_head_over_http1_leaves_a_499_line_and_metrics() {
    let backend = Holding::start().await;
    let gw = gateway(&backend.url);

    let mut client = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    client
        .write_all(format!("GET /slow HTTP/1.1\r\nHost: api.acme.test\r\nX-Api-Key: {KEY}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The gateway holds the request at the backend; the client gives up.
    backend.wait_for(1).await;
    drop(client);

    let line = wait_for_line(&gw, 499).await;
    assert_abandoned_line(&line);
    assert_eq!(line["bytes_out"], 0);

    // Counted as a 4xx of the route, and no longer in flight.
    let counted = eventually(WAIT, || async {
        let m = metrics(&gw, TOKEN).await;
        m.contains("cratopus_requests_total{org=\"acme\",route=\"slow\",method=\"GET\",class=\"4xx\"} 1\n")
            && m.contains("cratopus_requests_in_flight{org=\"acme\",route=\"slow\"} 0\n")
    })
    .await;
    assert!(counted, "{}", metrics(&gw, TOKEN).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_reset_before_the_head_over_h2c_leaves_a_499_line() {
    let backend = Holding::start().await;
    let gw = gateway(&backend.url);

    // Over HTTP/2 the organization is named by `:authority` (RFC 9113 §8.3.1), so the request
    // goes over a connection to the gateway with the organization's name in its URI.
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = test_support::hyper::client::conn::http2::handshake(
        test_support::hyper_util::rt::TokioExecutor::new(),
        test_support::hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://api.acme.test/slow")
        .header("x-api-key", KEY)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let pending = tokio::spawn(async move { send.send_request(req).await.map(|r| r.status()) });
    backend.wait_for(1).await;
    // Dropping the response future resets the stream (RST_STREAM CANCEL), as a gRPC deadline does.
    pending.abort();

    let line = wait_for_line(&gw, 499).await;
    assert_abandoned_line(&line);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_mid_body_is_logged_as_client_closed() {
    // The head and 10 bytes of a 100000-byte body, then nothing more.
    let backend = RawBackend::start(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789").await;
    let gw = gateway(&backend.url());

    let mut client = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    client
        .write_all(format!("GET /slow HTTP/1.1\r\nHost: api.acme.test\r\nX-Api-Key: {KEY}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(WAIT, async {
        while !got.ends_with(b"0123456789") {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the gateway closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no head and body start: {}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    drop(client);

    let line = wait_for_line(&gw, 200).await;
    assert_eq!(line["error"], "client_closed", "{line}");
    assert_eq!(line["bytes_out"], 10, "{line}");
    assert_eq!(line["route"], "slow", "{line}");
}
