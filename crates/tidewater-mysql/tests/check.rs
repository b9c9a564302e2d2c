//! Preflight checks against real throwaway MariaDB servers, one per test.

use tidewater_core::check::{failed, render, CheckItem, CheckStatus};
use tidewater_harness::{MariaDbOptions, MariaDbServer};
use tidewater_mysql::check::run_checks;
use tidewater_mysql::{MySqlSourceConfig, ZeroDates};

const KEYED: &str = "CREATE TABLE keyed (id int PRIMARY KEY, v text);";

/// Starts a server with `extra_args` and database `app` prepared by `sql`.
async fn server_with(extra_args: &[&str], binlog: bool, sql: &'static str) -> MariaDbServer {
    let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let my =
            MariaDbServer::start_with(MariaDbOptions { extra_args, binlog }).expect("start server");
        my.create_database("app").expect("create database");
        my.sql("app", sql).expect("prepare database");
        my
    })
    .await
    .expect("setup task")
}

async fn server(sql: &'static str) -> MariaDbServer {
    server_with(&[], true, sql).await
}

fn config(url: String, tables: &[&str]) -> MySqlSourceConfig {
    MySqlSourceConfig {
        url: tidewater_core::Secret::new(url),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        server_id: 4242,
        zero_dates: ZeroDates::default(),
    }
}

/// The item `name`, which must have `status`.
fn expect<'a>(items: &'a [CheckItem], name: &str, status: CheckStatus) -> &'a CheckItem {
    let report = render(items);
    let found = items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no item {name}:\n{report}"));
    assert_eq!(found.status, status, "{name}:\n{report}");
    if status != CheckStatus::Ok {
        assert!(found.fix.is_some(), "{name} has no fix:\n{report}");
    }
    found
}

fn fix(item: &CheckItem) -> &str {
    item.fix.as_deref().unwrap_or("")
}

/// Runs the checks for `app.*` on a server started with `extra_args`.
async fn check_with(extra_args: &[&str], binlog: bool) -> Vec<CheckItem> {
    let my = server_with(extra_args, binlog, KEYED).await;
    run_checks(&config(my.url("app"), &["app.*"]), 1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn default_server_with_keyed_table_passes() {
    let my = server(KEYED).await;
    let items = run_checks(&config(my.url("app"), &["app.*"]), 1).await;
    let report = render(&items);
    assert!(!failed(&items), "{report}");
    let connection = expect(&items, "connection", CheckStatus::Ok);
    assert!(connection.detail.contains("(MariaDB "), "{report}");
    for name in [
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
    ] {
        expect(&items, name, CheckStatus::Ok);
    }
    let gtid = expect(&items, "gtid", CheckStatus::Ok);
    assert!(gtid.detail.contains("gtid_strict_mode = ON"), "{report}");
    expect(&items, "server_id", CheckStatus::Ok);
    let privileges = expect(&items, "privileges", CheckStatus::Ok);
    assert!(privileges.detail.contains("REPLICATION SLAVE"), "{report}");
    let tables = expect(&items, "tables", CheckStatus::Ok);
    assert!(tables.detail.contains("1 selected: app.keyed"), "{report}");
    // The harness keeps binlogs forever (expire_logs_days = 0).
    let retention = expect(&items, "binlog retention", CheckStatus::Warn);
    assert!(retention.detail.contains("never purged"), "{report}");
    assert!(
        retention
            .detail
            .contains("1 binlog files, the oldest mariadb-bin.000001"),
        "{report}"
    );
    assert!(!items.iter().any(|i| i.name == "binlog events"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_binlog_format_fails() {
    let items = check_with(&["--binlog-format=MIXED"], true).await;
    assert!(failed(&items), "{}", render(&items));
    let format = expect(&items, "binlog_format", CheckStatus::Fail);
    assert!(
        fix(format).contains("SET GLOBAL binlog_format = 'ROW'"),
        "{}",
        render(&items)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_row_image_fails() {
    let items = check_with(&["--binlog-row-image=MINIMAL"], true).await;
    let image = expect(&items, "binlog_row_image", CheckStatus::Fail);
    assert!(image.detail.contains("MINIMAL"), "{}", render(&items));
    assert!(
        fix(image).contains("binlog_row_image = 'FULL'"),
        "{}",
        render(&items)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_row_metadata_warns() {
    let items = check_with(&["--binlog-row-metadata=MINIMAL"], true).await;
    assert!(!failed(&items), "{}", render(&items));
    let metadata = expect(&items, "binlog_row_metadata", CheckStatus::Warn);
    assert!(
        fix(metadata).contains("binlog_row_metadata = 'FULL'"),
        "{}",
        render(&items)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_off_fails() {
    let items = check_with(&[], false).await;
    let log_bin = expect(&items, "log_bin", CheckStatus::Fail);
    assert!(log_bin.detail.contains("OFF"), "{}", render(&items));
    assert!(fix(log_bin).contains("log_bin"), "{}", render(&items));
}

#[tokio::test(flavor = "multi_thread")]
async fn short_retention_and_loose_gtid_mode_warn() {
    let args = ["--binlog-expire-logs-seconds=3600", "--gtid-strict-mode=0"];
    let items = check_with(&args, true).await;
    let retention = expect(&items, "binlog retention", CheckStatus::Warn);
    assert!(
        retention.detail.contains("new snapshot"),
        "{}",
        render(&items)
    );
    let gtid = expect(&items, "gtid", CheckStatus::Warn);
    assert!(
        fix(gtid).contains("gtid_strict_mode = ON"),
        "{}",
        render(&items)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_without_replication_privileges_fails_with_grant() {
    let my = server(
        "CREATE TABLE keyed (id int PRIMARY KEY, v text); \
         CREATE USER 'u'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON app.* TO 'u'@'%';",
    )
    .await;
    let items = run_checks(&config(my.url_as("u", "pw", "app"), &["app.*"]), 1).await;
    let report = render(&items);
    expect(&items, "connection", CheckStatus::Ok);
    expect(&items, "tables", CheckStatus::Ok);
    let privileges = expect(&items, "privileges", CheckStatus::Fail);
    assert!(privileges.detail.contains("REPLICATION SLAVE"), "{report}");
    assert!(!privileges.detail.contains("SELECT on"), "{report}");
    let grant = "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'u'@'%';";
    assert!(fix(privileges).contains(grant), "{report}");
    // Connected replicas are invisible without REPLICATION MASTER ADMIN, which replicating
    // does not need: said, not warned.
    let server_id = expect(&items, "server_id", CheckStatus::Ok);
    assert!(
        server_id.detail.contains("REPLICATION MASTER ADMIN"),
        "{report}"
    );
}

/// The replication user exactly as README.md creates it (its ```sql quickstart:mysql-grants
/// block, which the e2e test `readme_quickstart` runs too), with the password `pw`.
fn readme_grants() -> String {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("```")
        .find_map(|b| b.strip_prefix("sql quickstart:mysql-grants\n"))
        .expect("README.md has the MySQL replication user's sql block");
    assert!(block.contains("IDENTIFIED BY 'change-me'"), "{block}");
    block.replace("IDENTIFIED BY 'change-me'", "IDENTIFIED BY 'pw'")
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_grants_pass_without_warnings() {
    let my = server_with(&["--binlog-expire-logs-seconds=604800"], true, KEYED).await;
    let grants = readme_grants();
    let my = tokio::task::spawn_blocking(move || {
        my.create_database("shop").expect("create database");
        my.sql("shop", KEYED).expect("prepare shop");
        my.sql("shop", &grants).expect("the README's grants");
        my
    })
    .await
    .expect("setup task");
    let items = run_checks(&config(my.url_as("repl", "pw", "shop"), &["shop.*"]), 1).await;
    let flagged: Vec<&CheckItem> = items
        .iter()
        .filter(|i| i.status != CheckStatus::Ok)
        .collect();
    assert!(flagged.is_empty(), "{}", render(&items));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_table_select_is_named_with_a_grant() {
    let my = server(
        "CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE other (id int PRIMARY KEY); \
         CREATE USER 'r'@'%' IDENTIFIED BY 'pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'r'@'%'; \
         GRANT SELECT ON app.keyed TO 'r'@'%'; GRANT INSERT ON app.other TO 'r'@'%';",
    )
    .await;
    let items = run_checks(&config(my.url_as("r", "pw", "app"), &["app.*"]), 1).await;
    let report = render(&items);
    expect(&items, "tables", CheckStatus::Ok);
    let privileges = expect(&items, "privileges", CheckStatus::Fail);
    assert!(
        privileges.detail.contains("SELECT on app.other"),
        "{report}"
    );
    assert!(!privileges.detail.contains("app.keyed"), "{report}");
    let grant = "GRANT SELECT ON `app`.`other` TO 'r'@'%';";
    assert_eq!(fix(privileges), grant, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_id_of_the_source_fails() {
    let my = server(KEYED).await;
    let mut cfg = config(my.url("app"), &["app.*"]);
    cfg.server_id = 1;
    let items = run_checks(&cfg, 1).await;
    let server_id = expect(&items, "server_id", CheckStatus::Fail);
    assert!(
        server_id.detail.contains("source's own"),
        "{}",
        render(&items)
    );
    assert!(
        fix(server_id).contains("source.server_id"),
        "{}",
        render(&items)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_fails_without_showing_it() {
    let my = server(KEYED).await;
    let secret = "Not-The-Password-7";
    let items = run_checks(&config(my.url_as("root", secret, "app"), &["app.*"]), 1).await;
    let report = render(&items);
    assert_eq!(items.len(), 1, "{report}");
    let connection = expect(&items, "connection", CheckStatus::Fail);
    assert!(connection.detail.contains("Access denied"), "{report}");
    assert!(fix(connection).contains("password"), "{report}");
    assert!(!report.contains(secret), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_table_warns() {
    let my = server("CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE bag (a int);").await;
    let items = run_checks(&config(my.url("app"), &["app.*"]), 1).await;
    assert!(!failed(&items), "{}", render(&items));
    let key = expect(&items, "key app.bag", CheckStatus::Warn);
    assert!(key.detail.contains("multiset"), "{}", render(&items));
    assert!(
        fix(key).contains("ALTER TABLE `app`.`bag` ADD PRIMARY KEY"),
        "{}",
        render(&items)
    );
    assert!(
        !items.iter().any(|i| i.name == "key app.keyed"),
        "{}",
        render(&items)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_and_unsupported_tables_fail() {
    let my = server("CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE ids (id uuid);").await;
    let items = run_checks(&config(my.url("app"), &["nope.*"]), 1).await;
    let report = render(&items);
    let tables = expect(&items, "tables", CheckStatus::Fail);
    assert!(tables.detail.contains("no table matches"), "{report}");
    assert!(tables.detail.contains("app.keyed"), "{report}");
    assert!(fix(tables).contains("source.tables"), "{report}");

    let items = run_checks(&config(my.url("app"), &["app.*"]), 1).await;
    let report = render(&items);
    let tables = expect(&items, "tables", CheckStatus::Fail);
    assert!(
        tables.detail.contains("app.ids.id has type uuid"),
        "{report}"
    );
    assert!(fix(tables).contains("\"!app.ids\""), "{report}");
}
