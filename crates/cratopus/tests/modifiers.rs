//! Header and query modifiers over real sockets: templates filled from a JWT signed with a
//! real RSA key, a consumer's API key, path parameters, request headers and the environment;
//! query operations as the backend sees them; internal response headers removed by name and by
//! pattern, the gateway's own refusals included; the organization's modifiers before the
//! route's; and a modifier the config cannot have, refused with its file and line. The request
//! side goes to the mirror, so the tests see exactly what a backend would receive.

mod common_ops;

use common_ops::{BIN, dump, hash_key, start_gateway};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};
use test_support::http::{Request, Response};
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, send};

const KEY: &str = "k-0123456789abcdef-modifiers-one";

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&test_support::client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// The request headers the mirror received, one value or a list.
fn seen(reply: &Reply) -> Value {
    reply.json()["headers"].clone()
}

fn indent(pem: &str, n: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}", " ".repeat(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JWT signed now with `private_pem` (RS256), valid for an hour.
fn token(private_pem: &str, claims: Value) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let mut claims = claims;
    claims["exp"] = json!(exp);
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("signing key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("token")
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_filled_from_a_real_jwt_an_api_key_params_headers_and_the_environment() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let org = format!(
        "
  - name: shop
    upstreams: {{m: {{targets: [\"mirror://\"]}}}}
    consumers:
      - id: mobile-app
        keys: [\"{hash}\"]
    modify:
      request_headers:
        set: {{X-Gateway: cratopus, X-Trace: '{{request_id}}', X-Region: '{{env.MODIFIERS_REGION}}'}}
    routes:
      - path: /keyed/{{id}}
        upstream: m
        auth: {{api_key: {{header: X-Api-Key}}}}
        modify:
          request_headers:
            set:
              X-Caller: '{{consumer}}'
              X-Item: 'item-{{param.id}}'
              X-Tags: '{{header.X-Client-Tag}}'
              X-Ip: '{{client_ip}}'
      - path: /me
        upstream: m
        auth:
          jwt:
            algorithms: [RS256]
            public_key: |
{pem}
        modify:
          request_headers:
            set:
              X-Subject: 'user {{claim.sub}}'
              X-Tenant: '{{claim.https://acme.test/tenant}}'
              X-Roles: '{{claim.realm_access.roles}}'
              X-Plan: '{{claim.nope}}'
              X-Where: '{{route}}@{{org}} {{{{literal}}}}'
      - path: /open
        upstream: m
        modify:
          request_headers:
            set: {{X-Caller: '{{consumer}}', X-Unset: '{{env.MODIFIERS_UNSET}}'}}
            add: {{X-Tags: 'gw-{{header.X-Client-Tag}}'}}
",
        hash = hash_key(KEY),
        pem = indent(&kp.public_key_pem(), 14),
    );
    let yaml = test_support::gateway_yaml(&org, "");
    let gw =
        tokio::task::block_in_place(|| Gateway::start_with_env(BIN, &yaml, &[], &[("MODIFIERS_REGION", "eu-west-1")]));

    // An API key: the consumer, a path parameter, a request header (both lines), the client.
    let r = get(
        &gw,
        "/keyed/17",
        &[("x-api-key", KEY), ("x-client-tag", "a"), ("x-client-tag", "b")],
    )
    .await;
    assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
    let h = seen(&r);
    assert_eq!(h["x-caller"], "mobile-app", "{h:#}");
    assert_eq!(h["x-item"], "item-17");
    assert_eq!(h["x-tags"], "a, b");
    assert_eq!(h["x-ip"], "127.0.0.1");
    // The organization's, on every route; the request id is the one the client gets back.
    assert_eq!(h["x-gateway"], "cratopus");
    assert_eq!(h["x-region"], "eu-west-1");
    assert_eq!(h["x-trace"].as_str(), r.header("x-request-id"), "{h:#}");
    assert!(h.get("x-api-key").is_none(), "the key never reaches the backend");

    // A JWT: claims by name, a claim named with dots, a nested list; a missing claim leaves
    // its header out, even when the client sent one.
    let jwt = token(
        &kp.serialize_pem(),
        json!({
            "sub": "user-42",
            "https://acme.test/tenant": "t-9",
            "realm_access": {"roles": ["admin", "ops"]},
        }),
    );
    let r = get(
        &gw,
        "/me",
        &[("authorization", &format!("Bearer {jwt}")), ("x-plan", "forged-gold")],
    )
    .await;
    assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
    let h = seen(&r);
    assert_eq!(h["x-subject"], "user user-42", "{h:#}");
    assert_eq!(h["x-tenant"], "t-9");
    assert_eq!(h["x-roles"], "admin,ops");
    assert_eq!(h["x-where"], "/me@shop {literal}");
    assert!(
        h.get("x-plan").is_none(),
        "a missing claim removes the client's copy: {h:#}"
    );

    // Anonymous: no consumer, so no X-Caller at all (the client's forged one is gone too); an
    // unset environment variable likewise; `add` adds only what it can fill.
    let r = get(&gw, "/open", &[("x-caller", "admin"), ("x-unset", "forged")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = seen(&r);
    assert!(h.get("x-caller").is_none() && h.get("x-unset").is_none(), "{h:#}");
    assert!(h.get("x-tags").is_none(), "{h:#}");
    let r = get(&gw, "/open", &[("x-client-tag", "t1"), ("x-tags", "client")]).await;
    assert_eq!(seen(&r)["x-tags"], json!(["client", "gw-t1"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn query_operations_reach_the_backend_as_configured() {
    let org = "
  - name: shop
    upstreams: {m: {targets: [\"mirror://\"]}}
    routes:
      - path: /search/{kind}
        upstream: m
        rewrite: /v2/find/{kind}
        modify:
          request_query:
            remove: [debug]
            rename: {q: search}
            set: {kind: '{param.kind}', tenant: '{header.X-Tenant}'}
            add: {source: gateway, who: '{consumer}'}
";
    let gw = start_gateway(&test_support::gateway_yaml(org, ""), &[]);
    let r = get(
        &gw,
        "/search/books?q=caf%C3%A9+au+lait&debug=1&kind=forged&page=2&debug",
        &[("x-tenant", "t 1/2")],
    )
    .await;
    assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
    let v = r.json();
    assert_eq!(v["path"], "/v2/find/books");
    // Untouched pairs keep their place and bytes; set and added ones go last, encoded; `who`
    // has no consumer to fill it and is left out.
    assert_eq!(
        v["query"], "search=caf%C3%A9+au+lait&page=2&kind=books&tenant=t%201%2F2&source=gateway",
        "{v:#}"
    );
    assert_eq!(v["args"]["search"], "café au lait");
    assert_eq!(v["args"]["tenant"], "t 1/2");

    // Everything removed: the backend gets no `?` at all.
    let r = get(&gw, "/search/x?debug=1", &[]).await;
    assert_eq!(r.json()["uri"], "/v2/find/x?kind=x&source=gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_response_headers_go_and_the_organizations_modifiers_run_first() {
    let backend = Backend::start(|_req, _peer| async {
        Response::builder()
            .header("server", "nginx/1.25.3")
            .header("x-powered-by", "PHP/8.3")
            .header("x-internal-trace", "abc")
            .header("X-Internal-Host", "10.0.0.3")
            .header("x-backend-time", "5ms")
            .header("x-keep", "yes")
            .body(Full::new(Bytes::from_static(b"ok")))
            .unwrap()
    })
    .await;
    let org = format!(
        "
  - name: shop
    upstreams:
      app: {{targets: [\"{url}\"]}}
      m: {{targets: [\"mirror://\"]}}
    consumers:
      - id: mobile-app
        keys: [\"{hash}\"]
    modify:
      request_headers:
        set: {{X-Who: organization}}
        add: {{X-Trail: organization}}
      response_headers:
        set: {{X-Gateway-Version: 1.2.3}}
        remove: [Server, x-powered-by]
        remove_matching: ['^X-INTERNAL-']
    routes:
      - path: /app
        upstream: app
        modify:
          response_headers:
            rename: {{X-Backend-Time: X-Upstream-Time}}
      - path: /raw
        upstream: app
        modify:
          inherit: false
          response_headers:
            set: {{X-Raw: 'yes'}}
      - path: /order
        upstream: m
        modify:
          request_headers:
            set: {{X-Who: route}}
            add: {{X-Trail: route}}
      - path: /private
        upstream: m
        auth: {{api_key: {{}}}}
",
        url = backend.url(),
        hash = hash_key(KEY),
    );
    let gw = start_gateway(&test_support::gateway_yaml(&org, ""), &[]);

    let r = get(&gw, "/app", &[]).await;
    assert_eq!(r.status, 200, "{}{}", r.text(), dump(&gw));
    for gone in [
        "server",
        "x-powered-by",
        "x-internal-trace",
        "x-internal-host",
        "x-backend-time",
    ] {
        assert!(r.header(gone).is_none(), "{gone} reached the client: {:?}", r.headers);
    }
    assert_eq!(r.header("x-keep"), Some("yes"));
    assert_eq!(r.header("x-upstream-time"), Some("5ms"));
    assert_eq!(r.header("x-gateway-version"), Some("1.2.3"));
    assert!(r.header("x-request-id").is_some(), "the gateway's own headers stay");

    // `inherit: false`: the route's modifiers alone.
    let r = get(&gw, "/raw", &[]).await;
    assert_eq!(r.header("server"), Some("nginx/1.25.3"));
    assert_eq!(r.header("x-raw"), Some("yes"));
    assert!(r.header("x-gateway-version").is_none());

    // The organization's block first, then the route's: the route's `set` wins, both `add`s.
    let r = get(&gw, "/order", &[("x-who", "client")]).await;
    let h = seen(&r);
    assert_eq!(h["x-who"], "route", "{h:#}");
    assert_eq!(h["x-trail"], json!(["organization", "route"]));

    // The gateway's own refusal is an answer of the route too.
    let r = get(&gw, "/private", &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("x-gateway-version"), Some("1.2.3"));
    let r = get(&gw, "/private", &[("x-api-key", KEY)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Writes `yaml` as gateway.yaml in a fresh directory.
fn write_config(name: &str, yaml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cratopus-modifiers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).expect("write gateway.yaml");
    file
}

/// The exit code and stderr of `cratopus <args> -c file`.
fn run(args: &[&str], file: &PathBuf) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(file)
        .env_remove("CRATOPUS_CONFIG")
        .output()
        .expect("run cratopus");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_modifier_of_a_protected_header_is_refused_with_its_line() {
    let yaml = "\
listeners: [{bind: 127.0.0.1:0}]
organizations:
  - name: shop
    upstreams: {app: {targets: [\"mirror://\"]}}
    modify:
      request_headers:
        set: {X-Gateway: cratopus}
        remove: [Connection]
    routes:
      - path: /me
        upstream: app
        auth: {jwt: {secret: s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t, forward_claims: {sub: X-User-Id}}}
        modify:
          request_headers:
            set:
              X-User-Id: '{claim.sub}'
              X-Path: '{param.id}'
          response_headers:
            set: {Transfer-Encoding: chunked}
";
    let file = write_config("protected", yaml);
    let place = |line: u32| format!("{}:{line}:", file.display());
    for args in [&["check"][..], &["run"]] {
        let (code, out) = run(args, &file);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        for (line, says) in [
            (8, "`Connection` is a hop-by-hop header"),
            (16, "`X-User-Id` is an identity header"),
            (17, "the route's path has no parameter `id`"),
            (19, "`Transfer-Encoding` is a hop-by-hop header"),
        ] {
            let at = out.lines().position(|l| l.contains(says));
            let located = at.is_some_and(|i| out.lines().skip(i).take(3).any(|l| l.contains(&place(line))));
            assert!(located, "{args:?}: no {says:?} at {}:\n{out}", place(line));
        }
    }

    // The same config without them loads.
    let fixed = yaml
        .replace("        remove: [Connection]\n", "")
        .replace(
            "              X-User-Id: '{claim.sub}'\n",
            "              X-Subject: '{claim.sub}'\n",
        )
        .replace("'{param.id}'", "'{route}'")
        .replace("Transfer-Encoding: chunked", "X-Gateway: cratopus");
    let (code, out) = run(&["check"], &write_config("fixed", &fixed));
    assert_eq!(code, Some(0), "{out}");
}
