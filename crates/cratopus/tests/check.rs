//! `cratopus check` on broken configs: each file under tests/fixtures/check/ gives the message
//! in its `.expected` golden file (stderr, stdout and the exit code). Run with
//! `UPDATE_GOLDEN=1` to rewrite the golden files after an intended change, and read the diff.
//!
//! Then: every error of a corpus of malformed configs has its `file:line:column`; the errors
//! of every file come in one run; empty configs and configs without organizations are refused;
//! files are read with a size limit; numbers that size memory are bounded.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

fn check(file: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "-c", file])
        .args(extra)
        .env_remove("CRATOPUS_CONFIG")
        .output()
        .expect("run cratopus check");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn broken_configs_give_their_golden_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "fixtures missing: {files:?}");
    let mut failures = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let rel = format!("tests/fixtures/check/{name}");
        let got = check(&rel, &[]);
        let golden = f.with_extension("expected");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!("== {name}\n-- want\n{want}\n-- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "golden mismatches:\n{}", failures.join("\n"));
}

#[test]
fn warnings_pass_unless_strict() {
    let relaxed = check("tests/fixtures/check/warnings.yaml", &[]);
    assert!(relaxed.starts_with("exit: 0\n"), "{relaxed}");
    let strict = check("tests/fixtures/check/warnings.yaml", &["--strict"]);
    assert!(strict.starts_with("exit: 1\n"), "{strict}");
    assert!(strict.contains("3 warning(s)"), "{strict}");
}

#[test]
fn every_example_passes_strictly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&root).expect("examples") {
        let gw = e.expect("entry").path().join("gateway.yaml");
        if gw.exists() {
            let out = check(gw.to_str().unwrap(), &["--strict"]);
            assert!(out.starts_with("exit: 0\n"), "{}:\n{out}", gw.display());
            n += 1;
        }
    }
    assert!(n >= 2, "no examples found");
}

/// A fresh directory for one case's files.
fn case_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cratopus-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes gateway.yaml and `files` into a fresh directory and runs `check` on it.
fn check_files(name: &str, gateway: &str, files: &[(&str, &str)], extra: &[&str]) -> (String, PathBuf) {
    let dir = case_dir(name);
    std::fs::write(dir.join("gateway.yaml"), gateway).expect("write gateway.yaml");
    for (f, text) in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write file");
    }
    let out = check(dir.join("gateway.yaml").to_str().expect("utf-8 path"), extra);
    (out, dir)
}

/// The `--> file:line:column` places of the errors (not the warnings) of a `check` output.
fn error_places(out: &str) -> Vec<&str> {
    let lines: Vec<&str> = out.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("error: "))
        .filter_map(|w| w[1].trim_start().strip_prefix("--> "))
        .collect()
}

/// `line:column` (1-based) of the first `needle` in `text`.
fn place_of(text: &str, needle: &str) -> String {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"));
    format!("{}:{}", i + 1, line.find(needle).expect("needle") + 1)
}

/// The `--> file:line:column` places of a `check` output.
fn places(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> "))
        .collect()
}

const ORG: &str = "organizations:\n  - name: acme\n    upstreams:\n      u:\n        targets: [\"mirror://\"]\n    routes:\n      - path: /x\n        upstream: u\n";
const ORG_U: &str = "organizations:\n  - name: acme\n    upstreams:\n      u:\n        targets: [\"mirror://\"]\n";
const ORG_T: &str = "organizations:\n  - name: acme\n    upstreams:\n      u:\n        targets:\n";
const ROUTES: &str = "    routes:\n      - path: /x\n        upstream: u\n";
const HASH: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

/// A case of the corpus: its name, gateway.yaml, and other files (path, text).
type Case = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

/// Malformed configs, one mistake each (some several): `check` must give every error a place
/// (`file:line:column`).
const MALFORMED: &[Case] = &[
    // Shape: wrong types, unknown keys and values, bad units.
    ("workers_type", "workers: many\n{ORG}", &[]),
    ("unknown_top_key", "listners: []\n{ORG}", &[]),
    (
        "unknown_nested_key",
        "listeners:\n  - bind: 127.0.0.1:0\n    timout: 5s\n{ORG}",
        &[],
    ),
    ("bad_duration", "shutdown_timeout: 5 parsecs\n{ORG}", &[]),
    ("bad_size", "limits:\n  max_header_bytes: 12XB\n{ORG}", &[]),
    ("bool_type", "watch: maybe\n{ORG}", &[]),
    ("list_for_map", "limits: [1, 2]\n{ORG}", &[]),
    ("organizations_number", "organizations: 5\n", &[]),
    ("org_name_missing", "organizations:\n  - domains: [a.test]\n", &[]),
    (
        "routes_map",
        "organizations:\n  - name: a\n    routes: {path: /x}\n",
        &[],
    ),
    ("bad_balance", "{ORG_U}        balance: round_robbin\n{ROUTES}", &[]),
    ("bad_protocol", "{ORG_U}        protocol: http3\n{ROUTES}", &[]),
    (
        "bad_hash_on",
        "{ORG_U}        balance: consistent_hash\n        hash_on: {query: x}\n{ROUTES}",
        &[],
    ),
    (
        "weight_type",
        "{ORG_T}          - {url: \"mirror://\", weight: heavy}\n{ROUTES}",
        &[],
    ),
    (
        "negative_port",
        "listeners:\n  - bind: 127.0.0.1:0\n    https_port: -1\n{ORG}",
        &[],
    ),
    (
        "yaml_syntax",
        "listeners:\n  - bind: 127.0.0.1:0\n   name: x\n{ORG}",
        &[],
    ),
    ("unclosed_quote", "health_path: \"/ping\n{ORG}", &[]),
    ("unset_env", "health_path: ${NO_SUCH_VARIABLE_HERE}\n{ORG}", &[]),
    ("empty_file", "", &[]),
    ("only_comments", "# nothing yet\n\n# still nothing\n", &[]),
    // Values out of range.
    ("workers_zero", "workers: 0\n{ORG}", &[]),
    ("workers_huge", "workers: 99999999\n{ORG}", &[]),
    ("max_headers_huge", "limits:\n  max_headers: 100000000\n{ORG}", &[]),
    (
        "max_header_bytes_huge",
        "limits:\n  max_header_bytes: 10GiB\n{ORG}",
        &[],
    ),
    (
        "https_port_zero",
        "listeners:\n  - bind: 127.0.0.1:0\n    redirect_http_to_https: true\n    https_port: 0\n{ORG}",
        &[],
    ),
    ("sample_ratio", "tracing:\n  sample_ratio: 2.5\n{ORG}", &[]),
    (
        "otlp_queue",
        "tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n    queue: 0\n{ORG}",
        &[],
    ),
    (
        "otlp_queue_huge",
        "tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n    queue: 4000000000\n{ORG}",
        &[],
    ),
    ("traffic_log_queue", "traffic_log:\n  path: '-'\n  queue: 0\n{ORG}", &[]),
    (
        "traffic_log_queue_huge",
        "traffic_log:\n  path: '-'\n  queue: 100000000000\n{ORG}",
        &[],
    ),
    (
        "weight_zero",
        "{ORG_T}          - {url: \"mirror://\", weight: 0}\n{ROUTES}",
        &[],
    ),
    (
        "weight_huge",
        "{ORG_T}          - {url: \"mirror://\", weight: 100000000}\n{ROUTES}",
        &[],
    ),
    (
        "max_idle_huge",
        "{ORG_U}        max_idle_per_target: 100000000000\n{ROUTES}",
        &[],
    ),
    (
        "health_zero",
        "{ORG_U}        health_check: {interval: 0s, healthy_threshold: 0, expect_status: 700, path: x}\n{ROUTES}",
        &[],
    ),
    (
        "breaker",
        "{ORG_U}        circuit_breaker: {error_rate: 2, half_open_probes: 5000}\n{ROUTES}",
        &[],
    ),
    (
        "outlier",
        "{ORG_U}        outlier_detection: {max_ejection_percent: 300}\n{ROUTES}",
        &[],
    ),
    (
        "retry_attempts",
        "{ORG_U}        retry: {attempts: 50, on_status: [200]}\n{ROUTES}",
        &[],
    ),
    (
        "retry_buffer_huge",
        "{ORG_U}        retry: {buffer_body: 100GiB}\n{ROUTES}",
        &[],
    ),
    (
        "bulkhead_zero",
        "{ORG_U}        bulkhead: {max_inflight: 0, queue: {max_waiting: 0}}\n{ROUTES}",
        &[],
    ),
    (
        "bulkhead_queue_huge",
        "{ORG_U}        bulkhead: {max_inflight: 10, queue: {max_waiting: 4000000000}}\n{ROUTES}",
        &[],
    ),
    (
        "rate_zero",
        "{ORG}    rate_limit:\n      limits: [{rate: 0, per: 0s}]\n",
        &[],
    ),
    ("quota_zero", "{ORG}    quota: {limit: 0, per: 1d}\n", &[]),
    (
        "validate_body_huge",
        "{ORG_U}{ROUTES}        validate: {max_body_bytes: 100GiB}\n",
        &[],
    ),
    // Bad addresses, URLs, CIDRs, names.
    ("no_listeners", "listeners: []\n{ORG}", &[]),
    ("bad_bind", "listeners:\n  - bind: nowhere\n{ORG}", &[]),
    ("health_path", "health_path: ping\n{ORG}", &[]),
    ("admin_token", "admin:\n  bind: 127.0.0.1:0\n  token: short\n{ORG}", &[]),
    (
        "admin_bind",
        "admin:\n  bind: nowhere\n  token: 0123456789abcdef0123\n{ORG}",
        &[],
    ),
    (
        "otlp_endpoint",
        "tracing:\n  otlp:\n    endpoint: ftp://collector\n{ORG}",
        &[],
    ),
    ("redis_empty", "state:\n  redis:\n    urls: []\n{ORG}", &[]),
    (
        "redis_url",
        "state:\n  redis:\n    urls: [\"http://127.0.0.1:6379\"]\n{ORG}",
        &[],
    ),
    (
        "trusted_proxies_prefix",
        "trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n{ORG}",
        &[],
    ),
    ("trusted_proxies_word", "trusted_proxies: [banana]\n{ORG}", &[]),
    ("org_ip_cidr", "{ORG}    ip: {allow: [\"300.1.1.1\"]}\n", &[]),
    (
        "route_ip_cidr",
        "{ORG_U}{ROUTES}        ip: {deny: [\"10.0.0.0/99\"]}\n",
        &[],
    ),
    (
        "bad_domain",
        "organizations:\n  - name: a\n    domains: [\"exa mple.test\"]\n",
        &[],
    ),
    ("bad_target", "{ORG_T}          - \"ftp://x\"\n{ROUTES}", &[]),
    (
        "target_path",
        "{ORG_T}          - \"http://127.0.0.1:1/api\"\n{ROUTES}",
        &[],
    ),
    ("no_targets", "{ORG_T}{ROUTES}", &[]),
    (
        "hash_without_hash_on",
        "{ORG_U}        balance: consistent_hash\n{ROUTES}",
        &[],
    ),
    (
        "upstream_tls_http",
        "{ORG_U}        tls: {verify: false}\n{ROUTES}",
        &[],
    ),
    (
        "h2_on_http",
        "organizations:\n  - name: a\n    upstreams:\n      u:\n        targets: [\"http://127.0.0.1:1\"]\n        protocol: h2\n    routes:\n      - {path: /x, upstream: u}\n",
        &[],
    ),
    (
        "mixed_schemes",
        "organizations:\n  - name: a\n    upstreams:\n      u:\n        targets: [\"http://127.0.0.1:1\", \"https://127.0.0.1:2\"]\n    routes:\n      - {path: /x, upstream: u}\n",
        &[],
    ),
    (
        "server_name",
        "organizations:\n  - name: a\n    upstreams:\n      u:\n        targets: [\"https://127.0.0.1:1\"]\n        tls: {server_name: \"a b\"}\n    routes:\n      - {path: /x, upstream: u}\n",
        &[],
    ),
    ("acme_directory", "tls:\n  acme:\n    directory: gopher://x\n{ORG}", &[]),
    ("unknown_sni", "tls:\n  unknown_sni: default_certificate\n{ORG}", &[]),
    (
        "tls_and_redirect",
        "listeners:\n  - bind: 127.0.0.1:0\n    tls: true\n    redirect_http_to_https: true\n{ORG}",
        &[],
    ),
    // References and duplicates.
    (
        "unknown_upstream",
        "{ORG_U}    routes:\n      - path: /x\n        upstream: usres\n",
        &[],
    ),
    ("unknown_policy", "{ORG_U}{ROUTES}        policies: [nope]\n", &[]),
    ("empty_policy", "{ORG}    policies:\n      p: {}\n", &[]),
    (
        "cluster_without_redis",
        "{ORG}    rate_limit:\n      state: cluster\n      limits: [{rate: 1, per: 1s}]\n",
        &[],
    ),
    ("default_org", "default_organization: nope\n{ORG}", &[]),
    ("duplicate_orgs", "organizations:\n  - name: a\n  - name: a\n", &[]),
    (
        "duplicate_domains",
        "organizations:\n  - {name: a, domains: [x.test]}\n  - {name: b, domains: [x.test]}\n",
        &[],
    ),
    ("mtls_without_client_auth", "{ORG}    auth: {mtls: {}}\n", &[]),
    ("cert_without_key", "{ORG}    tls: {cert: a.pem}\n", &[]),
    (
        "cert_missing",
        "{ORG}    tls: {cert: missing.pem, key: missing.key}\n",
        &[],
    ),
    (
        "client_auth_header",
        "{ORG}    tls:\n      client_auth: {ca: ca.pem, header: \"bad header\"}\n",
        &[("ca.pem", "x")],
    ),
    ("hsts_preload", "{ORG}    tls:\n      hsts: {preload: true}\n", &[]),
    (
        "acme_email",
        "organizations:\n  - name: a\n    domains: [a.test]\n    tls:\n      acme: {email: nobody}\n",
        &[],
    ),
    (
        "cert_domain",
        "organizations:\n  - name: a\n    domains: [a.test]\n    tls:\n      certificates:\n        - {cert: c.pem, key: k.pem, domains: [b.test]}\n",
        &[],
    ),
    // Routes.
    ("bad_method", "{ORG_U}{ROUTES}        methods: [\"GE T\"]\n", &[]),
    ("strip_prefix", "{ORG_U}{ROUTES}        strip_prefix: api\n", &[]),
    ("rewrite_slash", "{ORG_U}{ROUTES}        rewrite: api\n", &[]),
    ("rewrite_param", "{ORG_U}{ROUTES}        rewrite: /a/{id}\n", &[]),
    (
        "path_no_slash",
        "{ORG_U}    routes:\n      - {path: x, upstream: u}\n",
        &[],
    ),
    (
        "bad_pattern",
        "{ORG_U}    routes:\n      - {path: \"/a/{*rest}/b\", upstream: u}\n",
        &[],
    ),
    (
        "unclosed_param",
        "{ORG_U}    routes:\n      - {path: \"/a/{id\", upstream: u}\n",
        &[],
    ),
    (
        "conflicting_routes",
        "{ORG_U}    routes:\n      - {path: /x, upstream: u}\n      - {path: /x, upstream: u}\n",
        &[],
    ),
    (
        "cors",
        "{ORG}    cors: {allow_origins: [\"*\"], allow_credentials: true}\n",
        &[],
    ),
    (
        "validate_schema_missing",
        "{ORG_U}{ROUTES}        validate: {body_schema_file: nope.json}\n",
        &[],
    ),
    (
        "validate_schema_bad",
        "{ORG_U}{ROUTES}        validate: {body_schema_file: s.json}\n",
        &[("s.json", "[1, 2")],
    ),
    (
        "forward",
        "{ORG_U}{ROUTES}        forward: {headers: [\"bad header\"]}\n",
        &[],
    ),
    // Identity.
    (
        "consumer_key_hash",
        "{ORG}    consumers:\n      - id: c\n        keys: [nothex]\n",
        &[],
    ),
    (
        "consumer_key_twice",
        "{ORG}    consumers:\n      - id: c\n        keys: [\"{HASH}\", \"{HASH}\"]\n",
        &[],
    ),
    ("jwt_no_key", "{ORG}    auth:\n      jwt: {issuer: x}\n", &[]),
    ("jwt_short_secret", "{ORG}    auth:\n      jwt: {secret: short}\n", &[]),
    (
        "jwt_key_file_missing",
        "{ORG}    auth:\n      jwt: {public_key_file: nope.pem}\n",
        &[],
    ),
    // Organization files.
    (
        "org_file_missing",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: [orgs/a.yaml, orgs/b.yaml]\n",
        &[("orgs/a.yaml", "name: a\n")],
    ),
    (
        "org_file_unknown_key",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n",
        &[("orgs/a.yaml", "name: a\ndomain: [a.test]\n")],
    ),
    (
        "org_file_empty",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n",
        &[("orgs/a.yaml", "# todo\n")],
    ),
    (
        "org_glob_matches_nothing",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n",
        &[("orgs/README", "x")],
    ),
    (
        "org_file_is_a_directory",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n",
        &[("orgs/d.yaml/x", "x")],
    ),
    (
        "org_files_both_broken",
        "listnrs: []\norganizations: orgs/*.yaml\n",
        &[("orgs/a.yaml", "name: a\nupstreams: 5\n")],
    ),
    (
        "no_organizations",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: []\n",
        &[],
    ),
    ("no_organizations_key", "listeners:\n  - bind: 127.0.0.1:0\n", &[]),
    (
        "dev_zero_org",
        "listeners:\n  - bind: 127.0.0.1:0\norganizations: [/dev/zero]\n",
        &[],
    ),
    (
        "dev_zero_cert",
        "{ORG}    tls: {cert: /dev/zero, key: /dev/zero}\n",
        &[],
    ),
    (
        "dev_zero_schema",
        "{ORG_U}{ROUTES}        validate: {body_schema_file: /dev/zero}\n",
        &[],
    ),
    (
        "dev_zero_jwt_key",
        "{ORG}    auth:\n      jwt: {public_key_file: /dev/zero}\n",
        &[],
    ),
];

#[test]
fn every_error_of_a_malformed_config_has_its_line_and_column() {
    let mut failures = Vec::new();
    for (name, gateway, files) in MALFORMED {
        let gateway = gateway
            .replace("{ORG}", ORG)
            .replace("{ORG_U}", ORG_U)
            .replace("{ORG_T}", ORG_T)
            .replace("{ROUTES}", ROUTES)
            .replace("{HASH}", HASH);
        let gateway = if gateway.contains("listeners") || gateway.trim().is_empty() || gateway.starts_with('#') {
            gateway
        } else {
            format!("listeners:\n  - bind: 127.0.0.1:0\n{gateway}")
        };
        let (out, dir) = check_files(name, &gateway, files, &[]);
        let errors = out.lines().filter(|l| l.starts_with("error: ")).count();
        let placed: Vec<&str> = error_places(&out);
        let all_placed = placed.len() == errors
            && placed.iter().all(|p| {
                let mut parts = p.rsplitn(3, ':');
                let col = parts.next().and_then(|c| c.parse::<u32>().ok());
                let line = parts.next().and_then(|l| l.parse::<u32>().ok());
                col.is_some_and(|c| c >= 1) && line.is_some_and(|l| l >= 1)
            });
        if !out.starts_with("exit: 1\n") || errors == 0 || !all_placed {
            failures.push(format!("== {name}\n{gateway}\n-- check said\n{out}"));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed configs have an error without file:line:column (or no error):\n{}",
        failures.len(),
        MALFORMED.len(),
        failures.join("\n")
    );
}

/// `check` with environment variables set.
fn check_with_env(file: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(file)
        .env_remove("CRATOPUS_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run cratopus check");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_errors_of_every_file_come_in_one_run() {
    // A typo in gateway.yaml, a typo in one organization file, a wrong type in another: the
    // organization files are read although gateway.yaml does not parse.
    let gateway = "listeners:\n  - bind: 127.0.0.1:0\nhealth_pth: /ping\norganizations: orgs/*.yaml\n";
    let (out, dir) = check_files(
        "every_file",
        gateway,
        &[
            ("orgs/a.yaml", "name: a\ndomain: [a.test]\n"),
            (
                "orgs/b.yaml",
                "name: b\nupstreams:\n  u:\n    targets: [\"mirror://\"]\n    balance: 7\n",
            ),
        ],
        &[],
    );
    let p = |f: &str| dir.join(f).display().to_string();
    let placed = places(&out);
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert!(placed.contains(&format!("{}:3:1", p("gateway.yaml")).as_str()), "{out}");
    assert!(out.contains("unknown key `health_pth`"), "{out}");
    assert!(placed.contains(&format!("{}:2:1", p("orgs/a.yaml")).as_str()), "{out}");
    assert!(out.contains("unknown key `domain`"), "{out}");
    assert!(
        placed
            .iter()
            .any(|l| l.starts_with(&format!("{}:5:", p("orgs/b.yaml")))),
        "{out}"
    );
    assert!(out.contains("3 error(s)"), "{out}");
    let _ = std::fs::remove_dir_all(dir);

    // Shape errors in one file, and validation of the files that parsed in the same run.
    let gateway = "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n";
    let (out, dir) = check_files(
        "every_file_validation",
        gateway,
        &[
            ("orgs/a.yaml", "name: a\ndomains: [a.test]\nroutez: []\n"),
            (
                "orgs/b.yaml",
                "name: b\ndomains: [b.test]\nupstreams:\n  users:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /x\n    upstream: usres\n",
            ),
        ],
        &[],
    );
    let placed = places(&out);
    assert!(
        placed.contains(&format!("{}/orgs/a.yaml:3:1", dir.display()).as_str()),
        "{out}"
    );
    assert!(
        placed.contains(&format!("{}/orgs/b.yaml:8:15", dir.display()).as_str()),
        "{out}"
    );
    assert!(out.contains("did you mean `users`"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_empty_config_is_refused() {
    for (name, text) in [("empty", ""), ("comments", "# to do\n\n   # later\n---\n")] {
        let (out, dir) = check_files(name, text, &[], &[]);
        assert!(out.starts_with("exit: 1\n"), "{out}");
        assert!(out.contains("the file is empty"), "{out}");
        assert!(
            places(&out).contains(&format!("{}/gateway.yaml:1:1", dir.display()).as_str()),
            "{out}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_config_without_organizations_is_refused() {
    for (name, text) in [
        ("no_orgs_list", "listeners:\n  - bind: 127.0.0.1:0\norganizations: []\n"),
        ("no_orgs_key", "listeners:\n  - bind: 127.0.0.1:0\n"),
        (
            "no_orgs_glob",
            "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n",
        ),
    ] {
        let (out, dir) = check_files(name, text, &[], &[]);
        assert!(out.starts_with("exit: 1\n"), "{name}: {out}");
        assert!(
            out.contains("no organization: every request would be answered 404"),
            "{name}: {out}"
        );
        assert_eq!(places(&out).len(), 1, "{name}: {out}");
        let _ = std::fs::remove_dir_all(dir);
    }
    let (out, dir) = check_files("no_listeners", &format!("listeners: []\n{ORG}"), &[], &[]);
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert!(
        places(&out).contains(&format!("{}/gateway.yaml:1:1", dir.display()).as_str()),
        "{out}"
    );
    assert!(out.contains("`listeners` is empty"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_file_setting_pointing_at_dev_zero_fails_with_a_size_error() {
    // Each of these read /dev/zero without end before; now one byte past the limit.
    for (name, gateway) in [
        ("zero_org", "listeners:\n  - bind: 127.0.0.1:0\norganizations: [/dev/zero]\n".to_string()),
        ("zero_cert", format!("{ORG}    tls: {{cert: /dev/zero, key: /dev/zero}}\n")),
        (
            "zero_schema",
            format!("{ORG_U}{ROUTES}        validate: {{body_schema_file: /dev/zero}}\n"),
        ),
        ("zero_jwt", format!("{ORG}    auth:\n      jwt: {{public_key_file: /dev/zero}}\n")),
        (
            "zero_ca",
            "organizations:\n  - name: a\n    upstreams:\n      u:\n        targets: [\"https://127.0.0.1:1\"]\n        tls: {ca: /dev/zero}\n    routes:\n      - {path: /x, upstream: u}\n".to_string(),
        ),
    ] {
        let gateway = if gateway.contains("listeners") {
            gateway
        } else {
            format!("listeners:\n  - bind: 127.0.0.1:0\n{gateway}")
        };
        let (out, dir) = check_files(name, &gateway, &[], &[]);
        assert!(out.starts_with("exit: 1\n"), "{name}: {out}");
        assert!(
            out.contains("`/dev/zero` is larger than 4 MiB, the limit for a file the config names"),
            "{name}: {out}"
        );
        let gw = format!("{}/gateway.yaml:", dir.display());
        assert!(places(&out).iter().any(|p| p.starts_with(&gw)), "{name}: {out}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn numbers_that_size_memory_are_bounded() {
    let cases: [(&str, String, &str, &str); 6] = [
        (
            "workers",
            format!("workers: 99999999\n{ORG}"),
            "99999999",
            "`workers` is 99999999; it must be between 1 and 1024",
        ),
        (
            "weight",
            format!("{ORG_T}          - {{url: \"mirror://\", weight: 100000000}}\n{ROUTES}"),
            "100000000}",
            "upstream `u`: the weight of target `mirror://` is 100000000; it must be between 1 and 1000",
        ),
        (
            "queue",
            format!("traffic_log:\n  path: '-'\n  queue: 100000000000\n{ORG}"),
            "100000000000",
            "traffic_log.queue is 100000000000; it must be between 1 and 1048576",
        ),
        (
            "header_bytes",
            format!("limits:\n  max_header_bytes: 10GiB\n{ORG}"),
            "10GiB",
            "limits.max_header_bytes is 10GiB; it must be between 1KiB and 1MiB",
        ),
        (
            "bulkhead",
            format!("{ORG_U}        bulkhead: {{max_inflight: 10, queue: {{max_waiting: 4000000000}}}}\n{ROUTES}"),
            "4000000000",
            "upstream `u`: bulkhead.queue.max_waiting is 4000000000; it must be between 1 and 1000000",
        ),
        (
            "retry_buffer",
            format!("{ORG_U}        retry: {{buffer_body: 100GiB}}\n{ROUTES}"),
            "100GiB",
            "upstream `u`: retry.buffer_body is 100GiB; it must be between 0 and 64MiB",
        ),
    ];
    for (name, body, at, message) in cases {
        let gateway = format!("listeners:\n  - bind: 127.0.0.1:0\n{body}");
        let (out, dir) = check_files(name, &gateway, &[], &[]);
        assert!(out.starts_with("exit: 1\n"), "{name}: {out}");
        assert!(out.contains(message), "{name}: {out}");
        let want = format!("{}/gateway.yaml:{}", dir.display(), place_of(&gateway, at));
        assert_eq!(places(&out), [want], "{name}: {out}");
        let _ = std::fs::remove_dir_all(dir);
    }
    // The bounds themselves are allowed.
    let edge = format!(
        "listeners:\n  - bind: 127.0.0.1:0\nworkers: 1024\nlimits: {{max_headers: 1000, max_header_bytes: 1MiB}}\n{ORG_T}          - {{url: \"mirror://\", weight: 1000}}\n{ROUTES}"
    );
    let (out, dir) = check_files("edges", &edge, &[], &[]);
    assert!(out.starts_with("exit: 0\n"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_caret_column_is_that_of_the_file_as_written() {
    // The values of ${HOST} and ${N} are longer than what is written: the places after them on
    // the same line must be those of the written file, not of the substituted text.
    let dir = case_dir("caret");
    let written = format!(
        "listeners:\n  - bind: 127.0.0.1:0\nlimits: {{max_headers: ${{N}}, timout: 5s}}\n{ORG_T}          - {{url: \"http://${{HOST}}:80\", weight: 0}}\n{ROUTES}"
    );
    std::fs::write(dir.join("gateway.yaml"), &written).expect("write");
    let out = check_with_env(
        &dir.join("gateway.yaml"),
        &[("N", "100"), ("HOST", "a-rather-long-host-name.example.test")],
    );
    let gw = dir.join("gateway.yaml").display().to_string();
    let want = [
        format!("{gw}:{}", place_of(&written, "timout")),
        format!("{gw}:{}", place_of(&written, "0}")),
    ];
    // Both are shape errors (an unknown key, a number below the schema's minimum).
    assert_eq!(places(&out), want, "{out}");
    let fixed = written.replace(", timout: 5s", "");
    std::fs::write(dir.join("gateway.yaml"), &fixed).expect("write");
    let out = check_with_env(
        &dir.join("gateway.yaml"),
        &[("N", "100"), ("HOST", "a-rather-long-host-name.example.test")],
    );
    // Now found by validation, at the same place.
    assert_eq!(places(&out), [want[1].as_str()], "{out}");
    assert!(
        out.contains("the weight of target `http://a-rather-long-host-name.example.test:80` is 0"),
        "{out}"
    );
    assert!(
        out.contains("      - {url: \"http://${HOST}:80\", weight: 0}\n"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_admin_api_beyond_loopback_is_a_warning() {
    let admin = |bind: &str| {
        format!("listeners:\n  - bind: 127.0.0.1:0\nadmin:\n  bind: \"{bind}\"\n  token: 0123456789abcdef0123\n{ORG}")
    };
    for bind in ["0.0.0.0:9901", "[::]:9901", "203.0.113.7:9901", "10.1.2.3:9901"] {
        let (out, dir) = check_files("admin_open", &admin(bind), &[], &[]);
        assert!(out.starts_with("exit: 0\n"), "{bind}: {out}");
        assert!(
            out.contains(&format!(
                "warning: admin.bind `{bind}` is reachable from beyond this machine"
            )),
            "{bind}: {out}"
        );
        assert_eq!(places(&out), [format!("{}/gateway.yaml:4:9", dir.display())], "{out}");
        let (strict, _) = check_files("admin_open_strict", &admin(bind), &[], &["--strict"]);
        assert!(strict.starts_with("exit: 1\n"), "{bind}: {strict}");
        let _ = std::fs::remove_dir_all(dir);
    }
    for bind in ["127.0.0.1:9901", "[::1]:9901", "localhost:9901"] {
        let (out, dir) = check_files("admin_loopback", &admin(bind), &[], &["--strict"]);
        assert!(out.starts_with("exit: 0\n"), "{bind}: {out}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Many organization files are parsed on several threads: every file's errors still come, at
/// their lines, in file order, and the files that parse are validated in the same run.
#[test]
fn errors_of_many_organization_files_come_in_file_order() {
    let gateway = "listeners:\n  - bind: 127.0.0.1:0\norganizations: orgs/*.yaml\n";
    let mut files: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("orgs/o{i:02}.yaml"),
                format!(
                    "name: o{i}\ndomains: [o{i}.test]\nupstreams:\n  u:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /x\n    upstream: u\n"
                ),
            )
        })
        .collect();
    files[3].1 = "name: o3\ndomains: [o3.test]\nroutez: []\n".into();
    files[11].1 =
        "name: o11\ndomains: [o11.test]\nupstreams:\n  u:\n    targets: [\"mirror://\"]\n    balance: 7\n".into();
    files[17].1 = "name: o17\ndomains: [o17.test]\nupstreams:\n  u:\n    targets: [\"mirror://\"]\nroutes:\n  - path: /x\n    upstream: v\n".into();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let (out, dir) = check_files("many_files", gateway, &refs, &[]);
    let placed = error_places(&out);
    let d = dir.display();
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert_eq!(placed.len(), 3, "{out}");
    assert_eq!(placed[0], format!("{d}/orgs/o03.yaml:3:1"), "{out}");
    assert!(placed[1].starts_with(&format!("{d}/orgs/o11.yaml:6:")), "{out}");
    assert!(placed[2].starts_with(&format!("{d}/orgs/o17.yaml:8:")), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
