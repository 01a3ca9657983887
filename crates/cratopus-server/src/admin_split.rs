//! The admin API of weighted splits: `GET /api/splits` shows each route's split (running and
//! configured weights, per-arm counts, the rollback window and state), `PUT /api/splits` sets
//! weights at run time (a progressive rollout: 1 → 5 → 25 → 100). Set weights live in the
//! split's runtime state, which a reload carries over while the route's split config stays
//! the same; changing the split in the file starts from the file's weights again.

use crate::admin::{AdminState, error};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cratopus_core::Snapshot;
use cratopus_upstream::SplitState;
use cratopus_upstream::split::{Rollback, Sticky, WeightsError, WindowStats};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

/// Every split of the running snapshot, in route order (each route once).
pub fn splits(snap: &Snapshot) -> Vec<Arc<SplitState>> {
    let mut out: Vec<Arc<SplitState>> = Vec::new();
    for r in &snap.routes {
        if let Some(s) = r.backend.split()
            && !out.iter().any(|o| Arc::ptr_eq(o, &s.state))
        {
            out.push(s.state.clone());
        }
    }
    out
}

/// The split of `org`'s route `route`.
fn find(snap: &Snapshot, org: &str, route: &str) -> Option<Arc<SplitState>> {
    splits(snap)
        .into_iter()
        .find(|s| &**s.org() == org && &**s.route() == route)
}

fn window(w: Option<WindowStats>) -> Value {
    match w {
        None => Value::Null,
        Some(w) => json!({
            "requests": w.requests,
            "errors": w.errors,
            "p95_ms": w.p95.map(|d| d.as_secs_f64() * 1e3),
        }),
    }
}

fn rollback_json(r: &Rollback) -> Value {
    json!({
        "at": r.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        "reason": r.reason,
        "weight_before": r.weight_before,
        "canary": window(Some(r.canary)),
        "others": window(Some(r.others)),
    })
}

/// A split as the API shows it.
pub fn describe(s: &SplitState, now: Instant) -> Value {
    let settings = s.settings();
    let weights = s.weights();
    let arms: Vec<Value> = settings
        .arms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (requests, errors) = s.arm_totals(i);
            json!({
                "name": &*a.name,
                "upstream": &*a.upstream,
                "weight": weights.get(i).copied().unwrap_or(0),
                "configured_weight": a.weight,
                "canary": settings.canary == Some(i),
                "requests": requests,
                "errors": errors,
                "window": window(s.arm_window(i, now)),
            })
        })
        .collect();
    let sticky = settings.sticky.as_ref().map(|k| match k {
        Sticky::Header(h) => format!("header {h}"),
        Sticky::Cookie(c) => format!("cookie {c}"),
        Sticky::Consumer => "consumer".to_string(),
        Sticky::ClientIp => "client_ip".to_string(),
    });
    json!({
        "organization": &**s.org(),
        "route": &**s.route(),
        "canary": settings.canary.map(|i| &*settings.arms[i].name),
        "sticky": sticky,
        "override_header": settings.override_header.as_ref().map(|h| h.as_str()),
        "arms": arms,
        "rollback": {
            "enabled": settings.rollback.is_some(),
            "rolled_back": s.is_rolled_back(),
            "rollbacks": s.rollbacks(),
            "last": s.last_rollback().as_ref().map(rollback_json),
        },
    })
}

/// `GET /api/splits[?organization=…&route=…]`: every split, or those of one organization or
/// route (404 when a route is named and has no split).
pub async fn list(State(s): State<Arc<AdminState>>, uri: Uri) -> Response {
    let (mut org, mut route) = (None, None);
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match &*k {
            "organization" => org = Some(v.into_owned()),
            "route" => route = Some(v.into_owned()),
            _ => {}
        }
    }
    let snap = s.engine.snapshot();
    let now = Instant::now();
    let list: Vec<Value> = splits(&snap)
        .iter()
        .filter(|x| org.as_deref().is_none_or(|o| **x.org() == *o))
        .filter(|x| route.as_deref().is_none_or(|r| **x.route() == *r))
        .map(|x| describe(x, now))
        .collect();
    if route.is_some() && list.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such organization, or that route has no split",
        );
    }
    axum::Json(json!({"splits": list})).into_response()
}

/// `PUT /api/splits`: `{"organization", "route", "weights": {"arm": weight, …}}`; arms not
/// named keep their weight. An unknown arm is `404`, every weight at 0 `409`.
pub async fn set_weights(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "bad_request", m);
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(&format!("the body is not JSON: {e}")),
    };
    let (Some(org), Some(route)) = (
        v.get("organization").and_then(Value::as_str),
        v.get("route").and_then(Value::as_str),
    ) else {
        return bad("the body needs a string `organization` and a string `route`");
    };
    let Some(map) = v.get("weights").and_then(Value::as_object) else {
        return bad("the body needs `weights`, an object of arm name → weight");
    };
    let mut weights: Vec<(&str, u32)> = Vec::with_capacity(map.len());
    for (arm, w) in map {
        // JSON Schema counts 5.0 as an integer, so the API takes it as one.
        let whole = w.as_u64().or_else(|| {
            w.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                .map(|f| f as u64)
        });
        match whole.and_then(|w| u32::try_from(w).ok()) {
            Some(w) => weights.push((arm, w)),
            None => return bad(&format!("the weight of arm `{arm}` must be a whole number from 0")),
        }
    }
    let snap = s.engine.snapshot();
    let Some(split) = find(&snap, org, route) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such organization, or that route has no split",
        );
    };
    match split.set_weights(&weights) {
        Ok(()) => axum::Json(describe(&split, Instant::now())).into_response(),
        Err(e @ WeightsError::UnknownArm(_)) => error(StatusCode::NOT_FOUND, "not_found", &e.to_string()),
        Err(e @ WeightsError::AllZero) => error(StatusCode::CONFLICT, "conflict", &e.to_string()),
        Err(e @ WeightsError::TooLarge(_)) => bad(&e.to_string()),
    }
}

/// The OpenAPI schemas and paths of this API, merged into the admin document.
pub fn openapi(doc: &mut Value) {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let window = json!({"type": ["object", "null"], "required": ["requests", "errors", "p95_ms"], "properties": {
        "requests": {"type": "integer", "minimum": 0}, "errors": {"type": "integer", "minimum": 0},
        "p95_ms": {"type": ["number", "null"], "description": "95th percentile time to the response head (bucket upper bound)"}}});
    let arm = json!({"type": "object",
        "required": ["name", "upstream", "weight", "configured_weight", "canary", "requests", "errors", "window"],
        "properties": {
            "name": {"type": "string"}, "upstream": {"type": "string"},
            "weight": {"type": "integer", "minimum": 0, "description": "the running weight"},
            "configured_weight": {"type": "integer", "minimum": 0},
            "canary": {"type": "boolean"},
            "requests": {"type": "integer", "minimum": 0}, "errors": {"type": "integer", "minimum": 0, "description": "5xx answers"},
            "window": window.clone()}});
    let rollback = json!({"type": "object", "required": ["enabled", "rolled_back", "rollbacks", "last"], "properties": {
        "enabled": {"type": "boolean"}, "rolled_back": {"type": "boolean"}, "rollbacks": {"type": "integer", "minimum": 0},
        "last": {"type": ["object", "null"], "required": ["at", "reason", "weight_before", "canary", "others"], "properties": {
            "at": {"type": "number", "description": "seconds since the Unix epoch"}, "reason": {"type": "string"},
            "weight_before": {"type": "integer", "minimum": 0}, "canary": window.clone(), "others": window}}}});
    doc["components"]["schemas"]["Split"] = json!({"type": "object",
        "required": ["organization", "route", "canary", "sticky", "override_header", "arms", "rollback"],
        "properties": {
            "organization": {"type": "string"}, "route": {"type": "string"},
            "canary": {"type": ["string", "null"]}, "sticky": {"type": ["string", "null"]},
            "override_header": {"type": ["string", "null"]},
            "arms": {"type": "array", "items": arm}, "rollback": rollback}});
    let split = json!({"$ref": "#/components/schemas/Split"});
    let query = |name: &str, what: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": what});
    let answer = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    doc["paths"]["/api/splits"] = json!({
        "get": {"operationId": "splits", "summary": "Weighted splits with their running weights, per-arm counts and rollback state",
            "parameters": [query("organization", "only this organization's splits"), query("route", "only this route's split (404 when it has none)")],
            "responses": {
                "200": {"description": "splits", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["splits"], "properties": {"splits": {"type": "array", "items": split.clone()}}}}}},
                "404": answer("no such route with a split"), "401": answer("missing or wrong bearer token")}},
        "put": {"operationId": "set_split_weights", "summary": "Set a split's running weights (arms not named keep theirs); clears a rollback",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["organization", "route", "weights"], "properties": {
                    "organization": {"type": "string"}, "route": {"type": "string"},
                    "weights": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": cratopus_config::MAX_SPLIT_WEIGHT}}}}}}},
            "responses": {
                "200": {"description": "the split with its new weights", "content": {"application/json": {"schema": split}}},
                "400": answer("the body is not what the call needs"),
                "404": answer("no such route with a split, or no such arm in it"),
                "409": answer("every arm would have weight 0"),
                "401": answer("missing or wrong bearer token")}}});
}
