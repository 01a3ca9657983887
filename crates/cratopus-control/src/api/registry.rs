//! The service registry: instances register and heartbeat with a TTL
//! (`PUT .../services/{service}/instances/{id}`), deregister (`DELETE`), and nodes read the
//! live ones (`GET .../services/{service}`). Any valid token may use it: services are named
//! across the cluster, as in Consul's catalog.

use super::{answer, json_object, name_param};
use crate::AppState;
use crate::auth::caller;
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::time::Duration;

const DEFAULT_TTL: Duration = Duration::from_secs(30);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn instance(id: &str, url: &str, expires_ms: i64) -> Value {
    json!({"id": id, "url": url, "expires_at": crate::rfc3339(expires_ms)})
}

pub async fn list(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller(&state, &headers).await?;
    name_param(&service, "service")?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, url, expires_ms FROM registry_instances WHERE service = $1 AND expires_ms > $2 ORDER BY id",
            &[&service, &crate::now_ms()],
        )
        .await?;
    let instances: Vec<Value> = rows.iter().map(|r| instance(r.get(0), r.get(1), r.get(2))).collect();
    Ok(answer(
        StatusCode::OK,
        json!({"service": service, "instances": instances}),
        None,
        None,
    ))
}

/// An instance's URL: `http://` or `https://` with a host (and port), nothing else.
fn check_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("url: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if !a.host().is_empty() => Ok(()),
        _ => Err(format!("url: `{url}` is not an http:// or https:// URL with a host")),
    }
}

pub async fn put_one(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    caller(&state, &headers).await?;
    name_param(&service, "service")?;
    name_param(&id, "instance")?;
    let body = json_object(&body)?;
    let url = match body.get("url") {
        Some(Value::String(u)) => u.clone(),
        _ => return Err(ApiError::invalid("url: a string is required (http://host:port)")),
    };
    check_url(&url).map_err(ApiError::invalid)?;
    let ttl = match body.get("ttl") {
        None | Some(Value::Null) => DEFAULT_TTL,
        Some(v) => {
            serde_json::from_value::<cratopus_config::Dur>(v.clone())
                .map_err(|e| ApiError::invalid(format!("ttl: {e} (a duration such as \"15s\")")))?
                .0
        }
    };
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err(ApiError::invalid("ttl: between 1s and 24h"));
    }
    if let Some(k) = body.keys().find(|k| *k != "url" && *k != "ttl") {
        return Err(ApiError::invalid(format!("{k}: unknown field (url, ttl)")));
    }
    let now = crate::now_ms();
    let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let client = state.pool.get().await?;
    client
        .execute(
            "INSERT INTO registry_instances (service, id, url, expires_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (service, id) DO UPDATE SET url = excluded.url, expires_ms = excluded.expires_ms",
            &[&service, &id, &url, &expires],
        )
        .await?;
    // Instances that stopped heartbeating are forgotten here, by the service's next writer.
    client
        .execute(
            "DELETE FROM registry_instances WHERE service = $1 AND expires_ms <= $2",
            &[&service, &now],
        )
        .await?;
    Ok(answer(StatusCode::OK, instance(&id, &url, expires), None, None))
}

pub async fn delete_one(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller(&state, &headers).await?;
    let client = state.pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM registry_instances WHERE service = $1 AND id = $2",
            &[&service, &id],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!(
            "instance `{id}` of service `{service}` not found"
        )));
    }
    Ok(answer(
        StatusCode::OK,
        json!({"deleted": id, "service": service}),
        None,
        None,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_urls_are_http_with_a_host() {
        assert!(super::check_url("http://127.0.0.1:8081").is_ok());
        assert!(super::check_url("https://users.internal").is_ok());
        assert!(super::check_url("ftp://x").is_err());
        assert!(super::check_url("127.0.0.1:80").is_err());
    }
}
