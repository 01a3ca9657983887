//! `cratopus`: the command line.
//!
//! - `cratopus run [-c gateway.yaml]`: serve (the embedded default when no file is given)
//! - `cratopus check -c gateway.yaml`: load and compile the config, print every problem
//! - `cratopus routes -c gateway.yaml [--json]`: the routing tree (organizations, hosts, paths, routes)
//! - `cratopus schema [--org] [-o FILE]`: the JSON Schema of the config, for editors
//! - `cratopus mirror --listen ADDR`: the echo service alone
//! - `cratopus import krakend krakend.json [-o gateway.yaml]`: a KrakenD config as a cratopus one
//! - `cratopus push -c gateway.yaml [--redis URL] orgs/*.yaml`: check organization files and
//!   publish them to a cluster's nodes as a new config version

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod alloc;
mod import;
mod push_cmd;
mod routes_cmd;
mod schema_cmd;

#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

#[derive(Parser)]
#[command(name = "cratopus", version, about = "An API gateway: one binary, one YAML config")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// gateway.yaml; without it the embedded default serves the mirror on 127.0.0.1:8080.
        #[arg(short, long, env = "CRATOPUS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config without starting anything: every error and warning, with its place.
    /// Exits 1 on errors (and on warnings with --strict).
    Check {
        #[arg(short, long, env = "CRATOPUS_CONFIG")]
        config: PathBuf,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Print the routing tree: organizations, hosts, paths, methods, routes and upstreams.
    Routes {
        #[arg(short, long, env = "CRATOPUS_CONFIG")]
        config: PathBuf,
        /// Print the tree as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of gateway.yaml (with --org, of an organization file), for editors.
    Schema {
        /// The schema of an organization file instead of gateway.yaml.
        #[arg(long)]
        org: bool,
        /// Write the schema to this file instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Print the hash of an API key for a consumer's `keys:` (the key itself stays out of the
    /// config). Without KEY, a new random key is made and printed with its hash.
    HashKey {
        /// The key to hash; read it from standard input with `-`.
        key: Option<String>,
    },
    /// Run the control plane of a cluster: the REST API over PostgreSQL that validates,
    /// versions and publishes organizations to the nodes through Redis (docs/control-plane.md).
    Control {
        /// control.yaml: bind, database, redis, operator_token, gateway.
        #[arg(short, long, env = "CRATOPUS_CONTROL_CONFIG")]
        config: PathBuf,
    },
    /// Convert another gateway's configuration into a cratopus gateway.yaml.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Check organization files beside gateway.yaml (as `check` does) and publish them as a new
    /// config version of the cluster: every node with a `cluster:` section swaps it in.
    Push {
        #[arg(short, long, env = "CRATOPUS_CONFIG")]
        config: PathBuf,
        /// The cluster's Redis (`redis://host:port`); repeat for Redis Cluster seeds. Default:
        /// gateway.yaml's `cluster.redis`.
        #[arg(long)]
        redis: Vec<String>,
        /// The --redis URLs are nodes of a Redis Cluster.
        #[arg(long)]
        redis_cluster: bool,
        /// The organization files of the new version (it replaces every organization of the
        /// previous one).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the echo service alone.
    Mirror {
        #[arg(short, long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// A KrakenD configuration (krakend.json, version 3). Prints every setting it could not
    /// convert, with its JSON path; exits non-zero only on unreadable input.
    Krakend {
        /// The KrakenD JSON file.
        file: PathBuf,
        /// Write the YAML here instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `push` says itself what went wrong with Redis; the state store's own log lines (written
    // for a running gateway) would only confuse its output.
    let default_filter = match cli.command {
        Command::Push { .. } => "info,cratopus_state=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRATOPUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config, strict } => check(&config, strict),
        Command::Routes { config, json } => routes_cmd::run(&config, json),
        Command::Schema { org, out } => schema_cmd::run(org, out.as_deref()),
        Command::Mirror { listen } => mirror(&listen),
        Command::Push {
            config,
            redis,
            redis_cluster,
            files,
        } => push_cmd::run(&config, &redis, redis_cluster, &files),
        Command::HashKey { key } => hash_key(key),
        Command::Control { config } => control(&config),
        Command::Import {
            from: ImportFrom::Krakend { file, out },
        } => import::krakend(&file, out.as_deref()),
    }
}

/// `cratopus hash-key`.
fn hash_key(key: Option<String>) -> ExitCode {
    let key = match key.as_deref() {
        Some("-") => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("error: cannot read the key from standard input");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
        Some(k) => k.to_string(),
        None => {
            // 32 random bytes from the OS, as 64 hex digits.
            let mut bytes = [0u8; 32];
            if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| {
                use std::io::Read;
                f.read_exact(&mut bytes)
            }) {
                eprintln!("error: no randomness from /dev/urandom: {e}");
                return ExitCode::FAILURE;
            }
            let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("key:  {key}");
            key
        }
    };
    if key.is_empty() {
        eprintln!("error: the key is empty");
        return ExitCode::FAILURE;
    }
    let hash = cratopus_core::hash_api_key(&key);
    if key.len() < 16 {
        eprintln!("warning: a key of fewer than 16 characters can be guessed");
    }
    println!("{}{hash}", if std::env::args().count() <= 2 { "hash: " } else { "" });
    ExitCode::SUCCESS
}

fn load(path: Option<&Path>) -> Result<cratopus_config::LoadedConfig, String> {
    match path {
        Some(p) => cratopus_config::load_file(p).map_err(|e| e.to_string()),
        None => cratopus_config::load_str(Path::new("<embedded default>"), cratopus_config::EMBEDDED_DEFAULT)
            .map_err(|e| e.to_string()),
    }
}

fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match workers {
        // One worker: a current-thread runtime, like one nginx worker process.
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
}

fn run(config: Option<PathBuf>) -> ExitCode {
    let cfg = match load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid config:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    if config.is_none() {
        tracing::info!("no config given: serving the embedded default (every request goes to the mirror)");
    }
    let rt = match runtime(cfg.gateway.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cratopus_server::run(cfg, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path, strict: bool) -> ExitCode {
    use cratopus_config::report::{Severity, render};
    let errors = |e: cratopus_config::ConfigErrors| -> Vec<(Severity, cratopus_config::ConfigError)> {
        e.0.into_iter().map(|e| (Severity::Error, e)).collect()
    };
    let cfg = match cratopus_config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            let problems = errors(e);
            eprint!("{}", render(&problems));
            eprintln!("{}: {} error(s)", path.display(), problems.len());
            return ExitCode::FAILURE;
        }
    };
    let warnings: Vec<_> = cratopus_config::lint::lint(&cfg)
        .into_iter()
        .chain(routes_cmd::fallback_warnings(&cfg))
        .map(|w| (Severity::Warning, w))
        .collect();
    // The same compile as `run` and a reload (routes, templates, pools, policies), which has
    // no side effects: nothing is opened, resolved or started. Its errors are placed in the
    // files as the loader's are.
    let sources = cfg.sources.clone();
    let compiled: Result<Result<(), cratopus_config::ConfigErrors>, String> =
        Ok(cratopus_core::compile_only(cfg, None, 1, &Default::default()).map(|_| ()));
    let mut problems = match compiled {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(mut e)) => {
            sources.place(&mut e.0);
            errors(e)
        }
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let n_errors = problems.len();
    problems.extend(warnings);
    eprint!("{}", render(&problems));
    let n_warnings = problems.len() - n_errors;
    if n_errors > 0 || (strict && n_warnings > 0) {
        eprintln!("{}: {n_errors} error(s), {n_warnings} warning(s)", path.display());
        return ExitCode::FAILURE;
    }
    println!("{}: ok ({n_warnings} warning(s))", path.display());
    ExitCode::SUCCESS
}

/// `cratopus control`.
fn control(config: &Path) -> ExitCode {
    let result = runtime(None)
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| rt.block_on(cratopus_control::run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mirror(listen: &str) -> ExitCode {
    let result = runtime(None).and_then(|rt| {
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(addr = %listener.local_addr()?, "mirror listening");
            cratopus_mirror::serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
