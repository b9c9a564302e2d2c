//! `[apply] log_tables` turned off and on again between runs: the changes applied while it
//! was off never reached the `_log`, so the log restarts (a `TRUNCATE` row and the replica's
//! rows as `SNAPSHOT` rows, one ordinal of its own) and replaying it gives the replica again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tidewater_core::{ChangeKind, Sink, TableSchema};
use tidewater_duckdb::duckdb::Connection;
use tidewater_duckdb::DuckDbSink;

use crate::change_log::{batch, change, keyed, lines, open_logging};

/// One run: opens the file with `log_tables`, prepares `tables` and applies `txs`.
fn run(
    path: &Path,
    log_tables: bool,
    tables: &[Arc<TableSchema>],
    txs: Vec<(&str, Vec<tidewater_core::Change>)>,
) -> DuckDbSink {
    let mut sink = open_logging(path, log_tables);
    sink.state().unwrap();
    sink.prepare(tables).unwrap();
    if !txs.is_empty() {
        batch(&mut sink, txs);
    }
    sink
}

/// The rows `t`'s log says the replica holds: its entries replayed in the documented order
/// (`_metadata_tx, _metadata_sequence`), as `id:v`.
fn replayed(conn: &Connection, t: &str) -> Vec<String> {
    let entries = lines(
        conn,
        &format!(
            "SELECT concat_ws('|', _metadata_change_type, id, v) FROM s.{t}_log \
             ORDER BY _metadata_tx, _metadata_sequence"
        ),
    );
    let mut live = BTreeMap::new();
    for e in entries {
        let mut parts = e.split('|');
        let kind = parts.next().unwrap();
        let id: i64 = parts.next().map(|i| i.parse().unwrap()).unwrap_or(0);
        let v = parts.next().unwrap_or_default().to_string();
        match kind {
            "TRUNCATE" => live.clear(),
            "DELETE" => {
                live.remove(&id);
            }
            _ => {
                live.insert(id, v);
            }
        }
    }
    live.into_iter()
        .map(|(id, v)| format!("{id}:{v}"))
        .collect()
}

fn replica(conn: &Connection, t: &str) -> Vec<String> {
    lines(
        conn,
        &format!("SELECT concat(id, ':', v) FROM s.{t} ORDER BY id"),
    )
}

#[test]
fn a_log_turned_on_again_restarts_from_the_replica() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let (t, u) = (keyed("t"), keyed("u"));
    let snapshot = vec![(
        "0/100",
        vec![
            change(&t, Snapshot, &["1", "a"], None),
            change(&t, Snapshot, &["2", "b"], None),
            change(&t, Snapshot, &["3", "c"], None),
        ],
    )];
    drop(run(&path, true, std::slice::from_ref(&t), snapshot));
    // Off: an update, a delete and an insert of `t`; `u` appears and is written without a log.
    let off = vec![
        (
            "0/200",
            vec![
                change(&t, Update, &["1", "changed"], None),
                change(&t, Delete, &["2", ""], None),
            ],
        ),
        (
            "0/300",
            vec![
                change(&t, Insert, &["4", "d"], None),
                change(&u, Insert, &["1", "u1"], None),
            ],
        ),
    ];
    drop(run(&path, false, std::slice::from_ref(&t), off));
    // On again: the logs restart, then the stream goes on being logged.
    let on = vec![("0/400", vec![change(&t, Update, &["3", "c2"], None)])];
    let sink = run(&path, true, &[t.clone(), u.clone()], on);
    let conn = sink.connection();
    for name in ["t", "u"] {
        assert_eq!(replayed(conn, name), replica(conn, name), "{name}");
    }
    assert_eq!(replica(conn, "t"), ["1:changed", "3:c2", "4:d"]);
    // The snapshot took ordinal 1 and the two transactions while off 2 and 3; the restart is
    // 4 (both tables), the next transaction 5.
    // (The SNAPSHOT rows come in the replica's scan order: sequences 1 to 3, ids in any order.)
    let t_log = lines(
        conn,
        "SELECT concat_ws(' ', _metadata_tx, _metadata_change_type, id) FROM s.t_log \
         WHERE _metadata_tx > 1 ORDER BY _metadata_tx, _metadata_change_type, id",
    );
    assert_eq!(
        t_log,
        [
            "4 SNAPSHOT 1",
            "4 SNAPSHOT 3",
            "4 SNAPSHOT 4",
            "4 TRUNCATE",
            "5 UPDATE 3"
        ]
    );
    let sequences = lines(
        conn,
        "SELECT string_agg(_metadata_sequence::VARCHAR, ' ' ORDER BY _metadata_sequence) \
         FROM s.t_log WHERE _metadata_tx = 4",
    );
    assert_eq!(sequences, ["0 1 2 3"]);
    let u_log = lines(
        conn,
        "SELECT concat_ws(' ', _metadata_tx, _metadata_sequence, _metadata_change_type, id) \
         FROM s.u_log ORDER BY _metadata_sequence",
    );
    assert_eq!(u_log, ["4 4 TRUNCATE", "4 5 SNAPSHOT 1"]);
    drop(sink);
    // Reopened with the log on: complete, so nothing restarts again.
    let sink = run(&path, true, &[t.clone(), u.clone()], Vec::new());
    let restarts = lines(
        sink.connection(),
        "SELECT count(*)::VARCHAR FROM s.t_log WHERE _metadata_change_type = 'TRUNCATE'",
    );
    assert_eq!(restarts, ["1"]);
}
