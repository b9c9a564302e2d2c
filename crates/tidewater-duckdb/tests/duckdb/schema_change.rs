//! Schema changes mid-stream: a change decoded with a new table definition alters the
//! replica and its log inside the batch, and a table that appears mid-stream is created.

use std::sync::Arc;

use tidewater_core::{
    Change, ChangeKind, Column, ColumnType, Position, Sink, TableId, TableSchema, TxInfo, Value,
};
use tidewater_duckdb::{DuckDbOptions, DuckDbSink};

fn schema(name: &str, cols: &[(&str, ColumnType)]) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new("s", name),
        columns: cols
            .iter()
            .map(|(n, ty)| Column {
                name: n.to_string(),
                ty: ty.clone(),
                nullable: true,
                source_type: String::new(),
            })
            .collect(),
        key: vec![0],
    })
}

fn insert(t: &Arc<TableSchema>, values: &[&str]) -> Change {
    Change {
        table: t.clone(),
        kind: ChangeKind::Insert,
        row: values.iter().map(|v| Value::text(v)).collect(),
        old: None,
    }
}

fn options(dir: &tempfile::TempDir) -> DuckDbOptions {
    DuckDbOptions::new(dir.path().join("r.duckdb"), "default", "test")
}

fn batch(sink: &mut DuckDbSink, n: u64, changes: Vec<Change>) {
    sink.begin().unwrap();
    let tx = TxInfo {
        position: Position(format!("0/{n}")),
        commit_time_us: 0,
        backlog: tidewater_core::Backlog::Unknown,
    };
    sink.write(&tx, 0, changes).unwrap();
    sink.commit(&tx.position, 0).unwrap();
}

fn lines(sink: &DuckDbSink, sql: &str) -> Vec<String> {
    let mut stmt = sink.connection().prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[test]
fn added_dropped_and_widened_columns_and_new_tables_apply_in_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = schema(
        "t",
        &[
            ("id", ColumnType::Int32),
            ("a", ColumnType::Text),
            ("n", ColumnType::Int16),
        ],
    );
    let mut sink = DuckDbSink::open(options(&dir)).unwrap();
    sink.prepare(std::slice::from_ref(&v1)).unwrap();
    batch(&mut sink, 1, vec![insert(&v1, &["1", "x", "7"])]);

    // DROP COLUMN a, n widened to BIGINT, ADD COLUMN b; and a new table.
    let v2 = schema(
        "t",
        &[
            ("id", ColumnType::Int32),
            ("n", ColumnType::Int64),
            ("b", ColumnType::Text),
        ],
    );
    let fresh = schema("u", &[("id", ColumnType::Int32)]);
    batch(
        &mut sink,
        2,
        vec![
            insert(&v2, &["2", "9000000000", "new"]),
            insert(&fresh, &["5"]),
        ],
    );
    assert_eq!(
        lines(
            &sink,
            "SELECT concat_ws('|', id, n, coalesce(b, '-')) FROM s.t ORDER BY id"
        ),
        ["1|7|-", "2|9000000000|new"]
    );
    assert_eq!(
        lines(&sink, "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'n'"),
        ["BIGINT"]
    );
    // The log keeps the dropped column's history.
    assert_eq!(
        lines(&sink, "SELECT concat_ws('|', id, coalesce(a, '-'), coalesce(b, '-')) FROM s.t_log ORDER BY id"),
        ["1|x|-", "2|-|new"]
    );
    assert_eq!(lines(&sink, "SELECT id::VARCHAR FROM s.u"), ["5"]);
    assert_eq!(
        lines(
            &sink,
            "SELECT schema_version::VARCHAR FROM _tidewater.tables WHERE table_name = 't'"
        ),
        ["2"]
    );
    drop(sink);

    // Restarted with the source's older definition (the stream is behind the change): the
    // replica keeps the schema it was written with.
    let mut sink = DuckDbSink::open(options(&dir)).unwrap();
    sink.prepare(std::slice::from_ref(&v1)).unwrap();
    batch(
        &mut sink,
        3,
        vec![insert(&v2, &["3", "1", "after restart"])],
    );
    assert_eq!(
        lines(
            &sink,
            "SELECT concat_ws('|', id, n, coalesce(b, '-')) FROM s.t ORDER BY id"
        ),
        ["1|7|-", "2|9000000000|new", "3|1|after restart"]
    );
    assert_eq!(
        lines(
            &sink,
            "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = 's' AND table_name = 't'"
        ),
        ["id INTEGER, n BIGINT, b VARCHAR"]
    );
    assert_eq!(
        lines(
            &sink,
            "SELECT schema_version::VARCHAR FROM _tidewater.tables WHERE table_name = 't'"
        ),
        ["2"]
    );
}

#[test]
fn a_changed_primary_key_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = schema("t", &[("id", ColumnType::Int32), ("a", ColumnType::Text)]);
    let mut sink = DuckDbSink::open(options(&dir)).unwrap();
    sink.prepare(std::slice::from_ref(&v1)).unwrap();
    let mut v2 = (*v1).clone();
    v2.key = vec![1];
    sink.begin().unwrap();
    let tx = TxInfo {
        position: Position("0/1".into()),
        commit_time_us: 0,
        backlog: tidewater_core::Backlog::Unknown,
    };
    let err = sink
        .write(&tx, 0, vec![insert(&Arc::new(v2), &["1", "x"])])
        .unwrap_err();
    assert!(err.message().contains("primary key"), "{err}");
    assert!(err.message().contains("new DuckDB file"), "{err}");
}

/// How many catalog listings (statements reading `duckdb_columns()`,
/// `information_schema.columns` or `duckdb_tables()`) DuckDB's query log holds.
fn catalog_listings(sink: &DuckDbSink) -> usize {
    lines(
        sink,
        "SELECT message FROM duckdb_logs WHERE type = 'QueryLog' AND (message ILIKE \
         '%duckdb_columns%' OR message ILIKE '%information_schema.columns%' OR message ILIKE \
         '%duckdb_tables%')",
    )
    .len()
}

/// Preparing tables lists DuckDB's catalog once, on a new file and on a file that holds them:
/// DuckDB answers a question about one table's columns by listing every column of every
/// table, so asking per table made start-up grow with the square of the table count
/// (`catalog.rs`).
#[test]
fn preparing_many_tables_lists_the_catalog_once() {
    let dir = tempfile::tempdir().unwrap();
    let tables: Vec<Arc<TableSchema>> = (0..30)
        .map(|i| {
            schema(
                &format!("t{i}"),
                &[("id", ColumnType::Int32), ("a", ColumnType::Text)],
            )
        })
        .collect();
    for (n, run) in [(1, "a new file"), (2, "a file that holds the tables")] {
        let mut sink = DuckDbSink::open(options(&dir)).unwrap();
        sink.connection()
            .execute_batch("CALL truncate_duckdb_logs(); CALL enable_logging('QueryLog')")
            .unwrap();
        sink.prepare(&tables).unwrap();
        sink.connection()
            .execute_batch("CALL disable_logging()")
            .unwrap();
        assert_eq!(catalog_listings(&sink), 1, "{run}");
        batch(
            &mut sink,
            n,
            vec![insert(&tables[29], &[&n.to_string(), "x"])],
        );
        sink.close().unwrap();
    }
}
