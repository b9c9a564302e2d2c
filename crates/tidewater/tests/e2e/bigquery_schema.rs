//! Ordinary schema changes reach BigQuery without stopping the pipeline, in strict mode, from
//! PostgreSQL and MariaDB: DROP COLUMN and widened types (INT → BIGINT, a NUMERIC's
//! precision, MariaDB `int unsigned` → `bigint unsigned`, an INT64 → NUMERIC column) applied
//! in place, and ADD COLUMN through the online re-copy (the stream does not carry what the
//! change did to existing rows: docs/schema-changes.md). A kill -9 and a restart after the
//! changes resume with the replica's definition. MariaDB tables that join at a start, or
//! changed while tidewater was stopped, reach BigQuery through the chunks too.

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

/// Applies `steps` one after the other (each caught up), kills the run, inserts a row
/// while it is down, restarts, and compares (`id, n, <wide>, b`) with the source; the
/// BigQuery table `bq_name` must then have `columns`.
fn steps_then_kill_and_restart(
    mut rig: Rig,
    steps: &[&str],
    wide: &str,
    bq_name: &str,
    columns: [&str; 4],
) -> Rig {
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    for step in steps {
        rig.sql(step);
        rig.wait_caught_up(CATCH_UP);
    }
    rig.kill9();
    rig.sql("INSERT INTO t VALUES (5, 5, 5, 'after restart');");
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let replica = format!(
        "SELECT id, n, CAST({wide} AS STRING), b FROM {} ORDER BY id",
        rig.bq().table(bq_name)
    );
    let source = format!("SELECT id, n, {wide}, b FROM t ORDER BY id");
    assert_same(&rig, &source, &replica);
    assert_eq!(bq_columns(&rig, bq_name), columns);
    check_log(&rig, &format!("{bq_name}_log"));
    rig
}

#[test]
fn postgres_add_drop_and_widen_columns_reach_bigquery() {
    let rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, a text, n int, amt numeric(10,2));
         INSERT INTO t VALUES (1, 'one', 1, 1.50), (2, 'two', 2, 2.50);",
    );
    let steps = [
        // Carried by the stream: applied in place.
        "INSERT INTO t VALUES (3, 'three', 3, 3.50);
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4, 4.25);
         ALTER TABLE t ALTER COLUMN n TYPE bigint;
         UPDATE t SET n = 9000000000 WHERE id = 2;
         ALTER TABLE t ALTER COLUMN amt TYPE numeric(14,2);
         UPDATE t SET amt = 123456789012.34 WHERE id = 1;",
        // Not carried (existing rows got a value the stream never sends): copied again online.
        "ALTER TABLE t ADD COLUMN b text DEFAULT 'dflt';
         INSERT INTO t VALUES (6, 6, 6, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;",
    ];
    let columns = ["id INT64", "n INT64", "amt NUMERIC", "b STRING"];
    let rig = steps_then_kill_and_restart(rig, &steps, "amt", "public_t", columns);
    let log = rig.log();
    assert!(log.contains("the table is copied again"), "{log}");
}

#[test]
fn mariadb_add_drop_and_widen_columns_reach_bigquery() {
    let rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, a varchar(20), n int, u int unsigned);
         INSERT INTO t VALUES (1, 'one', 1, 1), (2, 'two', 2, 2);",
    );
    // One change of the table at a time (see schema_changes.rs).
    let steps = [
        "INSERT INTO t VALUES (3, 'three', 3, 3);
         ALTER TABLE t DROP COLUMN a;
         INSERT INTO t VALUES (4, 4, 4);",
        "ALTER TABLE t MODIFY n bigint, MODIFY u bigint unsigned;
         UPDATE t SET n = 9000000000, u = 18446744073709551615 WHERE id = 2;",
        "ALTER TABLE t ADD COLUMN b varchar(20);
         INSERT INTO t VALUES (6, 6, 6, 'bee');
         UPDATE t SET b = 'set' WHERE id = 1;",
    ];
    let columns = ["id INT64", "n INT64", "u NUMERIC", "b STRING"];
    steps_then_kill_and_restart(rig, &steps, "u", "shop_t", columns);
}

/// Killed after the DDL of a schema change and before the commit that records it (the copy
/// after an ADD COLUMN made while tidewater was stopped): the replica already has the new
/// column, the committed definition does not. The next start brings the tables back to the
/// committed definition, the copy runs again, and the replica ends equal to the source.
#[test]
fn postgres_killed_between_schema_change_ddl_and_commit_recovers() {
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, a text, n int);
         INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2);",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let (_, applied) = rig.bq().state().expect("state after the snapshot");
    rig.sql(
        "ALTER TABLE t ADD COLUMN b text DEFAULT 'dflt';
         INSERT INTO t VALUES (3, 'three', 3, 'bee');",
    );
    rig.start_with_env(&[("TIDEWATER_FAULT", "after-schema-change")]);
    let status = rig.wait_exit(CATCH_UP);
    assert!(
        !status.success(),
        "the fault must kill the run\n{}",
        rig.log()
    );
    assert_eq!(
        rig.bq().state().unwrap().1,
        applied,
        "nothing was committed"
    );
    assert!(
        bq_columns(&rig, "public_t").contains(&"b STRING".to_string()),
        "the column is added before the commit\n{}",
        rig.log()
    );
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let replica = format!(
        "SELECT id, a, n, b FROM {} ORDER BY id",
        rig.bq().table("public_t")
    );
    assert_same(&rig, "SELECT id, a, n, b FROM t ORDER BY id", &replica);
    assert_eq!(
        bq_columns(&rig, "public_t"),
        ["id INT64", "a STRING", "n INT64", "b STRING"]
    );
}

/// MariaDB into BigQuery at a restart: a table created while tidewater was stopped joins, and
/// a table whose column was added with a default while it was stopped is copied again, both in
/// chunks from the start's cut (`tidewater_mysql::join`, "In chunks"): the truncate creates
/// the joining table and adds the column, then the chunks load.
#[test]
fn mariadb_join_and_add_column_while_stopped_reach_bigquery_in_chunks() {
    let mut rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, n int);
         INSERT INTO t VALUES (1, 1), (2, 2);",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    rig.sql(
        "INSERT INTO t VALUES (3, 3);
         CREATE TABLE later (id int PRIMARY KEY, v varchar(10));
         INSERT INTO later VALUES (1, 'a'), (2, 'b');
         ALTER TABLE t ADD COLUMN b varchar(10) DEFAULT 'dflt';
         INSERT INTO t VALUES (4, 4, 'bee');",
    );
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.sql("UPDATE later SET v = 'c' WHERE id = 2; UPDATE t SET b = 'set' WHERE id = 1;");
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = |t: &str| rig.bq().table(t);
    let replica = format!("SELECT id, n, b FROM {} ORDER BY id", bq("shop_t"));
    assert_same(&rig, "SELECT id, n, b FROM t ORDER BY id", &replica);
    let replica = format!("SELECT id, v FROM {} ORDER BY id", bq("shop_later"));
    assert_same(&rig, "SELECT id, v FROM later ORDER BY id", &replica);
    let log = rig.log();
    assert!(
        log.contains("join the replica: copied in chunks")
            && log.contains("copied again in chunks"),
        "{log}"
    );
}
