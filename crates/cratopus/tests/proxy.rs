//! The proxy end to end: streaming without buffering, upstream keep-alive, the headers that
//! change (and those that must not), HTTP/2 on either side, HTTP/1.1 semantics and DNS targets.

mod common_proxy;

use common_proxy::*;
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::{Response, Version};
use test_support::http_body_util::{BodyExt, Full};
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, client, get, h2c_client, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;
/// How far the gateway's resident memory may rise above its idle size while 1 GiB passes
/// through. Relative, not absolute: the idle size moves with the binary (a debug build with
/// more features starts larger), while a body held even in part would rise by hundreds of MiB.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
const BIG_TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);

fn org_one_upstream(url: &str, extra_upstream: &str) -> String {
    format!(
        "name: t\nupstreams:\n  u:\n    targets: [\"{url}\"]\n{extra_upstream}routes:\n  - path: /{{*rest}}\n    upstream: u\n"
    )
}

/// Samples the gateway's RSS every 100 ms until `stop`; returns (max KiB, samples).
fn rss_sampler(gw: Arc<Gateway>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, usize)> {
    tokio::spawn(async move {
        let (mut max, mut n) = (0u64, 0usize);
        while !stop.load(Ordering::Relaxed) {
            max = max.max(gw.rss_kib());
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (max, n)
    })
}

/// A backend on a raw socket that answers every request with `total` bytes, written 64 KiB at
/// a time as the socket takes them (it never holds more than one chunk).
async fn streaming_download_backend(total: u64) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {total}\r\n\r\n"
                );
                if s.write_all(res.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![0xA5u8; CHUNK];
                let mut left = total;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_a_1gib_download_without_buffering() {
    let (addr, _backend) = streaming_download_backend(GIB).await;
    let gw = Arc::new(gateway_one_org(&org_one_upstream(&format!("http://{addr}"), "")));
    let baseline = gw.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(gw.clone(), stop.clone());

    let url = gw.url("/big");
    let transfer = async {
        let res = client()
            .request(req("GET", &url, &[], ""))
            .await
            .expect("download request failed");
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers().get("content-length").and_then(|v| v.to_str().ok()),
            Some(GIB.to_string().as_str()),
            "the backend's Content-Length did not pass"
        );
        let mut body = res.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap_or_else(|e| panic!("download broke after {n} bytes: {e}"));
            if let Some(d) = frame.data_ref() {
                n += d.len() as u64;
            }
        }
        n
    };
    let received = tokio::time::timeout(BIG_TRANSFER_TIMEOUT, transfer)
        .await
        .unwrap_or_else(|_| panic!("1 GiB download did not finish in {BIG_TRANSFER_TIMEOUT:?}"));
    stop.store(true, Ordering::Relaxed);
    let (max_rss, samples) = sampler.await.expect("sampler");

    assert_eq!(received, GIB, "bytes received");
    assert!(samples > 0 && max_rss > 0, "RSS was never sampled ({samples} samples)");
    assert!(
        max_rss < baseline + RSS_GROWTH_LIMIT_KIB,
        "gateway RSS reached {max_rss} KiB (baseline {baseline} KiB, {samples} samples) during a 1 GiB download"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_a_1gib_upload_without_buffering() {
    // The backend counts the bytes as they come and keeps none of them.
    let backend = Backend::start(|req, _peer| async move {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => {
                    return json_response(500, &serde_json::json!({"received": n, "error": e.to_string()}));
                }
            }
        }
        json_response(200, &serde_json::json!({ "received": n }))
    })
    .await;
    let gw = Arc::new(gateway_one_org(&org_one_upstream(&backend.url(), "")));
    let baseline = gw.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(gw.clone(), stop.clone());

    let stream = tokio::net::TcpStream::connect(gw.addr()).await.expect("connect");
    let (rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: t\r\ncontent-type: application/octet-stream\r\ncontent-length: {GIB}\r\n\r\n"
        );
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![0x5Au8; CHUNK];
        for _ in 0..GIB / CHUNK as u64 {
            wr.write_all(&chunk).await?;
        }
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut raw = Raw::new(rd);
    raw.timeout = BIG_TRANSFER_TIMEOUT;
    let res = tokio::time::timeout(BIG_TRANSFER_TIMEOUT, raw.read_response(false))
        .await
        .unwrap_or_else(|_| panic!("1 GiB upload got no answer in {BIG_TRANSFER_TIMEOUT:?}"));
    stop.store(true, Ordering::Relaxed);
    let (max_rss, samples) = sampler.await.expect("sampler");
    let written = writer.await.expect("writer task");

    assert_eq!(
        res.status,
        200,
        "upload answered {}: {}",
        res.status,
        String::from_utf8_lossy(&res.body)
    );
    assert!(written.is_ok(), "writing the upload failed: {:?}", written.err());
    assert_eq!(res.json()["received"], GIB, "bytes the backend received");
    assert!(samples > 0 && max_rss > 0, "RSS was never sampled ({samples} samples)");
    assert!(
        max_rss < baseline + RSS_GROWTH_LIMIT_KIB,
        "gateway RSS reached {max_rss} KiB (baseline {baseline} KiB, {samples} samples) during a 1 GiB upload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_kept_alive_and_reused() {
    let ports = Arc::new(Mutex::new(Vec::new()));
    let p = ports.clone();
    let backend = Backend::start(move |_req, peer| {
        let p = p.clone();
        async move {
            p.lock().expect("lock").push(peer.port());
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));
    let c = client();
    for i in 0..50 {
        let r = send(&c, req("GET", &gw.url(&format!("/n/{i}")), &[], "")).await;
        assert_eq!(r.status, 200, "request {i}: {}\n{}", r.text(), logs(&gw));
        assert_eq!(r.text(), "ok");
    }
    let ports = ports.lock().expect("lock").clone();
    assert_eq!(ports.len(), 50, "the backend saw {} requests", ports.len());
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert!(
        distinct.len() <= 5,
        "50 sequential requests used {} upstream connections (ports {distinct:?})",
        distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_headers_hop_by_hop_stripped_and_forwarded_headers_set() {
    let (backend, seen) = recording_backend("h").await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));

    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(
        b"GET /headers?q=1 HTTP/1.1\r\n\
          Host: Front.Example:8443\r\n\
          Connection: keep-alive, X-Custom-Hop\r\n\
          X-Custom-Hop: must-not-pass\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: deflate\r\n\
          Upgrade: websocket\r\n\
          X-Forwarded-For: 203.0.113.7\r\n\
          X-Kept: yes\r\n\
          \r\n",
    )
    .await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 200, "{}\n{}", String::from_utf8_lossy(&res.body), logs(&gw));
    let v = seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("the backend saw the request");
    // `te` other than exactly `trailers` (which passes: gRPC needs it, see tests/grpc.rs).
    for h in ["x-custom-hop", "keep-alive", "proxy-connection", "te", "upgrade"] {
        assert!(
            v["headers"].get(h).is_none(),
            "hop-by-hop `{h}` reached the backend: {v}"
        );
    }
    for c in seen_headers(&v, "connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-custom-hop"),
            "client's Connection reached the backend: {c}"
        );
    }
    assert_eq!(seen_header(&v, "x-kept"), Some("yes"));
    assert_eq!(v["path_and_query"], "/headers?q=1");
    assert_eq!(seen_header(&v, "x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(seen_header(&v, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen_header(&v, "x-forwarded-host"), Some("Front.Example:8443"));
    let id = seen_header(&v, "x-request-id")
        .expect("no x-request-id upstream")
        .to_string();
    assert!(is_request_id(&id), "generated request id `{id}` is not 32 hex digits");
    assert_eq!(
        res.header("x-request-id"),
        Some(id.as_str()),
        "response carries another id"
    );
    // The connection stays usable after a request that carried Upgrade.
    raw.send(b"GET /after-upgrade HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.json()["path_and_query"], "/after-upgrade");

    // Without X-Forwarded-For the client's address starts the list; ids differ per request.
    let r = get(&gw.url("/second"), None).await;
    assert_eq!(r.status, 200);
    let v2 = r.json();
    assert_eq!(seen_header(&v2, "x-forwarded-for"), Some("127.0.0.1"));
    let id2 = seen_header(&v2, "x-request-id").expect("no x-request-id upstream");
    assert!(is_request_id(id2), "`{id2}`");
    assert_ne!(id2, id, "two requests got the same id");
    assert_eq!(r.header("x-request-id"), Some(id2));

    // A client's own X-Request-Id is kept, upstream and on the response.
    let r = send(
        &client(),
        req("GET", &gw.url("/third"), &[("x-request-id", "client-trace-42")], ""),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(seen_header(&r.json(), "x-request-id"), Some("client-trace-42"));
    assert_eq!(r.header("x-request-id"), Some("client-trace-42"));
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_spread_over_several_lines_is_kept_whole() {
    let (backend, _seen) = recording_backend("h").await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(
        b"GET /xff HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2, 198.51.100.3\r\n\r\n",
    )
    .await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 200, "{}", res.head);
    let v = res.json();
    // Several lines of one field mean the same as one comma-joined line (RFC 9110 §5.3).
    let chain = seen_headers(&v, "x-forwarded-for").join(", ");
    assert_eq!(chain, "198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_status_and_headers_reach_the_client_unchanged() {
    let backend = Backend::start(|req, _peer| async move {
        let b = Response::builder();
        let b = match req.uri().path() {
            "/created" => b
                .status(201)
                .header("location", "/things/1")
                .header("content-type", "application/vnd.test+json")
                .header("x-custom-resp", "abc")
                .header("set-cookie", "a=1; Path=/")
                .header("set-cookie", "b=2; HttpOnly")
                .header("cache-control", "no-store")
                .header("connection", "x-resp-hop")
                .header("x-resp-hop", "must-not-pass")
                .header("keep-alive", "timeout=9")
                .header("proxy-connection", "keep-alive"),
            _ => b.status(418).header("x-teapot", "short and stout"),
        };
        let body = if req.uri().path() == "/created" {
            "{\"id\":1}"
        } else {
            "I'm a teapot"
        };
        b.body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("response")
    })
    .await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));

    let r = send(&client(), req("POST", &gw.url("/created"), &[], "{}")).await;
    assert_eq!(r.status, 201, "{}\n{}", r.text(), logs(&gw));
    assert_eq!(r.text(), "{\"id\":1}");
    assert_eq!(r.header("location"), Some("/things/1"));
    assert_eq!(r.header("content-type"), Some("application/vnd.test+json"));
    assert_eq!(r.header("x-custom-resp"), Some("abc"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
    for h in ["x-resp-hop", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(h).is_none(),
            "hop-by-hop `{h}` reached the client: {:?}",
            r.headers
        );
    }
    for c in r.headers.get_all("connection") {
        assert!(
            !c.to_str().unwrap_or("").contains("x-resp-hop"),
            "upstream's Connection passed: {c:?}"
        );
    }
    assert!(r.header("x-request-id").is_some_and(is_request_id));

    let r = get(&gw.url("/teapot"), None).await;
    assert_eq!(r.status, 418, "{}", r.text());
    assert_eq!(r.text(), "I'm a teapot");
    assert_eq!(r.header("x-teapot"), Some("short and stout"));
    assert!(
        r.header("content-type").is_none(),
        "the gateway added a content-type: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_client_to_http1_backend() {
    let (backend, _seen) = recording_backend("h1").await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));
    let c = h2c_client();
    for i in 0..3 {
        let res = c
            .request(req(
                "POST",
                &gw.url(&format!("/h2/{i}?x=1")),
                &[("x-from", "h2")],
                "body over h2",
            ))
            .await
            .expect("h2c request failed");
        assert_eq!(res.version(), Version::HTTP_2, "the gateway did not answer in HTTP/2");
        assert_eq!(res.status(), 200);
        let id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["version"], "HTTP/1.1", "backend should be spoken to in HTTP/1.1: {v}");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path_and_query"], format!("/h2/{i}?x=1"));
        assert_eq!(v["body"], "body over h2");
        assert_eq!(seen_header(&v, "x-from"), Some("h2"));
        assert_eq!(
            seen_header(&v, "x-forwarded-host"),
            Some(gw.addr().to_string().as_str())
        );
        assert_eq!(seen_header(&v, "host"), Some(backend.addr.to_string().as_str()));
        assert_eq!(seen_header(&v, "x-request-id").map(str::to_string), id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_upstream_is_spoken_to_in_http2() {
    let (backend, _seen) = recording_backend("h2").await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), "    protocol: h2c\n"));
    // An HTTP/1.1 client …
    let r = send(&client(), req("PUT", &gw.url("/up?z=1"), &[("x-from", "h1")], "hi h2")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));
    let v = r.json();
    assert_eq!(v["version"], "HTTP/2.0", "backend saw {}", v["version"]);
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path_and_query"], "/up?z=1");
    assert_eq!(v["body"], "hi h2");
    assert_eq!(seen_header(&v, "x-from"), Some("h1"));
    assert_eq!(seen_header(&v, "x-forwarded-proto"), Some("http"));
    // … and an HTTP/2 one.
    let res = h2c_client()
        .request(req("GET", &gw.url("/again"), &[], ""))
        .await
        .expect("h2c request failed");
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(v["path_and_query"], "/again");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_request_body_arrives_whole() {
    let (backend, _seen) = recording_backend("c").await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
        .await;
    let parts = ["hello", ", ", "chunked ", "world", &"!".repeat(3000)];
    let mut want = String::new();
    for p in parts {
        want.push_str(p);
        raw.send(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    raw.send(b"0\r\n\r\n").await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 200, "{}\n{}", String::from_utf8_lossy(&res.body), logs(&gw));
    let v = res.json();
    assert_eq!(v["body"], want.as_str(), "body the backend received");
    assert_eq!(v["body_len"], want.len());
    assert!(v["body_error"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_upload() {
    let (backend, _seen) = recording_backend("e").await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));
    let body = "payload sent after 100 Continue";
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(
        format!(
            "PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let (status, head, _) = raw.read_head().await;
    assert_eq!(
        status,
        100,
        "expected 100 Continue before the body, got {head}\n{}",
        logs(&gw)
    );
    raw.send(body.as_bytes()).await;
    let res = raw.read_response(false).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let v = res.json();
    assert_eq!(v["body"], body);
    assert!(v["headers"].get("expect").is_none(), "Expect reached the backend: {v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn head_204_and_304_have_no_body() {
    let backend = Backend::start(|req, _peer| async move {
        match req.uri().path() {
            "/no-content" => Response::builder()
                .status(204)
                .header("x-kind", "204")
                .body(Full::new(Bytes::new())),
            "/not-modified" => Response::builder()
                .status(304)
                .header("etag", "\"v1\"")
                .body(Full::new(Bytes::new())),
            _ => Response::builder()
                .header("content-length", "1234")
                .header("x-kind", "doc")
                .body(Full::new(Bytes::from(vec![b'a'; 1234]))),
        }
        .expect("response")
    })
    .await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));

    // One keep-alive connection: a stray body byte would corrupt the next response.
    let mut raw = Raw::connect(gw.addr()).await;
    raw.send(b"HEAD /doc HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let head = raw.read_response(true).await;
    assert_eq!(head.status, 200, "{}\n{}", head.head, logs(&gw));
    assert_eq!(head.header("content-length"), Some("1234"), "{}", head.head);
    assert_eq!(head.header("x-kind"), Some("doc"));

    raw.send(b"GET /no-content HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 204, "response after HEAD: {}", r.head);
    assert_eq!(r.header("x-kind"), Some("204"));
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    assert!(
        r.header("content-length").is_none_or(|l| l == "0"),
        "204 with a Content-Length: {}",
        r.head
    );

    raw.send(b"GET /not-modified HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 304, "response after 204: {}", r.head);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);

    raw.send(b"GET /doc HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = raw.read_response(false).await;
    assert_eq!(r.status, 200, "response after 304: {}", r.head);
    assert_eq!(r.body.len(), 1234);
    assert!(r.body.iter().all(|&b| b == b'a'));
    // Nothing more is pending on the connection.
    assert!(
        raw.leftover().is_empty(),
        "stray bytes: {:?}",
        String::from_utf8_lossy(raw.leftover())
    );
    let extra = raw.read_until_closed(Duration::from_millis(300)).await;
    assert!(
        extra.as_ref().is_none_or(|b| b.is_empty()),
        "stray bytes after the responses: {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_request_and_response_headers_pass() {
    // Six headers of 5000 bytes: about 30 KiB, under the 64 KiB default limit.
    let value = |i: usize| format!("{i}{}", "v".repeat(4999));
    let backend = Backend::start(move |req, peer| async move {
        let v = describe(req, peer).await;
        let mut res = json_response(200, &v);
        for i in 0..6 {
            res.headers_mut().insert(
                test_support::http::HeaderName::from_bytes(format!("x-big-resp-{i}").as_bytes()).expect("name"),
                value(i).parse().expect("value"),
            );
        }
        res
    })
    .await;
    let gw = gateway_one_org(&org_one_upstream(&backend.url(), ""));
    let names: Vec<String> = (0..6).map(|i| format!("x-big-{i}")).collect();
    let values: Vec<String> = (0..6).map(value).collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();
    let r = send(&client(), req("GET", &gw.url("/big-headers"), &headers, "")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));
    let v = r.json();
    for (i, (n, val)) in headers.iter().enumerate() {
        assert_eq!(
            seen_header(&v, n),
            Some(*val),
            "request header {n} did not arrive intact"
        );
        assert_eq!(
            r.header(&format!("x-big-resp-{i}")),
            Some(value(i).as_str()),
            "response header x-big-resp-{i} did not arrive intact"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn localhost_target_is_resolved_to_every_address() {
    let port = test_support::free_port();
    let addrs: BTreeSet<SocketAddr> = tokio::net::lookup_host(("localhost", port))
        .await
        .expect("resolve localhost")
        .collect();
    assert!(!addrs.is_empty(), "localhost resolves to nothing");
    let mut backends = Vec::new();
    for a in &addrs {
        let label: Arc<str> = a.to_string().into();
        backends.push(
            Backend::start_on(&a.to_string(), move |req, peer| {
                let label = label.clone();
                async move {
                    let mut v = describe(req, peer).await;
                    v["backend"] = serde_json::Value::String(label.to_string());
                    json_response(200, &v)
                }
            })
            .await,
        );
    }
    let gw = gateway_one_org(&org_one_upstream(&format!("http://localhost:{port}"), ""));
    let mut reached = BTreeSet::new();
    for i in 0..(4 * addrs.len()) {
        let r = get(&gw.url(&format!("/dns/{i}")), None).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));
        let v = r.json();
        assert_eq!(v["path_and_query"], format!("/dns/{i}"));
        assert_eq!(seen_header(&v, "host"), Some(format!("localhost:{port}").as_str()));
        reached.insert(
            v["backend"]
                .as_str()
                .expect("label")
                .parse::<SocketAddr>()
                .expect("addr"),
        );
    }
    assert_eq!(
        reached, addrs,
        "requests did not spread over every address of localhost"
    );
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host_and_otherwise_the_targets() {
    let backend = Backend::start(|req, _| async move {
        let host = req
            .headers()
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Response::new(Full::new(Bytes::from(host)))
    })
    .await;
    let org = format!(
        "name: t\nupstreams:\n  kept:\n    targets: [\"{url}\"]\n    preserve_host: true\n  own:\n    targets: [\"{url}\"]\nroutes:\n  - path: /kept\n    upstream: kept\n  - path: /own\n    upstream: own\n",
        url = backend.url()
    );
    let gw = Gateway::start(
        BIN,
        &test_support::gateway_yaml("orgs/*.yaml", ""),
        &[("orgs/t.yaml", &org)],
    );
    let kept = get(&gw.url("/kept"), Some("shop.example:8080")).await;
    assert_eq!(kept.text(), "shop.example:8080");
    let own = get(&gw.url("/own"), Some("shop.example:8080")).await;
    assert_eq!(own.text(), backend.addr.to_string());
}
