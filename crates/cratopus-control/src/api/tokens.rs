//! Organization tokens, made and revoked by the operator. The secret is answered once, at
//! creation; the database keeps its SHA-256.

use super::{answer, json_object, name_param};
use crate::AppState;
use crate::auth::{caller, hash, new_secret};
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&state, &headers).await?.operator()?;
    let client = state.pool.get().await?;
    let rows = client
        .query("SELECT name, org, created_ms FROM tokens ORDER BY name", &[])
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"name": r.get::<_, String>(0), "organization": r.get::<_, Option<String>>(1),
                   "created_at": crate::rfc3339(r.get(2))})
        })
        .collect();
    Ok(answer(StatusCode::OK, json!({ "items": items }), None, None))
}

pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    caller(&state, &headers).await?.operator()?;
    let body = json_object(&body)?;
    let name = match body.get("name") {
        Some(Value::String(n)) if crate::store::valid_name(n) => n.clone(),
        _ => {
            return Err(ApiError::invalid(
                "name: a name of letters, digits, '-', '_' and '.' is required",
            ));
        }
    };
    let org = match body.get("organization") {
        None | Some(Value::Null) => None,
        Some(Value::String(o)) => Some(o.clone()),
        Some(_) => return Err(ApiError::invalid("organization: a string or null is expected")),
    };
    if let Some(k) = body.keys().find(|k| *k != "name" && *k != "organization") {
        return Err(ApiError::invalid(format!("{k}: unknown field (name, organization)")));
    }
    let secret = new_secret()?;
    let now = crate::now_ms();
    let client = state.pool.get().await?;
    if let Some(o) = &org {
        let exists = client
            .query_opt("SELECT 1 FROM organizations WHERE name = $1", &[o])
            .await?
            .is_some();
        if !exists {
            return Err(crate::auth::org_not_found(o));
        }
    }
    let inserted = client
        .execute(
            "INSERT INTO tokens (name, org, hash, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            &[&name, &org, &hash(&secret), &now],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::conflict(format!("token `{name}` exists; delete it first")));
    }
    tracing::info!(token = %name, organization = ?org, "token created");
    Ok(answer(
        StatusCode::CREATED,
        json!({"name": name, "organization": org, "token": secret, "created_at": crate::rfc3339(now)}),
        None,
        None,
    ))
}

pub async fn delete_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller(&state, &headers).await?.operator()?;
    name_param(&name, "token")?;
    let client = state.pool.get().await?;
    let n = client.execute("DELETE FROM tokens WHERE name = $1", &[&name]).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("token `{name}` not found")));
    }
    Ok(answer(StatusCode::OK, json!({ "deleted": name }), None, None))
}
