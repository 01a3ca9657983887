//! The response cache end to end: a real backend that counts the requests of each path, the
//! gateway binary in front with `cache:` on its routes, real HTTP clients. Every test asserts
//! what reached the backend, so a cache that did not answer fails.

mod common_ops;

use common_ops::{BIN, hash_key, metrics, read_lines};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::http::{Request, Response};
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, client, eventually, send};
use tokio::sync::Semaphore;

const TOKEN: &str = "cache-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);
const KEY_A: &str = "key-of-consumer-a-0123456789";
const KEY_B: &str = "key-of-consumer-b-0123456789";

/// What the backend saw and what the test lets it do.
struct Seen {
    /// Requests per path, counted when they arrive.
    hits: Mutex<HashMap<String, usize>>,
    /// `/etag` requests answered 304.
    not_modified: Mutex<usize>,
    /// `/sie` answers 503 while set.
    failing: AtomicBool,
    /// `/slow` and the refreshes of `/swr` wait for a permit.
    gate: Semaphore,
}

impl Seen {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn backend() -> (Backend, Arc<Seen>) {
    let seen = Arc::new(Seen {
        hits: Mutex::new(HashMap::new()),
        not_modified: Mutex::new(0),
        failing: AtomicBool::new(false),
        gate: Semaphore::new(0),
    });
    let s = seen.clone();
    let b = Backend::start(move |req, _| {
        let s = s.clone();
        async move {
            let path = req.uri().path().to_string();
            let n = {
                let mut hits = s.hits.lock().unwrap();
                let n = hits.entry(path.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let mut res = Response::builder().status(200);
            let body: String = match path.as_str() {
                "/vary" => {
                    res = res
                        .header("cache-control", "max-age=60")
                        .header("vary", "Accept-Language");
                    format!("lang={}", header("accept-language"))
                }
                "/vary-ae" => {
                    res = res
                        .header("cache-control", "max-age=60")
                        .header("vary", "Accept-Encoding");
                    format!("ae={} #{n}", header("accept-encoding"))
                }
                "/nostore" => {
                    res = res.header("cache-control", "no-store");
                    format!("nostore #{n}")
                }
                "/private" => {
                    res = res.header("cache-control", "private, max-age=60");
                    format!("private #{n}")
                }
                "/etag" => {
                    res = res.header("cache-control", "max-age=0").header("etag", "\"e1\"");
                    if header("if-none-match") == "\"e1\"" {
                        *s.not_modified.lock().unwrap() += 1;
                        res = res.status(304);
                        String::new()
                    } else {
                        "the etag body".to_string()
                    }
                }
                "/swr" => {
                    if n >= 2 {
                        s.gate.acquire().await.unwrap().forget();
                    }
                    res = res.header("cache-control", "max-age=0, stale-while-revalidate=3600");
                    format!("swr v{n}")
                }
                "/sie" | "/sie-timeout" => {
                    if s.failing.load(Ordering::SeqCst) {
                        if path == "/sie-timeout" {
                            // Never answers: the route's timeout fires.
                            std::future::pending::<()>().await;
                        }
                        res = res.status(503);
                    }
                    res = res.header("cache-control", "max-age=0, stale-if-error=3600");
                    format!("sie #{n}")
                }
                "/slow" => {
                    s.gate.acquire().await.unwrap().forget();
                    res = res.header("cache-control", "max-age=60");
                    format!("slow #{n}")
                }
                "/whoami" | "/whoami-public" => {
                    res = res.header("cache-control", "max-age=60");
                    format!("consumer={} #{n}", header("x-consumer-id"))
                }
                "/big" => {
                    res = res.header("cache-control", "max-age=60");
                    "x".repeat(4096)
                }
                "/doc" => {
                    res = res
                        .header("cache-control", "max-age=60")
                        .header("content-type", "text/plain");
                    format!("{} #{n}", "the same line of text, again and again. ".repeat(100))
                }
                _ => {
                    let tag = path.rsplit('/').next().unwrap_or("");
                    res = res
                        .header("cache-control", "max-age=60")
                        .header("etag", format!("\"{path}\""))
                        .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
                        .header("surrogate-key", format!("t-{tag} every"));
                    format!("{path} #{n}")
                }
            };
            res.body(Full::new(Bytes::from(body))).unwrap()
        }
    })
    .await;
    (b, seen)
}

/// A gateway with every route cached, a traffic log and the admin API; `upstream_extra`
/// settings go under the upstream, `gateway_extra` into gateway.yaml.
fn gateway(target: &str, upstream_extra: &str, gateway_extra: &str) -> Gateway {
    let org = format!(
        "name: shop
consumers:
  - id: consumer-a
    keys: [\"{}\"]
  - id: consumer-b
    keys: [\"{}\"]
upstreams:
  b:
    targets: [\"{target}\"]
{upstream_extra}
cache:
  coalesce_wait: 30s
routes:
  - path: /big
    upstream: b
    cache: {{max_body: 1KiB}}
  - path: /doc
    upstream: b
    compression: {{}}
  - path: /whoami
    upstream: b
    auth: {{api_key: {{}}}}
  - path: /whoami-public
    upstream: b
    auth: {{api_key: {{}}}}
    cache: {{public: true}}
  - path: /sie-timeout
    upstream: b
    timeout: 300ms
  - path: /{{*rest}}
    upstream: b
    cache:
      key: {{query: [page]}}
",
        hash_key(KEY_A),
        hash_key(KEY_B)
    );
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n  token: ${{ADMIN_TOKEN}}\norganizations: orgs/*.yaml\nwatch: false\ntraffic_log:\n  path: traffic.log\n{gateway_extra}"
    );
    tokio::task::block_in_place(|| {
        Gateway::start_with_env(BIN, &yaml, &[("orgs/shop.yaml", &org)], &[("ADMIN_TOKEN", TOKEN)])
    })
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(gw, "GET", path, headers).await
}

async fn request(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

async fn purge(gw: &Gateway, body: &str) -> Reply {
    let req = Request::post(format!("http://{}/api/cache/purge", gw.addrs()[1]))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

fn status(r: &Reply) -> &str {
    r.header("cache-status").unwrap_or("")
}

/// The value of one sample of `/metrics`, by name and label fragment.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_is_answered_without_the_backend_with_age_and_cache_status() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    let first = get(&gw, "/fresh/a?page=2&utm=1", &[]).await;
    assert_eq!(first.status, 200);
    assert!(
        status(&first).contains("fwd=miss") && status(&first).contains("stored"),
        "{first:?}"
    );
    // The other parameters are not in the key, and their order does not matter.
    let second = get(&gw, "/fresh/a?utm=2&page=2", &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    assert!(status(&second).starts_with("cratopus; hit"), "{second:?}");
    assert!(second.header("age").is_some(), "{second:?}");
    assert_eq!(seen.hits("/fresh/a"), 1, "the hit did not reach the backend");
    // Another value of a key parameter is another entry.
    assert_eq!(get(&gw, "/fresh/a?page=3", &[]).await.body, "/fresh/a #2");
    // HEAD is answered from the GET entry, without a body.
    let head = request(&gw, "HEAD", "/fresh/a?page=2", &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert!(status(&head).starts_with("cratopus; hit"), "{head:?}");
    assert_eq!(seen.hits("/fresh/a"), 2);

    let log = gw.path("traffic.log");
    let logged = eventually(WAIT, || async {
        let lines = read_lines(&log);
        lines.iter().any(|l| l["cache"] == "hit") && lines.iter().any(|l| l["cache"] == "miss")
    })
    .await;
    assert!(logged, "no cache field in the traffic log: {:?}", read_lines(&log));
    let m = metrics(&gw, TOKEN).await;
    assert!(
        sample(&m, "cratopus_cache_requests_total{result=\"hit\"}").unwrap() >= 2.0,
        "{m}"
    );
    assert!(sample(&m, "cratopus_cache_bytes").unwrap() > 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_keeps_one_answer_per_header_value() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    for (lang, expect_hit) in [("en", false), ("en", true), ("fr", false), ("fr", true), ("en", true)] {
        let r = get(&gw, "/vary", &[("accept-language", lang)]).await;
        assert_eq!(r.text(), format!("lang={lang}"));
        assert_eq!(status(&r).starts_with("cratopus; hit"), expect_hit, "{lang}: {r:?}");
    }
    assert_eq!(seen.hits("/vary"), 2);

    // Accept-Encoding is keyed by what it accepts, not by how it is spelt.
    let first = get(&gw, "/vary-ae", &[("accept-encoding", "gzip, deflate, br")]).await;
    let same = get(&gw, "/vary-ae", &[("accept-encoding", "br;q=1.0, gzip")]).await;
    assert_eq!(same.body, first.body);
    assert!(status(&same).starts_with("cratopus; hit"), "{same:?}");
    let other = get(&gw, "/vary-ae", &[("accept-encoding", "gzip")]).await;
    assert_eq!(other.text(), "ae=gzip #2");
    assert_eq!(seen.hits("/vary-ae"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_store_private_and_large_answers_are_not_stored() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    for path in ["/nostore", "/private", "/big"] {
        for _ in 0..2 {
            let r = get(&gw, path, &[]).await;
            assert_eq!(r.status, 200);
            assert!(!status(&r).starts_with("cratopus; hit"), "{path}: {r:?}");
        }
        assert_eq!(seen.hits(path), 2, "{path} was answered from the cache");
    }
    assert_eq!(get(&gw, "/big", &[]).await.body.len(), 4096, "streamed through whole");
    // A client's no-store is not answered from the cache either.
    get(&gw, "/fresh/c", &[]).await;
    let r = get(&gw, "/fresh/c", &[("cache-control", "no-store")]).await;
    assert!(status(&r).contains("fwd=bypass"), "{r:?}");
    assert_eq!(seen.hits("/fresh/c"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_answers_are_cached_per_consumer_unless_public() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    let a = get(&gw, "/whoami", &[("x-api-key", KEY_A)]).await;
    assert_eq!(a.text(), "consumer=consumer-a #1");
    let again = get(&gw, "/whoami", &[("x-api-key", KEY_A)]).await;
    assert_eq!(again.text(), "consumer=consumer-a #1");
    assert!(status(&again).starts_with("cratopus; hit"), "{again:?}");
    let other = get(&gw, "/whoami", &[("x-api-key", KEY_B)]).await;
    assert_eq!(
        other.text(),
        "consumer=consumer-b #2",
        "another consumer never gets a's answer"
    );
    assert_eq!(
        get(&gw, "/whoami", &[]).await.status,
        401,
        "a hit is authenticated first"
    );
    assert_eq!(seen.hits("/whoami"), 2);

    // `public: true`: one answer for every consumer.
    let a = get(&gw, "/whoami-public", &[("x-api-key", KEY_A)]).await;
    let b = get(&gw, "/whoami-public", &[("x-api-key", KEY_B)]).await;
    assert_eq!(a.body, b.body);
    assert_eq!(seen.hits("/whoami-public"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_requests_get_304_from_the_cache_and_stale_entries_are_revalidated() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    // A fresh entry: the client's validators are answered by the cache.
    get(&gw, "/fresh/d", &[]).await;
    let r = get(&gw, "/fresh/d", &[("if-none-match", "\"/fresh/d\"")]).await;
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.header("etag"), Some("\"/fresh/d\""));
    let r = get(
        &gw,
        "/fresh/d",
        &[("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")],
    )
    .await;
    assert_eq!(r.status, 304, "{r:?}");
    let r = get(&gw, "/fresh/d", &[("if-none-match", "\"other\"")]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "/fresh/d #1"));
    assert_eq!(seen.hits("/fresh/d"), 1);

    // A stale entry (max-age=0 with an ETag) is asked again with its validator; the backend's
    // 304 refreshes it and the client gets the whole stored answer, or its own 304.
    assert_eq!(get(&gw, "/etag", &[]).await.text(), "the etag body");
    let r = get(&gw, "/etag", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "the etag body"));
    assert!(status(&r).contains("fwd-status=304"), "{r:?}");
    let r = get(&gw, "/etag", &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(seen.hits("/etag"), 3);
    assert_eq!(
        *seen.not_modified.lock().unwrap(),
        2,
        "the cache revalidated with its ETag"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_misses_make_one_backend_request() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    let url = gw.url("/slow");
    let c = client();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { send(&c, Request::get(url).body(Full::new(Bytes::new())).unwrap()).await })
        })
        .collect();
    // The first miss reached the backend, which holds it until the test lets it answer.
    let arrived = eventually(WAIT, || async { seen.hits("/slow") >= 1 }).await;
    assert!(arrived, "no request reached the backend");
    seen.gate.add_permits(1000);
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "slow #1"));
    }
    assert_eq!(seen.hits("/slow"), 1, "the misses were not coalesced");
    let m = metrics(&gw, TOKEN).await;
    let hits = sample(&m, "cratopus_cache_requests_total{result=\"hit\"}").unwrap();
    assert_eq!(hits, 99.0, "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    assert_eq!(get(&gw, "/swr", &[]).await.text(), "swr v1");
    // Stale at once (max-age=0): answered stale, one refresh goes out (and waits at the gate).
    let r = get(&gw, "/swr", &[]).await;
    assert_eq!(r.text(), "swr v1");
    assert!(status(&r).contains("stale-while-revalidate"), "{r:?}");
    let refreshing = eventually(WAIT, || async { seen.hits("/swr") == 2 }).await;
    assert!(refreshing, "no background refresh");
    // While it is out, every stale request is answered at once, and no second refresh starts.
    for _ in 0..10 {
        assert_eq!(get(&gw, "/swr", &[]).await.text(), "swr v1");
    }
    assert_eq!(seen.hits("/swr"), 2, "one refresh at a time");
    seen.gate.add_permits(1000);
    let refreshed = eventually(WAIT, || async { get(&gw, "/swr", &[]).await.text() == "swr v2" }).await;
    assert!(refreshed, "the refresh was not stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_answers_when_the_backend_fails_or_is_gone() {
    let (b, seen) = backend().await;
    // No idle connections kept: once the backend stops, a request cannot reach it.
    let gw = gateway(&b.url(), "    max_idle_per_target: 0", "");
    assert_eq!(get(&gw, "/sie", &[]).await.text(), "sie #1");
    assert_eq!(get(&gw, "/sie-timeout", &[]).await.text(), "sie #1");
    // A 5xx answer: the stale entry instead.
    seen.failing.store(true, Ordering::SeqCst);
    let r = get(&gw, "/sie", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "sie #1"), "{r:?}");
    assert!(status(&r).contains("stale-if-error"), "{r:?}");
    assert_eq!(seen.hits("/sie"), 2);
    // No answer in time: the stale entry instead of 504.
    let r = get(&gw, "/sie-timeout", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "sie #1"), "{r:?}");
    assert!(status(&r).contains("stale-if-error"), "{r:?}");
    // The backend gone: the stale entry instead of 502.
    b.stop();
    let r = get(&gw, "/sie", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "sie #1"), "{r:?}");
    assert!(status(&r).contains("stale-if-error"), "{r:?}");
    // Without an entry, the gateway's own error.
    assert_eq!(get(&gw, "/fresh/never", &[]).await.status, 502);
    let m = metrics(&gw, TOKEN).await;
    assert!(
        sample(&m, "cratopus_cache_requests_total{result=\"stale\"}").unwrap() >= 2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsafe_method_invalidates_its_path() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    get(&gw, "/fresh/e?page=1", &[]).await;
    get(&gw, "/fresh/e?page=2", &[]).await;
    assert!(status(&get(&gw, "/fresh/e?page=1", &[]).await).starts_with("cratopus; hit"));
    assert_eq!(request(&gw, "POST", "/fresh/e", &[]).await.status, 200);
    let r = get(&gw, "/fresh/e?page=1", &[]).await;
    assert!(status(&r).contains("fwd=miss"), "{r:?}");
    assert_eq!(seen.hits("/fresh/e"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_by_url_prefix_and_tag() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    let fill = |path: &'static str| {
        let gw = &gw;
        async move { get(gw, path, &[]).await }
    };
    for p in ["/p/one", "/p/two", "/q/three", "/q/four"] {
        fill(p).await;
        assert!(status(&fill(p).await).starts_with("cratopus; hit"));
    }
    // By URL.
    let host = gw.addr().ip().to_string();
    let r = purge(&gw, &format!("{{\"url\": \"http://{host}/p/one\"}}")).await;
    assert_eq!((r.status, r.json()["purged"].as_u64()), (200, Some(1)), "{r:?}");
    assert!(status(&fill("/p/one").await).contains("fwd=miss"));
    assert!(
        status(&fill("/p/two").await).starts_with("cratopus; hit"),
        "only that URL"
    );
    // By prefix.
    let r = purge(&gw, "{\"prefix\": \"/p/\"}").await;
    assert_eq!(r.json()["purged"], 2);
    assert!(status(&fill("/p/two").await).contains("fwd=miss"));
    assert!(status(&fill("/q/three").await).starts_with("cratopus; hit"));
    // By tag (the backend's Surrogate-Key).
    let r = purge(&gw, "{\"tag\": \"t-four\"}").await;
    assert_eq!(r.json()["purged"], 1);
    assert!(status(&fill("/q/four").await).contains("fwd=miss"));
    assert!(status(&fill("/q/three").await).starts_with("cratopus; hit"));
    assert_eq!(purge(&gw, "{}").await.status, 400);
    assert_eq!(
        (
            seen.hits("/p/one"),
            seen.hits("/p/two"),
            seen.hits("/q/three"),
            seen.hits("/q/four")
        ),
        (2, 2, 1, 2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_flood_stays_within_max_bytes() {
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "cache:\n  max_bytes: 64KiB\n");
    for i in 0..400 {
        let r = get(&gw, &format!("/flood/{i}"), &[]).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(seen.hits("/flood/399"), 1);
    let m = metrics(&gw, TOKEN).await;
    let bytes = sample(&m, "cratopus_cache_bytes").unwrap();
    assert!(bytes > 0.0 && bytes <= 65536.0, "{m}");
    assert!(sample(&m, "cratopus_cache_evictions_total").unwrap() > 0.0, "{m}");
    assert!(sample(&m, "cratopus_cache_stored_total").unwrap() >= 400.0, "{m}");
}

#[test]
fn bad_cache_settings_are_reported_at_their_line() {
    let dir = std::env::temp_dir().join(format!("cratopus-cache-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\ncache:\n  max_bytes: 1KiB\norganizations:\n  - name: shop\n    upstreams:\n      m: {targets: [\"mirror://\"]}\n    cache:\n      ttl: 2h\n      max_ttl: 1h\n    routes:\n      - path: /x\n        upstream: m\n        cache:\n          key: {headers: [\"bad header\"]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for (what, line) in [
        ("max_bytes must be at least 64KiB", "gateway.yaml:5:"),
        ("ttl (7200s) must not be longer than max_ttl", "gateway.yaml:11:"),
        ("`bad header` is not a header name", "gateway.yaml:17:"),
    ] {
        let at = text.find(what).unwrap_or_else(|| panic!("no `{what}` in {text}"));
        assert!(text[at..].contains(line), "`{what}` not placed at {line}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_answers_while_the_breaker_is_open() {
    let (b, seen) = backend().await;
    let gw = gateway(
        &b.url(),
        "    circuit_breaker:\n      consecutive_failures: 2\n      open_for: 1h",
        "",
    );
    assert_eq!(get(&gw, "/sie", &[]).await.text(), "sie #1");
    seen.failing.store(true, Ordering::SeqCst);
    // Two 5xx answers (each answered stale) open the breaker.
    for _ in 0..2 {
        assert_eq!(get(&gw, "/sie", &[]).await.text(), "sie #1");
    }
    assert_eq!(seen.hits("/sie"), 3);
    // Open: the backend is not asked, and the stale entry answers instead of 503.
    let r = get(&gw, "/sie", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "sie #1"), "{r:?}");
    assert!(status(&r).contains("stale-if-error"), "{r:?}");
    assert_eq!(seen.hits("/sie"), 3, "the open breaker let a request through");
}

/// With compression on the route, the cache stores what compression made: one answer per
/// negotiated encoding, each a hit afterwards with its `Content-Encoding`, and the identity
/// answer for clients that accept none.
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_route_caches_one_answer_per_encoding() {
    use std::io::Read;
    let (b, seen) = backend().await;
    let gw = gateway(&b.url(), "", "");
    let gunzip = |body: &[u8]| {
        let mut out = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut out)
            .expect("gzip");
        out
    };
    let first = get(&gw, "/doc", &[("accept-encoding", "gzip")]).await;
    assert_eq!(first.header("content-encoding"), Some("gzip"), "{first:?}");
    assert!(status(&first).contains("fwd=miss"), "{first:?}");
    let text = gunzip(&first.body);
    assert!(text.ends_with(" #1") && text.len() > 4000, "{text}");
    let again = get(&gw, "/doc", &[("accept-encoding", "gzip")]).await;
    assert!(status(&again).starts_with("cratopus; hit"), "{again:?}");
    assert_eq!(again.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&again.body), text);
    assert_eq!(seen.hits("/doc"), 1);

    // Another encoding is another entry; so is none.
    let br = get(&gw, "/doc", &[("accept-encoding", "br")]).await;
    assert_eq!(br.header("content-encoding"), Some("br"), "{br:?}");
    assert_eq!(seen.hits("/doc"), 2);
    let plain = get(&gw, "/doc", &[]).await;
    assert_eq!(plain.header("content-encoding"), None, "{plain:?}");
    assert!(plain.text().ends_with(" #3"), "{}", plain.text());
    let plain_again = get(&gw, "/doc", &[]).await;
    assert!(status(&plain_again).starts_with("cratopus; hit"), "{plain_again:?}");
    assert_eq!(plain_again.body, plain.body);
    assert_eq!(get(&gw, "/doc", &[("accept-encoding", "br")]).await.body, br.body);
    assert_eq!(seen.hits("/doc"), 3);
}
