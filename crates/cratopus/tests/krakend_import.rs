//! `cratopus import krakend` end to end: every KrakenD file of the seed documentation
//! (examples/krakend/import) converts to a config `cratopus check` accepts, bad input fails
//! with a reason, and converted configs serve KrakenD's documented answers from real backends.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use test_support::http::Response;
use test_support::http_body_util::Full;
use test_support::hyper::body::Bytes;
use test_support::{Backend, Gateway, get};

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/krakend/import")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run cratopus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The YAML `import` writes for `doc`, and what it printed to standard error.
fn import(dir: &Path, doc: &Value) -> (String, String) {
    let src = dir.join("krakend.json");
    std::fs::write(&src, serde_json::to_string_pretty(doc).expect("json")).expect("write krakend.json");
    let out = run(&["import", "krakend", src.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "import failed: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}

fn example(name: &str) -> Value {
    let path = examples().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read example")).expect("example is JSON")
}

#[test]
fn every_krakend_file_of_the_seed_converts_to_a_config_that_passes_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/krakend/import")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the seed's KrakenD files: {files:?}");
    for f in &files {
        let out_path = dir.path().join(f.file_stem().expect("stem")).with_extension("yaml");
        let out = run(&[
            "import",
            "krakend",
            f.to_str().expect("utf-8"),
            "-o",
            out_path.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}: {}", f.display(), text(&out.stderr));
        let check = run(&["check", "-c", out_path.to_str().expect("utf-8")]);
        assert!(
            check.status.success(),
            "{} converted to a config check refuses:\n{}\n{}\n{}",
            f.display(),
            text(&check.stdout),
            text(&check.stderr),
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
    }
}

#[test]
fn settings_without_an_equivalent_are_listed_with_their_json_path_and_the_rest_converts() {
    let doc = example("monitoring.json");
    let dir = tempfile::tempdir().expect("temp dir");
    let (yaml, stderr) = import(dir.path(), &doc);
    for path in [
        "$.extra_config[\"telemetry/influx\"]",
        "$.extra_config[\"telemetry/opencensus\"]",
        "$.sequential_start",
    ] {
        assert!(
            stderr.contains(&format!("not converted: {path}")),
            "{path} in:\n{stderr}"
        );
    }
    // The CORS settings of the same file did convert.
    let y: Value = serde_saphyr::from_str(&yaml).expect("YAML");
    assert_eq!(
        y["organizations"][0]["cors"],
        json!({"allow_origins": ["*"], "allow_methods": ["POST", "GET"],
               "allow_headers": ["Origin", "Authorization", "Content-Type"],
               "expose_headers": ["Content-Length"], "max_age": "12h"})
    );
}

#[test]
fn unreadable_or_non_json_input_fails_with_the_reason() {
    let missing = run(&["import", "krakend", "/nonexistent/krakend.json"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("cannot read /nonexistent/krakend.json"),
        "{}",
        text(&missing.stderr)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("krakend.json");
    std::fs::write(&bad, "{\n  \"version\": 3,\n  \"endpoints\": [\n}").expect("write");
    let out = run(&["import", "krakend", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("krakend.json:4:1: not JSON"), "{err}");
}

/// The backend of the seed's manipulation examples: the users and numbers documents.
async fn users_backend() -> Backend {
    Backend::start(|req, _| async move {
        let body = match req.uri().path() {
            "/users/alice.json" => {
                json!({"status": "ok", "data": {"user": {"name": "Alice", "city": "Oslo", "id": 1}}})
            }
            "/users/bob.json" => {
                json!({"status": "ok", "data": {"user": {"name": "Bob", "city": "Bergen", "email": "bob@example.com"}}})
            }
            "/numbers.json" => json!({"numerals": [
                {"numeral": 0, "english": "zero", "spanish": "cero"},
                {"numeral": 1, "english": "one", "spanish": "uno"},
                {"numeral": 2, "english": "two", "spanish": "dos"}
            ]}),
            _ => {
                return Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::from_static(b"not here")))
                    .expect("response");
            }
        };
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("response")
    })
    .await
}

fn serve(yaml: &str) -> Gateway {
    Gateway::start_with_env(BIN, yaml, &[], &[("CRATOPUS_BIND", "127.0.0.1:0")])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_converted_manipulation_examples_answer_as_krakend_documents() {
    let backend = users_backend().await;
    let mut doc = example("manipulation.json");
    doc["host"] = json!([backend.url()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (yaml, _) = import(dir.path(), &doc);
    let gw = serve(&yaml);
    let expect = [
        (
            "/aggregation",
            // Merged by top-level keys; the later backend wins a collision.
            json!({"status": "ok", "data": {"user": {"name": "Bob", "city": "Bergen", "email": "bob@example.com"}}}),
        ),
        (
            "/group",
            json!({"alice": {"status": "ok", "data": {"user": {"name": "Alice", "city": "Oslo", "id": 1}}},
                   "bob": {"status": "ok", "data": {"user": {"name": "Bob", "city": "Bergen", "email": "bob@example.com"}}}}),
        ),
        ("/target", json!({"name": "Alice", "city": "Oslo", "id": 1})),
        (
            "/mapping",
            json!({"result": "ok", "my_response": {"user": {"name": "Bob", "city": "Bergen", "email": "bob@example.com"}}}),
        ),
        ("/deny", json!({"status": "ok"})),
        ("/allow", json!({"data": {"user": {"name": "Bob", "city": "Bergen"}}})),
        (
            "/flatmap/object",
            json!({"details": {"city": "Oslo", "id": 1}, "name": "Alice"}),
        ),
        (
            "/flatmap/collection",
            json!({"numbers": [{"number": 1, "name": "one"}, {"number": 2, "name": "two"}]}),
        ),
    ];
    for (path, want) in expect {
        let r = get(&gw.url(path), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json(), want, "{path}");
        assert_eq!(r.header("x-cratopus-completed"), Some("true"), "{path}");
    }
}

/// KrakenD forwards only what an endpoint lists: the converted routes keep that.
#[tokio::test(flavor = "multi_thread")]
async fn the_converted_forwarding_examples_pass_only_the_listed_headers_and_query_strings() {
    let backend = Backend::start(|req, _| async move {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
            .collect();
        let body = json!({"query": req.uri().query().unwrap_or(""), "headers": headers});
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("response")
    })
    .await;
    let mut doc = example("parameter-forwarding.json");
    doc["host"] = json!([backend.url()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (yaml, _) = import(dir.path(), &doc);
    let gw = serve(&yaml);
    let client = test_support::client();
    let ask = |path: &str| {
        test_support::http::Request::get(gw.url(path))
            .header("accept", "application/json")
            .header("x-secret", "s3cret")
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let r = test_support::send(&client, ask("/default?q=1&a[]=2")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["headers"].get("x-secret").is_none(), "{v}");
    assert!(v["headers"].get("accept").is_none(), "{v}");
    assert_eq!(v["query"], "", "{v}");

    let r = test_support::send(&client, ask("/known-params?q=1&a[]=2&other=3")).await;
    let v = r.json();
    assert_eq!(v["headers"]["accept"], "application/json", "{v}");
    assert!(v["headers"].get("x-secret").is_none(), "{v}");
    assert_eq!(v["query"], "q=1&a[]=2", "{v}");

    let r = test_support::send(&client, ask("/all?q=1")).await;
    let v = r.json();
    assert_eq!(v["headers"]["x-secret"], "s3cret", "{v}");
    assert_eq!(v["query"], "q=1", "{v}");
}

/// KrakenD's `auth/validator` converted: tokens are checked against the JWKS, roles and
/// audience are enforced, and a propagated claim reaches the backend as its header.
#[tokio::test(flavor = "multi_thread")]
async fn a_converted_jwt_validator_checks_tokens_roles_and_propagates_claims() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let jwks = json!({"keys": [test_support::ec_jwk(&kp.public_key_pem(), "k1")]});
    let backend = Backend::start(move |req, _| {
        let jwks = jwks.clone();
        async move {
            let body = match req.uri().path() {
                "/jwks" => jwks,
                _ => json!({"user": req.headers().get("x-user").and_then(|v| v.to_str().ok())}),
            };
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("response")
        }
    })
    .await;
    let doc = json!({
        "version": 3,
        "host": [backend.url()],
        "endpoints": [{
            "endpoint": "/private",
            "extra_config": {"auth/validator": {
                "alg": "ES256",
                "jwk_url": format!("{}/jwks", backend.url()),
                "disable_jwk_security": true,
                "audience": ["orders"],
                "roles": ["admin"],
                "propagate_claims": [["sub", "x-user"]]
            }},
            "backend": [{"url_pattern": "/who"}]
        }]
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let (yaml, stderr) = import(dir.path(), &doc);
    assert!(!stderr.contains("not converted"), "{stderr}");
    let gw = serve(&yaml);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("signing key");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 300;
    let token = |roles: &[&str], aud: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k1".into());
        let claims = json!({"sub": "ann", "aud": aud, "roles": roles, "exp": exp});
        jsonwebtoken::encode(&h, &claims, &key).expect("token")
    };
    let client = test_support::client();
    let call = |t: Option<String>| {
        let mut b = test_support::http::Request::get(gw.url("/private"));
        if let Some(t) = t {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        test_support::send(&client, b.body(Full::new(Bytes::new())).expect("request"))
    };
    assert_eq!(call(None).await.status, 401);
    assert_eq!(
        call(Some(token(&["admin"], "billing"))).await.status,
        401,
        "wrong audience"
    );
    assert_eq!(
        call(Some(token(&["viewer"], "orders"))).await.status,
        403,
        "missing role"
    );
    let ok = call(Some(token(&["admin"], "orders"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json(), json!({"user": "ann"}));
}
