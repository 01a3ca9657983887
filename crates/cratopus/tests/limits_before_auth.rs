//! Limits that guard authentication, over real sockets with real API keys and real JWTs
//! (signed at test time with an EC key made for the test): a rate limit placed before
//! authentication counts bad credentials, a client locked out by failed authentications gets
//! 429 even with good ones while other clients get in, consumer tiers get their own limits,
//! and on two gateway processes sharing a real redis-server the failures counted on one node
//! lock the client out on the other.
//!
//! Clients are told apart by `X-Forwarded-For` from a trusted proxy (the test itself). Every
//! window is an hour, so nothing replenishes while a test runs on a loaded machine.

mod common_ops;

use common_ops::{dump, get_with, start_gateway, wait_log};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_support::redis::RedisServer;
use test_support::{Gateway, Reply};

const FREE_KEY: &str = "free-key-0123456789abcdef";
const GOLD_KEY: &str = "gold-key-0123456789abcdef";
const PLAIN_KEY: &str = "plain-key-0123456789abcdef";

/// `cratopus hash-key`, as an operator makes a consumer's key hash.
fn hash(key: &str) -> String {
    let out = std::process::Command::new(common_ops::BIN)
        .args(["hash-key", key])
        .output()
        .expect("cratopus hash-key");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

fn indent(pem: &str, n: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}", " ".repeat(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An organization with three consumers (tiers free and gold, and one without a tier), API
/// keys on every route unless a route says otherwise, and `body` (its routes and policies).
/// `/jwt` takes ES256 tokens verified with `jwt_pub`.
fn org(jwt_pub: &str, body: &str) -> String {
    format!(
        "
  - name: shop
    consumers:
      - id: hobbyist
        tier: free
        keys: [\"{}\"]
      - id: partner
        tier: gold
        keys: [\"{}\"]
      - id: plain
        keys: [\"{}\"]
    upstreams:
      m:
        targets: [\"mirror://\"]
    auth:
      api_key: {{}}
{body}      - name: jwt
        path: /jwt
        upstream: m
        auth:
          jwt:
            public_key: |
{}
            audience: [shop-api]
",
        hash(FREE_KEY),
        hash(GOLD_KEY),
        hash(PLAIN_KEY),
        indent(jwt_pub, 14),
    )
}

/// (private PEM to sign with, public PEM for the gateway), made now.
fn keypair() -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key generation");
    (kp.serialize_pem(), kp.public_key_pem())
}

fn token(private_pem: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() + 600;
    let claims = json!({"sub": "user-7", "aud": "shop-api", "exp": exp});
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("signing key");
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("token")
}

const TRUST_LOCAL: &str = "trusted_proxies: [127.0.0.1/32]\n";

fn gateway(orgs: &str, extra: &str) -> Gateway {
    start_gateway(&test_support::gateway_yaml(orgs, &format!("{TRUST_LOCAL}{extra}")), &[])
}

/// A GET from client address `client` with an API key (or none).
async fn with_key(gw: &Gateway, path: &str, client: &str, key: Option<&str>) -> Reply {
    let mut h = vec![("x-forwarded-for", client)];
    h.extend(key.map(|k| ("x-api-key", k)));
    get_with(&test_support::client(), &gw.url(path), &h).await
}

async fn with_token(gw: &Gateway, client: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    let h = [("x-forwarded-for", client), ("authorization", bearer.as_str())];
    get_with(&test_support::client(), &gw.url("/jwt"), &h).await
}

fn code(r: &Reply) -> String {
    r.json()["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_count_against_a_limit_placed_before_authentication() {
    let (_, jwt_pub) = keypair();
    let limit = "{rate: 3, per: 1h}";
    let gw = gateway(
        &org(
            &jwt_pub,
            &format!(
                "    routes:
      - name: before
        path: /before
        upstream: m
        rate_limit: {{before_auth: true, limits: [{limit}]}}
      - name: after
        path: /after
        upstream: m
        rate_limit: {{limits: [{limit}]}}
"
            ),
        ),
        "",
    );
    for path in ["/before", "/after"] {
        for n in 0..3 {
            let r = with_key(&gw, path, "192.0.2.1", Some("a-guessed-key")).await;
            assert_eq!(r.status, 401, "{path}: bad key {n}{}", dump(&gw));
        }
    }
    // Before authentication the three bad keys used the limit up: the good key is refused.
    let r = with_key(&gw, "/before", "192.0.2.1", Some(GOLD_KEY)).await;
    assert_eq!(r.status, 429, "{}", dump(&gw));
    assert_eq!(code(&r), "rate_limited");
    assert!(
        r.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1))
    );
    // After authentication, refused requests never counted.
    for n in 0..3 {
        let r = with_key(&gw, "/after", "192.0.2.1", Some(GOLD_KEY)).await;
        assert_eq!(r.status, 200, "good key {n} after three bad ones{}", dump(&gw));
    }
    assert_eq!(with_key(&gw, "/after", "192.0.2.1", Some(GOLD_KEY)).await.status, 429);
    // The limit is per client address: another client has its own.
    assert_eq!(with_key(&gw, "/before", "192.0.2.2", Some(GOLD_KEY)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_locked_out_by_failed_attempts_gets_429_even_with_good_credentials() {
    let (jwt_priv, jwt_pub) = keypair();
    let (forger, _) = keypair();
    let gw = gateway(
        &org(
            &jwt_pub,
            "    auth_failures: {limit: 3, window: 1h, block_for: 1h}
    routes:
      - name: orders
        path: /orders
        upstream: m
      - name: reports
        path: /reports
        upstream: m
",
        ),
        "",
    );
    let (attacker, other, forging) = ("192.0.2.10", "192.0.2.20", "192.0.2.30");
    assert_eq!(with_key(&gw, "/orders", attacker, Some(PLAIN_KEY)).await.status, 200);
    for n in 0..3 {
        let r = with_key(&gw, "/orders", attacker, Some(&format!("guess-{n}"))).await;
        assert_eq!(r.status, 401, "guess {n}{}", dump(&gw));
    }
    // Locked out on every route of the organization, before the key is looked at.
    for path in ["/orders", "/reports"] {
        let r = with_key(&gw, path, attacker, Some(PLAIN_KEY)).await;
        assert_eq!(r.status, 429, "{path}: a good key while locked out{}", dump(&gw));
        assert_eq!(code(&r), "rate_limited");
        let retry: u64 = r.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((3000..=3600).contains(&retry), "Retry-After {retry}: block_for is 1h");
    }
    assert!(
        wait_log(&gw, &["locked out", attacker], 1, Duration::from_secs(10)).await,
        "the lockout is logged once{}",
        dump(&gw)
    );
    // Another client is not affected; requests without credentials guess nothing and do not
    // count.
    for _ in 0..5 {
        assert_eq!(with_key(&gw, "/orders", other, None).await.status, 401);
    }
    assert_eq!(with_key(&gw, "/orders", other, Some(PLAIN_KEY)).await.status, 200);

    // JWTs: tokens signed with the wrong key count as failures; then a valid token is refused.
    let forged = token(&forger);
    for n in 0..3 {
        let r = with_token(&gw, forging, &forged).await;
        assert_eq!(r.status, 401, "forged token {n}{}", dump(&gw));
        assert_eq!(code(&r), "invalid_token");
    }
    let r = with_token(&gw, forging, &token(&jwt_priv)).await;
    assert_eq!(r.status, 429, "a valid token while locked out{}", dump(&gw));
    assert_eq!(with_token(&gw, other, &token(&jwt_priv)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_block_for_one_attempt_comes_back_per_window_share() {
    let (_, jwt_pub) = keypair();
    let gw = gateway(
        &org(
            &jwt_pub,
            "    routes:
      - name: login
        path: /login
        upstream: m
        auth_failures: {limit: 2, window: 1h}
      - name: other
        path: /other
        upstream: m
",
        ),
        "",
    );
    for _ in 0..2 {
        assert_eq!(with_key(&gw, "/login", "192.0.2.1", Some("guess")).await.status, 401);
    }
    let r = with_key(&gw, "/login", "192.0.2.1", Some(PLAIN_KEY)).await;
    assert_eq!(r.status, 429, "{}", dump(&gw));
    // One failure comes back every 1h / 2 = 30 min.
    let retry: u64 = r.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!((1500..=1800).contains(&retry), "Retry-After {retry}");
    // A route's own auth_failures covers that route alone.
    assert_eq!(with_key(&gw, "/other", "192.0.2.1", Some(PLAIN_KEY)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tiers_give_free_and_gold_consumers_different_limits() {
    let (_, jwt_pub) = keypair();
    let gw = gateway(
        &org(
            &jwt_pub,
            "    routes:
      - name: data
        path: /data
        upstream: m
        rate_limit:
          key: consumer
          tiers: {free: 2/h, gold: [{rate: 5, per: 1h}]}
          limits: [{rate: 1, per: 1h}]
",
        ),
        "",
    );
    let mut seen = Vec::new();
    for key in [FREE_KEY, GOLD_KEY, PLAIN_KEY] {
        let mut ok = 0;
        let mut limit_header = String::new();
        loop {
            let r = with_key(&gw, "/data", "192.0.2.1", Some(key)).await;
            if r.status != 200 {
                assert_eq!(r.status, 429, "{}", dump(&gw));
                break;
            }
            ok += 1;
            limit_header = r.header("ratelimit-limit").unwrap_or_default().to_string();
            assert!(ok <= 10, "{key}: never limited{}", dump(&gw));
        }
        seen.push((ok, limit_header));
    }
    assert_eq!(
        seen,
        [(2, "2".to_string()), (5, "5".to_string()), (1, "1".to_string())],
        "free, gold, and the default for a consumer without a tier"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_counted_on_one_node_lock_the_client_out_on_the_other() {
    let redis = RedisServer::start();
    let (_, jwt_pub) = keypair();
    let orgs = org(
        &jwt_pub,
        "    auth_failures: {limit: 4, window: 1h, block_for: 1h}
    routes:
      - name: orders
        path: /orders
        upstream: m
",
    );
    let extra = format!(
        "state:\n  redis:\n    urls: [\"{}\"]\n    timeout: 2s\n    on_failure: closed\n",
        redis.url()
    );
    let (a, b) = (gateway(&orgs, &extra), gateway(&orgs, &extra));
    let attacker = "192.0.2.66";
    // Two failures on each node: four in all, counted in Redis.
    for (n, gw) in [&a, &b, &a, &b].into_iter().enumerate() {
        let r = with_key(gw, "/orders", attacker, Some(&format!("guess-{n}"))).await;
        assert_eq!(r.status, 401, "guess {n}{}", dump(gw));
    }
    for gw in [&a, &b] {
        let r = with_key(gw, "/orders", attacker, Some(PLAIN_KEY)).await;
        assert_eq!(r.status, 429, "locked out on both nodes{}", dump(gw));
        assert_eq!(with_key(gw, "/orders", "192.0.2.67", Some(PLAIN_KEY)).await.status, 200);
    }
    let lockout = format!("cratopus:rl:{{afban:shop/org|{attacker}}}:0");
    let ttl = redis.command(&["PTTL", &lockout]).expect("PTTL").int().unwrap_or(-2);
    assert!(ttl > 3_000_000, "the lockout lives in Redis for block_for: PTTL {ttl}");
}
