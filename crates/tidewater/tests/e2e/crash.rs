//! Crash safety under load, against real PostgreSQL and MariaDB servers and the real binary.
//!
//! - A continuous multi-table transactional workload (one persistent `psql` / `mariadb` client)
//!   while `tidewater run` is killed with SIGKILL at pseudo-random moments and restarted; then
//!   `tidewater verify` is clean and every `_log` table holds exactly one row per committed
//!   source change, counted against the workload's own `ledger` table in the source.
//! - The replication connection is dropped (walsender terminated / `Binlog Dump` thread
//!   killed) while changes flow: `run` reconnects by itself and loses and duplicates nothing.
//! - A DuckDB file that cannot be written (mode 0444; as root, which ignores file modes, the
//!   immutable attribute set with `chattr +i`), a sink path that is a directory, and one
//!   whose directory does not exist: a clear error (exit 3) naming the path, and after the
//!   fix a run resumes and ends equal.
//! - A DuckDB file on a full file system (an 8 MB tmpfs the test mounts, as root): exit 3
//!   naming the file, "No space left on device" and the fix; moved with its WAL to a roomy
//!   place it resumes from its last committed batch and ends equal, each change logged once.
//!
//! Half the kills land mid-stream for sure (after the run applied changes of the workload,
//! read from its `/metrics`), the others at random moments. CI runs a short version (6
//! kills). The long run (50 kills per source):
//!
//! ```text
//! TIDEWATER_LONG_CRASH=1 cargo nextest run -p tidewater --test e2e crash:: --no-capture
//! ```

use crate::common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::workload::Workload;
use common::{run_cli, streamed_changes, Rig};
use tidewater_harness::wait_until;

/// Orders present before the workload starts; transaction `i` deletes order `i`, which is a
/// seeded one or the one transaction `i - SEED_ORDERS` inserted, so it always exists.
const SEED_ORDERS: u64 = 50;
const COUNTERS: u64 = 10;

const PG_SETUP: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, tx_no bigint NOT NULL, amount numeric(12,2));
INSERT INTO orders SELECT g, 0, g FROM generate_series(1, 50) g;
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g;
CREATE TABLE ledger (tx_no bigint PRIMARY KEY, order_id bigint NOT NULL, note text);
";

const MY_SETUP: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, tx_no bigint NOT NULL, amount decimal(12,2));
INSERT INTO orders SELECT seq, 0, seq FROM seq_1_to_50;
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters SELECT seq, 0 FROM seq_1_to_10;
CREATE TABLE ledger (tx_no bigint PRIMARY KEY, order_id bigint NOT NULL, note text);
";

/// Changes per committed workload transaction, per table and kind.
const PER_TX: [(&str, &str, u64); 4] = [
    ("orders", "INSERT", 1),
    ("orders", "DELETE", 1),
    ("counters", "UPDATE", 1),
    ("ledger", "INSERT", 1),
];
/// Seeded rows per table (the initial snapshot).
const SNAPSHOT: [(&str, u64); 3] = [
    ("orders", SEED_ORDERS),
    ("counters", COUNTERS),
    ("ledger", 0),
];

const CATCH_UP: Duration = Duration::from_secs(120);

fn long_run() -> bool {
    std::env::var("TIDEWATER_LONG_CRASH").is_ok_and(|v| v == "1")
}

/// xorshift64: reproducible "random" crash moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// One workload transaction: every table changes, and the ledger records the transaction.
fn transaction(i: u64) -> String {
    format!(
        "BEGIN;\nINSERT INTO orders VALUES ({o}, {i}, {i}.25);\nUPDATE counters SET n = n + 1 WHERE id = {c};\nDELETE FROM orders WHERE id = {i};\nINSERT INTO ledger VALUES ({i}, {o}, 'tx {i}');\nCOMMIT;\n",
        o = SEED_ORDERS + i,
        c = i % COUNTERS + 1,
    )
}

/// After the workload and a clean stop: verify is clean, and the `_log` tables hold exactly
/// the changes the workload's ledger says were committed, each once.
fn assert_exactly_once(rig: &Rig) -> u64 {
    let committed: u64 = rig
        .sql("SELECT count(*) FROM ledger")
        .trim()
        .parse()
        .unwrap();
    let max: u64 = rig
        .sql("SELECT coalesce(max(tx_no), 0) FROM ledger")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        committed, max,
        "the ledger has gaps: a workload transaction failed"
    );
    assert!(committed > 0, "the workload committed nothing");
    let counters: u64 = rig
        .sql("SELECT sum(n) FROM counters")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        counters, committed,
        "the source's counters disagree with its ledger"
    );

    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify is not clean:\n{out}");

    for table in ["orders", "counters", "ledger"] {
        for kind in ["INSERT", "UPDATE", "DELETE"] {
            let per_tx = PER_TX
                .iter()
                .find(|(t, k, _)| *t == table && *k == kind)
                .map_or(0, |x| x.2);
            let got = rig.count(&format!(
                "SELECT count(*) FROM {table}_log WHERE _metadata_change_type = '{kind}'"
            ));
            assert_eq!(
                got as u64,
                per_tx * committed,
                "{table}_log {kind} rows for {committed} committed transactions"
            );
        }
        let seeded = SNAPSHOT.iter().find(|(t, _)| *t == table).unwrap().1;
        assert_eq!(
            rig.count(&format!(
                "SELECT count(*) FROM {table}_log WHERE _metadata_change_type = 'SNAPSHOT'"
            )) as u64,
            seeded,
            "{table}_log snapshot rows"
        );
        assert_eq!(
            rig.count(&format!(
                "SELECT count(*) FROM (SELECT _metadata_position, _metadata_sequence FROM {table}_log \
                 WHERE _metadata_change_type <> 'SNAPSHOT' GROUP BY ALL HAVING count(*) > 1)"
            )),
            0,
            "{table}_log: a (position, sequence) pair appears twice"
        );
    }
    // Transaction ordinals: the snapshot's first (one chunk per table with rows: orders and
    // counters), then one per committed transaction in commit (= tx_no) order, with no gap and
    // no repeat across the kills.
    let snapshot_txs: u64 = 2;
    let logs =
        "(SELECT _metadata_tx, _metadata_change_type AS kind, NULL AS tx_no FROM orders_log \
        UNION ALL SELECT _metadata_tx, _metadata_change_type, NULL FROM counters_log \
        UNION ALL SELECT _metadata_tx, _metadata_change_type, tx_no FROM ledger_log)";
    assert_eq!(
        rig.replica_lines(&format!(
            "SELECT concat_ws(' ', count(DISTINCT _metadata_tx), max(_metadata_tx), \
             max(_metadata_tx) FILTER (kind = 'SNAPSHOT'), \
             count(*) FILTER (kind = 'INSERT' AND tx_no <> _metadata_tx - {snapshot_txs})) \
             FROM {logs}"
        )),
        [format!(
            "{} {} {snapshot_txs} 0",
            committed + snapshot_txs,
            committed + snapshot_txs
        )],
        "_metadata_tx: distinct, max, the snapshot's, ledger rows off commit order"
    );
    // Every committed transaction's ledger row, once, in the replica.
    assert_eq!(
        rig.count(
            "SELECT count(DISTINCT tx_no) FROM ledger_log WHERE _metadata_change_type = 'INSERT'"
        ) as u64,
        committed
    );
    committed
}

fn kill9_under_load(mut rig: Rig, seed: u64) {
    let started = Instant::now();
    let kills = if long_run() { 50 } else { 6 };
    let addr = rig.listen_http();
    let orders = format!("{}.orders", rig.schema);
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    let workload = Workload::start(&rig, transaction);
    let mut rng = Rng(seed);
    // Kills by where they landed: before the run applied a change (connecting, catching up),
    // and mid-stream (the run had applied changes of the workload, which was still writing).
    let (mut early, mut mid_stream) = (0, 0);
    for k in 0..kills {
        if k % 2 == 0 {
            // Any moment.
            std::thread::sleep(rng.millis(200, 2000));
            if streamed_changes(&addr, &orders) > 0 && workload.writing() {
                mid_stream += 1;
            } else {
                early += 1;
            }
            rig.kill9();
        } else {
            // Mid-stream, after a further random part of the stream.
            std::thread::sleep(rng.millis(0, 500));
            rig.kill9_mid_stream(&addr, &orders, || workload.writing());
            mid_stream += 1;
        }
        rig.start();
    }
    let sent = workload.finish();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let committed = assert_exactly_once(&rig);
    assert_eq!(committed, sent, "every transaction sent was committed");
    assert_eq!(early + mid_stream, kills);
    assert!(
        mid_stream >= kills / 2,
        "{mid_stream} of {kills} kills landed mid-stream"
    );
    eprintln!(
        "{kills} kills ({mid_stream} mid-stream, {early} before the run applied a change), \
         {committed} transactions, {:?}",
        started.elapsed()
    );
}

#[test]
fn postgres_kill9_at_random_moments_under_load() {
    kill9_under_load(Rig::new(PG_SETUP), 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn mariadb_kill9_at_random_moments_under_load() {
    kill9_under_load(Rig::mysql(MY_SETUP), 0xd1b5_4a32_d192_ed03);
}

/// The replica's published position (MariaDB; refreshed every 2 s).
fn published_position(rig: &Rig) -> Option<String> {
    let text = std::fs::read_to_string(rig.dir.path().join("replica.duckdb.status.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["report"]["position"].as_str().map(str::to_string)
}

/// The id of a server-side replication connection other than `not` (a dropped connection
/// may linger for a moment next to its successor).
fn replication_conn(rig: &Rig, not: Option<&String>) -> Option<String> {
    let q = match &rig.src {
        common::Src::Pg(_) => "SELECT pid FROM pg_stat_replication",
        common::Src::My(_) => {
            "SELECT id FROM information_schema.processlist WHERE command = 'Binlog Dump'"
        }
    };
    let out = rig.try_sql(q).ok()?;
    out.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && Some(&l.to_string()) != not)
        .map(str::to_string)
}

fn progress_marker(rig: &Rig) -> Option<String> {
    match &rig.src {
        common::Src::Pg(_) => Some(rig.confirmed_flush_lsn()),
        common::Src::My(_) => published_position(rig),
    }
}

fn connection_drops(mut rig: Rig) {
    let started = Instant::now();
    let drops = 3;
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    let workload = Workload::start(&rig, transaction);
    let mut last = None;
    for round in 0..drops {
        // Changes flow through the current connection...
        let before = progress_marker(&rig);
        wait_until(Duration::from_secs(60), "the replica to advance", || {
            progress_marker(&rig) != before
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", rig.log()));
        let mut id = None;
        wait_until(
            Duration::from_secs(60),
            "a new replication connection",
            || {
                id = replication_conn(&rig, last.as_ref());
                id.is_some()
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", rig.log()));
        let id = id.unwrap();
        // ...when it is dropped from the server side.
        match &rig.src {
            common::Src::Pg(_) => rig.sql(&format!("SELECT pg_terminate_backend({id})")),
            common::Src::My(_) => rig.sql(&format!("KILL {id}")),
        };
        last = Some(id);
    }
    // Reconnected once more, by itself, and streaming again.
    wait_until(
        Duration::from_secs(60),
        "a new replication connection",
        || replication_conn(&rig, last.as_ref()).is_some(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let before = progress_marker(&rig);
    wait_until(Duration::from_secs(60), "the replica to advance", || {
        progress_marker(&rig) != before
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let sent = workload.finish();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let log = rig.log();
    assert_eq!(
        log.matches("replication interrupted").count(),
        drops,
        "each drop is retried once:\n{log}"
    );
    let committed = assert_exactly_once(&rig);
    assert_eq!(committed, sent);
    eprintln!(
        "{drops} drops, {committed} transactions, {:?}",
        started.elapsed()
    );
}

#[test]
fn postgres_walsender_terminated_reconnects() {
    connection_drops(Rig::new(PG_SETUP));
}

#[test]
fn mariadb_binlog_dump_killed_reconnects() {
    connection_drops(Rig::mysql(MY_SETUP));
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command the test's precondition needs; panics with its output and `fix`.
#[track_caller]
fn required(cmd: &mut Command, fix: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; {fix}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{fix}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `chattr +i` on a file (even root cannot write it) until dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &std::path::Path) -> Immutable {
        required(
            Command::new("chattr").arg("+i").arg(path),
            "this test runs as root and needs `chattr +i` (e2fsprogs, CAP_LINUX_IMMUTABLE, and \
             a temp dir on ext4/xfs/btrfs: set TMPDIR to one)",
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Rewrites the sink path of the rig's config.
fn config_with_sink(rig: &Rig, path: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let from = format!("path = {:?}", rig.db.display().to_string());
    assert!(text.contains(&from), "{text}");
    let other = rig.dir.path().join("bad-sink.toml");
    std::fs::write(
        &other,
        text.replace(&from, &format!("path = {:?}", path.display().to_string())),
    )
    .unwrap();
    other
}

#[test]
fn unwritable_duckdb_file_is_a_clear_error_then_resumes() {
    let mut rig = Rig::new(PG_SETUP);
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    // Changes wait in the slot while the sink cannot be written.
    for i in 1..=20 {
        rig.sql(&transaction(i));
    }
    let db_text = rig.db.display().to_string();
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&rig.db).unwrap().permissions();
        std::fs::set_permissions(&rig.db, std::fs::Permissions::from_mode(0o444)).unwrap();
        let (code, out) = run_cli(&["run"], &rig.config);
        std::fs::set_permissions(&rig.db, mode).unwrap();
        assert_eq!(code, 3, "read-only DuckDB file: exit code; output:\n{out}");
        assert!(out.contains(&db_text), "the error names the file:\n{out}");
    } else {
        // Root ignores file modes, but not the immutable attribute.
        let immutable = Immutable::set(&rig.db);
        let (code, out) = run_cli(&["run"], &rig.config);
        drop(immutable);
        assert_eq!(code, 3, "immutable DuckDB file: exit code; output:\n{out}");
        assert!(out.contains(&db_text), "the error names the file:\n{out}");
        eprintln!("{}", out.lines().last().unwrap_or_default());
    }
    // Sink paths that cannot be a DuckDB file: a directory, and a file in a directory that
    // does not exist.
    let as_dir = rig.dir.path().join("a-directory.duckdb");
    std::fs::create_dir(&as_dir).unwrap();
    let missing_dir = rig.dir.path().join("no-such-dir").join("replica.duckdb");
    for bad in [&as_dir, &missing_dir] {
        let config = config_with_sink(&rig, bad);
        let (code, out) = run_cli(&["run"], &config);
        assert_eq!(code, 3, "sink path {bad:?}: exit code; output:\n{out}");
        assert!(
            out.contains(&bad.display().to_string()),
            "the error names {bad:?}:\n{out}"
        );
        eprintln!("{}", out.lines().last().unwrap_or_default());
    }
    assert!(
        !missing_dir.parent().unwrap().exists(),
        "a directory was created"
    );
    // Nothing of the failed attempt is half-applied: the fixed run resumes and ends equal.
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify:\n{out}");
    for (table, kind, per_tx) in PER_TX {
        assert_eq!(
            rig.count(&format!(
                "SELECT count(*) FROM {table}_log WHERE _metadata_change_type = '{kind}'"
            )) as u64,
            20 * per_tx,
            "{table}_log {kind}"
        );
    }
}

/// A tmpfs of `size` mounted on `dir` until dropped. Unmounted lazily, so a process still
/// holding a file there cannot keep it mounted.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        required(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
            "this test mounts a small tmpfs to fill it: run it as root (or with CAP_SYS_ADMIN; \
             in a container, --cap-add SYS_ADMIN)",
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Points the rig's own config (and `rig.db`) at another DuckDB file.
fn move_sink(rig: &mut Rig, path: &std::path::Path) {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let from = format!("path = {:?}", rig.db.display().to_string());
    assert!(text.contains(&from), "{text}");
    let to = format!("path = {:?}", path.display().to_string());
    std::fs::write(&rig.config, text.replace(&from, &to)).unwrap();
    rig.db = path.to_path_buf();
}

const BLOBS_SEEDED: u64 = 10;
const BLOB_TXS: u64 = 40;
const BLOBS_PER_TX: u64 = 75;

#[test]
fn full_disk_is_a_clear_error_then_resumes_elsewhere() {
    let mut rig = Rig::new(&format!(
        "CREATE TABLE blobs (id bigint PRIMARY KEY, payload text NOT NULL);
         INSERT INTO blobs SELECT g, 'seed' FROM generate_series(1, {BLOBS_SEEDED}) g;"
    ));
    let disk_dir = rig.dir.path().join("small-disk");
    let disk = Tmpfs::mount(&disk_dir, "8m");
    let db_on_disk = disk_dir.join("replica.duckdb");
    move_sink(&mut rig, &db_on_disk);
    // Batches of at most two source transactions (about 1.2 MB of DuckDB WAL each).
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&rig.config)
        .unwrap();
    writeln!(config, "max_batch_rows = {}", 2 * BLOBS_PER_TX).unwrap();
    // The snapshot fits; then, with tidewater stopped, the source writes about 12 MB of
    // incompressible text (replica and log: twice that in DuckDB) in many transactions, so
    // that some batches commit before the 8 MB file system is full.
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    for tx in 0..BLOB_TXS {
        let first = BLOBS_SEEDED + tx * BLOBS_PER_TX + 1;
        let last = first + BLOBS_PER_TX - 1;
        rig.sql(&format!(
            "INSERT INTO blobs SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') \
             FROM generate_series(1, 128) i) FROM generate_series({first}, {last}) g"
        ));
    }
    let inserted = BLOB_TXS * BLOBS_PER_TX;
    let mark = rig.log().len();
    rig.start();
    let status = rig.wait_exit(CATCH_UP);
    let log = rig.log()[mark..].to_string();
    assert_eq!(
        status.code(),
        Some(3),
        "full disk: exit status; log:\n{log}"
    );
    let error = log
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    eprintln!("{error}");
    for needle in [
        db_on_disk.display().to_string().as_str(),
        "No space left on device",
        "free space",
        "sink.path",
    ] {
        assert!(
            error.contains(needle),
            "the error lacks {needle:?}: {error}"
        );
    }

    // DuckDB ends a transaction whose COMMIT failed: no second error from a rollback.
    assert!(!log.contains("no transaction is active"), "{log}");

    // The fix: the DuckDB file and its WAL moved to a file system with room.
    let roomy = rig.dir.path().join("roomy");
    std::fs::create_dir(&roomy).unwrap();
    for name in ["replica.duckdb", "replica.duckdb.wal"] {
        if disk_dir.join(name).exists() {
            std::fs::copy(disk_dir.join(name), roomy.join(name)).unwrap();
        }
    }
    drop(disk);
    move_sink(&mut rig, &roomy.join("replica.duckdb"));
    // Some batches committed before the disk filled, each of whole source transactions.
    let committed = rig.count("SELECT count(*) FROM blobs") as u64 - BLOBS_SEEDED;
    assert!(
        committed > 0
            && committed < inserted
            && committed / BLOBS_PER_TX * BLOBS_PER_TX == committed,
        "{committed} rows committed before the disk was full"
    );
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let (code, out) = run_cli(&["verify"], &rig.config);
    assert_eq!(code, 0, "verify:\n{out}");
    // Each change once: nothing of the batch that hit the full disk was half-applied.
    for (kind, want) in [("SNAPSHOT", BLOBS_SEEDED), ("INSERT", inserted)] {
        assert_eq!(
            rig.count(&format!(
                "SELECT count(*) FROM blobs_log WHERE _metadata_change_type = '{kind}'"
            )) as u64,
            want,
            "blobs_log {kind}"
        );
    }
    assert_eq!(
        rig.count("SELECT count(DISTINCT id) FROM blobs_log") as u64,
        BLOBS_SEEDED + inserted
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM blobs") as u64,
        BLOBS_SEEDED + inserted
    );
}
