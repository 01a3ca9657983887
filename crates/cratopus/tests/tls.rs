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
    // A certificate for one domain wins over the organization-wide ones.
    let (hs, _) = https_get(addr, "eu.shop.test", "eu.shop.test", "/", &opts)
        .await
        .expect("eu");
    assert_eq!(hs.leaf, der_of(&eu.cert));

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
        gw.logs().iter().any(|l| l.contains("acme.pem")),
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
    test_support::dead_port()
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
