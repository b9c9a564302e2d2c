//! Schema changes mid-stream reach the replica and its log without a restart, for both
//! sources: ADD COLUMN, DROP COLUMN, a widened type, and new tables matching the globs
//! (MariaDB: from their creation in the binlog; PostgreSQL: copied with their rows at a
//! position of the stream). A restart after the change resumes with the replica's schema.

use crate::common;

use std::time::Duration;

use common::{snapshot_rows_copied, Rig};

const WAIT: Duration = Duration::from_secs(90);

/// The replica's columns of `table`, as `name type` in order.
fn replica_columns(rig: &Rig, table: &str) -> Vec<String> {
    rig.replica_lines(&format!(
        "SELECT column_name || ' ' || data_type FROM information_schema.columns \
         WHERE table_schema = '{}' AND table_name = '{table}' ORDER BY ordinal_position",
        rig.schema
    ))
}

#[test]
fn postgres_add_drop_and_widen_columns_while_streaming() {
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, a text, n int);
         INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2);",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    // Carried by the stream: applied in place.
    rig.sql(
        "INSERT INTO t VALUES (3, 'three', 3);
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4);
         ALTER TABLE t ALTER COLUMN n TYPE bigint;
         UPDATE t SET n = 9000000000 WHERE id = 2;",
    );
    rig.wait_caught_up(WAIT);
    // An added column: existing rows may hold values the stream does not carry, so the table
    // is copied again (see uncarried_ddl.rs).
    rig.sql(
        "ALTER TABLE t ADD COLUMN b text;
         INSERT INTO t VALUES (6, 6, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;",
    );
    rig.wait_caught_up(WAIT);
    rig.kill9();
    // After a restart the stored schema is the current one.
    rig.sql("INSERT INTO t VALUES (5, 5, 'after restart');");
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, n, b) FROM t ORDER BY id");
    assert_eq!(
        replica_columns(&rig, "t"),
        ["id INTEGER", "n BIGINT", "b VARCHAR"]
    );
    // The log keeps the dropped column's history.
    assert_eq!(
        rig.replica_lines("SELECT a FROM t_log WHERE id = 3 AND a IS NOT NULL"),
        ["three"]
    );
    assert_eq!(
        rig.replica_lines(
            "SELECT _metadata_change_type || ' ' || id FROM t_log \
             WHERE _metadata_change_type IN ('INSERT', 'UPDATE') AND id < 5 \
             ORDER BY _metadata_position, _metadata_sequence"
        ),
        // UPDATE 1 comes after the re-copy began (at the INSERT of 6, the first change that
        // shows column b): applied and logged, and the copied row logged after it.
        ["INSERT 3", "INSERT 4", "UPDATE 2", "UPDATE 1"]
    );
    assert!(rig.log().contains("the table is copied again"));
}

#[test]
fn mariadb_add_drop_widen_and_new_tables_while_streaming() {
    let mut rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, a varchar(20), n int);
         INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2);",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    // Step by step: a table map that matches neither the replicated nor the current
    // definition (tidewater behind by two changes of one table) stops with the re-snapshot
    // fix; see the README.
    for step in [
        "ALTER TABLE t ADD COLUMN b varchar(20);
         INSERT INTO t VALUES (3, 'three', 3, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;",
        "ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4, 'four');",
        "ALTER TABLE t MODIFY n bigint;
         UPDATE t SET n = 9000000000 WHERE id = 2;",
        "ALTER TABLE t ADD COLUMN first_col int FIRST;
         UPDATE t SET first_col = id * 10;
         CREATE TABLE fresh (id int PRIMARY KEY, v varchar(10));
         INSERT INTO fresh VALUES (1, 'new table');",
    ] {
        rig.sql(step);
        rig.wait_caught_up(WAIT);
    }
    rig.kill9();
    rig.sql("INSERT INTO t (id, n, b, first_col) VALUES (5, 5, 'after restart', 50);");
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, first_col, n, b) FROM t ORDER BY id");
    rig.assert_same("SELECT concat_ws('|', id, v) FROM fresh ORDER BY id");
    let mut cols = replica_columns(&rig, "t");
    cols.sort();
    assert_eq!(
        cols,
        ["b VARCHAR", "first_col INTEGER", "id INTEGER", "n BIGINT"]
    );
    // The log keeps the dropped column's history (id 3 was inserted after the table's
    // re-copy began: its insert and its copied row are both logged).
    assert_eq!(
        rig.replica_lines("SELECT DISTINCT a FROM t_log WHERE id = 3 AND a IS NOT NULL"),
        ["three"]
    );
}

/// PostgreSQL tables that start to match the globs while streaming (created, or present when
/// `run` starts but absent from the replica) join with their existing rows: copied at a
/// position of the stream, their changes applied after it, without a restart. A writer
/// changes the table all through its join; every update adds one to `n`, so the log of each
/// key must hold consecutive values, each once: nothing missed or applied twice at the cut.
#[test]
fn postgres_tables_join_while_streaming_with_their_rows() {
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, n int);
         INSERT INTO t VALUES (1, 0);
         CREATE PROCEDURE bump(times int) LANGUAGE plpgsql AS $$
         BEGIN
           FOR i IN 1..times LOOP
             UPDATE joined SET n = n + 1 WHERE id = 1 + (i * 7919) % 50;
             UPDATE t SET n = n + 1 WHERE id = 1;
             COMMIT;
             PERFORM pg_sleep(0.002);
           END LOOP;
         END $$;",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    let url = rig.pg().url("postgres");
    let mut writer = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &url, "-c"])
        .arg(
            "CREATE TABLE joined (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO joined SELECT g, 0 FROM generate_series(1, 20000) g;",
        )
        .args(["-c", "CALL bump(4000)"])
        .spawn()
        .unwrap();
    // The initial copy, then the joined table's.
    rig.wait_logged(common::COPY_FINISHED, 2, WAIT);
    assert!(writer.wait().unwrap().success(), "writer failed");
    rig.wait_caught_up(WAIT);
    rig.stop();
    // Created while tidewater was stopped: joins at the next start.
    rig.sql(
        "CREATE TABLE later (id int PRIMARY KEY, v text);
         INSERT INTO later VALUES (1, 'a'), (2, 'b');",
    );
    rig.start();
    rig.wait_logged(common::COPY_FINISHED, 3, WAIT);
    rig.sql("UPDATE later SET v = 'c' WHERE id = 2; INSERT INTO later VALUES (3, 'd');");
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, n) FROM joined ORDER BY id");
    rig.assert_same("SELECT concat_ws('|', id, n) FROM t ORDER BY id");
    rig.assert_same("SELECT concat_ws('|', id, v) FROM later ORDER BY id");
    assert_eq!(
        rig.count("SELECT count(*) FROM joined_log WHERE _metadata_change_type = 'SNAPSHOT'"),
        20000,
        "one copied row per key"
    );
    // The streamed updates of a key add one each: none missed or applied twice. (A key's
    // copied row may repeat the value of an update streamed before its chunk was read.)
    let broken = rig.count(
        "SELECT count(*) FROM (SELECT id, n, count(*) AS c, \
         lag(n) OVER (PARTITION BY id ORDER BY n) AS prev FROM joined_log \
         WHERE _metadata_change_type = 'UPDATE' GROUP BY id, n) \
         WHERE c <> 1 OR (prev IS NOT NULL AND n <> prev + 1)",
    );
    assert_eq!(broken, 0, "a change missed or applied twice at the cut");
    let last_differs = rig.count(
        "SELECT count(*) FROM (SELECT id, n FROM joined_log \
         WHERE _metadata_change_type <> 'TRUNCATE' QUALIFY row_number() OVER (PARTITION BY id ORDER BY _metadata_tx DESC, _metadata_sequence DESC) = 1 \
         EXCEPT SELECT id, n FROM joined)",
    );
    assert_eq!(
        last_differs, 0,
        "the last _log entry of a key is not its row"
    );
    assert!(
        rig.count("SELECT count(*) FROM joined_log WHERE _metadata_change_type = 'UPDATE'") > 0,
        "no update streamed after the copy: the cut was not exercised"
    );
    assert_eq!(
        rig.replica_lines("SELECT _metadata_change_type FROM later_log ORDER BY _metadata_position, _metadata_sequence"),
        // The join creates the replica table with a truncate, then copies.
        ["TRUNCATE", "SNAPSHOT", "SNAPSHOT", "UPDATE", "INSERT"]
    );
}

/// MariaDB: a table created while tidewater is stopped joins at the next start with its
/// rows: copied in chunks from a consistent snapshot's binlog position on, its binlog changes
/// before that position dropped (the chunks show them), the ones after applied.
#[test]
fn mariadb_table_created_while_stopped_joins_with_its_rows() {
    let mut rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(10)); INSERT INTO t VALUES (1, 'a');",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.sql(
        "CREATE TABLE later (id int PRIMARY KEY, v varchar(10));
         INSERT INTO later VALUES (1, 'a'), (2, 'b');
         UPDATE later SET v = 'b2' WHERE id = 2;
         INSERT INTO t VALUES (2, 'b');",
    );
    rig.start();
    // The initial copy, then the joining table's.
    rig.wait_logged(common::COPY_FINISHED, 2, WAIT);
    rig.sql("UPDATE later SET v = 'c' WHERE id = 2; INSERT INTO later VALUES (3, 'd');");
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM later ORDER BY id");
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    assert_eq!(
        rig.replica_lines(
            "SELECT concat_ws(' ', _metadata_change_type, id, v) FROM later_log \
             ORDER BY _metadata_tx, _metadata_sequence"
        ),
        // The join creates the replica table with a truncate, then copies.
        [
            "TRUNCATE",
            "SNAPSHOT 1 a",
            "SNAPSHOT 2 b2",
            "UPDATE 2 c",
            "INSERT 3 d"
        ]
    );
}

/// kill -9 while a joining table is being copied: its chunks commit with their progress, so
/// the restart resumes at the next chunk — every row copied exactly once.
#[test]
fn postgres_kill9_during_a_join_copies_the_table_once() {
    let mut rig = Rig::new("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);");
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(WAIT);
    // One transaction: the table appears with its rows, so they can only come by the join's
    // copy (committed apart, a fast join copies an empty table and the rows stream instead).
    rig.sql(
        "BEGIN;
         CREATE TABLE big (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 300000) g;
         COMMIT;",
    );
    rig.wait_logged("tables join the replica", 1, WAIT);
    // The moment: the copy is under way (its rows counted by this run's /metrics).
    let mut copied = 0;
    tidewater_harness::wait_until(WAIT, "the join copy to write rows", || {
        copied = snapshot_rows_copied(&addr, "public.big");
        copied > 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    rig.kill9();
    assert!(
        copied < 300_000 && rig.log().matches(common::COPY_FINISHED).count() == 1,
        "the kill came after the copy ({copied} rows copied):\n{}",
        rig.log()
    );
    rig.sql("UPDATE big SET v = 'after' WHERE id = 1;");
    rig.start();
    rig.wait_logged(common::COPY_FINISHED, 2, WAIT);
    rig.wait_caught_up(WAIT);
    rig.stop();
    eprintln!("killed with {copied} of 300000 rows copied");
    rig.assert_same("SELECT count(*) || '|' || count(DISTINCT v) FROM big");
    rig.assert_same("SELECT v FROM big WHERE id = 1");
    assert_eq!(
        rig.count("SELECT count(*) FROM big_log WHERE _metadata_change_type = 'SNAPSHOT'"),
        300_000
    );
}

/// A new table that tidewater's role may not add to its publication (another role owns it)
/// is named in a warning and left out; the other tables, old and new, replicate on.
#[test]
fn postgres_a_table_that_cannot_join_does_not_stop_the_others() {
    let mut rig = Rig::new(
        "CREATE ROLE tw LOGIN REPLICATION;
         GRANT CREATE ON DATABASE postgres TO tw;
         CREATE TABLE t (id int PRIMARY KEY);
         ALTER TABLE t OWNER TO tw;
         INSERT INTO t VALUES (1);",
    );
    let text = std::fs::read_to_string(&rig.config).unwrap();
    assert!(text.contains("postgres://postgres@"), "{text}");
    std::fs::write(
        &rig.config,
        text.replace("postgres://postgres@", "postgres://tw@"),
    )
    .unwrap();
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.sql(
        "CREATE TABLE foreign_owned (id int PRIMARY KEY); INSERT INTO foreign_owned VALUES (1);
         CREATE TABLE mine (id int PRIMARY KEY); ALTER TABLE mine OWNER TO tw;
         INSERT INTO mine VALUES (1), (2);",
    );
    rig.wait_logged(common::COPY_FINISHED, 2, WAIT);
    rig.sql("INSERT INTO t VALUES (2); INSERT INTO mine VALUES (3);");
    rig.wait_caught_up(WAIT);
    rig.stop();
    let log = rig.log();
    assert!(
        log.contains("cannot join the replica") && log.contains("foreign_owned"),
        "{log}"
    );
    rig.assert_same("SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
    rig.assert_same("SELECT string_agg(id::text, ',' ORDER BY id) FROM mine");
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'foreign_owned'"
        ),
        0
    );
}
