//! `tidewater-bench`: runs the benchmark suite and writes BENCHMARKS.md and
//! bench/results.json. `cargo run --release -p tidewater-bench -- all`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tidewater_bench::{run, setting_line, Options, Scenario, Sizes, SETTING_SECTIONS};

/// tidewater's benchmark suite: each figure beside a baseline measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "tidewater-bench")]
struct Cli {
    /// `all`, or scenarios: pg-stream, mysql-stream, snapshot, freshness, memory, scaling,
    /// bigquery-freshness, bigquery-snapshot.
    #[arg(default_value = "all")]
    scenarios: Vec<String>,
    /// Tiny sizes: checks the suite runs (figures mean little).
    #[arg(long)]
    quick: bool,
    /// The tidewater binary to measure [default: `tidewater` beside this executable,
    /// built first under `cargo run`].
    #[arg(long)]
    tidewater: Option<PathBuf>,
    /// Where BENCHMARKS.md and bench/results.json are written [default: the repository root].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Scratch directory (replicas, baseline output).
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// A directory holding DuckDB's `postgres_scanner.duckdb_extension` and
    /// `mysql_scanner.duckdb_extension` (e.g. from the PyPI packages
    /// duckdb-extension-postgres-scanner / -mysql-scanner): also measure them as snapshot baselines.
    #[arg(long)]
    duckdb_extensions: Option<PathBuf>,
    /// Row changes of the streaming scenarios [default: 1000000].
    #[arg(long)]
    changes: Option<u64>,
    /// Rows of the snapshot table [default: 5000000].
    #[arg(long)]
    snapshot_rows: Option<u64>,
    /// pgbench rates of the freshness scenario, tx/s [default: 1000,5000].
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Seconds of load at each freshness rate [default: 20].
    #[arg(long)]
    seconds: Option<u64>,
    /// `flush_interval_ms` settings of the freshness scenario (one run each; 100 is the default).
    #[arg(long, value_delimiter = ',', default_value = "100,10")]
    flush_ms: Vec<u64>,
    /// How often the freshness scenario polls the replica, ms [default: 10].
    #[arg(long)]
    poll_ms: Option<u64>,
    /// Single-transaction sizes of the memory scenario [default: 1000000,10000000].
    #[arg(long, value_delimiter = ',')]
    memory_rows: Option<Vec<u64>>,
    /// Row changes of each scaling run [default: 200000].
    #[arg(long)]
    scaling_changes: Option<u64>,
    /// Table counts of the scaling scenario [default: 1,10,100].
    #[arg(long, value_delimiter = ',')]
    tables: Option<Vec<usize>>,
    /// Rows of the BigQuery snapshot table [default: 200000].
    #[arg(long)]
    bigquery_rows: Option<u64>,
    /// Seconds of load of the BigQuery freshness scenario [default: 60].
    #[arg(long)]
    bigquery_seconds: Option<u64>,
    /// pgbench rate of the BigQuery freshness scenario, tx/s [default: 5].
    #[arg(long)]
    bigquery_rate: Option<u32>,
    /// A line added to every tidewater.toml of the run, `SECTION.KEY = VALUE` for a section
    /// source, sink, snapshot or apply (repeatable), e.g. `--set 'sink.memory_limit = ""'`,
    /// `--set 'snapshot.chunk_rows = 50000'`.
    #[arg(long = "set")]
    settings: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut scenarios = Vec::new();
    for name in &cli.scenarios {
        match (name.as_str(), Scenario::from_name(name)) {
            ("all", _) => scenarios.extend(Scenario::ALL),
            (_, Some(s)) => scenarios.push(s),
            (_, None) => {
                let known: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                eprintln!(
                    "error: unknown scenario {name:?}; known: all, {}",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    scenarios.dedup();
    if let Some(bad) = cli.settings.iter().find(|s| setting_line(s).is_none()) {
        eprintln!(
            "error: --set {bad:?}: expected `SECTION.KEY = VALUE`, SECTION one of {}",
            SETTING_SECTIONS.join(", ")
        );
        return ExitCode::from(2);
    }
    let mut sizes = if cli.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let overrides = [
        (cli.changes, &mut sizes.stream_changes),
        (cli.snapshot_rows, &mut sizes.snapshot_rows),
        (cli.seconds, &mut sizes.freshness_seconds),
        (cli.scaling_changes, &mut sizes.scaling_changes),
        (cli.poll_ms, &mut sizes.freshness_poll_ms),
        (cli.bigquery_rows, &mut sizes.bigquery_snapshot_rows),
        (cli.bigquery_seconds, &mut sizes.bigquery_freshness_seconds),
    ];
    for (given, size) in overrides {
        if let Some(v) = given {
            *size = v;
        }
    }
    sizes.freshness_rates = cli.rates.unwrap_or(sizes.freshness_rates);
    sizes.memory_rows = cli.memory_rows.unwrap_or(sizes.memory_rows);
    sizes.scaling_tables = cli.tables.unwrap_or(sizes.scaling_tables);
    sizes.bigquery_freshness_rate = cli.bigquery_rate.unwrap_or(sizes.bigquery_freshness_rate);

    let tidewater = match cli.tidewater {
        Some(path) => path,
        None => match build_tidewater() {
            Ok(path) => path,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().unwrap_or(repo);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo run --release -p tidewater-bench -- {}",
        args.join(" ")
    );
    let opts = Options {
        scenarios,
        sizes,
        quick: cli.quick,
        tidewater,
        out_dir: cli.out_dir.unwrap_or(repo),
        work_dir: cli.work_dir,
        freshness_flush_ms: cli.flush_ms,
        duckdb_extensions: cli.duckdb_extensions,
        settings: cli.settings,
        command: command.trim_end().to_string(),
    };
    match run(opts) {
        Ok(report) if report.failures.is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!("{} scenario(s) failed", report.failures.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `tidewater` beside this executable. Under `cargo run` (which sets `CARGO`) it is built
/// first with this executable's profile, so a stale binary is never measured.
fn build_tidewater() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "tidewater", "--bin", "tidewater"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        eprintln!("building tidewater: {build:?}");
        let status = build.status().map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building tidewater failed ({status})"));
        }
    }
    Ok(exe.with_file_name("tidewater"))
}
