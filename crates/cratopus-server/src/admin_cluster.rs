//! The admin API of a cluster node: `GET /api/cluster` (the node's name, the cluster version it
//! runs and where it came from, whether Redis answers, the last refused version's error) and
//! the cluster's `/metrics`.

use crate::admin::{AdminState, error};
use crate::cluster::ClusterNode;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;

/// `GET /api/cluster`; 404 on a node without `cluster:`.
pub async fn cluster(State(s): State<Arc<AdminState>>) -> Response {
    let Some(node) = &s.cluster else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this gateway is not a cluster node (no `cluster:` in gateway.yaml)",
        );
    };
    axum::Json(json!({
        "node": node.name,
        "version": node.version(),
        "source": node.source().as_str(),
        "redis_up": node.redis_up(),
        "subscribed": node.subscribed(),
        "last_error": node.last_error(),
        "started_ms": node.started_ms(),
        "heartbeat_ms": u64::try_from(node.heartbeat().as_millis()).unwrap_or(u64::MAX),
        "cache_file": node.cache_file().display().to_string(),
        "swaps": node.swaps(),
        "rejected": node.rejections(),
    }))
    .into_response()
}

/// The cluster's gauges and counters for `/metrics` (nothing without `cluster:`).
pub fn render(out: &mut String, node: Option<&ClusterNode>) {
    let Some(node) = node else { return };
    for (name, kind, help, n) in [
        (
            "cratopus_cluster_version",
            "gauge",
            "The cluster config version this node runs (0: its own organizations only).",
            node.version(),
        ),
        (
            "cratopus_cluster_redis_up",
            "gauge",
            "Whether the node's last call to the cluster's Redis succeeded.",
            u64::from(node.redis_up()),
        ),
        (
            "cratopus_cluster_swaps_total",
            "counter",
            "Cluster versions swapped in since start.",
            node.swaps(),
        ),
        (
            "cratopus_cluster_rejected_total",
            "counter",
            "Cluster versions refused (the running one kept serving).",
            node.rejections(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {n}");
    }
}

/// The OpenAPI path of `/api/cluster`.
pub fn openapi(doc: &mut Value) {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let answer = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    doc["paths"]["/api/cluster"] = json!({
        "get": {"operationId": "cluster",
            "summary": "This node's part in the cluster: its name, the config version it runs, Redis up or down, the last refused version",
            "responses": {
                "200": {"description": "the node", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["node", "version", "source", "redis_up", "subscribed", "last_error", "started_ms", "heartbeat_ms", "cache_file", "swaps", "rejected"],
                    "properties": {
                        "node": {"type": "string"},
                        "version": {"type": "integer", "minimum": 0, "description": "the cluster version running; 0 for none (the node's own organizations only)"},
                        "source": {"type": "string", "enum": ["redis", "disk", "local"], "description": "where the running version came from"},
                        "redis_up": {"type": "boolean"},
                        "subscribed": {"type": "boolean", "description": "whether the node listens for announced versions now"},
                        "last_error": {"type": ["string", "null"], "description": "why the last refused version was refused (file:line), until a version is swapped in"},
                        "started_ms": {"type": "integer", "minimum": 0},
                        "heartbeat_ms": {"type": "integer", "minimum": 0},
                        "cache_file": {"type": "string"},
                        "swaps": {"type": "integer", "minimum": 0},
                        "rejected": {"type": "integer", "minimum": 0}}}}}},
                "404": answer("this gateway is not a cluster node"),
                "401": answer("missing or wrong bearer token")}}});
}
