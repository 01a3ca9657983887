//! One accepted change: read every organization, apply the edit, compile the would-be version,
//! then write the organizations that changed, the new version and its audit record in one
//! SERIALIZABLE transaction, and publish after the commit.
//!
//! The edit is a plain function of the documents, so a transaction that loses a conflict is
//! simply run again from the start (with the documents as the winner left them: an `If-Match`
//! that held before may fail then, which is right).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::store::{self, Orgs, SaveError};
use crate::{AppState, db};
use cratopus_config::cluster::{Bundle, BundleOrg};
use serde_json::Value;

/// What a change did, for the audit record.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The organization changed; `None` for a change of several (a restore).
    pub org: Option<String>,
    /// `organization`, `route`, `upstream`, `policy`, `consumer`, `domain`, `version`.
    pub kind: &'static str,
    pub name: String,
    /// `create`, `update`, `delete`, `restore`.
    pub action: &'static str,
}

/// The outcome of a committed change.
#[derive(Debug)]
pub struct Committed {
    pub version: u64,
    /// Every organization after the change.
    pub orgs: Orgs,
}

/// Runs `edit` on the current organizations and commits the result as a new version by `who`.
/// `edit` may be called more than once (once per attempt); it returns what it did, or refuses
/// (404, 412, 409, ...). Nothing is written when it refuses or the result does not compile.
pub async fn commit<F>(state: &AppState, caller: &Caller, mut edit: F) -> ApiResult<Committed>
where
    F: FnMut(&mut Orgs) -> ApiResult<Summary>,
{
    let who = caller.who();
    let who = who.as_str();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_commit(state, caller, who, &mut edit).await {
            Ok((committed, bundle_json)) => {
                tracing::info!(version = committed.version, who, "config version committed");
                state.publisher.publish_now(committed.version, bundle_json).await;
                return Ok(committed);
            }
            Err(Attempt::Conflict(e)) if attempt < db::MAX_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "change conflicted: retrying");
                tokio::time::sleep(db::backoff(attempt)).await;
            }
            Err(Attempt::Conflict(e)) => {
                return Err(ApiError::unavailable(format!(
                    "the change kept conflicting with others ({attempt} attempts): {e}"
                )));
            }
            Err(Attempt::Refused(e)) => return Err(e),
        }
    }
}

enum Attempt {
    Conflict(tokio_postgres::Error),
    Refused(ApiError),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Attempt {
        if db::retryable(&e) {
            Attempt::Conflict(e)
        } else {
            Attempt::Refused(e.into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for Attempt {
    fn from(e: deadpool_postgres::PoolError) -> Attempt {
        Attempt::Refused(e.into())
    }
}

impl From<SaveError> for Attempt {
    fn from(e: SaveError) -> Attempt {
        match e {
            SaveError::Db(e) => e.into(),
            SaveError::Invalid(e) => Attempt::Refused(e),
        }
    }
}

async fn try_commit<F>(
    state: &AppState,
    caller: &Caller,
    who: &str,
    edit: &mut F,
) -> Result<(Committed, Vec<u8>), Attempt>
where
    F: FnMut(&mut Orgs) -> ApiResult<Summary>,
{
    let mut client = state.pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await?;
    let before = store::load_orgs(&tx).await?;
    let mut after = before.clone();
    let summary = edit(&mut after).map_err(Attempt::Refused)?;
    let row = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM config_versions", &[])
        .await?;
    let version = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0) + 1;
    let now = crate::now_ms();
    let bundle = bundle_of(version, &after, now);
    // The compile is CPU work of a few milliseconds per organization: off the async threads
    // (spawn_blocking rather than block_in_place, which a current-thread runtime refuses).
    let (path, text, candidate) = (state.gateway_path.clone(), state.gateway_text.clone(), bundle.clone());
    let checked = tokio::task::spawn_blocking(move || crate::validate::check(&path, &text, &candidate))
        .await
        .map_err(|e| Attempt::Refused(ApiError::internal(format!("the compile failed: {e}"))))?;
    checked.map_err(|problems| Attempt::Refused(ApiError::rejected(redact(problems, caller, &after))))?;
    for name in before.keys().chain(after.keys()) {
        let (old, new) = (before.get(name), after.get(name));
        if old != new {
            store::save_org(&tx, name, new, now).await?;
        }
    }
    let bundle_json = serde_json::to_vec(&bundle).map_err(|e| Attempt::Refused(ApiError::internal(e.to_string())))?;
    let bundle_value: Value = serde_json::from_slice(&bundle_json).unwrap_or(Value::Null);
    let v = i64::try_from(version).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO config_versions (version, bundle, created_ms) VALUES ($1, $2, $3)",
        &[&v, &bundle_value, &now],
    )
    .await?;
    let diff = diff(&before, &after);
    tx.execute(
        "INSERT INTO audit_log (version, who, at_ms, org, kind, name, action, diff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[&v, &who, &now, &summary.org, &summary.kind, &summary.name, &summary.action, &diff],
    )
    .await?;
    tx.commit().await?;
    Ok((Committed { version, orgs: after }, bundle_json))
}

/// A tenant sees the compile's problems without the other organizations in them: a problem in
/// another organization's document is reported as such, and another organization's name
/// (`already claimed by organization `globex``) is replaced, so that a refusal does not tell a
/// tenant who else is in the cluster.
fn redact(problems: Vec<String>, caller: &Caller, orgs: &Orgs) -> Vec<String> {
    let Caller::Org { org: own, .. } = caller else {
        return problems;
    };
    let others: Vec<&String> = orgs.keys().filter(|name| *name != own).collect();
    problems
        .into_iter()
        .map(|p| {
            let elsewhere = others
                .iter()
                .any(|o| p.starts_with("cluster/v") && p.contains(&format!("/{o}.json:")));
            if elsewhere {
                return "another organization's configuration conflicts with this change".to_string();
            }
            others
                .iter()
                .fold(p, |p, o| p.replace(&format!("`{o}`"), "`(another organization)`"))
        })
        .collect()
}

/// The bundle of `orgs` as version `version`.
pub fn bundle_of(version: u64, orgs: &Orgs, now_ms: i64) -> Bundle {
    Bundle {
        version,
        organizations: orgs
            .iter()
            .map(|(name, doc)| BundleOrg {
                name: name.clone(),
                document: doc.clone(),
            })
            .collect(),
        created_at: Some(crate::rfc3339(now_ms)),
    }
}

/// The RFC 6902 JSON Patch from `before` to `after`, over the object of every organization
/// by name: paths start with the organization (`/acme/routes/0/path`).
pub fn diff(before: &Orgs, after: &Orgs) -> Value {
    let as_object = |o: &Orgs| Value::Object(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    serde_json::to_value(json_patch::diff(&as_object(before), &as_object(after))).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn orgs(names: &[&str]) -> Orgs {
        names.iter().map(|n| (n.to_string(), json!({"name": n}))).collect()
    }

    #[test]
    fn a_tenant_is_not_told_the_other_organizations() {
        let all = orgs(&["acme", "globex"]);
        let problems = vec![
            "cluster/v4/globex.json:3:5: domain `api.acme.test` is already claimed by organization `acme`".to_string(),
            "cluster/v4/acme.json:9:1: something in acme's own document".to_string(),
        ];
        let tenant = Caller::Org {
            org: "globex".into(),
            token: "ci".into(),
        };
        let seen = redact(problems.clone(), &tenant, &all);
        assert_eq!(
            seen[0],
            "cluster/v4/globex.json:3:5: domain `api.acme.test` is already claimed by organization `(another organization)`"
        );
        assert_eq!(
            seen[1],
            "another organization's configuration conflicts with this change"
        );
        assert_eq!(redact(problems.clone(), &Caller::Operator, &all), problems);
    }

    #[test]
    fn the_diff_is_a_json_patch_over_the_organizations_by_name() {
        let before = orgs(&["acme"]);
        let mut after = before.clone();
        after.insert("globex".into(), json!({"name": "globex"}));
        after.get_mut("acme").unwrap()["domains"] = json!(["a.test"]);
        let patch = diff(&before, &after);
        let ops: Vec<(&str, &str)> = patch
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["op"].as_str().unwrap(), o["path"].as_str().unwrap()))
            .collect();
        assert_eq!(ops, [("add", "/acme/domains"), ("add", "/globex")]);
    }
}
