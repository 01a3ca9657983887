//! Routing end to end: Host → organization, path and method → route, path rewriting, `${ENV}`
//! in the config, and `cratopus mirror` on its own.

mod common_proxy;

use common_proxy::*;
use std::time::Duration;
use test_support::{Backend, Gateway, client, eventually, get, request, send};

/// An organization file with one upstream `u` at `url` and one catch-all route to it.
fn catch_all_org(name: &str, domains: &str, url: &str) -> String {
    format!(
        "name: {name}\ndomains: {domains}\nupstreams:\n  u:\n    targets: [\"{url}\"]\nroutes:\n  - path: /{{*rest}}\n    upstream: u\n"
    )
}

async fn backend_of(gw: &Gateway, host: &str) -> (u16, Option<String>) {
    let r = get(&gw.url("/who"), Some(host)).await;
    (r.status, r.header("x-backend").map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn host_picks_organization_from_org_files() {
    let exact = Backend::fixed("exact", "exact").await;
    let wild = Backend::fixed("wild", "wild").await;
    let eu = Backend::fixed("eu", "eu").await;
    let other = Backend::fixed("other", "other").await;
    let fallback = Backend::fixed("fallback", "fallback").await;
    let acme = catch_all_org("acme", "[api.acme.test, \"*.acme.test\"]", &exact.url());
    // Routes of one organization can only go to its upstreams, so the wildcard domains live in
    // organizations of their own to tell them apart.
    let acme_wild = catch_all_org("acme-wild", "[\"*.apps.acme.test\"]", &wild.url());
    let acme_eu = catch_all_org("acme-eu", "[\"*.eu.apps.acme.test\"]", &eu.url());
    let beta = catch_all_org("beta", "[beta.test]", &other.url());
    let fb = catch_all_org("fallback", "[fallback.test]", &fallback.url());
    let gw = gateway_with_orgs(
        &[
            ("acme", &acme),
            ("acme-wild", &acme_wild),
            ("acme-eu", &acme_eu),
            ("beta", &beta),
            ("fallback", &fb),
        ],
        "default_organization: fallback",
    );

    let cases = [
        // exact domain
        ("api.acme.test", "exact"),
        ("beta.test", "other"),
        // `*.acme.test` covers any name below acme.test …
        ("www.acme.test", "exact"),
        // … but a longer wildcard suffix wins
        ("x.apps.acme.test", "wild"),
        ("x.eu.apps.acme.test", "eu"),
        ("a.b.eu.apps.acme.test", "eu"),
        // port and case do not matter
        ("API.ACME.TEST:8080", "exact"),
        ("Beta.Test:443", "other"),
        ("X.EU.Apps.Acme.Test", "eu"),
        // unknown hosts (and the bare parent of a wildcard) go to the default organization
        ("unknown.example", "fallback"),
        ("acme.test", "fallback"),
        ("beta.test.evil", "fallback"),
    ];
    for (host, want) in cases {
        let (status, got) = backend_of(&gw, host).await;
        assert_eq!(status, 200, "Host {host}: status {status}\n{}", logs(&gw));
        assert_eq!(got.as_deref(), Some(want), "Host {host} went to the wrong organization");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_organizations_and_unknown_host_without_default() {
    let a = Backend::fixed("a", "a").await;
    let b = Backend::fixed("b", "b").await;
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:0\norganizations:\n\
         \x20 - name: a\n    domains: [a.test]\n    upstreams:\n      u:\n        targets: [\"{}\"]\n    routes:\n      - path: /{{*rest}}\n        upstream: u\n\
         \x20 - name: b\n    domains: [\"*.b.test\"]\n    upstreams:\n      u:\n        targets: [\"{}\"]\n    routes:\n      - path: /{{*rest}}\n        upstream: u\n",
        a.url(),
        b.url()
    );
    let gw = Gateway::start(BIN, &yaml, &[]);
    assert_eq!(backend_of(&gw, "a.test").await, (200, Some("a".into())));
    assert_eq!(backend_of(&gw, "A.Test:9999").await, (200, Some("a".into())));
    assert_eq!(backend_of(&gw, "x.b.test").await, (200, Some("b".into())));

    for host in ["nobody.test", "b.test", "a.test.example"] {
        let r = get(&gw.url("/who"), Some(host)).await;
        assert_gateway_error(&r, 404, "unknown_host", &gw);
        assert!(r.header("x-backend").is_none(), "Host {host} reached a backend");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_params_catch_all_and_methods() {
    let items = echo_backend("items").await;
    let files = echo_backend("files").await;
    let api = echo_backend("api").await;
    let reader = echo_backend("reader").await;
    let writer = echo_backend("writer").await;
    let org = format!(
        "name: t
upstreams:
  items: {{targets: [\"{}\"]}}
  files: {{targets: [\"{}\"]}}
  api: {{targets: [\"{}\"]}}
  reader: {{targets: [\"{}\"]}}
  writer: {{targets: [\"{}\"]}}
routes:
  - path: /items/{{id}}
    upstream: items
  - path: /items/{{id}}/parts/{{part}}
    methods: [GET]
    upstream: items
  - path: /files/{{*rest}}
    upstream: files
    strip_prefix: /files
  - path: /api/{{*rest}}
    upstream: api
  - path: /orders
    methods: [GET, HEAD]
    upstream: reader
  - path: /orders
    methods: [POST, put]
    upstream: writer
  - path: /items/special
    methods: [POST]
    upstream: writer
",
        items.url(),
        files.url(),
        api.url(),
        reader.url(),
        writer.url()
    );
    let gw = gateway_one_org(&org);
    let c = client();

    // (method, client path, backend, path the backend sees)
    let cases = [
        ("GET", "/items/42", "items", "/items/42"),
        ("DELETE", "/items/abc-1", "items", "/items/abc-1"),
        ("GET", "/items/7/parts/9?x=1", "items", "/items/7/parts/9?x=1"),
        ("GET", "/files/a/b/c.txt", "files", "/a/b/c.txt"),
        ("GET", "/files/a?q=1&r=2", "files", "/a?q=1&r=2"),
        ("GET", "/files", "files", "/"),
        ("GET", "/files/", "files", "/"),
        ("GET", "/files?x=1", "files", "/?x=1"),
        ("GET", "/api", "api", "/api"),
        ("GET", "/api/", "api", "/api/"),
        ("POST", "/api/v1/x", "api", "/api/v1/x"),
        ("GET", "/orders", "reader", "/orders"),
        ("POST", "/orders", "writer", "/orders"),
        ("PUT", "/orders?id=3", "writer", "/orders?id=3"),
        // The most specific pattern wins per method: `/items/special` takes POST only, so a GET
        // there is `/items/{id}`'s.
        ("POST", "/items/special", "writer", "/items/special"),
        ("GET", "/items/special", "items", "/items/special"),
        ("DELETE", "/items/special", "items", "/items/special"),
    ];
    for (method, path, backend, upstream_path) in cases {
        let r = send(&c, req(method, &gw.url(path), &[], "")).await;
        assert_eq!(
            r.status,
            200,
            "{method} {path}: {} {}\n{}",
            r.status,
            r.text(),
            logs(&gw)
        );
        let v = r.json();
        assert_eq!(v["backend"], backend, "{method} {path} went to the wrong upstream");
        assert_eq!(v["method"], method, "{method} {path}");
        assert_eq!(
            v["path_and_query"], upstream_path,
            "{method} {path}: path seen upstream"
        );
    }

    // HEAD is answered by the GET route.
    let r = request("HEAD", &gw.url("/items/7/parts/9"), None, b"").await;
    assert_eq!(r.status, 200, "HEAD on a GET route\n{}", logs(&gw));
    assert_eq!(r.header("x-backend"), Some("items"));
    assert!(r.body.is_empty());

    // A `{param}` is one segment; a path no route covers is 404.
    for path in ["/items", "/items/1/2", "/items/7/parts", "/apiary", "/nothing"] {
        let r = get(&gw.url(path), None).await;
        assert_gateway_error(&r, 404, "no_route", &gw);
    }
    // A method no route of the path takes is 405.
    let r = request("DELETE", &gw.url("/orders"), None, b"").await;
    assert_gateway_error(&r, 405, "method_not_allowed", &gw);
    let r = request("POST", &gw.url("/items/7/parts/9"), None, b"").await;
    assert_gateway_error(&r, 405, "method_not_allowed", &gw);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

/// A method the most specific pattern lacks goes to a less specific one; when none has it, the
/// 405's `Allow` names the methods of every pattern that matches.
#[tokio::test(flavor = "multi_thread")]
async fn allow_lists_the_methods_of_every_matching_pattern() {
    let org = "name: t
upstreams:
  m: {targets: [\"mirror://\"]}
routes:
  - {path: /users/me, methods: [POST], upstream: m}
  - {path: \"/users/{id}\", methods: [GET, DELETE], upstream: m}
";
    let gw = gateway_one_org(org);
    assert_eq!(request("DELETE", &gw.url("/users/me"), None, b"").await.status, 200);
    let r = request("PATCH", &gw.url("/users/me"), None, b"").await;
    assert_gateway_error(&r, 405, "method_not_allowed", &gw);
    assert_eq!(r.header("allow"), Some("DELETE, GET, HEAD, POST"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrite_fills_params_and_keeps_the_query() {
    let (users, seen) = recording_backend("users").await;
    let org = format!(
        "name: t
upstreams:
  users: {{targets: [\"{}\"]}}
routes:
  - path: /api/users/{{id}}
    upstream: users
    rewrite: /v2/users/{{id}}
  - path: /api/orgs/{{org}}/members/{{member}}
    upstream: users
    rewrite: /v3/members/{{member}}/of/{{org}}
  - path: /legacy/{{*rest}}
    upstream: users
    rewrite: /new/{{rest}}
",
        users.url()
    );
    let gw = gateway_one_org(&org);
    let cases = [
        ("/api/users/42", "/v2/users/42"),
        ("/api/users/42?fields=a,b&x=%20y", "/v2/users/42?fields=a,b&x=%20y"),
        (
            "/api/orgs/acme/members/bob?active=1",
            "/v3/members/bob/of/acme?active=1",
        ),
        ("/legacy/a/b/c?z=9", "/new/a/b/c?z=9"),
    ];
    for (path, want) in cases {
        let r = get(&gw.url(path), None).await;
        assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), logs(&gw));
        assert_eq!(r.json()["path_and_query"], want, "{path}");
    }
    assert_eq!(seen.lock().expect("lock").len(), cases.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn env_vars_are_interpolated_with_defaults() {
    let backend = echo_backend("env").await;
    let org = "name: ${CRATOPUS_T_ORG}
domains: [\"${CRATOPUS_T_DOMAIN}\"]
upstreams:
  u:
    targets: [\"${CRATOPUS_T_BACKEND}\"]
routes:
  - path: ${CRATOPUS_T_UNSET_PATH:-/from-default}/{*rest}
    upstream: u
  - path: ${CRATOPUS_T_SET_PATH:-/not-used}
    upstream: u
";
    let gw = Gateway::start_with_env(
        BIN,
        &test_support::gateway_yaml("orgs/*.yaml", "default_organization: ${CRATOPUS_T_ORG}"),
        &[("orgs/env.yaml", org)],
        &[
            ("CRATOPUS_T_ORG", "envorg"),
            ("CRATOPUS_T_DOMAIN", "env.test"),
            ("CRATOPUS_T_BACKEND", &backend.url()),
            ("CRATOPUS_T_SET_PATH", "/from-env"),
        ],
    );
    let r = get(&gw.url("/from-default/x"), Some("env.test")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));
    assert_eq!(r.json()["backend"], "env");
    assert_eq!(r.json()["path_and_query"], "/from-default/x");

    let r = get(&gw.url("/from-env"), Some("env.test")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs(&gw));
    assert_eq!(r.json()["path_and_query"], "/from-env");

    // The default only applies when the variable is unset.
    let r = get(&gw.url("/not-used"), Some("env.test")).await;
    assert_gateway_error(&r, 404, "no_route", &gw);
}

#[tokio::test]
async fn unset_env_var_without_default_is_a_config_error() {
    let dir = std::env::temp_dir().join(format!("cratopus-routing-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "listeners:\n  - bind: 127.0.0.1:0\norganizations:\n  - name: t\n    upstreams:\n      u:\n        targets: [\"${CRATOPUS_T_SURELY_UNSET}\"]\n    routes:\n      - path: /\n        upstream: u\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env_remove("CRATOPUS_T_SURELY_UNSET")
        .output()
        .expect("run cratopus check");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted an unset variable: {stderr}");
    assert!(
        stderr.contains("CRATOPUS_T_SURELY_UNSET"),
        "error does not name the variable: {stderr}"
    );
}

/// Kills the spawned process when the test ends, also on panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_command_serves_the_echo_alone() {
    let port = test_support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(
        std::process::Command::new(BIN)
            .args(["mirror", "--listen", &addr])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start cratopus mirror"),
    );
    let url = format!("http://{addr}/anything/here?x=1&y=two");
    let up = eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    assert!(
        up,
        "cratopus mirror did not listen on {addr}; exited: {:?}",
        child.0.try_wait()
    );
    let r = send(
        &client(),
        req(
            "PUT",
            &url,
            &[("x-test", "mirror"), ("content-type", "text/plain")],
            "hello mirror",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let v = r.json();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/anything/here");
    assert_eq!(v["args"]["x"], "1");
    assert_eq!(v["args"]["y"], "two");
    assert_eq!(v["headers"]["x-test"], "mirror");
    assert_eq!(v["body"], "hello mirror");
    assert!(child.0.try_wait().expect("try_wait").is_none(), "mirror exited");
}
