//! `source.tables` narrowed between runs so that a table the replica holds is left out while
//! it still exists at the source. Streaming on would skip its changes, and selecting it again
//! later would resume its replica with them missing, differing from the source for good. So
//! the run refuses, naming the table and the fix; with the selection restored it resumes and
//! the replica holds every change made meanwhile. Real PostgreSQL and MariaDB, the real binary.

use std::time::Duration;

use crate::common::{Rig, MY_DB};

const T: Duration = Duration::from_secs(120);

fn select(rig: &Rig, from: &str, to: &str) {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&rig.config, text.replace(from, to)).unwrap();
}

fn left_out_is_refused(mut rig: Rig, all: &str, only_a: &str, says: &str) {
    rig.start();
    rig.wait_caught_up(T);
    rig.stop();
    select(&rig, all, only_a);
    rig.start();
    let status = rig.wait_exit(T);
    let log = rig.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains(says), "{log}");
    // Meanwhile the table changes at the source.
    rig.sql(
        "INSERT INTO b VALUES (100, 'while left out'); UPDATE b SET v = 'changed' WHERE id = 1; \
         DELETE FROM b WHERE id = 2; INSERT INTO a VALUES (100, 'x');",
    );
    select(&rig, only_a, all);
    rig.start();
    rig.sql("INSERT INTO a VALUES (101, 'y');");
    rig.wait_caught_up(T);
    let log = rig.log();
    rig.stop();
    let q = |t: &str| format!("SELECT concat(id, ':', v) FROM {t} ORDER BY id");
    for t in ["a", "b"] {
        assert_eq!(
            rig.source_lines(&q(t)),
            rig.replica_lines(&q(t)),
            "{t}\n{log}"
        );
    }
}

const SETUP: &str = "CREATE TABLE a (id int PRIMARY KEY, v text); \
     CREATE TABLE b (id int PRIMARY KEY, v text); \
     INSERT INTO a VALUES (1, 'a1'), (2, 'a2'); \
     INSERT INTO b VALUES (1, 'b1'), (2, 'b2'), (3, 'b3');";

#[test]
fn postgres_table_left_out_of_source_tables_is_refused() {
    left_out_is_refused(
        Rig::new(SETUP),
        "tables = [\"public.*\"]",
        "tables = [\"public.a\"]",
        "no longer matches source.tables (new: [], gone: [public.b])",
    );
}

#[test]
fn mariadb_table_left_out_of_source_tables_is_refused() {
    left_out_is_refused(
        Rig::mysql(SETUP),
        &format!("tables = [\"{MY_DB}.*\"]"),
        &format!("tables = [\"{MY_DB}.a\"]"),
        &format!("no longer selects {MY_DB}.b, which the replica holds"),
    );
}
