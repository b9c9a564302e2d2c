//! The DuckDB change log against real PostgreSQL and MariaDB servers and the real binary:
//!
//! - `ORDER BY _metadata_tx, _metadata_sequence` is the source's commit order, checked against
//!   the source's own record of it (a `test_decoding` slot; MariaDB's binlog events), with
//!   concurrent writers, across a PostgreSQL LSN digit boundary (0/10000000) and a MariaDB
//!   binlog rotation with GTID sequence numbers of 2, 3 and 4 digits;
//! - a replica written by the previous layout gets `_metadata_tx` on start and the order holds;
//! - a key-changing UPDATE's log row carries the old key (`_metadata_old_<key>`);
//! - a clean stop checkpoints: with its `.wal` deleted the replica still verifies clean.

use crate::common;

use std::time::Duration;

use common::{run_cli, Rig};
use tidewater_duckdb::duckdb::Connection;

const T: Duration = Duration::from_secs(120);
const WRITERS: u64 = 3;
const TXS_PER_WRITER: u64 = 12;

const PG_SETUP: &str = "
CREATE TABLE events (id bigint PRIMARY KEY, writer int NOT NULL, v text);
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, last bigint);
INSERT INTO counters SELECT g, 0, 0 FROM generate_series(0, 2) g;
";

const MY_SETUP: &str = "
CREATE TABLE events (id bigint PRIMARY KEY, writer int NOT NULL, v text);
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, last bigint);
INSERT INTO counters VALUES (0, 0, 0), (1, 0, 0), (2, 0, 0);
";

/// One writer's transaction: two tables, with a pause inside so that concurrent writers'
/// transactions overlap and commit in an order other than the one they began in.
fn writer_tx(rig: &Rig, id: u64, writer: u64) -> String {
    let pause = match &rig.src {
        common::Src::Pg(_) => "SELECT pg_sleep(random() / 50);",
        common::Src::My(_) => "DO SLEEP(RAND() / 50);",
    };
    format!(
        "BEGIN;
         INSERT INTO events VALUES ({id}, {writer}, 'tx {id}');
         {pause}
         UPDATE counters SET n = n + 1, last = {id} WHERE id = {writer};
         COMMIT;"
    )
}

/// `WRITERS` clients committing `TXS_PER_WRITER` transactions each, concurrently; ids from
/// `first_id`.
fn concurrent_writes(rig: &Rig, first_id: u64) {
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            s.spawn(move || {
                for i in 0..TXS_PER_WRITER {
                    let id = first_id + i * WRITERS + w;
                    rig.sql(&writer_tx(rig, id, w));
                }
            });
        }
    });
}

/// The streamed changes of both logs as `table KIND id` (for `counters`, the id of the event
/// its transaction inserted), in `order`.
fn replica_changes(rig: &Rig, order: &str) -> Vec<String> {
    rig.replica_lines(&format!(
        "SELECT concat_ws(' ', t, kind, k) FROM ( \
         SELECT 'events' AS t, _metadata_change_type AS kind, id AS k, _metadata_tx, \
         _metadata_sequence, _metadata_position FROM events_log UNION ALL \
         SELECT 'counters', _metadata_change_type, last, _metadata_tx, _metadata_sequence, \
         _metadata_position FROM counters_log) WHERE kind <> 'SNAPSHOT' ORDER BY {order}"
    ))
}

/// Ordinals: the snapshot's rows share 1, and the streamed transactions follow with no gap
/// and no repeat (one position each). Returns the number of streamed transactions.
fn assert_ordinals(rig: &Rig) -> i64 {
    let logs = "(SELECT _metadata_tx, _metadata_position, _metadata_change_type FROM events_log \
                UNION ALL SELECT _metadata_tx, _metadata_position, _metadata_change_type \
                FROM counters_log)";
    assert_eq!(
        rig.replica_lines(&format!(
            "SELECT DISTINCT CAST(_metadata_tx AS VARCHAR) FROM {logs} \
             WHERE _metadata_change_type = 'SNAPSHOT'"
        )),
        ["1"],
        "the snapshot's ordinal"
    );
    let (n, max) = (
        rig.count(&format!("SELECT count(DISTINCT _metadata_tx) FROM {logs}")),
        rig.count(&format!("SELECT max(_metadata_tx) FROM {logs}")),
    );
    assert_eq!(n, max, "ordinals 1..={max} without gaps");
    assert_eq!(
        rig.count(&format!(
            "SELECT count(*) FROM (SELECT _metadata_tx FROM {logs} GROUP BY 1 \
             HAVING count(DISTINCT _metadata_position) > 1)"
        )),
        0,
        "an ordinal names one transaction"
    );
    max - 1
}

/// PostgreSQL's own record of commit order: the changes a `test_decoding` slot decodes, as
/// [`replica_changes`] shows them.
fn decoded_changes(rig: &Rig, slot: &str) -> Vec<String> {
    let rows = rig.source_lines(&format!(
        "SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL, \
         'skip-empty-xacts', '1') WHERE data LIKE 'table %'"
    ));
    rows.iter()
        .map(|line| {
            // table public.events: UPDATE: [old-key: id[bigint]:1 new-tuple: ]id[bigint]:2 ...
            let rest = line.strip_prefix("table public.").expect(line);
            let (table, rest) = rest.split_once(": ").expect(line);
            let (kind, rest) = rest.split_once(": ").expect(line);
            let rest = rest.split_once("new-tuple: ").map_or(rest, |(_, r)| r);
            let column = if table == "counters" { "last[" } else { "id[" };
            let value = rest[rest.find(column).expect(line)..]
                .split_once("]:")
                .unwrap()
                .1;
            let value = value.split(' ').next().unwrap();
            format!("{table} {kind} {value}")
        })
        .collect()
}

/// The writers' transactions committed in another order than their ids (the order in which
/// each writer began them): the commit order is the source's, not one the test set.
fn assert_overlapping_commits(changes: &[String]) {
    let ids: Vec<u64> = changes
        .iter()
        .filter_map(|c| c.strip_prefix("events INSERT "))
        .map(|id| id.parse().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_ne!(ids, sorted, "concurrent transactions committed in id order");
}

fn current_lsn(rig: &Rig) -> String {
    rig.sql("SELECT pg_current_wal_lsn()").trim().to_string()
}

/// Writes WAL (non-transactional messages and segment switches) until the LSN passes
/// 0/10000000, where LSN text gains a digit.
fn cross_lsn_digit_boundary(rig: &Rig) {
    rig.sql(
        "DO $$ BEGIN
           WHILE pg_current_wal_lsn() < '0/10000000' LOOP
             PERFORM pg_logical_emit_message(false, 'filler', 'x');
             PERFORM pg_switch_wal();
           END LOOP;
         END $$;",
    );
}

#[test]
fn postgres_log_order_is_commit_order_across_an_lsn_digit_boundary() {
    let mut rig = Rig::new(PG_SETUP);
    rig.start();
    rig.wait_caught_up(T);
    rig.sql("SELECT pg_create_logical_replication_slot('order_check', 'test_decoding')");
    let before = current_lsn(&rig);
    assert!(
        before.starts_with("0/") && before.len() <= "0/FFFFFFF".len(),
        "a fresh cluster's LSN has fewer than 8 low digits: {before}"
    );
    concurrent_writes(&rig, 1);
    cross_lsn_digit_boundary(&rig);
    let after = current_lsn(&rig);
    concurrent_writes(&rig, 1000);
    rig.wait_caught_up(T);
    rig.stop();
    eprintln!("LSN {before} -> {after}");

    let expected = decoded_changes(&rig, "order_check");
    let txs = (2 * WRITERS * TXS_PER_WRITER) as usize;
    assert_eq!(expected.len(), 2 * txs, "{expected:?}");
    assert_overlapping_commits(&expected);

    assert_eq!(
        replica_changes(&rig, "_metadata_tx, _metadata_sequence"),
        expected
    );
    // PostgreSQL positions also sort as they read, on both sides of the boundary.
    assert_eq!(
        replica_changes(&rig, "_metadata_position, _metadata_sequence"),
        expected
    );
    let sides = rig.replica_lines(
        "SELECT DISTINCT CAST(_metadata_position < '00000000/10000000' AS VARCHAR) FROM events_log \
         WHERE _metadata_change_type = 'INSERT' ORDER BY 1",
    );
    assert_eq!(
        sides,
        ["false", "true"],
        "changes on both sides of 0/10000000"
    );
    assert_eq!(assert_ordinals(&rig), txs as i64);
}

/// MariaDB's own record of commit order: the GTIDs of the binlog's transactions, file by
/// file, after `from` (a GTID sequence number).
fn binlog_gtids(rig: &Rig, from: u64) -> Vec<String> {
    let mut gtids = Vec::new();
    for file in rig.source_lines("SHOW BINARY LOGS") {
        let name = file.split('\t').next().unwrap();
        for event in rig.source_lines(&format!("SHOW BINLOG EVENTS IN '{name}'")) {
            let cols: Vec<&str> = event.split('\t').collect();
            if let Some(gtid) = cols.get(5).and_then(|i| i.strip_prefix("BEGIN GTID ")) {
                // "BEGIN GTID 0-1-8", or "BEGIN GTID 0-1-8 cid=42" when group-committed.
                let gtid = gtid.split_whitespace().next().unwrap();
                let seq: u64 = gtid.rsplit('-').next().unwrap().parse().unwrap();
                if seq > from {
                    gtids.push(gtid.to_string());
                }
            }
        }
    }
    gtids
}

fn gtid_seq(rig: &Rig) -> u64 {
    let pos = rig.sql("SELECT @@gtid_binlog_pos");
    pos.trim().rsplit('-').next().unwrap().parse().unwrap()
}

#[test]
fn mariadb_log_order_is_commit_order_across_a_binlog_rotation() {
    let mut rig = Rig::mysql(MY_SETUP);
    rig.start();
    rig.wait_caught_up(T);
    let from = gtid_seq(&rig);
    assert!(from < 90, "two-digit sequence numbers ahead: {from}");
    concurrent_writes(&rig, 1);
    rig.sql("FLUSH BINARY LOGS");
    // The next GTID is 0-1-990: the writers go on through 3- and 4-digit sequence numbers.
    rig.sql(&format!(
        "SET SESSION gtid_seq_no = 990; {}",
        writer_tx(&rig, 999, 0)
    ));
    concurrent_writes(&rig, 1000);
    rig.wait_caught_up(T);
    rig.stop();

    let expected: Vec<String> = binlog_gtids(&rig, from)
        .into_iter()
        .map(|g| format!("mariadb-gtid:{g}"))
        .collect();
    let txs = 2 * WRITERS * TXS_PER_WRITER + 1;
    assert_eq!(expected.len() as u64, txs, "{expected:?}");
    let seqs: Vec<u64> = expected
        .iter()
        .map(|g| g.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.iter().any(|&s| s < 100)
            && seqs.iter().any(|&s| (100..1000).contains(&s))
            && seqs.iter().any(|&s| s >= 1000),
        "{seqs:?}"
    );
    let replayed = rig.replica_lines(
        "SELECT _metadata_position FROM (SELECT _metadata_tx, _metadata_position FROM events_log \
         UNION ALL SELECT _metadata_tx, _metadata_position FROM counters_log) \
         WHERE _metadata_tx > 1 GROUP BY _metadata_tx, _metadata_position ORDER BY _metadata_tx",
    );
    assert_eq!(replayed, expected);
    // Within each transaction, its changes in order.
    let changes = replica_changes(&rig, "_metadata_tx, _metadata_sequence");
    for pair in changes.chunks(2) {
        let id = pair[0].strip_prefix("events INSERT ").expect(&pair[0]);
        assert_eq!(pair[1], format!("counters UPDATE {id}"), "{changes:?}");
    }
    assert_overlapping_commits(&changes);
    assert_eq!(assert_ordinals(&rig), txs as i64);
}

/// Rewrites a replica to the layout before ordinals (as tidewater at 3e69e83 wrote it): no
/// `_metadata_tx` or `_metadata_old_<key>`, unpadded LSNs, no `tx_ordinal`.
fn downgrade_to_previous_layout(db: &std::path::Path) {
    let conn = Connection::open(db).unwrap();
    let unpad = |part: u8| {
        format!(
            "coalesce(nullif(ltrim(split_part(_metadata_position, '/', {part}), '0'), ''), '0')"
        )
    };
    for log in ["public.events_log", "public.counters_log"] {
        conn.execute_batch(&format!(
            "ALTER TABLE {log} DROP COLUMN _metadata_tx;
             ALTER TABLE {log} DROP COLUMN _metadata_old_id;
             UPDATE {log} SET _metadata_position = {} || '/' || {};",
            unpad(1),
            unpad(2)
        ))
        .unwrap();
    }
    conn.execute_batch(
        "CREATE TABLE _tidewater.old AS SELECT * EXCLUDE (tx_ordinal, acked_position, partial_position, partial_changes,
             partial_fingerprint, partial_tx) FROM _tidewater.pipeline;
         DROP TABLE _tidewater.pipeline;
         CREATE TABLE _tidewater.pipeline (name VARCHAR PRIMARY KEY, source_type VARCHAR,
             position VARCHAR, last_source_commit TIMESTAMPTZ, last_apply TIMESTAMPTZ,
             transactions_applied BIGINT, changes_applied BIGINT);
         INSERT INTO _tidewater.pipeline SELECT * FROM _tidewater.old;
         DROP TABLE _tidewater.old;
         CHECKPOINT;",
    )
    .unwrap();
}

#[test]
fn a_replica_of_the_previous_layout_gets_ordinals_on_start() {
    let mut rig = Rig::new(PG_SETUP);
    rig.start();
    rig.wait_caught_up(T);
    rig.sql("SELECT pg_create_logical_replication_slot('order_check', 'test_decoding')");
    concurrent_writes(&rig, 1);
    rig.wait_caught_up(T);
    rig.stop();
    downgrade_to_previous_layout(&rig.db);
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = '_metadata_tx'"
        ),
        0
    );
    rig.start();
    concurrent_writes(&rig, 1000);
    rig.wait_caught_up(T);
    rig.stop();
    assert!(rig
        .log()
        .contains("upgraded the file to the current layout"));
    let expected = decoded_changes(&rig, "order_check");
    assert_eq!(
        replica_changes(&rig, "_metadata_tx, _metadata_sequence"),
        expected
    );
    assert_eq!(assert_ordinals(&rig), (2 * WRITERS * TXS_PER_WRITER) as i64);
    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify:\n{out}");
}

const KEYS_PG: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items VALUES (1, 'one'), (2, 'two');
CREATE TABLE pairs (k1 int, k2 text, v text, PRIMARY KEY (k2, k1));
INSERT INTO pairs VALUES (1, 'a', 'one');
CREATE TABLE docs (id int PRIMARY KEY, body text);
INSERT INTO docs SELECT 1, string_agg(md5(random()::text), '') FROM generate_series(1, 400);
";

const KEYS_MY: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items VALUES (1, 'one'), (2, 'two');
CREATE TABLE pairs (k1 int, k2 varchar(10), v text, PRIMARY KEY (k2, k1));
INSERT INTO pairs VALUES (1, 'a', 'one');
";

/// Key changes, plain updates, a delete; the log rows carry the old key of key changes only.
fn old_keys_are_logged(mut rig: Rig) {
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(
        "UPDATE items SET id = 10, name = 'moved' WHERE id = 1;
         UPDATE items SET name = 'renamed' WHERE id = 10;
         UPDATE items SET id = 20 WHERE id = 10;
         DELETE FROM items WHERE id = 2;
         UPDATE pairs SET k2 = 'b' WHERE k1 = 1;",
    );
    let toast = matches!(rig.src, common::Src::Pg(_));
    if toast {
        // The TOASTed body is unchanged: the row-at-a-time path.
        rig.sql("UPDATE docs SET id = 2 WHERE id = 1");
    }
    rig.wait_caught_up(T);
    rig.stop();
    assert_eq!(
        rig.replica_lines(
            "SELECT concat_ws(' ', _metadata_change_type, id, coalesce(CAST(_metadata_old_id AS VARCHAR), '-')) \
             FROM items_log WHERE _metadata_change_type <> 'SNAPSHOT' ORDER BY _metadata_tx, _metadata_sequence"
        ),
        ["UPDATE 10 1", "UPDATE 10 -", "UPDATE 20 10", "DELETE 2 -"]
    );
    assert_eq!(
        rig.replica_lines(
            "SELECT concat_ws(' ', k2, k1, _metadata_old_k2, _metadata_old_k1) FROM pairs_log \
             WHERE _metadata_change_type = 'UPDATE'"
        ),
        ["b 1 a 1"]
    );
    if toast {
        assert_eq!(
            rig.replica_lines(
                "SELECT concat_ws(' ', id, _metadata_old_id, length(body)) FROM docs_log \
                 WHERE _metadata_change_type = 'UPDATE'"
            ),
            ["2 1 12800"]
        );
    }
    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify:\n{out}");
}

#[test]
fn postgres_key_change_logs_the_old_key() {
    old_keys_are_logged(Rig::new(KEYS_PG));
}

#[test]
fn mariadb_key_change_logs_the_old_key() {
    old_keys_are_logged(Rig::mysql(KEYS_MY));
}

#[test]
fn a_clean_stop_checkpoints_so_the_file_alone_is_complete() {
    let mut rig = Rig::new(PG_SETUP);
    rig.start();
    rig.wait_caught_up(T);
    concurrent_writes(&rig, 1);
    rig.sql(
        "INSERT INTO events SELECT g, 0, repeat('x', 100) FROM generate_series(10000, 30000) g",
    );
    rig.wait_caught_up(T);
    let wal = rig.db.with_file_name("replica.duckdb.wal");
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(
        wal_bytes() > 0,
        "committed batches wait in the .wal while running"
    );
    rig.stop();
    let log = rig.log();
    assert!(log.contains("stopped cleanly"));
    assert!(
        log.contains("the file alone holds every commit"),
        "the log says it checkpointed:\n{log}"
    );
    assert_eq!(wal_bytes(), 0, "a clean stop leaves nothing in {wal:?}");
    let (code, out) = run_cli(&["status", "--json"], &rig.config);
    assert_eq!(code, 0, "{out}");
    let json = &out[out.find('{').unwrap()..];
    let status: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(status["report"]["checkpointed"], true, "{json}");
    let (_, text) = run_cli(&["status"], &rig.config);
    assert!(text.contains("file:                checkpointed"), "{text}");

    let _ = std::fs::remove_file(&wal);
    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify without the .wal:\n{out}");
    assert_eq!(rig.count("SELECT count(*) FROM events"), 20001 + 36);
}
