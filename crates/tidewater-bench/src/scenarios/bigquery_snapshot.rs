//! BigQuery snapshot (issue 16): the initial snapshot of a PostgreSQL table into BigQuery (the
//! emulator; the sink loads snapshot rows through Parquet load jobs, then commits them into
//! the replica and its `_log`), beside the source client's CSV export loaded by one load job
//! of the emulator's own, and the longest source transaction tidewater held meanwhile.

use std::time::{Duration, Instant, SystemTime};

use super::drain::drop_pg_slots;
use super::snapshot::{fill, longest_tx_figure, TABLE};
use crate::bigquery::Emulator;
use crate::error::{BenchError, Result};
use crate::report::Figure;
use crate::runner::{unix_seconds, wait_for, Apply};
use crate::source::{Db, Kind};
use crate::source_tx::sample_while;
use crate::tools;
use crate::Bench;

const SCENARIO: &str = "BigQuery snapshot";
const BASELINE: &str = "psql \\copy CSV → one emulator load job";
/// The snapshot table's columns as the sink maps them (`numeric(12,2)` → `NUMERIC`,
/// `timestamp` → `DATETIME`).
const SCHEMA: [(&str, &str); 5] = [
    ("id", "INT64"),
    ("big", "INT64"),
    ("amount", "NUMERIC"),
    ("note", "STRING"),
    ("ts", "DATETIME"),
];

pub const METHOD: &str = "the snapshot scenario's table (`id int` primary key, `bigint`, \
    `numeric(12,2)`, `text`, `timestamp`) is filled at PostgreSQL, then tidewater's `run` into a fresh \
    dataset of the BigQuery emulator (default settings) is timed from its process start until its phase \
    turns `streaming` and `/metrics` reports the copy done and the replica consistent (polled every \
    20 ms: the BigQuery sink copies in chunks, each committed with its progress by a commit that \
    loads its rows, copies them into the `_log` and MERGEs them into the replica), and the replica's `COUNT(*)` is then read through the \
    emulator's REST API (`jobs.query`) and must be every row (if it is not yet, the time runs until it \
    is). Meanwhile PostgreSQL is asked every 100 ms how long tidewater's oldest open transaction has been \
    open (as in **snapshot**). Baseline, in the same run and emulator: `psql -c \"\\copy (SELECT * FROM \
    snap) TO STDOUT (FORMAT csv)\"` read whole into memory, then uploaded as one load job into a new table \
    of another dataset (`uploadType=multipart`, `sourceFormat: CSV` with the sink's column types; the \
    emulator runs the job inside the upload request and reads the first line of a CSV load as a header, \
    so one is prepended, with `skipLeadingRows: 1`), timed from the export's start to the job's answer, \
    and its `COUNT(*)` checked. The baseline writes one table; tidewater loads the staging table (Parquet \
    load jobs), then copies the rows into the `_log` and MERGEs them into the replica.";

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let rows = bench.opts.sizes.bigquery_snapshot_rows;
    let emu = bench.emulator();
    let (id, db) = bench.db(Kind::Postgres, "bqsnap")?;
    let filled = fill(&db, rows)?;
    let (exported, loaded) = csv_load_job(emu, &db, rows)?;
    // The emulator commits a large snapshot slowly (minutes for 200,000 rows on 2 cores).
    let timeout = Duration::from_secs(300) + bench.timeout(rows * 4);
    let sink = emu.sink(db.name());
    let mut tw = bench.tidewater_into(&db, id, "bigquery", &sink, &Apply::default())?;
    tw.start()?;
    let (committed, longest_tx) = sample_while(&db, || tw.wait_streaming(timeout));
    let (committed, longest_tx) = (committed?, longest_tx?);
    let replica = emu.table(db.name(), &format!("public_{TABLE}"));
    let mut held = emu.count(&replica)?;
    let seconds = if held == rows {
        committed
    } else {
        wait_for(timeout, &format!("{replica} to hold {rows} rows"), || {
            tw.check_alive()?;
            held = emu.count(&replica)?;
            Ok(held >= rows)
        })?;
        unix_seconds(SystemTime::now()) - tw.started()
    };
    let logged = emu.count(&emu.table(db.name(), &format!("public_{TABLE}_log")))?;
    let peak_rss_mib = tw.peak_rss_mib()?;
    tw.stop()?;
    drop_pg_slots(&db)?;
    if held != rows || logged != rows {
        return Err(BenchError::Tidewater(format!(
            "the BigQuery replica holds {held} rows and its _log {logged}, not {rows}"
        )));
    }
    let baseline = exported + loaded;
    let detail = format!(
        "{rows} rows (written at the source in {filled:.1} s); tidewater {seconds:.2} s from process \
         start until the replica held every row ({committed:.2} s until `streaming`), the `_log` \
         holds {logged} rows, peak RSS {peak_rss_mib:.0} MiB; baseline {baseline:.2} s ({exported:.2} s \
         export, {loaded:.2} s upload and load job); {}",
        emu.version()
    );
    Ok(vec![
        Figure::new(
            SCENARIO,
            "PostgreSQL table into replica + _log tables",
            "rows/s",
            rows as f64 / seconds,
        )
        .baseline(BASELINE, rows as f64 / baseline)
        .detail(detail),
        longest_tx_figure(SCENARIO, &longest_tx),
    ])
}

/// The baseline: the source client's CSV export, then one load job of it into a table of a
/// dataset of its own; returns the seconds of each step. The emulator must hold every row.
fn csv_load_job(emu: &Emulator, db: &Db, rows: u64) -> Result<(f64, f64)> {
    let dataset = format!("{}_baseline", db.name());
    emu.create_dataset(&dataset)?;
    let started = Instant::now();
    let csv = tools::output(&mut db.export_command(&format!("SELECT * FROM {TABLE}")))?;
    let exported = started.elapsed().as_secs_f64();
    emu.load_csv(&dataset, TABLE, &SCHEMA, csv.as_bytes())?;
    let loaded = started.elapsed().as_secs_f64() - exported;
    let count = emu.count(&emu.table(&dataset, TABLE))?;
    if count != rows {
        return Err(BenchError::Other(format!(
            "the emulator's load job loaded {count} rows, not {rows}"
        )));
    }
    eprintln!("   baseline: exported {rows} rows in {exported:.2} s, loaded in {loaded:.2} s");
    Ok((exported, loaded))
}
