//! What reaches the backend and what counts against it: hop-by-hop and identity headers on the
//! way in, framing on the way out, client faults that must not count against a target, and
//! truncated responses that must. Raw bytes on both sides where a client library or a backend
//! parser would normalize what a test is about.

mod common_ops;

use common_ops::{dump, gateway_with_org_files, start_gateway, targets};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::http::Request;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::raw::{RawBackend, raw_status};
use test_support::{Gateway, eventually, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(10);

/// A gateway with an admin listener (second address), a traffic log, `extra` top-level YAML
/// and the organization `org`.
fn gateway(org: &str, extra: &str) -> Gateway {
    start_gateway(
        &gateway_with_org_files(&format!(
            "admin:\n  bind: 127.0.0.1:0\n  token: {TOKEN}\ntraffic_log:\n  path: traffic.log\n{extra}"
        )),
        &[("orgs/t.yaml", org)],
    )
}

/// Writes `bytes` as a client on a new connection and reads until the gateway closes it (every
/// request here says `Connection: close`, and a broken one closes anyway).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    read_all(&mut s).await
}

async fn read_all(s: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the gateway neither answered nor closed: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The `error.code` of a gateway JSON error in a raw response.
fn error_code(raw: &str) -> String {
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

/// The values of header `name` in a raw response's head.
fn response_headers(raw: &str, name: &str) -> Vec<String> {
    let head = raw.split_once("\r\n\r\n").map_or(raw, |(h, _)| h);
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// Upstream calls timed in `cratopus_upstream_duration_seconds`, over every route.
async fn upstream_calls_timed(gw: &Gateway) -> u64 {
    let admin = gw.addrs()[1];
    let req = Request::get(format!("http://{admin}/metrics"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&test_support::client(), req)
        .await
        .text()
        .lines()
        .filter(|l| l.starts_with("cratopus_upstream_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The traffic log's lines so far, parsed.
fn traffic(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.path("traffic.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for a traffic-log line with `status` and `error` code.
async fn wait_traffic(gw: &Gateway, status: u64, error: &str) -> bool {
    eventually(WAIT, || async {
        traffic(gw).iter().any(|l| l["status"] == status && l["error"] == error)
    })
    .await
}

/// An organization with one upstream `u` on `targets` (with `upstream_extra` lines under it)
/// and a catch-all route (with `route_extra` lines under it).
fn org(targets: &[String], upstream_extra: &str, route_extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "name: t\nupstreams:\n  u:\n    targets: [{}]\n{upstream_extra}routes:\n  - path: /{{*rest}}\n    upstream: u\n{route_extra}",
        list.join(", ")
    )
}

// --- Point 2: proxy credentials are the gateway's, not the backend's ---

#[tokio::test(flavor = "multi_thread")]
async fn proxy_authorization_is_not_forwarded_and_proxy_authenticate_not_relayed() {
    let backend = RawBackend::start(
        b"HTTP/1.1 200 OK\r\nproxy-authenticate: Basic realm=\"backend\"\r\nx-kept: yes\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let gw = gateway(&org(&[backend.url()], "", ""), "");
    let raw = exchange(
        gw.addr(),
        b"GET /x HTTP/1.1\r\nHost: t\r\nProxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nX-Other: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}{}", dump(&gw));
    assert_eq!(response_headers(&raw, "x-kept"), ["yes"]);
    assert!(response_headers(&raw, "proxy-authenticate").is_empty(), "{raw}");
    let got = backend.last().expect("the backend got the request");
    assert!(got.headers("proxy-authorization").is_empty(), "{}", got.head);
    assert_eq!(got.headers("x-other"), ["1"]);
}

// --- Point 7: only the gateway says who the client is ---

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(b"this-is-a-test-secret-of-32-bytes!!");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("token")
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_come_only_from_the_gateway_on_every_route() {
    let backend = RawBackend::ok().await;
    let org = format!(
        "name: t
consumers:
  - id: app-7
    jwt_subjects: [user-7]
upstreams:
  u:
    targets: [\"{}\"]
routes:
  - path: /open
    upstream: u
  - path: /jwt
    upstream: u
    auth:
      jwt:
        secret: this-is-a-test-secret-of-32-bytes!!
        forward_claims: {{sub: X-User-Id}}
        consumer_claim: sub
",
        backend.url()
    );
    let gw = gateway(&org, "");

    // A route without authentication: the client's own identity headers do not pass.
    let raw = exchange(
        gw.addr(),
        b"GET /open HTTP/1.1\r\nHost: t\r\nX-Consumer-Id: admin\r\nX-User-Id: root\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}{}", dump(&gw));
    let got = backend.last().unwrap();
    assert!(got.headers("x-consumer-id").is_empty(), "{}", got.head);
    assert!(
        got.headers("x-user-id").is_empty(),
        "a claim header another route forwards: {}",
        got.head
    );

    // With authentication: the gateway's values, once, whatever the client sent or named in
    // `Connection` to have them dropped.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = hs256(&json!({"sub": "user-7", "exp": exp}));
    let req = format!(
        "GET /jwt HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nX-Consumer-Id: admin\r\nX-User-Id: root\r\nConnection: close, X-Consumer-Id, X-User-Id, X-Forwarded-For\r\n\r\n"
    );
    let raw = exchange(gw.addr(), req.as_bytes()).await;
    assert_eq!(raw_status(&raw), 200, "{raw}{}", dump(&gw));
    let got = backend.last().unwrap();
    assert_eq!(got.headers("x-consumer-id"), ["app-7"], "{}", got.head);
    assert_eq!(got.headers("x-user-id"), ["user-7"], "{}", got.head);
    assert_eq!(got.headers("x-forwarded-for"), ["127.0.0.1"], "{}", got.head);
    assert!(got.headers("authorization").len() == 1);
}

// --- Point 14: upstream framing ---

#[tokio::test(flavor = "multi_thread")]
async fn chunked_wins_over_content_length_from_a_backend() {
    // Both framings: the chunked body is 20 bytes, the (wrong) Content-Length says 5.
    let backend = RawBackend::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n14\r\n0123456789abcdefghij\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway(&org(&[backend.url()], "", ""), "");
    let raw = exchange(gw.addr(), b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&raw), 200, "{raw}{}", dump(&gw));
    assert!(
        !response_headers(&raw, "content-length").contains(&"5".to_string()),
        "the backend's Content-Length passed: {raw}"
    );
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    let whole = if response_headers(&raw, "transfer-encoding").is_empty() {
        body.to_string()
    } else {
        // Re-chunked by the gateway: drop the chunk sizes.
        body.split("\r\n").skip(1).step_by(2).collect::<String>()
    };
    assert_eq!(whole, "0123456789abcdefghij", "{raw}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsolicited_101_from_a_backend_is_a_502() {
    let backend =
        RawBackend::start(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
            .await;
    let gw = gateway(&org(&[backend.url()], "", ""), "");
    let raw = exchange(gw.addr(), b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&raw), 502, "{raw}{}", dump(&gw));
    assert_eq!(error_code(&raw), "upstream_failed", "{raw}");
    assert!(response_headers(&raw, "upgrade").is_empty(), "{raw}");
}

// --- Points 9 and 11: client faults count against nobody ---

/// An upstream whose breaker opens on the first failure, so that any fault counted against
/// the target shows.
const TOUCHY: &str = "    circuit_breaker:\n      consecutive_failures: 1\n      open_for: 60s\n";

/// The breaker of the only target is still closed and never opened, and it still serves.
async fn assert_target_untouched(gw: &Gateway, backend: &RawBackend) {
    let t = &targets(gw, TOKEN).await[0];
    assert_eq!(t["circuit"], "closed", "{t}{}", dump(gw));
    assert_eq!(t["circuit_opens"], 0, "{t}");
    let raw = exchange(gw.addr(), b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&raw), 200, "{raw}{}", dump(gw));
    assert_eq!(backend.last().unwrap().target(), "/ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunked_body_is_a_400_against_nobody() {
    let backend = RawBackend::ok().await;
    let gw = gateway(&org(&[backend.url()], TOUCHY, ""), "");
    for _ in 0..5 {
        // `zz` is no chunk size.
        let raw = exchange(
            gw.addr(),
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n",
        )
        .await;
        assert_eq!(raw_status(&raw), 400, "{raw}{}", dump(&gw));
        assert_eq!(error_code(&raw), "bad_request_body", "{raw}");
    }
    assert_target_untouched(&gw, &backend).await;
}

/// A backend that reads a request head and then whatever follows until the gateway closes the
/// connection, counting the heads and the closed connections; it never answers.
async fn holding_backend() -> (
    SocketAddr,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (heads, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, c) = (heads.clone(), closed.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let mut head = false;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    if !head && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        head = true;
                        h.fetch_add(1, Ordering::SeqCst);
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, heads, closed, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_aborted_mid_body_counts_against_nobody() {
    let (addr, heads, closed, _task) = holding_backend().await;
    let gw = gateway(&org(&[format!("http://{addr}")], TOUCHY, ""), "");
    for i in 1..=5 {
        let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n0123456789")
            .await
            .unwrap();
        // The upload is under way to the target, then the client goes away mid-body.
        assert!(
            eventually(WAIT, || async { heads.load(Ordering::SeqCst) >= i }).await,
            "upload {i} never reached the target (did an earlier abort open its breaker?){}",
            dump(&gw)
        );
        drop(s);
        // The gateway gives up the upstream request.
        assert!(
            eventually(WAIT, || async { closed.load(Ordering::SeqCst) >= i }).await,
            "{}",
            dump(&gw)
        );
    }
    let t = &targets(&gw, TOKEN).await[0];
    assert_eq!(t["circuit"], "closed", "{t}{}", dump(&gw));
    assert_eq!(t["circuit_opens"], 0, "{t}");
    assert!(
        traffic(&gw).iter().all(|l| l["status"] != 502 && l["status"] != 504),
        "{:?}",
        traffic(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408_after_the_client_body_timeout_against_nobody() {
    let backend = RawBackend::ok().await;
    let gw = gateway(
        &org(&[backend.url()], TOUCHY, ""),
        "limits:\n  client_body_timeout: 1s\n",
    );
    // One byte, then nothing: the pause is longer than the timeout. The answer may take up to
    // 30 s on a loaded machine before the test gives up.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0")
        .await
        .unwrap();
    let give_up = async {
        tokio::time::sleep(Duration::from_secs(30)).await;
    };
    let raw = tokio::select! {
        raw = read_all(&mut s) => raw,
        _ = give_up => panic!("no answer to a stalled body within 30 s{}", dump(&gw)),
    };
    assert_eq!(raw_status(&raw), 408, "{raw}{}", dump(&gw));
    assert_eq!(error_code(&raw), "client_body_timeout", "{raw}");
    assert!(
        wait_traffic(&gw, 408, "client_body_timeout").await,
        "{:?}",
        traffic(&gw)
    );
    // The stall is not the target's latency either.
    assert_eq!(upstream_calls_timed(&gw).await, 0);
    assert_target_untouched(&gw, &backend).await;
    assert_eq!(upstream_calls_timed(&gw).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_timeout_while_the_body_is_still_coming_is_the_clients_408() {
    let backend = RawBackend::ok().await;
    // The route's response timeout fires first; the body idle timeout is the default 60 s.
    let gw = gateway(&org(&[backend.url()], TOUCHY, "    timeout: 1s\n"), "");
    let raw = exchange(
        gw.addr(),
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234",
    )
    .await;
    assert_eq!(raw_status(&raw), 408, "{raw}{}", dump(&gw));
    assert_eq!(error_code(&raw), "client_body_timeout", "{raw}");
    assert_target_untouched(&gw, &backend).await;
}

// --- Point 10: truncated responses count as failures ---

/// A backend that answers every request with a head promising 100000 bytes, sends 1000 and
/// closes the connection; it counts the answers it cut.
async fn truncating_backend() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut res = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nx-backend: cut\r\n\r\n".to_vec();
                res.extend_from_slice(&[b'x'; 1000]);
                let _ = s.write_all(&res).await;
                let _ = s.shutdown().await;
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, served, task)
}

/// GETs `/x` until `done` holds for the targets; returns how many the truncating target
/// answered.
async fn get_until(gw: &Gateway, done: impl Fn(&[Value]) -> bool) -> usize {
    let mut cut = 0;
    for _ in 0..50 {
        if done(&targets(gw, TOKEN).await) {
            return cut;
        }
        let raw = exchange(gw.addr(), b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        if raw.contains("x-backend: cut") {
            cut += 1;
        }
    }
    panic!("never done after 50 requests{}", dump(gw));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_cuts_its_bodies_short_opens_its_breaker() {
    let (bad, _served, _task) = truncating_backend().await;
    let good = RawBackend::ok().await;
    let gw = gateway(
        &org(
            &[format!("http://{bad}"), good.url()],
            "    circuit_breaker:\n      consecutive_failures: 3\n      open_for: 60s\n",
            "",
        ),
        "",
    );
    let cut = get_until(&gw, |ts| ts.iter().any(|t| t["circuit"] == "open")).await;
    assert_eq!(cut, 3, "three cut bodies open the breaker{}", dump(&gw));
    let open: Vec<Value> = targets(&gw, TOKEN)
        .await
        .into_iter()
        .filter(|t| t["circuit"] == "open")
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["target"], bad.to_string(), "{open:?}");
    // The good target serves everything now.
    for _ in 0..6 {
        let raw = exchange(gw.addr(), b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert_eq!(raw_status(&raw), 200, "{raw}");
        assert!(raw.ends_with("ok"), "{raw}");
    }
    // The traffic log says the body was cut.
    assert!(
        wait_traffic(&gw, 200, "upstream_body_incomplete").await,
        "{:?}",
        traffic(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_cuts_its_bodies_short_is_ejected() {
    let (bad, _served, _task) = truncating_backend().await;
    let good = RawBackend::ok().await;
    let gw = gateway(
        &org(
            &[format!("http://{bad}"), good.url()],
            "    outlier_detection:\n      consecutive_5xx: 2\n      base_ejection_time: 60s\n",
            "",
        ),
        "",
    );
    let cut = get_until(&gw, |ts| ts.iter().any(|t| t["ejected"] == true)).await;
    assert_eq!(cut, 2, "two cut bodies eject the target{}", dump(&gw));
    assert!(gw.wait_for_log("target ejected (outlier detection)", WAIT));
    for _ in 0..6 {
        let raw = exchange(gw.addr(), b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert_eq!(raw_status(&raw), 200, "{raw}");
        assert!(raw.ends_with("ok"), "{raw}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_check_can_require_the_whole_body() {
    let check = |read_body: bool| {
        format!(
            "    health_check:\n      path: /health\n      interval: 200ms\n      timeout: 2s\n      unhealthy_threshold: 1\n      read_body: {read_body}\n"
        )
    };
    let (bad, _served, _task) = truncating_backend().await;
    let strict = gateway(&org(&[format!("http://{bad}")], &check(true), ""), "");
    assert!(
        strict.wait_for_log("target is unhealthy", WAIT),
        "a cut body fails the check{}",
        dump(&strict)
    );
    assert!(
        strict
            .log_lines_with("target is unhealthy")
            .iter()
            .any(|l| l.contains("body")),
        "{}",
        dump(&strict)
    );
    assert_eq!(targets(&strict, TOKEN).await[0]["healthy"], false);

    // Without `read_body` the head alone decides: after several checks the target is still in.
    let (bad, served, _task) = truncating_backend().await;
    let lax = gateway(&org(&[format!("http://{bad}")], &check(false), ""), "");
    assert!(eventually(WAIT, || async { served.load(Ordering::SeqCst) >= 3 }).await);
    assert_eq!(targets(&lax, TOKEN).await[0]["healthy"], true, "{}", dump(&lax));
    assert!(lax.log_lines_with("target is unhealthy").is_empty(), "{}", dump(&lax));
}
