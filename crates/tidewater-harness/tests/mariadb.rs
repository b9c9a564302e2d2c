//! Each test starts its own MariaDB server, so they run in parallel safely.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use tidewater_harness::{wait_until, HarnessError, MariaDbOptions, MariaDbServer};

/// Unwraps, printing the server log path so failures can be diagnosed.
fn ok<T>(db: &MariaDbServer, r: Result<T, HarnessError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}\n(server log: {})", db.log_path().display()))
}

const BINLOG_SETTINGS: &str = "SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, \
     @@log_bin, @@gtid_strict_mode";

#[test]
fn lifecycle_start_query_restart_drop() {
    let mut db = MariaDbServer::start().unwrap();
    let port = db.port();
    assert_ne!(port, 3306, "must never use the machine's own server");
    assert_eq!(db.host(), "127.0.0.1");
    assert_eq!(db.url("app"), format!("mysql://root@127.0.0.1:{port}/app"));
    assert_eq!(
        db.url_as("cdc", "s3cr:t@", "app"),
        format!("mysql://cdc:s3cr%3At%40@127.0.0.1:{port}/app")
    );
    assert!(db.data_dir().join("mysql").is_dir());
    assert!(db.log_path().is_file());
    let pid = db.pid().expect("running");

    assert_eq!(
        ok(&db, db.sql("", BINLOG_SETTINGS)),
        "ROW\tFULL\tFULL\t1\t1\n"
    );
    assert_eq!(
        ok(
            &db,
            db.sql(
                "",
                "SELECT @@server_id, @@character_set_server, @@time_zone, @@port"
            )
        ),
        format!("1\tutf8mb4\t+00:00\t{port}\n")
    );

    ok(&db, db.create_database("app"));
    ok(
        &db,
        db.sql(
            "app",
            "CREATE TABLE t (id int PRIMARY KEY, v text);\n\
             INSERT INTO t VALUES (1, 'a'), (2, NULL);",
        ),
    );
    let rows = "SELECT id, v FROM t ORDER BY id";
    assert_eq!(ok(&db, db.sql("app", rows)), "1\ta\n2\tNULL\n");
    let gtid = ok(&db, db.sql("", "SELECT @@gtid_binlog_pos"));
    assert!(gtid.starts_with("0-1-"), "gtid_binlog_pos {gtid:?}");

    let restarted = db.restart();
    ok(&db, restarted);
    assert_eq!(db.port(), port, "restart keeps the port");
    assert_ne!(db.pid(), Some(pid), "restart runs a new process");
    assert_eq!(ok(&db, db.sql("app", rows)), "1\ta\n2\tNULL\n");
    assert_eq!(ok(&db, db.sql("", "SELECT @@gtid_binlog_pos")), gtid);

    let data_dir = db.data_dir().to_path_buf();
    let root = data_dir.parent().unwrap().to_path_buf();
    drop(db);
    assert!(!root.exists(), "temp dir {} survived drop", root.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still answering"
    );
    TcpListener::bind(("127.0.0.1", port)).expect("port is free after drop");
}

#[test]
fn real_grants_users_and_passwords_work() {
    let db = MariaDbServer::start().unwrap();
    ok(&db, db.create_database("app"));
    ok(
        &db,
        db.sql(
            "",
            "CREATE USER 'cdc'@'127.0.0.1' IDENTIFIED BY 'pw';\n\
             GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'cdc'@'127.0.0.1';",
        ),
    );
    let grants = ok(&db, db.sql("", "SHOW GRANTS FOR 'cdc'@'127.0.0.1'"));
    assert!(grants.contains("REPLICATION SLAVE"), "{grants}");
    let err = db
        .sql("", "CREATE USER 'cdc'@'127.0.0.1'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mariadb") && err.contains("1396"), "{err}");
}

#[test]
fn two_servers_at_once_get_different_ports_and_dirs() {
    let a = MariaDbServer::start().unwrap();
    let b = MariaDbServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    ok(&a, a.create_database("only_a"));
    let dbs = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'only_a'";
    assert_eq!(ok(&a, a.sql("", dbs)).trim(), "1");
    assert_eq!(ok(&b, b.sql("", dbs)).trim(), "0");
}

#[test]
fn extra_args_override_defaults() {
    let db = MariaDbServer::start_with(MariaDbOptions {
        extra_args: vec!["--binlog-format=MIXED".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        ok(&db, db.sql("", "SELECT @@binlog_format")).trim(),
        "MIXED"
    );
}

#[test]
fn binlog_can_be_switched_off() {
    let db = MariaDbServer::start_with(MariaDbOptions {
        binlog: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ok(&db, db.sql("", "SELECT @@log_bin")).trim(), "0");
    let skip = MariaDbServer::start_with(MariaDbOptions {
        extra_args: vec!["--skip-log-bin".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ok(&skip, skip.sql("", "SELECT @@log_bin")).trim(), "0");
}

#[test]
fn stop_is_idempotent_and_restart_recovers() {
    let mut db = MariaDbServer::start().unwrap();
    ok(
        &db,
        db.sql(
            "",
            "CREATE DATABASE app; CREATE TABLE app.kept (x int); INSERT INTO app.kept VALUES (42);",
        ),
    );
    db.stop().unwrap();
    db.stop().unwrap();
    assert_eq!(db.pid(), None);
    assert!(db.sql("", "SELECT 1").is_err());
    TcpListener::bind(("127.0.0.1", db.port())).expect("port is free after stop");

    // stop() is SIGKILL; restart must run crash recovery and keep committed data.
    let restarted = db.restart();
    ok(&db, restarted);
    wait_until(Duration::from_secs(10), "kept row readable", || {
        db.sql("", "SELECT x FROM app.kept")
            .is_ok_and(|o| o.trim() == "42")
    })
    .unwrap();
}

#[test]
fn sql_error_names_command_and_stderr() {
    let db = MariaDbServer::start().unwrap();
    let err = db
        .sql("mysql", "SELECT 1; SELECT * FROM no_such_table; SELECT 2;")
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("mariadb"), "{msg}");
    assert!(msg.contains("no_such_table"), "{msg}");
    assert!(db.create_database("dup").is_ok());
    assert!(db
        .create_database("dup")
        .unwrap_err()
        .to_string()
        .contains("exists"));
}
