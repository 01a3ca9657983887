//! `${VAR}` and `${VAR:-default}` in config text, before YAML parsing. `$${` writes a literal
//! `${`. A variable that is unset and has no default is an error, except inside a comment line.
//!
//! The YAML parser sees the substituted text, so the places it reports are places in that text;
//! [`PosMap`] takes them back to the file as written, so that a caret points at what the
//! operator wrote (`${PORT}`), not at a column shifted by the length of a value.

use crate::error::ConfigError;
use std::path::Path;

/// Replaces every `${NAME}` / `${NAME:-default}` using `lookup`; collects one error per unset name.
pub fn interpolate(
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    interpolate_mapped(file, text, lookup).map(|(text, _)| text)
}

/// [`interpolate`], with the map from places in the result to places in `text`.
pub fn interpolate_mapped(
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, PosMap), Vec<ConfigError>> {
    if !text.contains("${") {
        return Ok((text.to_string(), PosMap::default()));
    }
    let mut out = Builder::new(text.len());
    let mut errors = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let lineno = lineno as u32 + 1;
        // The 1-based column (in characters) of a byte offset of this line.
        let col = |byte: usize| line[..byte].chars().count() as u32 + 1;
        let is_comment = line.trim_start().starts_with('#');
        let mut at = 0; // byte offset in `line` of what is left to copy
        while let Some(pos) = line[at..].find('$').map(|p| p + at) {
            out.literal(&line[at..pos], lineno, col(at));
            let after = &line[pos..];
            if after.starts_with("$${") {
                out.substituted("${", lineno, col(pos));
                at = pos + 3;
            } else if let Some(body) = after.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => {
                        let expr = &body[..end];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        let whole = &after[..end + 3];
                        match (valid, lookup(name), default) {
                            (true, Some(v), _) => out.substituted(&v, lineno, col(pos)),
                            (true, None, Some(d)) => out.substituted(d, lineno, col(pos)),
                            _ if is_comment => out.literal(whole, lineno, col(pos)),
                            (false, _, _) => errors.push(
                                ConfigError::new(file, format!("invalid variable name in `${{{expr}}}`"))
                                    .with_position(lineno, col(pos)),
                            ),
                            (true, None, None) => errors.push(
                                ConfigError::new(
                                    file,
                                    format!("environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"),
                                )
                                .with_position(lineno, col(pos)),
                            ),
                        }
                        at = pos + whole.len();
                    }
                    None => {
                        out.literal(after, lineno, col(pos));
                        at = line.len();
                    }
                }
            } else {
                out.literal("$", lineno, col(pos));
                at = pos + 1;
            }
        }
        out.literal(&line[at..], lineno, col(at));
    }
    if errors.is_empty() {
        Ok((out.text, PosMap { lines: Some(out.lines) }))
    } else {
        Err(errors)
    }
}

/// Where the characters of a substituted text came from. Identity for a text without `${`.
#[derive(Debug, Clone, Default)]
pub struct PosMap {
    /// For each line of the substituted text, its pieces in order; `None`: nothing was replaced.
    lines: Option<Vec<Vec<Piece>>>,
}

/// A run of characters of one substituted line from `at` on: copied from the written file at
/// (`line`, `column`) onwards, or (`copied` false) the value of the `${…}` written there.
#[derive(Debug, Clone, Copy)]
struct Piece {
    at: u32,
    line: u32,
    column: u32,
    copied: bool,
}

impl PosMap {
    /// The place in the written file of (`line`, `column`) (1-based, characters) of the
    /// substituted text: a place inside a substituted value is that of its `${`.
    pub fn written(&self, line: u32, column: u32) -> (u32, u32) {
        let Some(lines) = &self.lines else {
            return (line, column);
        };
        let Some(pieces) = lines.get((line as usize).wrapping_sub(1)) else {
            return (line, column);
        };
        let c = column.saturating_sub(1);
        match pieces.iter().rev().find(|p| p.at <= c).or(pieces.first()) {
            Some(p) if p.copied => (p.line, p.column + c.saturating_sub(p.at)),
            Some(p) => (p.line, p.column),
            None => (line, column),
        }
    }
}

/// The substituted text with its pieces, line by line.
struct Builder {
    text: String,
    lines: Vec<Vec<Piece>>,
    /// 0-based column (characters) where the next character goes.
    column: u32,
}

impl Builder {
    fn new(capacity: usize) -> Builder {
        Builder {
            text: String::with_capacity(capacity),
            lines: vec![Vec::new()],
            column: 0,
        }
    }

    fn literal(&mut self, s: &str, line: u32, column: u32) {
        self.push(s, line, column, true);
    }

    fn substituted(&mut self, s: &str, line: u32, column: u32) {
        self.push(s, line, column, false);
    }

    fn push(&mut self, s: &str, line: u32, column: u32, copied: bool) {
        if s.is_empty() {
            return;
        }
        let mut piece = Piece {
            at: self.column,
            line,
            column,
            copied,
        };
        self.current().push(piece);
        for ch in s.chars() {
            self.text.push(ch);
            if ch == '\n' {
                self.lines.push(Vec::new());
                self.column = 0;
                // A value spanning lines: its next line still comes from the `${`.
                piece.at = 0;
                if !copied {
                    self.current().push(piece);
                }
            } else {
                self.column += 1;
            }
        }
    }

    fn current(&mut self) -> &mut Vec<Piece> {
        let last = self.lines.len() - 1;
        &mut self.lines[last]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "HOST" => Some("api.test".into()),
            "TWO" => Some("a\nb".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_and_defaults() {
        let out = interpolate(
            Path::new("g.yaml"),
            "a: ${HOST}:${PORT}\nb: ${NOPE:-x}\nc: $${HOST} $5\n",
            &env,
        )
        .unwrap();
        assert_eq!(out, "a: api.test:9000\nb: x\nc: ${HOST} $5\n");
    }

    #[test]
    fn unset_is_an_error_with_line() {
        let errs = interpolate(Path::new("g.yaml"), "a: 1\nb: ${MISSING}\n# ${ALSO_MISSING}\n", &env).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(2));
        assert_eq!(errs[0].column, Some(4));
        assert!(errs[0].message.contains("MISSING"));
    }

    #[test]
    fn places_map_back_to_the_file_as_written() {
        let written = "a: ${HOST}:${PORT} é: zz\nb: ${TWO} q\nc: 1\n";
        let (text, map) = interpolate_mapped(Path::new("g.yaml"), written, &env).unwrap();
        assert_eq!(text, "a: api.test:9000 é: zz\nb: a\nb q\nc: 1\n");
        // Before any value, inside one, between, after.
        assert_eq!(map.written(1, 1), (1, 1));
        assert_eq!(map.written(1, 6), (1, 4), "inside ${{HOST}}");
        assert_eq!(map.written(1, 12), (1, 11), "the `:` between");
        assert_eq!(map.written(1, 13), (1, 12), "inside ${{PORT}}");
        // `zz` comes after a two-byte character: columns count characters.
        assert_eq!(map.written(1, 21), (1, 23));
        // A value with a newline: both of its lines are the `${`, what follows keeps its column.
        assert_eq!(map.written(2, 4), (2, 4));
        assert_eq!(map.written(3, 1), (2, 4));
        assert_eq!(map.written(3, 3), (2, 11));
        assert_eq!(map.written(4, 4), (3, 4));
        // No substitution: identity.
        let (_, id) = interpolate_mapped(Path::new("g.yaml"), "a: 1\n", &env).unwrap();
        assert_eq!(id.written(1, 4), (1, 4));
    }
}
