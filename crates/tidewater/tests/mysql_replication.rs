//! End to end against a real MariaDB (row binlog, GTIDs) and the real binary: snapshot then
//! stream, every change kind, multi-statement transactions, keyless tables, truncate, key
//! changes, a snapshot racing concurrent writes, kill -9 and exactly-once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    // Every change of one source transaction carries its GTID position, in order.
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

#[test]
fn kill9_and_restart_apply_every_change_exactly_once() {
    let mut rig = Rig::mysql("CREATE TABLE t (id int PRIMARY KEY, v int);");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    let mut expected_changes = 0;
    for round in 0..4 {
        let base = round * 1000;
        rig.sql(&format!(
            "INSERT INTO t SELECT seq, 0 FROM seq_{}_to_{};
             UPDATE t SET v = v + 1 WHERE id % 3 = 0;",
            base + 1,
            base + 1000
        ));
        expected_changes += 1000;
        expected_changes += rig
            .sql("SELECT count(*) FROM t WHERE id % 3 = 0")
            .trim()
            .parse::<i64>()
            .unwrap();
        rig.kill9();
        rig.start();
    }
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    assert_eq!(rig.count("SELECT count(*) FROM t_log"), expected_changes);
}

#[test]
fn snapshot_racing_concurrent_writes_loses_and_duplicates_nothing() {
    let mut rig = Rig::mysql(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT seq, 0 FROM seq_1_to_50000;",
    );
    let url_rig_done = Arc::new(AtomicBool::new(false));
    let port = rig.my().port();
    let done = url_rig_done.clone();
    // Writers commit small transactions throughout the snapshot.
    let writer = std::thread::spawn(move || {
        let mut n = 0;
        while !done.load(Ordering::Relaxed) {
            let id = 100_000 + n;
            let status = std::process::Command::new("mariadb")
                .args(["--no-defaults", "-h127.0.0.1", "-uroot", "shop"])
                .arg(format!("-P{port}"))
                .arg("-e")
                .arg(format!(
                    "INSERT INTO t VALUES ({id}, 1); UPDATE t SET v = v + 1 WHERE id = {};",
                    n * 7 % 50000 + 1
                ))
                .status()
                .expect("mariadb client");
            assert!(status.success());
            n += 1;
        }
        n
    });
    rig.start();
    rig.wait_caught_up(Duration::from_secs(120));
    url_rig_done.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    assert!(writes > 0);
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    // Each inserted row appears in the log exactly once, as SNAPSHOT or as INSERT.
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM (SELECT id FROM t_log WHERE _metadata_change_type IN ('SNAPSHOT', 'INSERT') \
             GROUP BY id HAVING count(*) <> 1)"
        ),
        0
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
