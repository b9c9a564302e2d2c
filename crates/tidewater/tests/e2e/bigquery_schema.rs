//! Ordinary schema changes reach BigQuery without stopping the pipeline, in strict mode, from
//! PostgreSQL and MariaDB: DROP COLUMN and widened types (INT → BIGINT, a NUMERIC's
//! precision, MariaDB `int unsigned` → `bigint unsigned`, an INT64 → NUMERIC column) applied
//! in place, and ADD COLUMN through the online re-copy (the stream does not carry what the
//! change did to existing rows: docs/schema-changes.md). A kill -9 and a restart after the
//! changes resume with the replica's definition.

use crate::bigquery::{assert_same, CATCH_UP};
use crate::common;

use common::Rig;

/// The columns of a BigQuery table, in order, as `name TYPE`.
fn bq_columns(rig: &Rig, table: &str) -> Vec<String> {
    let bq = rig.bq();
    let sql = format!(
        "SELECT column_name, data_type FROM {} WHERE table_name = '{table}' \
         ORDER BY ordinal_position",
        bq.table("INFORMATION_SCHEMA.COLUMNS")
    );
    bq.text_rows(&sql)
        .into_iter()
        .map(|r| r.join(" "))
        .collect()
}

/// The log keeps the dropped column's history, and every statement went through strict
/// mode (checked when the target drops).
fn check_log(rig: &Rig, log: &str) {
    let bq = rig.bq();
    let dropped = bq.text_rows(&format!(
        "SELECT a FROM {} WHERE id = 3 AND a IS NOT NULL",
        bq.table(log)
    ));
    assert_eq!(dropped, vec![vec!["three".to_string()]], "{}", rig.log());
    let dups = bq.duplicated_log_rows(log);
    assert!(dups.is_empty(), "{log} holds changes twice: {dups:?}");
}

#[test]
fn postgres_add_drop_and_widen_columns_reach_bigquery() {
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, a text, n int, amt numeric(10,2));
         INSERT INTO t VALUES (1, 'one', 1, 1.50), (2, 'two', 2, 2.50);",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    // Carried by the stream: applied in place.
    rig.sql(
        "INSERT INTO t VALUES (3, 'three', 3, 3.50);
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4, 4.25);
         ALTER TABLE t ALTER COLUMN n TYPE bigint;
         UPDATE t SET n = 9000000000 WHERE id = 2;
         ALTER TABLE t ALTER COLUMN amt TYPE numeric(14,2);
         UPDATE t SET amt = 123456789012.34 WHERE id = 1;",
    );
    rig.wait_caught_up(CATCH_UP);
    // Not carried (existing rows got a value the stream never sends): copied again online.
    rig.sql(
        "ALTER TABLE t ADD COLUMN b text DEFAULT 'dflt';
         INSERT INTO t VALUES (6, 6, 6, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;",
    );
    rig.wait_caught_up(CATCH_UP);
    rig.kill9();
    rig.sql("INSERT INTO t VALUES (5, 5, 5, 'after restart');");
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT id, n, amt, b FROM t ORDER BY id",
        &format!(
            "SELECT id, n, CAST(amt AS STRING), b FROM {} ORDER BY id",
            bq.table("public_t")
        ),
    );
    assert_eq!(
        bq_columns(&rig, "public_t"),
        ["id INT64", "n INT64", "amt NUMERIC", "b STRING"]
    );
    check_log(&rig, "public_t_log");
    assert!(
        rig.log().contains("the table is copied again"),
        "{}",
        rig.log()
    );
}

#[test]
fn mariadb_add_drop_and_widen_columns_reach_bigquery() {
    let mut rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, a varchar(20), n int, u int unsigned);
         INSERT INTO t VALUES (1, 'one', 1, 1), (2, 'two', 2, 2);",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    // One change of the table at a time (see schema_changes.rs).
    for step in [
        "INSERT INTO t VALUES (3, 'three', 3, 3);
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4, 4);",
        "ALTER TABLE t MODIFY n bigint, MODIFY u bigint unsigned;
         UPDATE t SET n = 9000000000, u = 18446744073709551615 WHERE id = 2;",
        "ALTER TABLE t ADD COLUMN b varchar(20);
         INSERT INTO t VALUES (6, 6, 6, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;",
    ] {
        rig.sql(step);
        rig.wait_caught_up(CATCH_UP);
    }
    rig.kill9();
    rig.sql("INSERT INTO t VALUES (5, 5, 5, 'after restart');");
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT id, n, u, b FROM t ORDER BY id",
        &format!(
            "SELECT id, n, CAST(u AS STRING), b FROM {} ORDER BY id",
            bq.table("shop_t")
        ),
    );
    assert_eq!(
        bq_columns(&rig, "shop_t"),
        ["id INT64", "n INT64", "u NUMERIC", "b STRING"]
    );
    check_log(&rig, "shop_t_log");
}
