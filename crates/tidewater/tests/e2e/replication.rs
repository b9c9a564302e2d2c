//! End to end against a real PostgreSQL and the real binary: snapshot then stream, every
//! change kind, keyless tables, truncate, key changes, kill -9 and exactly-once.

use crate::common;

use std::time::Duration;

use common::workload::Workload;
use common::Rig;

const SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text, qty int, price numeric(12,2));
INSERT INTO items SELECT g, 'item ' || g, g % 10, g * 1.25 FROM generate_series(1, 1000) g;
CREATE TABLE notes (a int, b text);
INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 10) g;
CREATE TABLE tags (a int, b text);
ALTER TABLE tags REPLICA IDENTITY FULL;
INSERT INTO tags VALUES (1, 'x'), (1, 'x'), (2, 'y');
CREATE TABLE pairs (k1 int, k2 text, v text, PRIMARY KEY (k2, k1));
INSERT INTO pairs VALUES (1, 'a', 'one'), (2, 'b', 'two');
";

const ITEMS: &str = "SELECT concat_ws('|', id, name, qty, price) FROM items ORDER BY id";
const NOTES: &str = "SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b";
const TAGS: &str = "SELECT concat_ws('|', a, b) FROM tags ORDER BY a, b";
const PAIRS: &str = "SELECT concat_ws('|', k1, k2, v) FROM pairs ORDER BY k1, k2";

#[test]
fn snapshot_then_stream_every_change_kind() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    let confirmed_after_snapshot = rig.confirmed_flush_lsn();

    rig.sql(
        "BEGIN;
         INSERT INTO items SELECT g, 'new ' || g, 1, 9.99 FROM generate_series(1001, 1100) g;
         UPDATE items SET qty = qty + 100 WHERE id <= 50;
         DELETE FROM items WHERE id BETWEEN 51 AND 60;
         COMMIT;
         UPDATE items SET id = 5000, name = 'moved' WHERE id = 5;
         UPDATE items SET name = 'again' WHERE id = 5000;
         INSERT INTO items VALUES (5, 'reused key', 0, 0);
         DELETE FROM items WHERE id = 6;
         INSERT INTO items VALUES (6, 'six again', 6, 6.06);
         UPDATE items SET price = NULL WHERE id = 7;
         INSERT INTO notes VALUES (11, 'inserted');
         UPDATE notes SET b = 'users can still update keyless tables' WHERE a = 1;
         UPDATE tags SET b = 'z' WHERE b = 'y';
         DELETE FROM tags WHERE ctid = (SELECT ctid FROM tags WHERE a = 1 LIMIT 1);
         UPDATE pairs SET k2 = 'c', v = 'moved' WHERE k1 = 1;
         TRUNCATE pairs;
         INSERT INTO pairs VALUES (3, 'c', 'after truncate');",
    );
    rig.wait_caught_up(Duration::from_secs(60));
    assert_ne!(
        rig.confirmed_flush_lsn(),
        confirmed_after_snapshot,
        "the slot must advance after apply"
    );
    rig.stop();

    rig.assert_same(ITEMS);
    rig.assert_same(TAGS);
    rig.assert_same(PAIRS);
    // Keyless without REPLICA IDENTITY FULL: inserts only (the update is not replicated).
    let notes = rig.replica_lines(NOTES);
    assert_eq!(notes.len(), 11);
    assert!(notes.contains(&"11|inserted".to_string()));

    let kinds = rig.replica_lines(
        "SELECT _metadata_change_type || '=' || count(*) FROM items_log GROUP BY _metadata_change_type ORDER BY 1",
    );
    assert_eq!(
        kinds,
        ["DELETE=11", "INSERT=102", "SNAPSHOT=1000", "UPDATE=53"]
    );
    assert_eq!(rig.count("SELECT count(*) FROM items_log WHERE _metadata_deleted <> (_metadata_change_type = 'DELETE')"), 0);
    assert_eq!(
        rig.count("SELECT count(*) FROM pairs_log WHERE _metadata_change_type = 'TRUNCATE'"),
        1
    );
    // Sequence numbers order the changes of one transaction.
    let seqs = rig.count(
        "SELECT count(DISTINCT _metadata_sequence) FROM items_log WHERE _metadata_change_type = 'INSERT' AND id > 1000",
    );
    assert_eq!(seqs, 100);
    // Restart without changes: nothing is applied twice.
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    assert_eq!(rig.count("SELECT count(*) FROM items_log"), 1166);
}

/// Transaction `i` of the mid-stream kill test: 20 new rows and one seed row updated.
fn mid_stream_tx(i: u64) -> String {
    format!(
        "BEGIN; INSERT INTO t SELECT g, {i}, 'w' FROM generate_series({s}, {e}) g; UPDATE t SET v = v + 1 WHERE id = {u}; COMMIT;\n",
        s = 1000 + i * 20,
        e = 1000 + i * 20 + 19,
        u = 1 + i % 100
    )
}

#[test]
fn kill_9_mid_stream_loses_and_duplicates_nothing() {
    let mut rig = Rig::new("CREATE TABLE t (id int PRIMARY KEY, v int, note text); INSERT INTO t SELECT g, 0, 'seed' FROM generate_series(1, 100) g;");
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    let workload = Workload::start(&rig, mid_stream_tx);
    // The moment: this run has applied changes of the workload, which is still writing.
    rig.kill9_mid_stream_and_restart(&addr, "public.t", 3, &workload);
    let sent = workload.finish() as i64;
    rig.wait_caught_up(Duration::from_secs(120));
    rig.stop();

    rig.assert_same("SELECT concat_ws('|', id, v, note) FROM t ORDER BY id");
    assert_eq!(
        rig.count("SELECT count(*) FROM t_log WHERE _metadata_change_type = 'INSERT'"),
        sent * 20
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM t_log WHERE _metadata_change_type = 'UPDATE'"),
        sent
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM (SELECT id FROM t_log WHERE _metadata_change_type = 'INSERT' GROUP BY id HAVING count(*) > 1)"),
        0,
        "an insert was applied twice"
    );
}

#[test]
fn one_million_row_transaction_streams_in_bounded_memory() {
    let mut rig = Rig::new("CREATE TABLE big (id int PRIMARY KEY, payload text, n numeric(10,2));");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql(
        "INSERT INTO big SELECT g, md5(g::text), g / 100.0 FROM generate_series(1, 1000000) g;",
    );
    let started = std::time::Instant::now();
    rig.wait_caught_up(Duration::from_secs(900));
    let secs = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", rig.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    eprintln!(
        "1M-row transaction applied in {secs:.1}s ({:.0} rows/s), peak RSS {} MiB",
        1e6 / secs,
        peak_kib / 1024
    );
    rig.stop();
    assert_eq!(rig.count("SELECT count(*) FROM big"), 1_000_000);
    assert_eq!(rig.count("SELECT count(*) FROM big_log"), 1_000_000);
    rig.assert_same("SELECT concat_ws('|', sum(id), sum(n), count(DISTINCT payload)) FROM big");
    assert!(
        peak_kib < 2 * 1024 * 1024,
        "peak RSS {peak_kib} KiB: memory is not bounded"
    );
}

#[test]
fn unchanged_toast_values_keep_the_replica_value() {
    // Values above ~2 kB that do not compress are stored out of line (TOAST); an update that
    // does not touch them sends them as "unchanged".
    let mut rig = Rig::new(
        "CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
         INSERT INTO docs SELECT g, 'title ' || g, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 200) i) FROM generate_series(1, 3) g;",
    );
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql(
        "UPDATE docs SET title = 'renamed' WHERE id = 1;
         BEGIN; UPDATE docs SET title = 'twice' WHERE id = 2; UPDATE docs SET title = 'twice again' WHERE id = 2; COMMIT;
         UPDATE docs SET id = 30, title = 'moved' WHERE id = 3;
         INSERT INTO docs VALUES (4, 'new', repeat('x', 10));",
    );
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, title, md5(body)) FROM docs ORDER BY id");
    // The log holds full new images, unchanged values included: each update's row in
    // docs_log carries the body the source holds (no update changed a body).
    let bodies = |id: i32| {
        rig.sql(&format!("SELECT md5(body) FROM docs WHERE id = {id}"))
            .trim()
            .to_string()
    };
    let expected: Vec<String> = [
        (1, "renamed", bodies(1)),
        (2, "twice", bodies(2)),
        (2, "twice again", bodies(2)),
        (30, "moved", bodies(30)),
    ]
    .iter()
    .map(|(id, title, md5)| format!("{id}|{title}|{md5}"))
    .collect();
    assert_eq!(
        rig.replica_lines(
            "SELECT concat_ws('|', id, title, coalesce(md5(body), 'NULL')) FROM docs_log \
             WHERE _metadata_change_type = 'UPDATE' ORDER BY id, title"
        ),
        expected,
        "docs_log's update rows must hold the unchanged bodies"
    );
}

#[test]
fn survives_source_restart_and_a_killed_walsender() {
    let mut rig = Rig::new("CREATE TABLE t (id int PRIMARY KEY, v text);");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql("INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g;");
    rig.wait_caught_up(Duration::from_secs(60));

    rig.sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'tidewater';");
    rig.sql("INSERT INTO t SELECT g, 'b' FROM generate_series(101, 200) g;");
    rig.wait_caught_up(Duration::from_secs(90));

    rig.restart_source();
    rig.sql("UPDATE t SET v = 'c' WHERE id % 2 = 0; DELETE FROM t WHERE id > 190;");
    rig.wait_caught_up(Duration::from_secs(120));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
    assert_eq!(rig.count("SELECT count(*) FROM t_log"), 200 + 100 + 10);
    assert!(
        rig.log().contains("resuming from the committed position"),
        "{}",
        rig.log()
    );
}
