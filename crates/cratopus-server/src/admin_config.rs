//! Editing the config through the admin API, on a single node with no database: organizations
//! and their routes are created, changed and deleted in the organization files themselves.
//!
//! Every change is checked as `cratopus check` would check the files after it (load, validate,
//! compile, over every file, with the change held in memory by an [`Overlay`]), and refused
//! with the same messages before anything is written. An accepted change is written atomically
//! (a temporary file beside the target, fsync, rename), then the gateway reloads as it does on
//! a file change; if that reload fails (another file changed on disk meanwhile) the file is put
//! back as it was. One change at a time.
//!
//! Only organization files are edited: an organization written inline in gateway.yaml is
//! read-only here (409), and new organizations go to the directory of gateway.yaml's first
//! organizations glob (`orgs/*.yaml` → `orgs/<name>.yaml`). The files are rewritten from their
//! parsed form: keys keep their order and `${ENV}` references stay as written, the comment
//! block at the top of the file is kept, other comments are not.
//!
//! Each organization and route answer carries an `ETag`; a write with `If-Match` that no longer
//! matches is refused with 412, so two editors cannot overwrite each other.

// The helpers return the admin API's answer as their error, to be passed on as it is; this is
// the admin listener, not the proxy's hot path, so the size of a `Response` does not matter.
#![allow(clippy::result_large_err)]

use crate::admin::{AdminState, error};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cratopus_config::yaml_doc::{self, Node};
use cratopus_config::{LoadedConfig, OrgSource, Overlay};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Names the API accepts for a new organization: they become file names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A strong validator of a document: the first 16 bytes of its SHA-256, quoted.
fn etag_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn route_etag(route: &Node) -> String {
    etag_of(serde_json::to_string(route).unwrap_or_default().as_bytes())
}

/// `If-Match` refuses the write when it names neither `*` nor the current ETag.
fn precondition_fails(headers: &HeaderMap, current: Option<&str>) -> bool {
    let Some(given) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let given: Vec<&str> = given.split(',').map(str::trim).collect();
    if given.contains(&"*") {
        return current.is_none();
    }
    !current.is_some_and(|c| given.contains(&c))
}

fn precondition_failed() -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "the document changed since you read it (If-Match does not match its ETag); read it again",
    )
}

fn conflict(m: &str) -> Response {
    error(StatusCode::CONFLICT, "conflict", m)
}

fn not_found(m: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", m)
}

fn bad(m: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", m)
}

fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// Where an organization lives, from the running config.
struct OrgPlace {
    file: PathBuf,
    /// Written inline in gateway.yaml (or named there as one file): not editable here.
    editable: bool,
}

/// The running config, and the gateway.yaml it came from.
fn running(s: &AdminState) -> Result<(Arc<LoadedConfig>, PathBuf), Response> {
    let snap = s.engine.snapshot();
    match s.reloader.path() {
        Some(p) => Ok((snap.config.clone(), p.to_path_buf())),
        None => Err(conflict(
            "the gateway runs on its embedded default config; there are no files to edit",
        )),
    }
}

fn place_of(cfg: &LoadedConfig, name: &str) -> Option<OrgPlace> {
    let o = cfg.orgs.iter().find(|o| o.config.name.value == name)?;
    let editable = o.pointer.is_empty() && o.file != cfg.file && from_glob(cfg, &o.file).is_some();
    Some(OrgPlace {
        file: o.file.clone(),
        editable,
    })
}

/// The organizations glob of gateway.yaml that matches `file`, as an absolute pattern.
fn from_glob(cfg: &LoadedConfig, file: &Path) -> Option<String> {
    globs(cfg)
        .into_iter()
        .find(|g| glob::Pattern::new(g).map(|p| p.matches_path(file)).unwrap_or(false))
}

fn globs(cfg: &LoadedConfig) -> Vec<String> {
    cfg.gateway
        .organizations
        .0
        .iter()
        .filter_map(|s| match s {
            OrgSource::Path(p) if p.value.contains(['*', '?', '[']) => Some(
                cratopus_config::load::resolve_path(&cfg.file, &p.value)
                    .to_string_lossy()
                    .to_string(),
            ),
            _ => None,
        })
        .collect()
}

/// Where a new organization `name` is written: `<dir of the first glob>/<name><its extension>`.
fn new_file_for(cfg: &LoadedConfig, name: &str) -> Option<PathBuf> {
    globs(cfg).into_iter().find_map(|g| {
        let pattern = Path::new(&g);
        let dir = pattern.parent()?;
        let ext = pattern
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.rfind('.').map(|i| f[i..].to_string()))
            .filter(|e| !e.contains(['*', '?', '[']))
            .unwrap_or_else(|| ".yaml".to_string());
        let file = dir.join(format!("{name}{ext}"));
        let matches = glob::Pattern::new(&g).map(|p| p.matches_path(&file)).unwrap_or(false);
        matches.then_some(file)
    })
}

/// A file as a document, and the comment block at its top.
fn read_document(file: &Path) -> Result<(String, Node, String), Response> {
    let text = cratopus_config::files::read_text_limited(file)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e))?;
    let node = yaml_doc::parse(&text).map_err(|e| {
        conflict(&format!(
            "{} does not parse as it is on disk ({e}); fix the file first",
            file.display()
        ))
    })?;
    Ok((header_of(&text), node, text))
}

/// The leading comment lines, without their `#`.
fn header_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(c) = t.strip_prefix('#') {
            out.push_str(c.strip_prefix(' ').unwrap_or(c));
            out.push('\n');
        } else if !t.is_empty() {
            break;
        }
    }
    out
}

fn render(header: &str, doc: &Node) -> String {
    yaml_doc::write(header, doc)
}

/// The body as a document that must be a map.
fn body_map(body: &[u8], what: &str) -> Result<Node, Response> {
    match serde_json::from_slice::<Node>(body) {
        Ok(n @ Node::Map(_)) => Ok(n),
        Ok(_) => Err(bad(&format!("the body must be a JSON object: {what}"))),
        Err(e) => Err(bad(&format!("the body is not JSON: {e}"))),
    }
}

/// Checks the whole config with `overlay` applied, as `cratopus check` would; the problems as
/// `file:line:col: message` lines when refused.
async fn check(gateway: PathBuf, overlay: Overlay) -> Result<(), Response> {
    let outcome = tokio::task::spawn_blocking(move || {
        let cfg = cratopus_config::load_file_overlaid(&gateway, &overlay).map_err(|e| e.to_string())?;
        let sources = cfg.sources.clone();
        cratopus_core::compile_only(cfg, None, 1, &Default::default())
            .map(|_| ())
            .map_err(|mut e| {
                sources.place(&mut e.0);
                e.to_string()
            })
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()))?;
    outcome.map_err(|problems| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "config_rejected",
            &format!("the change was not written; the config would be refused:\n{problems}"),
        )
    })
}

/// One accepted change: `file` gets `new` (or is removed), then the gateway reloads; on a failed
/// reload the file is put back (`old`).
async fn apply(s: &AdminState, file: &Path, old: Option<&str>, new: Option<&str>) -> Result<u64, Response> {
    let io_err = |e: std::io::Error| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("cannot write {}: {e}", file.display()),
        )
    };
    match new {
        Some(text) => crate::atomic_file::write(file, text.as_bytes(), None).map_err(io_err)?,
        None => std::fs::remove_file(file).map_err(io_err)?,
    }
    match s.reloader.reload().await {
        Ok(v) => Ok(v),
        Err(e) => {
            // Checked a moment ago, so another file changed meanwhile: undo ours.
            let undone = match old {
                Some(text) => crate::atomic_file::write(file, text.as_bytes(), None),
                None => std::fs::remove_file(file),
            };
            if let Err(u) = undone {
                tracing::error!(file = %file.display(), error = %u, "could not undo a refused admin API change");
            }
            Err(conflict(&format!(
                "the config changed on disk meanwhile and the change was undone:\n{e}"
            )))
        }
    }
}

fn written(status: StatusCode, version: u64, org: &str, file: &Path, etag: Option<&str>) -> Response {
    let body = json!({"version": version, "organization": org, "file": file.display().to_string(), "etag": etag});
    let res = (status, axum::Json(body)).into_response();
    match etag {
        Some(e) => with_etag(res, e),
        None => res,
    }
}

/// `GET /api/config/organizations`: every organization, its file and whether it can be edited.
pub async fn list(State(s): State<Arc<AdminState>>) -> Response {
    let (cfg, _) = match running(&s) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let orgs: Vec<Value> = cfg
        .orgs
        .iter()
        .map(|o| {
            let name = o.config.name.value.as_str();
            let editable = place_of(&cfg, name).is_some_and(|p| p.editable);
            json!({"name": name, "file": o.file.display().to_string(), "editable": editable,
                   "routes": o.config.routes.len()})
        })
        .collect();
    axum::Json(json!({"organizations": orgs, "new_files_in": globs(&cfg)})).into_response()
}

/// The editable organization `name`: its file and document, or the answer that says why not.
fn editable(s: &AdminState, name: &str) -> Result<(PathBuf, PathBuf), Response> {
    let (cfg, gateway) = running(s)?;
    match place_of(&cfg, name) {
        None => Err(not_found(&format!("no organization `{name}`"))),
        Some(p) if !p.editable => Err(conflict(&format!(
            "organization `{name}` is written in {} itself, which the admin API does not edit; \
             edit that file, or move the organization to a file of an organizations glob",
            p.file.display()
        ))),
        Some(p) => Ok((p.file, gateway)),
    }
}

/// `GET /api/config/organizations/{org}`: the organization's document as written (with
/// `${ENV}` references unsubstituted), and its ETag.
pub async fn get_org(State(s): State<Arc<AdminState>>, UrlPath(name): UrlPath<String>) -> Response {
    let (file, _) = match editable(&s, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match read_document(&file) {
        Ok((_, doc, text)) => with_etag(axum::Json(doc).into_response(), &etag_of(text.as_bytes())),
        Err(r) => r,
    }
}

/// `POST /api/config/organizations`: a new organization file.
pub async fn create_org(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let doc = match body_map(&body, "an organization") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(name) = doc.get("name").and_then(Node::as_str).map(str::to_string) else {
        return bad("the organization needs a `name`");
    };
    if !valid_name(&name) {
        return bad("`name` must be letters, digits, `-`, `_` or `.` (it names the file), at most 100");
    }
    let _one = s.config_edits.lock().await;
    let (cfg, gateway) = match running(&s) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if cfg.orgs.iter().any(|o| o.config.name.value == name) {
        return conflict(&format!("organization `{name}` exists; PUT changes it"));
    }
    let Some(file) = new_file_for(&cfg, &name) else {
        return conflict(
            "gateway.yaml names no organizations directory (a glob such as `organizations: orgs/*.yaml`); \
             add one to create organizations through the admin API",
        );
    };
    if file.exists() {
        return conflict(&format!("{} exists but is not loaded; remove it first", file.display()));
    }
    let text = render("", &doc);
    let mut overlay = Overlay::default();
    overlay.write(file.clone(), text.clone());
    if let Err(r) = check(gateway, overlay).await {
        return r;
    }
    match apply(&s, &file, None, Some(&text)).await {
        Ok(v) => {
            tracing::info!(organization = %name, file = %file.display(), version = v, "organization created by the admin API");
            let mut res = written(StatusCode::CREATED, v, &name, &file, Some(&etag_of(text.as_bytes())));
            if let Ok(loc) = HeaderValue::from_str(&format!("/api/config/organizations/{name}")) {
                res.headers_mut().insert(header::LOCATION, loc);
            }
            res
        }
        Err(r) => r,
    }
}

/// `PUT /api/config/organizations/{org}`: the whole organization replaced.
pub async fn put_org(
    State(s): State<Arc<AdminState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut doc = match body_map(&body, "an organization") {
        Ok(d) => d,
        Err(r) => return r,
    };
    match doc.get("name").map(Node::as_str) {
        None => doc.replace("name", Node::str(&name)),
        Some(Some(n)) if n == name => {}
        Some(_) => {
            return bad("`name` in the body differs from the organization in the path (renaming is delete and create)");
        }
    }
    let _one = s.config_edits.lock().await;
    let (file, gateway) = match editable(&s, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (header, _, old) = match read_document(&file) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if precondition_fails(&headers, Some(&etag_of(old.as_bytes()))) {
        return precondition_failed();
    }
    let text = render(&header, &doc);
    change_file(&s, &name, file, gateway, old, text).await
}

/// Checks and writes a changed organization file.
async fn change_file(
    s: &AdminState,
    name: &str,
    file: PathBuf,
    gateway: PathBuf,
    old: String,
    text: String,
) -> Response {
    let mut overlay = Overlay::default();
    overlay.write(file.clone(), text.clone());
    if let Err(r) = check(gateway, overlay).await {
        return r;
    }
    match apply(s, &file, Some(&old), Some(&text)).await {
        Ok(v) => {
            tracing::info!(organization = %name, file = %file.display(), version = v, "organization changed by the admin API");
            written(StatusCode::OK, v, name, &file, Some(&etag_of(text.as_bytes())))
        }
        Err(r) => r,
    }
}

/// `DELETE /api/config/organizations/{org}`: its file removed.
pub async fn delete_org(
    State(s): State<Arc<AdminState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let _one = s.config_edits.lock().await;
    let (file, gateway) = match editable(&s, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (_, _, old) = match read_document(&file) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if precondition_fails(&headers, Some(&etag_of(old.as_bytes()))) {
        return precondition_failed();
    }
    let mut overlay = Overlay::default();
    overlay.remove(file.clone());
    if let Err(r) = check(gateway, overlay).await {
        return r;
    }
    match apply(&s, &file, Some(&old), None).await {
        Ok(v) => {
            tracing::info!(organization = %name, file = %file.display(), version = v, "organization deleted by the admin API");
            written(StatusCode::OK, v, &name, &file, None)
        }
        Err(r) => r,
    }
}

/// A route's identity in a URL: its `name`, or its `path` when it has no name.
fn route_id(route: &Node) -> Option<&str> {
    route
        .get("name")
        .and_then(Node::as_str)
        .or_else(|| route.get("path").and_then(Node::as_str))
}

fn routes_of(doc: &Node) -> &[Node] {
    match doc.get("routes") {
        Some(Node::Seq(items)) => items,
        _ => &[],
    }
}

/// `GET /api/config/organizations/{org}/routes`: the routes as written, each with its id.
pub async fn list_routes(State(s): State<Arc<AdminState>>, UrlPath(name): UrlPath<String>) -> Response {
    let (file, _) = match editable(&s, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match read_document(&file) {
        Ok((_, doc, _)) => {
            let routes: Vec<Value> = routes_of(&doc)
                .iter()
                .map(|r| json!({"id": route_id(r), "etag": route_etag(r), "route": r}))
                .collect();
            axum::Json(json!({"organization": name, "routes": routes})).into_response()
        }
        Err(r) => r,
    }
}

/// `GET /api/config/organizations/{org}/routes/{route}`.
pub async fn get_route(State(s): State<Arc<AdminState>>, UrlPath((name, id)): UrlPath<(String, String)>) -> Response {
    let (file, _) = match editable(&s, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (_, doc, _) = match read_document(&file) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match routes_of(&doc).iter().find(|r| route_id(r) == Some(id.as_str())) {
        Some(r) => with_etag(axum::Json(r).into_response(), &route_etag(r)),
        None => not_found(&format!("organization `{name}` has no route `{id}`")),
    }
}

/// What a route write does to the organization's `routes`.
enum RouteEdit {
    Add(Node),
    Replace(String, Node),
    Remove(String),
}

/// `POST /api/config/organizations/{org}/routes`: a route added after the others.
pub async fn create_route(
    State(s): State<Arc<AdminState>>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    match body_map(&body, "a route") {
        Ok(route) => edit_route(&s, &name, RouteEdit::Add(route), &HeaderMap::new()).await,
        Err(r) => r,
    }
}

/// `PUT /api/config/organizations/{org}/routes/{route}`: one route replaced, in its place.
pub async fn put_route(
    State(s): State<Arc<AdminState>>,
    UrlPath((name, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match body_map(&body, "a route") {
        Ok(route) => edit_route(&s, &name, RouteEdit::Replace(id, route), &headers).await,
        Err(r) => r,
    }
}

/// `DELETE /api/config/organizations/{org}/routes/{route}`.
pub async fn delete_route(
    State(s): State<Arc<AdminState>>,
    UrlPath((name, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    edit_route(&s, &name, RouteEdit::Remove(id), &headers).await
}

async fn edit_route(s: &AdminState, name: &str, edit: RouteEdit, headers: &HeaderMap) -> Response {
    let _one = s.config_edits.lock().await;
    let (file, gateway) = match editable(s, name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (header, mut doc, old) = match read_document(&file) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut routes: Vec<Node> = routes_of(&doc).to_vec();
    let position = |id: &str| routes.iter().position(|r| route_id(r) == Some(id));
    let status = match edit {
        RouteEdit::Add(route) => {
            let Some(id) = route_id(&route).map(str::to_string) else {
                return bad("the route needs a `path`");
            };
            if position(&id).is_some() {
                return conflict(&format!(
                    "organization `{name}` has a route `{id}` already; PUT changes it (give the new one a `name`)"
                ));
            }
            routes.push(route);
            StatusCode::CREATED
        }
        RouteEdit::Replace(id, route) => {
            let Some(i) = position(&id) else {
                return not_found(&format!("organization `{name}` has no route `{id}`"));
            };
            if precondition_fails(headers, Some(&route_etag(&routes[i]))) {
                return precondition_failed();
            }
            routes[i] = route;
            StatusCode::OK
        }
        RouteEdit::Remove(id) => {
            let Some(i) = position(&id) else {
                return not_found(&format!("organization `{name}` has no route `{id}`"));
            };
            if precondition_fails(headers, Some(&route_etag(&routes[i]))) {
                return precondition_failed();
            }
            routes.remove(i);
            StatusCode::OK
        }
    };
    doc.replace("routes", Node::Seq(routes));
    let text = render(&header, &doc);
    let res = change_file(s, name, file, gateway, old, text).await;
    if res.status() == StatusCode::OK && status == StatusCode::CREATED {
        let (mut parts, body) = res.into_parts();
        parts.status = StatusCode::CREATED;
        return Response::from_parts(parts, body);
    }
    res
}

/// This module's paths in the admin OpenAPI document.
pub fn openapi(doc: &mut Value) {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let answer = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    let object = json!({"type": "object"});
    let written = json!({"type": "object", "required": ["version", "organization", "file"], "properties": {
        "version": {"type": "integer", "minimum": 1}, "organization": {"type": "string"},
        "file": {"type": "string"}, "etag": {"type": ["string", "null"]}}});
    let ok = |d: &str, schema: &Value| json!({"description": d, "content": {"application/json": {"schema": schema}}});
    // What a body must have before the config check looks at it (which answers 422).
    let org_body = json!({"required": true, "description": "the organization, as in an organization file",
        "content": {"application/json": {"schema": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"}}}}}});
    let org_put_body = json!({"required": true, "description": "the organization (its `name`, when given, is the path's)",
        "content": {"application/json": {"schema": object}}});
    let route_body = json!({"required": true, "description": "the route, as in an organization file",
        "content": {"application/json": {"schema": {"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string"}, "name": {"type": "string"}}}}}});
    let if_match = json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"},
        "description": "the ETag read; the write is refused with 412 when the document changed since"});
    let org = json!({"name": "org", "in": "path", "required": true, "schema": {"type": "string"}});
    let route = json!({"name": "route", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "the route's name, or its path pattern when it has none"});
    let common = |extra: &[(&str, Value)]| {
        let mut r = serde_json::Map::new();
        r.insert("401".into(), answer("missing or wrong bearer token"));
        r.insert("404".into(), answer("no such organization or route"));
        r.insert(
            "409".into(),
            answer(
                "not editable here (inline in gateway.yaml, no organizations glob, the embedded config) or a conflict",
            ),
        );
        for (k, v) in extra {
            r.insert((*k).to_string(), v.clone());
        }
        Value::Object(r)
    };
    let write_answers = |code: &str| {
        common(&[
            (code, ok("written and reloaded", &written)),
            ("400", answer("the body is not a JSON object of the right kind")),
            ("412", answer("If-Match does not match the current ETag")),
            ("422", answer("the config would be refused; nothing was written")),
        ])
    };
    let list = json!({"type": "object", "required": ["organizations", "new_files_in"], "properties": {
        "organizations": {"type": "array", "items": {"type": "object", "required": ["name", "file", "editable", "routes"],
            "properties": {"name": {"type": "string"}, "file": {"type": "string"}, "editable": {"type": "boolean"},
                           "routes": {"type": "integer", "minimum": 0}}}},
        "new_files_in": {"type": "array", "items": {"type": "string"}}}});
    let routes = json!({"type": "object", "required": ["organization", "routes"], "properties": {
        "organization": {"type": "string"}, "routes": {"type": "array", "items": {"type": "object",
            "required": ["id", "etag", "route"], "properties": {"id": {"type": ["string", "null"]},
            "etag": {"type": "string"}, "route": object}}}}});
    doc["paths"]["/api/config/organizations"] = json!({
        "get": {"operationId": "configOrganizations", "summary": "Organizations, their files and whether the admin API can edit them",
                "responses": common(&[("200", ok("the organizations", &list))])},
        "post": {"operationId": "createOrganization", "summary": "A new organization file in the first organizations glob's directory",
                 "requestBody": org_body, "responses": write_answers("201")}});
    doc["paths"]["/api/config/organizations/{org}"] = json!({
        "parameters": [org],
        "get": {"operationId": "configOrganization", "summary": "The organization's document as written, with its ETag",
                "responses": common(&[("200", ok("the document", &object))])},
        "put": {"operationId": "putOrganization", "summary": "The whole organization replaced",
                "parameters": [if_match], "requestBody": org_put_body, "responses": write_answers("200")},
        "delete": {"operationId": "deleteOrganization", "summary": "The organization's file removed",
                   "parameters": [if_match], "responses": write_answers("200")}});
    doc["paths"]["/api/config/organizations/{org}/routes"] = json!({
        "parameters": [org],
        "get": {"operationId": "configRoutes", "summary": "The organization's routes as written",
                "responses": common(&[("200", ok("the routes", &routes))])},
        "post": {"operationId": "createRoute", "summary": "A route added after the others",
                 "requestBody": route_body, "responses": write_answers("201")}});
    doc["paths"]["/api/config/organizations/{org}/routes/{route}"] = json!({
        "parameters": [org, route],
        "get": {"operationId": "configRoute", "summary": "One route as written, with its ETag",
                "responses": common(&[("200", ok("the route", &object))])},
        "put": {"operationId": "putRoute", "summary": "One route replaced in its place",
                "parameters": [if_match], "requestBody": route_body, "responses": write_answers("200")},
        "delete": {"operationId": "deleteRoute", "summary": "One route removed",
                   "parameters": [if_match], "responses": write_answers("200")}});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        assert!(valid_name("acme-2.eu_west"));
        for n in ["", "../x", "a/b", ".hidden", "a b", "a\\b"] {
            assert!(!valid_name(n), "{n}");
        }
    }

    #[test]
    fn if_match_compares_etags() {
        let mut h = HeaderMap::new();
        assert!(!precondition_fails(&h, Some("\"a\"")), "no If-Match: allowed");
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"b\", \"a\""));
        assert!(!precondition_fails(&h, Some("\"a\"")));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"b\""));
        assert!(precondition_fails(&h, Some("\"a\"")));
        h.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert!(!precondition_fails(&h, Some("\"a\"")));
        assert!(precondition_fails(&h, None));
    }

    #[test]
    fn the_comment_block_at_the_top_is_kept() {
        let text = "# Acme's APIs\n#  owned by team x\n\nname: acme # inline\n# not this\n";
        assert_eq!(header_of(text), "Acme's APIs\n owned by team x\n");
        let doc = yaml_doc::parse(text).unwrap();
        let out = render(&header_of(text), &doc);
        assert!(
            out.starts_with("# Acme's APIs\n#  owned by team x\nname: acme\n"),
            "{out}"
        );
    }

    #[test]
    fn documents_keep_their_key_order_and_env_references() {
        let text = "name: acme\ndomains: [\"api.${DOMAIN}\"]\nupstreams:\n  z: {targets: [\"http://a:1\"]}\n  a: {targets: [\"http://b:1\"]}\nroutes:\n  - path: /x\n    upstream: z\n";
        let doc = yaml_doc::parse(text).unwrap();
        let out = render("", &doc);
        let keys: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(keys[0], "name: acme");
        assert!(out.contains("api.${DOMAIN}"), "{out}");
        assert!(out.find("  z:").unwrap() < out.find("  a:").unwrap(), "{out}");
        let again = yaml_doc::parse(&out).unwrap();
        assert_eq!(again, doc);
    }
}
