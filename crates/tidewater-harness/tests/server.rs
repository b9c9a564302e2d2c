//! Each test starts its own cluster, so they run in parallel safely.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use tidewater_harness::{wait_until, HarnessError, PgOptions, PgServer};

/// Unwraps, printing the server log path so failures can be diagnosed.
fn ok<T>(pg: &PgServer, r: Result<T, HarnessError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}\n(server log: {})", pg.log_path().display()))
}

#[test]
fn lifecycle_start_query_restart_drop() {
    let mut pg = PgServer::start().unwrap();
    let port = pg.port();
    assert_ne!(port, 5432, "must never use the machine's own server");
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(
        pg.url("app"),
        format!("postgres://postgres@127.0.0.1:{port}/app")
    );
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    assert!(pg.log_path().is_file());

    assert_eq!(
        ok(&pg, pg.psql("postgres", "SHOW wal_level")).trim(),
        "logical"
    );
    assert_eq!(
        ok(&pg, pg.psql("postgres", "SHOW max_replication_slots")).trim(),
        "20"
    );

    ok(&pg, pg.create_database("app"));
    ok(
        &pg,
        pg.psql(
            "app",
            "CREATE TABLE t (id int PRIMARY KEY, v text);\n\
         INSERT INTO t VALUES (1, 'a'), (2, 'b');",
        ),
    );
    let rows = "SELECT id, v FROM t ORDER BY id";
    assert_eq!(ok(&pg, pg.psql("app", rows)), "1|a\n2|b\n");

    let restarted = pg.restart();
    ok(&pg, restarted);
    assert_eq!(pg.port(), port, "restart keeps the port");
    assert_eq!(ok(&pg, pg.psql("app", rows)), "1|a\n2|b\n");

    let data_dir = pg.data_dir().to_path_buf();
    let root = data_dir.parent().unwrap().to_path_buf();
    drop(pg);
    assert!(
        !data_dir.exists(),
        "data dir {} survived drop",
        data_dir.display()
    );
    assert!(!root.exists(), "temp dir {} survived drop", root.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still answering"
    );
    TcpListener::bind(("127.0.0.1", port)).expect("port is free after drop");
}

#[test]
fn options_are_applied() {
    let pg = PgServer::start_with(PgOptions {
        extra_conf: vec![("max_slot_wal_keep_size".into(), "1GB".into())],
        wal_level_logical: false,
    })
    .unwrap();
    assert_eq!(
        ok(&pg, pg.psql("postgres", "SHOW wal_level")).trim(),
        "replica"
    );
    assert_eq!(
        ok(&pg, pg.psql("postgres", "SHOW max_slot_wal_keep_size")).trim(),
        "1GB"
    );
}

#[test]
fn psql_error_names_command_and_stderr() {
    let pg = PgServer::start().unwrap();
    let err = pg
        .psql(
            "postgres",
            "SELECT 1; SELECT * FROM no_such_table; SELECT 2",
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("psql"), "{msg}");
    assert!(msg.contains("no_such_table"), "{msg}");
    assert!(pg.create_database("dup").is_ok());
    assert!(pg
        .create_database("dup")
        .unwrap_err()
        .to_string()
        .contains("already exists"));
}

#[test]
fn stop_is_idempotent_and_restart_recovers() {
    let mut pg = PgServer::start().unwrap();
    ok(
        &pg,
        pg.psql(
            "postgres",
            "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)",
        ),
    );
    pg.stop().unwrap();
    pg.stop().unwrap();
    assert!(pg.psql("postgres", "SELECT 1").is_err());
    TcpListener::bind(("127.0.0.1", pg.port())).expect("port is free after stop");

    // Immediate stop is a crash; restart must run recovery and keep committed data.
    let restarted = pg.restart();
    ok(&pg, restarted);
    wait_until(Duration::from_secs(10), "kept row readable", || {
        pg.psql("postgres", "SELECT x FROM kept")
            .is_ok_and(|o| o.trim() == "42")
    })
    .unwrap();
}

#[test]
fn usable_from_tokio_via_spawn_blocking_and_url() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pg = tokio::task::spawn_blocking(PgServer::start)
            .await
            .unwrap()
            .unwrap();
        let (client, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", pg.url("postgres")));
        let conn = tokio::spawn(conn);
        let row = client
            .query_one("SELECT current_setting('wal_level')", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "logical");
        drop(client);
        let _ = conn.await;
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    });
}
