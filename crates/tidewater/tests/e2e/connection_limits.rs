//! `tidewater check` against the source's connection limits. A role (PostgreSQL `CONNECTION
//! LIMIT`) or account (MariaDB `MAX_USER_CONNECTIONS`) allowed fewer sessions than a run opens
//! fails the check, with the statement that fixes it; without the check such a run found out
//! at its first parallel round, as connection errors. And the number `check` states is
//! honest: the sessions a run really holds are counted at the source, every few
//! milliseconds, through a parallel chunked copy and a `verify` while it runs.
//!
//! A run that meets such a limit anyway retries (MariaDB's `max_user_connections` refusal
//! was fatal), its error naming the limit and the fix, and copies once the limit is raised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::chunked_snapshot::with_chunks;
use crate::common;
use common::{expect, run_cli, snapshot_rows_copied, Rig, MY_DB};
use tidewater_harness::{wait_until, MariaDbOptions};

const PARALLELISM: u64 = 3;
const ROWS: u64 = 100_000;

/// The sessions `check` says a run opens ("a run opens up to N sessions").
fn claimed(check: &str) -> i64 {
    let (_, rest) = check
        .split_once("a run opens up to ")
        .unwrap_or_else(|| panic!("no session count in\n{check}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Runs the copy (chunks of 500 rows, [`PARALLELISM`] at once) and then `tidewater verify`
/// while `sessions` (the source's count of tidewater's sessions) is sampled; returns the most
/// seen. The table's key ranges keep every reader busy for many rounds.
fn most_sessions_of_a_run(rig: &mut Rig, table: &str, sessions: &str) -> i64 {
    let addr = rig.listen_http();
    rig.start();
    wait_until(Duration::from_secs(120), "the copy to begin", || {
        snapshot_rows_copied(&addr, table) > 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let stop = AtomicBool::new(false);
    let rig = &*rig;
    let (most, verified) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = rig.sql(sessions).trim().parse::<i64>();
                most = most.max(n.unwrap_or_else(|e| panic!("{sessions}: {e}")));
            }
            most
        });
        common::wait_replica_consistent(rig, &addr);
        let verified = run_cli(&["verify"], &rig.config);
        stop.store(true, Ordering::Relaxed);
        (sampler.join().unwrap(), verified)
    });
    assert_eq!(verified.0, 0, "{}", verified.1);
    most
}

/// A PostgreSQL source whose table `t` ([`ROWS`] rows) `run` reads as the role `tw`, allowed
/// `limit` sessions, copying [`PARALLELISM`] chunks of 500 rows at once.
fn pg_rig_as_tw(limit: u32) -> Rig {
    let rig = Rig::new(&format!(
        "CREATE ROLE tw LOGIN REPLICATION CONNECTION LIMIT {limit};
         GRANT CREATE ON DATABASE postgres TO tw;
         CREATE TABLE t (id bigint PRIMARY KEY, v text);
         ALTER TABLE t OWNER TO tw;
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;"
    ));
    let text = std::fs::read_to_string(&rig.config).unwrap();
    assert!(text.contains("postgres://postgres@"), "{text}");
    let text = text.replace("postgres://postgres@", "postgres://tw@");
    std::fs::write(&rig.config, text).unwrap();
    with_chunks(&rig, 500, PARALLELISM);
    rig
}

/// The same on MariaDB: the account `tw` with the grants replicating needs, allowed `limit`
/// sessions.
fn mariadb_rig_as_tw(limit: u32) -> Rig {
    let setup = format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);
         INSERT INTO t SELECT seq, md5(seq) FROM seq_1_to_{ROWS};
         CREATE USER 'tw'@'%' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS {limit};
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'tw'@'%';
         GRANT SELECT ON {MY_DB}.* TO 'tw'@'%';"
    );
    let rig = Rig::mysql_with(&setup, MariaDbOptions::default(), |my| {
        my.url_as("tw", "pw", MY_DB)
    });
    with_chunks(&rig, 500, PARALLELISM);
    rig
}

/// `most` sessions were seen; the test shows something only if the parallel readers were.
fn assert_within(most: i64, claimed: i64, log: &str) {
    eprintln!("a run held {most} sessions at most; check says {claimed}");
    assert!(
        most > PARALLELISM as i64,
        "only {most} sessions seen: the parallel readers were missed\n{log}"
    );
    assert!(
        most <= claimed,
        "a run held {most} sessions at once; check says at most {claimed}\n{log}"
    );
}

#[test]
fn pg_connection_limits_hold_what_a_run_opens() {
    let mut rig = pg_rig_as_tw(3);

    let out = expect(
        run_cli(&["check"], &rig.config),
        1,
        &[
            "[FAIL] connection limits",
            "role \"tw\": CONNECTION LIMIT 3, 0 in use",
            "ALTER ROLE \"tw\" CONNECTION LIMIT 7;",
            "lower [snapshot] parallelism",
        ],
    );
    let n = claimed(&out);
    assert_eq!(n, PARALLELISM as i64 + 4, "{out}");

    // At exactly what check asks for, it passes (and the run below fits in it).
    rig.sql(&format!("ALTER ROLE tw CONNECTION LIMIT {n}"));
    let out = expect(run_cli(&["check"], &rig.config), 0, &["connection limits"]);
    assert!(!out.contains("FAIL"), "{out}");

    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tw'";
    let most = most_sessions_of_a_run(&mut rig, "public.t", sessions);
    assert_within(most, n, &rig.log());
    rig.stop();
}

#[test]
fn mariadb_connection_limits_hold_what_a_run_opens() {
    let mut rig = mariadb_rig_as_tw(3);

    let out = expect(
        run_cli(&["check"], &rig.config),
        1,
        &[
            "[FAIL] connection limits",
            "MAX_USER_CONNECTIONS 3",
            "ALTER USER 'tw'@'%' WITH MAX_USER_CONNECTIONS",
        ],
    );
    let n = claimed(&out);
    assert_eq!(n, PARALLELISM as i64 + 5, "{out}");

    rig.sql(&format!(
        "ALTER USER 'tw'@'%' WITH MAX_USER_CONNECTIONS {n}"
    ));
    let out = expect(run_cli(&["check"], &rig.config), 0, &["connection limits"]);
    assert!(!out.contains("FAIL"), "{out}");

    let sessions = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'tw'";
    let most = most_sessions_of_a_run(&mut rig, &format!("{MY_DB}.t"), sessions);
    assert_within(most, n, &rig.log());
    rig.stop();
}

/// What the refused connection's error says to do (the `fix` of the source's error).
const RAISE: &str = "counts the sessions a run opens";

/// A run whose limit (`limit`) leaves no room for its parallel readers: the refused
/// connection is retried, not fatal, and its error names the limit and the fix; once
/// `raise` lifts the limit, the copy completes and the replica equals the source.
fn over_the_limit_until_raised(rig: &mut Rig, table: &str, refused: &str, raise: &str) {
    let addr = rig.listen_http();
    rig.start();
    rig.wait_logged(RAISE, 1, Duration::from_secs(120));
    let log = rig.log();
    let line = log.lines().find(|l| l.contains(RAISE)).unwrap_or_default();
    eprintln!("{line}");
    assert!(line.contains(refused), "{log}");
    rig.sql(raise);
    common::wait_replica_consistent(rig, &addr);
    assert!(snapshot_rows_copied(&addr, table) > 0);
    let verified = run_cli(&["verify"], &rig.config);
    assert_eq!(verified.0, 0, "{}", verified.1);
    rig.stop();
}

#[test]
fn pg_a_run_over_the_role_limit_says_what_to_raise_and_copies_once_raised() {
    // Room for the client and the replication connection (and the start's row estimates),
    // not for the parallel readers.
    let mut rig = pg_rig_as_tw(3);
    over_the_limit_until_raised(
        &mut rig,
        "public.t",
        "too many connections for role \"tw\"",
        "ALTER ROLE tw CONNECTION LIMIT -1",
    );
}

#[test]
fn mariadb_a_run_over_the_account_limit_says_what_to_raise_and_copies_once_raised() {
    let mut rig = mariadb_rig_as_tw(4);
    over_the_limit_until_raised(
        &mut rig,
        &format!("{MY_DB}.t"),
        "max_user_connections",
        "ALTER USER 'tw'@'%' WITH MAX_USER_CONNECTIONS 0",
    );
}
