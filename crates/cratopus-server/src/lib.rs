//! The running gateway: listeners and connections ([`listener`]), config reload on file change
//! or SIGHUP ([`reload`]), and graceful shutdown on SIGTERM/SIGINT.

pub mod acme;
pub mod admin;
pub mod admin_cache;
pub mod admin_cluster;
pub mod admin_config;
pub mod admin_discovery;
pub mod admin_graphql;
pub mod admin_split;
pub mod atomic_file;
pub mod cluster;
pub mod cluster_certs;
pub mod conn_io;
mod h1;
pub mod h2_frames;
pub mod listener;
pub mod refusal;
pub mod reload;
pub mod rewind;
pub mod watchdog;

use cratopus_config::LoadedConfig;
use cratopus_core::Engine;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Loads nothing itself: compiles `cfg`, binds its listeners, serves until SIGTERM/SIGINT, and
/// reloads from `path` (when the config came from a file) on change or SIGHUP.
pub async fn run(cfg: LoadedConfig, path: Option<PathBuf>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signals first: a SIGHUP or SIGTERM that arrives once we say we listen must find its handler.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;

    let shutdown_timeout = cfg.gateway.shutdown_timeout.0;
    let admin_cfg = cfg.gateway.admin.clone();
    let listeners_cfg = cfg.gateway.listeners.clone();
    let limits = cfg.gateway.limits.clone();
    let watch = cfg.gateway.watch;
    // A cluster node starts on the cluster's version (or its disk copy) when it can.
    let (snapshot, cluster_node, bundle) = match (cfg.gateway.cluster.clone(), path.as_deref()) {
        (Some(c), Some(p)) => {
            let started = cluster::boot::start(cfg, &c, p).await?;
            (started.snapshot, Some(started.node), started.bundle)
        }
        _ => {
            let snapshot = cratopus_core::compile(cfg, None, 1)
                .await
                .map_err(|e| format!("invalid config:\n{e}"))?;
            (snapshot, None, None)
        }
    };
    let engine = Arc::new(Engine::new(snapshot));
    // The cluster's certificates (with `cluster:`), then ACME certificates: loaded from disk,
    // ordered and renewed in the background.
    let cluster = cluster_certs::start(&engine)?;
    acme::start(engine.clone(), cluster);

    // Reload sources before the listeners: an edit made right after start-up is seen.
    let reloader = Arc::new(reload::Reloader::new(engine.clone(), path.clone()).with_bundle(bundle));
    if let Some(node) = &cluster_node {
        node.clone().follow(reloader.clone());
    }
    if path.is_some() && watch {
        reloader.clone().watch_files();
    }
    reloader.clone().on_sighup(hup);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tracker = listener::ConnTracker::default();
    let mut listeners = Vec::new();
    for l in &listeners_cfg {
        let listener = listener::bind(&l.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", l.bind))?;
        listeners.push((l.name.clone().unwrap_or_else(|| l.bind.clone()), listener, l));
    }
    // Redirects go to the first HTTPS listener's port unless told otherwise.
    let https_port = listeners
        .iter()
        .find(|(_, _, l)| l.tls)
        .and_then(|(_, s, _)| s.local_addr().ok())
        .map_or(443, |a| a.port());
    if let Some(p) = &path {
        tracing::info!(config = %p.display(), version = 1, "config loaded");
    }
    let mut bound = Vec::new();
    for (name, listener, l) in listeners {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(name = %name, addr = %addr, tls = l.tls, "listening");
        let mode = listener::ListenerMode {
            tls: l.tls,
            redirect_to_https: l.redirect_http_to_https.then(|| l.https_port.unwrap_or(https_port)),
        };
        bound.push(tokio::spawn(listener::serve(
            listener,
            engine.clone(),
            listener::ServeOptions::from_limits(&limits),
            mode,
            stop_rx.clone(),
            tracker.clone(),
        )));
    }

    if let Some(a) = admin_cfg {
        let listener = listener::bind(&a.bind)
            .await
            .map_err(|e| format!("cannot listen on {} (admin): {e}", a.bind))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(name = "admin", addr = %addr, "listening");
        let state = Arc::new(admin::AdminState {
            engine: engine.clone(),
            reloader: reloader.clone(),
            token: a.token,
            started: std::time::Instant::now(),
            config_edits: tokio::sync::Mutex::new(()),
            cluster: cluster_node.clone(),
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, admin::router(state))
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(deadline = ?shutdown_timeout, "shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    for b in bound {
        let _ = b.await;
    }
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    if tokio::time::timeout_at(deadline, tracker.wait_idle()).await.is_err() {
        tracing::warn!(
            open = tracker.open(),
            "shutdown deadline passed; closing the remaining connections"
        );
    }
    // WebSockets (off the connection count once upgraded) have the same deadline to close on
    // their own; then each relay closes its socket with 1001 (going away) and logs it.
    let sockets = engine.sockets.clone();
    if tokio::time::timeout_at(deadline, sockets.wait_idle()).await.is_err() {
        tracing::info!(open = sockets.open(), "closing the open WebSockets (1001)");
        sockets.close_all();
        let _ = tokio::time::timeout(Duration::from_secs(10), sockets.wait_idle()).await;
    }
    // Every finished request has queued its traffic-log line by now: write them out.
    let log = engine.snapshot().traffic_log.clone();
    let _ = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(5))).await;
    // Spans queued for export go out now; the export itself runs on this runtime.
    if let Some(spans) = engine.snapshot().spans.clone() {
        let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(())
}
