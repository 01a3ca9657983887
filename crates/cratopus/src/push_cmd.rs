//! `cratopus push -c gateway.yaml [--redis URL] orgs/*.yaml`: a cluster without a control plane.
//!
//! The organization files are checked as `cratopus check` would check them beside gateway.yaml
//! (errors at their file and line), then stored as one new config version in the cluster's
//! Redis and announced: every node of the cluster swaps it in. The version number is taken
//! with an atomic `INCR` lifted above the current version and the versions the nodes report,
//! so two pushers never take one number and a Redis that lost its data (restarted without
//! persistence) does not hand out numbers the nodes would ignore as old.
//!
//! The documents are sent as written: `${ENV}` is not replaced (every node gets the same
//! version, and the nodes do not interpolate it either).

use cratopus_config::cluster::{Bundle, BundleOrg, keys};
use cratopus_config::report::{Severity, render};
use cratopus_state::RedisLimiter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How long push waits for Redis (a command line tool can wait).
const PATIENCE: Duration = Duration::from_secs(5);

pub fn run(config: &Path, redis: &[String], redis_cluster: bool, files: &[PathBuf]) -> ExitCode {
    match push(config, redis, redis_cluster, files) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprint!("{msg}");
            if !msg.ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}

fn push(config: &Path, redis: &[String], redis_cluster: bool, files: &[PathBuf]) -> Result<String, String> {
    let read = |p: &Path| cratopus_config::files::read_text_limited(p).map_err(|e| format!("error: {e}"));
    let gateway_text = read(config)?;
    let mut documents = Vec::new();
    for f in files {
        let text = read(f)?;
        documents.push((f.clone(), text));
    }

    // The same checks as `cratopus check`, with the files' own names and lines.
    let cfg = cratopus_config::load_with_documents(config, &gateway_text, &documents).map_err(refused)?;
    let redis_config = redis_config(&cfg.gateway, redis, redis_cluster)?;
    let sources = cfg.sources.clone();
    cratopus_core::compile_only(cfg, None, 1, &Default::default()).map_err(|mut e| {
        sources.place(&mut e.0);
        refused(e)
    })?;
    let mut organizations = Vec::new();
    for (file, text) in &documents {
        organizations.push(document(file, text)?);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("error: cannot start the runtime: {e}"))?;
    rt.block_on(store(config, &gateway_text, redis_config, organizations))
}

/// The Redis to push to: `--redis`, else gateway.yaml's `cluster.redis`.
fn redis_config(
    gateway: &cratopus_config::GatewayConfig,
    urls: &[String],
    cluster: bool,
) -> Result<cratopus_state::RedisConfig, String> {
    let (urls, cluster) = match (urls, &gateway.cluster) {
        ([], Some(c)) => (c.redis.urls.clone(), c.redis.cluster),
        ([], None) => {
            return Err("error: no Redis to push to: give --redis URL or a `cluster:` section in gateway.yaml".into());
        }
        (urls, _) => (urls.to_vec(), cluster),
    };
    Ok(cratopus_state::RedisConfig {
        urls,
        cluster,
        timeout: PATIENCE,
        retry_interval: Duration::from_secs(1),
        connect_timeout: PATIENCE,
    })
}

fn refused(e: cratopus_config::ConfigErrors) -> String {
    let problems: Vec<_> = e.0.into_iter().map(|e| (Severity::Error, e)).collect();
    format!("{}nothing pushed: {} error(s)\n", render(&problems), problems.len())
}

/// One organization file as a bundle's document (YAML read into JSON, as written).
fn document(file: &Path, text: &str) -> Result<BundleOrg, String> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let document: serde_json::Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| format!("error: {}: {e}", file.display()))?;
    let name = document
        .get("name")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("error: {}: the organization has no `name`", file.display()))?
        .to_string();
    Ok(BundleOrg { name, document })
}

async fn store(
    config: &Path,
    gateway_text: &str,
    redis: cratopus_state::RedisConfig,
    organizations: Vec<BundleOrg>,
) -> Result<String, String> {
    let where_ = redis.urls.join(", ");
    let redis = RedisLimiter::new(redis).map_err(|e| format!("error: redis: {e}"))?;
    let unreachable =
        |e: cratopus_state::StateError| format!("error: cannot reach redis at {where_} ({e}); nothing pushed");
    let current = match redis.get_bytes(keys::CONFIG_CURRENT).await.map_err(unreachable)? {
        None => 0,
        Some(raw) => String::from_utf8_lossy(&raw).trim().parse::<u64>().map_err(|_| {
            format!(
                "error: {} holds `{}`, not a version number; nothing pushed",
                keys::CONFIG_CURRENT,
                String::from_utf8_lossy(&raw)
            )
        })?,
    };
    let nodes_max = redis
        .hgetall(keys::NODES)
        .await
        .map_err(unreachable)?
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<serde_json::Value>(v).ok())
        .filter_map(|v| v.get("version").and_then(serde_json::Value::as_u64))
        .max()
        .unwrap_or(0);
    let version = redis
        .incr_above(keys::CONFIG_NEXT, current.max(nodes_max))
        .await
        .map_err(unreachable)?;
    let bundle = Bundle {
        version,
        organizations,
        created_at: Some(rfc3339_now()),
    };
    // The bundle as the nodes will load it (its JSON documents): the same verdict, checked
    // once more so that nothing the conversion changed can reach them.
    let cfg = cratopus_config::load_with_bundle(config, gateway_text, &bundle).map_err(refused)?;
    let sources = cfg.sources.clone();
    cratopus_core::compile_only(cfg, None, 1, &Default::default()).map_err(|mut e| {
        sources.place(&mut e.0);
        refused(e)
    })?;

    let json = serde_json::to_vec(&bundle).map_err(|e| format!("error: {e}"))?;
    redis
        .set_persistent(&keys::config_version(version), &json)
        .await
        .map_err(unreachable)?;
    if !redis
        .raise_to(keys::CONFIG_CURRENT, version)
        .await
        .map_err(unreachable)?
    {
        return Err(format!(
            "error: version {version} stored, but a newer version became current meanwhile (another push); not announced"
        ));
    }
    let listeners = redis
        .publish_counted(keys::CONFIG_CHANNEL, version.to_string().as_bytes())
        .await
        .map_err(|e| format!("error: version {version} is current but was not announced ({e}); nodes pick it up at their next heartbeat"))?;
    Ok(format!(
        "pushed version {version} ({} organization(s)); announced to {listeners} subscriber(s)",
        bundle.organizations.len()
    ))
}

/// Now as RFC 3339 (`2026-12-07T11:15:09.123Z`).
fn rfc3339_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    cratopus_control::rfc3339(ms)
}
