//! `tidewater status`, `query` and `verify` on a BigQuery config (the emulator, strict mode):
//! the state table's position and lag, row counts, a read-only statement in the dataset (and
//! a write refused), and verify passing on an equal replica (while `run` runs and after) and
//! finding rows changed, deleted and added by hand in the replica. The hand edits are DML on
//! the replica, which only the commit transaction writes and nothing streams to: real
//! BigQuery allows them, and they go through the strict proxy to show it.

use crate::bigquery::CATCH_UP;
use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{expect, run_tidewater, Rig};

const VERIFY_DEADLINE: Duration = Duration::from_secs(300);

/// 6,000 items: more than one comparison chunk (5,000 rows).
const PG_SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(12,2), flag boolean,
                    created timestamptz, payload bytea, doc jsonb, tags text[], ratio float8);
INSERT INTO items SELECT g, 'item ' || g, g * 1.25, g % 2 = 0,
                         '2024-01-02 03:04:05.123456+00'::timestamptz + g * interval '1 minute',
                         decode(lpad(to_hex(g), 8, '0'), 'hex'), jsonb_build_object('n', g),
                         ARRAY['a', g::text], g / 3.0
                  FROM generate_series(1, 6000) g;
CREATE TABLE pairs (k1 text, k2 int, v text, PRIMARY KEY (k1, k2));
INSERT INTO pairs SELECT chr(65 + g % 3) || 'x', g, 'v' || g FROM generate_series(1, 50) g;
INSERT INTO pairs VALUES ('ax', 1, 'lower'), ('bx', 2, 'lower');
";

fn verify(config: &Path) -> (i32, String) {
    let (code, output) = run_tidewater(&["verify"], config, &[], "warn", VERIFY_DEADLINE);
    eprintln!("{output}");
    (code, output)
}

/// The counts of `table`'s line in verify's report: rows, missing, extra, differing.
#[track_caller]
fn counts(output: &str, table: &str) -> Vec<String> {
    let line = output
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no line for {table}:\n{output}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields[fields.len() - 4..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn postgres_status_query_and_verify_on_bigquery() {
    let mut rig = Rig::new(PG_SETUP);
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.sql(
        "UPDATE items SET name = 'renamed', doc = doc || '{\"x\": [1, 2]}' WHERE id <= 20;
         DELETE FROM items WHERE id BETWEEN 21 AND 25;
         INSERT INTO items (id, name, tags) VALUES (7000, 'new', NULL);
         UPDATE pairs SET v = 'changed' WHERE k2 = 7;",
    );
    rig.wait_caught_up(CATCH_UP);
    let config = rig.config.clone();

    // While `run` runs.
    let out = expect(
        common::run_cli(&["status"], &config),
        0,
        &["replica: bigquery tidewater-test.replica", "last lag:"],
    );
    let position = rig.bq().state().expect("a committed state").0;
    assert!(
        out.contains(&format!("position:            {position}")),
        "{out}"
    );
    let items = out.lines().find(|l| l.starts_with("public.items"));
    let items: Vec<&str> = items
        .expect("a line for items")
        .split_whitespace()
        .collect();
    assert_eq!(items[1], "5996", "rows of public.items:\n{out}");
    assert_eq!(items[2], (6000 + 20 + 5 + 1).to_string(), "changes:\n{out}");

    let out = expect(
        common::run_cli(
            &[
                "query",
                "--format",
                "csv",
                "SELECT COUNT(*) AS n, MAX(name) AS top FROM replica.public_items",
            ],
            &config,
        ),
        0,
        &[],
    );
    // CSV rows end in CRLF (RFC 4180).
    assert_eq!(
        out.trim().replace("\r\n", "\n"),
        "n,top\n5996,renamed",
        "{out}"
    );
    // BigQuery itself says what a statement is: only a SELECT runs.
    expect(
        common::run_cli(
            &["query", "DELETE FROM replica.public_items WHERE TRUE"],
            &config,
        ),
        2,
        &["refused"],
    );

    let (code, out) = verify(&config);
    assert_eq!(code, 0, "verify while run runs:\n{out}");
    assert_eq!(counts(&out, "public.items"), ["5996", "0", "0", "0"]);
    assert_eq!(counts(&out, "public.pairs"), ["52", "0", "0", "0"]);
    rig.stop();
    let (code, out) = verify(&config);
    assert_eq!(code, 0, "verify after run stopped:\n{out}");

    let bq = rig.bq();
    let items = bq.table("public_items");
    bq.dml_by_hand(&format!(
        "UPDATE {items} SET name = 'tampered' WHERE id = 7"
    ));
    bq.dml_by_hand(&format!("UPDATE {items} SET tags = ['a'] WHERE id = 4000"));
    bq.dml_by_hand(&format!("DELETE FROM {items} WHERE id = 5"));
    bq.dml_by_hand(&format!(
        "INSERT INTO {items} (id, name) VALUES (100001, 'extra')"
    ));
    let pairs = bq.table("public_pairs");
    bq.dml_by_hand(&format!(
        "UPDATE {pairs} SET v = 'x' WHERE k1 = 'Bx' AND k2 = 1"
    ));
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "verify after changes by hand:\n{out}");
    assert_eq!(counts(&out, "public.items"), ["5996", "1", "1", "2"]);
    assert!(out.contains("missing:   id=5\n"), "{out}");
    assert!(out.contains("extra:     id=100001\n"), "{out}");
    assert!(out.contains("differing: id=4000; id=7\n"), "{out}");
    assert_eq!(counts(&out, "public.pairs"), ["52", "0", "0", "1"]);
    assert!(out.contains("differing: k1=Bx, k2=1"), "{out}");
    assert!(
        out.contains("DIFFERENT: 5 differences in 2 tables"),
        "{out}"
    );
}

/// MariaDB orders the keys case-insensitively, BigQuery by bytes: the second chunk's keys
/// (`B…`) lie before the first chunk's range in BigQuery's order, and must still match.
#[test]
fn mariadb_verify_on_bigquery_across_key_orders() {
    let mut rig = Rig::mysql(
        "CREATE TABLE codes (code varchar(20) PRIMARY KEY, n int);
         INSERT INTO codes SELECT CONCAT(IF(seq % 2 = 0, 'a', 'B'), LPAD(seq, 5, '0')), seq
                           FROM seq_1_to_6000;",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    rig.stop();
    let config = rig.config.clone();
    let (code, out) = verify(&config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(counts(&out, "shop.codes"), ["6000", "0", "0", "0"]);

    let codes = rig.bq().table("shop_codes");
    rig.bq()
        .dml_by_hand(&format!("UPDATE {codes} SET n = 0 WHERE code = 'B05001'"));
    rig.bq()
        .dml_by_hand(&format!("DELETE FROM {codes} WHERE code = 'a00002'"));
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "{out}");
    assert_eq!(counts(&out, "shop.codes"), ["6000", "1", "0", "1"]);
    assert!(out.contains("missing:   code=a00002\n"), "{out}");
    assert!(out.contains("differing: code=B05001\n"), "{out}");
}

/// A keyless table (duplicate rows, arrays, JSON, floats) is compared as a multiset: equal
/// while `run` streams updates and deletes into it, then a row changed, a duplicate added
/// and a row deleted by hand are each found, with example rows.
#[test]
fn postgres_verify_keyless_table_on_bigquery() {
    let mut rig = Rig::new(
        "CREATE TABLE events (n int NOT NULL, label text, tags text[], doc jsonb, ratio float8);
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO events SELECT g % 4000, 'e' || (g % 4000), ARRAY['t', (g % 4000 % 7)::text],
                                   jsonb_build_object('g', g % 4000), (g % 4000) / 7.0
                            FROM generate_series(1, 6000) g;",
    );
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(CATCH_UP);
    // Each of n < 10 and 10..=12 has two copies (g and g + 4000).
    rig.sql(
        "UPDATE events SET label = 'u', tags = NULL WHERE n < 10;
         DELETE FROM events WHERE n BETWEEN 10 AND 12;",
    );
    rig.wait_caught_up(CATCH_UP);
    let config = rig.config.clone();
    let (code, out) = verify(&config);
    assert_eq!(code, 0, "verify while run runs:\n{out}");
    assert_eq!(counts(&out, "public.events"), ["5994", "0", "0", "-"]);
    rig.stop();

    let bq = rig.bq();
    let events = bq.table("public_events");
    bq.dml_by_hand(&format!(
        "UPDATE {events} SET label = 'tampered' WHERE n = 3000"
    ));
    bq.dml_by_hand(&format!(
        "INSERT INTO {events} SELECT * FROM {events} WHERE n = 3002"
    ));
    bq.dml_by_hand(&format!("DELETE FROM {events} WHERE n = 3001"));
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "verify after changes by hand:\n{out}");
    assert_eq!(counts(&out, "public.events"), ["5994", "2", "2", "-"]);
    assert!(
        out.contains(r#"[3000,"e3000","#) && out.contains(r#"[3000,"tampered","#),
        "the changed row's two images are examples:\n{out}"
    );
    assert!(out.contains(r#"[3001,"e3001","#), "{out}");
    assert!(out.contains(r#"[3002,"e3002","#), "{out}");
}
