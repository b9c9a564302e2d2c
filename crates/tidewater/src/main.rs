//! The `tidewater` command line: arguments, logging and exit codes. Each command lives in a
//! file of its own and calls into `tidewater-runtime` (docs/architecture.md).

mod check;
mod config;
mod demo;
mod query;
mod resnapshot;
mod run;
mod status;
mod stdout;
mod teardown;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// `--config` when not given: `tidewater.toml` in the working directory.
const DEFAULT_CONFIG: &str = "tidewater.toml";

#[derive(Parser)]
#[command(
    name = "tidewater",
    version,
    about = "Change-data-capture replicator: PostgreSQL / MySQL / MariaDB → DuckDB, exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as human text or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot if needed, then stream changes until stopped (SIGINT/SIGTERM).
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Preflight: connectivity, privileges, wal_level / binlog settings, tables, keys, types.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Position, per-table rows, last commit and lag (also while `run` is running).
    Status {
        /// The configuration file (only the replica is read: the source's secrets are not
        /// needed).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the status as JSON (what GET /status returns).
        #[arg(long)]
        json: bool,
    },
    /// Run one read-only SQL statement on the replica (also while `run` is running).
    Query {
        /// The replica of this configuration file [default: tidewater.toml, unless --db].
        #[arg(long, short, conflicts_with = "db")]
        config: Option<PathBuf>,
        /// Or the DuckDB file itself.
        #[arg(long)]
        db: Option<PathBuf>,
        /// SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE or EXPLAIN.
        sql: String,
        #[arg(long, short, value_enum, default_value = "table")]
        format: query::render::Format,
        /// Most rows returned (at most 100000).
        #[arg(long, default_value_t = tidewater_runtime::query::exec::DEFAULT_LIMIT)]
        limit: usize,
        /// Seconds after which the query is interrupted.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Compare the source with the replica, row by row (also while `run` is running):
    /// exit 0 when equal, 1 when not.
    Verify {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only the replicated tables matching these schema.table globs (! excludes).
        #[arg(long = "tables", value_name = "GLOB")]
        tables: Vec<String>,
        /// Example keys shown per kind of difference and table.
        #[arg(long, default_value_t = 10)]
        max_examples: usize,
    },
    /// Copy replicated tables again while `run` keeps streaming (asks the running process).
    Resnapshot {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The replicated tables matching these schema.table globs (! excludes).
        #[arg(long = "tables", value_name = "GLOB", required = true)]
        tables: Vec<String>,
    },
    /// Stop replicating tables without starting over: the replica stops holding them, so
    /// source.tables may leave them out (selected again later, they are copied anew). Lists
    /// them only, without --yes.
    Forget {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The replicated tables matching these schema.table globs (! excludes).
        #[arg(long = "tables", value_name = "GLOB", required = true)]
        tables: Vec<String>,
        /// Do it (without it, only list what would be done).
        #[arg(long)]
        yes: bool,
        /// Drop their replica and _log tables too (kept by default).
        #[arg(long)]
        drop_tables: bool,
    },
    /// Remove the pipeline: drop the PostgreSQL slot and publications tidewater created
    /// (an abandoned slot keeps WAL forever). Lists them only, without --yes.
    Teardown {
        #[arg(long, short)]
        config: PathBuf,
        /// Drop them (without it, only list what would be dropped).
        #[arg(long)]
        yes: bool,
        /// Delete the DuckDB replica file too (kept by default).
        #[arg(long)]
        drop_replica: bool,
    },
    /// Print the configuration: `--print-defaults` writes a commented tidewater.toml with
    /// every key of every source and sink type and its default.
    Config {
        /// Print every key with its default (a config file to start from).
        #[arg(long, required = true)]
        print_defaults: bool,
    },
    /// Print a completion script for a shell: bash, zsh or fish (scripts/install.sh
    /// installs them; or `source <(tidewater completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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
    let terminal = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(log_filter(std::env::var("RUST_LOG").ok())))
        .with_writer(run::LogMakeWriter);
    match cli.log_format {
        LogFormat::Human => logs.with_ansi(terminal).init(),
        LogFormat::Json => logs.json().with_current_span(false).with_ansi(false).init(),
    }
    let progress_bars = terminal && cli.log_format == LogFormat::Human;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config, progress_bars).await,
            Command::Check { config } => check::check(&config).await,
            Command::Status { config, json } => status::status(&config, json).await,
            Command::Query {
                config,
                db,
                sql,
                format,
                limit,
                timeout,
            } => {
                let args = tidewater_runtime::query::QueryArgs {
                    config: config.or_else(|| db.is_none().then(|| DEFAULT_CONFIG.into())),
                    db,
                    sql,
                    limit,
                    timeout: std::time::Duration::from_secs_f64(timeout.clamp(0.001, 3600.0)),
                };
                query::query(args, format).await
            }
            Command::Verify {
                config,
                tables,
                max_examples,
            } => {
                verify::verify(verify::VerifyArgs {
                    config,
                    tables,
                    max_examples,
                })
                .await
            }
            Command::Demo {
                source,
                seconds,
                path,
            } => demo::run(&source, seconds, &path).await,
            Command::Completions { shell } => {
                let mut out = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "tidewater", &mut out);
                stdout::print(&String::from_utf8_lossy(&out))
            }
            Command::Config { print_defaults: _ } => config::print_defaults(),
            Command::Resnapshot { config, tables } => resnapshot::resnapshot(&config, tables).await,
            Command::Teardown {
                config,
                yes,
                drop_replica,
            } => teardown::command(&config, yes, drop_replica).await,
            Command::Forget {
                config,
                tables,
                yes,
                drop_tables,
            } => teardown::forget(&config, &tables, yes, drop_tables).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.exit_code() != 0 {
                let redact = tidewater_core::redact::redact;
                let message = redact(e.message());
                let fix = e.fix().map(redact);
                match cli.log_format {
                    // One line, as before the fix became a field (scripts grep for it).
                    LogFormat::Human => match fix {
                        Some(fix) => eprintln!("error: {message}; fix: {fix}"),
                        None => eprintln!("error: {message}"),
                    },
                    LogFormat::Json => {
                        tracing::error!(error = %message, fix = fix.as_deref(), exit_code = e.exit_code(), "stopped with an error")
                    }
                }
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
