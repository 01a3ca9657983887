//! Compiling a config has no side effects: no task, no socket, no DNS lookup, no file opened for
//! writing. `cratopus check` and a pushed config's validation rely on it; starting is a separate
//! step (`Compiled::start`).

const YAML: &str = "
traffic_log: {path: logs/traffic.jsonl}
state: {redis: {urls: [\"redis://127.0.0.1:1\"]}}
organizations:
  - name: acme
    upstreams:
      named: {targets: [\"http://localhost:9\"], health_check: {path: /health, interval: 1s}}
      jwks: {targets: [\"mirror://\"]}
    auth:
      jwt: {jwks_url: \"http://127.0.0.1:9/jwks.json\"}
    routes:
      - {path: /a, upstream: named}
      - {path: /b, upstream: jwks}
";

/// Outside any tokio runtime: a spawned task or a socket would panic here ("there is no reactor
/// running"), so passing is the proof that the compile starts nothing.
#[test]
fn compile_only_starts_nothing_and_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("cratopus-compile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    let loaded = cratopus_config::load_str(&file, YAML).expect("loads");
    let compiled = cratopus_core::compile_only(loaded, None, 1, &Default::default()).expect("compiles");
    assert!(
        !dir.join("logs").exists(),
        "the traffic log is opened by start, not by the compile"
    );
    let snap = compiled.snapshot();
    let (_, named) = snap
        .upstreams()
        .find(|((_, n), _)| n == "named")
        .expect("the upstream is compiled");
    assert!(
        named.pool.targets().targets.is_empty(),
        "`localhost` is resolved by start, not by the compile"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn start_opens_the_log_and_resolves_the_upstreams() {
    let dir = std::env::temp_dir().join(format!("cratopus-start-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let loaded = cratopus_config::load_str(&dir.join("gateway.yaml"), YAML).expect("loads");
    let snap = cratopus_core::compile_only(loaded, None, 1, &Default::default())
        .expect("compiles")
        .start()
        .await
        .expect("starts");
    assert!(snap.traffic_log.enabled());
    let (_, named) = snap.upstreams().find(|((_, n), _)| n == "named").expect("upstream");
    assert!(!named.pool.targets().targets.is_empty(), "localhost resolved at start");
    drop(snap);
    std::fs::remove_dir_all(&dir).ok();
}
