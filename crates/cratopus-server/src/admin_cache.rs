//! The admin API of the response cache: `POST /api/cache/purge` removes stored answers by URL
//! (every variant of its path: queries, `Vary` values, consumers), by path prefix, or by tag
//! (`Surrogate-Key` / `Cache-Tag` of the backend's answers); and the cache's `/metrics`.

use crate::admin::{AdminState, error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cratopus_core::Snapshot;
use cratopus_policies::cache::Purge;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// `POST /api/cache/purge` with one of `{"url": "http://host/path"}`, `{"prefix": "/path/"}`
/// (optionally with `"organization"`), `{"tag": "name"}`.
pub async fn purge(State(s): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "bad_request", m);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("the body is not JSON");
    };
    let snap = s.engine.snapshot();
    let Some(store) = snap.cache.clone() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no route caches");
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    let org_filter = text("organization").map(str::to_string);
    let purge = if let Some(url) = text("url") {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return bad("`url` is not a URL");
        };
        let Some(host) = uri.host().map(str::to_ascii_lowercase) else {
            return bad("`url` needs a host, such as http://api.example.com/path");
        };
        let Some(org) = org_of(&snap, &host) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no organization serves this host");
        };
        Purge::Url {
            org: org.to_string(),
            host,
            path: uri.path().to_string(),
        }
    } else if let Some(prefix) = text("prefix") {
        if !prefix.starts_with('/') {
            return bad("`prefix` must start with `/`");
        }
        Purge::Prefix {
            org: org_filter,
            prefix: prefix.to_string(),
        }
    } else if let Some(tag) = text("tag") {
        Purge::Tag {
            org: org_filter,
            tag: tag.to_string(),
        }
    } else {
        return bad("the body needs `url`, `prefix` or `tag`");
    };
    let removed = purge.apply(&store);
    // With a second level: the other nodes and Redis too (`cluster: false` when Redis could
    // not be reached, so the purge stayed on this node).
    let mut answer = json!({"purged": removed});
    if let Some(second) = store.second_level_configured() {
        answer["cluster"] = json!(second.purge(&purge).await);
    }
    tracing::info!(purged = removed, cluster = ?answer.get("cluster"), "cache purged by the admin API");
    axum::Json(answer).into_response()
}

/// The organization serving `host`, as the cache keys it.
fn org_of(snap: &Snapshot, host: &str) -> Option<Arc<str>> {
    snap.org_for_host(host).map(|o| o.name.clone())
}

/// The cache's counters and size for `/metrics`.
pub fn render(out: &mut String, snap: &Snapshot) {
    let Some(store) = &snap.cache else { return };
    let s = &store.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP cratopus_cache_requests_total Requests of cached routes by what the cache did.\n# TYPE cratopus_cache_requests_total counter"
    );
    for (result, n) in [
        ("hit", load(&s.hits)),
        ("hit_l2", load(&s.hits_l2)),
        ("miss", load(&s.misses)),
        ("stale", load(&s.stale)),
        ("revalidated", load(&s.revalidated)),
        ("bypass", load(&s.bypassed)),
    ] {
        let _ = writeln!(out, "cratopus_cache_requests_total{{result=\"{result}\"}} {n}");
    }
    let (bytes, entries) = store.usage();
    for (name, kind, help, n) in [
        (
            "cratopus_cache_coalesced_total",
            "counter",
            "Requests answered by another request's miss of the same key.",
            load(&s.coalesced),
        ),
        (
            "cratopus_cache_stored_total",
            "counter",
            "Answers stored.",
            load(&s.stored),
        ),
        (
            "cratopus_cache_evictions_total",
            "counter",
            "Entries dropped to stay within cache.max_bytes.",
            load(&s.evictions),
        ),
        (
            "cratopus_cache_purged_total",
            "counter",
            "Entries removed by the admin API's purges.",
            load(&s.purged),
        ),
        (
            "cratopus_cache_bytes",
            "gauge",
            "Bytes the stored answers take, as weighed.",
            bytes,
        ),
        (
            "cratopus_cache_max_bytes",
            "gauge",
            "The bound of cratopus_cache_bytes (cache.max_bytes).",
            store.max_bytes,
        ),
        ("cratopus_cache_entries", "gauge", "Keys stored.", entries),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {n}");
    }
}

/// The OpenAPI path of the purge.
pub fn openapi(doc: &mut Value) {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let answer = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    doc["paths"]["/api/cache/purge"] = json!({
        "post": {"operationId": "cache_purge",
            "summary": "Remove stored answers: by URL (every variant of its path), by path prefix, or by tag (Surrogate-Key / Cache-Tag)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "url": {"type": "string", "description": "http://host/path: its organization's stored answers for that path"},
                    "prefix": {"type": "string", "description": "a path prefix such as /products/"},
                    "tag": {"type": "string"},
                    "organization": {"type": "string", "description": "limits a prefix or tag purge to one organization"}}}}}},
            "responses": {
                "200": {"description": "how many keys were removed", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["purged"], "properties": {"purged": {"type": "integer", "minimum": 0},
                        "cluster": {"type": "boolean", "description": "with a Redis second level: whether the purge reached Redis and the other nodes"}}}}}},
                "400": answer("the body is not what the call needs"),
                "404": answer("no route caches, or no organization serves the URL's host"),
                "401": answer("missing or wrong bearer token")}}});
}
