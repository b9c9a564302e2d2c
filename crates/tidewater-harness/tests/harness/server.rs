//! Each test starts its own cluster, so they run in parallel safely.

use crate::checks;

use tidewater_harness::{PgOptions, PgServer};

use self::checks::{ok, value, APP_ROWS};

#[test]
fn lifecycle_start_query_restart_drop() {
    let mut pg = PgServer::start().unwrap();
    checks::check_fresh(&pg, 5432, "postgres://postgres", "PG_VERSION");

    assert_eq!(value(&pg, "postgres", "SHOW wal_level"), "logical");
    assert_eq!(value(&pg, "postgres", "SHOW max_replication_slots"), "20");

    checks::create_app_table(&pg, "(1, 'a'), (2, 'b')");
    assert_eq!(ok(&pg, pg.psql("app", APP_ROWS)), "1|a\n2|b\n");

    checks::restart(&mut pg);
    assert_eq!(ok(&pg, pg.psql("app", APP_ROWS)), "1|a\n2|b\n");

    checks::check_drop_cleans_up(pg);
}

#[test]
fn options_are_applied() {
    let pg = PgServer::start_with(PgOptions {
        extra_conf: vec![("max_slot_wal_keep_size".into(), "1GB".into())],
        wal_level_logical: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(value(&pg, "postgres", "SHOW wal_level"), "replica");
    let keep_size = value(&pg, "postgres", "SHOW max_slot_wal_keep_size");
    assert_eq!(keep_size, "1GB");
}

#[test]
fn psql_error_names_command_and_stderr() {
    let pg = PgServer::start().unwrap();
    checks::check_errors_name_client_and_stderr(&pg, "postgres", "psql");
}

#[test]
fn stop_is_idempotent_and_restart_recovers() {
    let mut pg = PgServer::start().unwrap();
    let kept = "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)";
    ok(&pg, pg.psql("postgres", kept));
    checks::check_stop_is_idempotent(&mut pg, "postgres");
    // Immediate stop is a crash; restart must run recovery and keep committed data.
    checks::check_restart_recovers(&mut pg, "postgres", "SELECT x FROM kept", "42");
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
