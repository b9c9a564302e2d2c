//! The chunked, resumable copy into BigQuery (`tidewater_core::copy`; each chunk's rows and
//! progress commit together, `_tidewater_copies`), from PostgreSQL, in strict mode: a writer
//! changes every table (inserts, updates, deletes, key changes; a composite text key; a
//! keyless table) during the whole copy while `run` is killed with SIGKILL three times
//! mid-copy. Afterwards the replica equals the source (`verify`; the large table by its
//! aggregates), the last `_log` entry of every key is its replica row, no change and no copied row is in the log twice, and every table's copy
//! is done and consistent.

use crate::bigquery::{assert_same, CATCH_UP};
use crate::chunked_snapshot::{copy_under_writes_with_kills, pg_setup, CHUNK_ROWS, ROWS};
use crate::common;

use std::time::Duration;

use common::bq::cell_text;
use common::{run_tidewater, Rig};

#[test]
fn pg_chunked_copy_into_bigquery_under_writes_survives_kill9() {
    let mut rig = Rig::new(&pg_setup());
    rig.use_bigquery();
    let sent = copy_under_writes_with_kills(&mut rig, 1);

    // verify reads about 500 rows/s from the emulator: the two smaller tables, and big by
    // its aggregates (the per-key _log check below covers each of its rows).
    let (code, out) = run_tidewater(
        &[
            "verify",
            "--tables",
            "public.comp",
            "--tables",
            "public.bag",
        ],
        &rig.config,
        &[],
        "warn",
        Duration::from_secs(600),
    );
    assert_eq!(code, 0, "verify:\n{out}");
    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT count(*), sum(id), sum(n), sum(length(v)), count(DISTINCT v) FROM big",
        &format!(
            "SELECT COUNT(*), SUM(id), SUM(n), SUM(LENGTH(v)), COUNT(DISTINCT v) FROM {}",
            bq.table("public_big")
        ),
    );
    for log in ["public_big_log", "public_comp_log", "public_bag_log"] {
        let dups = bq.duplicated_log_rows(log);
        assert!(dups.is_empty(), "{log} holds changes twice: {dups:?}");
    }
    // A chunk a kill interrupted is copied again, not committed twice.
    let twice = bq.text_rows(&format!(
        "SELECT id FROM {} WHERE _metadata_change_type = 'SNAPSHOT' GROUP BY id \
         HAVING COUNT(*) > 1 LIMIT 5",
        bq.table("public_big_log")
    ));
    assert!(twice.is_empty(), "rows copied twice: {twice:?}");
    // The last entry of every key (a key-changing update is its old key's departure) is the
    // replica's row.
    let mismatches = bq.text_rows(&format!(
        "WITH e AS ( \
           SELECT id AS k, _metadata_tx AS tx, _metadata_sequence AS seq, 1 AS sub, \
                  NOT _metadata_deleted AS live, v, n FROM {log} \
           UNION ALL \
           SELECT _metadata_old_id, _metadata_tx, _metadata_sequence, 0, false, NULL, NULL \
           FROM {log} WHERE _metadata_old_id IS NOT NULL), \
         last AS (SELECT k, live, v, n FROM (SELECT *, ROW_NUMBER() OVER \
                  (PARTITION BY k ORDER BY tx DESC, seq DESC, sub DESC) AS r FROM e) WHERE r = 1) \
         SELECT COUNT(*) FROM last FULL JOIN {rep} t ON last.k = t.id \
         WHERE (last.live IS NOT TRUE AND t.id IS NOT NULL) \
            OR (last.live AND (t.id IS NULL OR last.v IS DISTINCT FROM t.v \
                               OR last.n IS DISTINCT FROM t.n))",
        log = bq.table("public_big_log"),
        rep = bq.table("public_big"),
    ));
    assert_eq!(
        mismatches,
        [["0".to_string()]],
        "keys whose last _log entry is not their row"
    );
    let copies = bq.rows(&format!(
        "SELECT source_table, progress FROM {} ORDER BY 1",
        bq.table("_tidewater_copies")
    ));
    assert_eq!(copies.len(), 3, "{copies:?}");
    for row in &copies {
        let p: serde_json::Value = serde_json::from_str(&cell_text(&row[1])).unwrap();
        assert!(p["done"] == true && p["consistent"] == true, "{p}");
        if cell_text(&row[0]) == "big" {
            let (rows, chunks) = (p["rows"].as_u64().unwrap(), p["chunks"].as_u64().unwrap());
            assert!(
                rows <= ROWS + sent && chunks >= ROWS / CHUNK_ROWS,
                "big: {rows} rows in {chunks} chunks"
            );
        }
    }
}

/// Starting over as the re-snapshot fix says, but leaving `_tidewater_copies` behind (the fix
/// text before it named that table): the new snapshot copies the table again (a run without a
/// stored position starts every copy afresh), and does not take the earlier snapshot's "done,
/// consistent" for its own.
#[test]
fn a_new_snapshot_ignores_the_copy_progress_of_an_earlier_one() {
    let mut rig = Rig::new(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = rig.bq();
    for table in ["public_t", "public_t_log", "public_t_staging"] {
        bq.dml_by_hand(&format!("DROP TABLE {}", bq.table(table)));
    }
    for table in ["_tidewater_state", "_tidewater_tables"] {
        bq.dml_by_hand(&format!("DELETE FROM {} WHERE TRUE", bq.table(table)));
    }
    rig.sql(&format!(
        "SELECT pg_drop_replication_slot('{}')",
        common::SLOT
    ));
    rig.sql("INSERT INTO t VALUES (3001, 'after');");
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let bq = rig.bq();
    assert_same(
        &rig,
        "SELECT count(*), sum(id) FROM t",
        &format!("SELECT COUNT(*), SUM(id) FROM {}", bq.table("public_t")),
    );
}
