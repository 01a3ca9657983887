//! The REST API under `/api/v1`: routes, and the helpers every handler shares (bodies,
//! ETags and `If-Match`).

mod certificates;
mod orgs;
mod registry;
mod tokens;
mod versions;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::Value;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let org = "/api/v1/organizations/{org}";
    let mut r = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/health", get(health))
        .route("/api/v1/organizations", get(orgs::list).post(orgs::create))
        .route(org, get(orgs::get_one).put(orgs::put_one).delete(orgs::delete_one))
        .route(&format!("{org}/domains"), get(orgs::list_domains))
        .route(
            &format!("{org}/domains/{{domain}}"),
            get(orgs::get_domain).put(orgs::put_domain).delete(orgs::delete_domain),
        )
        .route(&format!("{org}/certificates"), get(certificates::list))
        .route(
            &format!("{org}/certificates/{{name}}"),
            get(certificates::get_one)
                .put(certificates::put_one)
                .delete(certificates::delete_one),
        )
        .route("/api/v1/versions", get(versions::list))
        .route("/api/v1/versions/{n}", get(versions::get_one))
        .route("/api/v1/versions/{n}/restore", post(versions::restore))
        .route("/api/v1/nodes", get(versions::nodes))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{name}", axum::routing::delete(tokens::delete_one))
        .route("/api/v1/registry/services/{service}", get(registry::list))
        .route(
            "/api/v1/registry/services/{service}/instances/{id}",
            put(registry::put_one).delete(registry::delete_one),
        );
    for kind in orgs::KINDS {
        r = r
            .route(
                &format!("{org}/{}", kind.plural),
                get(move |s: State<AppState>, p: Path<String>, h: HeaderMap| orgs::list_resources(kind, s, p, h)),
            )
            .route(
                &format!("{org}/{}/{{name}}", kind.plural),
                get(move |s: State<AppState>, p: Path<(String, String)>, h: HeaderMap| {
                    orgs::get_resource(kind, s, p, h)
                })
                .put(
                    move |s: State<AppState>, p: Path<(String, String)>, h: HeaderMap, b: Bytes| {
                        orgs::put_resource(kind, s, p, h, b)
                    },
                )
                .delete(move |s: State<AppState>, p: Path<(String, String)>, h: HeaderMap| {
                    orgs::delete_resource(kind, s, p, h)
                }),
            );
    }
    r.fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1/openapi.json") })
        // A whole organization document can be large (thousands of routes).
        .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
        .with_state(state)
}

async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    axum::Json(DOC.get_or_init(crate::openapi::document)).into_response()
}

/// Whether the control plane can work (no token: for load balancers and probes). 200 while
/// the database answers, with Redis's state and the version it holds beside the database's
/// newest; 503 when the database does not answer.
async fn health(State(state): State<AppState>) -> Response {
    let database = async {
        let client = state.pool.get().await.ok()?;
        let row = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM config_versions", &[])
            .await
            .ok()?;
        Some(row.get::<_, i64>(0))
    }
    .await;
    let redis = state
        .publisher
        .redis()
        .get_bytes(cratopus_config::cluster::keys::CONFIG_CURRENT)
        .await;
    let published = redis
        .as_ref()
        .ok()
        .and_then(|v| v.as_deref())
        .and_then(|b| std::str::from_utf8(b).ok()?.parse::<i64>().ok());
    let body = serde_json::json!({
        "status": if database.is_some() { "ok" } else { "unavailable" },
        "database": if database.is_some() { "up" } else { "down" },
        "redis": if redis.is_ok() { "up" } else { "down" },
        "version": database,
        "published": published,
    });
    let status = if database.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// A JSON answer with an ETag (and the version a write made).
pub fn answer(status: StatusCode, body: Value, etag: Option<&str>, version: Option<u64>) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
        res.headers_mut().insert(header::ETAG, tag);
    }
    if let Some(v) = version {
        res.headers_mut().insert("x-config-version", HeaderValue::from(v));
    }
    res
}

/// The body as a JSON object; 400 otherwise.
pub fn json_object(body: &[u8]) -> ApiResult<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

/// Checks `If-Match` against the current ETag (`None`: the resource does not exist). Without
/// the header every write is allowed; with it, a write to anything but the version read is
/// refused with 412 (`*` matches any existing resource).
pub fn if_match(headers: &HeaderMap, current: Option<&str>) -> ApiResult<()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match: not a valid header value"))?;
    let Some(current) = current else {
        return Err(ApiError::precondition_failed("(none: it does not exist)"));
    };
    let matches = value.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == current
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::precondition_failed(current))
    }
}

/// A path segment that names something; 404 when it cannot (no such thing can exist).
pub fn name_param(name: &str, what: &str) -> ApiResult<()> {
    if crate::store::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("{what} `{name}` not found")))
    }
}

/// A query-less limit parameter read by hand (no extractor rejection in text/plain).
pub fn query_u64(uri: &axum::http::Uri, key: &str) -> ApiResult<Option<u64>> {
    let Some(q) = uri.query() else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{key}: a non-negative integer is expected")));
        }
    }
    Ok(None)
}
