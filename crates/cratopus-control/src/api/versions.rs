//! Config versions (list, one with its audit record and diff, restore) and the nodes that run
//! them. Operator only: a version holds every organization.

use super::{answer, query_u64};
use crate::AppState;
use crate::auth::caller;
use crate::change::{Summary, commit};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use cratopus_config::cluster::{Bundle, keys};
use serde_json::{Value, json};

fn version_param(n: &str) -> ApiResult<i64> {
    n.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found(format!("version `{n}` not found")))
}

/// The newest version in the database (0 before the first change).
async fn latest(state: &AppState) -> ApiResult<i64> {
    let client = state.pool.get().await?;
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM config_versions", &[])
        .await?;
    Ok(row.get(0))
}

pub async fn list(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> ApiResult<Response> {
    caller(&state, &headers).await?.operator()?;
    let limit = query_u64(&uri, "limit")?.unwrap_or(100).clamp(1, 1000);
    let before = query_u64(&uri, "before")?.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT a.version, a.who, a.at_ms, a.org, a.kind, a.name, a.action FROM audit_log a \
             WHERE a.version < $1 ORDER BY a.version DESC LIMIT $2",
            &[&before, &i64::try_from(limit).unwrap_or(100)],
        )
        .await?;
    drop(client);
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "version": r.get::<_, i64>(0),
                "who": r.get::<_, String>(1),
                "created_at": crate::rfc3339(r.get(2)),
                "organization": r.get::<_, Option<String>>(3),
                "kind": r.get::<_, String>(4),
                "name": r.get::<_, String>(5),
                "action": r.get::<_, String>(6),
            })
        })
        .collect();
    let current = latest(&state).await?;
    Ok(answer(
        StatusCode::OK,
        json!({"current": current, "items": items}),
        None,
        None,
    ))
}

pub async fn get_one(State(state): State<AppState>, Path(n): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&state, &headers).await?.operator()?;
    let v = version_param(&n)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT c.bundle, c.created_ms, a.who, a.at_ms, a.org, a.kind, a.name, a.action, a.diff \
             FROM config_versions c JOIN audit_log a ON a.version = c.version WHERE c.version = $1",
            &[&v],
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("version `{n}` not found")))?;
    let body = json!({
        "version": v,
        "created_at": crate::rfc3339(row.get(1)),
        "audit": {
            "who": row.get::<_, String>(2),
            "at": crate::rfc3339(row.get(3)),
            "organization": row.get::<_, Option<String>>(4),
            "kind": row.get::<_, String>(5),
            "name": row.get::<_, String>(6),
            "action": row.get::<_, String>(7),
            "diff": row.get::<_, Value>(8),
        },
        "bundle": row.get::<_, Value>(0),
    });
    Ok(answer(StatusCode::OK, body, None, None))
}

pub async fn restore(State(state): State<AppState>, Path(n): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    who.operator()?;
    let v = version_param(&n)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt("SELECT bundle FROM config_versions WHERE version = $1", &[&v])
        .await?
        .ok_or_else(|| ApiError::not_found(format!("version `{n}` not found")))?;
    drop(client);
    let bundle: Bundle = serde_json::from_value(row.get(0))
        .map_err(|e| ApiError::internal(format!("version {v}: stored bundle unreadable: {e}")))?;
    let done = commit(&state, &who, |orgs| {
        orgs.clear();
        for o in &bundle.organizations {
            orgs.insert(o.name.clone(), o.document.clone());
        }
        Ok(Summary {
            org: None,
            kind: "version",
            name: v.to_string(),
            action: "restore",
        })
    })
    .await?;
    Ok(answer(
        StatusCode::OK,
        json!({"version": done.version, "restored": v}),
        None,
        Some(done.version),
    ))
}

/// The nodes as they report themselves in Redis (`cratopus:nodes`), each with whether it runs
/// the current version.
pub async fn nodes(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&state, &headers).await?.operator()?;
    let current = latest(&state).await?;
    let redis = state.publisher.redis();
    let entries = redis
        .hgetall(keys::NODES)
        .await
        .map_err(|e| ApiError::unavailable(format!("redis: {e}")))?;
    let mut nodes: Vec<Value> = entries
        .into_iter()
        .map(|(field, value)| {
            let v: Value = serde_json::from_slice(&value).unwrap_or(Value::Null);
            let version = v.get("version").and_then(Value::as_i64);
            let seen = v.get("seen_ms").and_then(Value::as_i64);
            json!({
                "name": v.get("name").and_then(Value::as_str).unwrap_or(&field),
                "version": version,
                "current": version == Some(current),
                "last_seen": seen.map(crate::rfc3339),
                "seen_ms": seen,
                "started_ms": v.get("started_ms").and_then(Value::as_i64),
                "error": v.get("error").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    nodes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(answer(
        StatusCode::OK,
        json!({"current": current, "nodes": nodes}),
        None,
        None,
    ))
}
