//! The position guard and slot ownership, end to end: a replica never resumes past a gap in
//! its stream (the source discarded changes it never stored), a second replica never takes a
//! slot another one depends on, and the ordinary restarts still resume.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{expect, run_cli, Rig, SLOT};
use tidewater_duckdb::duckdb::Connection;

const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 20) g;";
const ROWS: &str = "SELECT concat_ws('|', id, v) FROM t ORDER BY id";

/// The rig's config with the replica in `file` instead (same source, same slot).
fn other_replica(rig: &Rig, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let path = rig.dir.path().join(format!("{file}.toml"));
    std::fs::write(&path, text.replace("replica.duckdb", file)).unwrap();
    path
}

fn slot_confirmed(rig: &Rig) -> String {
    rig.confirmed_flush_lsn()
}

/// Writes what the `.wal` holds into the main file (tidewater must be stopped), so that a
/// later `.wal` loses only what comes after this point.
fn checkpoint(rig: &Rig) {
    let conn = Connection::open(&rig.db).expect("open replica");
    conn.execute_batch("CHECKPOINT").unwrap();
}

/// The position the replica has committed (tidewater must be stopped).
fn stored_position(rig: &Rig) -> String {
    rig.replica_lines("SELECT position FROM _tidewater.pipeline")
        .pop()
        .expect("a committed position")
}

#[test]
fn a_second_replica_on_the_same_slot_is_refused_and_the_first_resumes() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    let confirmed = slot_confirmed(&rig);

    // Another config, another DuckDB file, the same slot: refused before anything changes.
    let second = other_replica(&rig, "second.duckdb");
    expect(
        run_cli(&["run"], &second),
        3,
        &[
            &format!("replication slot {SLOT} belongs to another replica"),
            "source.slot",
            "pg_drop_replication_slot",
        ],
    );
    assert_eq!(slot_confirmed(&rig), confirmed, "the slot was not replaced");

    // The first replica resumes and misses nothing.
    rig.sql("INSERT INTO t VALUES (21, 'after the second replica'); UPDATE t SET v = 'changed' WHERE id = 1;");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same(ROWS);
}

#[test]
fn a_slot_recreated_behind_a_stopped_replica_is_refused_with_both_positions() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    let stored = stored_position(&rig);

    // What an older tidewater did with the same slot in another config, or a user by hand:
    // the slot is recreated, and the changes before it are gone from the stream.
    rig.sql(&format!("SELECT pg_drop_replication_slot('{SLOT}')"));
    rig.sql("INSERT INTO t VALUES (21, 'lost with the old slot')");
    rig.sql(&format!(
        "SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')"
    ));
    rig.sql("INSERT INTO t VALUES (22, 'after the new slot')");
    let confirmed = slot_confirmed(&rig);

    expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            &format!("confirmed_flush_lsn {confirmed}"),
            &format!("position {stored}"),
            "move the DuckDB file",
            "new snapshot",
        ],
    );
    // Nothing was applied past the gap.
    assert_eq!(rig.count("SELECT count(*) FROM t"), 20);
}

#[test]
fn a_wal_deleted_after_kill_9_is_refused_then_a_new_snapshot_recovers() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    checkpoint(&rig);
    let stored = stored_position(&rig);

    // Changes committed (and confirmed to the slot) only in the .wal, then a crash.
    rig.start();
    rig.sql("INSERT INTO t SELECT g, 'streamed ' || g FROM generate_series(21, 40) g; UPDATE t SET v = 'changed' WHERE id <= 5; DELETE FROM t WHERE id BETWEEN 6 AND 10;");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.kill9();
    let wal = rig.db.with_extension("duckdb.wal");
    assert!(wal.exists(), "the crash left a .wal");
    std::fs::remove_file(&wal).unwrap();
    let confirmed = slot_confirmed(&rig);

    expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            &format!("confirmed_flush_lsn {confirmed}"),
            &format!("position {stored}"),
            ".wal",
            "move the DuckDB file",
        ],
    );
    // The refused replica is still the older one, not a mix.
    assert_eq!(rig.count("SELECT count(*) FROM t"), 20);

    // The fix it names: a new snapshot into a new file takes the slot over.
    std::fs::rename(&rig.db, rig.dir.path().join("old.duckdb")).unwrap();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same(ROWS);
}

#[test]
fn restarts_clean_and_after_kill_9_resume_without_a_refusal() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    // Quiet source: idle positions are stored before the slot is told.
    rig.start();
    rig.sql("INSERT INTO t VALUES (21, 'a')");
    rig.wait_caught_up(Duration::from_secs(60));
    // WAL of a table not replicated: the slot moves past the last commit by idle positions.
    rig.sql("CREATE SCHEMA other; CREATE TABLE other.x (x int); INSERT INTO other.x VALUES (1);");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.kill9();
    rig.start();
    rig.sql("INSERT INTO t VALUES (22, 'b')");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    assert!(
        !rig.log().contains("past what this replica has stored"),
        "{}",
        rig.log()
    );
    rig.assert_same(ROWS);
}

#[test]
fn mariadb_transactions_purged_while_stopped_are_refused() {
    let mut rig =
        Rig::mysql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1);");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    let stored = stored_position(&rig);

    // While stopped: transactions in a replication domain the replica has not seen, then
    // their binlog is purged. (MariaDB refuses too, error 1236, once the stream starts; the
    // guard refuses first and names what is gone.)
    rig.sql(
        "SET SESSION gtid_domain_id = 9; INSERT INTO t VALUES (2, 2); INSERT INTO t VALUES (3, 3);",
    );
    rig.purge_binlogs();
    rig.sql("INSERT INTO t VALUES (4, 4)");
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            "purged binlogs",
            &format!("replica is at {stored}"),
            "9-1-",
            "take a new snapshot",
        ],
    );
    assert_eq!(rig.count("SELECT count(*) FROM t"), 1);
}

#[test]
fn mariadb_restarts_and_a_lost_wal_resume_by_replay() {
    let mut rig =
        Rig::mysql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1);");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    checkpoint(&rig);
    rig.start();
    rig.sql("INSERT INTO t VALUES (2, 2); UPDATE t SET v = 10 WHERE id = 1;");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.kill9();
    // No slot moved on: the binlog still holds everything after the older position.
    std::fs::remove_file(rig.db.with_extension("duckdb.wal")).unwrap();
    rig.start();
    rig.sql("INSERT INTO t VALUES (3, 3)");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
}

/// After `kill -9` the killed run's walsender holds the slot until it notices that nobody
/// reads (a failed send, or `wal_sender_timeout`): the next run waits for it instead of
/// refusing the slot as in use by another process. Here the walsender is stopped (SIGSTOP)
/// before the kill, so it cannot notice until it is continued.
#[test]
fn a_restart_after_kill_9_waits_for_the_killed_runs_walsender() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    let walsender = rig
        .sql(&format!(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .trim()
        .to_string();
    assert!(!walsender.is_empty(), "the slot has no walsender");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &walsender])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {walsender}");
    };
    signal("-STOP");
    rig.kill9();
    rig.sql(
        "INSERT INTO t VALUES (21, 'after the kill'); UPDATE t SET v = 'changed' WHERE id = 1;",
    );
    rig.start();
    rig.wait_logged(
        "the replication slot is still held by a walsender",
        1,
        Duration::from_secs(60),
    );
    signal("-CONT");
    rig.wait_caught_up(Duration::from_secs(120));
    rig.stop();
    rig.assert_same(ROWS);
}
