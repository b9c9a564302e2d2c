//! Which source table, and which of its changes, a replica table follows when operators do
//! ordinary things the stream does not describe as row changes. Real PostgreSQL and MariaDB,
//! the real binary. Each of these left a replica that silently differed before its fix:
//!
//! - `source.tables` narrowed between runs so that a table the replica holds is left out while
//!   it still exists at the source: streaming on would skip its changes, and selecting it
//!   again later would resume its replica with them missing. The run refuses, naming the
//!   table and the fix; with the selection restored it resumes with every change. After
//!   `tidewater forget` the narrowed selection starts, and selected again the table is copied.
//! - a table dropped and created again under its name, or another table renamed to it (the
//!   online schema change swap): the replica becomes the new table's rows.
//! - a table renamed into the selection: it brings its rows, which are copied.
//! - partition operations (MariaDB `TRUNCATE / EXCHANGE PARTITION`; PostgreSQL's are in
//!   `partitions`): the tables they touch are copied again.
//! - changes logged as statements (a session with `binlog_format = STATEMENT`): the tables
//!   they name are copied again.

use std::time::Duration;

use crate::common::{run_cli, Rig, MY_DB};

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
    rig.sql(LEFT_OUT_CHANGES);
    selected_again(&mut rig, only_a, all, "INSERT INTO a VALUES (101, 'y');");
}

/// Changes to both tables while `b` is left out of the selection.
const LEFT_OUT_CHANGES: &str = "INSERT INTO b VALUES (100, 'while left out'); \
     UPDATE b SET v = 'changed' WHERE id = 1; DELETE FROM b WHERE id = 2; \
     INSERT INTO a VALUES (100, 'x');";

/// The selection widened from `from` to `to` again, `sql` run once started: both tables
/// must equal the source once caught up.
fn selected_again(rig: &mut Rig, from: &str, to: &str, sql: &str) {
    select(rig, from, to);
    rig.start();
    rig.sql(sql);
    rig.wait_caught_up(T);
    let log = rig.log();
    rig.stop();
    for t in ["a", "b"] {
        assert_eq!(
            rig.source_lines(&rows_of(t)),
            rig.replica_lines(&rows_of(t)),
            "{t}\n{log}"
        );
    }
}

/// `tidewater forget` lets the narrowed selection start; the table selected again later joins
/// with a fresh copy of its rows.
fn forgotten_then_selected_again(
    mut rig: Rig,
    all: &str,
    only_a: &str,
    b: &str,
    drop_tables: bool,
) {
    rig.start();
    rig.wait_caught_up(T);
    rig.stop();
    // Refused for a table still selected, and for a name the replica does not hold.
    let (code, out) = run_cli(&["forget", "--tables", b, "--yes"], &rig.config);
    assert!(
        code != 0 && out.contains("source.tables still selects"),
        "{out}"
    );
    let (code, out) = run_cli(&["forget", "--tables", "nope.*", "--yes"], &rig.config);
    assert!(
        code != 0 && out.contains("no table the replica holds matches"),
        "{out}"
    );
    select(&rig, all, only_a);
    // Listed, not done, without --yes; done with it (the replica tables dropped too, or kept).
    let (code, out) = run_cli(&["forget", "--tables", b], &rig.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("would forget {b}")), "{out}");
    let mut args = vec!["forget", "--tables", b, "--yes"];
    if drop_tables {
        args.push("--drop-tables");
    }
    let (code, out) = run_cli(&args, &rig.config);
    assert_eq!(code, 0, "{out}");
    let outcome = if drop_tables { "dropped" } else { "kept" };
    assert!(
        out.contains(&format!(
            "forgot {b}: its replica and _log tables {outcome}"
        )),
        "{out}"
    );
    rig.start();
    rig.sql(LEFT_OUT_CHANGES);
    rig.wait_caught_up(T);
    rig.stop();
    assert_eq!(
        rig.source_lines(&rows_of("a")),
        rig.replica_lines(&rows_of("a"))
    );
    let held = "SELECT count(*)::VARCHAR FROM information_schema.tables \
                WHERE table_name IN ('b', 'b_log')";
    let kept = if drop_tables { "0" } else { "2" };
    assert_eq!(rig.replica_lines(held), [kept], "{}", rig.log());
    // Selected again, the table joins with a fresh copy; kept tables are emptied first (the
    // row deleted while forgotten must not stay).
    let sql = "INSERT INTO a VALUES (101, 'y'); INSERT INTO b VALUES (101, 'y');";
    selected_again(&mut rig, only_a, all, sql);
}

#[test]
fn postgres_table_forgotten_lets_the_selection_narrow() {
    forgotten_then_selected_again(
        Rig::new(SETUP),
        "tables = [\"public.*\"]",
        "tables = [\"public.a\"]",
        "public.b",
        false,
    );
}

/// The same on BigQuery: the dataset's state rows go (and the tables with `--drop-tables`);
/// selected again, the table is copied anew.
#[test]
fn postgres_table_forgotten_on_bigquery_lets_the_selection_narrow() {
    let (all, only_a) = ("tables = [\"public.*\"]", "tables = [\"public.a\"]");
    let mut rig = Rig::new(SETUP);
    rig.use_bigquery();
    rig.start();
    rig.wait_caught_up(T);
    select(&rig, all, only_a);
    // Refused while the run goes on (its slot is in use), done once it stopped.
    let forget = ["forget", "--tables", "public.b", "--yes", "--drop-tables"];
    let (code, out) = run_cli(&forget, &rig.config);
    assert!(
        code != 0 && out.contains("the source's reader is in use"),
        "{out}"
    );
    rig.stop();
    let (code, out) = run_cli(
        &["forget", "--tables", "public.b", "--yes", "--drop-tables"],
        &rig.config,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("forgot public.b"), "{out}");
    let b = rig.bq().table("public_b");
    assert!(rig.bq().try_rows(&format!("SELECT * FROM {b}")).is_err());
    rig.start();
    rig.sql(LEFT_OUT_CHANGES);
    rig.wait_caught_up(T);
    rig.stop();
    select(&rig, only_a, all);
    rig.start();
    rig.sql("INSERT INTO b VALUES (101, 'y');");
    rig.wait_caught_up(T);
    let log = rig.log();
    rig.stop();
    let rows = |t: &str| {
        let sql = format!(
            "SELECT CONCAT(CAST(id AS STRING), ':', v) FROM {} ORDER BY id",
            rig.bq().table(&format!("public_{t}"))
        );
        let rows = rig.bq().text_rows(&sql);
        rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>()
    };
    for t in ["a", "b"] {
        assert_eq!(rig.source_lines(&rows_of(t)), rows(t), "{t}\n{log}");
    }
}

#[test]
fn mariadb_table_forgotten_lets_the_selection_narrow() {
    forgotten_then_selected_again(
        Rig::mysql(SETUP),
        &format!("tables = [\"{MY_DB}.*\"]"),
        &format!("tables = [\"{MY_DB}.a\"]"),
        &format!("{MY_DB}.b"),
        true,
    );
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

/// The rows of `sql` (one text column) on the running replica, through `POST /query`.
pub(crate) fn live_lines(addr: &str, sql: &str) -> Vec<String> {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let r = crate::common::http::http(addr, "POST", "/query", Some(&body)).expect("POST /query");
    let rows = r.json()["rows"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|row| row[0].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `SELECT concat(id, ':', v) FROM t ORDER BY id`: one text column on both sides.
pub(crate) fn rows_of(t: &str) -> String {
    format!("SELECT concat(id, ':', v) FROM {t} ORDER BY id")
}

/// Waits until the running replica's `tables` equal the source's, then stops the run; fails
/// with what the replica held and the run's log.
pub(crate) fn wait_equal_then_stop(rig: &mut Rig, addr: &str, tables: &[&str]) -> String {
    let live = |t: &str| live_lines(addr, &rows_of(&format!("{}.{t}", rig.schema)));
    let r = tidewater_harness::wait_until(T, &format!("{tables:?} to equal the source"), || {
        tables
            .iter()
            .all(|t| rig.source_lines(&rows_of(t)) == live(t))
    });
    let seen: Vec<Vec<String>> = tables.iter().map(|t| live(t)).collect();
    let log = rig.log();
    rig.stop();
    r.unwrap_or_else(|e| panic!("{e}: the replica holds {seen:?}\n{log}"));
    log
}

/// Dropped and created again under its name (two ways), while running or while stopped.
const RECREATE: [&str; 2] = [
    "DROP TABLE b; CREATE TABLE b (id int PRIMARY KEY, v text); \
     INSERT INTO b VALUES (7, 'new b');",
    // What online schema change tools do: fill a new table, then swap the names.
    "CREATE TABLE b_new (id int PRIMARY KEY, v text); INSERT INTO b_new VALUES (8, 'swapped'); \
     ALTER TABLE b RENAME TO b_old; ALTER TABLE b_new RENAME TO b;",
];

/// A name the replica holds names a new table: its replica becomes the new table's rows
/// (the old rows are not deleted by any row change).
fn created_again(rig: Rig, recreate: &str, while_stopped: bool) {
    let sql = format!("{recreate} INSERT INTO a VALUES (100, 'x');");
    if while_stopped {
        changed_while_stopped(rig, &sql, &["a", "b"]);
    } else {
        changed_while_running(rig, &sql, &["a", "b"]);
    }
}

/// Every way of [`RECREATE`], while running and while stopped, each on a fresh rig.
fn created_again_every_way(rig: impl Fn() -> Rig) {
    for (i, recreate) in RECREATE.iter().enumerate() {
        for stopped in [false, true] {
            eprintln!("case {i}, stopped: {stopped}");
            created_again(rig(), recreate, stopped);
        }
    }
}

#[test]
fn postgres_table_created_again_under_its_name() {
    created_again_every_way(|| Rig::new(SETUP));
}

#[test]
fn mariadb_table_created_again_under_its_name() {
    created_again_every_way(|| Rig::mysql(SETUP));
}

/// `CREATE TABLE IF NOT EXISTS` of a replicated table that exists changes nothing: the table
/// is not copied again (MySQL logs the statement all the same; MariaDB 10.11 does not log it).
/// After a `DROP TABLE` it creates a new table under the name, which must be copied again like
/// any table created again: without the stream's record of dropped names the replica keeps
/// the old rows (shown: the second half then times out with `b` holding them).
#[test]
fn mariadb_create_table_if_not_exists_copies_only_a_new_table() {
    const AGAIN: &str = "the table is copied again";
    let mut rig = Rig::mysql(SETUP);
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(
        "CREATE TABLE IF NOT EXISTS b (id int PRIMARY KEY, v text); \
         INSERT INTO b VALUES (7, 'after the no-op'); INSERT INTO a VALUES (100, 'x');",
    );
    rig.wait_caught_up(T);
    let log = wait_equal_then_stop(&mut rig, &addr, &["a", "b"]);
    assert!(
        !log.contains(AGAIN),
        "a table that existed was copied again:\n{log}"
    );
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(
        "DROP TABLE b; CREATE TABLE IF NOT EXISTS b (id int PRIMARY KEY, v text); \
         INSERT INTO b VALUES (8, 'new b'); INSERT INTO a VALUES (101, 'y');",
    );
    rig.wait_caught_up(T);
    let log = wait_equal_then_stop(&mut rig, &addr, &["a", "b"]);
    assert!(log.contains(AGAIN), "the new table was not copied:\n{log}");
}

/// A session with `binlog_format = STATEMENT` changes a replicated table: the binlog has the
/// statements, no row events. The table is copied again after them, so the replica holds
/// their changes (it used to skip them for good).
#[test]
fn mariadb_changes_logged_as_statements_copy_the_table_again() {
    let mut rig = Rig::mysql(SETUP);
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    // Inside a transaction, and on its own (autocommit).
    rig.sql(
        "SET SESSION binlog_format = 'STATEMENT'; \
         BEGIN; UPDATE b SET v = 'by statement' WHERE id = 1; DELETE FROM b WHERE id = 2; COMMIT; \
         INSERT INTO b VALUES (50, 'statement');",
    );
    rig.sql("INSERT INTO a VALUES (100, 'x');");
    rig.wait_caught_up(T);
    let log = wait_equal_then_stop(&mut rig, &addr, &["a", "b"]);
    assert!(log.contains("was logged as a statement"), "{log}");
}

/// A table renamed into the selection arrives with its rows: they are copied (a table created
/// while streaming is replicated from its creation instead; this one was not created empty).
fn renamed_in(mut rig: Rig) {
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    rig.sql("ALTER TABLE b RENAME TO c; INSERT INTO c VALUES (9, 'after rename');");
    rig.sql("INSERT INTO a VALUES (100, 'x');");
    rig.wait_caught_up(T);
    wait_equal_then_stop(&mut rig, &addr, &["a", "c"]);
}

#[test]
fn postgres_table_renamed_into_the_selection_brings_its_rows() {
    renamed_in(Rig::new(SETUP));
}

#[test]
fn mariadb_table_renamed_into_the_selection_brings_its_rows() {
    renamed_in(Rig::mysql(SETUP));
}

/// Partition operations remove and move rows with no row events in the binlog (only the
/// `ALTER TABLE`): the tables they touch are copied again. (`CREATE TABLE ... AS SELECT`, row
/// events, needs nothing of the kind and is checked alongside.)
#[test]
fn mariadb_partition_operations_copy_their_tables_again() {
    let rig = Rig::mysql(
        "CREATE TABLE a (id int PRIMARY KEY, v text); \
         CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id) \
         (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN (100)); \
         INSERT INTO p VALUES (1, 'p0'), (2, 'p0'), (50, 'p1'), (60, 'p1'); \
         CREATE TABLE e (id int PRIMARY KEY, v text); INSERT INTO e VALUES (70, 'e');",
    );
    changed_while_running(
        rig,
        "ALTER TABLE p TRUNCATE PARTITION p0; \
         ALTER TABLE p EXCHANGE PARTITION p1 WITH TABLE e; \
         CREATE TABLE r AS SELECT * FROM e; INSERT INTO a VALUES (1, 'x');",
        &["a", "p", "e", "r"],
    );
}

/// Runs `sql` at the source while tidewater is stopped (after a first run caught up), then
/// waits until the replica's `tables` equal the source's; returns the log.
pub(crate) fn changed_while_stopped(mut rig: Rig, sql: &str, tables: &[&str]) -> String {
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    rig.stop();
    rig.sql(sql);
    rig.start();
    rig.wait_caught_up(T);
    wait_equal_then_stop(&mut rig, &addr, tables)
}

/// Runs `sql` at the source once the run has caught up, then waits until the replica's
/// `tables` equal the source's.
pub(crate) fn changed_while_running(mut rig: Rig, sql: &str, tables: &[&str]) {
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(sql);
    rig.wait_caught_up(T);
    wait_equal_then_stop(&mut rig, &addr, tables);
}
