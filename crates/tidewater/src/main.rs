//! The `tidewater` command line (ARCHITECTURE.md section 2).

mod commands;
mod config;
mod demo;
mod pipeline;
mod sources;
mod status_file;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "tidewater",
    version,
    about = "Change-data-capture replicator: PostgreSQL / MySQL / MariaDB → DuckDB, exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot if needed, then stream changes until stopped (SIGINT/SIGTERM).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Preflight: connectivity, privileges, wal_level / binlog settings, tables, keys, types.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Position, per-table rows, last commit and lag (also while `run` is running).
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Throwaway source + write workload + live replica in demo.duckdb; no setup needed.
    Demo {
        /// The throwaway source: postgres or mysql (a MariaDB server).
        #[arg(long, default_value = "postgres")]
        source: String,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Where to write the replica.
        #[arg(long, default_value = "demo.duckdb")]
        path: PathBuf,
    },
}

/// `RUST_LOG` (default `info`); the replication client's per-message logs stay quiet unless
/// asked for by name.
fn log_filter(rust_log: Option<String>) -> String {
    let base = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    if base.contains("pg_walstream") {
        base
    } else {
        format!("{base},pg_walstream=warn")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(log_filter(std::env::var("RUST_LOG").ok())))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => commands::run(&config).await,
            Command::Check { config } => commands::check(&config).await,
            Command::Status { config } => commands::status(&config).await,
            Command::Demo {
                source,
                seconds,
                path,
            } => demo::run(&source, seconds, &path).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.exit_code() != 0 {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
