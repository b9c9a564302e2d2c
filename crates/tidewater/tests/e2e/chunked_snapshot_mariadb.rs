//! The chunked, lock-free initial snapshot on MariaDB (`tidewater_core::copy`, the source side
//! in `tidewater_mysql::stream::chunks`):
//!
//! - **Minimal grants.** A user holding only `REPLICATION SLAVE, BINLOG MONITOR` and `SELECT`
//!   (no RELOAD: no lock is ever taken) passes `tidewater check`, copies in chunks while a
//!   writer changes every table, and streams; the replica equals the source.
//! - **The race of rule 1.** MariaDB writes a transaction to the binlog before its InnoDB
//!   commit is visible. Semi-synchronous replication with `AFTER_SYNC` holds that window open:
//!   a committing transaction is in the binlog (the stream delivers it) and then waits for a
//!   replica's acknowledgement that never comes before it commits in InnoDB. A chunk read then
//!   with a plain position read (`@@gtid_binlog_pos`, which already includes it) would still
//!   show the deleted row; tidewater must wait until the delete is visible.
//! - **No long transactions**: while a table is copied no tidewater transaction stays open
//!   for long (`information_schema.innodb_trx`), so InnoDB purge is never held back by the copy.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::chunked_snapshot::{
    assert_copied_exactly, assert_same_rows, copy_while_writing, my_setup, transaction,
    with_chunk_rows, CHUNK_ROWS, RACE_ROWS,
};
use crate::common;
use common::{expect, run_cli, snapshot_rows_copied, streamed_changes, Rig, MY_DB};
use tidewater_harness::{wait_until, MariaDbOptions};

#[test]
fn mariadb_minimal_grants_check_copy_in_chunks_and_stream() {
    let setup = format!(
        "{}
CREATE USER 'tw'@'%' IDENTIFIED BY 'pw';
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'tw'@'%';
GRANT SELECT ON {MY_DB}.* TO 'tw'@'%';",
        my_setup()
    );
    let mut rig = Rig::mysql_with(&setup, MariaDbOptions::default(), |my| {
        my.url_as("tw", "pw", MY_DB)
    });
    with_chunk_rows(&rig, CHUNK_ROWS);
    let grants = rig.sql("SHOW GRANTS FOR 'tw'@'%'");
    assert!(
        !grants.contains("RELOAD") && !grants.contains("ALL PRIVILEGES"),
        "{grants}"
    );
    let out = expect(run_cli(&["check"], &rig.config), 0, &["privileges"]);
    assert!(!out.contains("FAIL") && !out.contains("RELOAD"), "{out}");
    let big = format!("{MY_DB}.big");
    copy_while_writing(&mut rig, transaction, &big);
    assert_copied_exactly(&rig, u64::MAX);
}

/// The held-open window (see the module doc): semi-synchronous replication waits after the
/// binlog is written and before InnoDB commits, for an acknowledgement no replica sends
/// (`wait_no_slave`). Turning it off releases the waiting commit.
#[test]
fn mariadb_chunk_waits_for_a_delivered_commit_to_become_visible() {
    let setup = format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);
INSERT INTO t SELECT seq, 'v' FROM seq_1_to_{RACE_ROWS};"
    );
    let mut rig = Rig::mysql(&setup);
    with_chunk_rows(&rig, CHUNK_ROWS);
    let addr = rig.listen_http();
    rig.start();
    let table = format!("{MY_DB}.t");
    let mut copied = 0;
    wait_until(Duration::from_secs(120), "the copy to start", || {
        copied = snapshot_rows_copied(&addr, &table);
        copied > 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    // A key well ahead of the copy.
    let key = copied + 100 * CHUNK_ROWS;
    let mut racer = hold_commit(&rig, &format!("DELETE FROM t WHERE id = {key}"));
    // The stream delivers the delete (it is in the binlog) ...
    wait_until(
        Duration::from_secs(60),
        "the delete to be delivered",
        || streamed_changes(&addr, &table) > 0,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    // ... while InnoDB does not show it. A chunk read now would still hold the row:
    // tidewater waits (and says so), or, wrongly, copies on past the key.
    let waiting = "waits for a transaction the stream delivered to become visible";
    let started = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the copy to wait for the delete, or to pass its key",
        || rig.log().contains(waiting) || snapshot_rows_copied(&addr, &table) > key,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let passed = snapshot_rows_copied(&addr, &table);
    release_commits(&rig, &mut racer);
    assert!(
        rig.log().contains(waiting) && passed <= key,
        "the copy read past key {key} ({passed} rows) while the delivered delete was not \
         visible, after {:?}\n{}",
        started.elapsed(),
        rig.log()
    );
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    assert_eq!(
        rig.count(&format!("SELECT count(*) FROM t WHERE id = {key}")),
        0
    );
    assert_same_rows(&rig, "SELECT concat_ws(',', id, v) FROM t");
}

/// Runs `sql` (one transaction, as root) so that it is written to the binlog, and so
/// delivered to the stream, but held before its InnoDB commit, invisible to every snapshot:
/// semi-synchronous replication with `AFTER_SYNC` waits there for an acknowledgement no
/// replica sends (`wait_no_slave`). Returns once it waits; `release_commits` lets it commit.
/// Every binlogged transaction commits the same way until then (`sql_log_bin = 0` does not).
fn hold_commit(rig: &Rig, sql: &str) -> std::process::Child {
    rig.sql(
        "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC;
SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON;
SET GLOBAL rpl_semi_sync_master_timeout = 600000;
SET GLOBAL rpl_semi_sync_master_enabled = ON;",
    );
    let racer = rig
        .my()
        .tool("mariadb")
        .args([&format!("--database={MY_DB}"), "-e", sql])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the held transaction");
    wait_until(
        Duration::from_secs(30),
        "the transaction to wait for a replica's acknowledgement",
        || {
            rig.sql(
                "SELECT count(*) FROM information_schema.processlist \
                 WHERE state LIKE '%semi-sync%'",
            )
            .trim()
                == "1"
        },
    )
    .unwrap_or_else(|e| panic!("{e}: the held transaction did not wait"));
    racer
}

/// Ends `hold_commit`: the held transaction commits in InnoDB.
fn release_commits(rig: &Rig, held: &mut std::process::Child) {
    rig.sql("SET GLOBAL rpl_semi_sync_master_enabled = OFF;");
    assert!(held.wait().unwrap().success());
}

/// The same race for a table that joins while streaming (`Stream::retry_unreplicated`): a
/// table the source user could not read is written in a transaction the stream delivers
/// (dropping that table's change, it is not replicated yet) but InnoDB does not show yet;
/// then `GRANT SELECT` lets the table join. Its copy must hold that transaction, else the
/// row is lost for good: the stream already passed it.
#[test]
fn mariadb_table_joining_after_grant_waits_for_a_delivered_commit() {
    let mut rig = Rig::mysql_with(
        "CREATE USER 'tw'@'%' IDENTIFIED BY 'pw';
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'tw'@'%';
         CREATE TABLE t (id int PRIMARY KEY);
         GRANT SELECT ON shop.t TO 'tw'@'%';
         CREATE TABLE hidden (id int PRIMARY KEY, v varchar(20));
         INSERT INTO t VALUES (1);
         INSERT INTO hidden VALUES (1, 'a');",
        MariaDbOptions::default(),
        |my| my.url_as("tw", "pw", MY_DB),
    );
    rig.start();
    rig.wait_caught_up(Duration::from_secs(90));
    let mut held = hold_commit(
        &rig,
        "BEGIN; INSERT INTO t VALUES (2); INSERT INTO hidden VALUES (2, 'held'); COMMIT;",
    );
    // Delivered: the replica's committed position includes the held transaction.
    rig.wait_caught_up(Duration::from_secs(60));
    // Not binlogged, so not held: the table becomes readable while the insert is invisible.
    rig.sql("SET SESSION sql_log_bin = 0; GRANT SELECT ON shop.hidden TO 'tw'@'%';");
    let waiting = "waits for a transaction the stream delivered to become visible";
    const JOINED: &str = "could not be replicated has joined the replica";
    wait_until(
        Duration::from_secs(60),
        "the join to wait for the held insert, or to copy without it",
        || rig.log().contains(waiting) || rig.log().contains(JOINED),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    release_commits(&rig, &mut held);
    wait_until(Duration::from_secs(60), "the table to join", || {
        rig.log().contains(JOINED)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    rig.wait_caught_up(Duration::from_secs(120));
    rig.stop();
    // Shown when the test fails (nextest keeps a passing test's output to itself).
    eprintln!("{}", rig.log());
    rig.assert_same("SELECT concat_ws('|', id, v) FROM hidden ORDER BY id");
    assert!(rig.log().contains(waiting));
}

/// While a table is copied, no tidewater transaction stays open long: each chunk is its own
/// short consistent-snapshot transaction. Measured with `SHOW ENGINE INNODB STATUS` (`ACTIVE
/// N sec` per open transaction, whole seconds): `information_schema.innodb_trx` keeps listing
/// a connection's committed read-only transaction as RUNNING with its old start time
/// (MariaDB 10.11) while the status says "not started", 0 read views. The samples must see
/// chunk transactions (so the measure can see them), and none may live long, absolutely or
/// against the whole copy.
#[test]
fn mariadb_chunked_copy_holds_no_long_transaction() {
    let rows = 400_000;
    let mut rig = Rig::mysql(&format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);
INSERT INTO t SELECT seq, md5(seq) FROM seq_1_to_{rows};"
    ));
    with_chunk_rows(&rig, 20_000);
    let addr = rig.listen_http();
    rig.start();
    let (mut longest, mut samples, mut seen) = (0u64, 0, 0);
    let started = Instant::now();
    wait_until(Duration::from_secs(600), "the copy to finish", || {
        let status = rig.sql("SHOW ENGINE INNODB STATUS");
        let active: Vec<u64> = status
            .split("ACTIVE ")
            .skip(1)
            .filter_map(|s| s.split(" sec").next()?.trim().parse().ok())
            .collect();
        seen += usize::from(!active.is_empty());
        longest = longest.max(active.into_iter().max().unwrap_or(0));
        samples += 1;
        rig.log().contains(common::COPY_FINISHED)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let copy = started.elapsed().as_secs_f64();
    eprintln!(
        "copy of {rows} rows took {copy:.1} s; longest source transaction seen {longest} s in \
         {samples} samples ({seen} saw one)"
    );
    assert!(
        samples >= 5 && seen > 0,
        "too few samples to judge ({samples}, {seen})"
    );
    assert!(
        longest < 10 && longest as f64 <= (copy / 4.0).max(1.0),
        "a source transaction stayed open {longest} s of the copy's {copy:.1} s"
    );
    // The source logs the copy finished when it marks it; the last gathered chunks commit
    // after that (a stop before drops them, to be read again at the next run).
    common::wait_replica_consistent(&rig, &addr);
    rig.stop();
    assert_eq!(rig.count("SELECT count(*) FROM t"), rows);
}
