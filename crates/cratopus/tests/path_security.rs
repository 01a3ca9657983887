//! What an attacker tries against routing, from the outside (issue 10, points 6, 8 and 13):
//! path tricks that a backend would normalize to a protected path, methods that a protected
//! pattern does not list, and requests whose Host says one thing and target another.
//!
//! Clients write raw bytes (HTTP/1.1) or build `:path` by hand (h2c, with hyper's connection
//! API, which sends the path as given), and the backend records the request line exactly as it
//! arrived, so that nothing on the way normalizes what the test is about.

mod common_proxy;

use common_proxy::*;
use std::net::SocketAddr;
use test_support::Gateway;
use test_support::http::Request;
use test_support::http_body_util::{BodyExt, Empty};
use test_support::hyper::body::Bytes;
use test_support::hyper_util::rt::{TokioExecutor, TokioIo};
use test_support::raw::{RawBackend, raw_exchange, raw_status};

const KEY: &str = "the-admin-key-0123456789";

/// The paths of the attack on point 6: each must be refused or need the key.
const TRICKS: [&str; 11] = [
    "/public/../admin/x",
    "/admin%2Fx",
    "/%61dmin/x",
    "//admin/x",
    "/./admin/x",
    "/%2e/admin/x",
    "/public/%2e%2e/admin/x",
    "/admin/./x",
    "/ADMIN%2fx",
    "/admin%5cx",
    "/public/..%2Fadmin/x",
];

fn cratopus_hash(key: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["hash-key", key])
        .output()
        .expect("cratopus hash-key");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// `/admin/{*rest}` for GET and POST behind an API key, and an open `/{*rest}`, both to
/// `backend`; `extra` is more organization YAML.
fn admin_org(backend: &RawBackend, extra: &str) -> String {
    format!(
        "name: t
upstreams:
  u:
    targets: [\"{}\"]
consumers:
  - id: ops
    keys: [\"{}\"]
routes:
  - name: admin
    path: \"/admin/{{*rest}}\"
    methods: [GET, POST]
    upstream: u
    auth:
      api_key: {{}}
  - name: open
    path: \"/{{*rest}}\"
    upstream: u
{extra}",
        backend.url(),
        cratopus_hash(KEY)
    )
}

/// One HTTP/1.1 request written as raw bytes; the raw answer.
async fn raw(gw: &Gateway, method: &str, target: &str, headers: &str) -> String {
    let req = format!("{method} {target} HTTP/1.1\r\nHost: t.test\r\n{headers}Connection: close\r\n\r\n");
    raw_exchange(gw.addr(), req.as_bytes(), READ_TIMEOUT).await
}

/// One request over h2c with `:path` exactly `path` (and `:authority` `authority`, plus a
/// `host` header when given); the status.
async fn h2c(addr: SocketAddr, method: &str, authority: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = test_support::hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("h2c handshake");
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = send
        .send_request(b.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("h2c response");
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

/// The gateway's JSON error body in a raw answer: its `code`.
fn error_code(raw: &str) -> String {
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body).map_or_else(
        |_| format!("(no JSON body: {raw})"),
        |v| v["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_over_http1_are_refused_or_need_the_key() {
    let backend = RawBackend::ok().await;
    let gw = gateway_one_org(&admin_org(&backend, ""));
    let key = format!("X-Api-Key: {KEY}\r\n");

    for path in TRICKS {
        let before = backend.received().len();
        let answer = raw(&gw, "GET", path, "").await;
        let status = raw_status(&answer);
        assert!(
            matches!(status, 400 | 401),
            "GET {path} without the key: {status}\n{answer}\n{}",
            logs(&gw)
        );
        assert_eq!(
            backend.received().len(),
            before,
            "GET {path} reached the backend without the key"
        );
        if status == 400 {
            assert_eq!(error_code(&answer), "bad_request", "{answer}");
            continue;
        }
        // Not refused: with the key it is the admin route, and the backend sees the clean path.
        let answer = raw(&gw, "GET", path, &key).await;
        assert_eq!(raw_status(&answer), 200, "GET {path} with the key\n{answer}");
        let got = backend.last().expect("a request");
        assert_eq!(got.target(), "/admin/x", "GET {path}");
    }

    // The plain path works as before, and the query string is never touched.
    let answer = raw(&gw, "GET", "/admin/x?a=%2e%2E&b=..%2F", &key).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(backend.last().expect("a request").target(), "/admin/x?a=%2e%2E&b=..%2F");
    let answer = raw(&gw, "GET", "/public/./a//b/../c?x=/../", "").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(backend.last().expect("a request").target(), "/public/a/c?x=/../");
    // Decoded unreserved characters, upper-cased escapes.
    let answer = raw(&gw, "GET", "/%7euser/caf%c3%a9", "").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(backend.last().expect("a request").target(), "/~user/caf%C3%A9");

    // What cannot be normalized safely.
    for path in ["/..", "/a/../../admin/x", "/a%00b", "/a%0d%0aX-Injected:%201", "/a%zz"] {
        let answer = raw(&gw, "GET", path, &key).await;
        assert_eq!(raw_status(&answer), 400, "GET {path}\n{answer}");
        assert_eq!(error_code(&answer), "bad_request", "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_over_h2c_are_refused_or_need_the_key() {
    let backend = RawBackend::ok().await;
    let gw = gateway_one_org(&admin_org(&backend, ""));
    for path in TRICKS {
        let before = backend.received().len();
        let status = h2c(gw.addr(), "GET", "t.test", path, &[]).await;
        assert!(matches!(status, 400 | 401), "h2c GET {path} without the key: {status}");
        assert_eq!(backend.received().len(), before, "h2c GET {path} reached the backend");
        if status == 401 {
            let status = h2c(gw.addr(), "GET", "t.test", path, &[("x-api-key", KEY)]).await;
            assert_eq!(status, 200, "h2c GET {path} with the key");
            assert_eq!(
                backend.last().expect("a request").target(),
                "/admin/x",
                "h2c GET {path}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn escaped_slashes_and_merging_follow_the_settings() {
    let backend = RawBackend::ok().await;
    // The gateway keeps escaped slashes and double slashes; organization `r` overrides that
    // with redirects.
    let keep = admin_org(&backend, "domains: [k.test]\n");
    let redirect = admin_org(
        &backend,
        "domains: [r.test]\npath_normalization:\n  escaped_slashes: unescape_and_redirect\n",
    )
    .replacen("name: t", "name: r", 1);
    let gw = gateway_with_orgs(
        &[("k", &keep), ("r", &redirect)],
        "path_normalization:\n  escaped_slashes: keep\n  merge_slashes: false\n",
    );
    let send = |host: &'static str, target: &'static str| {
        let gw = &gw;
        async move {
            let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            raw_exchange(gw.addr(), req.as_bytes(), READ_TIMEOUT).await
        }
    };

    // keep: the escape stays (upper-cased) inside its segment: the open route, never `/admin/x`.
    let answer = send("k.test", "/admin%2fx//y/./z").await;
    assert_eq!(raw_status(&answer), 200, "{answer}\n{}", logs(&gw));
    assert_eq!(backend.last().expect("a request").target(), "/admin%2Fx//y/z");

    // unescape_and_redirect: a 307 to the normalized path, query kept; nothing forwarded.
    let before = backend.received().len();
    let answer = send("r.test", "/admin%2Fx?q=%2F").await;
    assert_eq!(raw_status(&answer), 307, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nlocation: /admin/x?q=%2f\r\n"),
        "{answer}"
    );
    assert_eq!(backend.received().len(), before);
    // Merging is back to its default (on) in `r`.
    let answer = send("r.test", "//x").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(backend.last().expect("a request").target(), "/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_on_a_protected_pattern_never_reach_the_open_route() {
    let backend = RawBackend::ok().await;
    let gw = gateway_one_org(&admin_org(
        &backend,
        "  - name: create-me
    path: /users/me
    methods: [POST]
    upstream: u
  - name: user
    path: \"/users/{id}\"
    methods: [GET]
    upstream: u
  - name: keyed-me
    path: /keyed/me
    methods: [POST]
    upstream: u
    auth:
      api_key: {}
  - name: keyed
    path: \"/keyed/{id}\"
    methods: [GET]
    upstream: u
",
    ));
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/admin/x", "/admin", "/admin/"] {
            let before = backend.received().len();
            let answer = raw(&gw, method, path, "Content-Length: 0\r\n").await;
            assert_eq!(raw_status(&answer), 405, "{method} {path}\n{answer}\n{}", logs(&gw));
            assert_eq!(error_code(&answer), "method_not_allowed");
            let mut allow: Vec<&str> = answer
                .lines()
                .find_map(|l| l.strip_prefix("allow: "))
                .unwrap_or("")
                .split(", ")
                .collect();
            allow.sort_unstable();
            assert_eq!(allow, ["GET", "HEAD", "POST"], "{method} {path}\n{answer}");
            assert_eq!(backend.received().len(), before, "{method} {path} reached the backend");
        }
        let status = h2c(gw.addr(), method, "t.test", "/admin/x", &[]).await;
        assert_eq!(status, 405, "h2c {method} /admin/x");
    }
    // The protected methods still need the key, and other paths still reach the open route.
    assert_eq!(raw_status(&raw(&gw, "GET", "/admin/x", "").await), 401);
    assert_eq!(
        raw_status(&raw(&gw, "PUT", "/other", "Content-Length: 0\r\n").await),
        200
    );

    // The documented fallback stays where the access rules are the same …
    let answer = raw(&gw, "GET", "/users/me", "").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(backend.last().expect("a request").target(), "/users/me");
    // … and is refused where they differ (an open GET beside a keyed POST).
    let answer = raw(&gw, "GET", "/keyed/me", "").await;
    assert_eq!(raw_status(&answer), 405, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_follows_the_rfcs() {
    let a = RawBackend::ok().await;
    let b = RawBackend::ok().await;
    let dflt = RawBackend::ok().await;
    let org = |name: &str, domains: &str, backend: &RawBackend| {
        format!(
            "name: {name}\ndomains: {domains}\nupstreams:\n  u:\n    targets: [\"{}\"]\nroutes:\n  - path: \"/{{*rest}}\"\n    upstream: u\n",
            backend.url()
        )
    };
    let dir = tempdir_log();
    let gw = gateway_with_orgs(
        &[
            ("a", &org("a", "[a.test]", &a)),
            ("b", &org("b", "[b.test]", &b)),
            ("fallback", &org("fallback", "[fallback.test]", &dflt)),
        ],
        &format!(
            "default_organization: fallback\ntraffic_log:\n  path: {}\n",
            dir.display()
        ),
    );
    let send = |bytes: &'static str| raw_exchange(gw.addr(), bytes.as_bytes(), READ_TIMEOUT);

    // No Host on HTTP/1.1, or two Host lines: 400 with the JSON body, nothing forwarded.
    for bytes in [
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\nConnection: close\r\n\r\n",
        "GET http://a.test/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: evil@a.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    ] {
        let answer = send(bytes).await;
        assert_eq!(raw_status(&answer), 400, "{bytes:?}\n{answer}\n{}", logs(&gw));
        assert_eq!(error_code(&answer), "bad_request", "{answer}");
    }
    assert!(a.received().is_empty() && b.received().is_empty() && dflt.received().is_empty());

    // An absolute-form target's authority wins over Host: organization a, and a.test upstream.
    let answer = send("GET http://a.test/abs HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(b.received().is_empty(), "the Host header chose the organization");
    let got = a.last().expect("organization a got it");
    assert_eq!(got.target(), "/abs");
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("a.test"));

    // HTTP/1.0 without Host goes to the default organization.
    let answer = send("GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(dflt.last().expect("the default organization got it").target(), "/old");

    // HTTP/2: `:authority` wins over a `host` header.
    let before_b = b.received().len();
    let status = h2c(gw.addr(), "GET", "a.test", "/h2", &[("host", "b.test")]).await;
    assert_eq!(status, 200);
    assert_eq!(b.received().len(), before_b, "the host header chose the organization");
    let got = a.last().expect("organization a got it");
    assert_eq!(got.target(), "/h2");
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some("a.test"));

    // The traffic log names the host that won.
    assert!(
        gw_log_has(&dir, "\"/abs\"", "\"host\":\"a.test\"").await,
        "{}",
        std::fs::read_to_string(&dir).unwrap_or_default()
    );
    assert!(gw_log_has(&dir, "\"/h2\"", "\"host\":\"a.test\"").await);
    if let Some(d) = dir.parent() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A fresh path for a traffic log.
fn tempdir_log() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cratopus-path-security-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("traffic.log")
}

/// Waits for a traffic-log line containing both `a` and `b`.
async fn gw_log_has(path: &std::path::Path, a: &str, b: &str) -> bool {
    test_support::eventually(READ_TIMEOUT, || async {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(a) && l.contains(b))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_and_routes_shows_where_the_fallback_is_refused() {
    let backend = RawBackend::ok().await;
    let dir = tempdir_log();
    let dir = dir.parent().expect("temp dir");
    let file = dir.join("gateway.yaml");
    let org = admin_org(&backend, "")
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .replacen("    name: t", "  - name: t", 1);
    std::fs::write(&file, format!("organizations:\n{org}")).expect("write config");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&file)
            .output()
            .expect("run cratopus");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (ok, text) = run(&["check"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: at `/admin/{*rest}`, methods no route of the organization names get 405")
            && text.contains("route `open` (`/{*rest}`)"),
        "{text}"
    );
    let (ok, text) = run(&["check", "--strict"]);
    assert!(!ok, "--strict fails on the warning: {text}");

    let (ok, text) = run(&["routes"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("└─ * ⇢ 405: route open at /{*rest} has other access rules"),
        "{text}"
    );
    let (ok, text) = run(&["routes", "--json"]);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        v["organizations"][0]["fallbacks"][0],
        serde_json::json!({"path": "/admin/{*rest}", "methods": ["*"], "route": "open",
                           "route_path": "/{*rest}", "applies": false})
    );
    let _ = std::fs::remove_dir_all(dir);
}
