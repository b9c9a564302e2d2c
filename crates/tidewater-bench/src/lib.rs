//! tidewater's benchmark suite (issue 6): every figure beside a baseline
//! measured in the same run, on the same machine and the same data.
//!
//! [`run`] starts its own throwaway PostgreSQL and MariaDB (`tidewater-harness`,
//! free ports; the BigQuery emulator for the BigQuery scenarios), runs the given
//! `tidewater` binary as a subprocess the way a user does, and writes
//! `BENCHMARKS.md` and `bench/results.json`. The binary
//! `tidewater-bench` is its command line; `crates/tidewater/tests/bench_smoke.rs`
//! runs it with tiny sizes in CI so it cannot rot.

mod bigquery;
mod error;
mod http;
mod machine;
mod pg_client;
mod report;
mod runner;
mod scenarios;
mod source;
mod source_tx;
mod tools;
mod workload;
mod writer;

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use tidewater_harness::{MariaDbServer, PgServer};

pub use error::{BenchError, Result};
pub use machine::Machine;
pub use report::{Baseline, Failure, Figure, Report, Target};

use bigquery::Emulator;
pub use runner::{setting_line, SETTING_SECTIONS};
use runner::{Apply, Sink, Tidewater};
use source::{Db, Kind};

/// The scenarios of issue 6 (and issue 16's BigQuery ones), in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    PgStream,
    MysqlStream,
    Snapshot,
    Freshness,
    Memory,
    Scaling,
    BigQueryFreshness,
    BigQuerySnapshot,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::PgStream,
        Scenario::MysqlStream,
        Scenario::Snapshot,
        Scenario::Freshness,
        Scenario::Memory,
        Scenario::Scaling,
        Scenario::BigQueryFreshness,
        Scenario::BigQuerySnapshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PgStream => "pg-stream",
            Scenario::MysqlStream => "mysql-stream",
            Scenario::Snapshot => "snapshot",
            Scenario::Freshness => "freshness",
            Scenario::Memory => "memory",
            Scenario::Scaling => "scaling",
            Scenario::BigQueryFreshness => "bigquery-freshness",
            Scenario::BigQuerySnapshot => "bigquery-snapshot",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    fn needs(self, kind: Kind) -> bool {
        match self {
            Scenario::MysqlStream => kind == Kind::MariaDb,
            Scenario::Snapshot => true,
            _ => kind == Kind::Postgres,
        }
    }

    fn needs_bigquery(self) -> bool {
        matches!(
            self,
            Scenario::BigQueryFreshness | Scenario::BigQuerySnapshot
        )
    }
}

/// How much work each scenario does.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Row changes of the streaming scenarios.
    pub stream_changes: u64,
    /// Rows of the snapshot table.
    pub snapshot_rows: u64,
    /// Also snapshot with `log_tables = false`.
    pub snapshot_without_log: bool,
    /// pgbench target rates (tx/s) of the freshness scenario, and seconds at each.
    pub freshness_rates: Vec<u32>,
    pub freshness_seconds: u64,
    /// How often the freshness scenario asks the replica for new probe rows (pacing: a
    /// tighter loop takes CPU from what it measures).
    pub freshness_poll_ms: u64,
    /// `pgbench -i` scale of the freshness scenario.
    pub pgbench_scale: u32,
    /// Rows of the single-transaction inserts the memory scenario drains.
    pub memory_rows: Vec<u64>,
    /// Row changes of each scaling run, and the table counts.
    pub scaling_changes: u64,
    pub scaling_tables: Vec<usize>,
    /// Rows of the BigQuery snapshot table (the emulator is slow).
    pub bigquery_snapshot_rows: u64,
    /// Seconds of the BigQuery freshness measurement, and its pgbench target rate (tx/s): a
    /// light steady load (the emulator falls behind even at 5 tx/s: see BENCHMARKS.md).
    pub bigquery_freshness_seconds: u64,
    pub bigquery_freshness_rate: u32,
}

impl Sizes {
    /// Issue 6's sizes.
    pub fn full() -> Sizes {
        Sizes {
            stream_changes: 1_000_000,
            snapshot_rows: 5_000_000,
            snapshot_without_log: true,
            freshness_rates: vec![1000, 5000],
            freshness_seconds: 20,
            freshness_poll_ms: 10,
            pgbench_scale: 1,
            memory_rows: vec![1_000_000, 10_000_000],
            scaling_changes: 200_000,
            scaling_tables: vec![1, 10, 100],
            bigquery_snapshot_rows: 200_000,
            bigquery_freshness_seconds: 60,
            bigquery_freshness_rate: 5,
        }
    }

    /// Tiny sizes: checks that everything runs, in well under a minute.
    pub fn quick() -> Sizes {
        Sizes {
            stream_changes: 2_000,
            snapshot_rows: 5_000,
            snapshot_without_log: false,
            freshness_rates: vec![200],
            freshness_seconds: 2,
            freshness_poll_ms: 10,
            pgbench_scale: 1,
            memory_rows: vec![5_000],
            scaling_changes: 1_000,
            scaling_tables: vec![1, 3],
            bigquery_snapshot_rows: 2_000,
            bigquery_freshness_seconds: 3,
            bigquery_freshness_rate: 5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenarios: Vec<Scenario>,
    pub sizes: Sizes,
    pub quick: bool,
    /// The `tidewater` binary under test.
    pub tidewater: PathBuf,
    /// Where `BENCHMARKS.md` and `bench/results.json` go.
    pub out_dir: PathBuf,
    /// Scratch space (replicas, baseline files); a directory is made inside and removed after.
    pub work_dir: PathBuf,
    /// `flush_interval_ms` settings the freshness scenario runs with, one run each.
    pub freshness_flush_ms: Vec<u64>,
    /// A directory with `postgres_scanner.duckdb_extension` and `mysql_scanner.duckdb_extension`:
    /// the snapshot scenario then also measures DuckDB's own scanners as baselines.
    pub duckdb_extensions: Option<PathBuf>,
    /// `SECTION.KEY = VALUE` lines added to every tidewater.toml of the run (`--set`, see
    /// [`SETTING_SECTIONS`]), e.g. to measure a setting against its default in the same run.
    pub settings: Vec<String>,
    /// The command line, for BENCHMARKS.md.
    pub command: String,
}

/// What the scenarios share: the options, the servers and scratch space.
pub struct Bench {
    pub opts: Options,
    work: PathBuf,
    pg: Option<PgServer>,
    my: Option<MariaDbServer>,
    bq: Option<Emulator>,
    ids: Cell<u32>,
}

impl Bench {
    /// A fresh database `b<id>_<label>` on the server of `kind`.
    fn db(&self, kind: Kind, label: &str) -> Result<(u32, Db<'_>)> {
        let id = self.ids.get() + 1;
        self.ids.set(id);
        let name = format!("b{id}_{label}");
        let db = match kind {
            Kind::Postgres => {
                let server = self.pg.as_ref().expect("started for this scenario");
                server.create_database(&name)?;
                Db::Pg { server, name }
            }
            Kind::MariaDb => {
                let server = self.my.as_ref().expect("started for this scenario");
                server.create_database(&name)?;
                Db::My { server, name }
            }
        };
        Ok((id, db))
    }

    /// A tidewater replicating `db` into a directory of its own (`run` tells runs on one db apart).
    fn tidewater(&self, db: &Db, id: u32, run: &str, apply: &Apply) -> Result<Tidewater> {
        self.tidewater_into(db, id, run, &Sink::DuckDb, apply)
    }

    /// The same, replicating into `sink` (its config and log in that directory).
    fn tidewater_into(
        &self,
        db: &Db,
        id: u32,
        run: &str,
        sink: &Sink,
        apply: &Apply,
    ) -> Result<Tidewater> {
        let dir = self.work.join(format!("{}-{run}", db.name()));
        let source = db.source_toml(id);
        Tidewater::new(
            &self.opts.tidewater,
            &dir,
            &source,
            sink,
            apply,
            &self.opts.settings,
        )
    }

    /// The BigQuery emulator (started for the BigQuery scenarios).
    fn emulator(&self) -> &Emulator {
        self.bq.as_ref().expect("started for this scenario")
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(BenchError::io(format!("creating {}", dir.display())))?;
        Ok(dir)
    }

    /// A generous deadline for work on `rows` rows: a wait that passes it means something hangs.
    fn timeout(&self, rows: u64) -> Duration {
        Duration::from_secs(120 + rows / 2_000)
    }
}

/// Runs the scenarios, writes the report files and returns the report. A
/// scenario that fails is recorded in `failures` (and the report still written).
pub fn run(opts: Options) -> Result<Report> {
    if !opts.tidewater.is_file() {
        return Err(BenchError::Other(format!(
            "no tidewater binary at {}: build it (cargo build --release -p tidewater) or pass --tidewater",
            opts.tidewater.display()
        )));
    }
    let mut machine = Machine::here();
    let needs = |kind| opts.scenarios.iter().any(|s| s.needs(kind));
    let pg = needs(Kind::Postgres).then(PgServer::start).transpose()?;
    let my = needs(Kind::MariaDb)
        .then(MariaDbServer::start)
        .transpose()?;
    let bq = opts
        .scenarios
        .iter()
        .any(|s| s.needs_bigquery())
        .then(Emulator::start)
        .transpose()?;
    if let Some(pg) = &pg {
        machine.postgres = pg
            .psql("postgres", "SHOW server_version")?
            .trim()
            .to_string();
    }
    if let Some(my) = &my {
        machine.mariadb = my.sql("", "SELECT version()")?.trim().to_string();
    }
    let work = opts
        .work_dir
        .join(format!("tidewater-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(BenchError::io(format!("creating {}", work.display())))?;
    // Every scenario runs this copy: a rebuild meanwhile cannot mix two versions in one report.
    let copy = work.join("tidewater");
    std::fs::copy(&opts.tidewater, &copy).map_err(BenchError::io(format!(
        "copying {}",
        opts.tidewater.display()
    )))?;
    let opts = Options {
        tidewater: copy,
        ..opts
    };
    let bench = Bench {
        opts,
        work,
        pg,
        my,
        bq,
        ids: Cell::new(0),
    };

    let mut report = Report {
        command: bench.opts.command.clone(),
        quick: bench.opts.quick,
        machine,
        figures: Vec::new(),
        failures: Vec::new(),
        methods: Vec::new(),
    };
    for &scenario in &bench.opts.scenarios {
        eprintln!("== {}", scenario.name());
        report
            .methods
            .push((scenario.name().into(), scenarios::method(&bench, scenario)));
        match scenarios::run(&bench, scenario) {
            Ok(figures) => {
                for f in &figures {
                    eprintln!("   {}: {}", f.measure, summary(f));
                }
                report.figures.extend(figures);
            }
            Err(e) => {
                eprintln!("   FAILED: {e}");
                report.failures.push(Failure {
                    scenario: scenario.name().into(),
                    error: e.to_string(),
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&bench.work);
    let (md, json) = report.write(&bench.opts.out_dir)?;
    eprintln!("wrote {} and {}", md.display(), json.display());
    Ok(report)
}

fn summary(f: &Figure) -> String {
    let mut s = report::number(f.tidewater, &f.unit);
    if let Some(b) = &f.baseline {
        s.push_str(&format!(
            " vs {} {}",
            report::number(b.value, &f.unit),
            b.tool
        ));
    }
    if let Some(r) = f.ratio {
        s.push_str(&format!(" = {r:.2}x"));
    }
    if let Some(met) = f.met {
        s.push_str(if met {
            " (target met)"
        } else {
            " (target NOT met)"
        });
    }
    s
}
