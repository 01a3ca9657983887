//! Property tests over the parsing of what clients send: tokens, API-key carriers, forwarded
//! addresses and CORS headers. Arbitrary input must never panic and never authenticate; a
//! valid token changed anywhere must be refused. (proptest runs 256 cases per property by
//! default; `PROPTEST_CASES` raises it for a longer fuzzing run.)

use cratopus_config::http_policies::CorsConfig;
use cratopus_config::{ApiKeyAuthConfig, AuthConfig, ConsumerConfig, JwtAuthConfig, KeyConfig};
use cratopus_policies::auth::{Authenticator, Consumers, hash_key};
use cratopus_policies::cors::Cors;
use cratopus_policies::ip_rules::{Cidr, client_ip};
use http::{HeaderMap, HeaderValue, Method, Request};
use proptest::prelude::*;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

const SECRET: &str = "this-is-a-test-secret-of-32-bytes!!";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn authenticator(rt: &tokio::runtime::Runtime) -> Authenticator {
    let consumers = Consumers::compile(&[ConsumerConfig {
        id: "c".into(),
        tier: None,
        scopes: vec![],
        roles: vec![],
        metadata: Default::default(),
        keys: vec![KeyConfig {
            hash: hash_key("the-one-real-key-0123456789"),
            routes: vec![],
        }],
        jwt_subjects: vec![],
        certificates: vec![],
    }])
    .unwrap();
    let cfg = AuthConfig {
        api_key: Some(ApiKeyAuthConfig {
            header: None,
            query: None,
        }),
        jwt: Some(JwtAuthConfig {
            secret: Some(SECRET.into()),
            leeway: cratopus_config::Dur::secs(0),
            ..Default::default()
        }),
        mtls: None,
    };
    let _ = rt;
    Authenticator::compile(&cfg, Arc::new(consumers), Path::new(".")).unwrap()
}

fn valid_token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "u", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Authenticates a GET with the given headers and query.
fn attempt(rt: &tokio::runtime::Runtime, a: &Authenticator, headers: &[(&str, &[u8])], uri: &str) -> bool {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            b = b.header(*k, v);
        }
    }
    let Ok(req) = b.body(()) else { return false };
    let (mut parts, ()) = req.into_parts();
    rt.block_on(a.authenticate("r", &mut parts, None)).is_ok()
}

proptest! {
    #[test]
    fn arbitrary_bearer_tokens_never_authenticate(token in ".{0,300}") {
        let rt = runtime();
        let a = authenticator(&rt);
        let value = format!("Bearer {token}");
        prop_assert!(!attempt(&rt, &a, &[("authorization", value.as_bytes())], "/"));
    }

    #[test]
    fn a_valid_token_changed_anywhere_is_refused(pos in 0usize..400, byte in any::<u8>()) {
        let rt = runtime();
        let a = authenticator(&rt);
        let token = valid_token();
        let good = format!("Bearer {token}");
        prop_assert!(attempt(&rt, &a, &[("authorization", good.as_bytes())], "/"));
        let mut bytes = token.into_bytes();
        let i = pos % bytes.len();
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&bytes);
        // Base64url has no padding, so some changes of the last character's low bits decode
        // to the same signature bytes; those tokens are the same token.
        let same_signature = i == bytes.len() - 1;
        prop_assume!(!same_signature);
        prop_assert!(!attempt(&rt, &a, &[("authorization", &value)], "/"));
    }

    #[test]
    fn arbitrary_api_keys_and_queries_never_authenticate(key in proptest::collection::vec(any::<u8>(), 0..80), query in "[ -~]{0,120}") {
        let rt = runtime();
        let a = authenticator(&rt);
        prop_assert!(!attempt(&rt, &a, &[("x-api-key", &key)], "/"));
        let uri = format!("/p?{}", query.replace(['#', ' '], ""));
        prop_assert!(!attempt(&rt, &a, &[], &uri));
    }

    #[test]
    fn forwarded_for_parsing_never_panics_and_picks_a_listed_address(xff in "[0-9a-f:., ]{0,80}") {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert("x-forwarded-for", v);
        }
        let got = client_ip(peer, &h, &trusted);
        prop_assert!(got == peer || xff.split(',').any(|p| p.trim().parse::<IpAddr>() == Ok(got)));
    }

    #[test]
    fn cors_preflight_of_arbitrary_origins_never_panics(origin in "[ -~]{0,100}", method in "[A-Z]{0,10}", hdrs in "[ -~]{0,100}") {
        let cfg: CorsConfig = serde_json::from_str(r#"{"allow_origins": ["https://*.example.com"]}"#).unwrap();
        let cors = Cors::compile(&cfg);
        let mut h = HeaderMap::new();
        for (k, v) in [("origin", &origin), ("access-control-request-method", &method), ("access-control-request-headers", &hdrs)] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
        let _ = cors.preflight(&h, &Method::OPTIONS);
        let mut res = HeaderMap::new();
        cors.apply(h.get("origin"), &mut res);
        if let Some(allowed) = res.get("access-control-allow-origin") {
            prop_assert!(allowed.to_str().unwrap_or("").ends_with(".example.com"), "{allowed:?} for {origin:?}");
        }
    }
}
