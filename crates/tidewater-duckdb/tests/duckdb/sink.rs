//! The sink contract against a real DuckDB file: each way of staging changes (inserts only,
//! each key once, repeated keys and key changes, row-at-a-time) gives the replica and log
//! that applying the changes one by one would.

use std::sync::Arc;

use tidewater_core::{
    Change, ChangeKind, Column, ColumnType, Position, Sink, TableId, TableSchema, TxInfo, Value,
};
use tidewater_duckdb::{DuckDbOptions, DuckDbSink};

fn table(name: &str, keyed: bool) -> Arc<TableSchema> {
    let col = |n: &str, ty| Column {
        name: n.into(),
        ty,
        nullable: true,
        source_type: String::new(),
    };
    Arc::new(TableSchema {
        id: TableId::new("s", name),
        columns: vec![col("id", ColumnType::Int32), col("v", ColumnType::Text)],
        key: if keyed { vec![0] } else { vec![] },
    })
}

fn row(id: i32, v: &str) -> Vec<Value> {
    vec![
        Value::text(&id.to_string()),
        if v == "~" {
            Value::Unchanged
        } else {
            Value::text(v)
        },
    ]
}

fn change(t: &Arc<TableSchema>, kind: ChangeKind, id: i32, v: &str) -> Change {
    Change {
        table: t.clone(),
        kind,
        row: row(id, v),
        old: None,
    }
}

struct Fixture {
    sink: DuckDbSink,
    _dir: tempfile::TempDir,
    lsn: u64,
}

impl Fixture {
    fn new(tables: &[Arc<TableSchema>]) -> Fixture {
        Fixture::with_primary_key(tables, true)
    }

    fn with_primary_key(tables: &[Arc<TableSchema>], primary_key: bool) -> Fixture {
        Fixture::with_keys(tables, primary_key, 0)
    }

    /// `primary_key_rows`: as `[sink] primary_key_rows` (0: the key declared at creation).
    fn with_keys(tables: &[Arc<TableSchema>], primary_key: bool, primary_key_rows: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let options = DuckDbOptions {
            primary_key,
            primary_key_rows,
            ..DuckDbOptions::new(dir.path().join("r.duckdb"), "default", "test")
        };
        let mut sink = DuckDbSink::open(options).unwrap();
        sink.prepare(tables).unwrap();
        Fixture {
            sink,
            _dir: dir,
            lsn: 0,
        }
    }

    /// Applies `txs` (each a list of changes) as one batch.
    fn batch(&mut self, txs: Vec<Vec<Change>>) {
        self.sink.begin().unwrap();
        for changes in txs {
            self.lsn += 1;
            let tx = TxInfo {
                position: Position(format!("0/{}", self.lsn)),
                commit_time_us: 0,
                backlog: tidewater_core::Backlog::Unknown,
            };
            self.sink.write(&tx, 0, changes).unwrap();
        }
        self.sink
            .commit(&Position(format!("0/{}", self.lsn)), 0)
            .unwrap();
    }

    fn rows(&self, sql: &str) -> Vec<String> {
        let conn = self.sink.connection();
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Every column of the first row of `sql`, as text joined by ` | `.
    fn row_text(&self, sql: &str) -> String {
        let conn = self.sink.connection();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let row = rows.next().unwrap().expect("one row");
        let n = row.as_ref().column_count();
        (0..n)
            .map(|i| {
                row.get::<_, Option<String>>(i)
                    .unwrap()
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// The replica's rows as `id|v`, space-separated.
    fn replica(&self, name: &str) -> String {
        self.rows(&format!(
            "SELECT concat_ws('|', id, v) FROM s.{name} ORDER BY id, v"
        ))
        .join(" ")
    }
}

#[test]
fn every_staging_shape_applies_like_one_change_at_a_time() {
    staging_shapes(true);
}

#[test]
fn every_staging_shape_applies_like_one_change_at_a_time_without_a_primary_key() {
    staging_shapes(false);
}

fn staging_shapes(primary_key: bool) {
    let t = table("t", true);
    let mut f = Fixture::with_primary_key(std::slice::from_ref(&t), primary_key);
    use ChangeKind::*;
    // Inserts only (snapshot rows, then streamed inserts).
    f.batch(vec![(1..=5)
        .map(|i| change(&t, Snapshot, i, "s"))
        .collect()]);
    f.batch(vec![vec![change(&t, Insert, 6, "i")]]);
    assert_eq!(f.replica("t"), "1|s 2|s 3|s 4|s 5|s 6|i");
    // Each key once: update 1, delete 2, insert 7.
    f.batch(vec![
        vec![change(&t, Update, 1, "u"), change(&t, Delete, 2, "")],
        vec![change(&t, Insert, 7, "i")],
    ]);
    assert_eq!(f.replica("t"), "1|u 3|s 4|s 5|s 6|i 7|i");
    // Repeated keys: delete + reinsert 3, update 4 twice, insert + delete 8.
    f.batch(vec![
        vec![change(&t, Delete, 3, ""), change(&t, Insert, 3, "again")],
        vec![change(&t, Update, 4, "a"), change(&t, Update, 4, "b")],
        vec![change(&t, Insert, 8, "x"), change(&t, Delete, 8, "")],
    ]);
    assert_eq!(f.replica("t"), "1|u 3|again 4|b 5|s 6|i 7|i");
    // Key change 5 → 50, then a new row takes key 5 in the same batch.
    let mut moved = change(&t, Update, 50, "moved");
    moved.old = Some(vec![Value::text("5")]);
    f.batch(vec![vec![moved], vec![change(&t, Insert, 5, "new five")]]);
    assert_eq!(
        f.replica("t"),
        "1|u 3|again 4|b 5|new five 6|i 7|i 50|moved"
    );
    // Unchanged (TOAST) value: the replica keeps its value, the log gets the full row.
    f.batch(vec![
        vec![change(&t, Update, 50, "~")],
        vec![change(&t, Update, 6, "after")],
    ]);
    assert_eq!(
        f.replica("t"),
        "1|u 3|again 4|b 5|new five 6|after 7|i 50|moved"
    );
    assert_eq!(
        f.rows("SELECT v FROM s.t_log WHERE id = 50 ORDER BY _metadata_position DESC LIMIT 1"),
        ["moved"]
    );
    // Log: one row per change, in source order (transactions by position, then changes by
    // sequence within each), unchanged values filled in.
    assert_eq!(
        f.rows(
            "SELECT concat_ws(' ', _metadata_change_type, id, v) FROM s.t_log \
             ORDER BY CAST(split_part(_metadata_position, '/', 2) AS INTEGER), _metadata_sequence"
        ),
        [
            "SNAPSHOT 1 s",
            "SNAPSHOT 2 s",
            "SNAPSHOT 3 s",
            "SNAPSHOT 4 s",
            "SNAPSHOT 5 s",
            "INSERT 6 i",
            "UPDATE 1 u",
            "DELETE 2 ",
            "INSERT 7 i",
            "DELETE 3 ",
            "INSERT 3 again",
            "UPDATE 4 a",
            "UPDATE 4 b",
            "INSERT 8 x",
            "DELETE 8 ",
            "UPDATE 50 moved",
            "INSERT 5 new five",
            "UPDATE 50 moved",
            "UPDATE 6 after",
        ]
    );
    // The per-table counters in the state schema move with the data.
    assert_eq!(
        f.rows("SELECT CAST(changes_applied AS VARCHAR) FROM _tidewater.tables"),
        ["19"]
    );
    let position = f.rows("SELECT position FROM _tidewater.pipeline");
    assert_eq!(position, [format!("0/{}", f.lsn)]);
}

#[test]
fn updates_of_each_key_once_apply_in_place_and_one_of_a_missing_key_still_lands() {
    for primary_key in [true, false] {
        let t = table("t", true);
        let mut f = Fixture::with_primary_key(std::slice::from_ref(&t), primary_key);
        use ChangeKind::*;
        f.batch(vec![(1..=3).map(|i| change(&t, Insert, i, "i")).collect()]);
        // Updates only, each key once: set in place.
        f.batch(vec![
            vec![change(&t, Update, 1, "u1")],
            vec![change(&t, Update, 3, "u3")],
        ]);
        assert_eq!(f.replica("t"), "1|u1 2|i 3|u3");
        // Repeated updates of a key: its last image, in place.
        f.batch(vec![
            vec![change(&t, Update, 2, "a")],
            vec![change(&t, Update, 2, "b"), change(&t, Update, 1, "c")],
        ]);
        assert_eq!(f.replica("t"), "1|c 2|b 3|u3");
        // An update of a key the replica lacks (a replica that differs, which `verify`
        // reports): the batch still leaves every staged image, as delete and insert did.
        f.batch(vec![vec![
            change(&t, Update, 9, "missing"),
            change(&t, Update, 3, "u3 again"),
        ]]);
        assert_eq!(f.replica("t"), "1|c 2|b 3|u3 again 9|missing");
        assert_eq!(
            f.rows("SELECT CAST(count(*) AS VARCHAR) FROM s.t_log WHERE _metadata_change_type = 'UPDATE'"),
            ["7"]
        );
    }
}

#[test]
fn truncate_and_keyless_tables() {
    let t = table("t", true);
    let k = table("k", false);
    let mut f = Fixture::new(&[t.clone(), k.clone()]);
    use ChangeKind::*;
    f.batch(vec![vec![
        change(&t, Insert, 1, "a"),
        change(&k, Insert, 1, "x"),
        change(&k, Insert, 1, "x"),
        change(&k, Insert, 2, "y"),
    ]]);
    // Keyless (REPLICA IDENTITY FULL): an update and a delete each touch one equal row.
    let mut upd = change(&k, Update, 1, "z");
    upd.old = Some(row(1, "x"));
    let mut del = change(&k, Delete, 2, "y");
    del.old = None;
    f.sink.begin().unwrap();
    let tx = TxInfo {
        position: Position("0/9".into()),
        commit_time_us: 0,
        backlog: tidewater_core::Backlog::Unknown,
    };
    f.sink
        .write(&tx, 0, vec![change(&t, Insert, 2, "b"), upd, del])
        .unwrap();
    f.sink.truncate(&tx, std::slice::from_ref(&t)).unwrap();
    f.sink
        .write(&tx, 3, vec![change(&t, Insert, 3, "after truncate")])
        .unwrap();
    f.sink.commit(&Position("0/9".into()), 0).unwrap();
    assert_eq!(f.replica("t"), "3|after truncate");
    assert_eq!(f.replica("k"), "1|x 1|z");
    assert_eq!(f.rows("SELECT _metadata_change_type FROM s.t_log ORDER BY _metadata_position, _metadata_sequence"), ["INSERT", "INSERT", "TRUNCATE", "INSERT"]);
}

#[test]
fn a_rolled_back_batch_leaves_nothing() {
    let t = table("t", true);
    let mut f = Fixture::new(std::slice::from_ref(&t));
    f.batch(vec![vec![change(&t, ChangeKind::Insert, 1, "kept")]]);
    f.sink.begin().unwrap();
    let tx = TxInfo {
        position: Position("0/99".into()),
        commit_time_us: 0,
        backlog: tidewater_core::Backlog::Unknown,
    };
    f.sink
        .write(
            &tx,
            0,
            (2..10_000)
                .map(|i| change(&t, ChangeKind::Insert, i, "lost"))
                .collect(),
        )
        .unwrap();
    f.sink.rollback().unwrap();
    assert_eq!(f.replica("t"), "1|kept");
    assert_eq!(f.rows("SELECT position FROM _tidewater.pipeline"), ["0/1"]);
    // The sink is usable again after a rollback.
    f.batch(vec![vec![change(&t, ChangeKind::Insert, 2, "next")]]);
    assert_eq!(f.replica("t"), "1|kept 2|next");
}

/// Inserts take the direct path (Arrow columns through the feed), updates the staged SQL path: both must store the
/// same value for every type.
#[test]
fn appended_and_staged_values_are_identical_for_every_scalar_type() {
    use ColumnType::*;
    let cases: Vec<(ColumnType, [&str; 2])> = vec![
        (Int16, ["-32768", "32767"]),
        (Int32, ["2147483647", "-1"]),
        (Int64, ["-9223372036854775808", "0"]),
        (
            Decimal {
                precision: 38,
                scale: 10,
            },
            ["1234567890123456789012345678.1234567890", "-0.0000000001"],
        ),
        (
            Decimal {
                precision: 60,
                scale: 2,
            },
            [
                "1234567890123456789012345678901234567890123456789012345678.90",
                "0.00",
            ],
        ),
        (Float32, ["3.4028235e+38", "NaN"]),
        (Float64, ["1e-300", "-Infinity"]),
        (Bool, ["true", "false"]),
        (Text, ["tab\there, ünïcode 🚀", ""]),
        (Bytes, ["00ff10", ""]),
        (Date, ["0044-03-15 (BC)", "infinity"]),
        (Time, ["23:59:59.999999", "00:00:00"]),
        (Timestamp, ["2024-02-29 12:34:56.123456", "-infinity"]),
        (
            TimestampTz,
            ["2024-02-29 12:34:56.123456+05:30", "1970-01-01 00:00:00+00"],
        ),
        (
            Uuid,
            [
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "00000000-0000-0000-0000-000000000000",
            ],
        ),
        (Json, [r#"{"a": [1, 2.50, "x"]}"#, "null"]),
    ];
    let mut columns = vec![Column {
        name: "id".into(),
        ty: Int32,
        nullable: false,
        source_type: String::new(),
    }];
    columns.extend(cases.iter().enumerate().map(|(i, (ty, _))| Column {
        name: format!("c{i}"),
        ty: ty.clone(),
        nullable: true,
        source_type: String::new(),
    }));
    let t = Arc::new(TableSchema {
        id: TableId::new("s", "all"),
        columns,
        key: vec![0],
    });
    let mut f = Fixture::new(std::slice::from_ref(&t));
    let values = |id: i32, which: usize| -> Vec<Value> {
        let mut row = vec![Value::text(&id.to_string())];
        row.extend(cases.iter().map(|(_, v)| Value::text(v[which])));
        row
    };
    let mk = |kind, row| Change {
        table: t.clone(),
        kind,
        row,
        old: None,
    };
    let nulls = |id: i32| {
        let mut row = vec![Value::text(&id.to_string())];
        row.extend(cases.iter().map(|_| Value::Null));
        row
    };
    for which in 0..2 {
        let (direct, staged) = (10 * which as i32 + 1, 10 * which as i32 + 2);
        f.batch(vec![vec![
            mk(ChangeKind::Insert, values(direct, which)),
            mk(ChangeKind::Insert, nulls(staged)),
        ]]);
        f.batch(vec![vec![mk(ChangeKind::Update, values(staged, which))]]);
        let text = |id: i32| {
            f.row_text(&format!(
                "SELECT CAST(COLUMNS(* EXCLUDE (id)) AS VARCHAR) FROM s.all WHERE id = {id}"
            ))
        };
        assert_eq!(text(direct), text(staged), "values set {which}");
        let expected = ["ünïcode", "-infinity"][which];
        assert!(text(direct).contains(expected), "{:?}", text(direct));
        let logged = |id: i32| {
            f.row_text(&format!(
                "SELECT CAST(COLUMNS(* EXCLUDE (id, _metadata_timestamp, _metadata_position, _metadata_tx)) AS VARCHAR) \
                 FROM s.all_log WHERE id = {id} ORDER BY _metadata_position DESC LIMIT 1"
            ))
        };
        let (d, s) = (logged(direct), logged(staged));
        assert_eq!(
            d.replace("INSERT", "UPDATE"),
            s,
            "log rows of values set {which}"
        );
    }
}

#[test]
fn rows_removed_in_the_open_batch_can_be_inserted_again() {
    let t = table("t", true);
    let mut f = Fixture::new(std::slice::from_ref(&t));
    f.batch(vec![(1..=3)
        .map(|i| change(&t, ChangeKind::Insert, i, "old"))
        .collect()]);
    f.sink.begin().unwrap();
    let tx = TxInfo {
        position: Position("0/9".into()),
        commit_time_us: 0,
        backlog: tidewater_core::Backlog::Unknown,
    };
    f.sink.truncate(&tx, std::slice::from_ref(&t)).unwrap();
    let again = (1..=3)
        .map(|i| change(&t, ChangeKind::Insert, i, "new"))
        .collect();
    f.sink.write(&tx, 1, again).unwrap();
    f.sink
        .write(&tx, 4, vec![change(&t, ChangeKind::Delete, 2, "")])
        .unwrap();
    f.sink
        .write(&tx, 5, vec![change(&t, ChangeKind::Insert, 2, "newer")])
        .unwrap();
    f.sink.commit(&Position("0/9".into()), 0).unwrap();
    assert_eq!(f.replica("t"), "1|new 2|newer 3|new");
}

/// Tables of one shape share a staging table: each reads only its own rows, one merged in the
/// middle of the batch (an update with an unchanged value) clears only its own, even while the
/// other's rows are already in staging (more than one insert's worth), and nothing staged
/// outlives its batch.
#[test]
fn tables_sharing_a_staging_table_apply_only_their_own_changes() {
    const N: i32 = 5000; // > APPEND_ROWS: b's updates reach staging before a's merge
    let (a, b) = (table("a", true), table("b", true));
    let mut f = Fixture::new(&[a.clone(), b.clone()]);
    use ChangeKind::*;
    let mut first: Vec<Change> = (1..=3).map(|i| change(&a, Insert, i, "a")).collect();
    first.extend((1..=N).map(|i| change(&b, Insert, i, "b")));
    f.batch(vec![first]);
    let mut updates = vec![change(&a, Update, 1, "a1")];
    updates.extend((1..=N).map(|i| change(&b, Update, i, "b1")));
    f.batch(vec![
        updates,
        vec![change(&a, Update, 2, "~")],
        vec![
            change(&a, Update, 3, "a3"),
            change(&b, Delete, 2, ""),
            change(&b, Update, 3, "b3"),
        ],
    ]);
    let b_summary = "SELECT count(*) || ' ' || count(*) FILTER (WHERE v = 'b1') || ' ' || max(id) \
                     FROM s.b";
    let b_first = "SELECT concat_ws('|', id, v) FROM s.b WHERE id <= 3 ORDER BY id";
    assert_eq!(f.replica("a"), "1|a1 2|a 3|a3");
    assert_eq!(f.rows(b_first), ["1|b1", "3|b3"]);
    assert_eq!(f.rows(b_summary), [format!("{} {} {N}", N - 1, N - 2)]);
    // Staged rows of the batch before are gone: they would insert b's keys again.
    f.batch(vec![vec![change(&b, Update, 3, "again")]]);
    assert_eq!(f.rows(b_first), ["1|b1", "3|again"]);
    assert_eq!(f.rows(b_summary), [format!("{} {} {N}", N - 1, N - 2)]);
    assert_eq!(f.replica("a"), "1|a1 2|a 3|a3");
    let staged = f.rows("SELECT count(*) || '' FROM temp.main.stage_2_1");
    assert_eq!(staged, ["0"]);
}

/// With `primary_key_rows`, a replica starts without its key (no key index in memory), gets
/// it in the first batch after it holds that many rows, and stays equal to what was applied
/// through the change: deletes, updates and re-inserted keys before and after.
#[test]
fn a_replica_gets_its_primary_key_once_it_is_large() {
    let t = table("t", true);
    let mut f = Fixture::with_keys(std::slice::from_ref(&t), true, 1000);
    let declared = |f: &Fixture| {
        f.rows(
            "SELECT constraint_type FROM duckdb_constraints() \
             WHERE table_name = 't' AND constraint_type = 'PRIMARY KEY'",
        )
        .len()
    };
    use ChangeKind::*;
    f.batch(vec![(1..=900)
        .map(|i| change(&t, Insert, i, "i"))
        .collect()]);
    f.batch(vec![
        vec![change(&t, Delete, 5, ""), change(&t, Insert, 5, "again")],
        vec![change(&t, Update, 6, "u")],
    ]);
    assert_eq!(declared(&f), 0, "900 rows: no key yet");
    let mut batches = 0;
    let mut next: i32 = 901;
    while declared(&f) == 0 {
        batches += 1;
        assert!(batches <= 4, "no primary key after {} rows", next - 1);
        f.batch(vec![(next..next + 300)
            .map(|i| change(&t, Insert, i, "i"))
            .collect()]);
        next += 300;
    }
    // The sink's changes of keys apply as before, and the key refuses a duplicate.
    f.batch(vec![
        vec![change(&t, Delete, 7, ""), change(&t, Insert, 7, "back")],
        vec![change(&t, Update, 8, "u")],
    ]);
    let row = |k: i32| {
        f.rows(&format!(
            "SELECT concat_ws('|', id, v) FROM s.t WHERE id = {k}"
        ))
    };
    assert_eq!(row(5), ["5|again"]);
    assert_eq!(row(6), ["6|u"]);
    assert_eq!(row(7), ["7|back"]);
    assert_eq!(row(8), ["8|u"]);
    let count = f.rows(
        "SELECT CAST(count(*) AS VARCHAR) || '/' || CAST(count(DISTINCT id) AS VARCHAR) FROM s.t",
    );
    assert_eq!(count, [format!("{0}/{0}", next - 1)]);
    let dup = f
        .sink
        .connection()
        .execute_batch("INSERT INTO s.t (id, v) VALUES (1, 'dup')");
    assert!(dup.is_err(), "the declared key refuses a duplicate");
}

/// A replica that holds a key twice when its key is declared (it differs from the source)
/// stops the batch with DuckDB's error and the fix, instead of going on without the key.
#[test]
fn a_duplicate_key_when_the_key_is_declared_stops_with_the_fix() {
    let t = table("t", true);
    let mut f = Fixture::with_keys(std::slice::from_ref(&t), true, 1000);
    use ChangeKind::*;
    f.batch(vec![(1..=900)
        .map(|i| change(&t, Insert, i, "i"))
        .collect()]);
    f.sink
        .connection()
        .execute_batch("INSERT INTO s.t (id, v) VALUES (1, 'twice')")
        .unwrap();
    let mut next: i32 = 901;
    let err = loop {
        assert!(next < 3000, "no error after {} rows", next - 1);
        if let Err(e) = f.sink.begin() {
            break e;
        }
        f.lsn += 1;
        let tx = TxInfo {
            position: Position(format!("0/{}", f.lsn)),
            commit_time_us: 0,
            backlog: tidewater_core::Backlog::Unknown,
        };
        let rows = (next..next + 300)
            .map(|i| change(&t, Insert, i, "i"))
            .collect();
        f.sink.write(&tx, 0, rows).unwrap();
        f.sink.commit(&tx.position, 0).unwrap();
        next += 300;
    };
    assert!(
        err.message().contains("declaring the primary key of s.t"),
        "{err}"
    );
    assert!(
        err.fix()
            .is_some_and(|fix| fix.contains("tidewater resnapshot --tables s.t")),
        "{err}"
    );
}

/// A new replica file is written in the newest storage format the linked DuckDB knows, not in
/// DuckDB's own default (the v0.10.2 format, tagged `v1.0.0+`), whose string compression
/// analysis held wide text outside DuckDB's memory limit (`tidewater_duckdb::storage`).
#[test]
fn a_new_replica_file_is_written_in_the_newest_storage_format() {
    let f = Fixture::new(&[table("t", true)]);
    let version = f.rows(
        "SELECT tags['storage_version'] FROM duckdb_databases() \
         WHERE database_name = current_database()",
    );
    assert_eq!(version.len(), 1);
    assert!(version[0].starts_with("v1.5"), "{version:?}");
}
