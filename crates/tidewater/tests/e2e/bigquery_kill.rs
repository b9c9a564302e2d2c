//! kill -9 during streaming into BigQuery, several times, from PostgreSQL and MariaDB, in the
//! emulator's strict mode (DML on a table with streamed rows is refused, as BigQuery does):
//! after the last restart the replica equals the source, the `_log` holds every change once,
//! and no statement was refused.

use crate::bigquery::{assert_same, CATCH_UP};
use crate::common;

use common::workload::Workload;
use common::Rig;

const KILLS: usize = 3;

/// New rows per workload transaction.
const INSERTS: u64 = 5;

// Each transaction is followed by a 50 ms pause of the client (pacing the source, not
// synchronising): about 100 changes/s, which the emulator on a busy 2-core machine keeps up
// with; the kills land within seconds of the workload's start.

/// Workload transaction `i`: `INSERTS` new rows from `rows(first, last)`, one seed row
/// updated, then the client's `pause`.
fn tx(i: u64, rows: fn(u64, u64, u64) -> String, pause: &str) -> String {
    let first = 1000 + i * INSERTS;
    format!(
        "BEGIN; INSERT INTO t {}; UPDATE t SET v = v + 1 WHERE id = {}; COMMIT; {pause};\n",
        rows(i, first, first + INSERTS - 1),
        1 + i % 100
    )
}

fn pg_tx(i: u64) -> String {
    let rows = |i, s, e| format!("SELECT g, {i}, 'w' FROM generate_series({s}, {e}) g");
    tx(i, rows, "SELECT pg_sleep(0.05)")
}

fn my_tx(i: u64) -> String {
    tx(
        i,
        |i, s, e| format!("SELECT seq, {i}, 'w' FROM seq_{s}_to_{e}"),
        "DO SLEEP(0.05)",
    )
}

/// Kills the run `KILLS` times mid-stream, then checks the replica and the exact `_log`
/// counts (`INSERTS` rows and one update per workload transaction).
fn kill9_mid_stream(mut rig: Rig, table: &str, bq_name: &str, tx: fn(u64) -> String) {
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    let workload = Workload::start(&rig, tx);
    rig.kill9_mid_stream_and_restart(&addr, table, KILLS, &workload);
    let sent = workload.finish() as i64;
    rig.wait_caught_up(CATCH_UP);
    // The commits' bytes processed are exported (the emulator bills nothing: 0).
    let metrics = common::http::http(&addr, "GET", "/metrics", None)
        .unwrap()
        .body;
    assert!(
        metrics.contains("\ntidewater_bigquery_bytes_processed_total ")
            && metrics.contains(&format!(
                "\ntidewater_bigquery_last_merge_bytes{{table=\"replica.{bq_name}\"}} "
            )),
        "{metrics}"
    );
    rig.stop();

    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT id, v, note FROM t ORDER BY id",
        &format!("SELECT id, v, note FROM {} ORDER BY id", bq.table(bq_name)),
    );
    let log = format!("{bq_name}_log");
    let kinds = bq.text_rows(&format!(
        "SELECT _metadata_change_type, COUNT(*) FROM {} GROUP BY 1 ORDER BY 1",
        bq.table(&log)
    ));
    let expected: Vec<Vec<String>> = [
        ("INSERT", sent * INSERTS as i64),
        ("SNAPSHOT", 100),
        ("UPDATE", sent),
    ]
    .iter()
    .map(|(k, n)| vec![k.to_string(), n.to_string()])
    .collect();
    assert_eq!(
        kinds, expected,
        "change-log rows per kind ({sent} transactions)"
    );
    let dups = bq.duplicated_log_rows(&log);
    assert!(dups.is_empty(), "{log} holds changes twice: {dups:?}");
    let strict = bq.strict_log();
    assert!(
        strict.violations.is_empty(),
        "DML on streamed rows: {:?}",
        strict.violations
    );
    assert!(
        strict.streamed_total() > 0,
        "the stream went through insertAll"
    );
}

#[test]
fn postgres_kill9_three_times_mid_stream_into_bigquery_loses_and_duplicates_nothing() {
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, v int, note text); \
         INSERT INTO t SELECT g, 0, 'seed' FROM generate_series(1, 100) g;",
    );
    rig.use_bigquery();
    kill9_mid_stream(rig, "public.t", "public_t", pg_tx);
}

#[test]
fn mariadb_kill9_three_times_mid_stream_into_bigquery_loses_and_duplicates_nothing() {
    let mut rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, v int, note text); \
         INSERT INTO t SELECT seq, 0, 'seed' FROM seq_1_to_100;",
    );
    rig.use_bigquery();
    kill9_mid_stream(rig, "shop.t", "shop_t", my_tx);
}
