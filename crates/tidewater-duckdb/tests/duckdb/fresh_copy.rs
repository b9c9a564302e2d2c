//! A copy that began on an empty replica table appends its chunk rows, unless a streamed change
//! touched their key (`TableState::fresh_copy`): streamed changes into the range not copied
//! yet, a key change, and a chunk that already shows a change streamed after it, still end at
//! the source's rows, every key once, with the log's last entry of each key equal to its row.

use tidewater_core::{ChangeKind, CopyProgress, Position, Sink, TxInfo};

use crate::change_log::{change, keyed, lines, open};

fn tx(position: &str) -> TxInfo {
    TxInfo {
        position: Position(position.into()),
        commit_time_us: 1,
        backlog: tidewater_core::Backlog::Unknown,
    }
}

#[test]
fn chunk_rows_of_touched_keys_replace_what_was_streamed() {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(&dir.path().join("r.duckdb"), "postgres");
    let t = keyed("t");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    sink.begin().unwrap();
    sink.write_progress(&[CopyProgress::new(t.id.clone())])
        .unwrap();
    let first = [["1", "c1"], ["2", "c2"], ["3", "c3"]].map(|r| change(&t, Snapshot, &r, None));
    sink.write(&tx("0/100"), 1, first.to_vec()).unwrap();
    sink.commit(&Position("0/100".into()), 1).unwrap();

    sink.begin().unwrap();
    // Streamed: an update of a key not copied yet (its row is missing: inserted leniently),
    // an insert of one, a key change into that range, an update of a copied key.
    let streamed = vec![
        change(&t, Update, &["5", "streamed5"], None),
        change(&t, Insert, &["7", "streamed7"], None),
        change(&t, Update, &["8", "moved"], Some(&["2"])),
        change(&t, Update, &["1", "updated1"], None),
    ];
    sink.write(&tx("0/200"), 1, streamed).unwrap();
    sink.commit(&Position("0/200".into()), 1).unwrap();
    sink.begin().unwrap();
    // The next chunk shows every delivered change, and one delivered after it (key 9).
    let chunk = [
        ["4", "c4"],
        ["5", "streamed5"],
        ["6", "c6"],
        ["7", "streamed7"],
        ["8", "moved"],
        ["9", "c9"],
    ]
    .map(|r| change(&t, Snapshot, &r, None));
    sink.write(&tx("0/300"), 1, chunk.to_vec()).unwrap();
    sink.write(
        &tx("0/400"),
        1,
        vec![change(&t, Insert, &["9", "c9"], None)],
    )
    .unwrap();
    sink.commit(&Position("0/400".into()), 1).unwrap();

    let conn = sink.connection();
    let replica = lines(conn, "SELECT id || '=' || v FROM s.t ORDER BY id");
    let want = [
        "1=updated1",
        "3=c3",
        "4=c4",
        "5=streamed5",
        "6=c6",
        "7=streamed7",
        "8=moved",
        "9=c9",
    ];
    assert_eq!(replica, want);
    let last_logged = lines(
        conn,
        "SELECT id || '=' || v FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY \
         _metadata_tx DESC, _metadata_sequence DESC) AS n FROM s.t_log) \
         WHERE n = 1 AND id IN (SELECT id FROM s.t) ORDER BY id",
    );
    assert_eq!(
        last_logged, want,
        "the log's last entry of each key is the replica's row"
    );
}
