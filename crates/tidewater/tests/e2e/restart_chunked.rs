//! Copies that begin at a restart go through the chunked copy (`tidewater_core::copy`,
//! "Copies again"; the MariaDB side in `tidewater_mysql::join`, "In chunks"): tables that
//! join (created while tidewater was stopped) and tables changed while it was stopped in a
//! way the binlog does not carry (`ADD COLUMN ... DEFAULT` on a keyed and on a keyless
//! table, a primary key moved to other columns). The stream resumes before those
//! changes, so it replays the joining table's rows and the changed tables' row events in
//! their old shape: both must be dropped up to the point the copy starts (its chunks show
//! them), and nothing may be held open at the source meanwhile.
//!
//! Under a writer changing every copied table, with kill -9 twice mid-copy: afterwards
//! `tidewater verify` is clean, the replica equals the source, every copy began once (after
//! each kill it resumed at its next chunk) and committed many chunks, and no source
//! transaction stayed open 10 s.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::chunked_snapshot::{assert_same_rows, my_setup, with_chunk_rows, CHUNK_ROWS, ROWS};
use crate::common;
use crate::uncarried_ddl::verify_clean;
use common::workload::Workload;
use common::Rig;
use tidewater_harness::wait_until;

/// What the single-transaction path logs once its copy is sent (`tidewater_mysql::join`).
const ONE_TRANSACTION: &str = "joining tables copied";
/// What the chunked path logs when tables join, and when a table's copy starts again.
const JOINS_IN_CHUNKS: &str = "join the replica: copied in chunks while streaming";
const AGAIN_IN_CHUNKS: &str = "copied again in chunks";

/// The writer while tidewater restarts: big (in its new shape; keys moved too), the joining
/// table, the keyless bag, and comp (keyed by `b` now).
fn transaction(i: u64) -> String {
    let spread = |m: u64| (i * m) % ROWS + 1;
    format!(
        "BEGIN;
UPDATE big SET n = n + 1, v = 'u{i}', tier = 'silver' WHERE id = {u};
DELETE FROM big WHERE id = {d};
INSERT INTO big (id, v, n) VALUES ({ins}, 'new', {i});
UPDATE big SET id = {moved} WHERE id = {k};
UPDATE joined SET n = n + 1, v = 'u{i}' WHERE id = {k};
DELETE FROM joined WHERE id = {u};
INSERT INTO joined VALUES ({ins}, 'new', {i});
UPDATE joined SET id = {moved} WHERE id = {d};
INSERT INTO bag (a, b) VALUES ({i}, 'w');
DELETE FROM bag WHERE a = {a} AND b = 'r' LIMIT 1;
UPDATE comp SET v = 'u{i}' WHERE b = {b};
COMMIT;
",
        u = spread(7919),
        d = spread(104_729),
        ins = 1_000_000 + i,
        moved = 2_000_000 + i,
        k = spread(31),
        a = i % 10,
        b = i % 5000 + 1,
    )
}

#[test]
fn mariadb_restart_joins_and_copies_again_in_chunks_under_writes_and_kill9() {
    let mut rig = Rig::mysql(&my_setup());
    with_chunk_rows(&rig, CHUNK_ROWS);
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    // While stopped: row events in the old shapes, a new table with its rows, changes the
    // binlog does not carry (a column added to a keyed and to a keyless table, a primary key
    // moved to other columns), row events in the new shapes.
    rig.sql(&format!(
        "UPDATE big SET n = n + 1 WHERE id <= 50;
INSERT INTO big VALUES (5000001, 'stopped', 1);
DELETE FROM big WHERE id BETWEEN 100 AND 110;
INSERT INTO bag VALUES (99, 'stopped');
CREATE TABLE joined (id bigint PRIMARY KEY, v text, n int NOT NULL);
INSERT INTO joined SELECT seq, md5(seq), 0 FROM seq_1_to_{ROWS};
UPDATE joined SET v = 'stopped' WHERE id <= 10;
ALTER TABLE big ADD COLUMN tier varchar(10) NOT NULL DEFAULT 'bronze';
ALTER TABLE bag ADD COLUMN c int DEFAULT 7;
ALTER TABLE comp DROP PRIMARY KEY, ADD PRIMARY KEY (b);
UPDATE big SET tier = 'gold' WHERE id <= 20;
INSERT INTO bag (a, b) VALUES (98, 'after');"
    ));
    let before = finished(&rig);
    let ages = TransactionAges::start(&rig);
    let workload = Workload::start(&rig, transaction);
    rig.start();
    // Kill -9 mid-copy, once while big is copied again, once while joined is copied: after
    // some of the table's chunks have committed (and so the start of its copy), before it is
    // done.
    for table in ["big", "joined"] {
        let table = format!("{}.{table}", rig.schema);
        let mut chunks = 0;
        wait_until(
            Duration::from_secs(300),
            &format!("chunks of {table} to commit"),
            || {
                chunks = copy_under_way(&addr, &table).unwrap_or(0);
                chunks >= 2 || finished(&rig) > before || rig.log().contains(ONE_TRANSACTION)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
        assert!(
            !rig.log().contains(ONE_TRANSACTION),
            "the restart copied tables in one source transaction, held open until the stream \
             reached its snapshot\n{}",
            rig.log()
        );
        assert_eq!(
            finished(&rig),
            before,
            "the copies finished before the kill: make the tables larger\n{}",
            rig.log()
        );
        rig.kill9();
        eprintln!("kill: after {chunks} chunks of {table} committed");
        rig.start();
    }
    wait_until(Duration::from_secs(300), "the copies to finish", || {
        finished(&rig) > before
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let (longest, samples) = ages.finish();
    eprintln!("longest source transaction seen: {longest} s in {samples} samples");
    common::wait_replica_consistent(&rig, &addr);
    let sent = workload.finish();
    rig.wait_caught_up(Duration::from_secs(300));
    verify_clean(&rig);
    rig.stop();
    assert!(sent > 0);
    assert_same_rows(
        &rig,
        "SELECT concat_ws(',', id, coalesce(v, '-'), n, tier) FROM big",
    );
    assert_same_rows(
        &rig,
        "SELECT concat_ws(',', id, coalesce(v, '-'), n) FROM joined",
    );
    assert_same_rows(
        &rig,
        "SELECT concat_ws(',', a, b, coalesce(c, -1)) FROM bag",
    );
    assert_same_rows(&rig, "SELECT concat_ws(',', a, b, v) FROM comp");
    let copies = rig.replica_lines(
        "SELECT table_name || ',' || done || ',' || consistent || ',' || rows_copied || ',' || chunks \
         FROM _tidewater.copies ORDER BY 1",
    );
    eprintln!("copies: {copies:?}");
    for table in ["bag", "big", "comp", "joined"] {
        let c = copies
            .iter()
            .find(|c| c.starts_with(&format!("{table},")))
            .unwrap_or_else(|| panic!("no copy progress of {table}: {copies:?}"));
        let f: Vec<&str> = c.split(',').collect();
        assert_eq!((f[1], f[2]), ("true", "true"), "{c}");
        let (rows, chunks): (u64, u64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        if table != "bag" {
            // Many chunks, and no chunk counted twice (a kill's lost chunk is read again).
            let (least, most) = match table {
                "comp" => (5000, 5000),
                _ => (ROWS, ROWS + sent),
            };
            assert!(
                chunks >= least / CHUNK_ROWS && rows <= most,
                "{table}: {rows} rows in {chunks} chunks"
            );
        }
    }
    let log = rig.log();
    assert!(
        !log.contains(ONE_TRANSACTION),
        "the restart copied tables in one source transaction\n{log}"
    );
    // Each copy began once: after a kill it resumed at its next chunk.
    assert_eq!(log.matches(JOINS_IN_CHUNKS).count(), 1, "{log}");
    assert_eq!(log.matches(AGAIN_IN_CHUNKS).count(), 3, "{log}");
    assert!(samples >= 5, "too few samples to judge ({samples})");
    assert!(longest < 10, "a source transaction stayed open {longest} s");
}

/// The committed chunks of `table`'s copy while it is under way (not done), from the
/// `/metrics` of the run serving `addr`.
fn copy_under_way(addr: &str, table: &str) -> Option<u64> {
    let m = common::http::http(addr, "GET", "/metrics", None).ok()?.body;
    let sample = |name: &str| common::http::metric(&m, &format!("{name}{{table=\"{table}\"}}"));
    (sample("tidewater_copy_done")? == 0.0).then_some(sample("tidewater_copy_chunks")? as u64)
}

/// How many times the run's log says every copy finished.
fn finished(rig: &Rig) -> usize {
    rig.log().matches(common::COPY_FINISHED).count()
}

/// Samples the source's open transactions on a client of its own until `finish`: their age
/// from `SHOW ENGINE INNODB STATUS` (`ACTIVE N sec`; see
/// `chunked_snapshot_mariadb::mariadb_chunked_copy_holds_no_long_transaction` for why not
/// `innodb_trx`).
struct TransactionAges {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, usize)>,
}

impl TransactionAges {
    fn start(rig: &Rig) -> TransactionAges {
        let (host, port) = (rig.my().host().to_string(), rig.my().port().to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut longest, mut samples) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                let out = Command::new("mariadb")
                    .args(["--no-defaults", "--protocol=TCP", "--user=root", "-N", "-B"])
                    .args(["--host", &host, "--port", &port])
                    .args(["-e", "SHOW ENGINE INNODB STATUS"])
                    .output()
                    .expect("run mariadb");
                let status = String::from_utf8_lossy(&out.stdout);
                let active = status
                    .split("ACTIVE ")
                    .skip(1)
                    .filter_map(|s| s.split(" sec").next()?.trim().parse::<u64>().ok());
                longest = active.fold(longest, u64::max);
                samples += usize::from(out.status.success());
                // A sampling interval, not a wait for anything.
                std::thread::sleep(Duration::from_millis(200));
            }
            (longest, samples)
        });
        TransactionAges { stop, thread }
    }

    /// The longest transaction age seen (whole seconds), and the samples taken.
    fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
