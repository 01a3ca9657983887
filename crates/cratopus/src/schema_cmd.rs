//! `cratopus schema [--org] [-o FILE]`: the JSON Schema of `gateway.yaml` (or, with `--org`, of
//! an organization file), for editors: `cratopus schema > cratopus.schema.json`.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::ExitCode;

/// Prints the schema as pretty JSON to standard output, or writes it to `out`.
pub fn run(org: bool, out: Option<&Path>) -> ExitCode {
    let schema = if org {
        cratopus_config::organization_schema()
    } else {
        cratopus_config::gateway_schema()
    };
    let text = cratopus_config::schema::to_pretty_json(&schema);
    let result = match out {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
                // `cratopus schema | head`: the reader went away, nothing is wrong here.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(|e| format!("cannot write to standard output: {e}")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
