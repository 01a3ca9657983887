//! `cratopus`: the command line.
//!
//! - `cratopus run [-c gateway.yaml]`: serve (the embedded default when no file is given)
//! - `cratopus check -c gateway.yaml`: load and compile the config, print every problem
//! - `cratopus mirror --listen ADDR`: the echo service alone

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Validate a config without starting anything; exits non-zero on errors.
    Check {
        #[arg(short, long, env = "CRATOPUS_CONFIG")]
        config: PathBuf,
    },
    /// Run the echo service alone.
    Mirror {
        #[arg(short, long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRATOPUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config } => check(&config),
        Command::Mirror { listen } => mirror(&listen),
    }
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

fn check(path: &Path) -> ExitCode {
    let result = load(Some(path)).and_then(|cfg| {
        let rt = runtime(Some(1)).map_err(|e| e.to_string())?;
        rt.block_on(cratopus_core::compile(cfg, None, 1))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
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
