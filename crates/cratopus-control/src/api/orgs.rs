//! Organizations (whole documents), their domains, and their upstreams, routes, policies and
//! consumers one by one. Every write goes through [`crate::change::commit`].

use super::{answer, if_match, json_object, name_param};
use crate::AppState;
use crate::auth::{Caller, caller, org_not_found};
use crate::change::{Summary, commit};
use crate::error::{ApiError, ApiResult};
use crate::store::{self, Orgs, etag};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

/// A kind of resource inside an organization document.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The document's key and the URL segment: `routes`.
    pub plural: &'static str,
    /// For the audit log and messages: `route`.
    pub singular: &'static str,
    /// Kept as a list whose items carry their id under this key (`routes` by `name`,
    /// `consumers` by `id`); `None`: kept as a map by name (`upstreams`, `policies`).
    pub id_key: Option<&'static str>,
}

pub const KINDS: [Kind; 4] = [
    Kind {
        plural: "upstreams",
        singular: "upstream",
        id_key: None,
    },
    Kind {
        plural: "routes",
        singular: "route",
        id_key: Some("name"),
    },
    Kind {
        plural: "policies",
        singular: "policy",
        id_key: None,
    },
    Kind {
        plural: "consumers",
        singular: "consumer",
        id_key: Some("id"),
    },
];

impl Kind {
    fn get<'a>(&self, doc: &'a Value, name: &str) -> Option<&'a Value> {
        let coll = doc.get(self.plural)?;
        match self.id_key {
            None => coll.get(name),
            Some(id) => coll
                .as_array()?
                .iter()
                .find(|item| item.get(id).and_then(Value::as_str) == Some(name)),
        }
    }

    fn items<'a>(&self, doc: &'a Value) -> Vec<(String, &'a Value)> {
        match (self.id_key, doc.get(self.plural)) {
            (None, Some(Value::Object(m))) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            (Some(id), Some(Value::Array(l))) => l
                .iter()
                .map(|v| (v.get(id).and_then(Value::as_str).unwrap_or_default().to_string(), v))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Puts `value` under `name` (in place, or at the end); whether it is new.
    fn put(&self, doc: &mut Value, name: &str, value: Value) -> bool {
        let Value::Object(map) = doc else { return false };
        match self.id_key {
            None => {
                let coll = map.entry(self.plural).or_insert_with(|| Value::Object(Map::new()));
                if !coll.is_object() {
                    *coll = Value::Object(Map::new());
                }
                coll.as_object_mut()
                    .is_some_and(|m| m.insert(name.to_string(), value).is_none())
            }
            Some(id) => {
                let coll = map.entry(self.plural).or_insert_with(|| Value::Array(Vec::new()));
                if !coll.is_array() {
                    *coll = Value::Array(Vec::new());
                }
                let Some(list) = coll.as_array_mut() else { return false };
                match list
                    .iter_mut()
                    .find(|item| item.get(id).and_then(Value::as_str) == Some(name))
                {
                    Some(slot) => {
                        *slot = value;
                        false
                    }
                    None => {
                        list.push(value);
                        true
                    }
                }
            }
        }
    }

    fn delete(&self, doc: &mut Value, name: &str) -> bool {
        let Some(coll) = doc.get_mut(self.plural) else {
            return false;
        };
        let removed = match (self.id_key, &mut *coll) {
            (None, Value::Object(m)) => m.remove(name).is_some(),
            (Some(id), Value::Array(l)) => {
                let n = l.len();
                l.retain(|item| item.get(id).and_then(Value::as_str) != Some(name));
                l.len() != n
            }
            _ => false,
        };
        // An emptied collection is left out, as the store leaves it out.
        if (coll.as_object().is_some_and(Map::is_empty) || coll.as_array().is_some_and(Vec::is_empty))
            && let Some(m) = doc.as_object_mut()
        {
            m.remove(self.plural);
        }
        removed
    }
}

/// The organizations the caller may see, read outside any transaction.
async fn read_orgs(state: &AppState) -> ApiResult<Orgs> {
    let client = state.pool.get().await?;
    Ok(store::load_orgs(&client).await?)
}

/// The document of `org`, or 404 (also for an organization the caller may not see).
async fn read_org(state: &AppState, who: &Caller, org: &str) -> ApiResult<Value> {
    who.may_see(org)?;
    let client = state.pool.get().await?;
    store::load_org(&client, org).await?.ok_or_else(|| org_not_found(org))
}

fn org_mut<'a>(orgs: &'a mut Orgs, org: &str) -> ApiResult<&'a mut Value> {
    orgs.get_mut(org).ok_or_else(|| org_not_found(org))
}

pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let orgs = read_orgs(&state).await?;
    let items: Vec<Value> = orgs
        .iter()
        .filter(|(name, _)| who.may_see(name).is_ok())
        .map(|(name, doc)| json!({"name": name, "etag": etag(doc), "document": doc}))
        .collect();
    Ok(answer(StatusCode::OK, json!({ "items": items }), None, None))
}

/// The body of a document write: a JSON object whose `name` (if any) is `org`.
fn document_body(org: Option<&str>, body: &[u8]) -> ApiResult<(String, Value)> {
    let mut map = json_object(body)?;
    let name = match (map.get("name"), org) {
        (Some(Value::String(n)), Some(o)) if n != o => {
            return Err(ApiError::invalid(format!(
                "name: `{n}` differs from the organization in the path, `{o}`"
            )));
        }
        (Some(Value::String(n)), _) => n.clone(),
        (None, Some(o)) => o.to_string(),
        (Some(_), _) => return Err(ApiError::invalid("name: a string is expected")),
        (None, None) => return Err(ApiError::invalid("name: the organization's name is required")),
    };
    if !store::valid_name(&name) {
        return Err(ApiError::invalid(format!(
            "name: `{name}` cannot name an organization in a URL (letters, digits, '-', '_' and '.')"
        )));
    }
    map.insert("name".into(), Value::String(name.clone()));
    Ok((name, Value::Object(map)))
}

fn written(status: StatusCode, doc: &Value, version: u64) -> Response {
    answer(status, doc.clone(), Some(&etag(doc)), Some(version))
}

pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    who.operator()?;
    let (name, doc) = document_body(None, &body)?;
    let done = commit(&state, &who, |orgs| {
        if orgs.contains_key(&name) {
            return Err(ApiError::conflict(format!(
                "organization `{name}` exists; PUT /api/v1/organizations/{name} replaces it"
            )));
        }
        orgs.insert(name.clone(), doc.clone());
        Ok(Summary {
            org: Some(name.clone()),
            kind: "organization",
            name: name.clone(),
            action: "create",
        })
    })
    .await?;
    Ok(written(StatusCode::CREATED, &done.orgs[&name], done.version))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let doc = read_org(&state, &who, &org).await?;
    Ok(answer(StatusCode::OK, doc.clone(), Some(&etag(&doc)), None))
}

pub async fn put_one(
    State(state): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    who.may_see(&org)?;
    name_param(&org, "organization")?;
    let (_, doc) = document_body(Some(&org), &body)?;
    let mut created = false;
    let done = commit(&state, &who, |orgs| {
        let current = orgs.get(&org);
        if current.is_none() {
            // Only the operator makes organizations (a tenant's own exists while its token does).
            who.operator()?;
        }
        if_match(&headers, current.map(etag).as_deref())?;
        created = orgs.insert(org.clone(), doc.clone()).is_none();
        Ok(Summary {
            org: Some(org.clone()),
            kind: "organization",
            name: org.clone(),
            action: if created { "create" } else { "update" },
        })
    })
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(written(status, &done.orgs[&org], done.version))
}

pub async fn delete_one(
    State(state): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    who.may_see(&org)?;
    who.operator()?;
    let done = commit(&state, &who, |orgs| {
        let current = orgs.get(&org).ok_or_else(|| org_not_found(&org))?;
        if_match(&headers, Some(&etag(current)))?;
        orgs.remove(&org);
        Ok(Summary {
            org: Some(org.clone()),
            kind: "organization",
            name: org.clone(),
            action: "delete",
        })
    })
    .await?;
    crate::api::certificates::forget_org(&state, &org).await;
    Ok(answer(
        StatusCode::OK,
        json!({"deleted": org, "version": done.version}),
        None,
        Some(done.version),
    ))
}

fn domains_of(doc: &Value) -> Value {
    doc.get("domains").cloned().unwrap_or_else(|| json!([]))
}

pub async fn list_domains(
    State(state): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let doc = read_org(&state, &who, &org).await?;
    let domains = domains_of(&doc);
    Ok(answer(
        StatusCode::OK,
        json!({ "items": domains }),
        Some(&etag(&domains)),
        None,
    ))
}

pub async fn get_domain(
    State(state): State<AppState>,
    Path((org, domain)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let doc = read_org(&state, &who, &org).await?;
    let domains = domains_of(&doc);
    if !domains
        .as_array()
        .is_some_and(|l| l.iter().any(|d| d == domain.as_str()))
    {
        return Err(ApiError::not_found(format!("domain `{domain}` not found")));
    }
    Ok(answer(
        StatusCode::OK,
        json!({ "domain": domain }),
        Some(&etag(&domains)),
        None,
    ))
}

/// Adds (`Some`) or removes (`None`) a domain; `If-Match` is the domain list's ETag.
async fn change_domain(
    state: &AppState,
    org: &str,
    domain: &str,
    headers: &HeaderMap,
    add: bool,
) -> ApiResult<Response> {
    let who = caller(state, headers).await?;
    who.may_see(org)?;
    if domain.is_empty() || domain.len() > 253 {
        return Err(ApiError::not_found(format!("domain `{domain}` not found")));
    }
    let mut created = false;
    let done = commit(state, &who, |orgs| {
        let doc = org_mut(orgs, org)?;
        let domains = domains_of(doc);
        if_match(headers, Some(&etag(&domains)))?;
        let mut list: Vec<Value> = domains.as_array().cloned().unwrap_or_default();
        let present = list.iter().any(|d| d == domain);
        match (add, present) {
            (true, false) => {
                list.push(Value::String(domain.to_string()));
                created = true;
            }
            (false, true) => list.retain(|d| d != domain),
            (true, true) => {}
            (false, false) => return Err(ApiError::not_found(format!("domain `{domain}` not found"))),
        }
        if let Some(m) = doc.as_object_mut() {
            if list.is_empty() {
                m.remove("domains");
            } else {
                m.insert("domains".into(), Value::Array(list));
            }
        }
        Ok(Summary {
            org: Some(org.to_string()),
            kind: "domain",
            name: domain.to_string(),
            action: if !add {
                "delete"
            } else if created {
                "create"
            } else {
                "update"
            },
        })
    })
    .await?;
    let domains = domains_of(&done.orgs[org]);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(answer(
        status,
        json!({ "items": domains }),
        Some(&etag(&domains)),
        Some(done.version),
    ))
}

pub async fn put_domain(
    State(state): State<AppState>,
    Path((org, domain)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    change_domain(&state, &org, &domain, &headers, true).await
}

pub async fn delete_domain(
    State(state): State<AppState>,
    Path((org, domain)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    change_domain(&state, &org, &domain, &headers, false).await
}

pub async fn list_resources(
    kind: Kind,
    State(state): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let doc = read_org(&state, &who, &org).await?;
    let items: Vec<Value> = kind
        .items(&doc)
        .into_iter()
        .map(|(name, v)| json!({"name": name, "etag": etag(v), "document": v}))
        .collect();
    Ok(answer(StatusCode::OK, json!({ "items": items }), None, None))
}

fn resource_not_found(kind: Kind, name: &str) -> ApiError {
    ApiError::not_found(format!("{} `{name}` not found", kind.singular))
}

pub async fn get_resource(
    kind: Kind,
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let doc = read_org(&state, &who, &org).await?;
    let item = kind.get(&doc, &name).ok_or_else(|| resource_not_found(kind, &name))?;
    Ok(answer(StatusCode::OK, item.clone(), Some(&etag(item)), None))
}

pub async fn put_resource(
    kind: Kind,
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    who.may_see(&org)?;
    name_param(&name, kind.singular)?;
    let mut value = json_object(&body)?;
    if let Some(id) = kind.id_key {
        match value.get(id) {
            None => {
                value.insert(id.into(), Value::String(name.clone()));
            }
            Some(Value::String(v)) if *v == name => {}
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "{id}: {other} differs from the {} in the path, `{name}`",
                    kind.singular
                )));
            }
        }
    }
    let value = Value::Object(value);
    let mut created = false;
    let done = commit(&state, &who, |orgs| {
        let doc = org_mut(orgs, &org)?;
        if_match(&headers, kind.get(doc, &name).map(etag).as_deref())?;
        created = kind.put(doc, &name, value.clone());
        Ok(Summary {
            org: Some(org.clone()),
            kind: kind.singular,
            name: name.clone(),
            action: if created { "create" } else { "update" },
        })
    })
    .await?;
    let item = kind.get(&done.orgs[&org], &name).cloned().unwrap_or(Value::Null);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(answer(status, item.clone(), Some(&etag(&item)), Some(done.version)))
}

pub async fn delete_resource(
    kind: Kind,
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    who.may_see(&org)?;
    let done = commit(&state, &who, |orgs| {
        let doc = org_mut(orgs, &org)?;
        let current = kind.get(doc, &name).ok_or_else(|| resource_not_found(kind, &name))?;
        if_match(&headers, Some(&etag(current)))?;
        kind.delete(doc, &name);
        Ok(Summary {
            org: Some(org.clone()),
            kind: kind.singular,
            name: name.clone(),
            action: "delete",
        })
    })
    .await?;
    Ok(answer(
        StatusCode::OK,
        json!({"deleted": name, "version": done.version}),
        None,
        Some(done.version),
    ))
}
