//! MySQL/MariaDB bad inputs end with the cause and the fix, exit code 3, and no password in
//! the output: binlog off or not ROW, wrong password, unsupported type, no matching table, a
//! stored position whose binlog was purged.

use crate::common;

use std::time::Duration;

use common::{expect, run_cli, Rig, PASSWORD};
use tidewater_harness::{MariaDbOptions, MariaDbServer};

/// A config replicating `tables` from `url` into a replica in `dir`.
fn config(dir: &tempfile::TempDir, url: &str, tables: &str) -> std::path::PathBuf {
    let path = dir.path().join("tidewater.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\ntype = \"mysql\"\nurl = \"{url}\"\ntables = [\"{tables}\"]\nserver_id = 77\n\n[sink]\ntype = \"duckdb\"\npath = {:?}\n",
            dir.path().join("replica.duckdb").display().to_string()
        ),
    )
    .unwrap();
    path
}

fn server(extra: &[&str], setup: &str) -> MariaDbServer {
    let s = MariaDbServer::start_with(MariaDbOptions {
        extra_args: extra.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    })
    .expect("start MariaDB");
    s.create_database("shop").unwrap();
    s.sql("shop", setup).unwrap();
    s
}

#[test]
fn statement_based_binlog_is_refused_with_the_fix() {
    let s = server(
        &["--binlog-format=MIXED"],
        "CREATE TABLE t (id int PRIMARY KEY);",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &s.url("shop"), "shop.*");
    expect(
        run_cli(&["run"], &cfg),
        3,
        &["binlog_format = MIXED", "SET GLOBAL binlog_format = 'ROW'"],
    );
    assert!(
        !dir.path().join("replica.duckdb").exists(),
        "nothing may be created"
    );
}

#[test]
fn binlog_off_is_refused_with_the_fix() {
    let s = MariaDbServer::start_with(MariaDbOptions {
        binlog: false,
        ..Default::default()
    })
    .unwrap();
    s.create_database("shop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &s.url("shop"), "shop.*");
    expect(run_cli(&["run"], &cfg), 3, &["log_bin = OFF", "log_bin"]);
}

#[test]
fn wrong_password_names_the_cause_without_the_password() {
    let s = server(&[], "CREATE TABLE t (id int PRIMARY KEY);");
    s.sql(
        "",
        "CREATE USER 'repl'@'%' IDENTIFIED BY 'right'; GRANT ALL ON *.* TO 'repl'@'%';",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &s.url_as("repl", PASSWORD, "shop"), "shop.*");
    expect(run_cli(&["run"], &cfg), 3, &["Access denied", "password"]);
}

#[test]
fn unsupported_types_and_unmatched_globs_are_named() {
    let s = server(&[], "CREATE TABLE t (id int PRIMARY KEY, u uuid);");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &s.url("shop"), "shop.*");
    expect(
        run_cli(&["run"], &cfg),
        3,
        &["shop.t.u", "uuid", "\"!shop.t\""],
    );
    let cfg = config(&dir, &s.url("shop"), "shop.nothing_*");
    expect(
        run_cli(&["run"], &cfg),
        3,
        &["no source table matches", "shop.nothing_*"],
    );
}

#[test]
fn purged_binlog_stops_with_the_resnapshot_fix() {
    let mut rig =
        Rig::mysql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1);");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    // Changes the replica never saw, then their binlog files are purged.
    rig.sql("INSERT INTO t VALUES (2, 2); FLUSH BINARY LOGS; INSERT INTO t VALUES (3, 3);");
    rig.purge_binlogs();
    let out = expect(
        run_cli(&["run"], &rig.config),
        3,
        &["mariadb-gtid:0-1-", "take a new snapshot"],
    );
    // Refused by the position guard before streaming, naming what the source no longer has.
    assert!(
        out.contains("the source no longer has the transactions up to mariadb-gtid:0-1-"),
        "{out}"
    );
    // Nothing was applied past the stored position.
    assert_eq!(rig.count("SELECT count(*) FROM t"), 1);
}
