//! Preflight checks against real throwaway servers.

use tidewater_core::check::{failed, render, CheckItem, CheckStatus};
use tidewater_harness::{free_port, PgOptions, PgServer};
use tidewater_postgres::check::run_checks;
use tidewater_postgres::PgSourceConfig;

/// Starts a server with database `app` prepared by `sql`.
async fn server(opts: PgOptions, sql: &'static str) -> PgServer {
    tokio::task::spawn_blocking(move || {
        let pg = PgServer::start_with(opts).expect("start server");
        pg.create_database("app").expect("create database");
        pg.psql("app", sql).expect("prepare database");
        pg
    })
    .await
    .expect("setup task")
}

fn config(url: String, tables: &[&str]) -> PgSourceConfig {
    PgSourceConfig {
        url: tidewater_core::Secret::new(url),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        slot: "tw_slot".into(),
        publication: "tw_pub".into(),
    }
}

fn find<'a>(items: &'a [CheckItem], name: &str) -> &'a CheckItem {
    items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no item {name}:\n{}", render(items)))
}

const TABLES: &str = "CREATE TABLE keyed (id int PRIMARY KEY, v text); \
                      CREATE TABLE keyless (a int, b text); \
                      CREATE TABLE spans (id int PRIMARY KEY, dur interval);";

#[tokio::test(flavor = "multi_thread")]
async fn good_server_passes_with_warnings_for_keyless_table_and_interval() {
    let pg = server(PgOptions::default(), TABLES).await;
    let cfg = config(pg.url("app"), &["public.*"]);
    let items = run_checks(&cfg, 1).await;
    let report = render(&items);
    assert!(!failed(&items), "{report}");
    assert!(
        find(&items, "tables").detail.contains("3 selected"),
        "{report}"
    );
    let keyless = find(&items, "key public.keyless");
    assert_eq!(keyless.status, CheckStatus::Warn);
    assert!(keyless.detail.contains("only inserts"), "{report}");
    assert!(
        keyless
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("REPLICA IDENTITY FULL"),
        "{report}"
    );
    let interval = find(&items, "type public.spans.dur");
    assert_eq!(interval.status, CheckStatus::Warn);
    assert!(interval.detail.contains("interval"), "{report}");
    assert!(
        find(&items, "slot").detail.contains("will be created"),
        "{report}"
    );

    // An existing pgoutput slot and publications are reported, not recreated.
    let url = pg.url("app");
    let _pg = tokio::task::spawn_blocking(move || {
        pg.psql(
            "app",
            "SELECT pg_create_logical_replication_slot('tw_slot', 'pgoutput'); \
             CREATE PUBLICATION tw_pub FOR TABLE keyed, spans; \
             CREATE PUBLICATION tw_pub_insert_only FOR TABLE keyless WITH (publish = 'insert, truncate');",
        )
        .expect("create slot and publications");
        pg
    })
    .await
    .expect("slot task");
    let items = run_checks(&config(url, &["public.*"]), 1).await;
    let report = render(&items);
    assert!(!failed(&items), "{report}");
    assert!(
        find(&items, "slot").detail.contains("confirmed up to"),
        "{report}"
    );
    // Created without publish_via_partition_root (as earlier versions did): the next run
    // sets it, which check says, with the statement.
    let publication = find(&items, "publication");
    assert!(publication.detail.contains("exist"), "{report}");
    assert_eq!(publication.status, CheckStatus::Warn, "{report}");
    assert!(
        publication
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("SET (publish_via_partition_root = true)")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_level_replica_fails() {
    let pg = server(
        PgOptions {
            wal_level_logical: false,
            ..Default::default()
        },
        TABLES,
    )
    .await;
    let items = run_checks(&config(pg.url("app"), &["public.*"]), 1).await;
    let wal = find(&items, "wal_level");
    assert_eq!(wal.status, CheckStatus::Fail, "{}", render(&items));
    assert!(wal
        .fix
        .as_deref()
        .unwrap_or("")
        .contains("wal_level = logical"));
}

#[tokio::test(flavor = "multi_thread")]
async fn user_without_replication_fails() {
    let pg = server(
        PgOptions::default(),
        "CREATE ROLE app LOGIN PASSWORD 'pw'; CREATE TABLE keyed (id int PRIMARY KEY);",
    )
    .await;
    let url = format!("postgres://app:pw@{}:{}/app", pg.host(), pg.port());
    let items = run_checks(&config(url, &["public.*"]), 1).await;
    let report = render(&items);
    let repl = find(&items, "replication privilege");
    assert_eq!(repl.status, CheckStatus::Fail, "{report}");
    assert!(
        repl.fix
            .as_deref()
            .unwrap_or("")
            .contains("ALTER ROLE \"app\" WITH REPLICATION"),
        "{report}"
    );
    let select = find(&items, "select privilege");
    assert_eq!(select.status, CheckStatus::Fail, "{report}");
    assert!(
        select
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("GRANT SELECT ON \"public\".\"keyed\""),
        "{report}"
    );
    assert_eq!(
        find(&items, "publication").status,
        CheckStatus::Fail,
        "{report}"
    );
    assert!(!report.contains("pw@"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn patterns_matching_nothing_fail() {
    let pg = server(PgOptions::default(), TABLES).await;
    let items = run_checks(&config(pg.url("app"), &["nosuch.*"]), 1).await;
    let tables = find(&items, "tables");
    assert_eq!(tables.status, CheckStatus::Fail, "{}", render(&items));
    assert!(
        tables.detail.contains("nosuch.*") && tables.detail.contains("public.keyed"),
        "{}",
        render(&items)
    );
    assert!(!items.iter().any(|i| i.name.starts_with("key ")));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_one_failure_without_the_password() {
    let url = format!("postgres://u:supersecret@127.0.0.1:{}/db", free_port());
    let items = run_checks(&config(url, &["public.*"]), 1).await;
    let report = render(&items);
    assert_eq!(items.len(), 1, "{report}");
    assert_eq!(
        (items[0].name.as_str(), items[0].status),
        ("connection", CheckStatus::Fail)
    );
    assert!(
        items[0].fix.as_deref().unwrap_or("").contains("source.url"),
        "{report}"
    );
    assert!(!report.contains("supersecret"), "{report}");
}

#[test]
fn render_aligns_names_and_indents_fixes() {
    let item = |name: &str, status, fix: Option<&str>| CheckItem {
        name: name.into(),
        status,
        detail: "found".into(),
        fix: fix.map(Into::into),
        reader_in_use: false,
    };
    let items = [
        item("a", CheckStatus::Ok, None),
        item("longer", CheckStatus::Warn, Some("do it")),
    ];
    assert_eq!(
        render(&items),
        "[ ok ] a       found\n[warn] longer  found\n               fix: do it\n"
    );
    assert!(!failed(&items));
    assert!(failed(&[item("x", CheckStatus::Fail, None)]));
}
