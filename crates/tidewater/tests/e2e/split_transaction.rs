//! `[apply] large_transaction = "split"`: a source transaction of more than `split_rows`
//! changes commits in pieces. Killed between two pieces, the restarted run drops the changes
//! the replica holds when the source replays the transaction and applies the rest: the
//! replica and the `_log` hold the transaction exactly once, under one `_metadata_tx`, with
//! sequence numbers that run on across the pieces and the restart.

use std::time::Duration;

use crate::common::*;

/// Rows the large transaction inserts (besides updating and deleting seeded ones).
const ROWS: i64 = 150_000;
const SEEDED: i64 = 1000;
const SPLIT_ROWS: usize = 5000;

fn pg_setup() -> String {
    format!(
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         CREATE TABLE small (id int PRIMARY KEY, n int);
         INSERT INTO small VALUES (1, 0);
         INSERT INTO big SELECT g, 'seed' FROM generate_series(1, {SEEDED}) g;"
    )
}

fn my_setup() -> String {
    format!(
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         CREATE TABLE small (id int PRIMARY KEY, n int);
         INSERT INTO small VALUES (1, 0);
         INSERT INTO big SELECT seq, 'seed' FROM seq_1_to_{SEEDED};"
    )
}

/// The large transaction: inserts, updates, deletes, and a change to another table last.
fn large_transaction(mysql: bool) -> String {
    let insert = if mysql {
        format!(
            "INSERT INTO big SELECT seq, md5(seq) FROM seq_{}_to_{}",
            SEEDED + 1,
            SEEDED + ROWS
        )
    } else {
        format!(
            "INSERT INTO big SELECT g, md5(g::text) FROM generate_series({}, {}) g",
            SEEDED + 1,
            SEEDED + ROWS
        )
    };
    format!(
        "BEGIN; {insert}; UPDATE big SET v = 'updated' WHERE id <= {SEEDED};
         DELETE FROM big WHERE id <= {half}; UPDATE small SET n = n + 1 WHERE id = 1; COMMIT;",
        half = SEEDED / 2
    )
}

/// Changes of the large transaction.
const CHANGES: i64 = ROWS + SEEDED + SEEDED / 2 + 1;

fn killed_between_pieces(mut rig: Rig, mysql: bool) {
    let addr = rig.listen_http();
    let config = std::fs::read_to_string(&rig.config).unwrap();
    let config = config.replace(
        "[apply]\n",
        &format!("[apply]\nlarge_transaction = \"split\"\nsplit_rows = {SPLIT_ROWS}\n"),
    );
    std::fs::write(&rig.config, config).unwrap();

    rig.start();
    rig.wait_caught_up(Duration::from_secs(120));
    rig.stop();
    rig.sql(&large_transaction(mysql));
    rig.sql("UPDATE small SET n = n + 1 WHERE id = 1");

    rig.start();
    // Kill once a piece is committed, long before the transaction's last one.
    let table = format!("{}.big", rig.schema);
    let mut applied = 0;
    tidewater_harness::wait_until(
        Duration::from_secs(120),
        "a first piece of the large transaction",
        || {
            applied = streamed_changes(&addr, &table);
            applied > 0
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    rig.kill9();
    assert!(
        (applied as i64) < CHANGES,
        "the whole transaction was applied before the kill ({applied} changes): make it larger"
    );
    eprintln!("killed after {applied} of {CHANGES} changes were committed");
    let status = expect(
        run_cli(&["status"], &rig.config),
        0,
        &["split transaction:"],
    );
    eprintln!("{status}");

    rig.start();
    rig.wait_caught_up(Duration::from_secs(180));
    rig.stop();
    let log = rig.log();
    assert!(
        log.contains("the replica holds the first changes of a transaction split into pieces"),
        "the restart did not resume inside the split transaction:\n{log}"
    );

    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify is not clean:\n{out}");
    assert_eq!(
        rig.replica_lines(
            "SELECT concat_ws(' ', count(*), count(*) FILTER (v = 'updated')) FROM big"
        ),
        [format!("{} {}", ROWS + SEEDED / 2, SEEDED / 2)]
    );
    assert_eq!(rig.replica_lines("SELECT n::text FROM small"), ["2"]);

    // The `_log`: every change of the large transaction once, one ordinal, sequences 0..n-1.
    let logs = "(SELECT _metadata_tx AS tx, _metadata_sequence AS seq, _metadata_position AS pos \
                FROM big_log WHERE _metadata_change_type <> 'SNAPSHOT' UNION ALL \
                SELECT _metadata_tx, _metadata_sequence, _metadata_position FROM small_log \
                WHERE _metadata_change_type <> 'SNAPSHOT')";
    assert_eq!(
        rig.replica_lines(&format!(
            "SELECT concat_ws(' ', count(*), count(DISTINCT seq), min(seq), max(seq), \
             count(DISTINCT tx), count(DISTINCT pos)) FROM {logs} \
             WHERE tx = (SELECT min(tx) FROM {logs})"
        )),
        [format!("{CHANGES} {CHANGES} 0 {} 1 1", CHANGES - 1)],
        "the large transaction's log rows: count, distinct sequences, min, max, ordinals, positions"
    );
    assert_eq!(
        rig.replica_lines(&format!(
            "SELECT concat_ws(' ', count(DISTINCT tx), max(tx) - min(tx)) FROM {logs}"
        )),
        ["2 1"],
        "the transaction after it has the next ordinal"
    );
    assert_eq!(
        rig.replica_lines("SELECT coalesce(partial_position, 'none') FROM _tidewater.pipeline"),
        ["none"],
        "a complete transaction leaves no partial progress"
    );
}

#[test]
fn postgres_a_split_transaction_killed_between_pieces_applies_once() {
    killed_between_pieces(Rig::new(&pg_setup()), false);
}

#[test]
fn mariadb_a_split_transaction_killed_between_pieces_applies_once() {
    killed_between_pieces(Rig::mysql(&my_setup()), true);
}
