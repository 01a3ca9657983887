//! `control.yaml`, the control plane's own settings: where it listens, its database, its Redis,
//! the operator token and the gateway.yaml its nodes run (every change is checked against it).
//!
//! Read like gateway.yaml: `${ENV}` and `${ENV:-default}` are substituted first (so secrets stay
//! in the environment), unknown keys are errors, every problem names `control.yaml:LINE`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings of `cratopus control`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The API's address. Default `127.0.0.1:9900`.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// PostgreSQL (or CockroachDB) connection string, `postgres://user:pass@host:port/db`.
    pub database: String,
    /// Connections to the database at most. Default 8.
    #[serde(default = "default_pool")]
    pub database_pool: usize,
    /// The Redis that carries versions to the nodes (the one in their `cluster.redis`).
    pub redis: RedisSection,
    /// The operator's bearer token: everything, including organization tokens. Write it as
    /// `${CRATOPUS_OPERATOR_TOKEN}` to keep it out of the file. At least 16 characters.
    pub operator_token: String,
    /// The gateway.yaml the nodes run, relative to control.yaml: every change is loaded and
    /// compiled with it, as `cratopus check` does. Default: a minimal one with `state.redis`.
    #[serde(default)]
    pub gateway: Option<String>,
    /// How often the latest version is compared with Redis's and published again when Redis
    /// lost it or missed it (Redis restarted or was down during a change). Default 1s.
    #[serde(default = "default_republish")]
    pub republish_interval: cratopus_config::Dur,
}

/// Where Redis is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port`; for a Redis Cluster, one or more of its nodes.
    pub urls: Vec<String>,
    /// The URLs are nodes of a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    /// Longest wait for one Redis call. Default 2s.
    #[serde(default = "default_redis_timeout")]
    pub timeout: cratopus_config::Dur,
}

fn default_bind() -> String {
    "127.0.0.1:9900".into()
}
fn default_pool() -> usize {
    8
}
fn default_republish() -> cratopus_config::Dur {
    cratopus_config::Dur::secs(1)
}
fn default_redis_timeout() -> cratopus_config::Dur {
    cratopus_config::Dur::secs(2)
}

/// The gateway.yaml a change is checked against when control.yaml names none: what a node of
/// a cluster needs at least (a listener, its `cluster:` section, so that an empty cluster is
/// valid), with `state.redis` so that `state: cluster` limits are accepted.
pub const DEFAULT_GATEWAY: &str = "listeners:\n  - bind: 127.0.0.1:0\nstate:\n  redis:\n    urls: [\"redis://127.0.0.1:6379\"]\ncluster:\n  node: control-plane-check\n  redis:\n    urls: [\"redis://127.0.0.1:6379\"]\n";

/// A loaded control.yaml with the gateway template read.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: ControlConfig,
    /// The template's path (errors name it) and text.
    pub gateway_path: PathBuf,
    pub gateway_text: String,
}

impl ControlConfig {
    pub fn redis_config(&self) -> cratopus_state::RedisConfig {
        cratopus_state::RedisConfig {
            urls: self.redis.urls.clone(),
            cluster: self.redis.cluster,
            timeout: self.redis.timeout.0,
            retry_interval: Duration::from_millis(500),
            connect_timeout: self.redis.timeout.0,
        }
    }
}

/// Reads control.yaml at `path`: interpolation, parsing, checks, and the gateway template.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    load_str(path, &text)
}

/// [`load`] from text (as if read from `path`).
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, String> {
    let lookup = |name: &str| std::env::var(name).ok();
    let text = cratopus_config::interpolate::interpolate(path, text, &lookup)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let config: ControlConfig = serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if config.operator_token.len() < 16 {
        return Err(format!(
            "{}: operator_token: at least 16 characters are needed (a short token can be guessed)",
            path.display()
        ));
    }
    if config.redis.urls.is_empty() {
        return Err(format!("{}: redis.urls: at least one URL is needed", path.display()));
    }
    if config.database_pool == 0 {
        return Err(format!("{}: database_pool: must be at least 1", path.display()));
    }
    let (gateway_path, gateway_text) = match &config.gateway {
        Some(p) => {
            let full = cratopus_config::load::resolve_path(path, p);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("{}: gateway: {}: {e}", path.display(), full.display()))?;
            (full, text)
        }
        None => (PathBuf::from("gateway.yaml"), DEFAULT_GATEWAY.to_string()),
    };
    Ok(Loaded {
        config,
        gateway_path,
        gateway_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_minimal_file_and_refuses_unknown_keys() {
        let ok = "database: postgres://x@127.0.0.1/db\nredis: {urls: [\"redis://127.0.0.1:1\"]}\noperator_token: 0123456789abcdef\n";
        let l = load_str(Path::new("control.yaml"), ok).unwrap();
        assert_eq!(l.config.bind, "127.0.0.1:9900");
        assert!(l.gateway_text.contains("state:"));
        let bad = format!("{ok}colour: blue\n");
        let e = load_str(Path::new("control.yaml"), &bad).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let short = ok.replace("0123456789abcdef", "short");
        assert!(
            load_str(Path::new("control.yaml"), &short)
                .unwrap_err()
                .contains("16 characters")
        );
    }

    #[test]
    fn the_example_control_yaml_loads_with_its_gateway_template() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/control/control.yaml");
        let l = load(&path).unwrap();
        assert!(l.gateway_path.ends_with("examples/control/gateway.yaml"));
        assert!(l.gateway_text.contains("cluster:"));
        // The template compiles on its own: an empty cluster is valid.
        let empty = cratopus_config::cluster::Bundle {
            version: 1,
            organizations: Vec::new(),
            created_at: None,
        };
        crate::validate::check(&l.gateway_path, &l.gateway_text, &empty).unwrap();
        let default = load_str(
            Path::new("control.yaml"),
            "database: x
redis: {urls: [u]}
operator_token: 0123456789abcdef
",
        )
        .unwrap();
        crate::validate::check(&default.gateway_path, &default.gateway_text, &empty).unwrap();
    }
}
