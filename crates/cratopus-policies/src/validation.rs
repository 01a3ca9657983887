//! Request validation: required headers and query parameters, the body's media type and size,
//! and a JSON body against a JSON Schema, so that malformed requests are refused at the edge
//! with every problem listed, and never cost the backend a parse.
//!
//! The schema is compiled once, when the snapshot is built (`jsonschema`, no remote
//! references: nothing is fetched, at load or later). Per request the head checks are a few
//! header lookups; the body check parses the buffered body once and walks the compiled schema.
//!
//! Choices:
//! - The draft is the one `$schema` names (2020-12, 2019-09, 7, 6, 4), 2020-12 without it; an
//!   unknown `$schema` is a load error rather than a silent guess.
//! - `format` is asserted (`email`, `date-time`, `uuid`, …): someone who writes it into a
//!   gateway's schema means it as a check, though 2020-12 makes it an annotation by default.
//! - `pattern` uses the linear-time `regex` engine, not a backtracking one: the gateway matches
//!   untrusted input, and a schema's `(a+)+$` must not become a CPU sink. Patterns with
//!   look-around or back-references fail at load, with the engine's message.
//! - Schema error messages mask the instance's values (`value is not of type "integer"`): the
//!   client sent them, so they add nothing but size, and a 1 MB string stays out of the 400.

use cratopus_config::http_policies::{MediaRange, ValidationConfig};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, TRANSFER_ENCODING};
use http::{Method, StatusCode};
use jsonschema::{Draft, PatternOptions};
use serde_json::Value;
use std::path::Path;

/// Most schema errors reported for one body; [`Violation::truncated`] says when there were more.
pub const MAX_ERRORS: usize = 20;

/// The body limit of a validator with a schema and no `max_body_bytes`: the body is held in
/// memory whole to be parsed, so it is never unbounded.
pub const DEFAULT_SCHEMA_BODY_LIMIT: u64 = 1 << 20;

/// One compiled validation policy.
#[derive(Debug)]
pub struct Validator {
    schema: Option<jsonschema::Validator>,
    body_limit: Option<u64>,
    required_headers: Vec<HeaderName>,
    required_query: Vec<Box<[u8]>>,
    content_types: Vec<MediaRange>,
}

/// Why a request was refused, for the gateway's error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// One sentence for the error's `message`.
    pub message: String,
    /// Each problem with where it is; at most [`MAX_ERRORS`].
    pub errors: Vec<FieldError>,
    /// More problems were found than `errors` holds.
    pub truncated: bool,
}

/// The kinds of refusal, each with its status and error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// Required headers or query parameters are missing: 400.
    Missing,
    /// The body's `Content-Type` is not allowed, or missing: 415.
    UnsupportedMediaType,
    /// The body is larger than the limit: 413.
    BodyTooLarge,
    /// The body is not JSON (or empty where JSON is expected): 400.
    InvalidJson,
    /// The JSON body does not satisfy the schema: 400.
    Schema,
}

impl ViolationKind {
    pub fn status(self) -> StatusCode {
        match self {
            ViolationKind::Missing | ViolationKind::InvalidJson | ViolationKind::Schema => StatusCode::BAD_REQUEST,
            ViolationKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ViolationKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The `code` of the gateway's JSON error body; `body_too_large` as the gateway's own
    /// limit answers.
    pub fn code(self) -> &'static str {
        match self {
            ViolationKind::Missing => "missing_parameters",
            ViolationKind::UnsupportedMediaType => "unsupported_media_type",
            ViolationKind::BodyTooLarge => "body_too_large",
            ViolationKind::InvalidJson => "invalid_json",
            ViolationKind::Schema => "validation_failed",
        }
    }
}

/// One problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub location: Location,
    /// The header name, the query parameter name, or the JSON pointer of the value in the body
    /// (`/items/0/id`; `` for the whole document).
    pub path: String,
    pub message: String,
}

/// Where a [`FieldError`] is, as OpenAPI names it (`in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Header,
    Query,
    Body,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Header => "header",
            Location::Query => "query",
            Location::Body => "body",
        }
    }
}

impl Violation {
    fn new(kind: ViolationKind, message: impl Into<String>) -> Violation {
        Violation {
            kind,
            message: message.into(),
            errors: Vec::new(),
            truncated: false,
        }
    }

    /// `[{"in": "body", "path": "/age", "message": "…"}, …]`, for a `details` member of the
    /// gateway's error body.
    pub fn details(&self) -> Value {
        self.errors
            .iter()
            .map(|e| serde_json::json!({"in": e.location.as_str(), "path": e.path, "message": e.message}))
            .collect()
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Validator {
    /// Compiles a config that passed [`ValidationConfig::problems`]. `base_dir` is the
    /// directory of the file the config is in, for a relative `body_schema_file`. Fails on a
    /// schema that cannot be read or compiled, with a message for the operator.
    pub fn compile(cfg: &ValidationConfig, base_dir: &Path) -> Result<Validator, String> {
        let file_schema;
        let schema = match (&cfg.body_schema, &cfg.body_schema_file) {
            (Some(_), Some(_)) => return Err("body_schema and body_schema_file cannot both be set".into()),
            (Some(s), None) => Some(s),
            (None, Some(f)) => {
                file_schema = read_schema(&base_dir.join(f))?;
                Some(&file_schema)
            }
            (None, None) => None,
        };
        let schema = schema.map(compile_schema).transpose()?;
        let mut content_types = Vec::new();
        for t in &cfg.content_types {
            content_types.push(MediaRange::parse(t)?);
        }
        if content_types.is_empty() && schema.is_some() {
            content_types.push(MediaRange::Exact("application/json".into()));
            content_types.push(MediaRange::Suffix("application".into(), "+json".into()));
        }
        let mut required_headers = Vec::new();
        for h in &cfg.required_headers {
            let name = HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_| format!("required_headers: `{h}` is not a header name"))?;
            required_headers.push(name);
        }
        Ok(Validator {
            body_limit: cfg
                .max_body_bytes
                .map(|b| b.0)
                .or(schema.is_some().then_some(DEFAULT_SCHEMA_BODY_LIMIT)),
            schema,
            required_headers,
            required_query: cfg.required_query.iter().map(|q| q.as_bytes().into()).collect(),
            content_types,
        })
    }

    /// The most body bytes the engine may read for this route (with the route's own limit,
    /// the smaller applies); `None`: no limit of this policy.
    pub fn body_limit(&self) -> Option<u64> {
        self.body_limit
    }

    /// Whether the engine must buffer the body and call [`Validator::check_body`]: there is a
    /// schema, and the method is `POST`, `PUT` or `PATCH` (an empty body there is a violation,
    /// not a pass) or the request declares a body. A `GET` on the same route passes untouched.
    pub fn needs_body(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.schema.is_some()
            && (matches!(*method, Method::POST | Method::PUT | Method::PATCH) || declares_body(headers))
    }

    /// Checks what the request head shows: every required header (non-empty) and query
    /// parameter present (all missing ones are reported at once, 400), then the body's media
    /// type (415), then a declared `Content-Length` over the limit (413). A `Content-Type` that
    /// is sent must be allowed; none is fine only for a request without a body.
    pub fn check_head(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Violation> {
        let mut missing = Vec::new();
        for name in &self.required_headers {
            if !headers
                .get_all(name)
                .iter()
                .any(|v| !v.as_bytes().trim_ascii().is_empty())
            {
                missing.push(FieldError {
                    location: Location::Header,
                    path: name.as_str().to_string(),
                    message: format!("the header `{name}` is required"),
                });
            }
        }
        for want in &self.required_query {
            let present = query.is_some_and(|q| {
                q.split('&')
                    .any(|pair| crate::forwarding::decoded_eq(pair.split_once('=').map_or(pair, |(n, _)| n), want))
            });
            if !present {
                let name = String::from_utf8_lossy(want).into_owned();
                missing.push(FieldError {
                    location: Location::Query,
                    message: format!("the query parameter `{name}` is required"),
                    path: name,
                });
            }
        }
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|e| format!("{} `{}`", e.location.as_str(), e.path))
                .collect();
            let mut v = Violation::new(
                ViolationKind::Missing,
                format!("the request lacks required parameters: {}", list.join(", ")),
            );
            v.errors = missing;
            return Err(v);
        }

        if !self.content_types.is_empty() {
            match headers.get(CONTENT_TYPE) {
                Some(ct) if !self.media_type_allowed(ct.as_bytes()) => {
                    return Err(self.unsupported(Some(ct.as_bytes())));
                }
                None if declares_body(headers) => return Err(self.unsupported(None)),
                _ => {}
            }
        }

        if let Some(limit) = self.body_limit {
            let declared = headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
        }
        Ok(())
    }

    /// Checks a buffered body against the size limit and the schema. Without a schema only the
    /// size is checked. Parses the body once; the engine may keep the bytes and forward them.
    pub fn check_body(&self, body: &[u8]) -> Result<(), Violation> {
        if let Some(limit) = self.body_limit
            && body.len() as u64 > limit
        {
            return Err(too_large(limit));
        }
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        if body.trim_ascii().is_empty() {
            return Err(Violation::new(
                ViolationKind::InvalidJson,
                "the request body is empty; this route expects a JSON document",
            ));
        }
        let doc: Value = serde_json::from_slice(body).map_err(|e| {
            Violation::new(
                ViolationKind::InvalidJson,
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        let mut errors = Vec::new();
        let mut truncated = false;
        for e in schema.iter_errors(&doc) {
            if errors.len() == MAX_ERRORS {
                truncated = true;
                break;
            }
            errors.push(FieldError {
                location: Location::Body,
                path: e.instance_path().as_str().to_string(),
                message: e.masked().to_string(),
            });
        }
        if errors.is_empty() {
            return Ok(());
        }
        let message = match errors.as_slice() {
            [one] if one.path.is_empty() => format!("the request body does not match the schema: {}", one.message),
            [one] => format!(
                "the request body does not match the schema: at {}: {}",
                one.path, one.message
            ),
            many => format!(
                "the request body does not match the schema: {}{} problems",
                many.len(),
                if truncated { " or more" } else { "" }
            ),
        };
        Err(Violation {
            kind: ViolationKind::Schema,
            message,
            errors,
            truncated,
        })
    }

    /// The media type of `Content-Type` (parameters dropped, case ignored) against the list.
    fn media_type_allowed(&self, ct: &[u8]) -> bool {
        let Ok(ct) = std::str::from_utf8(ct) else {
            return false;
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        let Some((ty, sub)) = essence.split_once('/') else {
            return false;
        };
        self.content_types.iter().any(|r| match r {
            MediaRange::Exact(e) => e.eq_ignore_ascii_case(essence),
            MediaRange::AnySubtype(t) => t.eq_ignore_ascii_case(ty),
            MediaRange::Suffix(t, suffix) => {
                t.eq_ignore_ascii_case(ty)
                    && sub.len() > suffix.len()
                    && sub
                        .get(sub.len() - suffix.len()..)
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
            }
        })
    }

    fn unsupported(&self, got: Option<&[u8]>) -> Violation {
        let allowed: Vec<String> = self
            .content_types
            .iter()
            .map(|r| match r {
                MediaRange::Exact(e) => e.clone(),
                MediaRange::AnySubtype(t) => format!("{t}/*"),
                MediaRange::Suffix(t, s) => format!("{t}/*{s}"),
            })
            .collect();
        let message = match got {
            Some(ct) => {
                let ct = String::from_utf8_lossy(ct);
                let ct: String = ct.chars().take(100).collect();
                format!(
                    "the body's media type `{ct}` is not accepted here; send {}",
                    allowed.join(" or ")
                )
            }
            None => format!(
                "the request has a body but no Content-Type; send {}",
                allowed.join(" or ")
            ),
        };
        let mut v = Violation::new(ViolationKind::UnsupportedMediaType, message);
        v.errors.push(FieldError {
            location: Location::Header,
            path: "content-type".into(),
            message: v.message.clone(),
        });
        v
    }
}

/// A request head that announces a body: `Content-Length` above 0, or `Transfer-Encoding`.
/// HTTP/2 clients send `Content-Length` for a body of known size too; a streamed `POST`, `PUT`
/// or `PATCH` without it is still read whole by [`Validator::needs_body`].
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().trim_ascii() != b"0")
}

fn too_large(limit: u64) -> Violation {
    Violation::new(
        ViolationKind::BodyTooLarge,
        format!("the request body is larger than the {limit} bytes this route accepts"),
    )
}

/// Reads a schema file: JSON for `.json`, else YAML (which also reads JSON).
fn read_schema(path: &Path) -> Result<Value, String> {
    let text = cratopus_config::files::read_text_limited(path)?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(&text).map_err(|e| format!("`{}` is not valid JSON: {e}", path.display()))
    } else {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options(&text, options)
            .map_err(|e| format!("`{}` is not valid YAML: {e}", path.display()))
    }
}

/// Compiles a schema with the draft its `$schema` names, offline, with formats asserted and
/// linear-time patterns.
fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err("the body schema must be a JSON object or a boolean".into());
    }
    let draft = match schema.get("$schema") {
        None => Draft::Draft202012,
        Some(Value::String(uri)) => match Draft::from_schema_uri(uri) {
            Draft::Unknown => {
                return Err(format!(
                    "unknown `$schema` `{uri}`: use https://json-schema.org/draft/2020-12/schema, \
                     https://json-schema.org/draft/2019-09/schema or http://json-schema.org/draft-07/schema# \
                     (also draft-06, draft-04)"
                ));
            }
            d => d,
        },
        Some(_) => return Err("`$schema` must be a string".into()),
    };
    jsonschema::options()
        .with_draft(draft)
        .offline()
        .should_validate_formats(true)
        .with_pattern_options(PatternOptions::regex())
        .build(schema)
        .map_err(|e| format!("invalid body schema: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cratopus_config::ByteSize;
    use http::HeaderValue;
    use serde_json::json;

    fn cfg(schema: Option<Value>) -> ValidationConfig {
        ValidationConfig {
            body_schema: schema,
            ..ValidationConfig::default()
        }
    }

    fn compile(c: &ValidationConfig) -> Validator {
        Validator::compile(c, Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn user_schema(draft: Option<&str>) -> Value {
        let mut s = json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}
            },
            "additionalProperties": false
        });
        if let Some(d) = draft {
            s["$schema"] = json!(d);
        }
        s
    }

    fn errors(v: &Validator, body: &str) -> Violation {
        v.check_body(body.as_bytes()).expect_err("must be refused")
    }

    #[test]
    fn schema_violations_report_paths() {
        let v = compile(&cfg(Some(user_schema(None))));
        assert!(v.check_body(br#"{"name": "Ada", "age": 36, "tags": ["math"]}"#).is_ok());

        let e = errors(
            &v,
            r#"{"name": "", "age": -1, "email": "nope", "tags": ["ok", "NO", 3], "x": 1}"#,
        );
        assert_eq!(e.kind, ViolationKind::Schema);
        assert_eq!(e.kind.status(), StatusCode::BAD_REQUEST);
        let mut paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["", "/age", "/email", "/name", "/tags/1", "/tags/2"], "{e:#?}");
        assert!(e.errors.iter().all(|f| f.location == Location::Body));
        assert!(e.message.contains("6 problems"), "{}", e.message);
        // The client's values are not echoed back.
        let email = e.errors.iter().find(|f| f.path == "/email").map(|f| f.message.as_str());
        assert_eq!(email, Some(r#"value is not a "email""#));

        let e = errors(&v, r#"{"age": 1}"#);
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].path, "");
        assert!(e.errors[0].message.contains("name"), "{:?}", e.errors[0]);
        assert!(e.message.contains("\"name\""), "{}", e.message);
        assert_eq!(
            e.details(),
            json!([{"in": "body", "path": "", "message": e.errors[0].message}])
        );
    }

    #[test]
    fn errors_are_capped() {
        let v = compile(&cfg(Some(json!({"type": "array", "items": {"type": "integer"}}))));
        let body = serde_json::to_string(&vec!["x"; 50]).unwrap_or_default();
        let e = errors(&v, &body);
        assert_eq!(e.errors.len(), MAX_ERRORS);
        assert!(e.truncated);
        assert!(e.message.contains("20 or more"), "{}", e.message);
    }

    #[test]
    fn drafts_follow_schema_keyword() {
        // Draft 7: `items` as an array is a tuple; `dependencies` exists.
        let d7 = compile(&cfg(Some(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "array",
            "items": [{"type": "string"}, {"type": "integer"}],
            "additionalItems": false
        }))));
        assert!(d7.check_body(br#"["a", 1]"#).is_ok());
        let e = errors(&d7, r#"[1, "a"]"#);
        let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["/0", "/1"]);
        assert!(d7.check_body(br#"["a", 1, 2]"#).is_err());

        // 2020-12 (the default): tuples are `prefixItems`, `items` the rest.
        for s in [None, Some("https://json-schema.org/draft/2020-12/schema")] {
            let mut schema = json!({
                "type": "array",
                "prefixItems": [{"type": "string"}],
                "items": {"type": "integer"}
            });
            if let Some(uri) = s {
                schema["$schema"] = json!(uri);
            }
            let d2020 = compile(&cfg(Some(schema)));
            assert!(d2020.check_body(br#"["a", 1, 2]"#).is_ok());
            let e = errors(&d2020, r#"["a", 1, "b"]"#);
            assert_eq!(e.errors[0].path, "/2");
        }

        // The same user schema under draft 7 checks the same.
        let v = compile(&cfg(Some(user_schema(Some("http://json-schema.org/draft-07/schema#")))));
        assert_eq!(errors(&v, r#"{"name": "a", "age": "x"}"#).errors[0].path, "/age");
    }

    #[test]
    fn bad_schemas_fail_to_compile() {
        let fails = |s: Value| {
            Validator::compile(&cfg(Some(s)), Path::new("."))
                .map(|_| ())
                .unwrap_err()
        };
        assert!(fails(json!({"$schema": "https://example.com/my-meta"})).contains("unknown `$schema`"));
        assert!(fails(json!({"type": "nope"})).contains("invalid body schema"));
        // Remote references are never fetched.
        assert!(fails(json!({"$ref": "https://example.com/schema.json"})).contains("invalid body schema"));
        // Backtracking-only regex features are refused.
        assert!(fails(json!({"type": "string", "pattern": "^(?=a)a$"})).contains("invalid body schema"));
        assert!(fails(json!([1])).contains("object or a boolean"));
        // Local references work.
        let v = compile(&cfg(Some(json!({
            "$defs": {"id": {"type": "integer"}},
            "properties": {"id": {"$ref": "#/$defs/id"}}
        }))));
        assert_eq!(errors(&v, r#"{"id": "x"}"#).errors[0].path, "/id");
    }

    #[test]
    fn schema_from_file_json_or_yaml() {
        let dir = std::env::temp_dir().join(format!("cratopus-validation-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("user.json"), user_schema(None).to_string()).unwrap();
        std::fs::write(
            dir.join("user.yaml"),
            "type: object\nrequired: [name]\nproperties:\n  name: {type: string}\n",
        )
        .unwrap();
        for file in ["user.json", "user.yaml"] {
            let c = ValidationConfig {
                body_schema_file: Some(file.into()),
                ..ValidationConfig::default()
            };
            let v = Validator::compile(&c, &dir).unwrap_or_else(|e| panic!("{e}"));
            assert!(v.check_body(br#"{"name": "a", "age": 1}"#).is_ok(), "{file}");
            assert!(v.check_body(br#"{"age": 1}"#).is_err(), "{file}");
        }
        let missing = ValidationConfig {
            body_schema_file: Some("nope.json".into()),
            ..ValidationConfig::default()
        };
        assert!(Validator::compile(&missing, &dir).unwrap_err().contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_json() {
        let v = compile(&cfg(Some(json!({"type": "object"}))));
        let e = errors(&v, "{\"a\": ");
        assert_eq!(e.kind, ViolationKind::InvalidJson);
        assert_eq!(e.kind.code(), "invalid_json");
        assert_eq!(errors(&v, "  ").kind, ViolationKind::InvalidJson);
        // Deep nesting is refused by the parser, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert_eq!(errors(&v, &deep).kind, ViolationKind::InvalidJson);
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn shared_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<Validator>();
        check::<crate::forwarding::Forwarding>();
    }

    #[test]
    fn required_headers_and_query() {
        let c = ValidationConfig {
            required_headers: vec!["X-Tenant".into(), "X-Api-Version".into()],
            required_query: vec!["page".into(), "filter[name]".into()],
            ..ValidationConfig::default()
        };
        let v = compile(&c);
        let ok = head(&[("x-tenant", "acme"), ("X-API-VERSION", "2")]);
        assert!(v.check_head(&ok, Some("page=1&filter%5Bname%5D=x")).is_ok());
        assert!(v.check_head(&ok, Some("page&filter[name]=")).is_ok());

        let e = v
            .check_head(&head(&[("x-tenant", " ")]), Some("Page=1"))
            .expect_err("must be refused");
        assert_eq!(e.kind, ViolationKind::Missing);
        assert_eq!(e.kind.status(), StatusCode::BAD_REQUEST);
        let got: Vec<(&str, &str)> = e
            .errors
            .iter()
            .map(|f| (f.location.as_str(), f.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("header", "x-tenant"),
                ("header", "x-api-version"),
                ("query", "page"),
                ("query", "filter[name]")
            ]
        );
        assert!(e.message.contains("header `x-tenant`"), "{}", e.message);
        assert!(v.check_head(&ok, None).is_err());
        // Without a schema nothing needs the body.
        assert!(!v.needs_body(&Method::POST, &ok));
        assert!(v.check_body(b"anything").is_ok());
    }

    #[test]
    fn media_types_and_sizes() {
        let mut c = cfg(Some(json!({"type": "object"})));
        c.max_body_bytes = Some(ByteSize(16));
        let v = compile(&c);
        assert_eq!(v.body_limit(), Some(16));
        let json_body = head(&[
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", "2"),
        ]);
        assert!(v.check_head(&json_body, None).is_ok());
        let problem = head(&[("content-type", "Application/Problem+JSON"), ("content-length", "2")]);
        assert!(v.check_head(&problem, None).is_ok());
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/+json",
            "multipart/form-data; boundary=x",
            "json",
        ] {
            let e = v
                .check_head(&head(&[("content-type", bad), ("content-length", "2")]), None)
                .expect_err(bad);
            assert_eq!(e.kind, ViolationKind::UnsupportedMediaType, "{bad}");
            assert_eq!(e.kind.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        // A body without a type is refused; no body and no type is fine (a GET).
        let e = v
            .check_head(&head(&[("content-length", "5")]), None)
            .expect_err("no type");
        assert_eq!(e.kind, ViolationKind::UnsupportedMediaType);
        assert!(v.check_head(&head(&[("transfer-encoding", "chunked")]), None).is_err());
        assert!(v.check_head(&head(&[("content-length", "0")]), None).is_ok());
        assert!(v.check_head(&HeaderMap::new(), None).is_ok());

        let big = head(&[("content-type", "application/json"), ("content-length", "17")]);
        let e = v.check_head(&big, None).expect_err("too large");
        assert_eq!(e.kind, ViolationKind::BodyTooLarge);
        assert_eq!(e.kind.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            v.check_body(&[b' '; 17]).map_err(|e| e.kind),
            Err(ViolationKind::BodyTooLarge)
        );

        assert!(v.needs_body(&Method::POST, &HeaderMap::new()));
        assert!(v.needs_body(&Method::PATCH, &HeaderMap::new()));
        assert!(!v.needs_body(&Method::GET, &HeaderMap::new()));
        assert!(v.needs_body(&Method::DELETE, &head(&[("content-length", "3")])));

        // A schema with no limit still bounds the buffer; explicit types replace the default.
        let v = compile(&ValidationConfig {
            content_types: vec!["text/*".into()],
            ..cfg(Some(json!(true)))
        });
        assert_eq!(v.body_limit(), Some(DEFAULT_SCHEMA_BODY_LIMIT));
        assert!(v.check_head(&head(&[("content-type", "text/csv")]), None).is_ok());
        assert!(
            v.check_head(&head(&[("content-type", "application/json")]), None)
                .is_err()
        );
        // No schema and no types: anything goes.
        let v = compile(&ValidationConfig::default());
        assert!(
            v.check_head(&head(&[("content-type", "image/png"), ("content-length", "9")]), None)
                .is_ok()
        );
        assert_eq!(v.body_limit(), None);
    }
}
