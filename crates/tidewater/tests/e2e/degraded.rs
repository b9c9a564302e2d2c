//! Visible degradation: a selected table that tidewater cannot replicate is never only a log
//! line. `/health` says `degraded` (200, see README), `/status`, `tidewater status` and the
//! status page name the table and why, `tidewater_tables_not_replicated` counts it; once the
//! cause is fixed at the source the table joins with its rows at the next poll, without a
//! restart, and health is ok again. Real PostgreSQL, the real binary.

use crate::common;
use crate::observe_support;

use std::io::Write;
use std::time::Duration;

use common::{Rig, MY_DB};
use observe_support::{cli, get, metric};
use tidewater_harness::{free_port, wait_until};

const T: Duration = Duration::from_secs(90);

/// Adds `[http] listen` on a free loopback port to the rig's config; returns the address.
fn listen_on_free_port(rig: &Rig) -> String {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&rig.config)
        .unwrap();
    writeln!(f, "\n[http]\nlisten = \"{addr}\"").unwrap();
    addr
}

/// Waits until `/health` answers 200 with a body starting with `prefix`; returns the body.
fn wait_health(rig: &Rig, addr: &str, prefix: &str) -> String {
    let mut last = String::new();
    wait_until(T, &format!("/health to say {prefix}"), || {
        let h = get(addr, "/health");
        last = format!("{} {}", h.status, h.body);
        h.status == 200 && h.body.starts_with(prefix)
    })
    .unwrap_or_else(|e| panic!("{e}: last {last}\n{}", rig.log()));
    last
}

#[test]
fn postgres_table_that_cannot_be_published_degrades_health_then_joins_once_fixed() {
    // tidewater runs as `tw`, which owns `t` but not the table `postgres` creates later.
    let mut rig = Rig::new(
        "CREATE ROLE tw LOGIN REPLICATION;
         GRANT CREATE ON DATABASE postgres TO tw;
         CREATE TABLE t (id int PRIMARY KEY);
         ALTER TABLE t OWNER TO tw;
         INSERT INTO t VALUES (1);",
    );
    let text = std::fs::read_to_string(&rig.config).unwrap();
    assert!(text.contains("postgres://postgres@"), "{text}");
    std::fs::write(
        &rig.config,
        text.replace("postgres://postgres@", "postgres://tw@"),
    )
    .unwrap();
    let addr = listen_on_free_port(&rig);
    let config = rig.config.to_str().unwrap().to_string();

    rig.start();
    rig.wait_caught_up(T);
    let h = get(&addr, "/health");
    assert_eq!(
        (h.status, h.body.starts_with("streaming")),
        (200, true),
        "{}",
        h.body
    );
    rig.sql(
        "CREATE TABLE foreign_owned (id int PRIMARY KEY, v text);
         INSERT INTO foreign_owned VALUES (1, 'a'), (2, 'b');",
    );

    // Degraded: 200 (the other tables replicate), the body says which table and why.
    let last = wait_health(&rig, &addr, "degraded:");
    assert!(
        last.contains("public.foreign_owned") && last.contains("owned by postgres"),
        "{last}"
    );
    let m = get(&addr, "/metrics").body;
    assert_eq!(
        metric(&m, "tidewater_tables_not_replicated"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "tidewater_up"), Some(1.0), "{m}");
    let s = get(&addr, "/status").json();
    assert_eq!(s["live"]["healthy"], true, "{s}");
    assert_eq!(
        s["live"]["not_replicated"][0]["table"], "public.foreign_owned",
        "{s}"
    );
    let reason = s["live"]["not_replicated"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("ALTER TABLE \"public\".\"foreign_owned\" OWNER TO \"tw\""),
        "the reason names the fix: {reason}"
    );
    let page = get(&addr, "/").body;
    assert!(
        page.contains("class=\"badge warn\"")
            && page.contains("<tr data-table=\"public.foreign_owned\"><td>public.foreign_owned</td><td class=\"reason\">"),
        "{page}"
    );
    let out = cli(&["status", "--config", &config]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("health:              degraded: 1 selected table is not replicated")
            && out
                .stdout
                .contains("NOT REPLICATED:      public.foreign_owned: tidewater's role tw"),
        "{}",
        out.stdout
    );
    let out = cli(&["status", "--config", &config, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["live"]["not_replicated"], s["live"]["not_replicated"]);
    // The other tables replicate on meanwhile.
    rig.sql("INSERT INTO t VALUES (2)");
    rig.wait_caught_up(T);

    // The fix, while running: the table joins with its rows, and health is ok again.
    rig.sql(
        "ALTER TABLE foreign_owned OWNER TO tw;
         INSERT INTO foreign_owned VALUES (3, 'after the fix');",
    );
    wait_health(&rig, &addr, "streaming");
    rig.sql("UPDATE foreign_owned SET v = 'streamed' WHERE id = 1");
    rig.wait_caught_up(T);
    let m = get(&addr, "/metrics").body;
    assert_eq!(metric(&m, "tidewater_tables_not_replicated"), Some(0.0));
    let s = get(&addr, "/status").json();
    assert_eq!(s["live"]["not_replicated"], serde_json::json!([]), "{s}");
    assert!(!get(&addr, "/").body.contains("not-replicated"));
    assert_eq!(
        rig.log().matches("tables join the replica").count(),
        1,
        "joined in this run, without a restart"
    );
    // Asked again at every poll, but warned about once.
    assert_eq!(rig.log().matches("cannot join the replica").count(), 1);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM foreign_owned ORDER BY id");
    rig.assert_same("SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
}

/// MariaDB: a table the source user cannot see (no privilege: MySQL hides it from
/// `information_schema`) is named by the binlog when written; it is listed as not replicated
/// (health degraded), and after `GRANT SELECT` it joins with its rows without a restart.
#[test]
fn mariadb_table_the_user_cannot_read_degrades_health_then_joins_after_grant() {
    let mut rig = Rig::mysql_with(
        "CREATE USER 'tw'@'%' IDENTIFIED BY 'pw';
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'tw'@'%';
         CREATE TABLE t (id int PRIMARY KEY);
         GRANT SELECT ON shop.t TO 'tw'@'%';
         INSERT INTO t VALUES (1);",
        tidewater_harness::MariaDbOptions::default(),
        |my| my.url_as("tw", "pw", MY_DB),
    );
    let addr = listen_on_free_port(&rig);
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(
        "CREATE TABLE hidden (id int PRIMARY KEY, v varchar(20));
         INSERT INTO hidden VALUES (1, 'a'), (2, 'b');
         INSERT INTO t VALUES (2);",
    );
    let last = wait_health(&rig, &addr, "degraded:");
    assert!(
        last.contains("shop.hidden")
            && last.contains("GRANT SELECT ON `shop`.`hidden` TO 'tw'@'%'"),
        "{last}"
    );
    let m = get(&addr, "/metrics").body;
    assert_eq!(
        metric(&m, "tidewater_tables_not_replicated"),
        Some(1.0),
        "{m}"
    );
    rig.wait_caught_up(T);

    rig.sql(
        "GRANT SELECT ON shop.hidden TO 'tw'@'%';
         INSERT INTO hidden VALUES (3, 'after the grant');",
    );
    wait_health(&rig, &addr, "streaming");
    rig.sql("UPDATE hidden SET v = 'streamed' WHERE id = 1; INSERT INTO t VALUES (3);");
    rig.wait_caught_up(T);
    let m = get(&addr, "/metrics").body;
    assert_eq!(metric(&m, "tidewater_tables_not_replicated"), Some(0.0));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM hidden ORDER BY id");
    rig.assert_same("SELECT group_concat(id ORDER BY id) FROM t");
}
