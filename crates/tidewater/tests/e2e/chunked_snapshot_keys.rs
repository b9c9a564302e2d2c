//! The keys the chunked initial snapshot (`tidewater_core::copy`) pages by, both sources, with
//! a writer changing every table (updates, deletes, inserts, key changes) during the copy:
//!
//! - **A table without a primary key but with a NOT NULL unique index** is keyed by that
//!   index, so it is copied in chunks and applied by key, like a primary-key table: on
//!   PostgreSQL under `REPLICA IDENTITY USING INDEX` (`ui`) and `FULL` (`uf`, where a nullable
//!   unique column must not be taken for the key), on MariaDB through the binlog's full row
//!   images. Before, such a table was copied as one keyless chunk.
//! - **Composite keys of uuid / binary, numeric and bytea / text columns** (`typed`) page
//!   correctly: the server compares the keys, tidewater only passes the last one back.
//! - **A table that gains such a key after its replica was written** (a keyless replica, from
//!   before the index existed, or from a version that did not key by unique indexes) is
//!   copied again under the key, while stopped or while running: before, the sink stopped
//!   with "cannot re-key a replica in place".

use std::time::Duration;

use crate::chunked_snapshot::{
    assert_same_rows, assert_same_rows_of, copy_while_writing, with_chunk_rows,
};
use crate::common::Rig;
use crate::uncarried_ddl::{changed_under_load, copied_again, verify_clean};

const ROWS: u64 = 20_000;
const WAIT: Duration = Duration::from_secs(120);
const CHUNK_ROWS: u64 = 500;

fn pg_setup() -> String {
    format!(
        "
CREATE TABLE ui (id bigint NOT NULL, v text, n int NOT NULL);
CREATE UNIQUE INDEX ui_id ON ui (id);
ALTER TABLE ui REPLICA IDENTITY USING INDEX ui_id;
INSERT INTO ui SELECT g, md5(g::text), 0 FROM generate_series(1, {ROWS}) g;
CREATE TABLE uf (a text NOT NULL, b int NOT NULL, c int UNIQUE, v text, UNIQUE (a, b));
ALTER TABLE uf REPLICA IDENTITY FULL;
INSERT INTO uf SELECT 'k' || (g % 37), g, g, 'x' FROM generate_series(1, {ROWS}) g;
CREATE TABLE typed (u uuid, d numeric(12,3), b bytea, v text, PRIMARY KEY (u, d, b));
INSERT INTO typed SELECT md5((g % 50)::text)::uuid, g / 8.0, decode(md5(g::text), 'hex'), 'x'
  FROM generate_series(1, {ROWS}) g;
"
    )
}

fn my_setup() -> String {
    format!(
        "
CREATE TABLE ui (id bigint NOT NULL, v text, n int NOT NULL, UNIQUE KEY ui_id (id));
INSERT INTO ui SELECT seq, md5(seq), 0 FROM seq_1_to_{ROWS};
CREATE TABLE uf (a varchar(20) NOT NULL, b int NOT NULL, c int NULL, v text,
  UNIQUE KEY c (c), UNIQUE KEY ab (a, b), KEY v (v(10)));
INSERT INTO uf SELECT concat('k', seq % 37), seq, seq, 'x' FROM seq_1_to_{ROWS};
CREATE TABLE typed (u binary(16), d decimal(12,3), s varchar(40), v text, PRIMARY KEY (u, d, s));
INSERT INTO typed SELECT UNHEX(md5(seq % 50)), seq / 8, md5(seq), 'x' FROM seq_1_to_{ROWS};
"
    )
}

/// `g / 8` as the exact decimal literal of `typed.d`.
fn eighth(g: u64) -> String {
    format!("{}.{:03}", g / 8, (g % 8) * 125)
}

/// The statements both dialects share: changes to `ui` and `uf` spread over their key
/// ranges (copied and not yet copied parts alike), and to `typed` by its numeric key part.
fn shared(i: u64) -> String {
    let spread = |m: u64| (i * m) % ROWS + 1;
    let (cu, mv, dl) = (spread(7919), spread(31), spread(104_729));
    format!(
        "UPDATE ui SET n = n + 1, v = 'u{i}' WHERE id = {u};
DELETE FROM ui WHERE id = {dl};
INSERT INTO ui VALUES ({ins}, 'new', {i});
UPDATE ui SET id = {moved} WHERE id = {mv};
UPDATE uf SET v = 'u{i}' WHERE a = 'k{ca}' AND b = {cu};
UPDATE uf SET b = b + 1000000 WHERE a = 'k{ma}' AND b = {mv};
INSERT INTO uf VALUES ('n{i}', {i}, NULL, 'new');
DELETE FROM uf WHERE a = 'k{da}' AND b = {dl};
UPDATE typed SET v = 'u{i}' WHERE d = {tu};
UPDATE typed SET d = d + 100000 WHERE d = {tm};
DELETE FROM typed WHERE d = {td};
",
        u = spread(13),
        ins = 1_000_000 + i,
        moved = 2_000_000 + i,
        ca = cu % 37,
        ma = mv % 37,
        da = dl % 37,
        tu = eighth(cu),
        tm = eighth(mv),
        td = eighth(dl),
    )
}

fn pg_transaction(i: u64) -> String {
    format!(
        "BEGIN;\n{}INSERT INTO typed VALUES (md5('n{i}')::uuid, {i}.5, decode(md5('n{i}'), 'hex'), 'new');\nCOMMIT;\n",
        shared(i)
    )
}

fn my_transaction(i: u64) -> String {
    format!(
        "BEGIN;\n{}INSERT INTO typed VALUES (UNHEX(md5('n{i}')), {i}.5, md5('n{i}'), 'new');\nCOMMIT;\n",
        shared(i)
    )
}

#[test]
fn pg_unique_index_and_typed_keys_are_copied_in_chunks_under_writes() {
    let typed = (
        "SELECT concat_ws(',', u, d, upper(encode(b, 'hex')), v) FROM typed",
        "SELECT concat_ws(',', u, d, hex(b), v) FROM typed",
    );
    copy_under_writes(Rig::new(&pg_setup()), pg_transaction, typed);
}

#[test]
fn mariadb_unique_index_and_typed_keys_are_copied_in_chunks_under_writes() {
    let typed = (
        "SELECT concat_ws(',', hex(u), d, s, v) FROM typed",
        "SELECT concat_ws(',', hex(u), d, s, v) FROM typed",
    );
    copy_under_writes(Rig::mysql(&my_setup()), my_transaction, typed);
}

/// Copies every table while `transaction` writes, then compares each table with the source
/// (`typed`: its query on the source and on the replica) and counts the chunks.
fn copy_under_writes(mut rig: Rig, transaction: fn(u64) -> String, typed: (&str, &str)) {
    with_chunk_rows(&rig, CHUNK_ROWS);
    let ui = format!("{}.ui", rig.schema);
    let log = copy_while_writing(&mut rig, transaction, &ui);
    assert_same_rows(
        &rig,
        "SELECT concat_ws(',', id, coalesce(v, '-'), n) FROM ui",
    );
    assert_same_rows(
        &rig,
        "SELECT concat_ws(',', a, b, coalesce(c, -1), coalesce(v, '-')) FROM uf",
    );
    assert_same_rows_of(&rig, typed.0, typed.1);
    // Keyed by the unique index (or the key), so paged: a keyless table is one chunk.
    for table in ["ui", "uf", "typed"] {
        let chunks = rig.count(&format!(
            "SELECT chunks FROM _tidewater.copies WHERE table_name = '{table}'"
        ));
        assert!(
            chunks >= (ROWS / CHUNK_ROWS) as i64,
            "{table} copied in {chunks} chunk(s), not paged by its key\n{log}"
        );
    }
}

const BAG_CHECK: &str = "SELECT concat_ws('|', id, coalesce(v, '-'), n) FROM bag ORDER BY id";

/// Changes to `bag` by `id`, valid with and without a key on it.
fn bag_writes(n: u64) -> String {
    format!(
        "INSERT INTO bag VALUES ({new}, 'new', {n});
         UPDATE bag SET n = n + 1, v = 'u{n}' WHERE id = {k};
         DELETE FROM bag WHERE id = {gone};",
        new = 1000 + n,
        k = 1 + n % 200,
        gone = 1 + (n + 100) % 200,
    )
}

/// A keyless `REPLICA IDENTITY FULL` table (its unique column is nullable, so no key) whose
/// column becomes NOT NULL while tidewater is stopped: the table is keyed by the unique index
/// now, and its keyless replica is copied again under that key at the next start.
#[test]
fn pg_full_identity_table_that_gains_a_unique_key_while_stopped_is_copied_again() {
    let mut rig = Rig::new(
        "CREATE TABLE bag (id int UNIQUE, v text, n int);
         ALTER TABLE bag REPLICA IDENTITY FULL;
         INSERT INTO bag SELECT g, 'v' || g, 0 FROM generate_series(1, 200) g;",
    );
    rig.start();
    rig.wait_caught_up(WAIT);
    rig.sql(&bag_writes(1));
    rig.wait_caught_up(WAIT);
    rig.stop();
    rig.sql("ALTER TABLE bag ALTER COLUMN id SET NOT NULL");
    rig.sql(&bag_writes(2));
    rig.start();
    rig.wait_caught_up(WAIT);
    for n in 3..=20 {
        rig.sql(&bag_writes(n));
    }
    rig.wait_caught_up(WAIT);
    verify_clean(&rig);
    rig.stop();
    rig.assert_same(BAG_CHECK);
    copied_again(&rig);
}

/// A keyless MariaDB table that gets a unique key on a NOT NULL column while running is
/// copied again under it, and the next start works from what the run left.
#[test]
fn mariadb_table_that_gains_a_unique_key_while_running_is_copied_again() {
    let rig = changed_under_load(
        Rig::mysql(
            "CREATE TABLE bag (id int NOT NULL, v text, n int);
             INSERT INTO bag SELECT seq, concat('v', seq), 0 FROM seq_1_to_200;",
        ),
        "ALTER TABLE bag ADD UNIQUE KEY bag_id (id)",
        bag_writes,
        BAG_CHECK,
    );
    copied_again(&rig);
}
