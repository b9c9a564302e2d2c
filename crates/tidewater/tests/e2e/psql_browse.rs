//! Browsing the replica through the SQL endpoint with the real `psql`: `SHOW TABLES`, `\dt`,
//! `\d <table>` and `\dn` answer from DuckDB's catalog what psql asks of `pg_catalog`.

use crate::common;

use std::time::Duration;

use common::Rig;
use tidewater_harness::{free_port, PgServer};

const T: Duration = Duration::from_secs(120);

/// psql's output (unaligned, `|`-separated) and errors for `commands` (each a `-c`).
fn psql(port: u16, commands: &[&str]) -> (bool, String) {
    let mut cmd = PgServer::tool("psql");
    cmd.args(["-X", "-A", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-d", "replica", "-U", "analyst"])
        .env("PGCONNECT_TIMEOUT", "10");
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd.output().expect("psql");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn psql_lists_and_describes_the_replicated_tables() {
    let mut rig = Rig::new(
        "CREATE SCHEMA sales; \
         CREATE TABLE public.orders (id int PRIMARY KEY, note text NOT NULL, amount numeric(12,2)); \
         CREATE TABLE sales.customers (id bigint PRIMARY KEY, name text); \
         INSERT INTO public.orders VALUES (1, 'a', 1.50);",
    );
    let port = free_port();
    let text = std::fs::read_to_string(&rig.config).unwrap().replace(
        "tables = [\"public.*\"]",
        "tables = [\"public.*\", \"sales.*\"]",
    );
    std::fs::write(
        &rig.config,
        format!("{text}\n[sql]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    rig.start();
    rig.wait_caught_up(T);

    let (ok, out) = psql(port, &["SHOW TABLES"]);
    assert!(ok, "{out}");
    for row in ["public|orders", "public|orders_log", "sales|customers"] {
        assert!(
            out.lines().any(|l| l == row),
            "SHOW TABLES lacks {row}:\n{out}"
        );
    }
    assert!(!out.contains("_tidewater"), "{out}");

    let (ok, out) = psql(port, &["\\dt"]);
    assert!(ok, "{out}");
    assert!(out.contains("Schema|Name|Type|Owner"), "{out}");
    assert!(out.contains("public|orders|table|"), "{out}");
    assert!(out.contains("sales|customers|table|"), "{out}");

    let (ok, out) = psql(port, &["\\dn"]);
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l.starts_with("public|")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("sales|")), "{out}");
    assert!(!out.contains("_tidewater"), "{out}");

    let (ok, out) = psql(port, &["\\d public.orders"]);
    assert!(ok, "{out}");
    assert!(out.contains("Table \"public.orders\""), "{out}");
    assert!(out.contains("id|integer|"), "{out}");
    assert!(out.contains("note|varchar|"), "{out}");
    assert!(out.contains("amount|decimal(12,2)|"), "{out}");

    let (ok, out) = psql(port, &["\\d customers"]);
    assert!(ok, "{out}");
    assert!(out.contains("Table \"sales.customers\""), "{out}");
    rig.stop();
}
