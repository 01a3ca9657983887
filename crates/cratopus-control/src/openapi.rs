//! The OpenAPI 3.1 document of the control plane's API, served at `/api/v1/openapi.json`.
//! Written out by hand from one table of operations, so that it is exactly what the router
//! serves (the tenant-isolation test walks every path of it).

use serde_json::{Map, Value, json};

/// One operation of the table.
struct Op {
    path: String,
    method: &'static str,
    id: String,
    summary: String,
    body: Option<Value>,
    ok: (&'static str, Value),
    /// Needs the operator token (403 for an organization token).
    operator: bool,
}

/// What names an organization or a resource in a URL.
const NAME: &str = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$";

fn error_ref() -> Value {
    json!({"$ref": "#/components/schemas/Error"})
}

fn items(of: Value) -> Value {
    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": of}}})
}

fn named_item() -> Value {
    json!({"type": "object", "required": ["name", "etag", "document"], "properties": {
        "name": {"type": "string"}, "etag": {"type": "string"}, "document": {"type": "object"}}})
}

fn ops() -> Vec<Op> {
    let org = "/api/v1/organizations/{org}";
    let document = json!({"$ref": "#/components/schemas/Organization"});
    let object = json!({"type": "object"});
    let deleted = json!({"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}, "version": {"type": "integer"}}});
    let op = |path: &str,
              method: &'static str,
              id: &str,
              summary: &str,
              body: Option<Value>,
              ok: (&'static str, Value),
              operator: bool| Op {
        path: path.to_string(),
        method,
        id: id.to_string(),
        summary: summary.to_string(),
        body,
        ok,
        operator,
    };
    let mut v = vec![
        op(
            "/api/v1/organizations",
            "get",
            "listOrganizations",
            "The organizations the token may see, with their documents and ETags",
            None,
            ("200", items(named_item())),
            false,
        ),
        op(
            "/api/v1/organizations",
            "post",
            "createOrganization",
            "Create an organization from its document (operator)",
            Some(document.clone()),
            ("201", document.clone()),
            true,
        ),
        op(
            org,
            "get",
            "getOrganization",
            "An organization's document",
            None,
            ("200", document.clone()),
            false,
        ),
        op(
            org,
            "put",
            "putOrganization",
            "Replace (or, operator, create) an organization's whole document",
            Some(document.clone()),
            ("200", document.clone()),
            false,
        ),
        op(
            org,
            "delete",
            "deleteOrganization",
            "Delete an organization with its tokens and certificates (operator)",
            None,
            ("200", deleted.clone()),
            true,
        ),
        op(
            &format!("{org}/domains"),
            "get",
            "listDomains",
            "The organization's domains",
            None,
            ("200", items(json!({"type": "string"}))),
            false,
        ),
        op(
            &format!("{org}/domains/{{domain}}"),
            "get",
            "getDomain",
            "One domain",
            None,
            (
                "200",
                json!({"type": "object", "required": ["domain"], "properties": {"domain": {"type": "string"}}}),
            ),
            false,
        ),
        op(
            &format!("{org}/domains/{{domain}}"),
            "put",
            "putDomain",
            "Add a domain (If-Match: the domain list's ETag)",
            None,
            ("200", items(json!({"type": "string"}))),
            false,
        ),
        op(
            &format!("{org}/domains/{{domain}}"),
            "delete",
            "deleteDomain",
            "Remove a domain",
            None,
            ("200", items(json!({"type": "string"}))),
            false,
        ),
        op(
            &format!("{org}/certificates"),
            "get",
            "listCertificates",
            "Uploaded certificates (without keys)",
            None,
            ("200", items(json!({"$ref": "#/components/schemas/Certificate"}))),
            false,
        ),
        op(
            &format!("{org}/certificates/{{name}}"),
            "get",
            "getCertificate",
            "One certificate (without its key)",
            None,
            ("200", json!({"$ref": "#/components/schemas/Certificate"})),
            false,
        ),
        op(
            &format!("{org}/certificates/{{name}}"),
            "put",
            "putCertificate",
            "Upload a PEM certificate chain and its key; published to every node",
            Some(
                json!({"type": "object", "required": ["cert_pem", "key_pem"], "properties": {"cert_pem": {"type": "string"}, "key_pem": {"type": "string"}}}),
            ),
            ("200", json!({"$ref": "#/components/schemas/Certificate"})),
            false,
        ),
        op(
            &format!("{org}/certificates/{{name}}"),
            "delete",
            "deleteCertificate",
            "Remove a certificate from the store and the nodes",
            None,
            ("200", deleted.clone()),
            false,
        ),
        op(
            "/api/v1/versions",
            "get",
            "listVersions",
            "Config versions, newest first, with who made each (operator); ?limit=&before=",
            None,
            (
                "200",
                json!({"type": "object", "required": ["current", "items"], "properties": {"current": {"type": "integer"}, "items": {"type": "array", "items": {"$ref": "#/components/schemas/VersionSummary"}}}}),
            ),
            true,
        ),
        op(
            "/api/v1/versions/{n}",
            "get",
            "getVersion",
            "One version: its bundle, audit record and RFC 6902 diff from the version before (operator)",
            None,
            (
                "200",
                json!({"type": "object", "required": ["version", "created_at", "audit", "bundle"], "properties": {"version": {"type": "integer"}, "created_at": {"type": "string"}, "audit": {"type": "object"}, "bundle": {"type": "object"}}}),
            ),
            true,
        ),
        op(
            "/api/v1/versions/{n}/restore",
            "post",
            "restoreVersion",
            "Make a new version with the organizations of version n (operator)",
            None,
            (
                "200",
                json!({"type": "object", "required": ["version", "restored"], "properties": {"version": {"type": "integer"}, "restored": {"type": "integer"}}}),
            ),
            true,
        ),
        op(
            "/api/v1/nodes",
            "get",
            "listNodes",
            "The gateway nodes, the version each runs and when each was last seen (operator)",
            None,
            (
                "200",
                json!({"type": "object", "required": ["current", "nodes"], "properties": {"current": {"type": "integer"}, "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}),
            ),
            true,
        ),
        op(
            "/api/v1/tokens",
            "get",
            "listTokens",
            "API tokens, without secrets (operator)",
            None,
            (
                "200",
                items(
                    json!({"type": "object", "required": ["name", "organization", "created_at"], "properties": {"name": {"type": "string"}, "organization": {"type": ["string", "null"]}, "created_at": {"type": "string"}}}),
                ),
            ),
            true,
        ),
        op(
            "/api/v1/tokens",
            "post",
            "createToken",
            "Create a token for an organization; its secret is answered only here (operator)",
            Some(
                json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": NAME}, "organization": {"type": ["string", "null"]}}, "additionalProperties": false}),
            ),
            (
                "201",
                json!({"type": "object", "required": ["name", "organization", "token", "created_at"], "properties": {"name": {"type": "string"}, "organization": {"type": ["string", "null"]}, "token": {"type": "string"}, "created_at": {"type": "string"}}}),
            ),
            true,
        ),
        op(
            "/api/v1/tokens/{name}",
            "delete",
            "deleteToken",
            "Revoke a token (operator)",
            None,
            ("200", deleted.clone()),
            true,
        ),
        op(
            "/api/v1/registry/services/{service}",
            "get",
            "listInstances",
            "The live instances of a service (their TTL has not run out)",
            None,
            (
                "200",
                json!({"type": "object", "required": ["service", "instances"], "properties": {"service": {"type": "string"}, "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}}}}),
            ),
            false,
        ),
        op(
            "/api/v1/registry/services/{service}/instances/{id}",
            "put",
            "putInstance",
            "Register an instance, or heartbeat it (its TTL starts again)",
            Some(
                json!({"type": "object", "required": ["url"], "properties": {"url": {"type": "string", "pattern": "^https?://[A-Za-z0-9.-]+(:[0-9]{1,4})?/?$"}, "ttl": {"type": ["string", "null"], "pattern": "^([1-9][0-9]?s|[1-9][0-9]?m|([1-9]|1[0-9]|2[0-3])h)$", "description": "a duration such as 15s (default 30s, 1s to 24h)"}}, "additionalProperties": false}),
            ),
            ("200", json!({"$ref": "#/components/schemas/Instance"})),
            false,
        ),
        op(
            "/api/v1/registry/services/{service}/instances/{id}",
            "delete",
            "deleteInstance",
            "Deregister an instance",
            None,
            ("200", object.clone()),
            false,
        ),
    ];
    for (plural, singular) in [
        ("upstreams", "Upstream"),
        ("routes", "Route"),
        ("policies", "Policy"),
        ("consumers", "Consumer"),
    ] {
        let list = &format!("{org}/{plural}");
        let one = &format!("{org}/{plural}/{{name}}");
        v.push(op(
            list,
            "get",
            &format!("list{singular}s"),
            &format!("The organization's {plural}"),
            None,
            ("200", items(named_item())),
            false,
        ));
        v.push(op(
            one,
            "get",
            &format!("get{singular}"),
            &format!("One of the {plural}"),
            None,
            ("200", object.clone()),
            false,
        ));
        v.push(op(
            one,
            "put",
            &format!("put{singular}"),
            &format!("Create or replace one of the {plural} (its document as in an organization file)"),
            Some(object.clone()),
            ("200", object.clone()),
            false,
        ));
        v.push(op(
            one,
            "delete",
            &format!("delete{singular}"),
            &format!("Delete one of the {plural}"),
            None,
            ("200", deleted.clone()),
            false,
        ));
    }
    v
}

/// Every path of the API with its methods and whether it needs the operator token: what the
/// tenant-isolation test walks.
pub fn operations() -> Vec<(String, &'static str, bool)> {
    ops().into_iter().map(|o| (o.path, o.method, o.operator)).collect()
}

/// The document.
pub fn document() -> Value {
    let error = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error_ref()}}});
    let mut paths = Map::new();
    for o in ops() {
        let mut params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if o.method == "put" || o.method == "delete" || (o.method == "post" && o.path.ends_with("restore")) {
            params.push(
                json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"},
                "description": "the ETag read; the write is refused with 412 if the resource changed since"}),
            );
        }
        let mut responses = Map::new();
        let (code, schema) = o.ok;
        responses.insert(
            code.into(),
            json!({"description": "done", "content": {"application/json": {"schema": schema.clone()}}}),
        );
        if code == "200" && o.method == "put" {
            responses.insert(
                "201".into(),
                json!({"description": "created", "content": {"application/json": {"schema": schema}}}),
            );
        }
        responses.insert("400".into(), error("the body or a parameter is malformed"));
        responses.insert("401".into(), error("missing or wrong bearer token"));
        responses.insert("403".into(), error("this needs the operator token"));
        responses.insert("404".into(), error("no such thing (or not visible to this token)"));
        responses.insert("409".into(), error("it exists already"));
        responses.insert(
            "412".into(),
            error("If-Match does not match: it changed since it was read"),
        );
        responses.insert(
            "422".into(),
            error(
                "refused: does not compile (`problems` as `cratopus check` reports them) or breaks a rule of the API",
            ),
        );
        responses.insert("503".into(), error("the database or Redis is unreachable"));
        let mut operation =
            json!({"operationId": o.id, "summary": o.summary, "parameters": params, "responses": responses});
        if let Some(body) = o.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        paths
            .entry(o.path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(o.method.into(), operation));
    }
    paths.insert(
        "/api/v1/openapi.json".into(),
        json!({"get": {"operationId": "openapi", "summary": "This document", "security": [],
            "responses": {"200": {"description": "the OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    let health = json!({"type": "object", "required": ["status", "database", "redis", "version", "published"], "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]}, "database": {"type": "string", "enum": ["up", "down"]},
        "redis": {"type": "string", "enum": ["up", "down"]}, "version": {"type": ["integer", "null"]},
        "published": {"type": ["integer", "null"]}}});
    paths.insert(
        "/api/v1/health".into(),
        json!({"get": {"operationId": "health", "summary": "Whether the database and Redis answer, and the newest version in each (no token)", "security": [],
            "responses": {
                "200": {"description": "the database answers", "content": {"application/json": {"schema": health.clone()}}},
                "503": {"description": "the database does not answer", "content": {"application/json": {"schema": health}}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "cratopus control plane API", "version": env!("CARGO_PKG_VERSION")},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["status", "code", "message"],
                    "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                        "problems": {"type": "array", "items": {"type": "string"}}}}}},
                "Organization": {"type": "object", "description": "An organization document: the JSON form of an organization file (see docs/configuration.md); routes need a `name`.",
                    "properties": {"name": {"type": "string", "pattern": NAME}, "domains": {"type": "array", "items": {"type": "string"}},
                        "upstreams": {"type": "object"}, "routes": {"type": "array", "items": {"type": "object"}},
                        "policies": {"type": "object"}, "consumers": {"type": "array", "items": {"type": "object"}}}},
                "Certificate": {"type": "object", "required": ["name", "domains", "cert_pem", "not_after", "updated_at", "etag"], "properties": {
                    "name": {"type": "string"}, "domains": {"type": "array", "items": {"type": "string"}}, "cert_pem": {"type": "string"},
                    "not_after": {"type": "string"}, "updated_at": {"type": "string"}, "etag": {"type": "string"}}},
                "VersionSummary": {"type": "object", "required": ["version", "who", "created_at", "organization", "kind", "name", "action"], "properties": {
                    "version": {"type": "integer"}, "who": {"type": "string"}, "created_at": {"type": "string"},
                    "organization": {"type": ["string", "null"]}, "kind": {"type": "string"}, "name": {"type": "string"}, "action": {"type": "string"}}},
                "Node": {"type": "object", "required": ["name", "version", "current", "last_seen"], "properties": {
                    "name": {"type": "string"}, "version": {"type": ["integer", "null"]}, "current": {"type": "boolean"},
                    "last_seen": {"type": ["string", "null"]}, "seen_ms": {"type": ["integer", "null"]}, "started_ms": {"type": ["integer", "null"]},
                    "error": {}}},
                "Instance": {"type": "object", "required": ["id", "url", "expires_at"], "properties": {
                    "id": {"type": "string"}, "url": {"type": "string"}, "expires_at": {"type": "string"}}}
            }
        }
    })
}
