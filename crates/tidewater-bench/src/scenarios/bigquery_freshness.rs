//! BigQuery freshness (issue 16): under a light steady pgbench load, the time from a
//! PostgreSQL commit to the row being visible in the BigQuery replica (the emulator), with
//! the sink's default `merge_interval_ms`. The freshness scenario's probe and [`measure`] do
//! the measuring; the probe rows are read back through the emulator's REST API, as a user's
//! client would read them.

use std::time::Duration;

use super::drain::drop_pg_slots;
use super::freshness::{
    load_method, measure, pgbench_db, Load, OwnHistogram, Replica, LATENCY_METHOD, PROBE_TABLE,
};
use crate::bigquery::Emulator;
use crate::error::Result;
use crate::report::{Figure, Target};
use crate::runner::{Apply, Tidewater};
use crate::Bench;

const SCENARIO: &str = "BigQuery freshness";
/// A probe row is committed this often.
const PROBE_EVERY: Duration = Duration::from_millis(150);
/// The emulator is asked this often (each query is a job of a Python process that also runs
/// tidewater's commits: a tighter loop would slow what it measures).
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The sink's default, left unset in the config.
const MERGE_INTERVAL_MS: u64 = 1000;
/// Issue 16: p99 under 3 s with the default mode.
const P99_TARGET_MS: f64 = 3000.0;

pub fn method(bench: &Bench) -> String {
    let sizes = &bench.opts.sizes;
    format!(
        "`pgbench -i -s {}` and the probe table, replicated into a dataset of the BigQuery emulator \
         (`[sink] type = \"bigquery\"`, `endpoint` = the emulator, `merge_interval_ms` left at its \
         default, {MERGE_INTERVAL_MS}: a batch commits when nothing more is queued, but no sooner than \
         that after the previous commit started). Once the snapshot is committed (phase `streaming` on \
         `/metrics`), {} (a light steady load: rate {}), and the bench asks the emulator every {} ms \
         through its REST API (`jobs.query`: `SELECT id, UNIX_MICROS(committed_at) FROM \
         <dataset>.public_{PROBE_TABLE} WHERE id > <last seen> ORDER BY id`); the polls share the \
         machine and the emulator with tidewater's commits. {LATENCY_METHOD}",
        sizes.pgbench_scale,
        load_method(sizes.bigquery_freshness_seconds, PROBE_EVERY),
        sizes.bigquery_freshness_rate,
        POLL_EVERY.as_millis(),
    )
}

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let sizes = &bench.opts.sizes;
    let emu = bench.emulator();
    let (id, db) = pgbench_db(bench, "bqfresh")?;
    let sink = emu.sink(db.name());
    let mut tw = bench.tidewater_into(&db, id, "bigquery", &sink, &Apply::default())?;
    tw.start()?;
    tw.wait_streaming(bench.timeout(sizes.pgbench_scale as u64 * 100_000))?;
    let rate = sizes.bigquery_freshness_rate;
    let load = Load {
        rate,
        seconds: sizes.bigquery_freshness_seconds,
        probe_every: PROBE_EVERY,
        poll_every: POLL_EVERY,
    };
    let own = OwnHistogram::start(&mut tw)?;
    let mut replica = Probes {
        table: emu.table(db.name(), &format!("public_{PROBE_TABLE}")),
        tw: &mut tw,
        emu,
    };
    let m = measure(&mut replica, &db, &load, &mut 0)?;
    let detail = format!(
        "{}; {}",
        m.describe(rate, &own.end(&mut tw)?, "BigQuery"),
        emu.version()
    );
    let at = format!("at {rate} tx/s, merge_interval_ms = {MERGE_INTERVAL_MS} (default)");
    let p99 = Target::AtMost { max: P99_TARGET_MS };
    let figures = m.figures(SCENARIO, &at, [None, Some(p99)], detail);
    tw.stop()?;
    drop_pg_slots(&db)?;
    Ok(figures)
}

/// The probe table's replica in the emulator, read while the tidewater writing it runs.
struct Probes<'a> {
    tw: &'a mut Tidewater,
    emu: &'a Emulator,
    /// Qualified and quoted.
    table: String,
}

impl Replica for Probes<'_> {
    fn probe_rows(&mut self, after: u64) -> Result<Vec<Vec<serde_json::Value>>> {
        self.tw.check_alive()?;
        self.emu.query(&format!(
            "SELECT id, UNIX_MICROS(committed_at) FROM {} WHERE id > {after} ORDER BY id",
            self.table
        ))
    }
}
