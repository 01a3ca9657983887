//! Header and query modifiers over real sockets: a modifier the config cannot have is refused by
//! `cratopus check` and `cratopus run` with its file and line.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cratopus");

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
