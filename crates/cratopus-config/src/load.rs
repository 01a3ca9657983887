//! Reading config files: text → `${ENV}` interpolation → YAML → serde types, then
//! [`crate::validate`]. Relative paths are relative to the file that names them.

use crate::error::{ConfigError, ConfigErrors};
use crate::interpolate::interpolate;
use crate::model::{GatewayConfig, OrgSource, OrganizationConfig};
use crate::validate;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// An organization and the file it came from (the gateway file for inline ones).
#[derive(Debug, Clone)]
pub struct LoadedOrg {
    pub file: PathBuf,
    pub config: OrganizationConfig,
}

/// A whole config, loaded and validated.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub file: PathBuf,
    pub gateway: GatewayConfig,
    pub orgs: Vec<LoadedOrg>,
    /// Every file read, to watch for changes.
    pub files: Vec<PathBuf>,
    /// Directories whose globs chose organization files: a new file there is a change too.
    pub watch_dirs: Vec<PathBuf>,
    /// When reading began: a file modified after this may not be in this config.
    pub read_at: std::time::SystemTime,
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses one YAML document into `T`, turning the parser's error into a located [`ConfigError`],
/// joined by every other shape problem of the file that `schema` finds ([`crate::shape`]).
fn parse_yaml<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    schema: fn() -> serde_json::Value,
) -> Result<T, ConfigErrors> {
    let text = interpolate(file, text, &env_lookup).map_err(ConfigErrors)?;
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<T>(&text, options).map_err(|e| {
        let mut err = ConfigError::new(file, yaml_message(&e));
        if let Some(loc) = e.location()
            && loc.line() > 0
        {
            err = err.with_position(loc.line() as u32, loc.column().max(1) as u32);
        }
        // The schema's findings on other lines; serde's own error stays, whatever the schema says.
        let mut all: Vec<ConfigError> = crate::shape::problems(file, &text, &schema())
            .into_iter()
            .filter(|s| s.line.is_none_or(|l| Some(l) != err.line))
            .collect();
        all.push(err);
        all.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
        ConfigErrors(all)
    })
}

/// The parser's message without its own position prefix or snippet (we print the position).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    let msg = msg.lines().next().unwrap_or("").trim().to_string();
    // serde-saphyr ends messages with " at line N, column M"; we print the position ourselves.
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    friendlier(&msg)
}

/// serde's "unknown field `timout`, expected one of a, b" becomes "unknown key `timout`, did you
/// mean `timeout`?" when one name is close; likewise for unknown variants ("values").
fn friendlier(msg: &str) -> String {
    for (prefix, noun) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = msg.strip_prefix(prefix) else { continue };
        let Some((got, tail)) = rest.split_once('`') else {
            continue;
        };
        let known: Vec<&str> = tail
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .split(", ")
            .map(|k| k.trim_matches('`'))
            .filter(|k| !k.is_empty())
            .collect();
        let hint = crate::validate::hint(got, &known);
        return if hint.is_empty() {
            format!("unknown {noun} `{got}`; expected one of: {}", known.join(", "))
        } else {
            format!("unknown {noun} `{got}`{hint}")
        };
    }
    msg.to_string()
}

/// `p` relative to the directory of `file` (absolute paths as they are).
pub fn resolve_path(file: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new("")).join(path)
    }
}

/// Every certificate, key and CA file the config names, resolved.
fn tls_files(gateway_file: &Path, gateway: &GatewayConfig, orgs: &[LoadedOrg]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(c) = &gateway.tls.default_certificate {
        out.push(resolve_path(gateway_file, &c.cert.value));
        out.push(resolve_path(gateway_file, &c.key.value));
    }
    for org in orgs {
        let f = org.file.as_path();
        if let Some(t) = &org.config.tls {
            out.extend(t.cert.iter().chain(&t.key).map(|p| resolve_path(f, &p.value)));
            for c in &t.certificates {
                out.push(resolve_path(f, &c.cert.value));
                out.push(resolve_path(f, &c.key.value));
            }
            if let Some(c) = &t.client_auth {
                out.push(resolve_path(f, &c.ca.value));
            }
        }
        for u in org.config.upstreams.values() {
            if let Some(t) = &u.tls {
                out.extend(t.ca.iter().map(|p| resolve_path(f, p)));
                if let Some(c) = &t.client_cert {
                    out.push(resolve_path(f, &c.cert));
                    out.push(resolve_path(f, &c.key));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn read(file: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(file)
        .map_err(|e| ConfigErrors::one(ConfigError::new(file, format!("cannot read file: {e}"))))
}

/// Loads `gateway.yaml` at `path` with the organization files it names.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let read_at = std::time::SystemTime::now();
    let text = read(path)?;
    let mut cfg = load_str(path, &text)?;
    cfg.read_at = read_at;
    Ok(cfg)
}

/// Loads a gateway config from `text`, as if read from `path` (used for the embedded default).
pub fn load_str(path: &Path, text: &str) -> Result<LoadedConfig, ConfigErrors> {
    let read_at = std::time::SystemTime::now();
    let gateway: GatewayConfig = parse_yaml(path, text, crate::schema::gateway_schema)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut errors = Vec::new();
    let mut orgs = Vec::new();
    let mut files = vec![path.to_path_buf()];
    let mut watch_dirs = Vec::new();
    for source in &gateway.organizations.0 {
        match source {
            OrgSource::Inline(org) => orgs.push(LoadedOrg {
                file: path.to_path_buf(),
                config: (**org).clone(),
            }),
            OrgSource::Path(pattern) => {
                let full = base.join(&pattern.value);
                let full_str = full.to_string_lossy().to_string();
                let is_glob = pattern.value.contains(['*', '?', '[']);
                let mut matched: Vec<PathBuf> = match glob::glob(&full_str) {
                    Ok(paths) => paths.filter_map(Result::ok).collect(),
                    Err(e) => {
                        errors.push(ConfigError::at(
                            path,
                            &pattern.referenced,
                            format!("invalid organizations pattern `{}`: {e}", pattern.value),
                        ));
                        continue;
                    }
                };
                matched.sort();
                if is_glob {
                    if let Some(dir) = full.parent() {
                        watch_dirs.push(dir.to_path_buf());
                    }
                } else if matched.is_empty() {
                    errors.push(ConfigError::new(
                        path,
                        format!("organization file `{}` does not exist", full.display()),
                    ));
                }
                for file in matched {
                    let loaded = read(&file)
                        .and_then(|t| parse_yaml::<OrganizationConfig>(&file, &t, crate::schema::organization_schema));
                    match loaded {
                        Ok(config) => orgs.push(LoadedOrg {
                            file: file.clone(),
                            config,
                        }),
                        Err(e) => errors.extend(e.0),
                    }
                    files.push(file);
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // Certificate, key and CA files: a change to one reloads the config.
    files.extend(tls_files(path, &gateway, &orgs));
    let loaded = LoadedConfig {
        file: path.to_path_buf(),
        gateway,
        orgs,
        files,
        watch_dirs,
        read_at,
    };
    validate::validate(&loaded)?;
    Ok(loaded)
}
