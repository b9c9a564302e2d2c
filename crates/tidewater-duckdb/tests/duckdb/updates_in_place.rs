//! Updates set in place (`crate::in_place`, and the row-at-a-time path of updates with
//! unchanged TOAST values): strings are written only where they change, the replica still ends
//! at every staged image (NULLs both ways, unchanged rows, a key the replica lacks), and
//! updates that leave a long string as it was no longer pile up in DuckDB's memory across
//! checkpoints.

use std::sync::Arc;

use tidewater_core::{Change, ChangeKind, ColumnType, Position, Sink, TableSchema, TxInfo};
use tidewater_duckdb::{DuckDbOptions, DuckDbSink};

use crate::change_log::{change, lines, open, schema};

/// Applies `changes` as one batch, one source transaction, at position `0/<n>`.
fn batch(sink: &mut DuckDbSink, n: u64, changes: Vec<Change>) {
    let position = Position(format!("0/{n:X}"));
    let tx = TxInfo {
        position: position.clone(),
        commit_time_us: 1,
        backlog: tidewater_core::Backlog::Unknown,
    };
    sink.begin().unwrap();
    sink.write(&tx, 1, changes).unwrap();
    sink.commit(&position, 1).unwrap();
}

/// A sink with table `s.t (id int, n int, <strings>)` keyed by `id`.
fn keyed_by_id(
    dir: &tempfile::TempDir,
    strings: &[(&str, ColumnType)],
) -> (DuckDbSink, Arc<TableSchema>) {
    keyed_by_id_with(open(&dir.path().join("r.duckdb"), "postgres"), strings)
}

fn keyed_by_id_with(
    mut sink: DuckDbSink,
    strings: &[(&str, ColumnType)],
) -> (DuckDbSink, Arc<TableSchema>) {
    let mut columns = vec![("id", ColumnType::Int32), ("n", ColumnType::Int32)];
    columns.extend(strings.iter().cloned());
    let t = schema("t", &columns, &[0]);
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    (sink, t)
}

#[test]
fn strings_set_where_they_change_leave_every_staged_image() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, t) = keyed_by_id(&dir, &[("a", ColumnType::Text), ("b", ColumnType::Bytes)]);
    let rows = |rows: &[[&str; 4]], kind| rows.iter().map(|r| change(&t, kind, r, None)).collect();
    let inserted = [
        ["1", "1", "alpha, long enough to be stored apart", "0a0b"],
        ["2", "2", "beta", ""],
        ["3", "3", "", "ff"],
        ["4", "4", "delta", "00"],
    ];
    batch(&mut sink, 1, rows(&inserted, Insert));
    let updated = [
        // Only the fixed-width column changes.
        ["1", "10", "alpha, long enough to be stored apart", "0a0b"],
        // A string changes, and bytes go from NULL to a value.
        ["2", "2", "beta, changed", "01"],
        // A string from NULL to a value, bytes to NULL.
        ["3", "3", "gamma", ""],
        // Nothing changes.
        ["4", "4", "delta", "00"],
    ];
    batch(&mut sink, 2, rows(&updated, Update));
    let replica = |sink: &DuckDbSink| {
        lines(
            sink.connection(),
            "SELECT concat_ws('|', id, n, coalesce(a, 'NULL'), coalesce(hex(b), 'NULL')) \
             FROM s.t ORDER BY id",
        )
    };
    assert_eq!(
        replica(&sink),
        [
            "1|10|alpha, long enough to be stored apart|0A0B",
            "2|2|beta, changed|01",
            "3|3|gamma|NULL",
            "4|4|delta|00",
        ]
    );
    // A staged key the replica lacks: every staged image still lands (deleted and inserted).
    let again = [
        ["1", "11", "alpha, changed at last", "0a0b"],
        ["9", "9", "missing", "09"],
    ];
    batch(&mut sink, 3, rows(&again, Update));
    assert_eq!(
        replica(&sink),
        [
            "1|11|alpha, changed at last|0A0B",
            "2|2|beta, changed|01",
            "3|3|gamma|NULL",
            "4|4|delta|00",
            "9|9|missing|09",
        ]
    );
}

/// DuckDB's memory tagged `ALLOCATOR`, where it keeps the strings updates write.
fn allocator_bytes(sink: &DuckDbSink) -> u64 {
    sink.connection()
        .query_row(
            "SELECT coalesce(sum(memory_usage_bytes), 0)::UBIGINT FROM duckdb_memory() \
             WHERE tag = 'ALLOCATOR'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn updates_that_keep_a_long_string_do_not_pile_up_in_memory_across_checkpoints() {
    use ChangeKind::*;
    const ROWS: usize = 20_000;
    const ROUNDS: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, t) = keyed_by_id(&dir, &[("s", ColumnType::Text)]);
    let ids: Vec<String> = (0..ROWS).map(|i| i.to_string()).collect();
    let long: Vec<String> = (0..ROWS).map(|i| format!("{i:0>100}")).collect();
    let round = |kind, n: &str| -> Vec<Change> {
        (0..ROWS)
            .map(|i| change(&t, kind, &[&ids[i], n, &long[i]], None))
            .collect()
    };
    batch(&mut sink, 1, round(Insert, "0"));
    let mut before = 0;
    for r in 1..=ROUNDS {
        // Every row's number changes; its 100-byte string is sent as it was.
        batch(&mut sink, 1 + r, round(Update, &r.to_string()));
        sink.connection().execute_batch("CHECKPOINT").unwrap();
        if r == 1 {
            before = allocator_bytes(&sink);
        }
    }
    let grown = allocator_bytes(&sink).saturating_sub(before);
    // Writing the strings back kept ~2.5 MiB per round (100 bytes and more a row).
    assert!(
        grown < 2 << 20,
        "DuckDB kept {grown} more bytes after {} more rounds of {ROWS} updates",
        ROUNDS - 1
    );
    assert_eq!(
        lines(
            sink.connection(),
            "SELECT count(*)::VARCHAR FROM s.t WHERE n = 8 AND length(s) = 100"
        ),
        [ROWS.to_string()]
    );
}

#[test]
fn updates_with_unchanged_toast_values_write_long_strings_only_where_they_change() {
    use ChangeKind::*;
    const ROWS: usize = 1_000;
    const ROUNDS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    // No key index (a replica below `primary_key_rows`): DuckDB updates the row in place
    // (with one, an update that sets the key is a delete and an insert).
    let sink = DuckDbSink::open(DuckDbOptions {
        primary_key: false,
        ..DuckDbOptions::new(dir.path().join("r.duckdb"), "default", "postgres")
    })
    .unwrap();
    let strings = [("s", ColumnType::Text), ("big", ColumnType::Text)];
    let (mut sink, t) = keyed_by_id_with(sink, &strings);
    let ids: Vec<String> = (0..ROWS).map(|i| i.to_string()).collect();
    let long: Vec<String> = (0..ROWS).map(|i| format!("{i:0>400}")).collect();
    // `~`: a value the source did not send (TOAST), which takes the row-at-a-time path.
    let round = |kind, n: &str, big: &str| -> Vec<Change> {
        (0..ROWS)
            .map(|i| change(&t, kind, &[&ids[i], n, &long[i], big], None))
            .collect()
    };
    batch(
        &mut sink,
        1,
        round(Insert, "0", "the big value, stored out of line"),
    );
    let mut before = 0;
    for r in 1..=ROUNDS {
        batch(&mut sink, 1 + r, round(Update, &r.to_string(), "~"));
        sink.connection().execute_batch("CHECKPOINT").unwrap();
        if r == 1 {
            before = allocator_bytes(&sink);
        }
    }
    let grown = allocator_bytes(&sink).saturating_sub(before);
    // Writing the strings back kept ~0.7 MiB per round.
    assert!(grown < 1 << 19, "DuckDB kept {grown} more bytes");
    // A changed string is still set, and the unsent value kept.
    let changed = change(&t, Update, &["7", "9", "a changed string", "~"], None);
    batch(&mut sink, 100, vec![changed]);
    assert_eq!(
        lines(
            sink.connection(),
            "SELECT concat_ws('|', id, n, s, big) FROM s.t WHERE id IN (6, 7) ORDER BY id"
        ),
        [
            format!("6|{ROUNDS}|{}|the big value, stored out of line", long[6]),
            "7|9|a changed string|the big value, stored out of line".to_string(),
        ]
    );
}
