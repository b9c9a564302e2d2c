//! Row changes that used to stop the BigQuery sink, in strict mode: PostgreSQL updates that
//! leave a TOASTed value unchanged (the replica keeps its value, from the replica or from an
//! earlier change of the same batch), and updates and deletes of keyless tables (REPLICA
//! IDENTITY FULL; MariaDB's full row images), applied as a multiset like the DuckDB sink.

use crate::bigquery::{assert_same, CATCH_UP};
use crate::common;

use common::Rig;

#[test]
fn postgres_toast_unchanged_values_keep_the_replicas_value() {
    // EXTERNAL: stored out of line uncompressed, so updates that leave it alone do not send it.
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, big text, n int);
         ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO t VALUES (1, repeat('a', 5000), 0), (2, repeat('b', 5000), 0);",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.sql(
        "UPDATE t SET n = n + 1;
         BEGIN;
         INSERT INTO t VALUES (3, repeat('c', 5000), 0);
         UPDATE t SET n = 7 WHERE id = 3;
         UPDATE t SET big = repeat('d', 6000) WHERE id = 1;
         UPDATE t SET n = 9 WHERE id = 1;
         COMMIT;
         UPDATE t SET n = 10 WHERE id = 2;",
    );
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT id, length(big), left(big, 2), n FROM t ORDER BY id",
        &format!(
            "SELECT id, LENGTH(big), SUBSTR(big, 1, 2), n FROM {} ORDER BY id",
            bq.table("public_t")
        ),
    );
    // The log holds whole rows too.
    let missing = bq.count(&format!(
        "SELECT COUNT(*) FROM {} WHERE big IS NULL",
        bq.table("public_t_log")
    ));
    assert_eq!(missing, 0, "log rows without the unchanged value");
    let updates = bq.count(&format!(
        "SELECT COUNT(*) FROM {} WHERE _metadata_change_type = 'UPDATE'",
        bq.table("public_t_log")
    ));
    assert_eq!(updates, 6);
}

/// Keyless rows as a multiset: duplicates, an update of one of them, deletes of one copy,
/// NULLs, and a delete and insert of equal rows in one transaction.
fn keyless(mut rig: Rig, bq_name: &str, delete_one: &str) {
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.sql(&format!(
        "UPDATE k SET b = 'z' WHERE a = 2;
         {delete_one};
         INSERT INTO k VALUES (3, NULL), (3, NULL);
         BEGIN; DELETE FROM k WHERE a = 3; INSERT INTO k VALUES (1, 'x'), (4, 'w'); COMMIT;
         UPDATE k SET a = 5 WHERE a = 4;"
    ));
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT a, b, COUNT(*) FROM k GROUP BY a, b ORDER BY a, b",
        &format!(
            "SELECT a, b, COUNT(*) FROM {} GROUP BY a, b ORDER BY a, b",
            bq.table(bq_name)
        ),
    );
    // One log row per change: 3 snapshot rows, 1 + 1 + 2 + 2 + 2 + 1 changes.
    let log = bq.count(&format!(
        "SELECT COUNT(*) FROM {}",
        bq.table(&format!("{bq_name}_log"))
    ));
    assert_eq!(log, 3 + 9);
}

#[test]
fn postgres_keyless_updates_and_deletes_reach_bigquery() {
    let rig = Rig::new(
        "CREATE TABLE k (a int, b text);
         ALTER TABLE k REPLICA IDENTITY FULL;
         INSERT INTO k VALUES (1, 'x'), (1, 'x'), (2, 'y');",
    );
    let one = "DELETE FROM k WHERE ctid = (SELECT ctid FROM k WHERE a = 1 LIMIT 1)";
    keyless(rig, "public_k", one);
}

#[test]
fn mariadb_keyless_updates_and_deletes_reach_bigquery() {
    let rig = Rig::mysql(
        "CREATE TABLE k (a int, b varchar(10));
         INSERT INTO k VALUES (1, 'x'), (1, 'x'), (2, 'y');",
    );
    keyless(rig, "shop_k", "DELETE FROM k WHERE a = 1 LIMIT 1");
}
