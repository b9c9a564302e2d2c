//! Initial snapshot (issue 6, item 3; issue 15): a table of int, bigint, numeric, text
//! and timestamp columns copied into DuckDB by the chunked copy, beside DuckDB itself loading
//! the source client's CSV export of it, and the longest source transaction tidewater held
//! meanwhile. [`copy`] is also what the memory scenario measures snapshots with; [`fill`] and
//! [`longest_tx_figure`] serve the BigQuery snapshot too.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

use super::drain::{drop_pg_slots, wait_caught_up, Target as LogEnd};
use crate::error::{BenchError, Result};
use crate::report::{Figure, Target};
use crate::runner::{unix_seconds, Apply};
use crate::source::{Db, Kind, SNAPSHOT_COLUMNS, WRITER_MOVED};
use crate::source_tx::{sample_while, TxAges};
use crate::tools;
use crate::writer::Writer;
use crate::Bench;

pub const TABLE: &str = "snap";
const TARGET: Target = Target::RatioAtLeast { min: 0.8 };
/// Issue 15: no tidewater session holds a source transaction open longer than this.
const LONGEST_TX_SECONDS: f64 = 10.0;
/// `O_NONBLOCK` (Linux): opening a FIFO's read end without waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

pub const METHOD: &str = "the table (`id int` primary key, `bigint`, `numeric(12,2)`, `text`, `timestamp`) \
    is filled at the source, then tidewater's `run` is timed from its process start until its phase turns \
    `streaming` (the chunked copy, `[snapshot] chunk_rows` rows per chunk, is done and the stream has passed its \
    last chunk: the replica is transaction-consistent; polled on `/metrics` every 20 ms), and the replica's \
    row count and the chunks recorded in `_tidewater.copies` are checked through `POST /query`. Meanwhile the \
    source is asked every 100 ms how long tidewater's oldest open transaction has been open (PostgreSQL: \
    `clock_timestamp() - xact_start` of its sessions in `pg_stat_activity`; MariaDB: `ACTIVE N sec` in `SHOW \
    ENGINE INNODB STATUS`, whole seconds); the longest seen is reported. By default tidewater also writes every row to the `<table>_log` \
    change table; a second row shows `log_tables = false`. A third run copies the table while a writer \
    changes it: the source's own client runs transactions of an update, a delete, an insert of a new key \
    and a key change on random keys (of ranges already copied and still to copy), each followed by a 5 ms \
    pause, from before tidewater starts until the copy is consistent; then tidewater catches up with the \
    source and `tidewater verify` must find the replica equal (shown against the same baseline, which \
    copies the table unchanged). Baselines, each loading the same table into a DuckDB \
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
    let load_seconds = fill(&db, rows)?;
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
        let run = if log_tables { "logs" } else { "nolog" };
        let c = copy(bench, &db, id, run, &apply, rows, None)?;
        for (tool, baseline_seconds) in &baselines {
            figures.push(
                Figure::new(scenario, measure, "rows/s", rows as f64 / c.seconds)
                    .baseline(tool, rows as f64 / baseline_seconds)
                    .target(TARGET)
                    .detail(format!(
                        "{rows} rows (written at the source in {load_seconds:.1} s); {}; baseline \
                         {baseline_seconds:.2} s",
                        c.describe()
                    )),
            );
        }
        if log_tables {
            figures.push(longest_tx_figure(scenario, &c.longest_tx));
        }
    }
    // Last: the writer changes the table.
    let writer = Writer::start(&db, TABLE, rows, WRITER_PAUSE_MS)?;
    let c = copy(
        bench,
        &db,
        id,
        "writer",
        &Apply::default(),
        rows,
        Some(writer),
    )?;
    let (tool, baseline_seconds) = &baselines[0];
    figures.push(
        Figure::new(scenario, WRITER_MEASURE, "rows/s", rows as f64 / c.seconds)
            .baseline(tool, rows as f64 / baseline_seconds)
            .detail(format!("{rows} rows at the start; {}", c.describe())),
    );
    Ok(figures)
}

/// Milliseconds the writer pauses after each transaction.
const WRITER_PAUSE_MS: u32 = 5;
const WRITER_MEASURE: &str =
    "into replica + _log tables, while a writer changes the table (then `verify` equal)";

/// The longest source transaction tidewater held during a copy, against issue 15's bound.
pub fn longest_tx_figure(scenario: &str, ages: &TxAges) -> Figure {
    Figure::new(
        scenario,
        "longest source transaction held during the copy",
        "s",
        ages.longest,
    )
    .target(Target::AtMost {
        max: LONGEST_TX_SECONDS,
    })
    .detail(ages.describe())
}

/// Creates and fills the snapshot table with `rows` rows; returns the seconds it took.
pub fn fill(db: &Db, rows: u64) -> Result<f64> {
    let started = Instant::now();
    db.sql(&db.create_snapshot_table(TABLE, rows))?;
    Ok(started.elapsed().as_secs_f64())
}

/// One timed initial copy of the snapshot table by tidewater.
pub struct Copied {
    /// From process start until the replica is transaction-consistent.
    pub seconds: f64,
    /// From process start until every chunk is committed (`tidewater_copy_done`); the rest
    /// is the wait for the stream to pass the last chunk's horizon.
    pub copied_seconds: f64,
    pub peak_rss_mib: f64,
    /// Chunks and rows of the copy, as committed in the replica's `_tidewater.copies`.
    pub chunks: u64,
    pub rows_copied: u64,
    pub longest_tx: TxAges,
    /// Under a writer: its transactions committed, the seconds they took, and `verify`'s.
    pub writes: Option<(u64, f64, f64)>,
}

impl Copied {
    pub fn describe(&self) -> String {
        let copied = format!(
            "tidewater {:.2} s from process start until consistent ({:.2} s until every chunk was \
             committed), {} chunks ({} rows read), peak RSS {:.0} MiB",
            self.seconds, self.copied_seconds, self.chunks, self.rows_copied, self.peak_rss_mib
        );
        match self.writes {
            None => copied,
            Some((txs, seconds, verified)) => format!(
                "{copied}; meanwhile the writer committed {txs} transactions ({:.0}/s; each an \
                 update, a delete, an insert and a key change on random keys); once caught up, \
                 `tidewater verify` found the replica equal ({verified:.2} s)",
                txs as f64 / seconds.max(1e-9)
            ),
        }
    }
}

/// Copies `db`'s snapshot table (`rows` rows) with a fresh tidewater (`run` names its
/// directory) and measures it; the replica must hold every row, copied in chunks. With a
/// `writer` (writing since before the start), the writer is stopped once the copy is
/// consistent, and the replica, caught up, must verify equal instead.
pub fn copy(
    bench: &Bench,
    db: &Db,
    id: u32,
    run: &str,
    apply: &Apply,
    rows: u64,
    writer: Option<Writer>,
) -> Result<Copied> {
    let writing = Instant::now();
    let mut tw = bench.tidewater(db, id, run, apply)?;
    tw.start()?;
    let timeout = bench.timeout(rows);
    let (waited, longest_tx) = sample_while(db, || {
        tw.wait_metrics(timeout, "every chunk to be committed", |m| {
            let done: Vec<&str> =
                m.0.lines()
                    .filter(|l| l.starts_with("tidewater_copy_done{"))
                    .collect();
            !done.is_empty() && done.iter().all(|l| l.ends_with(" 1"))
        })?;
        let copied = unix_seconds(SystemTime::now()) - tw.started();
        Ok::<_, BenchError>((tw.wait_streaming(timeout)?, copied))
    });
    let (seconds, copied_seconds) = waited?;
    // The copy's peak: read once it is consistent, before a writer's catch-up and the idle
    // checkpoint that follows the copy (VmHWM only grows).
    let peak_rss_mib = tw.peak_rss_mib()?;
    let longest_tx = longest_tx?;
    let table = format!("{}.{TABLE}", db.schema());
    let (copied, seconds, written) = match writer {
        None => {
            // An older build reports its copy done before the batch of its last chunk commits.
            let (copied, at_rows) = tw.wait_rows(&table, rows, timeout)?;
            (copied, seconds.max(at_rows), None)
        }
        Some(writer) => {
            writer.stop()?;
            let took = writing.elapsed().as_secs_f64();
            wait_caught_up(&mut tw, db, &LogEnd::now(db)?, timeout)?;
            let txs = db.sql(&format!(
                "SELECT count(*) FROM {TABLE} WHERE id > {rows} AND id <= {};",
                rows + WRITER_MOVED
            ))?;
            (rows, seconds, Some((txs.trim().parse().unwrap_or(0), took)))
        }
    };
    let progress = tw.query(
        "SELECT sum(chunks)::BIGINT, sum(rows_copied)::BIGINT FROM _tidewater.copies",
        1,
    )?;
    let number = |i: usize| {
        progress
            .first()
            .and_then(|r| r.get(i))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let (chunks, rows_copied) = (number(0), number(1));
    tw.stop()?;
    let writes = match written {
        Some((txs, took)) => Some((txs, took, tw.verify()?.as_secs_f64())),
        None => None,
    };
    drop_pg_slots(db)?;
    if copied != rows {
        return Err(BenchError::Tidewater(format!(
            "snapshot holds {copied} rows, not {rows}"
        )));
    }
    if chunks == 0 {
        return Err(BenchError::Tidewater(
            "the replica records no chunk: the copy did not take the chunked path".into(),
        ));
    }
    let copy = Copied {
        seconds,
        copied_seconds,
        peak_rss_mib,
        chunks,
        rows_copied,
        longest_tx,
        writes,
    };
    eprintln!(
        "   copied {rows} rows ({run}): {}; longest source transaction {:.2} s ({})",
        copy.describe(),
        copy.longest_tx.longest,
        copy.longest_tx.describe()
    );
    Ok(copy)
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
