//! Schema changes mid-stream reach the replica and its log without a restart, for both
//! sources: ADD COLUMN, DROP COLUMN, a widened type, and (MariaDB) a new table matching the
//! globs. A restart after the change resumes with the replica's schema.

mod common;

use std::time::Duration;

use common::Rig;

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
    rig.sql(
        "ALTER TABLE t ADD COLUMN b text;
         INSERT INTO t VALUES (3, 'three', 3, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4, 'four');
         ALTER TABLE t ALTER COLUMN n TYPE bigint;
         UPDATE t SET n = 9000000000 WHERE id = 2;",
    );
    rig.wait_caught_up(WAIT);
    rig.kill9();
    // After a restart the stored schema is the current one.
    rig.sql("INSERT INTO t VALUES (5, 5, 'after restart');");
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, n, b) FROM t ORDER BY id");
    assert_eq!(replica_columns(&rig, "t"), ["id INTEGER", "n BIGINT", "b VARCHAR"]);
    // The log keeps the dropped column's history.
    assert_eq!(
        rig.replica_lines("SELECT a FROM t_log WHERE id = 3 AND a IS NOT NULL"),
        ["three"]
    );
    assert_eq!(rig.count("SELECT count(*) FROM t_log"), 2 + 1 + 1 + 1 + 1 + 1);
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
    assert_eq!(cols, ["b VARCHAR", "first_col INTEGER", "id INTEGER", "n BIGINT"]);
    assert_eq!(
        rig.replica_lines("SELECT a FROM t_log WHERE id = 3 AND a IS NOT NULL"),
        ["three"]
    );
}
