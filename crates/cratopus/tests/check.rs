//! `cratopus check` on broken configs: each file under tests/fixtures/check/ gives the message
//! in its `.expected` golden file (stderr, stdout and the exit code). Run with
//! `UPDATE_GOLDEN=1` to rewrite the golden files after an intended change, and read the diff.

use std::path::Path;
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
