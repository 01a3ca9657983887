//! HTTPS: certificates chosen by SNI (RSA and ECDSA), the default certificate or a refusal for
//! unknown names, TLS 1.2/1.3 only (a TLS 1.1 client is refused), ALPN h2 and http/1.1, and
//! certificate files reloaded when they change without dropping open connections. Every
//! certificate is made by rcgen when the test runs; handshakes are made by a rustls client and
//! by openssl/curl.

mod common_ops;

use common_ops::{BIN, count_log, dump, wait_log};
use std::process::Command;
use std::time::Duration;
use test_support::Gateway;
use test_support::tls::{ClientOpts, KeyKind, TestCa, der_of, https_get};

const WAIT: Duration = Duration::from_secs(10);

fn start(yaml: &str, files: &[(&str, &str)]) -> Gateway {
    tokio::task::block_in_place(|| Gateway::start(BIN, yaml, files))
}

/// A mirror organization with `domains` and extra `tls` YAML (indented under `tls:`).
fn org(name: &str, domains: &[&str], tls: Option<&str>) -> String {
    let mut s = format!(
        "  - name: {name}\n    domains: [{}]\n    upstreams:\n      m: {{targets: [\"mirror://\"]}}\n    routes:\n      - {{path: \"/{{*rest}}\", upstream: m}}\n",
        domains.join(", ")
    );
    if let Some(t) = tls {
        s.push_str("    tls:\n");
        for l in t.lines() {
            s.push_str(&format!("      {l}\n"));
        }
    }
    s
}

fn https_listener() -> &'static str {
    "listeners:\n  - name: https\n    bind: 127.0.0.1:0\n    tls: true\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_chooses_the_certificate_rsa_or_ecdsa_and_unknown_names_get_the_default() {
    let ca = TestCa::new("test CA");
    let acme = ca.server(&["api.acme.test"], KeyKind::EcdsaP256);
    let shop_ec = ca.server(&["shop.test", "*.shop.test"], KeyKind::EcdsaP256);
    let shop_rsa = ca.server(&["shop.test", "*.shop.test"], KeyKind::Rsa2048);
    let eu = ca.server(&["eu.shop.test"], KeyKind::EcdsaP256);
    // The default certificate names the hosts it will be served for, so that the client accepts
    // it; which certificate came is told by comparing it.
    let default = ca.server(&["unknown.test", "plain.test"], KeyKind::EcdsaP256);
    let yaml = format!(
        "{}tls:\n  default_certificate: {{cert: certs/default.pem, key: certs/default.key}}\norganizations:\n{}{}{}",
        https_listener(),
        org(
            "acme",
            &["api.acme.test"],
            Some("cert: certs/acme.pem\nkey: certs/acme.key")
        ),
        org(
            "shop",
            &["shop.test", "\"*.shop.test\""],
            Some(
                "certificates:\n  - {cert: certs/shop-ec.pem, key: certs/shop-ec.key}\n  - {cert: certs/shop-rsa.pem, key: certs/shop-rsa.key}\n  - {cert: certs/eu.pem, key: certs/eu.key, domains: [eu.shop.test]}"
            )
        ),
        org("plain", &["plain.test"], None),
    );
    let files = [
        ("certs/acme.pem", acme.cert.as_str()),
        ("certs/acme.key", acme.key.as_str()),
        ("certs/shop-ec.pem", shop_ec.cert.as_str()),
        ("certs/shop-ec.key", shop_ec.key.as_str()),
        ("certs/shop-rsa.pem", shop_rsa.cert.as_str()),
        ("certs/shop-rsa.key", shop_rsa.key.as_str()),
        ("certs/eu.pem", eu.cert.as_str()),
        ("certs/eu.key", eu.key.as_str()),
        ("certs/default.pem", default.cert.as_str()),
        ("certs/default.key", default.key.as_str()),
    ];
    let gw = start(&yaml, &files);
    let addr = gw.addr();
    let opts = ClientOpts::trusting(&[&ca.cert_pem]);

    // The organization's certificate, over HTTP/2 (ALPN h2) and TLS 1.3.
    let (hs, reply) = https_get(addr, "api.acme.test", "api.acme.test", "/hello", &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", dump(&gw)));
    assert_eq!(hs.leaf, der_of(&acme.cert));
    assert_eq!(hs.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(hs.version, Some(test_support::rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");

    // HTTP/1.1 by ALPN, and TLS 1.2.
    let mut h1 = opts.clone();
    h1.alpn = vec![b"http/1.1".to_vec()];
    h1.versions = vec![&test_support::rustls::version::TLS12];
    let (hs, reply) = https_get(addr, "api.acme.test", "api.acme.test", "/x", &h1)
        .await
        .expect("h1");
    assert_eq!(hs.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(hs.version, Some(test_support::rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(reply.status, 200);

    // An RSA and an ECDSA certificate for the same names: each client gets one it can verify.
    for (kind, want) in [(KeyKind::EcdsaP256, &shop_ec), (KeyKind::Rsa2048, &shop_rsa)] {
        let mut o = opts.clone();
        o.only_schemes = Some(kind);
        for tls12 in [false, true] {
            if tls12 {
                o.versions = vec![&test_support::rustls::version::TLS12];
            }
            let (hs, reply) = https_get(addr, "www.shop.test", "www.shop.test", "/", &o)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} tls12={tls12}: {e}"));
            assert_eq!(hs.leaf, der_of(&want.cert), "{kind:?} tls12={tls12}");
            assert_eq!(reply.status, 200);
        }
    }
    // A certificate for one domain wins over the organization-wide ones (in any case).
    for name in ["eu.shop.test", "EU.Shop.Test"] {
        let (hs, _) = https_get(addr, name, name, "/", &opts).await.expect("eu");
        assert_eq!(hs.leaf, der_of(&eu.cert), "{name}");
    }

    // Unknown names and organizations without certificates: the default certificate.
    for name in ["unknown.test", "plain.test"] {
        let (hs, _) = https_get(addr, name, name, "/", &opts).await.expect(name);
        assert_eq!(hs.leaf, der_of(&default.cert), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_are_refused_without_a_default_certificate() {
    let ca = TestCa::new("test CA");
    let acme = ca.server(&["api.acme.test"], KeyKind::EcdsaP256);
    let yaml = format!(
        "{}organizations:\n{}",
        https_listener(),
        org("acme", &["api.acme.test"], Some("cert: acme.pem\nkey: acme.key"))
    );
    let gw = start(&yaml, &[("acme.pem", &acme.cert), ("acme.key", &acme.key)]);
    let opts = ClientOpts::trusting(&[&ca.cert_pem]);
    https_get(gw.addr(), "api.acme.test", "api.acme.test", "/", &opts)
        .await
        .expect("the known name is served");
    let err = https_get(gw.addr(), "other.test", "other.test", "/", &opts)
        .await
        .expect_err("an unknown name must be refused");
    assert!(err.contains("AccessDenied"), "a fatal alert, got: {err}");
}

/// `openssl s_client` against the listener; returns (exit success, output).
fn s_client(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "api.acme.test",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_1_is_refused_and_1_2_and_1_3_are_served() {
    let ca = TestCa::new("test CA");
    let acme = ca.server(&["api.acme.test"], KeyKind::Rsa2048);
    let yaml = format!(
        "{}organizations:\n{}",
        https_listener(),
        org("acme", &["api.acme.test"], Some("cert: acme.pem\nkey: acme.key"))
    );
    let gw = start(&yaml, &[("acme.pem", &acme.cert), ("acme.key", &acme.key)]);
    let port = gw.addr().port();
    // SECLEVEL=0 lets OpenSSL 3 send a TLS 1.1 hello at all, so the refusal is the server's.
    let (ok, out) = tokio::task::block_in_place(|| s_client(port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]));
    assert!(!ok, "TLS 1.1 must fail:\n{out}");
    // rustls answers a hello without TLS 1.2 or 1.3 with a fatal alert (handshake_failure).
    assert!(
        out.contains("alert") && out.contains("Cipher is (NONE)"),
        "the server refuses with an alert:\n{out}"
    );
    for v in ["-tls1_2", "-tls1_3"] {
        let (ok, out) = tokio::task::block_in_place(|| s_client(port, &[v]));
        assert!(ok && out.contains("Verify return code"), "{v}:\n{out}");
    }
    // curl too: TLS 1.1 refused, TLS 1.2 served (trusting the test CA, resolving the name).
    let dir = gw.dir().to_path_buf();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).expect("ca");
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(dir.join("ca.pem"))
            .args(["--resolve", &format!("api.acme.test:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://api.acme.test:{port}/"))
            .output()
            .expect("curl")
    };
    let old =
        tokio::task::block_in_place(|| curl(&["--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT:@SECLEVEL=0"]));
    assert!(!old.status.success(), "curl over TLS 1.1 must fail");
    let ok = tokio::task::block_in_place(|| curl(&["--tlsv1.2", "--tls-max", "1.2", "--http1.1"]));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_files_reload_without_dropping_connections_and_a_bad_one_is_rejected() {
    let ca = TestCa::new("test CA");
    let first = ca.server(&["api.acme.test"], KeyKind::EcdsaP256);
    let second = ca.server(&["api.acme.test"], KeyKind::EcdsaP256);
    let yaml = format!(
        "{}organizations:\n{}",
        https_listener(),
        org("acme", &["api.acme.test"], Some("cert: acme.pem\nkey: acme.key"))
    );
    let gw = start(&yaml, &[("acme.pem", &first.cert), ("acme.key", &first.key)]);
    let addr = gw.addr();
    let mut opts = ClientOpts::trusting(&[&ca.cert_pem]);
    opts.alpn = vec![b"http/1.1".to_vec()];

    // A kept-alive HTTP/1.1 connection made with the first certificate.
    let (stream, hs) = test_support::tls::handshake(addr, "api.acme.test", &opts)
        .await
        .expect("handshake");
    assert_eq!(hs.leaf, der_of(&first.cert));
    let (mut sender, conn) =
        test_support::hyper::client::conn::http1::handshake(test_support::hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("h1");
    tokio::spawn(conn);
    let get = |path: &'static str| {
        test_support::http::Request::get(path)
            .header("host", "api.acme.test")
            .body(test_support::http_body_util::Full::new(
                test_support::hyper::body::Bytes::new(),
            ))
            .unwrap()
    };
    assert_eq!(
        sender.send_request(get("/a")).await.expect("first request").status(),
        200
    );

    // New files: the key first, then the certificate. Until both are in place a reload may be
    // rejected (the pair does not match); the last one succeeds.
    let reloads = count_log(&gw, &["config reloaded"]);
    let ok = test_support::eventually(WAIT, || async {
        gw.write_file("acme.key", &second.key);
        gw.write_file("acme.pem", &second.cert);
        wait_log(&gw, &["config reloaded"], reloads + 1, Duration::from_secs(2)).await
    })
    .await;
    assert!(ok, "no reload after the certificate changed{}", dump(&gw));
    let served_second = test_support::eventually(WAIT, || async {
        https_get(addr, "api.acme.test", "api.acme.test", "/", &opts)
            .await
            .is_ok_and(|(hs, _)| hs.leaf == der_of(&second.cert))
    })
    .await;
    assert!(served_second, "new handshakes get the new certificate{}", dump(&gw));
    // The connection made before the reload still serves requests.
    assert_eq!(
        sender.send_request(get("/b")).await.expect("same connection").status(),
        200
    );

    // A broken certificate file: rejected with the reason, the last good one keeps serving.
    let rejected = count_log(&gw, &["config rejected"]);
    gw.write_file(
        "acme.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    assert!(
        wait_log(&gw, &["config rejected"], rejected + 1, WAIT).await,
        "a bad certificate is rejected{}",
        dump(&gw)
    );
    assert!(
        wait_log(&gw, &["acme.pem"], 1, WAIT).await,
        "the rejection names the file{}",
        dump(&gw)
    );
    let (hs, reply) = https_get(addr, "api.acme.test", "api.acme.test", "/", &opts)
        .await
        .expect("still served");
    assert_eq!(hs.leaf, der_of(&second.cert));
    assert_eq!(reply.status, 200);
    assert_eq!(
        sender.send_request(get("/c")).await.expect("same connection").status(),
        200
    );
}

/// A free loopback port (racy, as test-support's other servers).
fn free_port() -> u16 {
    test_support::free_port()
}

fn acme_gateway_yaml(http_port: u16, pebble: &test_support::pebble::Pebble, extra_acme: &str) -> String {
    format!(
        "listeners:
  - {{name: http, bind: \"127.0.0.1:{http_port}\", redirect_http_to_https: true}}
  - {{name: https, bind: \"127.0.0.1:0\", tls: true}}
admin: {{bind: \"127.0.0.1:0\", token: acme-test-token-0123456789}}
tls:
  acme:
    directory: {dir}
    directory_ca: {ca}
    storage: acme-store
    retry_base: 1s
{extra_acme}organizations:
{org}",
        dir = pebble.directory_url,
        ca = pebble.ca_pem.display(),
        org = org("shop", &["gw.test", "api.gw.test"], Some("acme: {email: ops@gw.test}")),
    )
}

/// Issue, serve, restart (served from disk at once), then renew — against pebble, which
/// validates HTTP-01 on the gateway's own HTTP listener.
#[tokio::test(flavor = "multi_thread")]
async fn acme_issues_over_http_01_serves_stores_and_renews_with_pebble() {
    let http_port = free_port();
    let pebble = tokio::task::block_in_place(|| test_support::pebble::Pebble::start(http_port, 0));
    let yaml = acme_gateway_yaml(http_port, &pebble, "");
    let gw = start(&yaml, &[]);
    let https = gw.addrs()[1];
    let admin = gw.addrs()[2];
    let wait = Duration::from_secs(60);
    assert!(
        wait_log(&gw, &["ACME certificate issued and served"], 1, wait).await,
        "no certificate from pebble{}\n--- pebble ---\n{}",
        dump(&gw),
        pebble.log()
    );
    // pebble fetched the challenge on our HTTP listener (not redirected) for both names.
    assert!(
        count_log(&gw, &["answering an ACME HTTP-01 challenge"]) >= 2,
        "{}",
        dump(&gw)
    );

    // Served at once, chained to pebble's root for both names.
    let opts = ClientOpts::trusting(&[&pebble.root_pem]);
    let mut first = Vec::new();
    for name in ["gw.test", "api.gw.test"] {
        let (hs, reply) = https_get(https, name, name, "/x", &opts)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}{}", dump(&gw)));
        assert_eq!(reply.status, 200);
        first = hs.leaf;
    }
    // Stored with its key, the key readable by the owner only.
    let key = gw.path("acme-store/api.gw.test/key.pem");
    let mode = std::fs::metadata(&key).expect("stored key").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    assert!(gw.path("acme-store/api.gw.test/cert.pem").exists());
    // The admin API shows the certificate as valid.
    let status = common_ops::get_with(
        &test_support::client(),
        &format!("http://{admin}/api/certificates"),
        &[("authorization", "Bearer acme-test-token-0123456789")],
    )
    .await
    .json();
    assert_eq!(status["acme"][0]["state"], "valid", "{status}");
    assert_eq!(status["acme"][0]["names"][0], "api.gw.test", "{status}");

    // Plain HTTP is redirected, the health path is not.
    let r = test_support::get(&format!("http://127.0.0.1:{http_port}/p?q=1"), Some("gw.test")).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://gw.test:{}/p?q=1", https.port()).as_str())
    );

    // Restart with the certificate due for renewal: the stored one is served at once, then a
    // new one replaces it.
    let stored = std::fs::read_to_string(gw.path("acme-store/api.gw.test/cert.pem")).expect("cert");
    let key_text = std::fs::read_to_string(gw.path("acme-store/api.gw.test/key.pem")).expect("key");
    drop(gw);
    let yaml = acme_gateway_yaml(http_port, &pebble, "    renew_before: 3650d\n");
    let files = [
        ("acme-store/api.gw.test/cert.pem", stored.as_str()),
        ("acme-store/api.gw.test/key.pem", key_text.as_str()),
    ];
    let gw = start(&yaml, &files);
    let https = gw.addrs()[1];
    assert!(
        wait_log(&gw, &["ACME certificate loaded from disk"], 1, WAIT).await,
        "{}",
        dump(&gw)
    );
    assert!(
        wait_log(&gw, &["ACME certificate issued and served"], 1, wait).await,
        "no renewal{}\n--- pebble ---\n{}",
        dump(&gw),
        pebble.log()
    );
    assert!(
        count_log(&gw, &["ordering an ACME certificate", "renewing=true"]) >= 1,
        "{}",
        dump(&gw)
    );
    let (hs, reply) = https_get(https, "gw.test", "gw.test", "/", &opts)
        .await
        .expect("renewed");
    assert_eq!(reply.status, 200);
    assert_ne!(hs.leaf, first, "the renewed certificate is served");
    assert_ne!(hs.leaf, der_of(&stored));
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_redirects_to_https_except_challenges_and_health_and_https_gets_hsts() {
    let ca = TestCa::new("test CA");
    let shop = ca.server(&["shop.test"], KeyKind::EcdsaP256);
    let yaml = format!(
        "listeners:
  - {{name: http, bind: 127.0.0.1:0, redirect_http_to_https: true}}
  - {{name: https, bind: 127.0.0.1:0, tls: true}}
  - {{name: http443, bind: 127.0.0.1:0, redirect_http_to_https: true, https_port: 443}}
  - {{name: plain, bind: 127.0.0.1:0}}
traffic_log: {{path: traffic.log}}
organizations:
{}",
        org(
            "shop",
            &["shop.test"],
            Some("cert: shop.pem\nkey: shop.key\nhsts: {max_age: 365d, include_subdomains: true, preload: true}")
        )
    );
    let gw = start(&yaml, &[("shop.pem", &shop.cert), ("shop.key", &shop.key)]);
    let [http, https, http443, plain] = [gw.addrs()[0], gw.addrs()[1], gw.addrs()[2], gw.addrs()[3]];

    let r = test_support::get(&format!("http://{http}/a/b?c=d&e"), Some("shop.test:8080")).await;
    assert_eq!(r.status, 308, "{}", r.text());
    let want = format!("https://shop.test:{}/a/b?c=d&e", https.port());
    assert_eq!(r.header("location"), Some(want.as_str()));
    assert_eq!(
        r.header("x-request-id").map(str::len),
        Some(32),
        "every answer has a request id"
    );
    let logged = test_support::eventually(WAIT, || async {
        std::fs::read_to_string(gw.path("traffic.log")).is_ok_and(|t| t.contains("\"status\":308"))
    })
    .await;
    assert!(logged, "the redirect is in the traffic log{}", dump(&gw));
    let r = test_support::request("POST", &format!("http://{http443}/form"), Some("Shop.Test"), b"x=1").await;
    assert_eq!(r.status, 308, "any method, the same status (clients resend the body)");
    assert_eq!(r.header("location"), Some("https://Shop.Test/form"));
    // Not redirected: the health path, ACME challenges (404 when no order is pending).
    assert_eq!(
        test_support::get(&format!("http://{http}/__health"), Some("shop.test"))
            .await
            .status,
        200
    );
    let r = test_support::get(
        &format!("http://{http}/.well-known/acme-challenge/abc"),
        Some("shop.test"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "no_route");
    // A Host that cannot be redirected to.
    let r = test_support::get(&format!("http://{http}/x"), Some("bad/host")).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // HSTS on HTTPS answers, the gateway's own errors included; never over plain HTTP.
    let opts = ClientOpts::trusting(&[&ca.cert_pem]);
    let want = "max-age=31536000; includeSubDomains; preload";
    let (_, r) = https_get(https, "shop.test", "shop.test", "/x", &opts)
        .await
        .expect("https");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), Some(want));
    let r = test_support::get(&format!("http://{plain}/x"), Some("shop.test")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
}

/// An HTTPS backend's certificate is verified by default: against the system roots it fails with
/// a clear 502, with the configured CA it passes; SNI, ALPN (h2) and a client certificate reach
/// the backend; `verify: false` works and is logged as a warning.
#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_verified_by_default() {
    let ca = TestCa::new("backend CA");
    let backend_cert = ca.server(&["backend.test", "127.0.0.1"], KeyKind::EcdsaP256);
    let backend = test_support::tls::https_backend(&backend_cert, "from the TLS backend", None).await;
    let client_ca = TestCa::new("gateway client CA");
    let gw_client = client_ca.client("gateway", &[]);
    let strict =
        test_support::tls::https_backend(&backend_cert, "from the mTLS backend", Some(&client_ca.cert_pem)).await;
    let (b, s) = (backend.addr.port(), strict.addr.port());
    let org = format!(
        "  - name: api
    upstreams:
      untrusted: {{targets: [\"https://127.0.0.1:{b}\"]}}
      trusted: {{targets: [\"https://127.0.0.1:{b}\"], tls: {{ca: ca.pem}}}}
      named: {{targets: [\"https://127.0.0.1:{b}\"], tls: {{ca: ca.pem, server_name: backend.test}}, health_check: {{interval: 100ms}}}}
      wrong-name: {{targets: [\"https://127.0.0.1:{b}\"], tls: {{ca: ca.pem, server_name: other.test}}}}
      h2: {{targets: [\"https://127.0.0.1:{b}\"], protocol: h2, tls: {{ca: ca.pem, server_name: backend.test}}, health_check: {{interval: 100ms}}}}
      insecure: {{targets: [\"https://127.0.0.1:{b}\"], tls: {{verify: false}}}}
      mtls: {{targets: [\"https://127.0.0.1:{s}\"], tls: {{ca: ca.pem, client_cert: {{cert: gw.pem, key: gw.key}}}}}}
      no-client-cert: {{targets: [\"https://127.0.0.1:{s}\"], tls: {{ca: ca.pem}}}}
    routes:
"
    );
    let names = [
        "untrusted",
        "trusted",
        "named",
        "wrong-name",
        "h2",
        "insecure",
        "mtls",
        "no-client-cert",
    ];
    let mut org = org;
    for n in names {
        org.push_str(&format!("      - {{path: /{n}, upstream: {n}}}\n"));
    }
    let yaml = test_support::gateway_yaml(&format!("\n{org}"), "");
    let gw = start(
        &yaml,
        &[
            ("ca.pem", &ca.cert_pem),
            ("gw.pem", &gw_client.cert),
            ("gw.key", &gw_client.key),
        ],
    );
    assert!(
        count_log(&gw, &["tls.verify is false", "insecure"]) == 1,
        "verify: false is a warning at load{}",
        dump(&gw)
    );
    let get = |p: &str| {
        let url = gw.url(p);
        async move { test_support::get(&url, None).await }
    };

    let r = get("/untrusted").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_tls_failed");
    assert!(
        wait_log(&gw, &["TLS handshake with upstream failed", "UnknownIssuer"], 1, WAIT).await,
        "the reason is logged{}",
        dump(&gw)
    );
    let r = get("/trusted").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from the TLS backend"));
    assert_eq!(r.header("x-sni"), Some("-"), "an IP target sends no SNI");
    assert_eq!(r.header("x-alpn"), Some("http/1.1"));
    let r = get("/named").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sni"), Some("backend.test"));
    let r = get("/wrong-name").await;
    assert_eq!(r.json()["error"]["code"], "upstream_tls_failed", "the name is checked");
    let r = get("/h2").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-alpn"), Some("h2"));
    let r = get("/insecure").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from the TLS backend"));
    let r = get("/mtls").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from the mTLS backend"));
    assert_eq!(r.header("x-client-certs"), Some("1"));
    let r = get("/no-client-cert").await;
    assert_eq!(r.status, 502, "{}", r.text());
    // More requests over the pooled TLS connections.
    for _ in 0..20 {
        assert_eq!(get("/trusted").await.status, 200);
    }
    // Health checks speak TLS too (HTTP/1.1, and HTTP/2 where ALPN chose it): after several
    // rounds of checks the targets are still in.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get("/named").await.status, 200, "{}", dump(&gw));
    assert_eq!(get("/h2").await.status, 200, "{}", dump(&gw));
    assert_eq!(count_log(&gw, &["target is unhealthy"]), 0, "{}", dump(&gw));
}

/// Client certificates per organization: required (TLS alert), optional, required_http (401);
/// the subject and SANs reach the upstream in the configured header, a client's own copy is
/// dropped; a certificate from another CA is refused; the CA check cannot be sidestepped by
/// another SNI (421) or plain HTTP (401).
#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_per_organization() {
    let ca = TestCa::new("server CA");
    let clients = TestCa::new("partner CA");
    let strangers = TestCa::new("stranger CA");
    let alice = clients.client("alice", &["DNS:alice.partner.test", "URI:spiffe://partner.test/alice"]);
    let mallory = strangers.client("mallory", &[]);
    let server = ca.server(
        &["partners.test", "opt.test", "soft.test", "open.test"],
        KeyKind::EcdsaP256,
    );
    let tls = |mode: &str, header: &str| {
        format!("cert: server.pem\nkey: server.key\nclient_auth: {{ca: clients.pem, mode: {mode}, header: {header}}}")
    };
    let yaml = format!(
        "listeners:\n  - {{name: https, bind: 127.0.0.1:0, tls: true}}\n  - {{name: http, bind: 127.0.0.1:0}}\norganizations:\n{}{}{}{}",
        org(
            "partners",
            &["partners.test"],
            Some(&tls("required", "X-Forwarded-Client-Cert"))
        ),
        org("opt", &["opt.test"], Some(&tls("optional", "X-Client"))),
        org("soft", &["soft.test"], Some(&tls("required_http", "X-Client"))),
        org("open", &["open.test"], Some("cert: server.pem\nkey: server.key")),
    );
    let gw = start(
        &yaml,
        &[
            ("server.pem", &server.cert),
            ("server.key", &server.key),
            ("clients.pem", &clients.cert_pem),
        ],
    );
    let (https, http) = (gw.addrs()[0], gw.addrs()[1]);
    let anonymous = ClientOpts::trusting(&[&ca.cert_pem]);
    let mut with_alice = anonymous.clone();
    with_alice.client_cert = Some(alice.clone());
    let mut with_mallory = anonymous.clone();
    with_mallory.client_cert = Some(mallory);
    let spoof = [
        ("x-forwarded-client-cert", "Subject=\"CN=admin\""),
        ("x-client", "forged"),
    ];

    // Required: with alice's certificate the upstream learns who she is.
    let (_, r) = test_support::tls::https_get_with(https, "partners.test", "partners.test", "/", &with_alice, &spoof)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", dump(&gw)));
    assert_eq!(r.status, 200, "{}", r.text());
    let xfcc = r.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(xfcc.starts_with("Subject=\"") && xfcc.contains("CN=alice"), "{xfcc}");
    assert!(
        xfcc.contains("DNS=alice.partner.test") && xfcc.contains("URI=spiffe://partner.test/alice"),
        "{xfcc}"
    );
    assert!(!xfcc.contains("admin"), "the client's own header is dropped: {xfcc}");
    // Without a certificate, or with one from another CA: a TLS alert.
    let err = test_support::tls::refusal(https, "partners.test", &anonymous).await;
    assert!(err.contains("CertificateRequired"), "no certificate, no service: {err}");
    let err = test_support::tls::refusal(https, "partners.test", &with_mallory).await;
    assert!(err.contains("UnknownCA"), "a stranger's certificate: {err}");
    // TLS 1.2 refuses within the handshake.
    let mut tls12 = with_mallory.clone();
    tls12.versions = vec![&test_support::rustls::version::TLS12];
    let err = test_support::tls::refusal(https, "partners.test", &tls12).await;
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate"),
        "TLS 1.2: {err}"
    );

    // Optional: without a certificate the request goes on, without the header (and a forged one
    // is dropped); with one, the header is there.
    let (_, r) = test_support::tls::https_get_with(https, "opt.test", "opt.test", "/", &anonymous, &spoof)
        .await
        .expect("optional");
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"]["x-client"].is_null(), "{}", r.text());
    let (_, r) = https_get(https, "opt.test", "opt.test", "/", &with_alice)
        .await
        .expect("optional");
    assert!(
        r.json()["headers"]["x-client"]
            .as_str()
            .unwrap_or("")
            .contains("CN=alice")
    );

    // required_http: the handshake passes, the request gets 401.
    let (_, r) = https_get(https, "soft.test", "soft.test", "/", &anonymous)
        .await
        .expect("handshake");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "client_certificate_required");
    let (_, r) = https_get(https, "soft.test", "soft.test", "/", &with_alice)
        .await
        .expect("alice");
    assert_eq!(r.status, 200);

    // A connection made for another name (verified by nobody's CA) cannot reach an organization
    // with client certificates: 421; plain HTTP: 401. Organizations without them are not concerned.
    let (_, r) = https_get(https, "open.test", "soft.test", "/", &with_alice)
        .await
        .expect("handshake");
    assert_eq!(r.status, 421, "{}", r.text());
    let (_, r) = https_get(https, "opt.test", "open.test", "/", &with_alice)
        .await
        .expect("handshake");
    assert_eq!(r.status, 200);
    let r = test_support::get(&format!("http://{http}/"), Some("partners.test")).await;
    assert_eq!(r.status, 401);
    let r = test_support::get(&format!("http://{http}/"), Some("opt.test")).await;
    assert_eq!(r.status, 200, "optional: plain HTTP passes, without the header");
}

/// An order that fails (pebble cannot reach the challenge): the reason is logged and shown by
/// the admin API, the next attempt backs off (doubling), and the name keeps its other
/// certificate meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn acme_failures_back_off_and_the_previous_certificate_keeps_serving() {
    // pebble validates on a port where nothing listens.
    let pebble = tokio::task::block_in_place(|| test_support::pebble::Pebble::start(free_port(), 0));
    let ca = TestCa::new("test CA");
    let fallback = ca.server(&["gw.test"], KeyKind::EcdsaP256);
    let yaml = format!(
        "listeners:
  - {{name: http, bind: \"127.0.0.1:0\"}}
  - {{name: https, bind: \"127.0.0.1:0\", tls: true}}
admin: {{bind: \"127.0.0.1:0\", token: acme-test-token-0123456789}}
tls:
  default_certificate: {{cert: fallback.pem, key: fallback.key}}
  acme: {{directory: {dir}, directory_ca: {ca}, retry_base: 1s, retry_max: 10s}}
organizations:
{org}",
        dir = pebble.directory_url,
        ca = pebble.ca_pem.display(),
        org = org("shop", &["gw.test"], Some("acme: {email: ops@gw.test}")),
    );
    let gw = start(
        &yaml,
        &[("fallback.pem", &fallback.cert), ("fallback.key", &fallback.key)],
    );
    let (https, admin) = (gw.addrs()[1], gw.addrs()[2]);
    assert!(
        wait_log(&gw, &["ACME order failed", "failures=2"], 1, Duration::from_secs(30)).await,
        "{}\n--- pebble ---\n{}",
        dump(&gw),
        pebble.log()
    );
    let failed = gw.log_lines_with("ACME order failed");
    assert!(
        failed[0].contains("retry_in=1s") && failed[1].contains("retry_in=2s"),
        "{failed:#?}"
    );
    assert!(
        failed[0].contains("connection refused") || failed[0].contains("Connection refused"),
        "{failed:#?}"
    );
    let status = common_ops::get_with(
        &test_support::client(),
        &format!("http://{admin}/api/certificates"),
        &[("authorization", "Bearer acme-test-token-0123456789")],
    )
    .await
    .json();
    let acme = &status["acme"][0];
    assert!(matches!(acme["state"].as_str(), Some("failed" | "issuing")), "{status}");
    assert!(acme["failures"].as_u64().unwrap_or(0) >= 2, "{status}");
    let metrics = common_ops::get_with(
        &test_support::client(),
        &format!("http://{admin}/metrics"),
        &[("authorization", "Bearer acme-test-token-0123456789")],
    )
    .await
    .text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("cratopus_acme_consecutive_failures{"))
        .unwrap_or_else(|| panic!("no ACME failure gauge:\n{metrics}"));
    assert!(line.contains("names=\"gw.test\""), "{line}");
    assert!(
        metrics.contains("cratopus_certificate_expiry_timestamp_seconds{org=\"\",names=\"default\",source=\"file\"}"),
        "{metrics}"
    );
    // Meanwhile the name is served with the certificate it has.
    let (hs, r) = https_get(https, "gw.test", "gw.test", "/", &ClientOpts::trusting(&[&ca.cert_pem]))
        .await
        .expect("served");
    assert_eq!(hs.leaf, der_of(&fallback.cert));
    assert_eq!(r.status, 200);
}

/// `auth.mtls`: the connection's client certificate names the consumer, by common name, by a
/// subject alternative name or by its SHA-256 fingerprint (as `openssl x509 -fingerprint`
/// prints it). The consumer reaches the upstream as `X-Consumer-Id` and authorization sees it; a
/// verified certificate that names nobody, or none at all, gets 401.
#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_name_consumers() {
    let ca = TestCa::new("server CA");
    let partners = TestCa::new("partner CA");
    let alice = partners.client("alice", &["URI:spiffe://partner.test/alice"]);
    let bob = partners.client("bob", &["DNS:bob.partner.test"]);
    let carol = partners.client("carol", &[]);
    let dave = partners.client("dave", &["DNS:dave.partner.test"]);
    let server = ca.server(&["api.partner.test"], KeyKind::EcdsaP256);
    let mut openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    std::io::Write::write_all(&mut openssl.stdin.take().expect("stdin"), carol.cert.as_bytes()).expect("write");
    let out = openssl.wait_with_output().expect("openssl");
    let printed = String::from_utf8_lossy(&out.stdout);
    // `sha256 Fingerprint=AB:CD:…` (older versions say `SHA256 Fingerprint=`).
    let fingerprint = printed.trim().rsplit('=').next().unwrap_or_default().to_string();
    assert_eq!(fingerprint.len(), 95, "openssl printed {printed:?}");

    let yaml = format!(
        "{}organizations:
  - name: partners
    domains: [api.partner.test]
    tls:
      cert: server.pem
      key: server.key
      client_auth: {{ca: partners.pem, mode: optional}}
    consumers:
      - {{id: alice, certificates: [\"uri:spiffe://partner.test/alice\"]}}
      - {{id: bob, certificates: [\"DNS:BOB.partner.test\"]}}
      - {{id: carol, certificates: [\"sha256:{fingerprint}\"]}}
    upstreams:
      m: {{targets: [\"mirror://\"]}}
    routes:
      - {{path: /api, upstream: m, auth: {{mtls: {{}}}}}}
      - {{path: /admin, upstream: m, auth: {{mtls: {{}}}}, authorize: {{consumers: [alice]}}}}
      - {{path: /open, upstream: m}}
",
        https_listener()
    );
    let gw = start(
        &yaml,
        &[
            ("server.pem", &server.cert),
            ("server.key", &server.key),
            ("partners.pem", &partners.cert_pem),
        ],
    );
    let https = gw.addrs()[0];
    let anonymous = ClientOpts::trusting(&[&ca.cert_pem]);
    let with = |who: &test_support::tls::Pem| {
        let mut o = anonymous.clone();
        o.client_cert = Some(who.clone());
        o
    };
    let call = |path: &'static str, opts: ClientOpts| async move {
        https_get(https, "api.partner.test", "api.partner.test", path, &opts)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .1
    };

    for (who, pem) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        let r = call("/api", with(pem)).await;
        assert_eq!(r.status, 200, "{who}: {}{}", r.text(), dump(&gw));
        assert_eq!(r.json()["headers"]["x-consumer-id"], who, "{}", r.text());
    }
    let r = call("/api", with(&dave)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unknown_client_certificate");
    assert_eq!(r.header("www-authenticate"), Some("MutualTLS realm=\"cratopus\""));
    let r = call("/api", anonymous.clone()).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "missing_credentials");

    // Authorization sees the consumer the certificate named.
    assert_eq!(call("/admin", with(&alice)).await.status, 200);
    let r = call("/admin", with(&bob)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A route without auth.mtls does not care.
    assert_eq!(call("/open", anonymous.clone()).await.status, 200);
    let r = call("/open", with(&dave)).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"]["x-consumer-id"].is_null(), "{}", r.text());
}

/// Over HTTPS as over plain HTTP, a request head that stalls gets a 408 with the JSON body
/// (encrypted like any answer) before the connection closes.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_head_over_https_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new("CA");
    let server = ca.server(&["slow.test"], KeyKind::EcdsaP256);
    let yaml = format!(
        "{}limits:\n  header_read_timeout: 1s\norganizations:\n{}",
        https_listener(),
        org("slow", &["slow.test"], Some("cert: server.pem\nkey: server.key"))
    );
    let gw = start(&yaml, &[("server.pem", &server.cert), ("server.key", &server.key)]);
    let mut opts = ClientOpts::trusting(&[&ca.cert_pem]);
    opts.alpn = vec![b"http/1.1".to_vec()];
    let (mut tls, _) = test_support::tls::handshake(gw.addrs()[0], "slow.test", &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", dump(&gw)));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: slow.test\r\nX-A: 1\r\n")
        .await
        .expect("write");
    // ... and nothing more.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the gateway kept a stalled request open{}", dump(&gw));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected a 408 before the close, got {text:?}"
    );
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["error"]["code"], "request_timeout");
}
