//! Every bad input ends with a clear message naming the cause and the fix, the documented exit
//! code (0 ok, 1 failed check, 2 usage/config, 3 source/destination) and nothing half-applied.
//! The real binary is run against real PostgreSQL servers; each command gets a deadline.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{expect, run_cli, Rig, DEADLINE, PASSWORD, SLOT};
use tidewater_harness::{free_port, wait_until, PgOptions, PgServer};

const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one');";

/// Writes `config_text` to a fresh `tidewater.toml` and runs `tidewater <args>` on it.
fn tidewater(args: &[&str], config_text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidewater.toml");
    std::fs::write(&path, config_text).unwrap();
    run_cli(args, &path)
}

fn config_for(url: &str, db: &Path) -> String {
    format!(
        "[source]\ntype = \"postgres\"\nurl = \"{url}\"\ntables = [\"public.*\"]\n\n[sink]\ntype = \"duckdb\"\npath = {:?}\n",
        db.display().to_string()
    )
}

/// The rig's config with one substitution, written next to it.
fn variant(rig: &Rig, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    assert!(text.contains(from), "{from:?} not in the rig config");
    let path = rig.dir.path().join("variant.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

/// What tidewater may have created on the source: replication slots and publications.
fn source_objects(pg: &PgServer) -> String {
    pg.psql(
        "postgres",
        "SELECT (SELECT count(*) FROM pg_replication_slots) || '/' || (SELECT count(*) FROM pg_publication)",
    )
    .unwrap()
    .trim()
    .to_string()
}

fn offline_config() -> String {
    config_for(
        "postgres://postgres@127.0.0.1:1/postgres",
        Path::new("/nonexistent/replica.duckdb"),
    )
}

#[test]
fn malformed_toml_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidewater.toml");
    // The malformed line holds a password: the message must point at it, not quote it.
    let text = offline_config().replacen(
        "url = \"postgres://postgres@",
        &format!("url = postgres://postgres:{PASSWORD}@"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = expect(
        run_cli(&["run"], &path),
        2,
        &[&path.display().to_string(), "line 3"],
    );
    assert!(out.contains("error:"), "{out}");
    // `check` and `status` read the same file the same way.
    expect(run_cli(&["check"], &path), 2, &["line 3"]);
    expect(run_cli(&["status"], &path), 2, &["line 3"]);
}

#[test]
fn unknown_key_is_named() {
    let text = offline_config() + "pth = \"x\"\n";
    expect(
        tidewater(&["run"], &text),
        2,
        &["unknown field `pth`", "`path`"],
    );
}

#[test]
fn missing_config_file() {
    let missing = Path::new("/nonexistent/dir/tidewater.toml");
    expect(
        run_cli(&["run"], missing),
        2,
        &["cannot read config file", "/nonexistent/dir/tidewater.toml"],
    );
}

#[test]
fn unset_env_var_is_named() {
    let text = offline_config().replace(
        "postgres://postgres@127.0.0.1:1/postgres",
        "${TIDEWATER_TEST_NEVER_SET}",
    );
    expect(
        tidewater(&["run"], &text),
        2,
        &[
            "source.url",
            "TIDEWATER_TEST_NEVER_SET",
            "not set",
            "export it",
        ],
    );
}

#[test]
fn unreachable_host_fails_fast_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
        free_port()
    );
    let started = Instant::now();
    expect(
        tidewater(&["run"], &config_for(&url, &dir.path().join("r.duckdb"))),
        3,
        &[
            "cannot connect",
            "127.0.0.1",
            "Connection refused",
            "host and port in source.url",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // `check` reports the same as a failed check item, with the fix.
    expect(
        tidewater(&["check"], &config_for(&url, &dir.path().join("r.duckdb"))),
        1,
        &["FAIL", "host and port"],
    );
}

#[test]
fn source_side_mistakes_create_nothing_on_the_source() {
    let rig = Rig::new(SETUP);
    // A database that does not exist: named, with the fix, and the password kept out.
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/nosuchdb",
        rig.pg().port()
    );
    let db = rig.dir.path().join("other.duckdb");
    expect(
        tidewater(&["run"], &config_for(&url, &db)),
        3,
        &["nosuchdb", "does not exist", "database name in source.url"],
    );
    // No table matches the globs: a config error, before any slot or publication exists.
    let config = variant(&rig, "\"public.*\"", "\"nope.*\", \"public.nothing_*\"");
    expect(
        run_cli(&["run"], &config),
        2,
        &["no source table matches", "nope.*", "tidewater check"],
    );
    assert_eq!(source_objects(rig.pg()), "0/0");
    // Nor is a DuckDB file created for a pipeline that cannot start.
    assert!(
        !db.exists() && !rig.db.exists(),
        "a DuckDB file was created"
    );
}

#[test]
fn wal_level_replica_is_refused_with_the_fix() {
    let pg = PgServer::start_with(PgOptions {
        wal_level_logical: false,
        ..Default::default()
    })
    .unwrap();
    pg.psql("postgres", SETUP).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_for(&pg.url("postgres"), &dir.path().join("r.duckdb"));
    expect(
        tidewater(&["run"], &text),
        3,
        &["wal_level = replica", "wal_level = logical", "restart"],
    );
    expect(tidewater(&["check"], &text), 1, &["FAIL", "wal_level"]);
    assert_eq!(source_objects(&pg), "0/0");
}

#[test]
fn a_running_replica_refuses_a_second_run_and_keeps_replicating() {
    let mut rig = Rig::new(SETUP);
    // Never run: no DuckDB file yet.
    expect(
        run_cli(&["status"], &rig.config),
        3,
        &["does not exist yet", "tidewater run"],
    );
    assert!(!rig.db.exists(), "status must not create the replica");

    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    // `status` while running reads the status the running process publishes every 2 s (the
    // first one, from before the snapshot, has no position yet).
    let published = rig.dir.path().join("replica.duckdb.status.json");
    wait_until(DEADLINE, "a published status with a position", || {
        std::fs::read_to_string(&published).is_ok_and(|s| s.contains("\"position\": \""))
    })
    .unwrap();
    expect(
        run_cli(&["status"], &rig.config),
        0,
        &["held by running tidewater", "position:", "public.t"],
    );

    // Same DuckDB file: locked.
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &["is in use by another process", "stop the other one"],
    );
    // Another DuckDB file, same slot: the slot is in use.
    let config = variant(&rig, "replica.duckdb", "other.duckdb");
    expect(
        run_cli(&["run"], &config),
        3,
        &[&format!("replication slot {SLOT} is in use"), "source.slot"],
    );

    // The first run was not disturbed.
    rig.sql("INSERT INTO t VALUES (2, 'two')");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop(); // SIGTERM while streaming: exit 0 (asserted by the rig).
    assert!(
        !published.exists(),
        "a clean stop removes the published status"
    );
    assert_eq!(rig.count("SELECT count(*) FROM public.t"), 2);
    let out = expect(
        run_cli(&["status"], &rig.config),
        0,
        &["not running", "position:", "public.t"],
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("public.t") && l.split_whitespace().nth(1) == Some("2")),
        "{out}"
    );
}

#[test]
fn replica_changed_by_hand_is_refused_without_applying() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    {
        let conn = tidewater_duckdb::duckdb::Connection::open(&rig.db).unwrap();
        conn.execute_batch("ALTER TABLE public.t ADD COLUMN extra INT")
            .unwrap();
    }
    let confirmed = rig.confirmed_flush_lsn();
    rig.sql("INSERT INTO t VALUES (2, 'two')");
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &["\"public\".\"t\"", "changed by hand", "extra", "Restore it"],
    );
    // Nothing applied, nothing confirmed.
    assert_eq!(rig.count("SELECT count(*) FROM public.t"), 1);
    assert_eq!(rig.confirmed_flush_lsn(), confirmed);
}
