//! Printing config problems for people: the place, the source line and a caret under the spot.
//!
//! ```text
//! error: unknown key `timout`, did you mean `timeout`?
//!   --> gateway.yaml:3:5
//!    |
//!  3 |     timout: 5s
//!    |     ^
//! ```

use crate::error::ConfigError;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Renders `problems` one after another, reading each file once for its source lines.
pub fn render(problems: &[(Severity, ConfigError)]) -> String {
    let mut sources: HashMap<PathBuf, Option<Vec<String>>> = HashMap::new();
    let mut out = String::new();
    for (severity, e) in problems {
        let (msg, hint) = split_hint(&e.message);
        let _ = writeln!(out, "{}: {msg}", severity.label());
        let _ = write!(out, "  --> {}", e.file.display());
        if let Some(line) = e.line {
            let _ = write!(out, ":{line}");
            if let Some(col) = e.column {
                let _ = write!(out, ":{col}");
            }
        }
        out.push('\n');
        let lines = sources.entry(e.file.clone()).or_insert_with(|| {
            crate::files::read_text_limited(&e.file)
                .ok()
                .map(|t| t.lines().map(str::to_string).collect())
        });
        if let (Some(lines), Some(line)) = (lines.as_ref(), e.line)
            && let Some(text) = lines.get(line as usize - 1)
        {
            let gutter = line.to_string().len();
            let col = e.column.unwrap_or(1).max(1) as usize;
            // The caret spans the word at the spot (a key, a value), or one character.
            let width = text
                .chars()
                .skip(col - 1)
                .take_while(|c| !c.is_whitespace() && !matches!(c, ':' | ',' | ']' | '}'))
                .count()
                .max(1);
            let _ = writeln!(out, "{:gutter$} |", "");
            let _ = writeln!(out, "{line} | {text}");
            let _ = writeln!(out, "{:gutter$} | {}{}", "", " ".repeat(col - 1), "^".repeat(width));
        }
        if let Some(h) = hint {
            let _ = writeln!(out, "  = help: {h}");
        }
        out.push('\n');
    }
    out
}

/// Messages may end in `, did you mean `x`?`; that part is shown as help.
fn split_hint(message: &str) -> (&str, Option<&str>) {
    match message.find(", did you mean") {
        Some(i) => (&message[..i], Some(message[i + 2..].trim())),
        None => (message, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_spot() {
        let dir = std::env::temp_dir().join(format!("cratopus-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gw.yaml");
        std::fs::write(&file, "listeners:\n  - bind: x\n    timout: 5s\n").unwrap();
        let e = ConfigError::new(&file, "unknown key `timout`, did you mean `timeout`?").with_position(3, 5);
        let text = render(&[(Severity::Error, e)]);
        let expected = format!(
            "error: unknown key `timout`\n  --> {}:3:5\n  |\n3 |     timout: 5s\n  |     ^^^^^^\n  = help: did you mean `timeout`?\n\n",
            file.display()
        );
        assert_eq!(text, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
