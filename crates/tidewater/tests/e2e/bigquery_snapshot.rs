//! A 200,000-row snapshot into BigQuery (the emulator, strict mode) goes through load jobs,
//! never insertAll: asserted from the strict proxy's request log. The replica equals the
//! source and the `_log` has one SNAPSHOT row per source row. Prints the snapshot's rows/s
//! (docs/bigquery.md, "Snapshot through load jobs").

use crate::bigquery::assert_same;
use crate::common;

use std::time::{Duration, Instant};

use common::Rig;

const ROWS: i64 = 200_000;
/// The emulator's commit of 200,000 rows (log INSERT and MERGE) alone takes minutes on 2 cores.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(900);

/// The table of the measurement in docs/bigquery.md (before load jobs: 439 rows/s).
const SETUP: &str = "
CREATE TABLE big (id int PRIMARY KEY, name text, amount numeric(12,2), created timestamptz);
INSERT INTO big SELECT g, 'row ' || g, g * 0.01 - 7,
                       timestamptz '2024-01-01 00:00:00.5+00' + g * interval '1 second 7 microseconds'
                FROM generate_series(1, 200000) g;
";

#[test]
fn postgres_200k_row_snapshot_goes_through_load_jobs_never_insert_all() {
    let mut rig = Rig::new(SETUP);
    rig.use_bigquery();
    let started = Instant::now();
    rig.start();
    rig.wait_caught_up(SNAPSHOT_DEADLINE);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "BigQuery snapshot of {ROWS} rows (run start -> committed): {secs:.1} s, {:.0} rows/s",
        ROWS as f64 / secs
    );
    let bq = rig.bq();
    let strict = bq.strict_log();
    assert_eq!(
        strict.streamed_total(),
        0,
        "snapshot rows went through insertAll: {:?}",
        strict.streamed_rows
    );
    let loads = strict.load_jobs.get("public_big_staging").copied();
    assert!(loads.is_some_and(|n| n >= 1), "{:?}", strict.load_jobs);

    // The replica equals the source: aggregates over every row, and every 997th row whole.
    let (replica, log) = (bq.table("public_big"), bq.table("public_big_log"));
    assert_same(
        &rig,
        "SELECT count(*), count(DISTINCT id), sum(id), sum(amount), sum(length(name)), \
         sum((extract(epoch FROM created) * 1000000)::bigint) FROM big",
        &format!(
            "SELECT COUNT(*), COUNT(DISTINCT id), SUM(id), CAST(SUM(amount) AS STRING), \
             SUM(LENGTH(name)), SUM(UNIX_MICROS(created)) FROM {replica}"
        ),
    );
    assert_same(
        &rig,
        "SELECT id, name, amount, (extract(epoch FROM created) * 1000000)::bigint \
         FROM big WHERE id % 997 = 1 ORDER BY id",
        &format!(
            "SELECT id, name, CAST(amount AS STRING), UNIX_MICROS(created) \
             FROM {replica} WHERE MOD(id, 997) = 1 ORDER BY id"
        ),
    );
    let logged = bq.text_rows(&format!(
        "SELECT _metadata_change_type, COUNT(*), COUNT(DISTINCT id) FROM {log} \
         GROUP BY _metadata_change_type"
    ));
    let rows = ROWS.to_string();
    assert_eq!(
        logged,
        vec![vec!["SNAPSHOT".to_string(), rows.clone(), rows]]
    );
    rig.stop();
}
