//! A table copied again fills a copy table while its replica table keeps its rows, and the
//! copy replaces it when consistent (`sink/recopy.rs`); a plain truncate still empties the
//! table in its own transaction. Against a real DuckDB file.

use tidewater_core::{ChangeKind, CopyProgress, Position, Sink, TxInfo};

use crate::change_log::{batch, change, keyed, open};

fn tx(position: &str) -> TxInfo {
    TxInfo {
        position: Position(position.into()),
        commit_time_us: 1,
        backlog: tidewater_core::Backlog::Unknown,
    }
}

fn rows(sink: &tidewater_duckdb::DuckDbSink, table: &str) -> Vec<String> {
    let sql = format!("SELECT id || '=' || v FROM {table} ORDER BY id");
    let mut stmt = sink.connection().prepare(&sql).unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

fn copy_tables(sink: &tidewater_duckdb::DuckDbSink) -> i64 {
    sink.connection()
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%__tidewater_copy'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_copy_fills_a_copy_table_that_replaces_the_replica_when_consistent() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let t = keyed("t");
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    let snapshot = [["1", "a"], ["2", "b"], ["3", "c"]].map(|r| change(&t, Snapshot, &r, None));
    batch(&mut sink, vec![("0/100", snapshot.to_vec())]);

    // The re-copy begins: a truncate and the table's fresh progress, then a chunk.
    sink.begin().unwrap();
    let at = tx("0/200");
    sink.truncate(&at, std::slice::from_ref(&t)).unwrap();
    sink.write_progress(&[CopyProgress::new(t.id.clone())])
        .unwrap();
    sink.write(&at, 1, vec![change(&t, Snapshot, &["1", "n"], None)])
        .unwrap();
    sink.commit(&at.position, 1).unwrap();
    assert_eq!(
        rows(&sink, "s.t"),
        ["1=a", "2=b", "3=c"],
        "the replica keeps its rows"
    );
    assert_eq!(rows(&sink, "s.t__tidewater_copy"), ["1=n"]);

    // A restart finds the copy table and goes on filling it.
    drop(sink);
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    sink.state().unwrap();
    let mut progress = CopyProgress::new(t.id.clone());
    (progress.chunks, progress.rows) = (1, 1);
    sink.copy_progress().unwrap();
    batch(
        &mut sink,
        vec![("0/300", vec![change(&t, Insert, &["4", "n"], None)])],
    );
    assert_eq!(rows(&sink, "s.t__tidewater_copy"), ["1=n", "4=n"]);
    assert_eq!(rows(&sink, "s.t"), ["1=a", "2=b", "3=c"]);

    // Your indexes of the replica table: created again on the copy once it replaces it, or
    // left out with a warning when they no longer fit (the copy has two rows with v = 'n').
    sink.connection()
        .execute_batch("CREATE INDEX t_v ON s.t (v); CREATE UNIQUE INDEX t_v_once ON s.t (v)")
        .unwrap();
    // Consistent: the copy replaces the replica table in the same transaction.
    sink.begin().unwrap();
    (progress.done, progress.consistent) = (true, true);
    sink.write_progress(&[progress]).unwrap();
    sink.commit(&Position("0/400".into()), 1).unwrap();
    assert_eq!(rows(&sink, "s.t"), ["1=n", "4=n"]);
    assert_eq!(copy_tables(&sink), 0);
    let indexes: Vec<String> = {
        let mut stmt = sink
            .connection()
            .prepare("SELECT index_name FROM duckdb_indexes() WHERE table_name = 't'")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(indexes, ["t_v"]);

    // A plain truncate (no copy follows) empties the table, and what follows lands in it.
    sink.begin().unwrap();
    let at = tx("0/500");
    sink.truncate(&at, std::slice::from_ref(&t)).unwrap();
    sink.write(&at, 1, vec![change(&t, Insert, &["5", "x"], None)])
        .unwrap();
    sink.commit(&at.position, 1).unwrap();
    assert_eq!(rows(&sink, "s.t"), ["5=x"]);
    sink.begin().unwrap();
    sink.truncate(&tx("0/600"), std::slice::from_ref(&t))
        .unwrap();
    sink.commit(&Position("0/600".into()), 1).unwrap();
    assert!(rows(&sink, "s.t").is_empty());
    assert_eq!(copy_tables(&sink), 0);
    let log: i64 = sink
        .connection()
        .query_row(
            "SELECT count(*) FROM s.t_log WHERE _metadata_change_type = 'TRUNCATE'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(log, 3, "each truncate is logged once");
}
