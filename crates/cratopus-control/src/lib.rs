//! `cratopus control`: the control plane of a cratopus cluster.
//!
//! A REST API (axum, JSON, OpenAPI document at `/api/v1/openapi.json`) over a PostgreSQL (or
//! CockroachDB) store of organizations and their domains, upstreams, routes, policies,
//! consumers and certificates. Every change is compiled as `cratopus check` compiles a config
//! ([`validate`]), becomes a numbered version with an audit record in the same transaction
//! ([`change`]), and is published to the nodes through Redis after the commit ([`publish`]).
//! Tenants: an organization's token sees only its organization ([`auth`]).

pub mod api;
pub mod auth;
pub mod certs;
pub mod change;
pub mod config;
pub mod db;
pub mod error;
pub mod openapi;
pub mod publish;
pub mod store;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub publisher: publish::Publisher,
    pub operator_token: Arc<str>,
    pub gateway_path: Arc<PathBuf>,
    pub gateway_text: Arc<str>,
}

/// Runs the control plane of `config_path` until Ctrl-C or SIGTERM: migrations first, then the
/// API, and the task that keeps Redis at the latest version.
pub async fn run(config_path: &Path) -> Result<(), String> {
    let loaded = config::load(config_path)?;
    let cfg = &loaded.config;
    let pool = db::pool(&cfg.database, cfg.database_pool)?;
    db::migrate(&pool).await?;
    let redis = cratopus_state::RedisLimiter::new(cfg.redis_config()).map_err(|e| e.to_string())?;
    let publisher = publish::Publisher::new(redis);
    let state = AppState {
        pool: pool.clone(),
        publisher: publisher.clone(),
        operator_token: cfg.operator_token.as_str().into(),
        gateway_path: Arc::new(loaded.gateway_path.clone()),
        gateway_text: loaded.gateway_text.as_str().into(),
    };
    tokio::spawn(publisher.run(pool, cfg.republish_interval.0));
    let listener = tokio::net::TcpListener::bind(&cfg.bind)
        .await
        .map_err(|e| format!("bind {}: {e}", cfg.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %addr, "control plane listening");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` since the epoch as RFC 3339 in UTC (`2026-12-07T06:12:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
