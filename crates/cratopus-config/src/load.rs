//! Reading config files: text → `${ENV}` interpolation → YAML → serde types, then
//! [`crate::validate`]. Relative paths are relative to the file that names them.

use crate::error::{ConfigError, ConfigErrors};
use crate::interpolate::interpolate_mapped;
use crate::locate::Sources;
use crate::model::{GatewayConfig, OrgSource, OrganizationConfig};
use crate::reuse::Reuse;
use crate::shape::Index;
use crate::validate;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An organization and the file it came from (the gateway file for inline ones).
#[derive(Debug, Clone)]
pub struct LoadedOrg {
    pub file: PathBuf,
    /// Shared: a reload takes the organizations of the files that did not change from the
    /// running config without copying them ([`crate::reuse`]).
    pub config: Arc<OrganizationConfig>,
    /// Where in `file` the organization is written, as a key path: `""` for an organization
    /// file, `/organizations/2` (or `/organizations`) for an inline one. Validation names the
    /// values it refuses below it.
    pub pointer: String,
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
    /// The text of the YAML files, to place the errors found later (by compiling) at their line
    /// ([`Sources::place`]).
    pub sources: Arc<Sources>,
    /// How many organization files were taken from the previous config rather than parsed
    /// ([`load_file_reusing`]); 0 for a first load.
    pub reused_files: usize,
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Whether `text` holds no YAML at all: nothing but blank lines, comments and document markers.
/// Such a file is refused rather than read as "every default": a gateway.yaml truncated by an
/// editor or a full disk must not become a config without organizations.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

/// Parses one file into `T`: `${ENV}` interpolation, then YAML. On failure every shape problem
/// of the file that `schema` finds joins serde's own error ([`crate::shape`]), each placed in the
/// file as written, in `errors`. The substituted text is kept in `sources` either way.
fn parse_file<T: DeserializeOwned>(
    file: &Path,
    written: &str,
    schema: fn() -> serde_json::Value,
    sources: &mut Sources,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    parse_text(file, written, true, schema, sources, errors)
}

/// [`parse_file`], with `${ENV}` interpolation only when `interpolate`: a document that came
/// from the cluster is the same on every node and must not take values from one node's
/// environment.
fn parse_text<T: DeserializeOwned>(
    file: &Path,
    written: &str,
    interpolate: bool,
    schema: fn() -> serde_json::Value,
    sources: &mut Sources,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    if !substitute(file, written, interpolate, sources, errors) {
        return None;
    }
    let text = sources.text(file).unwrap_or_default();
    deserialize(file, text, schema, sources, errors)
}

/// Refuses a blank file, else replaces `${ENV}` (when `interpolate`) and keeps the text in
/// `sources`. Whether the file can be parsed.
fn substitute(
    file: &Path,
    written: &str,
    interpolate: bool,
    sources: &mut Sources,
    errors: &mut Vec<ConfigError>,
) -> bool {
    if is_blank(written) {
        errors.push(
            ConfigError::new(
                file,
                "the file is empty (nothing but blank lines and comments); a config that loads nothing is refused",
            )
            .with_position(1, 1),
        );
        return false;
    }
    let substituted = if interpolate {
        interpolate_mapped(file, written, &env_lookup)
    } else {
        Ok((written.to_string(), Default::default()))
    };
    match substituted {
        Ok((text, map)) => {
            sources.add(file, text, map);
            true
        }
        Err(e) => {
            errors.extend(e);
            false
        }
    }
}

/// The YAML of `file` (`text`, already substituted and kept in `sources`) into `T`; on failure
/// serde's error and the schema's findings, placed, in `errors`.
fn deserialize<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    schema: fn() -> serde_json::Value,
    sources: &Sources,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<T>(text, options) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut err = ConfigError::new(file, yaml_message(&e));
            if let Some(loc) = e.location()
                && loc.line() > 0
            {
                err = err.with_position(loc.line() as u32, loc.column().max(1) as u32);
            }
            // The schema's findings on other lines; serde's own error stays, whatever the schema says.
            let mut all: Vec<ConfigError> = crate::shape::problems(file, text, &schema())
                .into_iter()
                .filter(|s| s.line.is_none_or(|l| Some(l) != err.line))
                .collect();
            all.push(err);
            sources.place(&mut all);
            all.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
            errors.extend(all);
            None
        }
    }
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

/// A config file's text, read with the size limit of [`crate::files`].
fn read(file: &Path) -> Result<String, String> {
    crate::files::read_text_limited(file)
}

/// Organization files as they would be after a change that is not written yet: what the admin
/// API loads and compiles before it writes anything, so that a refused change leaves the files
/// as they were.
#[derive(Debug, Default)]
pub struct Overlay {
    /// File → its new text, or `None` for a file to be removed.
    files: std::collections::HashMap<PathBuf, Option<String>>,
}

impl Overlay {
    /// `file` will hold `text` (a new file, when it matches an organizations glob, is read too).
    pub fn write(&mut self, file: PathBuf, text: String) {
        self.files.insert(file, Some(text));
    }

    /// `file` will be gone.
    pub fn remove(&mut self, file: PathBuf) {
        self.files.insert(file, None);
    }

    fn read(&self, file: &Path) -> Result<String, String> {
        match self.files.get(file) {
            Some(Some(text)) => Ok(text.clone()),
            Some(None) => Err("removed".into()),
            None => read(file),
        }
    }

    /// What a glob matched on disk, with the overlay's new files that it matches added and its
    /// removed files taken out.
    fn adjust(&self, pattern: &str, matched: &mut Vec<PathBuf>) {
        matched.retain(|f| !matches!(self.files.get(f), Some(None)));
        if let Ok(p) = glob::Pattern::new(pattern) {
            for (f, text) in &self.files {
                if text.is_some() && p.matches_path(f) && !matched.contains(f) {
                    matched.push(f.clone());
                }
            }
        }
        matched.sort();
    }
}

/// Loads `gateway.yaml` at `path` with the organization files it names.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    load_file_overlaid(path, &Overlay::default())
}

/// [`load_file`] as if the changes of `overlay` were written.
pub fn load_file_overlaid(path: &Path, overlay: &Overlay) -> Result<LoadedConfig, ConfigErrors> {
    load_file_from(path, overlay, None)
}

/// [`load_file`] for a reload: the organization files whose text is the same as when `prev`
/// (the running config) read them are not parsed again ([`crate::reuse`]). Every file is still
/// read and the whole config validated, so the result, and every error, is what
/// [`load_file`] would give.
pub fn load_file_reusing(path: &Path, prev: &LoadedConfig) -> Result<LoadedConfig, ConfigErrors> {
    load_file_from(path, &Overlay::default(), Some(prev))
}

fn load_file_from(path: &Path, overlay: &Overlay, prev: Option<&LoadedConfig>) -> Result<LoadedConfig, ConfigErrors> {
    let read_at = std::time::SystemTime::now();
    let text = read(path).map_err(|e| ConfigErrors::one(ConfigError::new(path, e)))?;
    let mut cfg = load_all(path, &text, &[], overlay, prev)?;
    cfg.read_at = read_at;
    Ok(cfg)
}

/// One entry of gateway.yaml's `organizations`, with its key path.
enum Source<'a> {
    Files(String, &'a str),
    Inline(String, &'a OrganizationConfig),
}

/// The key path of the `i`th organization source: `organizations` is one source or a
/// list of them.
fn source_pointer(index: Option<&Index>, i: usize) -> String {
    let is_list = index
        .and_then(|x| x.value("/organizations"))
        .is_some_and(serde_json::Value::is_array);
    if is_list {
        format!("/organizations/{i}")
    } else {
        "/organizations".to_string()
    }
}

/// The organization files that a gateway.yaml which does not parse names, read from its plain
/// YAML tree, so that their own errors are reported in the same run.
fn file_sources_of_broken(index: Option<&Index>) -> Vec<(String, String)> {
    let Some(v) = index.and_then(|x| x.value("/organizations")) else {
        return Vec::new();
    };
    match v {
        serde_json::Value::String(s) => vec![("/organizations".to_string(), s.clone())],
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| item.as_str().map(|s| (format!("/organizations/{i}"), s.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// One organization file, read and parsed on its own (see [`read_org_files`]).
struct OrgFile {
    config: Option<Arc<OrganizationConfig>>,
    sources: Sources,
    errors_found: Vec<ConfigError>,
    /// The parse was the previous config's (the text had not changed).
    reused: bool,
}

/// Reads and parses organization files, in their order. Parsing YAML is most of a large
/// config's load time (10,000 routes in 100 files: about 100 ms of one core), and the files
/// do not depend on each other, so with many files they are parsed on all cores; the results
/// are taken in file order, so errors and organizations come out as with one thread.
///
/// A file whose text (after `${ENV}` substitution) is the same as when `reuse`'s config read it
/// is not parsed again: its organization is that config's, shared ([`crate::reuse`]).
fn read_org_files(
    matched: Vec<PathBuf>,
    overlay: &Overlay,
    reuse: Option<&Reuse<'_>>,
) -> Vec<(PathBuf, Result<OrgFile, String>)> {
    let one = |file: PathBuf| {
        let outcome = overlay.read(&file).map(|written| {
            let mut sources = Sources::default();
            let mut errors_found = Vec::new();
            let mut config = None;
            let mut reused = false;
            if substitute(&file, &written, true, &mut sources, &mut errors_found) {
                let text = sources.text(&file).unwrap_or_default();
                config = match reuse.and_then(|r| r.organization(&file, text)) {
                    Some(c) => {
                        reused = true;
                        Some(c)
                    }
                    None => deserialize(
                        &file,
                        text,
                        crate::schema::organization_schema,
                        &sources,
                        &mut errors_found,
                    )
                    .map(Arc::new),
                };
            }
            OrgFile {
                config,
                sources,
                errors_found,
                reused,
            }
        });
        (file, outcome)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below a few files per thread, starting threads costs more than it saves.
    if threads < 2 || matched.len() < 8 {
        return matched.into_iter().map(one).collect();
    }
    let per_thread = matched.len().div_ceil(threads);
    let mut chunks: Vec<Vec<PathBuf>> = Vec::new();
    let mut rest = matched.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(per_thread).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(parsed) => parsed,
                // A parser panic is a bug; surface it where it happened rather than lose files.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Loads a gateway config from `text`, as if read from `path` (used for the embedded default).
///
/// Every file is read and checked even when another has errors: all the shape errors of all
/// files are reported, then those of validation, which runs over what parsed.
pub fn load_str(path: &Path, text: &str) -> Result<LoadedConfig, ConfigErrors> {
    load_all(path, text, &[], &Overlay::default(), None)
}

/// Loads a gateway config from `text` (as if read from `path`) with the organizations of a
/// cluster's config version added to its own: what a node of a cluster runs, and what the
/// control plane checks a change against. The bundle's documents are not `${ENV}`-interpolated
/// and errors in them name their virtual file (`cluster/v7/acme.json`) and line.
pub fn load_with_bundle(
    path: &Path,
    text: &str,
    bundle: &crate::cluster::Bundle,
) -> Result<LoadedConfig, ConfigErrors> {
    load_all(path, text, &bundle.documents(), &Overlay::default(), None)
}

/// [`load_with_bundle`] for a reload, reusing the parse of the organization files whose text
/// did not change since `prev` read them, as [`load_file_reusing`] does.
pub fn load_with_bundle_reusing(
    path: &Path,
    text: &str,
    bundle: &crate::cluster::Bundle,
    prev: &LoadedConfig,
) -> Result<LoadedConfig, ConfigErrors> {
    load_all(path, text, &bundle.documents(), &Overlay::default(), Some(prev))
}

/// [`load_with_bundle`] with the organization documents given as (file name, YAML or JSON
/// text): what `cratopus push` checks before it makes a bundle of them, so that errors name
/// the files as written. Not `${ENV}`-interpolated, as on the nodes.
pub fn load_with_documents(
    path: &Path,
    text: &str,
    documents: &[(PathBuf, String)],
) -> Result<LoadedConfig, ConfigErrors> {
    load_all(path, text, documents, &Overlay::default(), None)
}

/// gateway.yaml's text, the files it names (as changed by `overlay`), and `documents`; the
/// organization files unchanged since `prev` read them are taken from it rather than parsed.
fn load_all(
    path: &Path,
    text: &str,
    documents: &[(PathBuf, String)],
    overlay: &Overlay,
    prev: Option<&LoadedConfig>,
) -> Result<LoadedConfig, ConfigErrors> {
    let read_at = std::time::SystemTime::now();
    let reuse = prev.map(Reuse::of);
    let mut reused_files = 0;
    let mut sources = Sources::default();
    let mut errors = Vec::new();
    let gateway: Option<GatewayConfig> =
        parse_file(path, text, crate::schema::gateway_schema, &mut sources, &mut errors);
    let gw_index = sources.index(path);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let mut listed: Vec<Source<'_>> = Vec::new();
    let broken_sources;
    match &gateway {
        Some(g) => {
            for (i, source) in g.organizations.0.iter().enumerate() {
                let pointer = source_pointer(gw_index.as_ref(), i);
                listed.push(match source {
                    OrgSource::Inline(org) => Source::Inline(pointer, org),
                    OrgSource::Path(p) => Source::Files(pointer, p.value.as_str()),
                });
            }
        }
        None => {
            // With an unset variable the file was not substituted: read it with empty values,
            // only to find the organization files.
            let fallback = gw_index.is_none().then(|| {
                let lookup = |n: &str| Some(env_lookup(n).unwrap_or_default());
                crate::interpolate::interpolate(path, text, &lookup)
                    .ok()
                    .and_then(|t| Index::build(&t))
            });
            broken_sources = file_sources_of_broken(gw_index.as_ref().or(fallback.flatten().as_ref()));
            listed.extend(
                broken_sources
                    .iter()
                    .map(|(ptr, p)| Source::Files(ptr.clone(), p.as_str())),
            );
        }
    }

    let mut orgs = Vec::new();
    let mut files = vec![path.to_path_buf()];
    let mut watch_dirs = Vec::new();
    let mut org_files_failed = false;
    // Errors about organization sources, at the key that names them: placed below.
    let mut unplaced = Vec::new();
    for source in listed {
        let (pointer, pattern) = match source {
            Source::Inline(pointer, org) => {
                sources.add_org(path, &pointer);
                orgs.push(LoadedOrg {
                    file: path.to_path_buf(),
                    config: Arc::new(org.clone()),
                    pointer,
                });
                continue;
            }
            Source::Files(pointer, pattern) => (pointer, pattern),
        };
        let full = base.join(pattern);
        let full_str = full.to_string_lossy().to_string();
        let is_glob = pattern.contains(['*', '?', '[']);
        let mut matched: Vec<PathBuf> = match glob::glob(&full_str) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                unplaced.push(ConfigError::at_key(
                    path,
                    &pointer,
                    format!("invalid organizations pattern `{pattern}`: {e}"),
                ));
                org_files_failed = true;
                continue;
            }
        };
        if is_glob {
            overlay.adjust(&full_str, &mut matched);
        }
        matched.sort();
        if is_glob {
            if let Some(dir) = full.parent() {
                watch_dirs.push(dir.to_path_buf());
            }
        } else if matched.is_empty() {
            unplaced.push(ConfigError::at_key(
                path,
                &pointer,
                format!("organization file `{}` does not exist", full.display()),
            ));
            org_files_failed = true;
        }
        for (file, outcome) in read_org_files(matched, overlay, reuse.as_ref()) {
            files.push(file.clone());
            match outcome {
                Err(e) => {
                    // Reported at the line that names the file: the file itself has no line.
                    unplaced.push(ConfigError::at_key(path, &pointer, format!("organization file: {e}")));
                    org_files_failed = true;
                }
                Ok(OrgFile {
                    config,
                    sources: read,
                    mut errors_found,
                    reused,
                }) => {
                    reused_files += usize::from(reused);
                    sources.merge(read);
                    errors.append(&mut errors_found);
                    match config {
                        Some(config) => {
                            sources.add_org(&file, "");
                            orgs.push(LoadedOrg {
                                file,
                                config,
                                pointer: String::new(),
                            });
                        }
                        None => org_files_failed = true,
                    }
                }
            }
        }
    }

    for (file, text) in documents {
        let config: Option<OrganizationConfig> = parse_text(
            file,
            text,
            false,
            crate::schema::organization_schema,
            &mut sources,
            &mut errors,
        );
        match config {
            Some(config) => {
                sources.add_org(file, "");
                orgs.push(LoadedOrg {
                    file: file.clone(),
                    config: Arc::new(config),
                    pointer: String::new(),
                });
            }
            None => org_files_failed = true,
        }
    }

    sources.place(&mut unplaced);
    errors.append(&mut unplaced);
    let Some(gateway) = gateway else {
        return Err(ConfigErrors(errors));
    };
    // Certificate, key and CA files: a change to one reloads the config.
    files.extend(tls_files(path, &gateway, &orgs));
    let sources = Arc::new(sources);
    let loaded = LoadedConfig {
        file: path.to_path_buf(),
        gateway,
        orgs,
        files,
        watch_dirs,
        read_at,
        sources: sources.clone(),
        reused_files,
    };
    // Validation over what parsed; the checks that need every organization (the default
    // organization exists, there is one at all) only when all of them did.
    let mut problems = validate::problems(&loaded, !org_files_failed && errors.is_empty());
    sources.place(&mut problems);
    errors.extend(problems);
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(errors))
    }
}
