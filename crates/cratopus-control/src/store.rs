//! Organizations in the database: a document per organization, kept as rows.
//!
//! The API speaks in organization documents (the JSON form of an organization file) and in
//! their parts. The store keeps the parts an API edits one by one in tables of their own
//! (domains, upstreams, routes, policies, consumers) and the rest of the document (auth, cors,
//! tls, limits, ...) as the organization's `settings`; [`load_orgs`] puts documents back
//! together, [`save_org`] takes one apart. A change is always made on documents, so what is
//! validated, versioned, diffed and published is exactly what the tables then hold.

use crate::error::{ApiError, ApiResult};
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Every organization's document, by name.
pub type Orgs = BTreeMap<String, Value>;

/// The keys of a document that have tables of their own.
const PARTS: [&str; 6] = ["name", "domains", "upstreams", "routes", "policies", "consumers"];

/// Reads every organization's document.
pub async fn load_orgs(db: &impl GenericClient) -> Result<Orgs, tokio_postgres::Error> {
    load(db, None).await
}

/// Reads one organization's document (a read of one resource does not read the others').
pub async fn load_org(db: &impl GenericClient, org: &str) -> Result<Option<Value>, tokio_postgres::Error> {
    Ok(load(db, Some(org)).await?.remove(org))
}

async fn load(db: &impl GenericClient, only: Option<&str>) -> Result<Orgs, tokio_postgres::Error> {
    let mut orgs: Orgs = BTreeMap::new();
    let all = "($1::TEXT IS NULL OR org = $1)";
    for row in db
        .query(
            "SELECT name, settings FROM organizations WHERE ($1::TEXT IS NULL OR name = $1)",
            &[&only],
        )
        .await?
    {
        let name: String = row.get(0);
        let mut doc = match row.get::<_, Value>(1) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        doc.insert("name".into(), Value::String(name.clone()));
        orgs.insert(name, Value::Object(doc));
    }
    let mut push = |org: &str, key: &str, value: Value, named: Option<String>| {
        if let Some(Value::Object(doc)) = orgs.get_mut(org) {
            match named {
                Some(name) => {
                    let map = doc.entry(key).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(m) = map {
                        m.insert(name, value);
                    }
                }
                None => {
                    let list = doc.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(l) = list {
                        l.push(value);
                    }
                }
            }
        }
    };
    for row in db
        .query(
            &format!("SELECT org, domain FROM domains WHERE {all} ORDER BY org, position"),
            &[&only],
        )
        .await?
    {
        push(row.get(0), "domains", Value::String(row.get(1)), None);
    }
    for row in db
        .query(
            &format!("SELECT org, name, document FROM upstreams WHERE {all}"),
            &[&only],
        )
        .await?
    {
        push(row.get(0), "upstreams", row.get(2), Some(row.get(1)));
    }
    for row in db
        .query(
            &format!("SELECT org, document FROM routes WHERE {all} ORDER BY org, position"),
            &[&only],
        )
        .await?
    {
        push(row.get(0), "routes", row.get(1), None);
    }
    for row in db
        .query(
            &format!("SELECT org, name, document FROM policies WHERE {all}"),
            &[&only],
        )
        .await?
    {
        push(row.get(0), "policies", row.get(2), Some(row.get(1)));
    }
    for row in db
        .query(
            &format!("SELECT org, document FROM consumers WHERE {all} ORDER BY org, position"),
            &[&only],
        )
        .await?
    {
        push(row.get(0), "consumers", row.get(1), None);
    }
    Ok(orgs)
}

/// The parts of one document, checked for what the API needs beyond the config's own rules:
/// every route has a `name` (the API's id of a route), unique in the organization.
pub struct Split<'a> {
    pub settings: Map<String, Value>,
    pub domains: Vec<&'a str>,
    pub upstreams: Vec<(&'a str, &'a Value)>,
    pub routes: Vec<(&'a str, &'a Value)>,
    pub policies: Vec<(&'a str, &'a Value)>,
    pub consumers: Vec<(&'a str, &'a Value)>,
}

/// Takes a (compiled, so well-shaped) document apart.
pub fn split<'a>(org: &str, doc: &'a Value) -> ApiResult<Split<'a>> {
    let Value::Object(map) = doc else {
        return Err(ApiError::invalid(format!(
            "organization {org}: the document must be a JSON object"
        )));
    };
    let settings: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !PARTS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut domains: Vec<&'a str> = Vec::new();
    for (i, d) in map
        .get("domains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        // YAML would read `false` or `1` as a host name; the store keeps strings only.
        let Some(d) = d.as_str() else {
            return Err(ApiError::invalid(format!(
                "organization {org}: domains[{i}]: a string is expected, not {d}"
            )));
        };
        domains.push(d);
    }
    let named = |key: &str| -> Vec<(&'a str, &'a Value)> {
        map.get(key)
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default()
    };
    let listed = |key: &str, id: &str| -> ApiResult<Vec<(&'a str, &'a Value)>> {
        let mut out: Vec<(&'a str, &'a Value)> = Vec::new();
        for (i, item) in map.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let Some(name) = item.get(id).and_then(Value::as_str).filter(|n| valid_name(n)) else {
                return Err(ApiError::invalid(format!(
                    "organization {org}: {key}[{i}]: `{id}` is required through the API (it names the {} in /api/v1/organizations/{org}/{key}/{{{id}}}); letters, digits, '-', '_' and '.'",
                    &key[..key.len() - 1]
                )));
            };
            if out.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::invalid(format!(
                    "organization {org}: {key}[{i}]: {id} `{name}` is used twice"
                )));
            }
            out.push((name, item));
        }
        Ok(out)
    };
    Ok(Split {
        settings,
        domains,
        upstreams: named("upstreams"),
        routes: listed("routes", "name")?,
        policies: named("policies"),
        consumers: listed("consumers", "id")?,
    })
}

/// Whether `name` can be an organization's or a resource's name in a URL path.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != ".."
}

/// Writes one organization's document (`None`: deletes the organization, with its tokens and
/// certificates).
pub async fn save_org(db: &impl GenericClient, org: &str, doc: Option<&Value>, now_ms: i64) -> Result<(), SaveError> {
    let Some(doc) = doc else {
        for table in [
            "domains",
            "upstreams",
            "routes",
            "policies",
            "consumers",
            "certificates",
            "tokens",
        ] {
            db.execute(&format!("DELETE FROM {table} WHERE org = $1"), &[&org])
                .await?;
        }
        db.execute("DELETE FROM organizations WHERE name = $1", &[&org]).await?;
        return Ok(());
    };
    let parts = split(org, doc).map_err(SaveError::Invalid)?;
    for table in ["domains", "upstreams", "routes", "policies", "consumers"] {
        db.execute(&format!("DELETE FROM {table} WHERE org = $1"), &[&org])
            .await?;
    }
    db.execute(
        "INSERT INTO organizations (name, settings, updated_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated_ms = excluded.updated_ms",
        &[&org, &Value::Object(parts.settings), &now_ms],
    )
    .await?;
    for (i, d) in parts.domains.iter().enumerate() {
        let pos = i as i64;
        db.execute(
            "INSERT INTO domains (org, domain, position) VALUES ($1, $2, $3) ON CONFLICT (org, domain) DO NOTHING",
            &[&org, d, &pos],
        )
        .await?;
    }
    for (name, v) in &parts.upstreams {
        db.execute(
            "INSERT INTO upstreams (org, name, document) VALUES ($1, $2, $3)",
            &[&org, name, *v],
        )
        .await?;
    }
    for (i, (name, v)) in parts.routes.iter().enumerate() {
        let pos = i as i64;
        db.execute(
            "INSERT INTO routes (org, name, position, document) VALUES ($1, $2, $3, $4)",
            &[&org, name, &pos, *v],
        )
        .await?;
    }
    for (name, v) in &parts.policies {
        db.execute(
            "INSERT INTO policies (org, name, document) VALUES ($1, $2, $3)",
            &[&org, name, *v],
        )
        .await?;
    }
    for (i, (id, v)) in parts.consumers.iter().enumerate() {
        let pos = i as i64;
        db.execute(
            "INSERT INTO consumers (org, id, position, document) VALUES ($1, $2, $3, $4)",
            &[&org, id, &pos, *v],
        )
        .await?;
    }
    Ok(())
}

/// Why [`save_org`] failed.
#[derive(Debug)]
pub enum SaveError {
    Db(tokio_postgres::Error),
    Invalid(ApiError),
}

impl From<tokio_postgres::Error> for SaveError {
    fn from(e: tokio_postgres::Error) -> SaveError {
        SaveError::Db(e)
    }
}

/// The ETag of a stored document: a hash of its JSON with keys sorted at every level (so equal
/// documents have equal tags, whatever order their keys came in).
pub fn etag(doc: &Value) -> String {
    use sha2::Digest;
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(l) => {
                out.push('[');
                for (i, item) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(doc, &mut text);
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_splits_into_its_tables_and_routes_need_names() {
        let doc = json!({"name": "acme", "domains": ["a.test"], "cors": {"origins": ["*"]},
            "upstreams": {"m": {"targets": ["mirror://"]}},
            "routes": [{"name": "r1", "path": "/", "upstream": "m"}]});
        let s = split("acme", &doc).unwrap();
        assert_eq!(s.domains, ["a.test"]);
        assert_eq!(s.routes[0].0, "r1");
        assert!(s.settings.contains_key("cors") && !s.settings.contains_key("routes"));
        let unnamed = json!({"name": "acme", "routes": [{"path": "/", "upstream": "m"}]});
        let e = split("acme", &unnamed).err().unwrap();
        assert!(e.message.contains("routes[0]: `name` is required"), "{}", e.message);
        let twice = json!({"name": "acme", "routes": [{"name": "a", "path": "/"}, {"name": "a", "path": "/b"}]});
        assert!(split("acme", &twice).err().unwrap().message.contains("used twice"));
        let odd = json!({"name": "acme", "domains": [false]});
        assert!(split("acme", &odd).err().unwrap().message.contains("domains[0]"));
    }

    #[test]
    fn equal_documents_have_equal_etags() {
        assert_eq!(etag(&json!({"a": 1, "b": 2})), etag(&json!({"b": 2, "a": 1})));
        assert_ne!(etag(&json!({"a": 1})), etag(&json!({"a": 2})));
    }
}
