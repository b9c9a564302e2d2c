//! The change log's order and contents against a real DuckDB file: transaction ordinals
//! (`_metadata_tx`) in commit order and continuous across batches, rollbacks and reopening;
//! PostgreSQL positions that sort as text; the old key of a key-changing update on every
//! apply path; a file of the layout before ordinals upgraded when opened; a clean close
//! that leaves the `.duckdb` file complete without its `.wal`; checkpoints at idle moments,
//! not inside commits; a transaction split into pieces (one ordinal across pieces and reopening).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidewater_core::{
    Change, ChangeKind, Column, ColumnType, Position, Sink, TableId, TableSchema, TxInfo, Value,
};
use tidewater_duckdb::duckdb::Connection;
use tidewater_duckdb::{status, DuckDbOptions, DuckDbSink};

pub fn schema(name: &str, cols: &[(&str, ColumnType)], key: &[usize]) -> Arc<TableSchema> {
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
        key: key.to_vec(),
    })
}

/// `(id int, v text)` keyed by id.
pub fn keyed(name: &str) -> Arc<TableSchema> {
    schema(
        name,
        &[("id", ColumnType::Int32), ("v", ColumnType::Text)],
        &[0],
    )
}

fn text(v: &str) -> Value {
    match v {
        "~" => Value::Unchanged,
        "" => Value::Null,
        v => Value::text(v),
    }
}

/// A change; `old` is the old key of a key-changing update.
pub fn change(
    t: &Arc<TableSchema>,
    kind: ChangeKind,
    row: &[&str],
    old: Option<&[&str]>,
) -> Change {
    Change {
        table: t.clone(),
        kind,
        row: row.iter().map(|v| text(v)).collect(),
        old: old.map(|o| o.iter().map(|v| text(v)).collect()),
    }
}

pub fn open(path: &Path, source_type: &str) -> DuckDbSink {
    open_with(
        path,
        source_type,
        tidewater_duckdb::config::DEFAULT_CHECKPOINT_THRESHOLD,
    )
}

fn open_with(path: &Path, source_type: &str, checkpoint_threshold: &str) -> DuckDbSink {
    open_options(path, source_type, checkpoint_threshold, true)
}

/// A sink with `[apply] log_tables = log_tables`.
pub fn open_logging(path: &Path, log_tables: bool) -> DuckDbSink {
    let threshold = tidewater_duckdb::config::DEFAULT_CHECKPOINT_THRESHOLD;
    open_options(path, "postgres", threshold, log_tables)
}

fn open_options(
    path: &Path,
    source_type: &str,
    checkpoint_threshold: &str,
    log_tables: bool,
) -> DuckDbSink {
    DuckDbSink::open(DuckDbOptions {
        log_tables,
        checkpoint_threshold: checkpoint_threshold.into(),
        ..DuckDbOptions::new(path.to_path_buf(), "default", source_type)
    })
    .unwrap()
}

/// Writes source transactions `(position, changes)` into the open batch.
fn write(sink: &mut DuckDbSink, txs: Vec<(&str, Vec<Change>)>) -> Position {
    let mut last = Position(String::new());
    for (i, (position, changes)) in txs.into_iter().enumerate() {
        let tx = TxInfo {
            position: Position(position.into()),
            commit_time_us: i as i64,
            backlog: tidewater_core::Backlog::Unknown,
        };
        sink.write(&tx, 0, changes).unwrap();
        last = tx.position;
    }
    last
}

/// Applies source transactions as one batch.
pub fn batch(sink: &mut DuckDbSink, txs: Vec<(&str, Vec<Change>)>) {
    sink.begin().unwrap();
    let last = write(sink, txs);
    sink.commit(&last, 0).unwrap();
}

/// Rows of `sql` (one column, any type) as text; NULL as `NULL`.
pub fn lines(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = stmt
        .query_map([], |r| r.get::<_, Option<String>>(0))
        .unwrap();
    rows.map(|r| r.unwrap().unwrap_or_else(|| "NULL".into()))
        .collect()
}

/// The logs of `tables` as `ordinal position kind id`, in the documented replay order.
fn replay(conn: &Connection, tables: &[&str], order: &str) -> Vec<String> {
    let union: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT _metadata_tx, _metadata_position, _metadata_sequence, \
                 _metadata_change_type, id FROM s.{t}_log"
            )
        })
        .collect();
    lines(
        conn,
        &format!(
            "SELECT concat_ws(' ', _metadata_tx, _metadata_position, _metadata_change_type, id) \
             FROM ({}) ORDER BY {order}",
            union.join(" UNION ALL ")
        ),
    )
}

const REPLAY_ORDER: &str = "_metadata_tx, _metadata_sequence";

#[test]
fn ordinals_follow_commit_order_across_batches_rollbacks_and_reopening() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let (t, u) = (keyed("t"), keyed("u"));
    let mut sink = open(&path, "postgres");
    sink.prepare(&[t.clone(), u.clone()]).unwrap();
    // The snapshot: one transaction, one ordinal, whatever the tables.
    batch(
        &mut sink,
        vec![(
            "0/9E2C9E8",
            vec![
                change(&t, Snapshot, &["1", "a"], None),
                change(&u, Snapshot, &["1", "a"], None),
            ],
        )],
    );
    // Two transactions in one batch, across the LSN digit boundary; an empty write between
    // them takes no ordinal.
    sink.begin().unwrap();
    write(&mut sink, vec![("0/9E2D000", vec![])]);
    let last = write(
        &mut sink,
        vec![
            ("0/FFFFFF8", vec![change(&u, Insert, &["2", "b"], None)]),
            ("0/10000000", vec![change(&t, Update, &["1", "c"], None)]),
        ],
    );
    sink.truncate(
        &TxInfo {
            position: last.clone(),
            commit_time_us: 1,
            backlog: tidewater_core::Backlog::Unknown,
        },
        std::slice::from_ref(&u),
    )
    .unwrap();
    sink.commit(&last, 0).unwrap();
    // A batch rolled back: its transaction comes again with the same ordinal.
    sink.begin().unwrap();
    write(
        &mut sink,
        vec![("0/10000100", vec![change(&t, Insert, &["5", "lost"], None)])],
    );
    sink.rollback().unwrap();
    batch(
        &mut sink,
        vec![("0/10000100", vec![change(&t, Insert, &["5", "e"], None)])],
    );
    // Reopened (a restart): the ordinals continue.
    drop(sink);
    let mut sink = open(&path, "postgres");
    sink.prepare(&[t.clone(), u.clone()]).unwrap();
    sink.state().unwrap();
    batch(
        &mut sink,
        vec![("1/0", vec![change(&u, Delete, &["2", ""], None)])],
    );

    let conn = sink.connection();
    let expected = [
        "1 00000000/09E2C9E8 SNAPSHOT 1",
        "1 00000000/09E2C9E8 SNAPSHOT 1",
        "2 00000000/0FFFFFF8 INSERT 2",
        "3 00000000/10000000 UPDATE 1",
        "3 00000000/10000000 TRUNCATE",
        "4 00000000/10000100 INSERT 5",
        "5 00000001/00000000 DELETE 2",
    ];
    let order = format!("{REPLAY_ORDER}, id");
    assert_eq!(replay(conn, &["t", "u"], &order), expected);
    // PostgreSQL positions sort as they read.
    let by_position = "_metadata_position, _metadata_sequence, id";
    assert_eq!(replay(conn, &["t", "u"], by_position), expected);
    // The state keeps the source's own position text, and the last ordinal with it.
    assert_eq!(
        lines(
            conn,
            "SELECT concat_ws(' ', position, tx_ordinal) FROM _tidewater.pipeline"
        ),
        ["1/0 5"]
    );
}

#[test]
fn the_old_key_of_a_key_change_is_logged_on_every_apply_path() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    // `a` logs from Arrow columns (the feed), `b` (an INTERVAL column) by SQL from staging,
    // `c` has a composite key; a change with an unchanged (TOAST) value takes the
    // row-at-a-time path.
    let a = keyed("a");
    let b = schema(
        "b",
        &[("id", ColumnType::Int32), ("d", ColumnType::Interval)],
        &[0],
    );
    let c = schema(
        "c",
        &[
            ("k1", ColumnType::Int64),
            ("k2", ColumnType::Text),
            ("v", ColumnType::Text),
        ],
        &[1, 0],
    );
    let mut sink = open(&dir.path().join("r.duckdb"), "mysql");
    sink.prepare(&[a.clone(), b.clone(), c.clone()]).unwrap();
    batch(
        &mut sink,
        vec![(
            "mariadb-gtid:0-1-9",
            vec![
                change(&a, Insert, &["1", "x"], None),
                change(&b, Insert, &["1", "01:00:00"], None),
                change(&c, Insert, &["7", "p", "x"], None),
            ],
        )],
    );
    batch(
        &mut sink,
        vec![
            (
                "mariadb-gtid:0-1-10",
                vec![
                    change(&a, Update, &["10", "moved"], Some(&["1"])),
                    change(&a, Update, &["10", "same key"], None),
                    change(&b, Update, &["2", "02:00:00"], Some(&["1"])),
                    change(&c, Update, &["7", "q", "moved"], Some(&["p", "7"])),
                ],
            ),
            (
                "mariadb-gtid:0-1-11",
                vec![
                    change(&a, Update, &["20", "~"], Some(&["10"])),
                    change(&a, Delete, &["20", ""], None),
                ],
            ),
        ],
    );
    let conn = sink.connection();
    let log = |sql: &str| lines(conn, sql);
    assert_eq!(
        log("SELECT concat_ws(' ', _metadata_change_type, id, v, coalesce(CAST(_metadata_old_id AS VARCHAR), '-')) \
             FROM s.a_log ORDER BY _metadata_tx, _metadata_sequence"),
        [
            "INSERT 1 x -",
            "UPDATE 10 moved 1",
            "UPDATE 10 same key -",
            "UPDATE 20 same key 10",
            "DELETE 20 -",
        ]
    );
    assert_eq!(
        log("SELECT concat_ws(' ', _metadata_change_type, id, coalesce(CAST(_metadata_old_id AS VARCHAR), '-')) \
             FROM s.b_log ORDER BY _metadata_tx, _metadata_sequence"),
        ["INSERT 1 -", "UPDATE 2 1"]
    );
    assert_eq!(
        log("SELECT concat_ws(' ', _metadata_change_type, k1, k2, coalesce(_metadata_old_k2 || '/' || _metadata_old_k1, '-')) \
             FROM s.c_log ORDER BY _metadata_tx, _metadata_sequence"),
        ["INSERT 7 p -", "UPDATE 7 q p/7"]
    );
    // Typed like the key columns.
    assert_eq!(
        log("SELECT typeof(_metadata_old_id) || ' ' || typeof(_metadata_old_k1) FROM s.a_log, s.c_log LIMIT 1"),
        ["INTEGER BIGINT"]
    );
    assert_eq!(
        log("SELECT concat_ws('|', id, v) FROM s.a UNION ALL SELECT concat_ws('|', k1, k2, v) FROM s.c"),
        ["7|q|moved"]
    );
}

/// The DDL of the layout before transaction ordinals (tidewater at 3e69e83).
const OLD_LAYOUT: &str = "
CREATE SCHEMA _tidewater;
CREATE TABLE _tidewater.pipeline (name VARCHAR PRIMARY KEY, source_type VARCHAR,
    position VARCHAR, last_source_commit TIMESTAMPTZ, last_apply TIMESTAMPTZ,
    transactions_applied BIGINT, changes_applied BIGINT);
CREATE TABLE _tidewater.tables (schema_name VARCHAR, table_name VARCHAR, schema_json VARCHAR,
    schema_version INTEGER, changes_applied BIGINT, updated_at TIMESTAMPTZ,
    PRIMARY KEY (schema_name, table_name));
CREATE SCHEMA s;
";

fn old_log(table: &str) -> String {
    format!(
        "CREATE TABLE s.{table} (id INTEGER PRIMARY KEY, v VARCHAR);
         CREATE TABLE s.{table}_log (id INTEGER, v VARCHAR, _metadata_change_type VARCHAR,
            _metadata_deleted BOOLEAN, _metadata_source_timestamp TIMESTAMPTZ,
            _metadata_timestamp TIMESTAMPTZ, _metadata_position VARCHAR, _metadata_sequence BIGINT);"
    )
}

/// A file as the previous layout wrote it: tables `t` and `u`, their logs holding one row per
/// `(table, position, id)`, physically out of order.
fn old_file(path: &Path, source_type: &str, rows: &[(&str, &str, i32)]) -> PathBuf {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(OLD_LAYOUT).unwrap();
    for t in ["t", "u"] {
        conn.execute_batch(&old_log(t)).unwrap();
        let json = serde_json::to_string(&*keyed(t)).unwrap();
        conn.execute(
            "INSERT INTO _tidewater.tables VALUES ('s', ?, ?, 1, 0, now())",
            [t, json.as_str()],
        )
        .unwrap();
    }
    for (seq, (table, position, id)) in rows.iter().enumerate().rev() {
        conn.execute_batch(&format!(
            "INSERT INTO s.{table}_log VALUES ({id}, 'old', 'INSERT', false, now(), now(), \
             '{position}', {seq}); INSERT INTO s.{table} VALUES ({id}, 'old');"
        ))
        .unwrap();
    }
    let last = rows.last().unwrap().1;
    conn.execute(
        "INSERT INTO _tidewater.pipeline VALUES ('default', ?, ?, now(), now(), 0, 0)",
        [source_type, last],
    )
    .unwrap();
    path.to_path_buf()
}

fn upgrade_case(source_type: &str, rows: &[(&str, &str, i32)], next: &str, stored: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = old_file(&dir.path().join("old.duckdb"), source_type, rows);
    let (t, u) = (keyed("t"), keyed("u"));
    let mut sink = open(&path, source_type);
    sink.prepare(&[t.clone(), u.clone()]).unwrap();
    sink.state().unwrap();
    // The next transaction continues the backfilled ordinals, with the current layout.
    batch(
        &mut sink,
        vec![(
            next,
            vec![change(
                &t,
                ChangeKind::Update,
                &["100", "new"],
                Some(&["1"]),
            )],
        )],
    );
    drop(sink);
    // Reopening does not upgrade again.
    let sink = open(&path, source_type);
    let conn = sink.connection();
    let mut expected: Vec<String> = stored
        .iter()
        .zip(rows)
        .enumerate()
        .map(|(i, (p, (_, _, id)))| format!("{} {p} INSERT {id}", i + 1))
        .collect();
    expected.push(format!("{} {next} UPDATE 100", rows.len() + 1));
    assert_eq!(replay(conn, &["t", "u"], REPLAY_ORDER), expected);
    assert_eq!(
        lines(
            conn,
            "SELECT CAST(tx_ordinal AS VARCHAR) FROM _tidewater.pipeline"
        ),
        [(rows.len() + 1).to_string()]
    );
    assert_eq!(
        lines(conn, "SELECT concat_ws(' ', id, _metadata_old_id) FROM s.t_log WHERE _metadata_old_id IS NOT NULL OR id = 1 ORDER BY id"),
        ["1", "100 1"]
    );
}

#[test]
fn a_postgres_file_of_the_previous_layout_is_upgraded_when_opened() {
    // Rows in commit order; unpadded LSNs that sort wrongly as text.
    let rows = [
        ("t", "0/9E2C9E8", 1),
        ("u", "0/FFFFFF8", 2),
        ("t", "0/10000000", 3),
        ("u", "0/10000100", 4),
        ("t", "1/0", 5),
    ];
    let stored = [
        "00000000/09E2C9E8",
        "00000000/0FFFFFF8",
        "00000000/10000000",
        "00000000/10000100",
        "00000001/00000000",
    ];
    upgrade_case("postgres", &rows, "00000001/00000010", &stored);
}

#[test]
fn a_mariadb_file_of_the_previous_layout_is_upgraded_when_opened() {
    // GTID sequence numbers of different digit counts, and a second domain.
    let rows = [
        ("t", "mariadb-gtid:0-1-98", 1),
        ("u", "mariadb-gtid:0-1-99", 2),
        ("t", "mariadb-gtid:0-1-100", 3),
        ("u", "mariadb-gtid:0-1-100,1-1-5", 4),
        ("t", "mariadb-gtid:0-1-1000,1-1-5", 5),
    ];
    let stored = rows.map(|r| r.1);
    upgrade_case("mysql", &rows, "mariadb-gtid:0-1-1001,1-1-5", &stored);
}

#[test]
fn a_clean_close_leaves_the_file_complete_without_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let wal = dir.path().join("r.duckdb.wal");
    let t = keyed("t");
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    let rows: Vec<Change> = (1..=1000)
        .map(|i| change(&t, ChangeKind::Insert, &[&i.to_string(), "v"], None))
        .collect();
    batch(&mut sink, vec![("0/10", rows)]);
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(wal_bytes() > 0, "the commit is in the .wal");
    let report = status::collect(sink.connection(), "default").unwrap();
    assert_eq!(
        (report.checkpointed, report.wal_bytes),
        (Some(false), wal_bytes())
    );

    sink.close().unwrap();
    assert_eq!(wal_bytes(), 0, "checkpointed into the file");
    let report = status::collect(sink.connection(), "default").unwrap();
    assert_eq!((report.checkpointed, report.wal_bytes), (Some(true), 0));
    drop(sink);
    let _ = std::fs::remove_file(&wal);
    let conn = status::open_read_only(&path).unwrap();
    assert_eq!(
        lines(
            &conn,
            "SELECT count(*) || ' ' || count(DISTINCT id) FROM s.t_log"
        ),
        ["1000 1000"]
    );
    assert_eq!(
        lines(&conn, "SELECT position FROM _tidewater.pipeline"),
        ["0/10"]
    );
}

#[test]
fn an_idle_sink_checkpoints_a_long_log_and_duckdb_does_not_inside_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let wal = dir.path().join("r.duckdb.wal");
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let t = keyed("t");
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    let value = "x".repeat(200);
    let mut next = 0;
    let mut rows = |n: usize| -> Vec<Change> {
        next += n;
        (next - n..next)
            .map(|i| change(&t, ChangeKind::Insert, &[&i.to_string(), &value], None))
            .collect()
    };

    // A short log stays where it is: an idle moment does not checkpoint every small commit.
    batch(&mut sink, vec![("0/10", rows(1000))]);
    let short = wal_bytes();
    assert!(short > 0, "the commit is in the .wal");
    sink.idle().unwrap();
    assert_eq!(wal_bytes(), short, "no checkpoint for a short log");

    // Past DuckDB's default threshold (16MB) the commit does not checkpoint by itself
    // (`checkpoint_threshold` is raised) ...
    for i in 0..4 {
        batch(&mut sink, vec![(&*format!("0/2{i}"), rows(25_000))]);
    }
    let long = wal_bytes();
    assert!(
        long > 16_000_000,
        "the commits wait in the .wal: {long} bytes"
    );

    // ... while a query holds a transaction an idle checkpoint is skipped, not an error ...
    let reader = sink.connection().try_clone().unwrap();
    reader.execute_batch("BEGIN TRANSACTION").unwrap();
    assert_eq!(lines(&reader, "SELECT count(*) || '' FROM s.t"), ["101000"]);
    sink.idle().unwrap();
    reader.execute_batch("COMMIT").unwrap();

    // ... and the next idle moment checkpoints.
    sink.idle().unwrap();
    assert_eq!(wal_bytes(), 0, "checkpointed while idle");
    drop(sink);
    let _ = std::fs::remove_file(&wal);
    let conn = status::open_read_only(&path).unwrap();
    assert_eq!(
        lines(&conn, "SELECT count(*) || ' ' || max(id) FROM s.t"),
        ["101000 100999"]
    );
    assert_eq!(
        lines(&conn, "SELECT position FROM _tidewater.pipeline"),
        ["0/23"]
    );
}

/// DuckDB's own checkpoint test is its log plus an estimate of the committing transaction that
/// counts each keyed table's transaction-local key index (over a MiB each for a few hundred
/// rows): a batch of 500 rows into each of a hundred keyed tables passed the 128MB threshold
/// with a log of a few MiB and checkpointed every table inside its commit. The sink lets
/// DuckDB checkpoint only in a commit whose log plus values reach the threshold.
#[test]
fn a_batch_over_many_keyed_tables_stays_in_the_log_until_the_log_is_long() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let wal = dir.path().join("r.duckdb.wal");
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let tables: Vec<_> = (0..100).map(|i| keyed(&format!("t{i}"))).collect();
    let tx = |kind, v: &str| -> Vec<Change> {
        tables
            .iter()
            .flat_map(|t| (0..500).map(move |id| (t, id)))
            .map(|(t, id)| change(t, kind, &[&id.to_string(), v], None))
            .collect()
    };
    let mut sink = open(&path, "postgres");
    sink.prepare(&tables).unwrap();
    batch(&mut sink, vec![("0/10", tx(ChangeKind::Insert, "a"))]);
    let inserted = wal_bytes();
    assert!(
        inserted > 0,
        "the inserts into 100 tables are not checkpointed inside their commit"
    );
    batch(&mut sink, vec![("0/20", tx(ChangeKind::Update, "b"))]);
    let updated = wal_bytes();
    assert!(
        updated > inserted,
        "nor their updates: .wal {inserted} -> {updated} bytes"
    );
    drop(sink);

    // A commit that takes the log past the threshold checkpoints.
    let mut sink = open_with(&path, "postgres", "1MB");
    let value = "x".repeat(200);
    let rows: Vec<Change> = (500..10_500)
        .map(|id| {
            change(
                &tables[0],
                ChangeKind::Insert,
                &[&id.to_string(), &value],
                None,
            )
        })
        .collect();
    batch(&mut sink, vec![("0/30", rows)]);
    assert_eq!(wal_bytes(), 0, "checkpointed in the commit");
    assert_eq!(
        lines(
            sink.connection(),
            "SELECT count(*) || ' ' || count(*) FILTER (v = 'b') FROM s.t0"
        ),
        ["10500 500"]
    );
}

/// `large_transaction = "split"`: a transaction committed in pieces keeps one ordinal, in the
/// same run and after reopening, with its sequences running on; the stored partial progress
/// (and the ordinal) comes back from `state` until the piece that completes it, also across a
/// commit of other transactions before its replay; a later transaction at the same position
/// (a copy's chunk carries the stream's position) gets the next ordinal.
#[test]
fn a_split_transaction_keeps_one_ordinal_across_pieces_and_reopening() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let t = keyed("t");
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    batch(
        &mut sink,
        vec![("0/10", vec![change(&t, Snapshot, &["1", "a"], None)])],
    );
    let tx = |position: &str, commit_time_us| TxInfo {
        position: Position(position.into()),
        commit_time_us,
        backlog: tidewater_core::Backlog::Unknown,
    };
    let big = tx("0/20", 5);
    let piece = |sink: &mut DuckDbSink, first: i64, ids: &[&str], held: Option<i64>| {
        sink.begin().unwrap();
        sink.begin_tx(&big).unwrap();
        let changes = ids.iter().map(|id| change(&t, Insert, &[id, "x"], None));
        sink.write(&big, first, changes.collect()).unwrap();
        if let Some(changes) = held {
            let partial = tidewater_core::PartialTx {
                position: big.position.clone(),
                changes,
                fingerprint: u64::MAX,
            };
            sink.record_partial(&partial).unwrap();
        }
    };
    // Two pieces in this run, the stored position staying the snapshot's.
    piece(&mut sink, 0, &["2", "3"], Some(2));
    sink.commit(&Position("0/10".into()), 0).unwrap();
    piece(&mut sink, 2, &["4"], Some(3));
    sink.commit(&Position("0/10".into()), 0).unwrap();
    // Reopened (a crash). A copy's chunk commits first, at the stored position: the partial
    // progress and its ordinal stay stored (reopened again, they are still there).
    drop(sink);
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    let held = sink
        .state()
        .unwrap()
        .partial
        .expect("the partial transaction");
    let chunk = tx("0/10", 7);
    sink.begin().unwrap();
    sink.begin_tx(&chunk).unwrap();
    sink.write(&chunk, 0, vec![change(&t, Snapshot, &["9", "c"], None)])
        .unwrap();
    // As the apply loop does until the replay: the held progress recorded again.
    sink.record_partial(&held).unwrap();
    sink.commit(&Position("0/10".into()), 0).unwrap();
    drop(sink);
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    let state = sink.state().unwrap();
    assert_eq!(state.position, Some(Position("0/10".into())));
    let held = state.partial.expect("the partial transaction");
    assert_eq!((held.position.0.as_str(), held.changes), ("0/20", 3));
    assert_eq!(held.fingerprint, u64::MAX, "stored as its 64 bits");
    // The rest of the transaction, then another at its position.
    piece(&mut sink, 3, &["5"], None);
    let after = tx("0/20", 6);
    sink.begin_tx(&after).unwrap();
    sink.write(&after, 0, vec![change(&t, Insert, &["6", "y"], None)])
        .unwrap();
    sink.commit(&Position("0/20".into()), 5).unwrap();
    assert!(sink.state().unwrap().partial.is_none());

    let conn = sink.connection();
    assert_eq!(
        lines(
            conn,
            "SELECT concat_ws(' ', _metadata_tx, _metadata_sequence, id) FROM s.t_log \
             ORDER BY _metadata_tx, _metadata_sequence"
        ),
        ["1 0 1", "2 0 2", "2 1 3", "2 2 4", "2 3 5", "3 0 9", "4 0 6"]
    );
    assert_eq!(
        lines(
            conn,
            "SELECT concat_ws(' ', position, tx_ordinal, transactions_applied, \
             coalesce(partial_position, '-')) FROM _tidewater.pipeline"
        ),
        ["0/20 4 4 -"]
    );
}
