//! The running gateway: listeners and connections ([`listener`]), config reload on file change
//! or SIGHUP ([`reload`]), and graceful shutdown on SIGTERM/SIGINT.

pub mod conn_io;
pub mod listener;
pub mod reload;

use cratopus_config::LoadedConfig;
use cratopus_core::Engine;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Loads nothing itself: compiles `cfg`, binds its listeners, serves until SIGTERM/SIGINT, and
/// reloads from `path` (when the config came from a file) on change or SIGHUP.
pub async fn run(cfg: LoadedConfig, path: Option<PathBuf>) -> Result<(), String> {
    let shutdown_timeout = cfg.gateway.shutdown_timeout.0;
    let listeners_cfg = cfg.gateway.listeners.clone();
    let limits = cfg.gateway.limits.clone();
    let watch = cfg.gateway.watch;
    let snapshot = cratopus_core::compile(cfg, None, 1)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    let engine = Arc::new(Engine::new(snapshot));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tracker = listener::ConnTracker::default();
    let mut bound = Vec::new();
    for l in &listeners_cfg {
        let listener = listener::bind(&l.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", l.bind))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let name = l.name.clone().unwrap_or_else(|| l.bind.clone());
        tracing::info!(name = %name, addr = %addr, "listening");
        bound.push(tokio::spawn(listener::serve(
            listener,
            engine.clone(),
            listener::ServeOptions::from_limits(&limits),
            stop_rx.clone(),
            tracker.clone(),
        )));
    }

    let reloader = Arc::new(reload::Reloader::new(engine.clone(), path.clone()));
    if let Some(p) = &path {
        if watch {
            reloader.clone().watch_files();
        }
        tracing::info!(config = %p.display(), version = 1, "config loaded");
    }
    reloader.clone().on_sighup();

    wait_for_stop_signal().await;
    tracing::info!(deadline = ?shutdown_timeout, "shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    for b in bound {
        let _ = b.await;
    }
    if tokio::time::timeout(shutdown_timeout, tracker.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.open(),
            "shutdown deadline passed; closing the remaining connections"
        );
    }
    // Give the traffic log writer a moment to drain.
    drop(engine);
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
