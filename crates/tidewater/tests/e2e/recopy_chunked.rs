//! Tables copied again, or joining, while streaming go through the chunked copy
//! (`tidewater_core::copy`, "Copies again"). Copied again, on both sources: `tidewater resnapshot` of a damaged replica while a
//! writer changes every table, with kill -9 during the re-copy. Afterwards the replica equals
//! the source, the last `_log` entry of every key is its row, every table is consistent
//! again, the re-copy resumed at its next chunk after each kill (the committed chunks count
//! the table's rows about once), and no source transaction stayed open long.

use std::time::Duration;

use crate::chunked_snapshot::{
    assert_copied_exactly, assert_copy_waits_for_delete, assert_same_rows, hold_invisible_delete,
    max_copied, my_setup, pg_setup, race_rig, release_delete, transaction, with_chunk_rows,
    CHUNK_ROWS, ROWS,
};
use crate::common;
use common::workload::Workload;
use common::{expect, run_cli, snapshot_rows_copied, Rig};
use tidewater_harness::wait_until;

/// Kills during the re-copy.
const KILLS: u64 = 2;

#[test]
fn pg_resnapshot_copies_in_chunks_under_writes_and_kill9() {
    resnapshot_in_chunks(Rig::new(&pg_setup()));
}

#[test]
fn mariadb_resnapshot_copies_in_chunks_under_writes_and_kill9() {
    resnapshot_in_chunks(Rig::mysql(&my_setup()));
}

/// How many times the run's log says the replica became consistent.
fn finished(rig: &Rig) -> usize {
    rig.log().matches(common::COPY_FINISHED).count()
}

fn resnapshot_in_chunks(mut rig: Rig) {
    let schema = rig.schema.clone();
    let big = format!("{schema}.big");
    with_chunk_rows(&rig, CHUNK_ROWS);
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    // The replica made wrong behind tidewater's back, in every table.
    let damage = tidewater_duckdb::duckdb::Connection::open(&rig.db).expect("open replica");
    damage
        .execute_batch(&format!(
            "DELETE FROM {schema}.big WHERE id <= 100; \
             UPDATE {schema}.big SET v = 'wrong' WHERE id BETWEEN 200 AND 300; \
             INSERT INTO {schema}.big VALUES (-1, 'extra', 0); \
             DELETE FROM {schema}.comp WHERE b <= 50; \
             DELETE FROM {schema}.bag WHERE a = 3; \
             INSERT INTO {schema}.bag VALUES (-1, 'extra');"
        ))
        .expect("damage the replica");
    drop(damage);
    let before = finished(&rig);
    let workload = Workload::start(&rig, transaction);
    rig.start();
    let glob = format!("{schema}.*");
    let mut asked = (0, String::new());
    wait_until(Duration::from_secs(60), "run to take the request", || {
        asked = run_cli(&["resnapshot", "--tables", &glob], &rig.config);
        !asked.1.contains("no `tidewater run` is running")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    expect(asked, 0, &["copying again while streaming"]);
    // A request is kept once its first transaction (the truncates and fresh progress of
    // every table asked for) commits: the replica is then no longer consistent.
    wait_until(Duration::from_secs(60), "the re-copy to start", || {
        common::http::http(&addr, "GET", "/metrics", None)
            .ok()
            .and_then(|m| common::http::metric(&m.body, "tidewater_replica_consistent"))
            == Some(0.0)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    for kill in 0..KILLS {
        // Mid-copy: this run has copied chunks of `big`, and the copy is not done.
        let mut copied = 0;
        wait_until(
            Duration::from_secs(120),
            "this run to copy chunks of big again",
            || {
                copied = snapshot_rows_copied(&addr, &big);
                copied >= 2 * CHUNK_ROWS || finished(&rig) > before
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
        assert_eq!(
            finished(&rig),
            before,
            "the re-copy finished before kill {kill}: make the table larger\n{}",
            rig.log()
        );
        assert_degraded_while_copying(&addr, &big);
        rig.kill9();
        eprintln!("kill {kill}: after this run copied {copied} rows of {big}");
        assert_kept_while_copying(&rig);
        rig.start();
    }
    wait_until(Duration::from_secs(300), "the re-copy to finish", || {
        finished(&rig) > before
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    common::wait_replica_consistent(&rig, &addr);
    let sent = workload.finish();
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    assert!(sent > 0);
    let log = rig.log();
    // Each table's re-copy began once: after a kill it resumed at its next chunk.
    assert_eq!(log.matches("copied again in chunks").count(), 3, "{log}");
    assert!(
        !log.contains("is copied again at a later position"),
        "a table took the single-transaction re-copy\n{log}"
    );
    // Equal, consistent again; the re-copy's chunks count each row of big once (after a
    // kill it resumed at its next chunk).
    assert_copied_exactly(&rig, max_copied(sent));
    let copies = rig
        .replica()
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%__tidewater_copy'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(copies, 0, "every copy table replaced its replica table");
}

/// Mid-copy, every table copied again fills its copy table while its replica table stays
/// whole: `/health` says degraded (200) and names them, where a half-copied replica says
/// "copy in progress" (503).
fn assert_degraded_while_copying(addr: &str, big: &str) {
    let health = common::http::http(addr, "GET", "/health", None).expect("GET /health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        health.body.starts_with("degraded: copying again: ") && health.body.contains(big),
        "{}",
        health.body
    );
}

/// While a table is copied again its replica table keeps the rows it had when the copy began
/// (the damage made by hand included), and the copy fills `big__tidewater_copy`, which
/// replaces it once consistent (read with the process killed mid-copy).
fn assert_kept_while_copying(rig: &Rig) {
    let conn = rig.replica();
    let count = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(
        count("SELECT count(*) FROM big WHERE id = -1"),
        1,
        "the replica table lost a row it held when the copy began"
    );
    let kept = count("SELECT count(*) FROM big");
    let copied = count("SELECT count(*) FROM big__tidewater_copy");
    assert!(
        kept as u64 >= ROWS / 2 && copied < kept,
        "replica table {kept} rows, copy table {copied}"
    );
}

/// A re-copy's first chunk must show the transactions the stream delivered before the copy
/// began, not only those delivered during it. A delete is held delivered but invisible (as in
/// `chunked_snapshot::pg_chunk_waits_for_a_delivered_commit_to_become_visible`: a
/// synchronous standby that never connects), applied to the replica, and then the table is
/// copied again: a chunk read while the delete is invisible would bring the deleted row back
/// into the replica after its delete, for good.
#[test]
fn pg_recopy_waits_for_a_commit_delivered_before_it() {
    let rows = 20 * CHUNK_ROWS;
    let key = rows / 4;
    let (mut rig, addr) = race_rig(rows);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(300));
    // A new run: its rows-copied counter starts at 0 for the re-copy.
    rig.stop();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(300));
    let before = finished(&rig);
    let racer = hold_invisible_delete(&rig, "t", key);
    // The stream delivers the delete and the replica applies it, while it stays invisible.
    wait_until(Duration::from_secs(60), "the delete to be applied", || {
        common::streamed_changes(&addr, "public.t") > 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    expect(
        run_cli(&["resnapshot", "--tables", "public.t"], &rig.config),
        0,
        &["copying again while streaming"],
    );
    assert_copy_waits_for_delete(&rig, &addr, key, racer);
    finish_without(&mut rig, &addr, before, "t", key);
}

/// A PostgreSQL table that joins (selected, not in the replica) is copied in chunks from the
/// moment it is published; its changes committed before that are only in its rows. A delete
/// of it that committed before it was published, but is not visible yet (its commit logged,
/// the backend waiting for a synchronous standby that never connects), must not be missed:
/// the first chunk waits until the transactions running when the table was published have
/// ended. Without that barrier the copy holds the deleted row, and nothing ever deletes it.
#[test]
fn pg_join_waits_for_a_commit_from_before_it_was_published() {
    let rows = 20 * CHUNK_ROWS;
    let key = rows / 4;
    let (mut rig, addr) = race_rig(10);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    rig.sql(&format!(
        "CREATE TABLE j (id bigint PRIMARY KEY, v text);
         INSERT INTO j SELECT g, 'v' FROM generate_series(1, {rows}) g;"
    ));
    let before = finished(&rig);
    let racer = hold_invisible_delete(&rig, "j", key);
    rig.start();
    let waiting = "waits for a transaction that was running when the table joined";
    wait_until(
        Duration::from_secs(120),
        "the join to wait for the delete, or to copy past its key",
        || rig.log().contains(waiting) || snapshot_rows_copied(&addr, "public.j") > key,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let passed = snapshot_rows_copied(&addr, "public.j");
    release_delete(&rig, racer);
    assert!(
        rig.log().contains(waiting) && passed <= key,
        "the join copied past key {key} ({passed} rows) while a delete committed before the \
         table was published was not visible\n{}",
        rig.log()
    );
    finish_without(&mut rig, &addr, before, "j", key);
}

/// Waits for the copy to finish (the log's `before`-th "every copy finished" passed, and
/// committed), stops, and checks that `table` equals the source, without the deleted `key`.
fn finish_without(rig: &mut Rig, addr: &str, before: usize, table: &str, key: u64) {
    wait_until(Duration::from_secs(120), "the copy to finish", || {
        finished(rig) > before
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    common::wait_replica_consistent(rig, addr);
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    assert_eq!(
        rig.count(&format!("SELECT count(*) FROM {table} WHERE id = {key}")),
        0
    );
    assert_same_rows(rig, &format!("SELECT id || ',' || v FROM {table}"));
}
