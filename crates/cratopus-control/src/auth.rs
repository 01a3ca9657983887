//! Bearer tokens and tenants.
//!
//! The operator token (control.yaml) can do everything. An organization token (made with
//! `POST /api/v1/tokens`, its secret shown once and stored as a SHA-256) reads and changes
//! only its organization: any other organization answers 404 as if it did not exist, and the
//! operator-only endpoints (versions, nodes, tokens, creating organizations) answer 403.
//! Secrets are 32 random bytes, so a fast hash is enough (as for API keys and GitHub tokens):
//! nothing short enough to brute-force is ever hashed.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::http::HeaderMap;
use sha2::Digest;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    Operator,
    Org { org: String, token: String },
}

impl Caller {
    /// The name written in the audit log.
    pub fn who(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Org { org, token } => format!("{org}/{token}"),
        }
    }

    /// Ok for the operator; 403 for an organization token.
    pub fn operator(&self) -> ApiResult<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Org { .. } => Err(ApiError::forbidden()),
        }
    }

    /// Ok when the caller may see `org`; otherwise the same 404 as an organization that does
    /// not exist, so that a tenant cannot learn the others' names.
    pub fn may_see(&self, org: &str) -> ApiResult<()> {
        match self {
            Caller::Org { org: own, .. } if own != org => Err(org_not_found(org)),
            _ => Ok(()),
        }
    }
}

pub fn org_not_found(org: &str) -> ApiError {
    ApiError::not_found(format!("organization `{org}` not found"))
}

/// The SHA-256 of a token, hex.
pub fn hash(secret: &str) -> String {
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new secret: `cpt_` and 64 hex digits from the OS's randomness.
pub fn new_secret() -> ApiResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(format!(
        "cpt_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a request, from `Authorization: Bearer ...`; 401 without a valid token.
pub async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    if same(token.as_bytes(), state.operator_token.as_bytes()) {
        return Ok(Caller::Operator);
    }
    let client = state.pool.get().await?;
    let row = client
        .query_opt("SELECT name, org FROM tokens WHERE hash = $1", &[&hash(token)])
        .await?;
    match row {
        Some(row) => match row.get::<_, Option<String>>(1) {
            Some(org) => Ok(Caller::Org { org, token: row.get(0) }),
            None => Ok(Caller::Operator),
        },
        None => Err(ApiError::unauthorized()),
    }
}
