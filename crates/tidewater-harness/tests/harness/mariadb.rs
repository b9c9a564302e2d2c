//! Each test starts its own MariaDB server, so they run in parallel safely.

use crate::checks;

use tidewater_harness::{MariaDbOptions, MariaDbServer};

use self::checks::{ok, value, APP_ROWS};

const BINLOG_SETTINGS: &str = "SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, \
     @@log_bin, @@gtid_strict_mode";

#[test]
fn lifecycle_start_query_restart_drop() {
    let mut db = MariaDbServer::start().unwrap();
    let port = checks::check_fresh(&db, 3306, "mysql://root", "mysql");
    assert_eq!(
        db.url_as("cdc", "s3cr:t@", "app"),
        format!("mysql://cdc:s3cr%3At%40@127.0.0.1:{port}/app")
    );
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

    checks::create_app_table(&db, "(1, 'a'), (2, NULL)");
    assert_eq!(ok(&db, db.sql("app", APP_ROWS)), "1\ta\n2\tNULL\n");
    let gtid = ok(&db, db.sql("", "SELECT @@gtid_binlog_pos"));
    assert!(gtid.starts_with("0-1-"), "gtid_binlog_pos {gtid:?}");

    checks::restart(&mut db);
    assert_ne!(db.pid(), Some(pid), "restart runs a new process");
    assert_eq!(ok(&db, db.sql("app", APP_ROWS)), "1\ta\n2\tNULL\n");
    assert_eq!(ok(&db, db.sql("", "SELECT @@gtid_binlog_pos")), gtid);

    checks::check_drop_cleans_up(db);
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
    assert_eq!(value(&a, "", dbs), "1");
    assert_eq!(value(&b, "", dbs), "0");
}

#[test]
fn extra_args_override_defaults() {
    let db = MariaDbServer::start_with(MariaDbOptions {
        extra_args: vec!["--binlog-format=MIXED".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(value(&db, "", "SELECT @@binlog_format"), "MIXED");
}

#[test]
fn binlog_can_be_switched_off() {
    let db = MariaDbServer::start_with(MariaDbOptions {
        binlog: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(value(&db, "", "SELECT @@log_bin"), "0");
    let skip = MariaDbServer::start_with(MariaDbOptions {
        extra_args: vec!["--skip-log-bin".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(value(&skip, "", "SELECT @@log_bin"), "0");
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
    checks::check_stop_is_idempotent(&mut db, "");
    assert_eq!(db.pid(), None);
    // stop() is SIGKILL; restart must run crash recovery and keep committed data.
    checks::check_restart_recovers(&mut db, "", "SELECT x FROM app.kept", "42");
}

#[test]
fn sql_error_names_command_and_stderr() {
    let db = MariaDbServer::start().unwrap();
    checks::check_errors_name_client_and_stderr(&db, "mysql", "mariadb");
}
