//! PostgreSQL partitions detached, dropped, or attached with rows take rows out of their
//! partitioned table or bring rows into it with no row changes in the WAL: the table is
//! copied again (`tidewater-postgres/src/stream/partitions.rs`), whether the change is seen
//! by the running poll or made while tidewater was stopped (the leaves the replica reflects
//! are recorded with it, and the next start compares). A partition created empty brings no
//! rows and costs no copy. Each case left a replica that silently differed before its fix.

use std::time::Duration;

use crate::common::Rig;
use crate::observe_support::get;
use crate::selection::{
    changed_while_running, changed_while_stopped, live_lines, rows_of, wait_equal_then_stop,
};

const T: Duration = Duration::from_secs(120);

const SETUP: &str = "CREATE TABLE a (id int PRIMARY KEY, v text); \
     CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id); \
     CREATE TABLE p0 PARTITION OF p FOR VALUES FROM (0) TO (10); \
     CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (10) TO (100); \
     INSERT INTO p VALUES (1, 'p0'), (2, 'p0'), (50, 'p1'), (60, 'p1'); \
     CREATE SCHEMA other; \
     CREATE TABLE other.x (id int PRIMARY KEY, v text); INSERT INTO other.x VALUES (150, 'x');";

/// What the stopped run misses: a row of `p0` updated (a change the start replays, committed
/// before the detach: applied, it would bring the row back), `p0` detached with its rows, `x`
/// attached with its row (`x` is not selected: a replicated table attached as a partition
/// while stopped is a held table left out, which the start refuses until it is forgotten).
const DETACH_ATTACH: &str = "UPDATE p SET v = 'updated' WHERE id = 1; \
     ALTER TABLE p DETACH PARTITION p0; \
     ALTER TABLE p ATTACH PARTITION other.x FOR VALUES FROM (100) TO (200); \
     INSERT INTO a VALUES (1, 'x');";

/// Logged when a table is copied again for its partitions.
const COPIED_AGAIN: &str = "partitions were detached, dropped, truncated, or attached with rows";
/// Logged when a table is copied again in chunks (short source transactions); the copy in one
/// source transaction at a new slot's snapshot logs `ONE_TRANSACTION` instead.
const IN_CHUNKS: &str = "the table is copied again in chunks while streaming";
const ONE_TRANSACTION: &str = "the table is copied again at a later position";

#[test]
fn postgres_partitions_detached_and_attached_copy_the_table_again() {
    changed_while_running(Rig::new(SETUP), DETACH_ATTACH, &["a", "p"]);
}

/// A partition truncated on its own: not published (the publication publishes via the root),
/// seen by its new storage.
#[test]
fn postgres_partition_truncated_copies_the_table_again() {
    changed_while_running(
        Rig::new(SETUP),
        "TRUNCATE p1; INSERT INTO a VALUES (1, 'x');",
        &["a", "p"],
    );
}

#[test]
fn postgres_partitions_changed_while_stopped_copy_the_table_again() {
    let log = changed_while_stopped(Rig::new(SETUP), DETACH_ATTACH, &["a", "p"]);
    assert!(log.contains(COPIED_AGAIN), "{log}");
    // In chunks, once the replay has passed the detach: its update of the detached row,
    // replayed, is applied before the copy's truncate (the replica's equality above).
    assert!(
        log.contains(IN_CHUNKS) && !log.contains(ONE_TRANSACTION),
        "{log}"
    );
}

/// The leaf OIDs recorded for `p` in the running replica.
fn recorded_leaves(addr: &str) -> Vec<String> {
    let sql = "SELECT layout FROM _tidewater.tables WHERE table_name = 'p'";
    let layout = live_lines(addr, sql).pop().unwrap_or_default();
    layout
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Partitions created empty, while running and while stopped, bring no rows: their later
/// rows stream, and nothing is copied again, at the poll or at the next start (the new leaf
/// is recorded once seen). (A new partition that already holds rows when it is first seen
/// may have been attached with them: its table is copied, needlessly if they streamed.)
#[test]
fn postgres_partitions_created_empty_are_not_copied() {
    let mut rig = Rig::new(SETUP);
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    let leaves_recorded = |rig: &Rig, n: usize| {
        tidewater_harness::wait_until(T, &format!("{n} leaves of p recorded"), || {
            recorded_leaves(&addr).len() == n
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    };
    leaves_recorded(&rig, 2);
    rig.sql("CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (200) TO (300);");
    leaves_recorded(&rig, 3);
    rig.sql("INSERT INTO p VALUES (201, 'p2');");
    rig.wait_caught_up(T);
    rig.stop();
    rig.sql("CREATE TABLE p3 PARTITION OF p FOR VALUES FROM (300) TO (400);");
    rig.start();
    rig.wait_caught_up(T);
    leaves_recorded(&rig, 4);
    rig.sql("INSERT INTO p VALUES (301, 'p3'); INSERT INTO a VALUES (1, 'x');");
    rig.wait_caught_up(T);
    let log = wait_equal_then_stop(&mut rig, &addr, &["a", "p"]);
    assert!(!log.contains(COPIED_AGAIN), "{log}");
}

/// The same on BigQuery, whose layouts are kept in `_tidewater_layouts`.
#[test]
fn postgres_partitions_changed_while_stopped_on_bigquery() {
    let mut rig = Rig::new(SETUP);
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(T);
    let layouts = rig.bq().table("_tidewater_layouts");
    tidewater_harness::wait_until(T, "p's leaves recorded", || {
        rig.bq()
            .try_rows(&format!("SELECT layout FROM {layouts}"))
            .is_ok_and(|rows| !rows.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    rig.stop();
    rig.sql(DETACH_ATTACH);
    rig.start();
    let replica = rig.bq().table("public_p");
    let sql = format!("SELECT CONCAT(CAST(id AS STRING), ':', v) FROM {replica} ORDER BY id");
    let source = rig.source_lines(&rows_of("p"));
    let r = tidewater_harness::wait_until(T, "p to equal the source", || {
        let rows = rig.bq().text_rows(&sql);
        rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>() == source
    });
    let log = rig.log();
    rig.stop();
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains(COPIED_AGAIN), "{log}");
}

/// Row changes of a partitioned table stream under the table itself (PostgreSQL publishes a
/// partition's changes as the partition's own unless the publication says
/// `publish_via_partition_root`), a row moved between partitions included: while running,
/// and replayed at the next start (which used to be refused: the publication listed the
/// partitions).
#[test]
fn postgres_partitioned_table_streams_its_changes_across_a_restart() {
    let changes = "INSERT INTO p VALUES (3, 'new'), (70, 'new'); \
         UPDATE p SET v = 'changed' WHERE id = 50; DELETE FROM p WHERE id = 2; \
         UPDATE p SET id = 80 WHERE id = 1;";
    changed_while_running(Rig::new(SETUP), changes, &["a", "p"]);
    let log = changed_while_stopped(Rig::new(SETUP), changes, &["a", "p"]);
    assert!(!log.contains(COPIED_AGAIN), "{log}");
}

#[test]
fn postgres_publication_of_an_earlier_version_is_set_to_publish_via_the_root() {
    let log = changed_while_stopped(
        Rig::new(SETUP),
        "ALTER PUBLICATION tidewater SET (publish_via_partition_root = false); \
         INSERT INTO p VALUES (3, 'unpublished'); INSERT INTO a VALUES (1, 'x');",
        &["a", "p"],
    );
    assert!(log.contains("publish_via_partition_root"), "{log}");
}

/// A replicated table attached as a partition while tidewater is stopped is no longer
/// selected on its own (its replica stays as it was, like a dropped table's): the run starts,
/// and the partitioned table is copied again with its rows.
#[test]
fn postgres_replicated_table_attached_as_a_partition_while_stopped() {
    let rig = Rig::new(
        "CREATE TABLE a (id int PRIMARY KEY, v text); \
         CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id); \
         CREATE TABLE p0 PARTITION OF p FOR VALUES FROM (0) TO (10); \
         INSERT INTO p VALUES (1, 'p0'); \
         CREATE TABLE x (id int PRIMARY KEY, v text); INSERT INTO x VALUES (150, 'x');",
    );
    let log = changed_while_stopped(
        rig,
        "ALTER TABLE p ATTACH PARTITION x FOR VALUES FROM (100) TO (200); \
         INSERT INTO p VALUES (151, 'through p');",
        &["a", "p"],
    );
    assert!(log.contains(COPIED_AGAIN), "{log}");
}

/// A replicated table attached as a partition while running, written through the partitioned
/// table (published as the partitioned table's changes), then detached again: its own replica
/// must hold what the table holds at the source.
#[test]
fn postgres_replicated_table_attached_then_detached_while_running() {
    let mut rig = Rig::new(
        "CREATE TABLE a (id int PRIMARY KEY, v text); \
         CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id); \
         CREATE TABLE p0 PARTITION OF p FOR VALUES FROM (0) TO (10); \
         INSERT INTO p VALUES (1, 'p0'); \
         CREATE TABLE x (id int PRIMARY KEY, v text); INSERT INTO x VALUES (150, 'x');",
    );
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(
        "ALTER TABLE p ATTACH PARTITION x FOR VALUES FROM (100) TO (200); \
         INSERT INTO p VALUES (151, 'through p'); UPDATE p SET v = 'updated' WHERE id = 150;",
    );
    // The poll has seen the attach (a change undone before the next look is not seen).
    let p = format!("{}.p", rig.schema);
    tidewater_harness::wait_until(T, "the attach seen and p equal to the source", || {
        rig.log().contains(COPIED_AGAIN)
            && rig.source_lines(&rows_of("p")) == live_lines(&addr, &rows_of(&p))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    // Meanwhile `x`'s own replica gets none of its changes: said, not only logged.
    let x = format!("{}.x", rig.schema);
    let not_replicated = || get(&addr, "/status").json()["live"]["not_replicated"].clone();
    tidewater_harness::wait_until(T, "x listed as not replicated while attached", || {
        not_replicated()[0]["table"] == x.as_str()
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", not_replicated(), rig.log()));
    let reason = not_replicated()[0]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&format!("a partition of the replicated table {p}")),
        "{reason}"
    );
    assert!(get(&addr, "/health").body.starts_with("degraded:"));
    rig.sql(
        "ALTER TABLE p DETACH PARTITION x; INSERT INTO x VALUES (152, 'x again'); \
         INSERT INTO a VALUES (1, 'x');",
    );
    rig.wait_caught_up(T);
    tidewater_harness::wait_until(T, "x replicated again once detached", || {
        not_replicated().as_array().is_some_and(Vec::is_empty)
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", not_replicated(), rig.log()));
    wait_equal_then_stop(&mut rig, &addr, &["a", "p", "x"]);
}
