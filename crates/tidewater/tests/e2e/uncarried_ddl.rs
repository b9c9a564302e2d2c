//! Schema changes whose effect on existing rows the stream does not carry (pgoutput and the
//! row binlog carry row changes, not what a DDL statement does to the rows already there),
//! and replica identity / primary key / publication changes, each made under a running
//! pipeline while a writer changes the same table. Each ends with `tidewater verify` clean
//! (the table was copied again at a later position of the stream, or the change needed
//! nothing), and a restart that works. docs/schema-changes.md lists every member and what
//! tidewater does with it.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{run_tidewater, Rig, PASSWORD};
use tidewater_harness::wait_until;

const WAIT: Duration = Duration::from_secs(120);

/// `tidewater verify` (through the running process when `run` runs) must find no difference.
#[track_caller]
pub(crate) fn verify_clean(rig: &Rig) {
    let (code, output) = run_tidewater(&["verify"], &rig.config, &[], "warn", WAIT);
    assert!(!output.contains(PASSWORD), "verify leaks the password");
    assert_eq!(
        code,
        0,
        "verify found differences:\n{output}\nrun log:\n{}",
        rig.log()
    );
}

/// Runs `change` at the source while a writer runs `write(n)` (n = 1, 2, ...) against the
/// same table: the writer is under way before the change, and goes on for a while after it.
fn change_while_writing(rig: &Rig, change: &str, write: impl Fn(u64) -> String + Sync) {
    let written = AtomicU64::new(0);
    let stop = AtomicU64::new(u64::MAX);
    let failed = Mutex::new(None);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while n < stop.load(Ordering::Relaxed) {
                n += 1;
                if let Err(e) = rig.try_sql(&write(n)) {
                    *failed.lock().unwrap() = Some(e);
                    stop.store(0, Ordering::Relaxed);
                }
                written.store(n, Ordering::Relaxed);
            }
        });
        let wrote = |at_least: u64| {
            wait_until(WAIT, "the writer", || {
                if let Some(e) = failed.lock().unwrap().as_ref() {
                    panic!("the writer failed: {e}");
                }
                written.load(Ordering::Relaxed) >= at_least
            })
            .unwrap();
        };
        wrote(5);
        rig.sql(change);
        let after = written.load(Ordering::Relaxed) + 20;
        wrote(after);
        stop.store(after, Ordering::Relaxed);
    });
}

/// The change under a writer, then: verify clean while running, the source's and replica's
/// rows of `check` equal, and a restart that catches up with verify clean again.
pub(crate) fn changed_under_load(
    mut rig: Rig,
    change: &str,
    write: impl Fn(u64) -> String + Sync,
    check: &str,
) -> Rig {
    rig.start();
    rig.wait_caught_up(WAIT);
    change_while_writing(&rig, change, write);
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same(check);
    // The next start works from what the run left.
    rig.start();
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig
}

const PG_CUSTOMERS: &str =
    "CREATE TABLE customers (id int PRIMARY KEY, name text, amount numeric(10,2));
     INSERT INTO customers SELECT g, 'customer ' || g, g * 1.25 FROM generate_series(1, 200) g;";

/// Inserts a new customer and updates an old one: valid before and after each change below.
fn pg_customer_writes(n: u64) -> String {
    format!(
        "INSERT INTO customers (id, name) VALUES ({}, 'new {n}');
         UPDATE customers SET name = 'updated {n}' WHERE id = {};",
        1000 + n,
        1 + n % 200
    )
}

pub(crate) fn copied_again(rig: &Rig) {
    assert!(
        rig.log().contains("the table is copied again"),
        "the table was not copied again:\n{}",
        rig.log()
    );
}

#[test]
fn postgres_add_column_with_a_constant_default() {
    let rig = changed_under_load(
        Rig::new(PG_CUSTOMERS),
        "ALTER TABLE customers ADD COLUMN loyalty_tier text DEFAULT 'bronze'",
        pg_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(loyalty_tier, 'NULL')) FROM customers ORDER BY id",
    );
    copied_again(&rig);
    assert_eq!(
        rig.count("SELECT count(*) FROM customers WHERE loyalty_tier = 'bronze'"),
        rig.count("SELECT count(*) FROM customers"),
    );
}

#[test]
fn postgres_add_column_with_a_volatile_default() {
    changed_under_load(
        Rig::new(PG_CUSTOMERS),
        "ALTER TABLE customers ADD COLUMN token int DEFAULT (random() * 1000000)::int",
        pg_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(token::text, 'NULL')) FROM customers ORDER BY id",
    );
}

#[test]
fn postgres_alter_column_type_with_a_rewrite() {
    changed_under_load(
        Rig::new(PG_CUSTOMERS),
        "ALTER TABLE customers ALTER COLUMN amount TYPE bigint USING (amount * 100)::bigint",
        pg_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(amount::text, 'NULL')) FROM customers ORDER BY id",
    );
}

#[test]
fn postgres_rename_column() {
    changed_under_load(
        Rig::new(PG_CUSTOMERS),
        "ALTER TABLE customers RENAME COLUMN amount TO balance",
        pg_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(balance::text, 'NULL')) FROM customers ORDER BY id",
    );
}

/// pgoutput before PostgreSQL 18 does not send stored generated columns: they are not
/// replicated (nor compared by verify), so adding one changes nothing the replica holds.
#[test]
fn postgres_stored_generated_column_is_not_replicated() {
    let rig = changed_under_load(
        Rig::new(PG_CUSTOMERS),
        "ALTER TABLE customers ADD COLUMN doubled numeric GENERATED ALWAYS AS (amount * 2) STORED",
        pg_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(amount::text, 'NULL')) FROM customers ORDER BY id",
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'doubled'"),
        0
    );
}

/// `ALTER TYPE ... ADD VALUE` changes no existing row; enum values travel as text.
#[test]
fn postgres_enum_add_value() {
    changed_under_load(
        Rig::new(
            "CREATE TYPE tier AS ENUM ('bronze', 'silver');
             CREATE TABLE members (id int PRIMARY KEY, t tier);
             INSERT INTO members SELECT g, 'bronze' FROM generate_series(1, 100) g;",
        ),
        "ALTER TYPE tier ADD VALUE 'gold'",
        |n| {
            format!(
                "INSERT INTO members VALUES ({}, 'silver');
                 UPDATE members SET t = (CASE WHEN {n} > 10 AND EXISTS (SELECT 1 FROM pg_enum WHERE enumlabel = 'gold') THEN 'gold' ELSE 'silver' END)::tier WHERE id = {};",
                1000 + n,
                1 + n % 100
            )
        },
        "SELECT concat_ws('|', id, t) FROM members ORDER BY id",
    );
}

/// A domain's constraint or default changes no existing row (a constraint that existing rows
/// break is refused by PostgreSQL).
#[test]
fn postgres_domain_change() {
    changed_under_load(
        Rig::new(
            "CREATE DOMAIN positive AS int CHECK (VALUE > 0);
             CREATE TABLE stock (id int PRIMARY KEY, qty positive);
             INSERT INTO stock SELECT g, g FROM generate_series(1, 100) g;",
        ),
        "ALTER DOMAIN positive ADD CONSTRAINT below_million CHECK (VALUE < 1000000);
         ALTER DOMAIN positive SET DEFAULT 1",
        |n| {
            format!(
                "INSERT INTO stock VALUES ({}, {n});
                 UPDATE stock SET qty = qty + 1 WHERE id = {};",
                1000 + n,
                1 + n % 100
            )
        },
        "SELECT concat_ws('|', id, qty) FROM stock ORDER BY id",
    );
}

/// `TRUNCATE parent CASCADE` empties a replicated child through its foreign key, also when
/// the parent itself is not replicated: pgoutput's truncate message names every published
/// table it emptied.
#[test]
fn postgres_truncate_cascade_on_another_table() {
    let mut rig = Rig::new(
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
         INSERT INTO parent SELECT generate_series(1, 10);
         INSERT INTO child SELECT g, 1 + g % 10 FROM generate_series(1, 100) g;",
    );
    let config = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        config.replace("[\"public.*\"]", "[\"public.*\", \"!public.parent\"]"),
    )
    .unwrap();
    rig.start();
    rig.wait_caught_up(WAIT);
    // The writer inserts a parent and its child in one transaction: it locks parent, then
    // child, as TRUNCATE ... CASCADE does (two autocommit inserts locked child, then parent
    // in the foreign-key check: "deadlock detected"; or the truncate came between them and
    // the child's insert violated the foreign key).
    change_while_writing(&rig, "TRUNCATE parent CASCADE", |n| {
        format!(
            "BEGIN;
             INSERT INTO parent VALUES ({}) ON CONFLICT DO NOTHING;
             INSERT INTO child VALUES ({}, {});
             COMMIT;",
            1000 + n,
            1000 + n,
            1000 + n
        )
    });
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, parent_id) FROM child ORDER BY id");
}

/// Following `check`'s advice on a keyless table (REPLICA IDENTITY FULL) while `run` runs:
/// the table moves from the insert-only to the main publication and is copied again, its
/// updates and deletes flow from then on, and the next start works (the publications match).
#[test]
fn postgres_replica_identity_full_while_running() {
    let mut rig = Rig::new(
        "CREATE TABLE notes (a int, b text);
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    change_while_writing(&rig, "ALTER TABLE notes REPLICA IDENTITY FULL", |n| {
        format!(
            "INSERT INTO notes VALUES ({}, 'new');
             UPDATE notes SET b = 'updated {n}' WHERE a = {};
             DELETE FROM notes WHERE a = {};",
            1000 + n,
            1 + n % 50,
            1000 + n - 1
        )
    });
    wait_until(WAIT, "the table to be copied again", || {
        rig.log().contains("the table is copied again")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    // Updates and deletes after the copy flow too.
    rig.sql("UPDATE notes SET b = 'after' WHERE a = 7; DELETE FROM notes WHERE a = 8;");
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b");
    rig.start();
    rig.sql("UPDATE notes SET b = 'after restart' WHERE a = 9; DELETE FROM notes WHERE a = 10;");
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b");
}

/// The same change made while tidewater is stopped: the next start moves the table and
/// copies it again (it used to stop with "publication ... no longer matches").
#[test]
fn postgres_replica_identity_full_while_stopped() {
    let mut rig = Rig::new(
        "CREATE TABLE notes (a int, b text);
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.sql(
        "ALTER TABLE notes REPLICA IDENTITY FULL;
         UPDATE notes SET b = 'while stopped' WHERE a < 5;
         DELETE FROM notes WHERE a > 45;",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.sql("UPDATE notes SET b = 'after' WHERE a = 7;");
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b");
}

/// A keyless, insert-only table gains a primary key while running: it moves to the main
/// publication and is copied again, keyed.
#[test]
fn postgres_primary_key_added_while_running() {
    let mut rig = Rig::new(
        "CREATE TABLE notes (a int NOT NULL, b text);
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    change_while_writing(&rig, "ALTER TABLE notes ADD PRIMARY KEY (a)", |n| {
        format!(
            "INSERT INTO notes VALUES ({}, 'new');
             UPDATE notes SET b = 'updated {n}' WHERE a = {};",
            1000 + n,
            1 + n % 50
        )
    });
    // The table moves to the main publication at the next look (every 5 s), and is copied
    // again: the updates it missed while insert-only are in the copy.
    wait_until(WAIT, "the table to be copied again", || {
        rig.log().contains("the table is copied again")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    rig.sql("UPDATE notes SET b = 'after' WHERE a = 7");
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b");
    rig.start();
    rig.sql("UPDATE notes SET b = 'after restart' WHERE a = 9");
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', a, b) FROM notes ORDER BY a, b");
}

/// A replicated table dropped from the publication by hand while running is put back and
/// copied again (its changes meanwhile were not published), within the 5 s look for tables.
#[test]
fn postgres_table_dropped_from_the_publication_by_hand() {
    let mut rig = Rig::new(PG_CUSTOMERS);
    rig.start();
    rig.wait_caught_up(WAIT);
    change_while_writing(
        &rig,
        "ALTER PUBLICATION tidewater DROP TABLE customers",
        pg_customer_writes,
    );
    wait_until(WAIT, "the table to be copied again", || {
        rig.log().contains("copied again in chunks")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    copied_again(&rig);
    rig.sql("UPDATE customers SET name = 'after' WHERE id = 3");
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, name) FROM customers ORDER BY id");
    rig.start();
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
}

const MY_CUSTOMERS: &str = "CREATE TABLE customers (id int PRIMARY KEY, name varchar(20), n int);
     INSERT INTO customers SELECT seq, concat('customer ', seq), seq FROM seq_1_to_200;";

fn my_customer_writes(n: u64) -> String {
    format!(
        "INSERT INTO customers (id, name, n) VALUES ({}, 'new {n}', {n});
         UPDATE customers SET name = 'updated {n}' WHERE id = {};",
        1000 + n,
        1 + n % 200
    )
}

#[test]
fn mariadb_add_column_with_a_default() {
    let rig = changed_under_load(
        Rig::mysql(MY_CUSTOMERS),
        "ALTER TABLE customers ADD COLUMN loyalty_tier varchar(10) DEFAULT 'bronze', \
         ADD COLUMN points int NOT NULL DEFAULT 7",
        my_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(loyalty_tier, 'NULL'), points) FROM customers ORDER BY id",
    );
    copied_again(&rig);
}

/// MODIFY converts existing values: a shorter varchar truncates, NOT NULL turns NULLs into
/// zero (both without strict mode).
#[test]
fn mariadb_modify_column_conversion() {
    let rig = Rig::mysql(&format!(
        "{MY_CUSTOMERS} UPDATE customers SET n = NULL WHERE id % 7 = 0;"
    ));
    let rig = changed_under_load(
        rig,
        "SET SESSION sql_mode = ''; ALTER TABLE customers MODIFY name varchar(9), MODIFY n int NOT NULL",
        |n| {
            format!(
                "INSERT INTO customers (id, name, n) VALUES ({}, 'w{n}', {n});
                 UPDATE customers SET n = {n} WHERE id = {};",
                1000 + n,
                1 + n % 200
            )
        },
        "SELECT concat_ws('|', id, name, coalesce(cast(n AS char), 'NULL')) FROM customers ORDER BY id",
    );
    copied_again(&rig);
}

#[test]
fn mariadb_rename_column() {
    changed_under_load(
        Rig::mysql(MY_CUSTOMERS),
        "ALTER TABLE customers CHANGE n amount int",
        |n| {
            format!(
                "INSERT INTO customers (id, name) VALUES ({}, 'new {n}');
                 UPDATE customers SET name = 'updated {n}' WHERE id = {};",
                1000 + n,
                1 + n % 200
            )
        },
        "SELECT concat_ws('|', id, name, coalesce(cast(amount AS char), 'NULL')) FROM customers ORDER BY id",
    );
}

#[test]
fn mariadb_generated_columns() {
    let rig = changed_under_load(
        Rig::mysql(MY_CUSTOMERS),
        "ALTER TABLE customers ADD COLUMN doubled int AS (n * 2) STORED, \
         ADD COLUMN tripled int AS (n * 3) VIRTUAL",
        my_customer_writes,
        "SELECT concat_ws('|', id, name, coalesce(cast(doubled AS char), 'NULL'), coalesce(cast(tripled AS char), 'NULL')) FROM customers ORDER BY id",
    );
    copied_again(&rig);
}
