//! Config reload: on a change of any config file (watched), on SIGHUP, or when asked.
//!
//! The new config is loaded and compiled beside the running one; only a config that passes
//! every step is swapped in. A rejected config is logged with file, line and reason, and the old
//! one keeps serving.

use cratopus_config::cluster::Bundle;
use cratopus_config::{LoadedConfig, load_file_reusing};
use cratopus_core::Engine;
use notify::{RecursiveMode, Watcher};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long the config files must see no write before a watched change is read.
const SETTLE: Duration = Duration::from_millis(200);

pub struct Reloader {
    engine: Arc<Engine>,
    path: Option<PathBuf>,
    lock: Mutex<()>,
    /// The last reload failure, for the admin API.
    pub last_error: std::sync::Mutex<Option<String>>,
    /// On a cluster node, the organizations of the cluster version running: a file reload
    /// keeps them, and a new version keeps the files' ([`Reloader::reload_bundle`]).
    bundle: std::sync::Mutex<Option<Arc<Bundle>>>,
}

impl Reloader {
    pub fn new(engine: Arc<Engine>, path: Option<PathBuf>) -> Reloader {
        Reloader {
            engine,
            path,
            lock: Mutex::new(()),
            last_error: std::sync::Mutex::new(None),
            bundle: std::sync::Mutex::new(None),
        }
    }

    /// The gateway.yaml this reloads from (`None` on the embedded default).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The cluster version's organizations the node started with.
    pub fn with_bundle(self, bundle: Option<Arc<Bundle>>) -> Reloader {
        *self.bundle.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = bundle;
        self
    }

    /// Swaps in the config files with a new cluster version's organizations, as [`reload`]
    /// does (one at a time, the old config serving if this one is refused). Returns the new
    /// snapshot version.
    ///
    /// [`reload`]: Reloader::reload
    pub async fn reload_bundle(&self, bundle: Arc<Bundle>) -> Result<u64, String> {
        self.reload_with(Some(bundle)).await
    }

    /// Loads gateway.yaml from `path` with the cluster's organizations, if any. The
    /// organization files whose text is unchanged since `prev` (the running config) read them
    /// are not parsed again (`cratopus_config::load_file_reusing`).
    fn load(
        path: &Path,
        bundle: Option<&Bundle>,
        prev: &LoadedConfig,
    ) -> Result<cratopus_config::LoadedConfig, String> {
        let Some(bundle) = bundle else {
            return load_file_reusing(path, prev).map_err(|e| e.to_string());
        };
        let read_at = std::time::SystemTime::now();
        let text = cratopus_config::files::read_text_limited(path)?;
        let mut cfg =
            cratopus_config::load_with_bundle_reusing(path, &text, bundle, prev).map_err(|e| e.to_string())?;
        cfg.read_at = read_at;
        Ok(cfg)
    }

    /// Loads, compiles and swaps in the config from disk. Returns the new version.
    pub async fn reload(&self) -> Result<u64, String> {
        self.reload_with(None).await
    }

    /// A reload with `new_bundle` as the cluster's organizations (`None`: those running).
    async fn reload_with(&self, new_bundle: Option<Arc<Bundle>>) -> Result<u64, String> {
        let Some(path) = self.path.clone() else {
            return Err("the gateway runs on its embedded default config; there is no file to reload".into());
        };
        let _one_at_a_time = self.lock.lock().await;
        let bundle = new_bundle.clone().or_else(|| {
            self.bundle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        let prev = self.engine.snapshot();
        let started = std::time::Instant::now();
        let running = prev.config.clone();
        let loaded = tokio::task::spawn_blocking(move || Self::load(&path, bundle.as_deref(), &running))
            .await
            .map_err(|e| e.to_string())?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let result = match loaded {
            Err(e) => Err(e),
            Ok(cfg) => {
                if cfg.gateway.listeners != prev.config.gateway.listeners {
                    tracing::warn!("listener changes take effect at the next restart");
                }
                if cfg.gateway.cluster != prev.config.gateway.cluster {
                    tracing::warn!("changes to `cluster:` take effect at the next restart");
                }
                let version = prev.version + 1;
                let sources = cfg.sources.clone();
                let routes: usize = cfg.orgs.iter().map(|o| o.config.routes.len()).sum();
                let organizations = cfg.orgs.len();
                let unchanged_files = cfg.reused_files;
                let compiling = std::time::Instant::now();
                // Compiling 10,000 routes takes tens of milliseconds of CPU: off the runtime's
                // threads, so that requests keep being served meanwhile (with `workers: 1` the
                // runtime has one thread). The start steps (files, sockets, JWKS) are async.
                let before = prev.clone();
                let compiled = tokio::task::spawn_blocking(move || {
                    cratopus_core::compile_only(cfg, Some(&before), version, &cratopus_core::Services::default())
                })
                .await
                .map_err(|e| e.to_string())?;
                let started_snapshot = match compiled {
                    Ok(c) => c.start().await,
                    Err(e) => Err(e),
                };
                match started_snapshot {
                    Ok(snap) => {
                        let compile_ms = compiling.elapsed().as_secs_f64() * 1e3;
                        self.engine.swap(snap);
                        // What a reload costs, for operators of large configs (and bench/reload.sh).
                        tracing::info!(
                            version,
                            organizations,
                            routes,
                            unchanged_files,
                            load_ms = format_args!("{load_ms:.1}"),
                            compile_ms = format_args!("{compile_ms:.1}"),
                            total_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
                            "config compiled and swapped in"
                        );
                        Ok(version)
                    }
                    Err(mut e) => {
                        sources.place(&mut e.0);
                        Err(e.to_string())
                    }
                }
            }
        };
        // The old snapshot is freed where it cannot hold up requests (when this was its last
        // holder: tearing down 10,000 compiled routes takes milliseconds).
        let prev_version = prev.version;
        tokio::task::spawn_blocking(move || drop(prev));
        self.engine.metrics.reload(result.is_ok());
        match &result {
            Ok(v) => {
                tracing::info!(version = v, "config reloaded");
                if let Ok(mut le) = self.last_error.lock() {
                    *le = None;
                }
                if let Some(b) = new_bundle {
                    *self.bundle.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b);
                }
            }
            Err(e) => {
                tracing::error!(
                    version = prev_version,
                    "config rejected, still serving version {prev_version}:\n{e}"
                );
                if let Ok(mut le) = self.last_error.lock() {
                    *le = Some(e.clone());
                }
            }
        }
        result
    }

    /// Reloads on SIGHUP and reopens the traffic log.
    pub fn on_sighup(self: Arc<Self>, mut hup: tokio::signal::unix::Signal) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Logged once the reopen is queued: every line after this one goes to the new file.
                self.engine.snapshot().traffic_log.reopen();
                tracing::info!("SIGHUP: reopening the traffic log and reloading");
                if self.path.is_some() {
                    let _ = self.reload().await;
                }
            }
        });
    }

    /// Watches the directories of every config file and reloads on a change.
    pub fn watch_files(self: Arc<Self>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<PathBuf>(64);
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if matches!(ev.kind, notify::EventKind::Access(_)) {
                    return;
                }
                for p in ev.paths {
                    let _ = tx.try_send(p);
                }
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch config files; reload with SIGHUP");
                return;
            }
        };
        // The first registration happens before this returns, so that no early edit is missed;
        // an edit between reading the files and now is caught by their modification times.
        let mut watched_dirs: HashSet<PathBuf> = HashSet::new();
        let (mut files, mut dirs) = relevant(&self.engine);
        register(&mut watcher, &mut watched_dirs, &files, &dirs);
        let read_at = self.engine.snapshot().config.read_at;
        let missed = files.iter().any(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > read_at)
        });
        tokio::spawn(async move {
            let mut pending = missed;
            loop {
                // Wait for a change to a file we read or a YAML file in a glob's directory.
                while !pending {
                    let Some(p) = rx.recv().await else { return };
                    pending = is_relevant(&p, &files, &dirs);
                }
                pending = false;
                // Editors and tools write in several steps (truncate, write, rename; a file can
                // be empty in between): read only once the files have had no event for SETTLE.
                loop {
                    match tokio::time::timeout(SETTLE, rx.recv()).await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let _ = self.reload().await;
                (files, dirs) = relevant(&self.engine);
                register(&mut watcher, &mut watched_dirs, &files, &dirs);
            }
        });
    }
}

/// Watches the directories of `files` and `dirs` that are not watched yet.
fn register(watcher: &mut impl Watcher, watched: &mut HashSet<PathBuf>, files: &[PathBuf], dirs: &[PathBuf]) {
    let parents = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf));
    for d in dirs.iter().cloned().chain(parents) {
        let d = if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d
        };
        if watched.insert(d.clone())
            && let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive)
        {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn relevant(engine: &Engine) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let snap = engine.snapshot();
    let files = snap.config.files.iter().map(|f| canonical(f)).collect();
    let dirs = snap.config.watch_dirs.iter().map(|d| canonical(d)).collect();
    (files, dirs)
}

fn is_relevant(p: &Path, files: &[PathBuf], dirs: &[PathBuf]) -> bool {
    let name_ok = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let parent = p.parent().map(canonical);
    let full = parent
        .as_ref()
        .and_then(|d| p.file_name().map(|n| d.join(n)))
        .unwrap_or_else(|| p.to_path_buf());
    files.contains(&full) || (name_ok && parent.is_some_and(|d| dirs.contains(&d)))
}
