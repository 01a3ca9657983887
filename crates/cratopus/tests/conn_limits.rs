//! Connection limits: HTTP/2 connections that send nothing useful are closed (idle timeout,
//! header-read timeout, keep-alive pings), an idle HTTP/1.1 keep-alive connection too, and the
//! requests refused before the engine (hyper's 400 and 431, the 408) are logged and counted; a
//! traffic log that cannot be written counts its lost lines.

mod common_ops;

use common_ops::{BIN, dump, metrics, read_lines};
use serde_json::Value;
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::hyper_util::rt::{TokioExecutor, TokioIo};
use test_support::raw::raw_exchange;
use test_support::{Backend, Gateway, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an effect; far above every timeout the configs below set.
const WAIT: Duration = Duration::from_secs(15);
const TOKEN: &str = "admin-token-0123456789";

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];

/// A HEADERS frame on stream 1 with an HPACK block of `GET http /` (static table entries).
fn headers_frame(flags: u8) -> Vec<u8> {
    vec![0, 0, 3, 0x1, flags, 0, 0, 0, 1, 0x82, 0x86, 0x84]
}
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One organization answering every host, its routes `/` (to `upstream`) and `/echo` (the mirror),
/// with `limits`, the admin API and a traffic log at `log`.
fn gateway(limits: &str, upstream: &str, log: &str) -> Gateway {
    let org = format!(
        "name: acme
upstreams:
  b:
    targets: [\"{upstream}\"]
  m:
    targets: [\"mirror://\"]
routes:
  - {{name: root, path: /, upstream: b}}
  - {{name: echo, path: /echo, upstream: m}}
"
    );
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${{ADMIN_TOKEN}}\norganizations: orgs/*.yaml\nwatch: false\ntraffic_log:\n  path: {log}\nlimits:\n{limits}\n"
    );
    tokio::task::block_in_place(|| {
        Gateway::start_with_env(BIN, &yaml, &[("orgs/acme.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)])
    })
}

/// A backend that takes requests and never answers.
async fn holding_backend() -> Backend {
    Backend::start(|_req, _peer| async { std::future::pending::<Response<Full<Bytes>>>().await }).await
}

/// Reads until the gateway closes the connection (end of stream or reset); false if it is still
/// open after [`WAIT`].
async fn closed_by_gateway(s: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn connect_and_send(gw: &Gateway, parts: &[&[u8]]) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    for p in parts {
        s.write_all(p).await.unwrap();
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_connection_with_only_preface_and_settings_is_closed_after_the_idle_timeout() {
    let gw = gateway(
        "  header_read_timeout: 30s\n  idle_timeout: 1s",
        "http://127.0.0.1:1",
        "logs/traffic.log",
    );
    let mut s = connect_and_send(&gw, &[PREFACE, SETTINGS]).await;
    assert!(closed_by_gateway(&mut s).await, "still open{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_header_block_that_never_ends_closes_the_connection_and_is_logged() {
    // The idle timeout and its pings are far away: only the header-read timeout can act.
    let gw = gateway(
        "  header_read_timeout: 1s\n  idle_timeout: 600s",
        "http://127.0.0.1:1",
        "logs/traffic.log",
    );
    let mut s = connect_and_send(&gw, &[PREFACE, SETTINGS, &headers_frame(END_STREAM)]).await;
    assert!(closed_by_gateway(&mut s).await, "still open{}", dump(&gw));

    let path = gw.path("logs/traffic.log");
    let logged = eventually(WAIT, || async {
        read_lines(&path)
            .iter()
            .any(|l| l["status"] == 408 && l["error"] == "request_timeout" && l["client_ip"] == "127.0.0.1")
    })
    .await;
    assert!(logged, "{:?}", read_lines(&path));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_h2_connection_with_a_live_peer_gets_goaway() {
    let gw = gateway(
        "  header_read_timeout: 30s\n  idle_timeout: 1s",
        "http://127.0.0.1:1",
        "logs/traffic.log",
    );
    // hyper's client answers the gateway's pings: only the idle timeout closes this connection.
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) =
        test_support::hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/echo", gw.addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let ended = tokio::time::timeout(WAIT, conn).await;
    assert!(ended.is_ok(), "the idle connection is still open{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_peer_that_stops_answering_pings_is_dropped() {
    let backend = holding_backend().await;
    let gw = gateway(
        "  header_read_timeout: 30s\n  idle_timeout: 1s",
        &backend.url(),
        "logs/traffic.log",
    );
    // A complete request whose answer never comes keeps a stream open (so the idle timeout does
    // not apply); the client then reads nothing and answers no ping.
    let mut s = connect_and_send(&gw, &[PREFACE, SETTINGS, &headers_frame(END_STREAM | END_HEADERS)]).await;
    let dropped = tokio::time::timeout(WAIT, async {
        // Not reading would leave the socket open on our side; reading does not answer pings.
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "still open{}", dump(&gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    let gw = gateway(
        "  header_read_timeout: 1s\n  idle_timeout: 600s",
        "http://127.0.0.1:1",
        "logs/traffic.log",
    );
    let mut s = connect_and_send(&gw, &[b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    // The answer comes, the connection stays for the next request, then closes (silently).
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open{}", dump(&gw));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains(" 408 "), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn heads_refused_before_the_engine_are_logged_and_counted() {
    let gw = gateway(
        "  header_read_timeout: 1s\n  max_header_bytes: 1KiB",
        "http://127.0.0.1:1",
        "logs/traffic.log",
    );
    // A header line without a colon: hyper's own 400.
    let bad = raw_exchange(
        gw.addr(),
        b"GET /bad/path?k=secret HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    // A head far over the limit: hyper's own 431.
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let big = raw_exchange(gw.addr(), big.as_bytes(), Duration::from_secs(2)).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // A head that stops coming: 408 with a request id.
    let slow = raw_exchange(gw.addr(), b"GET /slow/head HTTP/1.1\r\nHost: x\r\n", WAIT).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    let slow_id = slow
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .to_string();

    let path = gw.path("logs/traffic.log");
    let find = |status: u64| read_lines(&path).into_iter().find(|l| l["status"] == status);
    let logged = eventually(WAIT, || async {
        find(400).is_some() && find(431).is_some() && find(408).is_some()
    })
    .await;
    assert!(logged, "{:?}{}", read_lines(&path), dump(&gw));
    let l400 = find(400).unwrap();
    assert_eq!(l400["error"], "bad_request");
    assert_eq!(l400["method"], "GET");
    assert_eq!(l400["path"], "/bad/path");
    assert_eq!(l400["client_ip"], "127.0.0.1");
    assert_eq!(l400["route"], Value::Null);
    let l431 = find(431).unwrap();
    assert_eq!(l431["error"], "headers_too_large");
    assert_eq!(l431["path"], "/big");
    let l408 = find(408).unwrap();
    assert_eq!(l408["error"], "request_timeout");
    assert_eq!(l408["path"], "/slow/head");
    assert_eq!(l408["request_id"], slow_id.as_str());
    assert!(!std::fs::read_to_string(&path).unwrap().contains("secret"));

    let counted = eventually(WAIT, || async {
        metrics(&gw, TOKEN)
            .await
            .contains("cratopus_unrouted_requests_total{class=\"4xx\"} 3\n")
    })
    .await;
    assert!(counted, "{}", metrics(&gw, TOKEN).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_lost_to_a_full_disk_are_counted() {
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let gw = gateway("  header_read_timeout: 10s", "http://127.0.0.1:1", "/dev/full");
    let client = test_support::client();
    for _ in 0..3 {
        let r = test_support::send(
            &client,
            Request::get(gw.url("/echo")).body(Full::new(Bytes::new())).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let counted = eventually(WAIT, || async {
        let m = metrics(&gw, TOKEN).await;
        m.lines()
            .find_map(|l| l.strip_prefix("cratopus_traffic_log_dropped_total "))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 3)
    })
    .await;
    assert!(counted, "{}{}", metrics(&gw, TOKEN).await, dump(&gw));
    assert!(gw.wait_for_log("cannot write the traffic log", WAIT), "{}", dump(&gw));
}
