//! End to end against a real MariaDB (row binlog, GTIDs) and the real binary: snapshot then
//! stream, every change kind, multi-statement transactions, keyless tables, truncate, key
//! changes, a snapshot racing concurrent writes, kill -9 and exactly-once.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::workload::Workload;
use common::Rig;

const SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name varchar(100), qty int, price decimal(12,2));
INSERT INTO items SELECT seq, concat('item ', seq), seq % 10, seq * 1.25 FROM seq_1_to_1000;
CREATE TABLE notes (a int, b text);
INSERT INTO notes SELECT seq, concat('note ', seq) FROM seq_1_to_10;
CREATE TABLE pairs (k1 int, k2 varchar(10), v text, PRIMARY KEY (k2, k1));
INSERT INTO pairs VALUES (1, 'a', 'one'), (2, 'b', 'two');
";

const ITEMS: &str = "SELECT concat_ws('|', id, name, qty, price) FROM items ORDER BY id";
const NOTES: &str = "SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b";
const PAIRS: &str = "SELECT concat_ws('|', k1, k2, v) FROM pairs ORDER BY k1, k2";

#[test]
fn snapshot_then_stream_every_change_kind() {
    let mut rig = Rig::mysql(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));

    rig.sql(
        "BEGIN;
         INSERT INTO items SELECT seq, concat('new ', seq), 1, 9.99 FROM seq_1001_to_1100;
         UPDATE items SET qty = qty + 100 WHERE id <= 50;
         DELETE FROM items WHERE id BETWEEN 51 AND 60;
         COMMIT;
         UPDATE items SET id = 5000, name = 'moved' WHERE id = 5;
         UPDATE items SET name = 'again' WHERE id = 5000;
         INSERT INTO items VALUES (5, 'reused key', 0, 0);
         DELETE FROM items WHERE id = 6;
         INSERT INTO items VALUES (6, 'six again', 6, 6.06);
         UPDATE items SET price = NULL WHERE id = 7;
         INSERT INTO notes VALUES (11, 'inserted'), (11, 'inserted');
         UPDATE notes SET b = 'updated' WHERE a = 1;
         DELETE FROM notes WHERE a = 11 LIMIT 1;
         UPDATE pairs SET k2 = 'c', v = 'moved' WHERE k1 = 1;
         TRUNCATE pairs;
         INSERT INTO pairs VALUES (3, 'c', 'after truncate');",
    );
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();

    rig.assert_same(ITEMS);
    rig.assert_same(NOTES);
    rig.assert_same(PAIRS);
    let kinds = rig.replica_lines(
        "SELECT _metadata_change_type || '=' || count(*) FROM items_log GROUP BY _metadata_change_type ORDER BY 1",
    );
    assert_eq!(
        kinds,
        ["DELETE=11", "INSERT=102", "SNAPSHOT=1000", "UPDATE=53"]
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM pairs_log WHERE _metadata_change_type = 'TRUNCATE'"),
        1
    );
    // The log holds the changes in source order: by GTID sequence number, then by sequence
    // within the transaction.
    let mut expected: Vec<String> = Vec::new();
    expected.extend((1001..=1100).map(|id| format!("INSERT {id}")));
    expected.extend((1..=50).map(|id| format!("UPDATE {id}")));
    expected.extend((51..=60).map(|id| format!("DELETE {id}")));
    for change in [
        "UPDATE 5000",
        "UPDATE 5000",
        "INSERT 5",
        "DELETE 6",
        "INSERT 6",
        "UPDATE 7",
    ] {
        expected.push(change.to_string());
    }
    assert_eq!(
        rig.replica_lines(
            "SELECT _metadata_change_type || ' ' || id FROM items_log \
             WHERE _metadata_change_type <> 'SNAPSHOT' \
             ORDER BY CAST(split_part(_metadata_position, '-', 4) AS BIGINT), _metadata_sequence"
        ),
        expected
    );
    // Every change of one source transaction carries its GTID position.
    let positions = rig.replica_lines(
        "SELECT DISTINCT _metadata_position FROM items_log WHERE _metadata_change_type <> 'SNAPSHOT' ORDER BY 1",
    );
    assert!(
        positions.iter().all(|p| p.starts_with("mariadb-gtid:0-1-")),
        "{positions:?}"
    );
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM (SELECT _metadata_position, _metadata_sequence FROM items_log \
             GROUP BY ALL HAVING count(*) > 1)"
        ),
        0,
        "(position, sequence) identifies a change"
    );
}

/// Transaction `i` of the kill test: 10 new rows and one seed row updated.
fn kill_test_tx(i: u64) -> String {
    format!(
        "BEGIN; INSERT INTO t SELECT seq, {i} FROM seq_{s}_to_{e}; UPDATE t SET v = v + 1 WHERE id = {u}; COMMIT;\n",
        s = 1000 + i * 10,
        e = 1000 + i * 10 + 9,
        u = 1 + i % 100
    )
}

#[test]
fn kill9_and_restart_apply_every_change_exactly_once() {
    let mut rig =
        Rig::mysql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT seq, 0 FROM seq_1_to_100;");
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    let workload = Workload::start(&rig, kill_test_tx);
    // The moment: this run has applied changes of the workload, which is still writing.
    rig.kill9_mid_stream_and_restart(&addr, "shop.t", 4, &workload);
    let sent = workload.finish() as i64;
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    assert_eq!(
        rig.replica_lines(
            "SELECT _metadata_change_type || '=' || count(*) FROM t_log GROUP BY _metadata_change_type ORDER BY 1"
        ),
        [
            format!("INSERT={}", sent * 10),
            "SNAPSHOT=100".to_string(),
            format!("UPDATE={sent}")
        ]
    );
}

/// Rows of the snapshot racing writes: enough that the copy takes a while.
const RACED_ROWS: u64 = 200_000;

#[test]
fn snapshot_racing_concurrent_writes_loses_and_duplicates_nothing() {
    let mut rig = Rig::mysql(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT seq, 0 FROM seq_1_to_{RACED_ROWS};"
    ));
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let port = rig.my().port();
    let (done2, written2) = (done.clone(), written.clone());
    // Writers commit small transactions before, throughout and after the snapshot: write `n`
    // inserts row 1000000 + n.
    let writer = std::thread::spawn(move || {
        let mut n = 0;
        while !done2.load(Ordering::Relaxed) {
            let id = 1_000_000 + n;
            let status = std::process::Command::new("mariadb")
                .args(["--no-defaults", "-h127.0.0.1", "-uroot", "shop"])
                .arg(format!("-P{port}"))
                .arg("-e")
                .arg(format!(
                    "INSERT INTO t VALUES ({id}, 1); UPDATE t SET v = v + 1 WHERE id = {};",
                    n * 7 % RACED_ROWS + 1
                ))
                .status()
                .expect("mariadb client");
            assert!(status.success());
            n += 1;
            written2.store(n, Ordering::Relaxed);
        }
        n
    });
    rig.start();
    tidewater_harness::wait_until(Duration::from_secs(120), "the snapshot to commit", || {
        rig.log().contains("initial snapshot committed")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    // Writes 0..before_commit had committed at the source when the snapshot committed.
    let before_commit = written.load(Ordering::Relaxed);
    let after = before_commit + 5;
    tidewater_harness::wait_until(Duration::from_secs(60), "writes after the snapshot", || {
        written.load(Ordering::Relaxed) >= after
    })
    .unwrap();
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    // Each row appears in the log at most once as SNAPSHOT and at most once as INSERT (the
    // copy runs in chunks beside the stream: a row inserted before its key range was copied is
    // streamed, then copied), and the last log entry of every key is its replica row.
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM (SELECT id FROM t_log WHERE _metadata_change_type IN ('SNAPSHOT', 'INSERT') \
             GROUP BY id, _metadata_change_type HAVING count(*) <> 1)"
        ),
        0
    );
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM ((SELECT id, v FROM (SELECT * FROM t_log QUALIFY row_number() \
             OVER (PARTITION BY id ORDER BY _metadata_tx DESC, _metadata_sequence DESC) = 1) \
             WHERE NOT _metadata_deleted) EXCEPT SELECT id, v FROM t)"
        ),
        0
    );
    // The writes overlapped the snapshot: some were copied by it, and some that had committed
    // before it did were not (they came after its consistent point) and were streamed.
    let copied = rig.count(
        "SELECT count(*) FROM t_log WHERE id >= 1000000 AND _metadata_change_type = 'SNAPSHOT'",
    );
    let streamed_during = rig.count(&format!(
        "SELECT count(*) FROM t_log WHERE id >= 1000000 AND id < {} AND _metadata_change_type = 'INSERT'",
        1_000_000 + before_commit
    ));
    assert!(
        copied > 0 && streamed_during > 0,
        "{copied} written rows copied, {streamed_during} of the {before_commit} written before \
         the snapshot committed streamed: the writes did not overlap the snapshot"
    );
}

#[test]
fn source_restart_mid_stream_resumes_by_gtid() {
    let mut rig = Rig::mysql("CREATE TABLE t (id int PRIMARY KEY, v text);");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql("INSERT INTO t SELECT seq, 'before' FROM seq_1_to_100;");
    rig.restart_source();
    rig.sql("INSERT INTO t SELECT seq, 'after' FROM seq_101_to_200;");
    rig.wait_caught_up(Duration::from_secs(90));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    assert_eq!(rig.count("SELECT count(*) FROM t_log"), 200);
}

#[test]
fn a_one_million_row_transaction_streams_through() {
    let mut rig = Rig::mysql("CREATE TABLE big (id int PRIMARY KEY, v varchar(20));");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql("INSERT INTO big SELECT seq, concat('v', seq) FROM seq_1_to_1000000;");
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    assert_eq!(rig.count("SELECT count(*) FROM big"), 1_000_000);
    assert_eq!(
        rig.count("SELECT count(*) FROM big_log WHERE _metadata_change_type = 'INSERT'"),
        1_000_000
    );
    // One source transaction: one position, sequences 0..n-1.
    assert_eq!(
        rig.count("SELECT count(DISTINCT _metadata_position) FROM big_log"),
        1
    );
    assert_eq!(
        rig.count("SELECT max(_metadata_sequence) FROM big_log"),
        999_999
    );
    rig.assert_same("SELECT concat_ws('|', count(*), sum(id), max(v)) FROM big");
}
