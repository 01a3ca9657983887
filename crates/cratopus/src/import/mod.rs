//! `cratopus import`: another gateway's configuration as a cratopus config.
//!
//! Only KrakenD today (`import krakend krakend.json`). The conversion itself is a pure function
//! in [`krakend`]; this module reads the file, writes the YAML (to standard output or `-o`),
//! and prints every setting it could not convert, with its JSON path, to standard error. The
//! exit status is non-zero only when the input cannot be read or is not JSON: a partial
//! conversion is still a conversion, and the list says what to finish by hand.

pub mod krakend;
use cratopus_config::yaml_doc as yaml;

use std::path::Path;
use std::process::ExitCode;

/// `cratopus import krakend FILE [-o OUT]`.
pub fn krakend(file: &Path, out: Option<&Path>) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}:{}:{}: not JSON: {e}", file.display(), e.line(), e.column());
            return ExitCode::FAILURE;
        }
    };
    let name = file
        .file_name()
        .map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let conversion = match krakend::convert(&doc, &name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &conversion.yaml) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", conversion.yaml),
    }
    for s in &conversion.skipped {
        eprintln!("not converted: {s}");
    }
    if !conversion.skipped.is_empty() {
        eprintln!(
            "{} setting(s) not converted; the rest is converted. Check the result with `cratopus check -c <file>`.",
            conversion.skipped.len()
        );
    }
    ExitCode::SUCCESS
}
