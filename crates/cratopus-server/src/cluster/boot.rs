//! A cluster node's first config: the current version from Redis, else the disk copy, else the
//! node's own organizations. Each candidate is loaded and compiled as a reload would; one that
//! is refused is logged with its file and line and the next one is tried, so a node always
//! starts (unless its own gateway.yaml is broken, as without a cluster).

use super::{ClusterNode, Source, disk};
use cratopus_config::LoadedConfig;
use cratopus_config::cluster::{Bundle, ClusterConfig, keys};
use cratopus_core::Snapshot;
use std::path::Path;
use std::sync::Arc;

/// What a node starts with.
pub struct Started {
    pub snapshot: Snapshot,
    pub node: Arc<ClusterNode>,
    /// The version's organizations, which file reloads keep; `None` without one.
    pub bundle: Option<Arc<Bundle>>,
}

/// Builds the node and its first snapshot. `own` is gateway.yaml as loaded from `path`.
pub async fn start(own: LoadedConfig, c: &ClusterConfig, path: &Path) -> Result<Started, String> {
    let node = Arc::new(ClusterNode::new(c, path)?);
    let read_path = path.to_path_buf();
    let text = tokio::task::spawn_blocking(move || cratopus_config::files::read_text_limited(&read_path))
        .await
        .map_err(|e| e.to_string())??;

    let mut candidates: Vec<(Bundle, Source)> = Vec::new();
    match node.fetch_current().await {
        Ok(Some(b)) => candidates.push((b, Source::Redis)),
        Ok(None) => tracing::info!(node = %node.name, "cluster: redis holds no config version yet"),
        Err(e) => tracing::warn!(node = %node.name, error = %e, "cluster: no config version from redis at start"),
    }
    let path_for_disk = node.cache_file.clone();
    match tokio::task::spawn_blocking(move || disk::read(&path_for_disk)).await {
        Ok(Ok(Some(b))) => candidates.push((b, Source::Disk)),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cluster: disk copy unusable"),
        Err(e) => tracing::warn!(error = %e, "cluster: disk copy not read"),
    }

    for (bundle, source) in candidates {
        let version = bundle.version;
        match compile_with(path, &text, &bundle).await {
            Ok(snapshot) => {
                node.set_running(version, source);
                let how = match source {
                    Source::Disk => "from the disk copy (redis could not give a version)",
                    _ => "from redis",
                };
                tracing::info!(node = %node.name, cluster_version = version, source = source.as_str(), "cluster: starting on version {version} {how}");
                return Ok(Started {
                    snapshot,
                    node,
                    bundle: Some(Arc::new(bundle)),
                });
            }
            Err(e) => {
                tracing::error!(node = %node.name, cluster_version = version, source = source.as_str(), "cluster: version {version} rejected at start:\n{e}");
                if source == Source::Redis {
                    node.rejected.store(version, std::sync::atomic::Ordering::Release);
                    node.rejections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                node.set_error(Some(format!("version {version} rejected:\n{e}")));
            }
        }
    }

    tracing::warn!(
        node = %node.name,
        "cluster: no config version from redis or disk; serving this node's own organizations only until one arrives"
    );
    let sources = own.sources.clone();
    let snapshot = cratopus_core::compile(own, None, 1).await.map_err(|mut e| {
        sources.place(&mut e.0);
        format!("invalid config:\n{e}")
    })?;
    Ok(Started {
        snapshot,
        node,
        bundle: None,
    })
}

/// gateway.yaml's `text` with `bundle`'s organizations, loaded and compiled (loading and the
/// compile's CPU work off the runtime, as a reload does).
async fn compile_with(path: &Path, text: &str, bundle: &Bundle) -> Result<Snapshot, String> {
    let (path, text, bundle) = (path.to_path_buf(), text.to_string(), bundle.clone());
    let loaded = tokio::task::spawn_blocking(move || cratopus_config::load_with_bundle(&path, &text, &bundle))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let sources = loaded.sources.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        cratopus_core::compile_only(loaded, None, 1, &cratopus_core::Services::default())
    })
    .await
    .map_err(|e| e.to_string())?;
    let started = match compiled {
        Ok(c) => c.start().await,
        Err(e) => Err(e),
    };
    started.map_err(|mut e| {
        sources.place(&mut e.0);
        e.to_string()
    })
}

impl ClusterNode {
    /// The current version's bundle: `Ok(None)` when Redis holds none (or announced a number
    /// whose bundle is gone), `Err` when Redis cannot be asked or holds something else.
    pub(crate) async fn fetch_current(&self) -> Result<Option<Bundle>, String> {
        match self.current_number().await? {
            None => Ok(None),
            Some(n) => self.fetch(n).await.map_err(|e| e.to_string()),
        }
    }

    /// The number in `cratopus:config:current`.
    pub(crate) async fn current_number(&self) -> Result<Option<u64>, String> {
        let raw = self
            .redis
            .get_bytes(keys::CONFIG_CURRENT)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let Some(raw) = raw else { return Ok(None) };
        let text = String::from_utf8_lossy(&raw);
        text.trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{} holds `{text}`, not a version number", keys::CONFIG_CURRENT))
    }

    /// Version `n`'s bundle from Redis.
    pub(crate) async fn fetch(&self, n: u64) -> Result<Option<Bundle>, FetchError> {
        let key = keys::config_version(n);
        let raw = self
            .redis
            .get_bytes(&key)
            .await
            .map_err(|e| FetchError::Unreachable(format!("redis: {e}")))?;
        let Some(raw) = raw else { return Ok(None) };
        let bundle: Bundle = serde_json::from_slice(&raw)
            .map_err(|e| FetchError::Invalid(format!("{key}: not a config version: {e}")))?;
        if bundle.version != n {
            return Err(FetchError::Invalid(format!("{key}: holds version {}", bundle.version)));
        }
        Ok(Some(bundle))
    }
}

/// Why a version could not be fetched.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Redis did not answer: try again later.
    Unreachable(String),
    /// Redis holds something that is not version `n`: refuse it.
    Invalid(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(e) | FetchError::Invalid(e) => f.write_str(e),
        }
    }
}
