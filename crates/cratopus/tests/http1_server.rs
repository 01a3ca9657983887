//! The gateway's own HTTP/1 server (issue 16, `crates/cratopus-http1` in the listener), seen by
//! a client over raw TCP: pipelining, `Expect: 100-continue`, the smuggling and grammar
//! refusals (status, JSON error body, connection closed, nothing forwarded, a traffic-log line),
//! chunked bodies written in pieces, HTTP/1.0, HEAD, half-close, the header-read timeout, the
//! head size limit, and the memory an idle keep-alive connection holds.
//!
//! Every gateway here runs on the own loop (the default). Running the tests with
//! `CRATOPUS_HTTP1=hyper` in the environment starts them on hyper's server instead, to compare
//! (the refusals and the memory bound then fail: hyper is laxer and heavier).

mod common_ops;
mod common_proxy;

use common_ops::{dump, hash_key};
use common_proxy::{BIN, Raw, RawResponse};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::Response;
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::raw::RawBackend;
use test_support::{Backend, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an effect: far above the timeouts a test waits out (1 s), far below
/// the `header_read_timeout` of the other gateways (60 s).
const WAIT: Duration = Duration::from_secs(15);
const KEY: &str = "http1-key-0123456789abcdef";

/// Which HTTP/1 server the gateways run: the own loop unless the environment says otherwise.
fn http1_mode() -> String {
    std::env::var("CRATOPUS_HTTP1").unwrap_or_else(|_| "own".to_string())
}

/// A gateway with a traffic log, `limits` (YAML lines indented by two, or empty), and one
/// organization answering every host: `/echo` (the mirror), `/key` (the mirror behind an API
/// key) and `/b/{*rest}` (to `upstream`).
///
/// Unless `limits` sets it, `header_read_timeout` is far beyond [`WAIT`]: a connection a test
/// sees closed was closed by the gateway's choice, not by the timeout of an idle connection.
fn gateway(upstream: &str, limits: &str) -> Gateway {
    let org = format!(
        "name: acme
consumers:
  - id: app
    keys: [\"{}\"]
upstreams:
  b:
    targets: [\"{upstream}\"]
  m:
    targets: [\"mirror://\"]
routes:
  - {{name: echo, path: /echo, upstream: m}}
  - {{name: key, path: /key, upstream: m, auth: {{api_key: {{}}}}}}
  - {{name: b, path: \"/b/{{*rest}}\", upstream: b}}
",
        hash_key(KEY)
    );
    let timeout = if limits.contains("header_read_timeout") {
        ""
    } else {
        "  header_read_timeout: 60s\n"
    };
    let limits = format!("limits:\n{timeout}{limits}\n");
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations: orgs/*.yaml\nwatch: false\ntraffic_log:\n  path: logs/traffic.log\n{limits}"
    );
    let mode = http1_mode();
    tokio::task::block_in_place(|| {
        Gateway::start_with_env(BIN, &yaml, &[("orgs/acme.yaml", &org)], &[("CRATOPUS_HTTP1", &mode)])
    })
}

/// A backend that records every byte it receives, over all its connections, and answers each
/// request head with `200 ok` (bodies are not read: it is a tripwire, not a server).
struct Tripwire {
    addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    async fn start() -> Tripwire {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let all = bytes.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let all = all.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut answered = 0;
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = s.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        all.lock().unwrap().extend_from_slice(&chunk[..n]);
                        mine.extend_from_slice(&chunk[..n]);
                        let heads = mine.windows(4).filter(|w| w == b"\r\n\r\n").count();
                        while answered < heads {
                            answered += 1;
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Tripwire { addr, bytes, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for a traffic-log line with `status` and returns it.
async fn wait_for_line(gw: &Gateway, status: u64) -> Value {
    common_ops::wait_for_status_line(gw, status, WAIT).await
}

/// Checks a gateway error: `status`, `content-type: application/json`, and the body
/// `{"error": {"status": status, "code": "…", …}}`.
fn assert_json_error(r: &RawResponse, status: u16, gw: &Gateway) {
    assert_eq!(
        r.status,
        status,
        "{}\n{}{}",
        r.head,
        String::from_utf8_lossy(&r.body),
        dump(gw)
    );
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type `{ct}` in\n{}", r.head);
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "the {status} has no JSON body ({e}):\n{}\n{:?}",
            r.head,
            String::from_utf8_lossy(&r.body)
        )
    });
    assert_eq!(v["error"]["status"], status, "{v}");
    assert!(
        v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
        "no error code: {v}"
    );
}

/// Reads the rest of the connection; panics unless the gateway closed it within [`WAIT`].
async fn assert_closed(raw: &mut Raw<TcpStream>, gw: &Gateway) -> Vec<u8> {
    let rest = raw.read_until_closed(WAIT).await;
    rest.unwrap_or_else(|| panic!("the gateway left the connection open{}", dump(gw)))
}

/// Writes `request` on its own connection and checks the refusal a client sees: `status` with
/// a JSON error body, the connection closed after it, a traffic-log line with `status`, and
/// nothing of it at the backend (a valid request sent afterwards is the only one there).
async fn assert_refused(request: &[u8], status: u16) {
    let backend = Tripwire::start().await;
    let gw = gateway(&backend.url(), "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(request).await;
    let r = raw.read_response(false).await;
    assert_json_error(&r, status, &gw);
    let rest = assert_closed(&mut raw, &gw).await;
    assert!(
        rest.is_empty(),
        "bytes after the refusal: {:?}",
        String::from_utf8_lossy(&rest)
    );
    wait_for_line(&gw, status as u64).await;

    // Whatever the gateway would have forwarded of the refused request reached the backend
    // before the refusal was written: a request forwarded now comes after it.
    let mut probe = Raw::connect(gw.addr()).await;
    probe.send(b"GET /b/probe HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = probe.read_response(false).await;
    assert_eq!(r.status, 200, "the probe: {}{}", r.head, dump(&gw));
    let seen = backend.received();
    assert!(
        seen.starts_with("GET /b/probe HTTP/1.1\r\n") && seen.matches(" HTTP/1.1\r\n").count() == 1,
        "the backend received more than the probe:\n{seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_pipelined_requests_come_back_in_order_with_their_bodies() {
    let backend = RawBackend::ok().await;
    let gw = gateway(&backend.url(), "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(
        b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /b/two HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world\
          GET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let first = raw.read_response(false).await;
    assert_eq!(first.status, 200, "{}{}", first.head, dump(&gw));
    assert_eq!(first.json()["uri"], "/echo?n=1");
    let second = raw.read_response(false).await;
    assert_eq!(second.status, 200, "{}{}", second.head, dump(&gw));
    assert_eq!(second.body, b"ok");
    let third = raw.read_response(false).await;
    assert_eq!(third.status, 200, "{}{}", third.head, dump(&gw));
    assert_eq!(third.json()["uri"], "/echo?n=3");
    assert_eq!(third.json()["body_bytes"], 0);

    let got = backend.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].request_line(), "POST /b/two HTTP/1.1");
    assert_eq!(got[0].body, b"hello world");
    // Still usable after the three.
    raw.send(b"GET /echo?n=4 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let fourth = raw.read_response(false).await;
    assert_eq!(fourth.json()["uri"], "/echo?n=4");
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_gets_100_then_the_body_reaches_the_backend() {
    let backend = RawBackend::ok().await;
    let gw = gateway(&backend.url(), "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"POST /b/up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let (status, head, _) = raw.read_head().await;
    assert_eq!(status, 100, "{head}{}", dump(&gw));
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    raw.send(b"hello").await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
    assert_eq!(r.body, b"ok");
    let got = backend.last().expect("nothing reached the backend");
    assert_eq!(got.body, b"hello");
    // The connection goes on.
    raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw.read_response(false).await.status, 200);
}

/// A route that refuses before reading the body answers at once, without a `100 Continue`. The
/// client has not sent the body and the gateway cannot know whether it will: it closes the
/// connection after the answer (hyper does the same), so no body can be read as a request.
#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_refused_before_the_body_gets_no_100_and_the_connection_closes() {
    let backend = RawBackend::ok().await;
    let gw = gateway(&backend.url(), "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let r = raw.read_response(false).await;
    assert_json_error(&r, 401, &gw);
    let rest = assert_closed(&mut raw, &gw).await;
    assert!(rest.is_empty(), "after the 401: {:?}", String::from_utf8_lossy(&rest));
}

async fn expect_refused(request: &str, status: u16) {
    assert_refused(request.as_bytes(), status).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_is_400() {
    expect_refused(
        "POST /b/cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_content_length_lines_are_400() {
    expect_refused(
        "POST /b/cl-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_content_length_list_is_400() {
    expect_refused(
        "POST /b/cl-list HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na",
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_lf_line_endings_are_400() {
    expect_refused("GET /b/lf HTTP/1.1\nHost: x\n\n", 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn obs_fold_is_400() {
    expect_refused("GET /b/fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_size_overflow_is_400() {
    expect_refused(
        "POST /b/chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\na\r\n0\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_coding_other_than_chunked_is_501() {
    expect_refused(
        "POST /b/gzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_2_0_on_a_request_line_is_505() {
    expect_refused("GET /b/v2 HTTP/2.0\r\nHost: x\r\n\r\n", 505).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_1_1_without_host_is_400() {
    expect_refused("GET /b/nohost HTTP/1.1\r\n\r\n", 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_written_in_pieces_reaches_the_backend_whole() {
    // The backend answers with the body it read, whole.
    let backend = Backend::start(|req, _peer| async move {
        let body = req.into_body().collect().await.map(|c| c.to_bytes());
        let text = match body {
            Ok(b) => format!("got {} bytes: {}", b.len(), String::from_utf8_lossy(&b)),
            Err(e) => format!("body error: {e}"),
        };
        Response::new(Full::new(Bytes::from(text)))
    })
    .await;
    let gw = gateway(&backend.url(), "");
    let mut raw = Raw::connect(gw.addr()).await;
    // Cut everywhere a decoder could trip: inside the head, inside a chunk-size line, between
    // a size and its CRLF, inside the data, before the last chunk's CRLF.
    let pieces: [&[u8]; 10] = [
        b"POST /b/chunked HTTP/1.1\r\nHost: x\r\nTransfer-",
        b"Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"0",
        b"f\r\n, chunked ",
        b"wor",
        b"ld\r\n",
        b"8\r\n and on",
        b"e\r\n0\r\n",
        b"\r\n",
    ];
    for p in pieces {
        raw.send(p).await;
        tokio::task::yield_now().await;
    }
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
    let expected = "hello, chunked world and one";
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("got {} bytes: {expected}", expected.len())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_1_0_without_keep_alive_is_closed_after_the_response() {
    let gw = gateway("http://127.0.0.1:1", "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /echo?v=10 HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
    assert!(r.head.starts_with("HTTP/1."), "{}", r.head);
    assert_eq!(r.json()["uri"], "/echo?v=10");
    assert!(
        !r.header("connection").unwrap_or("").eq_ignore_ascii_case("keep-alive"),
        "{}",
        r.head
    );
    assert_closed(&mut raw, &gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_1_0_with_keep_alive_keeps_the_connection() {
    let gw = gateway("http://127.0.0.1:1", "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /echo?n=1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
    assert!(
        r.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")),
        "{}",
        r.head
    );
    assert!(
        r.header("content-length").is_some(),
        "a keep-alive HTTP/1.0 answer needs a length:\n{}",
        r.head
    );
    assert_eq!(r.json()["uri"], "/echo?n=1");
    raw.send(b"GET /echo?n=2 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
    assert_eq!(r.json()["uri"], "/echo?n=2");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_1_0_gets_a_chunked_backend_answer_without_chunk_framing() {
    let backend = RawBackend::start(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway(&backend.url(), "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /b/chunks HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let (status, head, headers) = raw.read_head().await;
    assert_eq!(status, 200, "{head}{}", dump(&gw));
    assert!(
        headers.get("transfer-encoding").is_none(),
        "chunked framing to an HTTP/1.0 client:\n{head}"
    );
    // What follows the head, to the end of the connection, is the body and nothing else.
    let body = assert_closed(&mut raw, &gw).await;
    assert_eq!(String::from_utf8_lossy(&body), "hello world", "after\n{head}");
    if let Some(len) = headers.get("content-length") {
        assert_eq!(len, "11", "{head}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn head_gets_no_body_and_the_next_pipelined_request_works() {
    let gw = gateway("http://127.0.0.1:1", "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"HEAD /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let head = raw.read_response(true).await;
    assert_eq!(head.status, 200, "{}{}", head.head, dump(&gw));
    // Had a body followed the HEAD's head, it would be read here as the next status line.
    let next = raw.read_response(false).await;
    assert!(next.head.starts_with("HTTP/1.1 200"), "{}", next.head);
    assert_eq!(next.json()["uri"], "/echo?n=2");
    assert_eq!(next.json()["method"], "GET");
    assert!(
        raw.leftover().is_empty(),
        "{:?}",
        String::from_utf8_lossy(raw.leftover())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_half_close_after_its_response_closes_the_connection() {
    let gw = gateway("http://127.0.0.1:1", "");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw.read_response(false).await.status, 200);
    raw.io.shutdown().await.unwrap();
    let rest = assert_closed(&mut raw, &gw).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_head_gets_408_with_a_json_body() {
    let gw = gateway("http://127.0.0.1:1", "  header_read_timeout: 1s");
    let mut raw = Raw::connect(gw.addr()).await;
    raw.timeout = WAIT;
    raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n").await;
    let r = raw.read_response(false).await;
    assert_json_error(&r, 408, &gw);
    assert_closed(&mut raw, &gw).await;
    let line = wait_for_line(&gw, 408).await;
    assert_eq!(line["path"], "/echo", "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_without_a_byte() {
    let gw = gateway("http://127.0.0.1:1", "  header_read_timeout: 1s");
    // Nothing sent at all.
    let mut silent = Raw::connect(gw.addr()).await;
    // One request, then nothing: the keep-alive wait ends without a 408.
    let mut kept = Raw::connect(gw.addr()).await;
    kept.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(kept.read_response(false).await.status, 200);

    let rest = assert_closed(&mut silent, &gw).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let rest = assert_closed(&mut kept, &gw).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// Over `max_header_bytes`, a little (hyper's engine-side check answered those) and far (hyper's
/// own buffer limit answered those, without a JSON body): 431 with a JSON body either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_over_max_header_bytes_is_431_with_a_json_body() {
    let backend = Tripwire::start().await;
    let gw = gateway(&backend.url(), "  max_header_bytes: 4KiB");
    // Over the limit: the engine answers (the head was read whole, so the connection stays
    // usable); far over it (twice the limit, at least 16 KiB), the codec refuses the head before
    // its end and closes.
    for size in [6 * 1024, 40 * 1024] {
        let mut raw = Raw::connect(gw.addr()).await;
        let req = format!("GET /b/big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(size));
        raw.send(req.as_bytes()).await;
        let r = raw.read_response(false).await;
        assert_json_error(&r, 431, &gw);
        if size < 16 * 1024 {
            raw.send(b"GET /b/after HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let r = raw.read_response(false).await;
            assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
        } else {
            assert_closed(&mut raw, &gw).await;
        }
    }
    // Just under the limit passes.
    let mut raw = Raw::connect(gw.addr()).await;
    let req = format!(
        "GET /b/fits HTTP/1.1\r\nHost: x\r\nX-Fits: {}\r\n\r\n",
        "a".repeat(3 * 1024)
    );
    raw.send(req.as_bytes()).await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "{}{}", r.head, dump(&gw));
    wait_for_line(&gw, 431).await;
    assert!(!backend.received().contains("/b/big"), "{}", backend.received());
    assert!(backend.received().contains("/b/after"), "{}", backend.received());
}

/// Idle keep-alive connections opened for the memory test.
const IDLE_CONNS: usize = 2000;
/// The RSS an idle keep-alive connection may add to the gateway, in KiB. In a debug build,
/// hyper's server costs 33–39 KiB per idle connection (its read and write buffers and its
/// connection state stay with the connection); the own loop gives its buffers back between
/// requests and measured 3.2 KiB (its task, sized for its largest state, and the socket's
/// registration). The bound leaves room for a loaded machine and catches a buffer kept per
/// connection (4 KiB each) or a large state back in the task.
const MAX_KIB_PER_IDLE_CONN: u64 = 8;

/// Raises this process's soft limit on open files to at least `need` (up to the hard limit),
/// so that the gateway started after it inherits the limit too.
fn raise_nofile(need: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) else {
        return;
    };
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let (soft, hard) = match nums[..] {
        [s, h, ..] => (s, h),
        _ => return,
    };
    if soft >= need {
        return;
    }
    assert!(hard >= need, "open files limited to {hard}, the test needs {need}");
    let ok = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "could not raise the open files limit from {soft} to {hard} (prlimit)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_hold_little_memory() {
    raise_nofile(2 * IDLE_CONNS as u64 + 512);
    let gw = gateway("http://127.0.0.1:1", "");
    // Warm up: the runtime's threads, the mirror's route, the allocator's first arenas.
    let mut warm = Vec::new();
    for _ in 0..50 {
        let mut raw = Raw::connect(gw.addr()).await;
        raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(raw.read_response(false).await.status, 200);
        warm.push(raw);
    }
    drop(warm);
    let before = gw.rss_kib();

    let mut conns = Vec::with_capacity(IDLE_CONNS);
    let mut batch = tokio::task::JoinSet::new();
    for i in 0..IDLE_CONNS {
        let addr = gw.addr();
        batch.spawn(async move {
            let mut raw = Raw::connect(addr).await;
            raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let r = raw.read_response(false).await;
            assert_eq!(r.status, 200);
            raw
        });
        if batch.len() >= 64 || i + 1 == IDLE_CONNS {
            while let Some(raw) = batch.join_next().await {
                conns.push(raw.unwrap());
            }
        }
    }
    let after = gw.rss_kib();
    let per_conn = after.saturating_sub(before) as f64 / IDLE_CONNS as f64;
    eprintln!(
        "{} HTTP/1 server: RSS {before} KiB -> {after} KiB with {IDLE_CONNS} idle connections: {per_conn:.2} KiB each",
        http1_mode()
    );
    assert!(before > 0 && after > 0, "RSS not readable");
    assert!(
        per_conn < MAX_KIB_PER_IDLE_CONN as f64,
        "{per_conn:.2} KiB per idle connection (RSS {before} -> {after} KiB), bound {MAX_KIB_PER_IDLE_CONN} KiB"
    );
    // The connections were idle, not closed: the first and the last still serve a request.
    for i in [0, conns.len() - 1] {
        let raw = &mut conns[i];
        raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(raw.read_response(false).await.status, 200);
    }
}
