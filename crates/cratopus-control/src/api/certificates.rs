//! Uploaded certificates of an organization: PEM certificate chain and key, checked to match
//! and to name only the organization's domains (a tenant cannot take another's host names),
//! stored in the database and handed to the nodes through Redis ([`crate::certs::publish`]).

use super::{answer, if_match, json_object, name_param};
use crate::AppState;
use crate::auth::caller;
use crate::certs::cluster_name;
use crate::error::{ApiError, ApiResult};
use crate::store::etag;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

struct Row {
    name: String,
    domains: Value,
    cert_pem: String,
    key_pem: String,
    not_after: String,
    updated_ms: i64,
}

impl Row {
    fn etag(&self) -> String {
        etag(&json!({"cert": self.cert_pem, "key": crate::auth::hash(&self.key_pem)}))
    }
    /// What the API answers: everything but the private key.
    fn public(&self) -> Value {
        json!({"name": self.name, "domains": self.domains, "cert_pem": self.cert_pem,
               "not_after": self.not_after, "updated_at": crate::rfc3339(self.updated_ms), "etag": self.etag()})
    }
}

async fn read(state: &AppState, org: &str, name: Option<&str>) -> ApiResult<Vec<Row>> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT name, domains, cert_pem, key_pem, not_after, updated_ms FROM certificates \
             WHERE org = $1 AND ($2::TEXT IS NULL OR name = $2) ORDER BY name",
            &[&org, &name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Row {
            name: r.get(0),
            domains: r.get(1),
            cert_pem: r.get(2),
            key_pem: r.get(3),
            not_after: r.get(4),
            updated_ms: r.get(5),
        })
        .collect())
}

/// The organization's domains; 404 when it does not exist or the caller may not see it.
async fn org_domains(state: &AppState, headers: &HeaderMap, org: &str) -> ApiResult<Vec<String>> {
    let who = caller(state, headers).await?;
    who.may_see(org)?;
    let client = state.pool.get().await?;
    if client
        .query_opt("SELECT 1 FROM organizations WHERE name = $1", &[&org])
        .await?
        .is_none()
    {
        return Err(crate::auth::org_not_found(org));
    }
    let rows = client
        .query("SELECT domain FROM domains WHERE org = $1", &[&org])
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0).to_ascii_lowercase())
        .collect())
}

pub async fn list(State(state): State<AppState>, Path(org): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    org_domains(&state, &headers, &org).await?;
    let items: Vec<Value> = read(&state, &org, None).await?.iter().map(Row::public).collect();
    Ok(answer(StatusCode::OK, json!({ "items": items }), None, None))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    org_domains(&state, &headers, &org).await?;
    let rows = read(&state, &org, Some(&name)).await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::not_found(format!("certificate `{name}` not found")))?;
    Ok(answer(StatusCode::OK, row.public(), Some(&row.etag()), None))
}

/// Whether the organization's `domains` cover certificate name `d` (equal, or `*.x` over one
/// label of `x`).
fn covered(domains: &[String], d: &str) -> bool {
    domains.iter().any(|o| {
        o == d
            || o.strip_prefix("*.").is_some_and(|base| {
                d.strip_suffix(base)
                    .and_then(|l| l.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
    })
}

pub async fn put_one(
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let domains = org_domains(&state, &headers, &org).await?;
    name_param(&name, "certificate")?;
    let body = json_object(&body)?;
    let field = |k: &str| match body.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ApiError::invalid(format!("{k}: a PEM string is required"))),
    };
    let (cert_pem, key_pem) = (field("cert_pem")?, field("key_pem")?);
    let parsed = crate::certs::parse(&cert_pem, &key_pem).map_err(ApiError::invalid)?;
    if let Some(d) = parsed.domains.iter().find(|d| !covered(&domains, d)) {
        return Err(ApiError::invalid(format!(
            "cert_pem: names `{d}`, which is not a domain of organization `{org}` (add the domain first)"
        )));
    }
    let existing = read(&state, &org, Some(&name)).await?;
    if_match(&headers, existing.first().map(Row::etag).as_deref())?;
    let now = crate::now_ms();
    let row = Row {
        name: name.clone(),
        domains: json!(parsed.domains),
        cert_pem,
        key_pem,
        not_after: parsed.not_after,
        updated_ms: now,
    };
    let client = state.pool.get().await?;
    client
        .execute(
            "INSERT INTO certificates (org, name, domains, cert_pem, key_pem, not_after, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (org, name) DO UPDATE SET domains = excluded.domains, cert_pem = excluded.cert_pem, \
             key_pem = excluded.key_pem, not_after = excluded.not_after, updated_ms = excluded.updated_ms",
            &[&org, &name, &row.domains, &row.cert_pem, &row.key_pem, &row.not_after, &now],
        )
        .await?;
    drop(client);
    publish(&state, &cluster_name(&org, &name), Some(&row)).await;
    let status = if existing.is_empty() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(status, row.public(), Some(&row.etag()), None))
}

pub async fn delete_one(
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    org_domains(&state, &headers, &org).await?;
    let existing = read(&state, &org, Some(&name)).await?;
    let Some(row) = existing.first() else {
        return Err(ApiError::not_found(format!("certificate `{name}` not found")));
    };
    if_match(&headers, Some(&row.etag()))?;
    let client = state.pool.get().await?;
    client
        .execute("DELETE FROM certificates WHERE org = $1 AND name = $2", &[&org, &name])
        .await?;
    drop(client);
    publish(&state, &cluster_name(&org, &name), None).await;
    Ok(answer(StatusCode::OK, json!({ "deleted": name }), None, None))
}

/// Writes (or removes) one certificate in Redis. Best effort: the database holds it either
/// way, and the publisher's catch-up writes it when Redis is back.
async fn publish(state: &AppState, cluster_name: &str, row: Option<&Row>) {
    let stored = row.map(|r| crate::certs::Stored {
        name: r.name.clone(),
        domains: r.domains.clone(),
        cert_pem: r.cert_pem.clone(),
        key_pem: r.key_pem.clone(),
        not_after: r.not_after.clone(),
        updated_ms: r.updated_ms,
    });
    match crate::certs::publish(state.publisher.redis(), cluster_name, stored.as_ref()).await {
        Ok(()) => tracing::info!(certificate = cluster_name, "certificate published"),
        Err(e) => {
            tracing::warn!(certificate = cluster_name, error = %e, "certificate stored but not published: Redis is unreachable");
            state.publisher.certificates_behind();
        }
    }
}

/// After an organization was deleted (its certificates with it): removes them from Redis.
pub async fn forget_org(state: &AppState, org: &str) {
    let redis = state.publisher.redis();
    let Ok(index) = redis.hgetall(crate::certs::INDEX).await else {
        return;
    };
    let prefix = format!("{org}/");
    for (name, _) in index.into_iter().filter(|(n, _)| n.starts_with(&prefix)) {
        publish(state, &name, None).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn certificate_names_must_be_the_organizations_domains() {
        let domains = vec!["api.acme.test".to_string(), "*.acme.dev".to_string()];
        assert!(super::covered(&domains, "api.acme.test"));
        assert!(super::covered(&domains, "x.acme.dev"));
        assert!(!super::covered(&domains, "a.b.acme.dev"));
        assert!(!super::covered(&domains, "shop.test"));
    }
}
