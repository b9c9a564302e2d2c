//! PostgreSQL and MariaDB → BigQuery (the emulator the harness starts), through the real
//! binary: snapshot and stream with every change kind, the replica equal to the source, one
//! `_log` row per change, and a process killed between the log append and the MERGE or after
//! the MERGE. Results are read by plain REST calls with the table names written out.

use crate::common;

use std::time::Duration;

use common::bq::{cell_text, normalise, BqTarget};
use common::{Rig, Src};

pub(crate) const CATCH_UP: Duration = Duration::from_secs(90);

const PG_SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(20,2), flag boolean,
                    created timestamptz, payload bytea, doc jsonb, tags text[]);
INSERT INTO items SELECT g, 'item ' || g, g * 1.25, g % 2 = 0, '2024-01-02 03:04:05.123456+00',
                         '\\x00ff', '{\"k\": 1}', ARRAY['a', 'b'] FROM generate_series(1, 20) g;
CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
INSERT INTO pairs VALUES (1, 'x', 1), (2, 'y', 2);
";

const MY_SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text, amount decimal(20,2), flag boolean,
                    big bigint unsigned, created timestamp(6), payload varbinary(8), doc json);
INSERT INTO items SELECT seq, CONCAT('item ', seq), seq * 1.25, seq % 2 = 0,
                         18446744073709551615 - seq, '2024-01-02 03:04:05.123456', x'00ff', '{\"k\": 1}'
                  FROM seq_1_to_20;
CREATE TABLE pairs (a int, b varchar(10), v int, PRIMARY KEY (a, b));
INSERT INTO pairs VALUES (1, 'x', 1), (2, 'y', 2);
";

/// Changes after the snapshot: inserts, updates (one of the key), deletes, multi-row
/// transactions over two tables, a key changed in each.
const STREAM: &str = "
INSERT INTO items (id, name, amount, flag) VALUES (21, 'new', 1.50, true), (22, 'new too', NULL, NULL);
UPDATE items SET name = 'renamed', amount = amount + 1 WHERE id <= 20;
DELETE FROM items WHERE id IN (3, 4);
BEGIN;
INSERT INTO pairs VALUES (3, 'z', 3);
UPDATE pairs SET b = 'w' WHERE a = 1;
UPDATE items SET id = 100 WHERE id = 5;
DELETE FROM pairs WHERE a = 2;
INSERT INTO items (id, name) VALUES (4, 'back'), (23, 'last');
UPDATE items SET name = 'again' WHERE id = 23;
COMMIT;
";
const SNAPSHOT_ROWS: i64 = 22;
const STREAM_CHANGES: i64 = 2 + 20 + 2 + 1 + 1 + 1 + 1 + 2 + 1;

fn rig_pg() -> Rig {
    let mut rig = Rig::new(PG_SETUP);
    rig.use_bigquery();
    rig
}

fn rig_my() -> Rig {
    let mut rig = Rig::mysql(MY_SETUP);
    rig.use_bigquery();
    rig
}

/// Columns compared, as text on the source (`|`-separated on PostgreSQL, tabs on MariaDB).
const PG_ITEMS: &str = "SELECT id, name, amount, flag, encode(payload, 'hex'), doc->>'k', \
                        array_to_string(tags, ',') FROM items ORDER BY id";
const MY_ITEMS: &str = "SELECT id, name, amount, flag, big, hex(payload), \
                        JSON_UNQUOTE(JSON_EXTRACT(doc, '$.k')) FROM items ORDER BY id";

/// The BigQuery tables of a source's `items` and `pairs`, named as the docs promise
/// (`<schema>_<table>`, `<schema>_<table>_log`), written out here rather than derived by the
/// sink's own mapping.
struct Tables {
    items: &'static str,
    items_log: &'static str,
    pairs: &'static str,
    pairs_log: &'static str,
}

const PG_TABLES: Tables = Tables {
    items: "public_items",
    items_log: "public_items_log",
    pairs: "public_pairs",
    pairs_log: "public_pairs_log",
};

const MY_TABLES: Tables = Tables {
    items: "shop_items",
    items_log: "shop_items_log",
    pairs: "shop_pairs",
    pairs_log: "shop_pairs_log",
};

fn bq_items(bq: &BqTarget, t: &Tables, last: &str) -> String {
    format!(
        "SELECT id, name, CAST(amount AS STRING), flag, {last} FROM {} ORDER BY id",
        bq.table(t.items)
    )
}

pub(crate) fn source_rows(rig: &Rig, query: &str) -> Vec<Vec<String>> {
    let sep = match rig.src {
        Src::Pg(_) => '|',
        Src::My(_) => '\t',
    };
    rig.source_lines(query)
        .iter()
        .map(|l| {
            l.split(sep)
                .map(|c| normalise(if c == "NULL" { "" } else { c }))
                .collect()
        })
        .collect()
}

pub(crate) fn replica_rows(rig: &Rig, sql: &str) -> Vec<Vec<String>> {
    let rows = rig.bq().rows(sql);
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    // An array: its elements joined, like array_to_string.
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| cell_text(&i["v"]))
                        .collect::<Vec<_>>()
                        .join(","),
                    c => normalise(&cell_text(c)),
                })
                .collect()
        })
        .collect()
}

pub(crate) fn assert_same(rig: &Rig, source: &str, replica: &str) {
    let (src, rep) = (source_rows(rig, source), replica_rows(rig, replica));
    assert_eq!(
        src.len(),
        rep.len(),
        "row count differs: {source}\n{}",
        rig.log()
    );
    for (s, r) in src.iter().zip(&rep) {
        assert_eq!(s, r, "{source}");
    }
}

/// Each change is in the `_log` once: no (transaction, sequence) twice, and as many rows as
/// changes were made.
fn assert_log_exact(rig: &Rig, t: &Tables, expected_total: i64) {
    let bq = rig.bq();
    for log in [t.items_log, t.pairs_log] {
        let dups = bq.duplicated_log_rows(log);
        assert!(dups.is_empty(), "{log} holds changes twice: {dups:?}");
    }
    let total = bq.count(&format!(
        "SELECT (SELECT COUNT(*) FROM {}) + (SELECT COUNT(*) FROM {})",
        bq.table(t.items_log),
        bq.table(t.pairs_log)
    ));
    assert_eq!(total, expected_total, "change-log rows");
}

fn check_replica(rig: &Rig, t: &Tables, items: &str, last: &str) {
    let bq = rig.bq();
    assert_same(rig, items, &bq_items(bq, t, last));
    let pairs = format!("SELECT a, b, v FROM {} ORDER BY a, b", bq.table(t.pairs));
    assert_same(rig, "SELECT a, b, v FROM pairs ORDER BY a, b", &pairs);
}

const PG_LAST: &str = "TO_HEX(payload), JSON_VALUE(doc, '$.k'), tags";
const MY_LAST: &str = "CAST(big AS STRING), UPPER(TO_HEX(payload)), JSON_VALUE(doc, '$.k')";

#[test]
fn postgres_snapshot_and_stream_reach_bigquery_exactly_once() {
    let mut rig = rig_pg();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, &PG_TABLES, PG_ITEMS, PG_LAST);
    assert_snapshot_loaded(&rig);
    assert_log_exact(&rig, &PG_TABLES, SNAPSHOT_ROWS);
    let bq = rig.bq();
    let kinds = bq.text_rows(&format!(
        "SELECT DISTINCT _metadata_change_type FROM {}",
        bq.table("public_items_log")
    ));
    assert_eq!(kinds, vec![vec!["SNAPSHOT".to_string()]]);

    rig.sql(STREAM);
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, &PG_TABLES, PG_ITEMS, PG_LAST);
    assert_log_exact(&rig, &PG_TABLES, SNAPSHOT_ROWS + STREAM_CHANGES);
    let bq = rig.bq();
    let deleted = bq.count(&format!(
        "SELECT COUNT(*) FROM {} WHERE _metadata_change_type = 'DELETE' AND _metadata_deleted",
        bq.table("public_items_log")
    ));
    assert_eq!(deleted, 2);
    let key_change = bq.text_rows(&format!(
        "SELECT id, _metadata_old_id FROM {} WHERE _metadata_old_id IS NOT NULL",
        bq.table("public_items_log")
    ));
    assert_eq!(key_change, vec![vec!["100".to_string(), "5".to_string()]]);
    assert_merges_are_pruned(&rig);

    // A TRUNCATE between changes of one transaction: only what follows it survives.
    rig.sql("BEGIN; INSERT INTO pairs VALUES (7, 'p', 7); TRUNCATE pairs; INSERT INTO pairs VALUES (8, 'q', 8); COMMIT;");
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, &PG_TABLES, PG_ITEMS, PG_LAST);
    assert_log_exact(&rig, &PG_TABLES, SNAPSHOT_ROWS + STREAM_CHANGES + 3);
    rig.stop();
}

/// A replica table dropped by hand in the dataset is not recreated empty (the snapshot's
/// rows would be silently gone): the run stops and names the fix.
#[test]
fn postgres_replica_dropped_by_hand_in_bigquery_is_refused_not_recreated_empty() {
    let mut rig = rig_pg();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let (bq, items) = (rig.bq(), rig.bq().table(PG_TABLES.items));
    bq.try_rows(&format!("DROP TABLE {items}")).unwrap();
    rig.sql("INSERT INTO items (id) VALUES (1000)");
    rig.start();
    let status = rig.wait_exit(CATCH_UP);
    assert_eq!(status.code(), Some(3), "{}", rig.log());
    let log = rig.log();
    assert!(
        log.contains("public_items is missing") && log.contains("dropped by hand"),
        "{log}"
    );
    assert!(rig
        .bq()
        .try_rows(&format!("SELECT 1 FROM {items}"))
        .is_err());
}

#[test]
fn mariadb_snapshot_and_stream_reach_bigquery_exactly_once() {
    let mut rig = rig_my();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, &MY_TABLES, MY_ITEMS, MY_LAST);
    assert_snapshot_loaded(&rig);
    rig.sql(STREAM);
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, &MY_TABLES, MY_ITEMS, MY_LAST);
    assert_log_exact(&rig, &MY_TABLES, SNAPSHOT_ROWS + STREAM_CHANGES);
    rig.stop();
}

/// The snapshot went into staging by load jobs (one per table here), not one row by
/// insertAll: what carried every type of the tables above into the replica.
fn assert_snapshot_loaded(rig: &Rig) {
    let strict = rig.bq().strict_log();
    assert_eq!(strict.streamed_total(), 0, "{:?}", strict.streamed_rows);
    assert_eq!(strict.load_jobs.len(), 2, "{:?}", strict.load_jobs);
}

/// Every MERGE the sink sent bounds the replica by the batch's keys (an IN list of the first
/// key column for small batches, a range for large ones), so its cost follows the batch.
fn assert_merges_are_pruned(rig: &Rig) {
    let queries = rig.bq().strict_log().queries;
    let merges: Vec<&str> = queries
        .iter()
        .flat_map(|q| q.split(";\n"))
        .filter(|s| s.starts_with("MERGE"))
        .collect();
    assert!(merges.len() >= 2, "{queries:?}");
    for m in merges {
        let on = &m[m.rfind(") s ON ").expect("the MERGE's ON clause")..];
        let pruned = [
            "t.`id` IN (",
            "t.`id` BETWEEN ",
            "t.`a` IN (",
            "t.`a` BETWEEN ",
        ]
        .iter()
        .any(|p| on.contains(&format!(" AND {p}")));
        assert!(pruned, "a MERGE without a pruning predicate: {m}");
    }
}

/// Killed (SIGKILL) after the batch's rows reached the staging table, before the commit: the
/// log, replica and state are untouched, and after a restart the replica is exact and the log
/// holds each change once (the dead run's staged rows are never selected; nothing is
/// deleted, which strict mode would refuse on the streamed-to staging table).
fn crash_between_append_and_merge(mut rig: Rig, t: &Tables, items: &str, last: &str) {
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let (_, applied) = rig.bq().state().expect("state after the snapshot");

    rig.sql(STREAM);
    rig.start_with_env(&[("TIDEWATER_FAULT", "after-log-append")]);
    let status = rig.wait_exit(CATCH_UP);
    assert!(
        !status.success(),
        "the fault must kill the run\n{}",
        rig.log()
    );
    let bq = rig.bq();
    assert_eq!(bq.state().unwrap().1, applied, "nothing was committed");
    let staged = bq.count(&format!(
        "SELECT COUNT(*) FROM {} WHERE _metadata_tx > {applied}",
        bq.table(&format!("{}_staging", t.items))
    ));
    assert!(
        staged > 0,
        "the killed run streamed its batch to the staging table first"
    );
    let logged = bq.count(&format!(
        "SELECT COUNT(*) FROM {} WHERE _metadata_tx > {applied}",
        bq.table(t.items_log)
    ));
    assert_eq!(logged, 0, "the log must not see an uncommitted batch");
    let renamed = bq.count(&format!(
        "SELECT COUNT(*) FROM {} WHERE name = 'renamed'",
        bq.table(t.items)
    ));
    assert_eq!(renamed, 0, "the replica must not see an uncommitted batch");

    rig.start();
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, t, items, last);
    assert_log_exact(&rig, t, SNAPSHOT_ROWS + STREAM_CHANGES);
    let strict = rig.bq().strict_log();
    assert!(strict.violations.is_empty(), "{:?}", strict.violations);
    rig.stop();
}

#[test]
fn postgres_kill_between_log_append_and_merge_loses_and_duplicates_nothing() {
    crash_between_append_and_merge(rig_pg(), &PG_TABLES, PG_ITEMS, PG_LAST);
}

#[test]
fn mariadb_kill_between_log_append_and_merge_loses_and_duplicates_nothing() {
    crash_between_append_and_merge(rig_my(), &MY_TABLES, MY_ITEMS, MY_LAST);
}

/// Killed right after the MERGE committed, before the source was acknowledged: the source
/// sends the batch again from its last acknowledged point, and nothing is applied twice.
#[test]
fn postgres_kill_after_merge_before_ack_applies_nothing_twice() {
    let mut rig = rig_pg();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let (_, applied) = rig.bq().state().expect("state after the snapshot");
    rig.sql(STREAM);
    rig.start_with_env(&[("TIDEWATER_FAULT", "after-merge")]);
    assert!(!rig.wait_exit(CATCH_UP).success());
    // The moment: the MERGE had committed when the run died, before it acknowledged the
    // source: the state's ordinal, written in the MERGE's own transaction, moved. (Which of
    // the stream's changes the first batch held depends on batching, so the replica's rows
    // are not the proof.)
    let bq = rig.bq();
    let (_, merged) = bq.state().expect("state");
    assert!(
        merged > applied,
        "the killed run committed no MERGE ({applied} -> {merged})"
    );
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    check_replica(&rig, &PG_TABLES, PG_ITEMS, PG_LAST);
    assert_log_exact(&rig, &PG_TABLES, SNAPSHOT_ROWS + STREAM_CHANGES);
    rig.stop();
}

/// Inserts rows `ids` one after the other, each `pause` after the previous one became
/// visible; returns (p50, max) of source commit → visible in the replica (polled through the
/// REST API, as a user would).
fn commit_to_visible(
    rig: &Rig,
    ids: std::ops::Range<usize>,
    pause: Duration,
) -> (Duration, Duration) {
    let replica = rig.bq().table("public_ticks");
    let mut latencies = Vec::new();
    for i in ids {
        std::thread::sleep(pause); // pacing the source, not synchronising
        rig.sql(&format!("INSERT INTO ticks VALUES ({i}, 'x')"));
        // psql returned: the transaction is committed at the source.
        let committed = std::time::Instant::now();
        let sql = format!("SELECT COUNT(*) FROM {replica} WHERE id = {i}");
        tidewater_harness::wait_until(Duration::from_secs(30), "the row in the replica", || {
            rig.bq().count(&sql) == 1
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
        latencies.push(committed.elapsed());
    }
    latencies.sort();
    (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    )
}

/// Source commit → row visible in the replica with the default `merge_interval_ms`: for
/// back-to-back transactions (each waits for the interval since the previous MERGE) and for
/// transactions after a quiet interval (committed at once). The README quotes the output of
///
/// ```text
/// cargo nextest run -p tidewater --test e2e bigquery::freshness --no-capture
/// ```
#[test]
fn freshness_source_commit_to_replica_visible() {
    let mut rig = Rig::new("CREATE TABLE ticks (id int PRIMARY KEY, at text);");
    rig.use_bigquery_merging_every(1000);
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    let (p50, max) = commit_to_visible(&rig, 0..15, Duration::ZERO);
    eprintln!(
        "source commit -> replica visible, merge_interval_ms = 1000, back to back, 15 samples: \
         p50 {} ms, max {} ms",
        p50.as_millis(),
        max.as_millis()
    );
    // Fresh within seconds: at most the merge interval, plus one merge, plus a poll.
    assert!(max < Duration::from_secs(5), "max {max:?}");
    let (p50, max) = commit_to_visible(&rig, 100..105, Duration::from_millis(1200));
    eprintln!(
        "source commit -> replica visible, merge_interval_ms = 1000, after a quiet interval, \
         5 samples: p50 {} ms, max {} ms",
        p50.as_millis(),
        max.as_millis()
    );
    assert!(max < Duration::from_secs(5), "max {max:?}");
    rig.stop();
}
