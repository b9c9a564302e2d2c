//! Every bad input ends with a clear message naming the cause and the fix, the documented exit
//! code (0 ok, 1 failed check, 2 usage/config, 3 source/destination) and nothing half-applied.
//! The real binary is run against real PostgreSQL servers; each command gets a deadline.

use crate::common;

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

    // Same DuckDB file: the live writer is named before any port is bound.
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            "is writing",
            "only one `tidewater run` may write a replica",
            "Stop the other one",
        ],
    );
    // Another DuckDB file, same slot: the slot is the running replica's (refused at once, not
    // after waiting for its walsender).
    let config = variant(&rig, "replica.duckdb", "other.duckdb");
    expect(
        run_cli(&["run"], &config),
        3,
        &[
            &format!("replication slot {SLOT} belongs to another replica"),
            "source.slot",
        ],
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
        &[
            "\"public\".\"t\"",
            "changed by hand",
            "extra",
            "fix: restore it",
        ],
    );
    // Nothing applied, nothing confirmed.
    assert_eq!(rig.count("SELECT count(*) FROM public.t"), 1);
    assert_eq!(rig.confirmed_flush_lsn(), confirmed);
}

/// A replica table dropped by hand is not recreated empty (which would leave a replica that
/// silently lacks its snapshot rows): the run stops and names the fix.
#[test]
fn replica_dropped_by_hand_is_refused_not_recreated_empty() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    {
        let conn = tidewater_duckdb::duckdb::Connection::open(&rig.db).unwrap();
        conn.execute_batch("DROP TABLE public.t").unwrap();
    }
    let confirmed = rig.confirmed_flush_lsn();
    rig.sql("INSERT INTO t VALUES (2, 'two')");
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            "\"public\".\"t\" is missing",
            "dropped by hand",
            "fix: restore it",
        ],
    );
    assert_eq!(rig.confirmed_flush_lsn(), confirmed);
}

/// Prints the `error:` line of `out` (the message a user sees) and returns `out`.
fn shown(out: String) -> String {
    eprintln!(
        "{}",
        out.lines()
            .rfind(|l| l.starts_with("error:"))
            .unwrap_or_default()
    );
    out
}

/// Makes the server ask every user but `postgres` (which the harness's psql uses) for a
/// password (scram-sha-256) over TCP, and waits until it does: `wrong_url` is refused.
fn require_passwords(pg: &PgServer, wrong_url: &str) {
    let hba = "local all all trust\n\
               host all postgres 127.0.0.1/32 trust\n\
               host all all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(pg.data_dir().join("pg_hba.conf"), hba).unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    // The postmaster reloads asynchronously: wait until a wrong password is refused.
    wait_until(DEADLINE, "pg_hba.conf to require passwords", || {
        PgServer::tool("psql")
            .args(["-X", "-A", "-t", "-c", "SELECT 1", wrong_url])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stderr).contains("password authentication failed")
            })
    })
    .unwrap();
}

#[test]
fn wrong_password_is_named_without_the_password() {
    let pg = PgServer::start().unwrap();
    pg.psql(
        "postgres",
        &format!(
            "{SETUP} CREATE ROLE repl LOGIN REPLICATION PASSWORD 'the-right-one'; \
             ALTER TABLE t OWNER TO repl; GRANT CREATE ON DATABASE postgres TO repl;"
        ),
    )
    .unwrap();
    let url = |password: &str| {
        format!(
            "postgres://repl:{password}@127.0.0.1:{}/postgres",
            pg.port()
        )
    };
    require_passwords(&pg, &url(PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.duckdb");
    let wrong = config_for(&url(PASSWORD), &db);
    shown(expect(
        tidewater(&["run"], &wrong),
        3,
        &[
            "password authentication failed for user \"repl\"",
            "check the user and password in source.url",
        ],
    ));
    expect(
        tidewater(&["check"], &wrong),
        1,
        &[
            "[FAIL] connection",
            "password authentication failed",
            "password in source.url",
        ],
    );
    assert_eq!(source_objects(&pg), "0/0");
    assert!(!db.exists(), "a DuckDB file was created");
    // The same config with the right password connects: it was the password, nothing else.
    let out = expect(
        tidewater(&["check"], &config_for(&url("the-right-one"), &db)),
        0,
        &["as user repl"],
    );
    assert!(!out.contains("[FAIL]"), "{out}");
}

#[test]
fn role_without_replication_is_refused_before_creating_anything() {
    // The role may log in, owns the table and may create publications: only REPLICATION
    // is missing, so the refusal must come before the publication is created.
    let pg = PgServer::start().unwrap();
    pg.psql(
        "postgres",
        &format!(
            "{SETUP} CREATE ROLE norepl LOGIN; ALTER TABLE t OWNER TO norepl; \
             GRANT CREATE ON DATABASE postgres TO norepl;"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.duckdb");
    let text = config_for(
        &format!("postgres://norepl@127.0.0.1:{}/postgres", pg.port()),
        &db,
    );
    shown(expect(
        tidewater(&["run"], &text),
        3,
        &[
            "must be superuser or replication role",
            "user norepl lacks the REPLICATION attribute",
            "ALTER ROLE \"norepl\" WITH REPLICATION",
            "rds_replication",
        ],
    ));
    assert_eq!(source_objects(&pg), "0/0");
    assert!(!db.exists(), "a DuckDB file was created");
    expect(
        tidewater(&["check"], &text),
        1,
        &[
            "[FAIL] replication privilege",
            "ALTER ROLE \"norepl\" WITH REPLICATION",
        ],
    );
    // With the attribute granted the same config replicates.
    pg.psql("postgres", "ALTER ROLE norepl WITH REPLICATION")
        .unwrap();
    let out = expect(
        tidewater(&["check"], &text),
        0,
        &["user norepl may replicate"],
    );
    assert!(!out.contains("[FAIL]"), "{out}");
}

/// Moves the rig's DuckDB file (and its WAL, if any) aside, as the re-snapshot fix says.
fn move_replica_aside(rig: &Rig) {
    for ext in ["", ".wal"] {
        let from = PathBuf::from(format!("{}{ext}", rig.db.display()));
        if from.exists() {
            std::fs::rename(&from, format!("{}.old", from.display())).unwrap();
        }
    }
}

/// After the fix a new snapshot is taken and the replica holds every row again.
fn resnapshot_recovers(rig: &mut Rig, rows: i64) {
    move_replica_aside(rig);
    let mark = rig.log().len();
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    let log = rig.log()[mark..].to_string();
    assert!(log.contains("taking the initial snapshot"), "{log}");
    assert_eq!(rig.count("SELECT count(*) FROM public.t"), rows);
}

#[test]
fn dropped_slot_says_the_changes_are_gone_and_how_to_resnapshot() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.sql(&format!("SELECT pg_drop_replication_slot('{SLOT}')"));
    rig.sql("INSERT INTO t VALUES (2, 'two')");
    shown(expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            &format!("replication slot {SLOT} does not exist"),
            "changes since then are gone",
            "move the DuckDB file",
            "sink.path to a new file",
            "new snapshot",
        ],
    ));
    // Nothing was recreated behind the user's back, nor applied.
    assert_eq!(
        rig.sql("SELECT count(*) FROM pg_replication_slots").trim(),
        "0"
    );
    assert_eq!(rig.count("SELECT count(*) FROM public.t"), 1);
    resnapshot_recovers(&mut rig, 2);
}

#[test]
fn slot_with_lost_wal_says_how_to_resnapshot() {
    let mut rig = Rig::with_server(
        SETUP,
        PgOptions {
            extra_conf: vec![("max_slot_wal_keep_size".into(), "1MB".into())],
            ..Default::default()
        },
        "",
    );
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    // With tidewater stopped the source writes past max_slot_wal_keep_size: at a checkpoint
    // the server invalidates the slot and removes the WAL it held.
    let status = format!("SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{SLOT}'");
    let mut n = 1;
    wait_until(Duration::from_secs(60), "the slot's WAL to be lost", || {
        n += 1;
        rig.sql(&format!(
            "INSERT INTO t VALUES ({n}, 'lost'); SELECT pg_switch_wal(); CHECKPOINT;"
        ));
        rig.sql(&status).trim() == "lost"
    })
    .unwrap();
    shown(expect(
        run_cli(&["run"], &rig.config),
        3,
        &[
            &format!("replication slot {SLOT} has lost"),
            "max_slot_wal_keep_size",
            "move the DuckDB file",
            "sink.path to a new file",
            "new snapshot",
        ],
    ));
    assert_eq!(rig.count("SELECT count(*) FROM public.t"), 1);
    expect(
        run_cli(&["check"], &rig.config),
        1,
        &["[FAIL] slot", "lost WAL"],
    );
    resnapshot_recovers(&mut rig, n);
}

/// A slot with the configured name that this replica never used (another tool's, another
/// plugin) is left alone: the first run stops with the choice, instead of replacing it.
#[test]
fn another_tools_slot_with_the_same_name_is_not_replaced() {
    let rig = Rig::new(SETUP);
    rig.sql(&format!(
        "SELECT pg_create_logical_replication_slot('{SLOT}', 'test_decoding')"
    ));
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &["belongs to something else", "test_decoding", "source.slot"],
    );
    assert_eq!(
        rig.sql(&format!(
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .trim(),
        "test_decoding"
    );
}
