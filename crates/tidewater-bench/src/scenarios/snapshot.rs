//! Initial snapshot (issue 6, item 3): a table of int, bigint, numeric, text
//! and timestamp columns copied into DuckDB, beside DuckDB itself loading the
//! source client's CSV export of it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::drain::drop_pg_slots;
use crate::error::{BenchError, Result};
use crate::report::{Figure, Target};
use crate::runner::Apply;
use crate::source::{Db, Kind, SNAPSHOT_COLUMNS};
use crate::tools;
use crate::Bench;

const TABLE: &str = "snap";
const TARGET: Target = Target::RatioAtLeast { min: 0.8 };
/// `O_NONBLOCK` (Linux): opening a FIFO's read end without waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

pub const METHOD: &str = "the table (`id int` primary key, `bigint`, `numeric(12,2)`, `text`, `timestamp`) \
    is filled at the source, then tidewater's `run` is timed from its process start until its phase turns \
    `streaming` with the copy complete (snapshot committed with its position; a build that copies in chunks \
    while streaming also reports every table's `tidewater_copy_done` 1 and `tidewater_replica_consistent` 1; \
    polled on `/metrics` every 20 ms) and the replica's \
    row count, polled through `POST /query`, holds every row. By default tidewater also writes every row to the `<table>_log` \
    change table; a second row shows `log_tables = false`. Baselines, each loading the same table into a DuckDB \
    file with the same libduckdb: (1) always, the source's own client exporting it as text (`psql -c \"\\copy \
    (SELECT * FROM snap) TO STDOUT (FORMAT csv)\"`, `mariadb -N -B --quick -e \"SELECT * FROM snap\"`) through a \
    FIFO into DuckDB's CSV reader (`CREATE TABLE snap AS SELECT * FROM read_csv(fifo, columns = {…})`), both \
    running at once like a shell pipe; (2) with `--duckdb-extensions DIR`, DuckDB's own `postgres_scanner` / \
    `mysql_scanner` (`ATTACH … (TYPE postgres|mysql)`, `CREATE TABLE snap AS SELECT * FROM src…snap`). The \
    scanners cannot be installed from DuckDB's extension repository here (not reachable); the PyPI packages \
    `duckdb-extension-postgres-scanner` / `-mysql-scanner` hold builds for DuckDB 1.5.5, which load into the \
    1.5.6 linked here with `allow_extensions_metadata_mismatch`. No baseline builds a primary key index or a \
    log table.";

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for kind in [Kind::Postgres, Kind::MariaDb] {
        figures.extend(snapshot(bench, kind)?);
    }
    Ok(figures)
}

fn snapshot(bench: &Bench, kind: Kind) -> Result<Vec<Figure>> {
    let rows = bench.opts.sizes.snapshot_rows;
    let (id, db) = bench.db(kind, "snapshot")?;
    let started = Instant::now();
    db.sql(&db.create_snapshot_table(TABLE, rows))?;
    let load_seconds = started.elapsed().as_secs_f64();
    let dir = bench.dir(&format!("{}-baseline", db.name()))?;
    let csv_tool = match kind {
        Kind::Postgres => "psql \\copy CSV → DuckDB read_csv",
        Kind::MariaDb => "mariadb -B → DuckDB read_csv",
    };
    let mut baselines = vec![(csv_tool.to_string(), csv_into_duckdb(&db, &dir, rows)?)];
    if let Some(ext) = &bench.opts.duckdb_extensions {
        baselines.push(scanner_copy(ext, &db, &dir, rows)?);
    }
    let scenario = match kind {
        Kind::Postgres => "PostgreSQL snapshot",
        Kind::MariaDb => "MariaDB snapshot",
    };
    let mut variants = vec![("into replica + _log tables (default)", true)];
    if bench.opts.sizes.snapshot_without_log {
        variants.push(("into replica only (log_tables = false)", false));
    }
    let mut figures = Vec::new();
    for (measure, log_tables) in variants {
        let apply = Apply {
            log_tables: Some(log_tables),
            ..Apply::default()
        };
        let mut tw = bench.tidewater(&db, id, if log_tables { "logs" } else { "nolog" }, &apply)?;
        tw.start()?;
        tw.wait_streaming(bench.timeout(rows))?;
        let table = format!("{}.{TABLE}", db.schema());
        let (copied, seconds) = tw.wait_rows(&table, rows, bench.timeout(rows))?;
        let peak = tw.peak_rss_mib()?;
        tw.stop()?;
        drop_pg_slots(&db)?;
        if copied != rows {
            return Err(BenchError::Tidewater(format!(
                "snapshot holds {copied} rows, not {rows}"
            )));
        }
        for (tool, baseline_seconds) in &baselines {
            figures.push(
                Figure::new(scenario, measure, "rows/s", rows as f64 / seconds)
                    .baseline(tool, rows as f64 / baseline_seconds)
                    .target(TARGET)
                    .detail(format!(
                        "{rows} rows (written at the source in {load_seconds:.1} s); tidewater {seconds:.2} s \
                         from process start, peak RSS {peak:.0} MiB; baseline {baseline_seconds:.2} s"
                    )),
            );
        }
    }
    Ok(figures)
}

/// The source client's text export piped (FIFO) into DuckDB's CSV reader; returns the seconds taken.
fn csv_into_duckdb(db: &Db, dir: &Path, rows: u64) -> Result<f64> {
    let fifo = dir.join("export.fifo");
    tools::output(Command::new("mkfifo").arg(&fifo))?;
    let duck = duckdb::Connection::open(dir.join("baseline.duckdb"))?;
    let sql = format!(
        "CREATE TABLE {TABLE} AS SELECT * FROM read_csv('{}', {}, columns = {SNAPSHOT_COLUMNS})",
        fifo.display(),
        db.csv_options()
    );
    let mut export = db.export_command(&format!("SELECT * FROM {TABLE}"));
    let started = Instant::now();
    let writer_fifo = fifo.clone();
    let writer = std::thread::spawn(move || -> Result<()> {
        // Blocks until DuckDB opens the read end.
        let out =
            File::create(&writer_fifo).map_err(BenchError::io("opening the FIFO for writing"))?;
        export.stdout(out);
        let child = tools::spawn(&mut export)?;
        tools::finish(child, &export)
    });
    let loaded = duck.execute_batch(&sql);
    if loaded.is_err() {
        // Release a writer still waiting for a reader, so the join below returns.
        let _ = OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo);
    }
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(BenchError::Other("the export thread panicked".into())));
    let seconds = started.elapsed().as_secs_f64();
    loaded?;
    written?;
    let count: u64 = duck.query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |r| r.get(0))?;
    if count != rows {
        return Err(BenchError::Other(format!(
            "the DuckDB baseline loaded {count} rows, not {rows}"
        )));
    }
    Ok(seconds)
}

/// DuckDB's own scanner extension copying the table (`CREATE TABLE AS SELECT` from the
/// attached source); returns the tool's name and the seconds taken.
fn scanner_copy(ext_dir: &Path, db: &Db, dir: &Path, rows: u64) -> Result<(String, f64)> {
    let (extension, attach, table) = match db {
        Db::Pg { .. } => (
            "postgres_scanner",
            format!("'{}' AS src (TYPE postgres, READ_ONLY)", db.url()),
            format!("src.public.{TABLE}"),
        ),
        Db::My { server, name } => (
            "mysql_scanner",
            format!(
                "'host=127.0.0.1 port={} user=root database={name}' AS src (TYPE mysql, READ_ONLY)",
                server.port()
            ),
            format!("src.{TABLE}"),
        ),
    };
    let file = ext_dir.join(format!("{extension}.duckdb_extension"));
    // The builds on PyPI may be for another DuckDB patch release than the one linked here.
    let config = duckdb::Config::default()
        .with("allow_extensions_metadata_mismatch", "true")?
        .with("allow_unsigned_extensions", "true")?;
    let duck = duckdb::Connection::open_with_flags(dir.join("scanner.duckdb"), config)?;
    duck.execute_batch(&format!("LOAD '{}'; ATTACH {attach};", file.display()))?;
    let started = Instant::now();
    duck.execute_batch(&format!("CREATE TABLE {TABLE} AS SELECT * FROM {table}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let count: u64 = duck.query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |r| r.get(0))?;
    if count != rows {
        return Err(BenchError::Other(format!(
            "{extension} copied {count} rows, not {rows}"
        )));
    }
    Ok((format!("DuckDB {extension} CREATE TABLE AS"), seconds))
}
