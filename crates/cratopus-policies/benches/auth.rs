//! The cost of authentication per request: an API key lookup, and JWT verification with each
//! kind of key (the signature check dominates; parsing and claim checks are the rest).

use cratopus_config::{AuthConfig, JwtAuthConfig};
use cratopus_policies::auth::{Authenticator, Consumers};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::Path;
use std::sync::Arc;

fn jwt_cfg(secret: Option<&str>, public_key: Option<String>) -> AuthConfig {
    AuthConfig {
        api_key: None,
        jwt: Some(JwtAuthConfig {
            secret: secret.map(str::to_string),
            public_key,
            issuer: Some("https://id.test".into()),
            audience: vec!["api".into()],
            forward_claims: [("sub".to_string(), "x-user-id".to_string())].into(),
            ..Default::default()
        }),
        mtls: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let claims =
        serde_json::json!({"sub": "user-7", "iss": "https://id.test", "aud": "api", "exp": exp, "scope": "a b"});
    let secret = "this-is-a-bench-secret-of-32-bytes!";
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cases = [
        (
            "HS256",
            jwt_cfg(Some(secret), None),
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
        ),
        (
            "RS256",
            jwt_cfg(None, Some(rsa.public_key_pem())),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap(),
        ),
        (
            "ES256",
            jwt_cfg(None, Some(ec.public_key_pem())),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
        ),
        (
            "EdDSA",
            jwt_cfg(None, Some(ed.public_key_pem())),
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap(),
        ),
    ];
    let mut g = c.benchmark_group("authenticate");
    for (name, cfg, alg, key) in cases {
        let a = Authenticator::compile(&cfg, Arc::new(Consumers::default()), Path::new(".")).unwrap();
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap();
        let value = format!("Bearer {token}");
        g.bench_function(format!("jwt_{name}"), |b| {
            b.iter(|| {
                let (mut parts, ()) = Request::get("/x")
                    .header("authorization", &value)
                    .body(())
                    .unwrap()
                    .into_parts();
                rt.block_on(a.authenticate("r", &mut parts, None)).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
