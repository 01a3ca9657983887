//! `${VAR}` and `${VAR:-default}` in config text, before YAML parsing so that line numbers stay
//! true. `$${` writes a literal `${`. A variable that is unset and has no default is an error,
//! except inside a comment line.

use crate::error::ConfigError;
use std::path::Path;

/// Replaces every `${NAME}` / `${NAME:-default}` using `lookup`; collects one error per unset name.
pub fn interpolate(
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let is_comment = line.trim_start().starts_with('#');
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(after_escape) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = after_escape;
            } else if let Some(body) = after.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => {
                        let expr = &body[..end];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        match (valid, lookup(name), default) {
                            (true, Some(v), _) => out.push_str(&v),
                            (true, None, Some(d)) => out.push_str(d),
                            _ if is_comment => out.push_str(&after[..end + 3]),
                            (false, _, _) => errors.push(
                                ConfigError::new(file, format!("invalid variable name in `${{{expr}}}`"))
                                    .with_position(lineno as u32 + 1, (line.len() - after.len()) as u32 + 1),
                            ),
                            (true, None, None) => errors.push(
                                ConfigError::new(
                                    file,
                                    format!("environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"),
                                )
                                .with_position(lineno as u32 + 1, (line.len() - after.len()) as u32 + 1),
                            ),
                        }
                        rest = &body[end + 1..];
                    }
                    None => {
                        out.push_str(after);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "HOST" => Some("api.test".into()),
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
}
