//! Identity and access over real sockets: API keys of consumers, JWTs signed at test time with
//! real RSA, EC and Ed25519 keys (inline, and from a JWKS that rotates, found through OIDC
//! discovery), refused tokens of every kind, authorization, IP rules behind trusted proxies,
//! CORS, request validation and zero-trust forwarding. The upstream is the mirror, so the tests
//! see exactly what would reach a backend.

mod common_ops;

use common_ops::{dump, start_gateway};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_support::http::{Request, Response};
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, Reply, send};

const KEY: &str = "k-0123456789abcdef-consumer-one";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn gateway(org: &str, extra: &str) -> Gateway {
    start_gateway(&test_support::gateway_yaml(&format!("\n  - {org}"), extra), &[])
}

async fn call(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut b = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(
        &test_support::client(),
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
    )
    .await
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(gw, "GET", path, headers, "").await
}

/// A key pair made now: (private key PEM for signing, public key PEM for the gateway).
fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(alg).expect("key generation");
    (kp.serialize_pem(), kp.public_key_pem())
}

fn sign(alg: Algorithm, private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(private_pem.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
        _ => Ok(EncodingKey::from_secret(private_pem.as_bytes())),
    }
    .expect("signing key");
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &key).expect("token")
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn indent(pem: &str, n: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}", " ".repeat(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_identify_consumers_and_never_reach_the_upstream() {
    let hash = cratopus_hash(KEY);
    let dir = std::env::temp_dir().join(format!("cratopus-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("traffic.log");
    let gw = gateway(
        &format!(
            "name: shop
    consumers:
      - id: mobile-app
        tier: gold
        scopes: [orders:read]
        keys: [\"{hash}\"]
      - id: partner
        keys:
          - {{hash: \"{}\", routes: [reports]}}
    upstreams:
      m:
        targets: [\"mirror://\"]
    auth:
      api_key: {{}}
    routes:
      - name: orders
        path: /orders
        upstream: m
      - name: reports
        path: /reports
        upstream: m
      - name: by-query
        path: /q
        upstream: m
        auth:
          api_key: {{query: api_key}}
      - name: public
        path: /public
        upstream: m
        auth: {{}}
",
            cratopus_hash("partner-key-0123456789")
        ),
        &format!("traffic_log:\n  path: {}\n", log.display()),
    );

    let r = get(&gw, "/orders", &[("x-api-key", KEY), ("x-consumer-id", "forged")]).await;
    assert_eq!(r.status, 200, "{}", dump(&gw));
    let echo = r.json();
    assert!(
        echo["headers"].get("x-api-key").is_none(),
        "the key is stripped: {echo}"
    );
    assert_eq!(echo["headers"]["x-consumer-id"], "mobile-app");

    let r = get(&gw, "/orders", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "missing_credentials");
    assert!(r.header("www-authenticate").is_some_and(|v| v.contains("x-api-key")));

    let r = get(&gw, "/orders", &[("x-api-key", "wrong-key-0000000000000")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");

    // A key limited to one route.
    assert_eq!(
        get(&gw, "/reports", &[("x-api-key", "partner-key-0123456789")])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&gw, "/orders", &[("x-api-key", "partner-key-0123456789")])
            .await
            .status,
        401
    );

    // In the query string: taken out, the rest kept.
    let r = get(&gw, &format!("/q?a=1&api_key={KEY}&b=2"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["args"], json!({"a": "1", "b": "2"}));
    // `auth: {}` opens a route.
    assert_eq!(get(&gw, "/public", &[]).await.status, 200);

    // The traffic log names the consumer and the reason, never the key.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("/public") {
            break; // the last request's line: the lines are written in order
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!text.contains(KEY) && !text.contains("partner-key"), "{text}");
    assert!(text.contains("\"consumer\":\"mobile-app\""), "{text}");
    assert!(text.contains("\"error\":\"invalid_api_key\""), "{text}");
    assert!(text.contains("\"error\":\"missing_credentials\""), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

fn cratopus_hash(key: &str) -> String {
    let out = std::process::Command::new(common_ops::BIN)
        .args(["hash-key", key])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_with_real_keys_are_verified_and_bad_ones_refused() {
    let (rsa_priv, rsa_pub) = keypair(&rcgen::PKCS_RSA_SHA256);
    let (ec_priv, ec_pub) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (ed_priv, ed_pub) = keypair(&rcgen::PKCS_ED25519);
    let route = |name: &str, pem: &str| {
        format!(
            "      - name: {name}
        path: /{name}
        upstream: m
        auth:
          jwt:
            public_key: |
{}
            issuer: https://id.test
            audience: [shop-api]
            forward_claims: {{sub: X-User-Id}}
",
            indent(pem, 14)
        )
    };
    let gw = gateway(
        &format!(
            "name: shop
    upstreams:
      m:
        targets: [\"mirror://\"]
    routes:
{}{}{}      - name: hs
        path: /hs
        upstream: m
        auth:
          jwt:
            secret: this-is-a-test-secret-of-32-bytes!!
            audience: [shop-api]
        authorize:
          scopes: [orders:read]
",
            route("rsa", &rsa_pub),
            route("ec", &ec_pub),
            route("ed", &ed_pub)
        ),
        "",
    );
    let good = json!({"sub": "user-7", "iss": "https://id.test", "aud": "shop-api", "exp": now() + 300, "scope": "orders:read"});
    for (path, alg, key) in [
        ("/rsa", Algorithm::RS256, &rsa_priv),
        ("/ec", Algorithm::ES256, &ec_priv),
        ("/ed", Algorithm::EdDSA, &ed_priv),
    ] {
        let t = sign(alg, key, None, &good);
        let r = get(&gw, path, &[("authorization", &bearer(&t))]).await;
        assert_eq!(r.status, 200, "{path}: {} {}", r.text(), dump(&gw));
        assert_eq!(r.json()["headers"]["x-user-id"], "user-7", "claim forwarded");
    }
    let hs = sign(Algorithm::HS256, "this-is-a-test-secret-of-32-bytes!!", None, &good);
    assert_eq!(get(&gw, "/hs", &[("authorization", &bearer(&hs))]).await.status, 200);

    let refused = |path: &'static str, token: String, why: &'static str| {
        let gw = &gw;
        async move {
            let r = get(gw, path, &[("authorization", &bearer(&token))]).await;
            assert_eq!(r.status, 401, "{why}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "invalid_token", "{why}");
            assert!(
                r.json()["error"]["message"].as_str().unwrap().contains(why),
                "{why}: {}",
                r.text()
            );
            assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
        }
    };
    let mut c = good.clone();
    c["exp"] = json!(now() - 120);
    refused("/rsa", sign(Algorithm::RS256, &rsa_priv, None, &c), "expired").await;
    let mut c = good.clone();
    c["aud"] = json!("other-api");
    refused("/rsa", sign(Algorithm::RS256, &rsa_priv, None, &c), "wrong_audience").await;
    let mut c = good.clone();
    c["iss"] = json!("https://evil.test");
    refused("/ec", sign(Algorithm::ES256, &ec_priv, None, &c), "wrong_issuer").await;
    let mut c = good.clone();
    c["nbf"] = json!(now() + 3600);
    refused("/ec", sign(Algorithm::ES256, &ec_priv, None, &c), "not_yet_valid").await;
    // Signed by another key of the same kind.
    let (other_priv, _) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    refused("/ec", sign(Algorithm::ES256, &other_priv, None, &good), "bad_signature").await;
    // A forged token: the payload changed after signing.
    let t = sign(Algorithm::RS256, &rsa_priv, None, &good);
    let mut parts: Vec<&str> = t.split('.').collect();
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"sub": "admin", "iss": "https://id.test", "aud": "shop-api", "exp": now() + 300}).to_string());
    parts[1] = &forged;
    refused("/rsa", parts.join("."), "bad_signature").await;
    // `alg: none`, unsigned.
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(good.clone()));
    refused("/rsa", none, "malformed").await;
    // HS256 signed with the RSA public key as the secret: algorithm confusion.
    let confused = sign(Algorithm::HS256, &rsa_pub, None, &good);
    refused("/rsa", confused, "algorithm_not_allowed").await;
    // No token at all, and authorization after authentication.
    let r = get(&gw, "/rsa", &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (401, json!("missing_credentials"))
    );
    let mut c = good.clone();
    c["scope"] = json!("orders:write");
    let t = sign(Algorithm::HS256, "this-is-a-test-secret-of-32-bytes!!", None, &c);
    let r = get(&gw, "/hs", &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "forbidden");
}

/// A JWKS and OIDC discovery server whose keys the test can rotate; counts JWKS fetches.
struct IdP {
    backend: Backend,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<Mutex<usize>>,
}

async fn idp() -> IdP {
    let jwks = Arc::new(Mutex::new(json!({"keys": []})));
    let fetches = Arc::new(Mutex::new(0usize));
    let (j, f) = (jwks.clone(), fetches.clone());
    let backend = Backend::start(move |req: Request<_>, _| {
        let (j, f) = (j.clone(), f.clone());
        async move {
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = match req.uri().path() {
                "/.well-known/openid-configuration" => {
                    json!({"issuer": format!("http://{host}"), "jwks_uri": format!("http://{host}/jwks")})
                }
                "/jwks" => {
                    *f.lock().unwrap() += 1;
                    j.lock().unwrap().clone()
                }
                _ => return Response::builder().status(404).body(Full::new(Bytes::new())).unwrap(),
            };
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        }
    })
    .await;
    IdP { backend, jwks, fetches }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_found_by_oidc_discovery_rotates_and_survives_its_server_going_away() {
    let idp = idp().await;
    let (a_priv, a_pub) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (b_priv, b_pub) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    *idp.jwks.lock().unwrap() = json!({"keys": [test_support::ec_jwk(&a_pub, "a")]});
    let issuer = format!("http://{}", idp.backend.addr);
    let gw = gateway(
        &format!(
            "name: shop
    upstreams:
      m:
        targets: [\"mirror://\"]
    auth:
      jwt:
        oidc_issuer: {issuer}
        jwks_min_refresh: 30s
    routes:
      - path: /x
        upstream: m
"
        ),
        "",
    );
    let claims = json!({"sub": "u", "iss": issuer, "exp": now() + 300});
    let ta = sign(Algorithm::ES256, &a_priv, Some("a"), &claims);
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&ta))]).await.status,
        200,
        "{}",
        dump(&gw)
    );

    // The provider rotates to key b: an unknown kid makes the gateway fetch again.
    *idp.jwks.lock().unwrap() = json!({"keys": [test_support::ec_jwk(&b_pub, "b")]});
    let tb = sign(Algorithm::ES256, &b_priv, Some("b"), &claims);
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&tb))]).await.status,
        200,
        "{}",
        dump(&gw)
    );

    // Made-up kids do not turn into a fetch per request.
    let before = *idp.fetches.lock().unwrap();
    for i in 0..20 {
        let t = sign(Algorithm::ES256, &b_priv, Some(&format!("junk-{i}")), &claims);
        assert_eq!(get(&gw, "/x", &[("authorization", &bearer(&t))]).await.status, 401);
    }
    let after = *idp.fetches.lock().unwrap();
    assert!(after - before <= 1, "{} fetches for 20 unknown kids", after - before);

    // The provider goes away: the cached key keeps working.
    idp.backend.stop();
    assert_eq!(get(&gw, "/x", &[("authorization", &bearer(&tb))]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_rules_use_the_client_behind_trusted_proxies_and_hidden_routes_say_404() {
    let gw = gateway(
        "name: shop
    upstreams:
      m:
        targets: [\"mirror://\"]
    ip:
      deny: [203.0.113.0/24]
    routes:
      - path: /open
        upstream: m
      - path: /office
        upstream: m
        ip:
          allow: [198.51.100.0/24]
      - path: /secret
        upstream: m
        auth:
          api_key: {}
        authorize:
          hide: true
",
        "trusted_proxies: [127.0.0.1/32]\ntraffic_log:\n  path: \"-\"\n",
    );
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(get(&gw, "/open", &xff("192.0.2.1")).await.status, 200);
    let r = get(&gw, "/open", &xff("203.0.113.5")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "ip_denied");
    assert_eq!(get(&gw, "/office", &xff("198.51.100.20")).await.status, 200);
    assert_eq!(get(&gw, "/office", &xff("192.0.2.1")).await.status, 403);
    assert_eq!(
        get(&gw, "/office", &[]).await.status,
        403,
        "the proxy itself is not in the office"
    );
    let r = get(&gw, "/secret", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "no_route");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_validation_and_zero_trust_forwarding() {
    let gw = gateway(
        "name: shop
    upstreams:
      m:
        targets: [\"mirror://\"]
    cors:
      allow_origins: [\"https://app.example.com\", \"https://*.shop.test\"]
      allow_credentials: true
      max_age: 10m
    routes:
      - path: /orders
        methods: [POST]
        upstream: m
        validate:
          required_headers: [X-Tenant]
          body_schema:
            type: object
            required: [item, qty]
            properties:
              item: {type: string}
              qty: {type: integer, minimum: 1}
      - path: /items
        methods: [GET]
        upstream: m
        forward:
          input_headers: [X-Tenant]
          input_query_strings: [page]
",
        "",
    );
    // Preflight answered by the gateway.
    let r = call(
        &gw,
        "OPTIONS",
        "/orders",
        &[
            ("origin", "https://eu.shop.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, x-tenant"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://eu.shop.test"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let r = call(
        &gw,
        "OPTIONS",
        "/orders",
        &[
            ("origin", "https://evil-shop.test"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    // Actual responses carry the headers and Vary: Origin, errors included.
    let r = call(&gw, "POST", "/orders", &[("origin", "https://app.example.com")], "{}").await;
    assert_eq!(r.status, 400, "missing X-Tenant: {}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")));

    // Validation: the violated paths are in the 400.
    let h = [("x-tenant", "t1"), ("content-type", "application/json")];
    let r = call(&gw, "POST", "/orders", &h, r#"{"item": 5, "qty": 0}"#).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "validation_failed");
    let paths: Vec<&str> = v["error"]["details"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["path"].as_str()).collect())
        .unwrap_or_default();
    assert!(paths.contains(&"/item") && paths.contains(&"/qty"), "{v}");
    let r = call(&gw, "POST", "/orders", &h, r#"{"item": "tea", "qty": 2}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["body"],
        r#"{"item": "tea", "qty": 2}"#,
        "the checked body is forwarded as it came"
    );

    // Zero trust: only the listed header and query parameter reach the upstream.
    let r = get(
        &gw,
        "/items?page=2&debug=1",
        &[("x-tenant", "t1"), ("x-internal", "1"), ("cookie", "s=1")],
    )
    .await;
    let echo = r.json();
    assert_eq!(echo["args"], json!({"page": "2"}));
    assert_eq!(echo["headers"]["x-tenant"], "t1");
    assert!(
        echo["headers"].get("x-internal").is_none() && echo["headers"].get("cookie").is_none(),
        "{echo}"
    );
    assert!(echo["headers"].get("x-request-id").is_some(), "gateway headers survive");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_quotas_count_per_consumer_and_per_claim() {
    let (k1, k2) = ("consumer-one-key-0123456789", "consumer-two-key-0123456789");
    let gw = gateway(
        &format!(
            "name: shop
    consumers:
      - {{id: one, keys: [\"{}\"]}}
      - {{id: two, keys: [\"{}\"]}}
    upstreams:
      m:
        targets: [\"mirror://\"]
    routes:
      - path: /by-consumer
        upstream: m
        auth: {{api_key: {{}}}}
        rate_limit:
          limits: [{{rate: 2, per: 1m}}]
          key: consumer
      - path: /by-claim
        upstream: m
        auth:
          jwt: {{secret: this-is-a-test-secret-of-32-bytes!!}}
        quota: {{limit: 1, per: day, key: \"claim:tenant\"}}
",
            cratopus_hash(k1),
            cratopus_hash(k2)
        ),
        "",
    );
    let mut got = Vec::new();
    for k in [k1, k1, k1, k2, k2, k2] {
        got.push(get(&gw, "/by-consumer", &[("x-api-key", k)]).await.status);
    }
    assert_eq!(got, [200, 200, 429, 200, 200, 429], "{}", dump(&gw));

    let token = |tenant: &str| {
        bearer(&sign(
            Algorithm::HS256,
            "this-is-a-test-secret-of-32-bytes!!",
            None,
            &json!({"sub": "u", "tenant": tenant, "exp": now() + 300}),
        ))
    };
    let mut got = Vec::new();
    for t in ["acme", "acme", "globex"] {
        got.push(get(&gw, "/by-claim", &[("authorization", &token(t))]).await.status);
    }
    assert_eq!(got, [200, 429, 200]);
}
