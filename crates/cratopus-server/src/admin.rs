//! The admin API, on its own listener: what the gateway is serving and how its upstreams are,
//! plus reload. Every call needs `Authorization: Bearer <admin.token>` (compared in constant
//! time); without it the answer is 401. `GET /api/openapi.json` describes the API.

use crate::reload::Reloader;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cratopus_core::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What the handlers share.
pub struct AdminState {
    pub engine: Arc<Engine>,
    pub reloader: Arc<Reloader>,
    pub token: String,
    pub started: Instant,
    /// Config changes through the admin API, one at a time ([`crate::admin_config`]).
    pub config_edits: tokio::sync::Mutex<()>,
    /// This node's part in a cluster (`cluster:` in gateway.yaml).
    pub cluster: Option<Arc<crate::cluster::ClusterNode>>,
}

/// The admin API's routes.
pub fn router(state: Arc<AdminState>) -> Router {
    // The dashboard page itself holds no data: it asks for the token and calls the API with it.
    let page = Router::new()
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard));
    page.merge(api_router(state))
}

/// The dashboard: one embedded page that draws the routing map, target health, per-route rates
/// and recent errors from this API. It loads nothing from elsewhere (its CSP forbids it).
async fn dashboard() -> Response {
    let mut res = axum::response::Html(include_str!("dashboard.html")).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'none'",
        ),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn api_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/organizations", get(organizations))
        .route("/api/upstreams", get(upstreams))
        .route("/api/certificates", get(certificates))
        .route("/api/reload", post(reload))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/targets/drain", post(drain))
        .route("/api/targets/undrain", post(undrain))
        .route("/api/routes/disable", post(disable_route))
        .route("/api/routes/enable", post(enable_route))
        .route("/api/blocks", get(blocks).post(block))
        .route("/api/blocks/remove", post(unblock))
        .route("/api/cache/purge", post(crate::admin_cache::purge))
        .route("/api/cluster", get(crate::admin_cluster::cluster))
        .route(
            "/api/config/organizations",
            get(crate::admin_config::list).post(crate::admin_config::create_org),
        )
        .route(
            "/api/config/organizations/{org}",
            get(crate::admin_config::get_org)
                .put(crate::admin_config::put_org)
                .delete(crate::admin_config::delete_org),
        )
        .route(
            "/api/config/organizations/{org}/routes",
            get(crate::admin_config::list_routes).post(crate::admin_config::create_route),
        )
        .route(
            "/api/config/organizations/{org}/routes/{route}",
            get(crate::admin_config::get_route)
                .put(crate::admin_config::put_route)
                .delete(crate::admin_config::delete_route),
        )
        .route(
            "/api/splits",
            get(crate::admin_split::list).put(crate::admin_split::set_weights),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Equal slices without an early exit, so timing does not reveal how much of a guess was right.
/// Whether `given` is the admin token, in a time that tells an attacker nothing: not where the
/// two first differ, and not the token's length (a plain comparison returns at once on a length
/// mismatch). Both are hashed with SHA-256 and the fixed-size digests compared without an early
/// exit; equal digests mean equal tokens.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"status": status.as_u16(), "code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
        let mut res = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        );
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"cratopus-admin\""),
        );
        return res;
    }
    next.run(req).await
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such admin endpoint; see /api/openapi.json",
    )
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

async fn status(State(s): State<Arc<AdminState>>) -> Response {
    let snap = s.engine.snapshot();
    let last_error = s.reloader.last_error.lock().ok().and_then(|e| e.clone());
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        "config": {
            "version": snap.version,
            "file": snap.config.file.display().to_string(),
            "loaded_at": unix_secs(snap.loaded_at),
            "last_reload_error": last_error,
        },
        "traffic_log_dropped": snap.traffic_log.dropped(),
        "acme": acme_summary(&snap),
    }))
    .into_response()
}

/// Each ACME certificate's names, state and last error, for `/api/status`.
fn acme_summary(snap: &cratopus_core::Snapshot) -> Vec<Value> {
    snap.tls
        .acme_wants
        .iter()
        .map(|w| {
            let st = w.cert.status.lock().map(|s| s.clone()).unwrap_or_default();
            json!({"names": w.cert.domains, "state": st.state, "last_error": st.last_error})
        })
        .collect()
}

/// Certificates from files and from ACME, with their state.
async fn certificates(State(s): State<Arc<AdminState>>) -> Response {
    use cratopus_core::tls::describe_time;
    let snap = s.engine.snapshot();
    let files: Vec<Value> = snap
        .tls
        .files
        .iter()
        .map(|c| {
            json!({
                "organization": c.org.as_deref(),
                "serves": c.serves,
                "file": c.file.display().to_string(),
                "names": c.names,
                "not_after": describe_time(c.not_after),
            })
        })
        .collect();
    let acme: Vec<Value> = snap
        .tls
        .acme_wants
        .iter()
        .map(|w| {
            let st = w.cert.status.lock().map(|s| s.clone()).unwrap_or_default();
            json!({
                "organization": &*w.org,
                "names": w.cert.domains,
                "state": st.state,
                "not_after": describe_time(st.not_after),
                "renew_at": describe_time(st.renew_at),
                "last_error": st.last_error,
                "next_attempt": describe_time(st.next_attempt),
                "failures": st.failures,
                "issued": st.issued,
            })
        })
        .collect();
    // The cluster's store (empty outside a cluster).
    let cluster: Vec<Value> = snap
        .tls
        .acme
        .shared
        .all()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "domains": c.domains,
                "source": c.source,
                "names": c.meta.names,
                "not_after": describe_time(c.meta.not_after),
                "updated_ms": c.updated_ms,
            })
        })
        .collect();
    axum::Json(json!({"files": files, "acme": acme, "cluster": cluster})).into_response()
}

async fn organizations(State(s): State<Arc<AdminState>>) -> Response {
    let snap = s.engine.snapshot();
    let orgs: Vec<Value> = snap
        .config
        .orgs
        .iter()
        .map(|o| {
            let c = &o.config;
            json!({
                "name": c.name.value,
                "file": o.file.display().to_string(),
                "domains": c.domains.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
                "routes": c.routes.iter().map(|r| json!({
                    "name": r.name.clone().unwrap_or_else(|| r.path.value.clone()),
                    "path": r.path.value,
                    "methods": r.methods.iter().map(|m| m.value.to_ascii_uppercase()).collect::<Vec<_>>(),
                    "upstream": r.upstream.as_ref().map(|u| &u.value),
                    "split": r.split.as_ref().map(|s| s.backends.iter().map(|b| json!({
                        "name": b.arm_name(), "upstream": b.upstream.value,
                    })).collect::<Vec<_>>()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(json!({ "organizations": orgs })).into_response()
}

async fn upstreams(State(s): State<Arc<AdminState>>) -> Response {
    let snap = s.engine.snapshot();
    let mut list: Vec<Value> = snap
        .upstreams()
        .map(|((org, name), u)| {
            let set = u.pool.targets();
            json!({
                "organization": &**org,
                "name": name,
                "balance": format!("{:?}", u.pool.config.balance).to_ascii_lowercase(),
                "health_checked": u.pool.config.health_check.is_some(),
                "targets": set.targets.iter().map(|t| json!({
                    "target": &*t.label,
                    "healthy": t.is_healthy(),
                    "drained": t.is_drained(),
                    "in_flight": t.inflight(),
                    "weight": t.weight,
                    "ejected": t.is_ejected(),
                    "circuit": t.breaker.as_ref().map(|b| b.state().as_str()),
                    "circuit_opens": t.breaker.as_ref().map(|b| b.opens()),
                    "cluster_down": t.is_remote_down(),
                    "cluster_in_flight": t.remote_inflight(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    list.sort_by(|a, b| {
        (a["organization"].as_str(), a["name"].as_str()).cmp(&(b["organization"].as_str(), b["name"].as_str()))
    });
    axum::Json(json!({ "upstreams": list })).into_response()
}

/// Prometheus text exposition of every route, target and the gateway's own counters.
async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    use cratopus_observe::metrics::{RouteLabels, TargetHealth, render};
    let snap = s.engine.snapshot();
    let mut seen = std::collections::HashSet::new();
    let routes: Vec<_> = snap
        .routes
        .iter()
        .filter(|r| seen.insert((r.org.clone(), r.name.clone())))
        .map(|r| {
            (
                RouteLabels {
                    org: &r.org,
                    route: &r.name,
                },
                &*r.metrics,
            )
        })
        .collect();
    let upstreams: Vec<_> = snap
        .upstreams()
        .map(|((org, name), u)| (org, name, u.pool.targets()))
        .collect();
    let targets: Vec<TargetHealth<'_>> = upstreams
        .iter()
        .flat_map(|(org, name, set)| {
            set.targets.iter().map(move |t| TargetHealth {
                org,
                upstream: name,
                target: &t.label,
                healthy: t.is_healthy(),
                inflight: t.inflight(),
            })
        })
        .collect();
    let mut out = String::with_capacity(16 * 1024);
    render(
        &mut out,
        &s.engine.metrics,
        &routes,
        &targets,
        snap.traffic_log.dropped(),
    );
    if let Some(r) = snap.limiter.redis() {
        cratopus_observe::metrics::render_state(
            &mut out,
            &cratopus_observe::metrics::StateStats {
                redis_up: r.is_up(),
                fallbacks: r.fallbacks(),
                outages: r.outages(),
            },
        );
    }
    render_tls(&mut out, &snap);
    render_shadows(&mut out, &snap);
    render_splits(&mut out, &snap);
    render_websockets(&mut out, &s.engine.sockets);
    crate::admin_graphql::render(&mut out, &snap);
    crate::admin_cache::render(&mut out, &snap);
    crate::admin_cluster::render(&mut out, s.cluster.as_deref());
    crate::admin_discovery::render(&mut out, &snap);
    let mut res = out.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Open WebSockets and their bytes, per route, for `/metrics`.
fn render_websockets(out: &mut String, sockets: &cratopus_core::websocket::Sockets) {
    use cratopus_observe::ws_metrics::{WsSample, render_websockets};
    let routes = sockets.routes();
    let samples: Vec<WsSample<'_>> = routes
        .iter()
        .map(|(org, route, metrics)| WsSample { org, route, metrics })
        .collect();
    render_websockets(out, &samples);
}

/// Requests, weights and rollbacks of the weighted splits for `/metrics`.
fn render_splits(out: &mut String, snap: &cratopus_core::Snapshot) {
    use cratopus_observe::split_metrics::{SplitArmSample, SplitSample};
    let splits = crate::admin_split::splits(snap);
    let samples: Vec<SplitSample<'_>> = splits
        .iter()
        .map(|s| {
            let weights = s.weights();
            SplitSample {
                org: s.org(),
                route: s.route(),
                arms: s
                    .settings()
                    .arms
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let (requests, errors) = s.arm_totals(i);
                        SplitArmSample {
                            arm: &a.name,
                            requests,
                            errors,
                            weight: weights.get(i).copied().unwrap_or(0),
                        }
                    })
                    .collect(),
                rollbacks: s.rollbacks(),
                rolled_back: s.is_rolled_back(),
            }
        })
        .collect();
    cratopus_observe::split_metrics::render_splits(out, &samples);
}

/// Certificate expiry and ACME failures for `/metrics`.
fn render_tls(out: &mut String, snap: &cratopus_core::Snapshot) {
    use cratopus_observe::metrics::{AcmeFailures, CertExpiry, render_certificates};
    let secs = |t: Option<SystemTime>| t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
    let files: Vec<(String, String, u64)> = snap
        .tls
        .files
        .iter()
        .filter_map(|c| {
            Some((
                c.org.as_deref().unwrap_or("").to_string(),
                c.serves.join(","),
                secs(c.not_after)?,
            ))
        })
        .collect();
    let acme: Vec<(String, String, Option<u64>, u32)> = snap
        .tls
        .acme_wants
        .iter()
        .map(|w| {
            let st = w.cert.status.lock().map(|s| s.clone()).unwrap_or_default();
            (
                w.org.to_string(),
                w.cert.domains.join(","),
                secs(st.not_after),
                st.failures,
            )
        })
        .collect();
    let store: Vec<(String, u64)> = snap
        .tls
        .acme
        .shared
        .all()
        .iter()
        .filter_map(|c| Some((c.domains.join(","), secs(c.meta.not_after)?)))
        .collect();
    let mut certs: Vec<CertExpiry<'_>> = files
        .iter()
        .map(|(org, names, t)| CertExpiry {
            org,
            names,
            source: "file",
            not_after: *t,
        })
        .collect();
    certs.extend(acme.iter().filter_map(|(org, names, t, _)| {
        Some(CertExpiry {
            org,
            names,
            source: "acme",
            not_after: (*t)?,
        })
    }));
    certs.extend(store.iter().map(|(names, t)| CertExpiry {
        org: "",
        names,
        source: "cluster",
        not_after: *t,
    }));
    let failures: Vec<AcmeFailures<'_>> = acme
        .iter()
        .map(|(org, names, _, failures)| AcmeFailures {
            org,
            names,
            failures: *failures,
        })
        .collect();
    render_certificates(out, &certs, &failures);
}

/// Reads a JSON object body with the given string fields; the error is the 400 message.
fn fields<const N: usize>(body: &[u8], names: [&str; N]) -> Result<[String; N], String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, n) in names.iter().enumerate() {
        out[i] = v
            .get(n)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the body needs a string `{n}`"))?
            .to_string();
    }
    Ok(out)
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

async fn set_drained(s: &AdminState, body: &[u8], drained: bool) -> Response {
    let [org, upstream, target] = match fields(body, ["organization", "upstream", "target"]) {
        Ok(f) => f,
        Err(m) => return bad_request(&m),
    };
    let snap = s.engine.snapshot();
    let found = snap
        .upstreams()
        .find(|((o, n), _)| **o == *org && *n == upstream)
        .and_then(|(_, u)| u.pool.targets().targets.iter().find(|t| *t.label == *target).cloned());
    match found {
        Some(t) => {
            t.set_drained(drained);
            tracing::info!(organization = %org, upstream = %upstream, target = %target, drained, "target drain changed by the admin API");
            axum::Json(json!({"organization": org, "upstream": upstream, "target": target, "drained": drained, "in_flight": t.inflight()})).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such organization, upstream or target",
        ),
    }
}

async fn drain(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    set_drained(&s, &body, true).await
}

async fn undrain(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    set_drained(&s, &body, false).await
}

fn set_route(s: &AdminState, body: &[u8], disabled: bool) -> Response {
    let [org, route] = match fields(body, ["organization", "route"]) {
        Ok(f) => f,
        Err(m) => return bad_request(&m),
    };
    let snap = s.engine.snapshot();
    if !snap.routes.iter().any(|r| *r.org == *org && *r.name == *route) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such organization or route");
    }
    s.engine.overrides.set_disabled(&org, &route, disabled);
    tracing::info!(organization = %org, route = %route, disabled, "route switched by the admin API");
    axum::Json(json!({"organization": org, "route": route, "disabled": disabled})).into_response()
}

async fn disable_route(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    set_route(&s, &body, true)
}

async fn enable_route(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    set_route(&s, &body, false)
}

fn block_list(s: &AdminState) -> Response {
    let blocks: Vec<String> = s.engine.overrides.blocked().iter().map(ToString::to_string).collect();
    let disabled: Vec<Value> = s
        .engine
        .overrides
        .disabled()
        .into_iter()
        .map(|(o, r)| json!({"organization": o, "route": r}))
        .collect();
    axum::Json(json!({"blocks": blocks, "disabled_routes": disabled})).into_response()
}

async fn blocks(State(s): State<Arc<AdminState>>) -> Response {
    block_list(&s)
}

async fn change_block(s: &AdminState, body: &[u8], add: bool) -> Response {
    let [cidr] = match fields(body, ["cidr"]) {
        Ok(f) => f,
        Err(m) => return bad_request(&m),
    };
    let cidr = match cratopus_core::overrides::Cidr::parse(&cidr) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    if add {
        s.engine.overrides.block(cidr);
    } else {
        s.engine.overrides.unblock(cidr);
    }
    tracing::info!(cidr = %cidr, blocked = add, "client block changed by the admin API");
    block_list(s)
}

async fn block(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    change_block(&s, &body, true).await
}

async fn unblock(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    change_block(&s, &body, false).await
}

async fn reload(State(s): State<Arc<AdminState>>) -> Response {
    match s.reloader.reload().await {
        Ok(version) => axum::Json(json!({"reloaded": true, "version": version})).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, "config_rejected", &e),
    }
}

async fn openapi(headers: HeaderMap) -> Response {
    let _ = headers;
    let mut res = axum::Json(openapi_document()).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    let mut doc = openapi_base();
    let time = json!({"type": ["integer", "null"], "minimum": 0, "description": "seconds since the Unix epoch"});
    let names = json!({"type": "array", "items": {"type": "string"}});
    let certificates = json!({"type": "object", "required": ["files", "acme", "cluster"], "properties": {
        "files": {"type": "array", "items": {"type": "object", "required": ["organization", "serves", "file", "names", "not_after"], "properties": {
            "organization": {"type": ["string", "null"]}, "serves": names, "file": {"type": "string"},
            "names": names, "not_after": time}}},
        "acme": {"type": "array", "items": {"type": "object",
            "required": ["organization", "names", "state", "not_after", "renew_at", "last_error", "next_attempt", "failures", "issued"],
            "properties": {
                "organization": {"type": "string"}, "names": names,
                "state": {"type": "string", "enum": ["pending", "issuing", "valid", "renewing", "failed"]},
                "not_after": time, "renew_at": time, "last_error": {"type": ["string", "null"]},
                "next_attempt": time, "failures": {"type": "integer", "minimum": 0}, "issued": {"type": "integer", "minimum": 0}}}},
        "cluster": {"type": "array", "description": "certificates of the cluster's store served by this node (ACME orders of any node, uploads)", "items": {"type": "object",
            "required": ["name", "domains", "source", "names", "not_after", "updated_ms"],
            "properties": {
                "name": {"type": "string"}, "domains": names,
                "source": {"type": "string", "enum": ["acme", "upload"]},
                "names": names, "not_after": time, "updated_ms": {"type": "integer", "minimum": 0}}}}}});
    doc["components"]["schemas"]["Certificates"] = certificates;
    crate::admin_split::openapi(&mut doc);
    crate::admin_cache::openapi(&mut doc);
    crate::admin_config::openapi(&mut doc);
    crate::admin_cluster::openapi(&mut doc);
    doc["paths"]["/api/certificates"] = json!({"get": {"operationId": "certificates",
        "summary": "Certificates from files, from ACME and from the cluster's store, with their expiry and the state of ACME orders",
        "responses": {
            "200": {"description": "certificates", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Certificates"}}}},
            "401": {"description": "missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}});
    doc
}

fn openapi_base() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let unauthorized =
        json!({"description": "missing or wrong bearer token", "content": {"application/json": {"schema": error}}});
    let bad_request = json!({"description": "the body is not what the call needs", "content": {"application/json": {"schema": error}}});
    let not_found = json!({"description": "no such thing in the running config", "content": {"application/json": {"schema": error}}});
    let body = |props: &[&str]| {
        let properties: serde_json::Map<String, Value> = props
            .iter()
            .map(|p| (p.to_string(), json!({"type": "string"})))
            .collect();
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": props, "properties": properties}}}})
    };
    let target_body = body(&["organization", "upstream", "target"]);
    let route_body = body(&["organization", "route"]);
    // An IPv4 address or CIDR, or an IPv6 address (IPv6 CIDRs such as `2001:db8::/32` are
    // accepted too; JSON Schema has no format for them).
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let v4 = format!("^({octet}\\.){{3}}{octet}(/(3[0-2]|[12]?[0-9]))?$");
    let cidr_body = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["cidr"], "properties": {"cidr": {"anyOf": [
            {"type": "string", "pattern": v4}, {"type": "string", "format": "ipv6"}]}}}}}});
    let ok = |schema: Value| json!({"description": "done", "content": {"application/json": {"schema": schema}}});
    let target_responses = json!({
        "200": ok(json!({"type": "object", "required": ["organization", "upstream", "target", "drained", "in_flight"], "properties": {
            "organization": {"type": "string"}, "upstream": {"type": "string"}, "target": {"type": "string"},
            "drained": {"type": "boolean"}, "in_flight": {"type": "integer", "minimum": 0}}})),
        "400": bad_request.clone(), "404": not_found.clone(), "401": unauthorized.clone()});
    let route_responses = json!({
        "200": ok(json!({"type": "object", "required": ["organization", "route", "disabled"], "properties": {
            "organization": {"type": "string"}, "route": {"type": "string"}, "disabled": {"type": "boolean"}}})),
        "400": bad_request.clone(), "404": not_found, "401": unauthorized.clone()});
    let blocks_ok = ok(
        json!({"type": "object", "required": ["blocks", "disabled_routes"], "properties": {
        "blocks": {"type": "array", "items": {"type": "string"}},
        "disabled_routes": {"type": "array", "items": {"type": "object", "required": ["organization", "route"], "properties": {
            "organization": {"type": "string"}, "route": {"type": "string"}}}}}}),
    );
    // One target of `/api/upstreams` (apart, as one json! of the whole document would pass
    // the macro recursion limit).
    let target_schema = json!({"type": "object", "required": ["target", "healthy", "drained", "in_flight", "weight", "ejected", "circuit", "circuit_opens"], "properties": {
        "target": {"type": "string"}, "healthy": {"type": "boolean"}, "drained": {"type": "boolean"},
        "in_flight": {"type": "integer", "minimum": 0}, "weight": {"type": "integer", "minimum": 1},
        "ejected": {"type": "boolean", "description": "taken out by outlier detection"},
        "circuit": {"type": ["string", "null"], "enum": ["closed", "open", "half_open", null], "description": "the circuit breaker's state; null without a breaker"},
        "circuit_opens": {"type": ["integer", "null"], "minimum": 0, "description": "times the breaker opened"},
        "cluster_down": {"type": "boolean", "description": "taken out on another cluster node's word (shared target state)"},
        "cluster_in_flight": {"type": "integer", "minimum": 0, "description": "the other cluster nodes' requests in flight to the target, as last exchanged"}}});
    // One route of `/api/organizations` (apart, for the same reason).
    let route_schema = json!({"type": "object", "required": ["name", "path", "methods", "upstream", "split"], "properties": {
        "name": {"type": "string"}, "path": {"type": "string"},
        "upstream": {"type": ["string", "null"], "description": "null for a route with a split"},
        "split": {"type": ["array", "null"], "description": "the arms of the route's split (weights and state in /api/splits)",
            "items": {"type": "object", "required": ["name", "upstream"], "properties": {
                "name": {"type": "string"}, "upstream": {"type": "string"}}}},
        "methods": {"type": "array", "items": {"type": "string"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "cratopus admin API", "version": env!("CARGO_PKG_VERSION")},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["status", "code", "message"],
                    "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Status": {"type": "object", "required": ["version", "uptime_seconds", "config", "traffic_log_dropped", "acme"], "properties": {
                    "version": {"type": "string"},
                    "acme": {"type": "array", "description": "ACME certificates (details in /api/certificates)", "items": {
                        "type": "object", "required": ["names", "state", "last_error"], "properties": {
                            "names": {"type": "array", "items": {"type": "string"}}, "state": {"type": "string"},
                            "last_error": {"type": ["string", "null"]}}}},
                    "uptime_seconds": {"type": "number"},
                    "traffic_log_dropped": {"type": "integer"},
                    "config": {"type": "object", "required": ["version", "file", "loaded_at", "last_reload_error"], "properties": {
                        "version": {"type": "integer"}, "file": {"type": "string"}, "loaded_at": {"type": "number"},
                        "last_reload_error": {"type": ["string", "null"]}}}}},
                "Organizations": {"type": "object", "required": ["organizations"], "properties": {"organizations": {"type": "array", "items": {
                    "type": "object", "required": ["name", "file", "domains", "routes"], "properties": {
                        "name": {"type": "string"}, "file": {"type": "string"},
                        "domains": {"type": "array", "items": {"type": "string"}},
                        "routes": {"type": "array", "items": route_schema}}}}}},
                "Upstreams": {"type": "object", "required": ["upstreams"], "properties": {"upstreams": {"type": "array", "items": {
                    "type": "object", "required": ["organization", "name", "balance", "health_checked", "targets"], "properties": {
                        "organization": {"type": "string"}, "name": {"type": "string"}, "balance": {"type": "string"},
                        "health_checked": {"type": "boolean"},
                        "targets": {"type": "array", "items": target_schema}}}}}},
                "Reloaded": {"type": "object", "required": ["reloaded", "version"], "properties": {
                    "reloaded": {"type": "boolean"}, "version": {"type": "integer"}}},
            }
        },
        "paths": {
            "/api/status": {"get": {"operationId": "status", "summary": "Version, uptime, config version and the last reload error",
                "responses": {"200": {"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}, "401": unauthorized}}},
            "/api/organizations": {"get": {"operationId": "organizations", "summary": "The loaded organizations with their domains and routes",
                "responses": {"200": {"description": "organizations", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Organizations"}}}}, "401": unauthorized}}},
            "/api/upstreams": {"get": {"operationId": "upstreams", "summary": "Upstreams with each target's health and in-flight requests",
                "responses": {"200": {"description": "upstreams", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upstreams"}}}}, "401": unauthorized}}},
            "/api/reload": {"post": {"operationId": "reload", "summary": "Load the config files again; the old config keeps serving if the new one is rejected",
                "responses": {
                    "200": {"description": "reloaded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Reloaded"}}}},
                    "422": {"description": "the new config was rejected", "content": {"application/json": {"schema": error}}},
                    "401": unauthorized}}},
            "/api/targets/drain": {"post": {"operationId": "drain", "summary": "Send no new requests to a target; requests in flight finish",
                "requestBody": target_body.clone(), "responses": target_responses.clone()}},
            "/api/targets/undrain": {"post": {"operationId": "undrain", "summary": "Put a drained target back",
                "requestBody": target_body, "responses": target_responses}},
            "/api/routes/disable": {"post": {"operationId": "disable_route", "summary": "Switch a route off: it answers 503 route_disabled (kept across reloads)",
                "requestBody": route_body.clone(), "responses": route_responses.clone()}},
            "/api/routes/enable": {"post": {"operationId": "enable_route", "summary": "Switch a route on again",
                "requestBody": route_body, "responses": route_responses}},
            "/api/blocks": {
                "get": {"operationId": "blocks", "summary": "Blocked client addresses and switched-off routes",
                    "responses": {"200": blocks_ok.clone(), "401": unauthorized.clone()}},
                "post": {"operationId": "block", "summary": "Block a client address or CIDR at once (403 ip_blocked)",
                    "requestBody": cidr_body.clone(), "responses": {"200": blocks_ok.clone(), "400": bad_request.clone(), "401": unauthorized.clone()}}},
            "/api/blocks/remove": {"post": {"operationId": "unblock", "summary": "Unblock a client address or CIDR",
                "requestBody": cidr_body, "responses": {"200": blocks_ok, "400": bad_request, "401": unauthorized.clone()}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": unauthorized}}},
            "/api/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": unauthorized}}},
        }
    })
}

/// The shadow traffic of every route that has one: copies sent, dropped (no free place) and
/// skipped (body too large), and both sides' answers to the copied requests by status class,
/// with their summed latency, so that the shadow can be compared with the real backend.
fn render_shadows(out: &mut String, snap: &cratopus_core::Snapshot) {
    use cratopus_upstream::Backend;
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let shadows: Vec<_> = snap
        .routes
        .iter()
        .filter_map(|r| match &r.backend {
            Backend::Shadow(s) => Some((r, s)),
            _ => None,
        })
        .collect();
    if shadows.is_empty() {
        return;
    }
    let label = |r: &cratopus_core::snapshot::Route| {
        cratopus_observe::metrics::label_list(&[("org", &r.org), ("route", &r.name)])
    };
    let _ = writeln!(
        out,
        "# HELP cratopus_shadow_copies_total Requests copied to a shadow upstream, by outcome."
    );
    let _ = writeln!(out, "# TYPE cratopus_shadow_copies_total counter");
    for (r, s) in &shadows {
        let l = label(r);
        for (outcome, n) in [
            ("sent", s.stats.sent.load(Relaxed)),
            ("dropped", s.stats.dropped.load(Relaxed)),
            ("skipped_body", s.stats.skipped_body.load(Relaxed)),
        ] {
            let _ = writeln!(out, "cratopus_shadow_copies_total{{{l},outcome=\"{outcome}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP cratopus_shadow_responses_total Answers to the copied requests, of the real backend (side=primary) and of the shadow, by status class (error: no answer)."
    );
    let _ = writeln!(out, "# TYPE cratopus_shadow_responses_total counter");
    for (r, s) in &shadows {
        let l = label(r);
        for (side, stats) in [("primary", &s.stats.primary), ("shadow", &s.stats.shadow)] {
            for (class, n) in stats.classes() {
                let _ = writeln!(
                    out,
                    "cratopus_shadow_responses_total{{{l},side=\"{side}\",class=\"{class}\"}} {n}"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP cratopus_shadow_latency_seconds_sum Summed time to the answer's head of the copied requests, per side."
    );
    let _ = writeln!(out, "# TYPE cratopus_shadow_latency_seconds_sum counter");
    for (r, s) in &shadows {
        let l = label(r);
        for (side, stats) in [("primary", &s.stats.primary), ("shadow", &s.stats.shadow)] {
            let secs = stats.latency_sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "cratopus_shadow_latency_seconds_sum{{{l},side=\"{side}\"}} {secs}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abc", b"abcdef"));
        assert!(!constant_time_eq(b"", b"abcdef"));
        assert!(!constant_time_eq(b"abcdefabcdef", b"abcdef"));
    }
}
