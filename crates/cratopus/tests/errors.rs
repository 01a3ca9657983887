//! The gateway's own answers: 404, 405, 502, 503, 504 and the limits (408, 413, 431), each as
//! a client sees it: status, JSON body and request id.

mod common_proxy;

use common_proxy::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::Response;
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, client, dead_port, eventually, get, request, send};

#[tokio::test(flavor = "multi_thread")]
async fn no_route_is_404_and_wrong_method_is_405_with_allow() {
    let backend = echo_backend("b").await;
    let org = format!(
        "name: t
upstreams:
  u: {{targets: [\"{}\"]}}
routes:
  - path: /things/{{id}}
    methods: [GET, POST]
    upstream: u
  - path: /things/{{id}}
    methods: [PATCH]
    upstream: u
",
        backend.url()
    );
    let gw = gateway_one_org(&org);
    for path in ["/", "/nothing", "/things", "/things/1/more"] {
        let r = get(&gw.url(path), None).await;
        assert_gateway_error(&r, 404, "no_route", &gw);
        assert!(r.header("x-backend").is_none());
    }
    let r = request("DELETE", &gw.url("/things/1"), None, b"").await;
    assert_gateway_error(&r, 405, "method_not_allowed", &gw);
    let allow: BTreeSet<String> = r
        .header("allow")
        .expect("405 without an Allow header")
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    for m in ["GET", "POST", "PATCH"] {
        assert!(allow.contains(m), "Allow {allow:?} lacks {m}");
    }
    assert!(!allow.contains("DELETE"), "Allow {allow:?} lists the refused method");
    // The methods in Allow are indeed allowed.
    let r = request("PATCH", &gw.url("/things/1"), None, b"x").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Every error gets its own request id, and a client's id is kept.
    let a = get(&gw.url("/nothing"), None).await;
    let b = get(&gw.url("/nothing"), None).await;
    assert!(a.header("x-request-id").is_some_and(is_request_id), "{:?}", a.headers);
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    let r = send(
        &client(),
        req("GET", &gw.url("/nothing"), &[("x-request-id", "mine-1")], ""),
    )
    .await;
    assert_gateway_error(&r, 404, "no_route", &gw);
    assert_eq!(r.header("x-request-id"), Some("mine-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_backend_is_502() {
    let port = dead_port();
    let gw = gateway_one_org(&format!(
        "name: t\nupstreams:\n  u:\n    targets: [\"http://127.0.0.1:{port}\"]\n    timeouts: {{connect: 2s}}\nroutes:\n  - path: /{{*rest}}\n    upstream: u\n"
    ));
    let r = get(&gw.url("/x"), None).await;
    assert_gateway_error(&r, 502, "upstream_unreachable", &gw);
    assert!(
        !r.text().contains(&port.to_string()),
        "backend address leaked: {}",
        r.text()
    );
    let r = request("POST", &gw.url("/y"), None, b"body").await;
    assert_gateway_error(&r, 502, "upstream_unreachable", &gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_backend_is_504() {
    let backend = Backend::start(|_req, _peer| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Response::new(Full::new(Bytes::from_static(b"late")))
    })
    .await;
    let fast = echo_backend("fast").await;
    let org = format!(
        "name: t
upstreams:
  slow: {{targets: [\"{}\"]}}
  fast: {{targets: [\"{}\"]}}
routes:
  - path: /slow
    upstream: slow
    timeout: 300ms
  - path: /fast
    upstream: fast
    timeout: 5s
",
        backend.url(),
        fast.url()
    );
    let gw = gateway_one_org(&org);
    let r = tokio::time::timeout(Duration::from_secs(10), get(&gw.url("/slow"), None))
        .await
        .expect("no answer at all");
    assert_gateway_error(&r, 504, "upstream_timeout", &gw);
    // The timeout is the route's, not a blanket one.
    let r = get(&gw.url("/fast"), None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn all_targets_down_is_503() {
    // One target answers its health check with 500, the other refuses connections.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let sick = Backend::start(move |req, _peer| {
        let h = h.clone();
        async move {
            let status = if req.uri().path() == "/healthz" {
                500
            } else {
                h.fetch_add(1, Ordering::SeqCst);
                200
            };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"x")))
                .expect("response")
        }
    })
    .await;
    let dead = dead_port();
    let org = format!(
        "name: t
upstreams:
  u:
    targets: [\"{}\", \"http://127.0.0.1:{dead}\"]
    health_check:
      path: /healthz
      interval: 200ms
      timeout: 1s
      unhealthy_threshold: 1
      healthy_threshold: 1
routes:
  - path: /{{*rest}}
    upstream: u
",
        sick.url()
    );
    let gw = gateway_one_org(&org);
    let down = eventually(Duration::from_secs(10), || async {
        get(&gw.url("/x"), None).await.status == 503
    })
    .await;
    assert!(down, "never answered 503 after the health checks failed\n{}", logs(&gw));
    let before = hits.load(Ordering::SeqCst);
    let r = get(&gw.url("/x"), None).await;
    assert_gateway_error(&r, 503, "no_healthy_target", &gw);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "a request reached the unhealthy backend"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.log_lines_with("unhealthy").len() >= 2
        })
        .await,
        "both targets should be logged as unhealthy:\n{}",
        logs(&gw)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_over_the_limit_are_431() {
    let (backend, seen) = recording_backend("b").await;
    let gw = gateway_with_orgs(
        &[(
            "t",
            &format!(
                "name: t\nupstreams:\n  u:\n    targets: [\"{}\"]\nroutes:\n  - path: /{{*rest}}\n    upstream: u\n",
                backend.url()
            ),
        )],
        "limits:\n  max_header_bytes: 4KiB\n  max_headers: 20",
    );
    // Under the limit passes.
    let small = "s".repeat(2000);
    let r = send(&client(), req("GET", &gw.url("/ok"), &[("x-small", &small)], "")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));

    // Over it: 431 with the JSON error, whether one header or several make it large.
    let big = "b".repeat(8 * 1024);
    let r = send(&client(), req("GET", &gw.url("/one-big"), &[("x-big", &big)], "")).await;
    assert_gateway_error(&r, 431, "headers_too_large", &gw);
    let parts: Vec<String> = (0..5).map(|i| format!("{i}{}", "p".repeat(1500))).collect();
    let names: Vec<String> = (0..5).map(|i| format!("x-part-{i}")).collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(parts.iter().map(String::as_str))
        .collect();
    let r = send(&client(), req("GET", &gw.url("/many"), &headers, "")).await;
    assert_gateway_error(&r, 431, "headers_too_large", &gw);

    // Far over it, the connection layer answers 431 too.
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(
        format!(
            "GET /huge HTTP/1.1\r\nHost: t\r\nX-Huge: {}\r\n\r\n",
            "h".repeat(64 * 1024)
        )
        .as_bytes(),
    )
    .await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 431, "{}", res.head);

    // More header fields than `max_headers`: 431 as well.
    let mut raw = Raw::connect(gw.addr()).await;
    let many: String = (0..40).map(|i| format!("X-N-{i}: {i}\r\n")).collect();
    raw.send(format!("GET /many-fields HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes())
        .await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 431, "{}", res.head);

    let paths: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|v| v["path_and_query"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(paths, ["/ok"], "only the small request may reach the backend");
}

/// A backend that records, per request, how many body bytes arrived and whether the body
/// arrived whole.
async fn counting_backend(log: Arc<Mutex<Vec<(u64, bool)>>>) -> Backend {
    Backend::start(move |req, _peer| {
        let log = log.clone();
        async move {
            let mut body = req.into_body();
            let mut n = 0u64;
            let mut whole = true;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => {
                        whole = false;
                        break;
                    }
                }
            }
            log.lock().expect("lock").push((n, whole));
            Response::new(Full::new(Bytes::from(n.to_string())))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_route_limit_is_413() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let backend = counting_backend(log.clone()).await;
    let org = format!(
        "name: t
upstreams:
  u: {{targets: [\"{}\"]}}
routes:
  - path: /small
    upstream: u
    max_body_bytes: 1KiB
  - path: /other
    upstream: u
",
        backend.url()
    );
    let gw = gateway_with_orgs(&[("t", &org)], "limits:\n  max_body_bytes: 4KiB");

    // At the limit passes.
    let r = send(&client(), req("POST", &gw.url("/small"), &[], vec![b'a'; 1024])).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));
    assert_eq!(r.text(), "1024");

    // Over it with a Content-Length: refused before the backend is asked.
    let r = send(&client(), req("POST", &gw.url("/small"), &[], vec![b'a'; 1025])).await;
    assert_gateway_error(&r, 413, "body_too_large", &gw);
    // The gateway-wide limit applies to routes without their own.
    let r = send(&client(), req("POST", &gw.url("/other"), &[], vec![b'a'; 4096])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send(&client(), req("POST", &gw.url("/other"), &[], vec![b'a'; 5000])).await;
    assert_gateway_error(&r, 413, "body_too_large", &gw);
    assert_eq!(
        log.lock().expect("lock").clone(),
        [(1024, true), (4096, true)],
        "oversized bodies with a Content-Length must not reach the backend"
    );

    // A client that asks first (Expect: 100-continue) is told 413 instead of 100 Continue.
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let res = raw.read_response(false).await;
    assert_error_body(res.status, &res.headers, &res.body, 413, "body_too_large");

    // Over it in a chunked body (no Content-Length): cut off as the bytes pass.
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    let (rd, mut wr) = raw.io.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let chunk = format!("200\r\n{}\r\n", "c".repeat(512));
        for _ in 0..16 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        // Keep the write side open until the response has been read.
        tokio::time::sleep(Duration::from_secs(3)).await;
    });
    let mut reader = Raw::new(rd);
    let res = reader.read_response(false).await;
    writer.abort();
    assert_eq!(
        res.status,
        413,
        "{} {}\n{}",
        res.head,
        String::from_utf8_lossy(&res.body),
        logs(&gw)
    );
    assert_error_body(res.status, &res.headers, &res.body, 413, "body_too_large");
    // The backend may have seen the start of the body, never all of it.
    let seen = log.lock().expect("lock").clone();
    assert!(
        seen[2..].iter().all(|&(n, whole)| n <= 1024 && !whole),
        "the backend received a body over the limit: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_request_head_gets_408_and_the_connection_closes() {
    let backend = echo_backend("b").await;
    let gw = gateway_with_orgs(
        &[(
            "t",
            &format!(
                "name: t\nupstreams:\n  u:\n    targets: [\"{}\"]\nroutes:\n  - path: /{{*rest}}\n    upstream: u\n",
                backend.url()
            ),
        )],
        "limits:\n  header_read_timeout: 1s",
    );
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n").await;
    // ... and nothing more.
    let got = raw
        .read_until_closed(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("the gateway kept a stalled request open\n{}", logs(&gw)));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected a 408 before the close, got {text:?}"
    );
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("408 body not JSON ({e}): {body}"));
    assert_eq!(v["error"]["status"], 408);
    assert_eq!(v["error"]["code"], "request_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn trickled_request_head_gets_408_too() {
    let gw = gateway_with_orgs(
        &[(
            "t",
            "name: t\nupstreams:\n  u:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /{*rest}\n    upstream: u\n",
        )],
        "limits:\n  header_read_timeout: 1s",
    );
    // A header line every 200 ms: the head never completes, but bytes keep coming.
    let stream = tokio::net::TcpStream::connect(gw.addr()).await.expect("connect");
    let (rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if wr.write_all(b"GET /drip HTTP/1.1\r\nHost: t\r\n").await.is_err() {
            return;
        }
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let got = Raw::new(rd)
        .read_until_closed(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("the gateway kept a trickling request head open\n{}", logs(&gw)));
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected a 408 before the close, got {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_408_carries_a_request_id() {
    let gw = gateway_with_orgs(
        &[(
            "t",
            "name: t\nupstreams:\n  u:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /{*rest}\n    upstream: u\n",
        )],
        "limits:\n  header_read_timeout: 1s",
    );
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n").await;
    let res = raw.read_response(false).await;
    assert_error_body(res.status, &res.headers, &res.body, 408, "request_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connection_is_closed_without_408() {
    let gw = gateway_with_orgs(
        &[(
            "t",
            "name: t\nupstreams:\n  u:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /{*rest}\n    upstream: u\n",
        )],
        "limits:\n  header_read_timeout: 1s",
    );
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 200, "{}\n{}", res.head, logs(&gw));
    assert_eq!(res.json()["path"], "/first");
    // Then nothing: the gateway closes the idle connection, silently.
    let got = raw
        .read_until_closed(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("the idle keep-alive connection stayed open\n{}", logs(&gw)));
    assert!(
        got.is_empty(),
        "the idle connection got {:?} before closing",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_new_connection_is_closed() {
    let gw = gateway_with_orgs(
        &[(
            "t",
            "name: t\nupstreams:\n  u:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /{*rest}\n    upstream: u\n",
        )],
        "limits:\n  header_read_timeout: 1s",
    );
    let mut raw = Raw::connect(gw.addr()).await;
    let got = raw
        .read_until_closed(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("a connection that sent nothing was still open after 8 s\n{}", logs(&gw)));
    assert!(got.is_empty(), "got {:?}", String::from_utf8_lossy(&got));
}
