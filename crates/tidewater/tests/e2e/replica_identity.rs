//! PostgreSQL tables whose updates and deletes identify rows by something other than the
//! primary key the replica was keyed by: `REPLICA IDENTITY USING INDEX` on another unique
//! index, set before the first start or while running, and a primary key moved to other
//! columns while running. pgoutput's old tuple of an update or delete then holds only the
//! identity index's columns; a replica keyed by the primary key applied such a delete to no
//! row and kept it. The replica is keyed by the replica identity (the catalog and the stream's
//! Relation messages agree), and a change of it copies the table again under the new key.
//! MariaDB: a primary key moved while running is copied again the same way.

use crate::common;
use crate::uncarried_ddl::{changed_under_load, copied_again, verify_clean};

use std::time::Duration;

use common::Rig;

const WAIT: Duration = Duration::from_secs(120);

const ACCOUNTS: &str = "CREATE TABLE acct (id int PRIMARY KEY, email text NOT NULL UNIQUE, n int);
     INSERT INTO acct SELECT g, 'u' || g || '@x', 0 FROM generate_series(1, 200) g;";

const CHECK: &str = "SELECT concat_ws('|', id, email, n) FROM acct ORDER BY id";

/// Every way a row is identified: deleted, its primary key moved (identity unchanged), its
/// identity moved, updated in place, and a new row; `n` makes each call's rows its own.
fn writes(n: u64) -> String {
    let k = 1 + n % 200;
    format!(
        "INSERT INTO acct VALUES ({new}, 'new{n}@x', {n});
         DELETE FROM acct WHERE id = {k};
         UPDATE acct SET id = id + 100000 WHERE id = {new};
         UPDATE acct SET email = 'moved{n}@x' WHERE id = {moved};
         UPDATE acct SET n = n + 1 WHERE id = {bumped};",
        new = 1000 + n,
        moved = 1 + (n + 50) % 200,
        bumped = 1 + (n + 100) % 200,
    )
}

#[test]
fn postgres_replica_identity_using_another_unique_index_from_the_start() {
    let mut rig = Rig::new(&format!(
        "{ACCOUNTS} ALTER TABLE acct REPLICA IDENTITY USING INDEX acct_email_key;"
    ));
    rig.start();
    rig.wait_caught_up(WAIT);
    for n in 1..=40 {
        rig.sql(&writes(n));
    }
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same(CHECK);
}

#[test]
fn postgres_replica_identity_moved_to_another_unique_index_while_running() {
    let rig = changed_under_load(
        Rig::new(ACCOUNTS),
        "ALTER TABLE acct REPLICA IDENTITY USING INDEX acct_email_key",
        writes,
        CHECK,
    );
    copied_again(&rig);
}

#[test]
fn postgres_primary_key_moved_to_other_columns_while_running() {
    let rig = changed_under_load(
        Rig::new(ACCOUNTS),
        "ALTER TABLE acct DROP CONSTRAINT acct_pkey, ADD PRIMARY KEY (email)",
        writes,
        CHECK,
    );
    copied_again(&rig);
}

/// MariaDB: the primary key moved to other columns while running (the table's definition is
/// read again at the `ALTER TABLE`): copied again under the new key.
#[test]
fn mariadb_primary_key_moved_to_other_columns_while_running() {
    let rig = changed_under_load(
        Rig::mysql(
            "CREATE TABLE acct (id int PRIMARY KEY, email varchar(40) NOT NULL UNIQUE, n int);
             INSERT INTO acct SELECT seq, concat('u', seq, '@x'), 0 FROM seq_1_to_200;",
        ),
        "ALTER TABLE acct DROP PRIMARY KEY, ADD PRIMARY KEY (email)",
        writes,
        CHECK,
    );
    copied_again(&rig);
}
