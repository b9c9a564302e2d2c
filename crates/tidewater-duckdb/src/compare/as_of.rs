//! A live re-check compares the replica as of the round's source snapshot, read from its
//! change log, not the replica as it is when read.
//!
//! Why: a re-check round reads the differing keys at a newer source snapshot S and waits
//! until the replica holds every transaction up to S. But `run` keeps applying, so when the
//! replica is read it may already hold transactions after S: a key that changes more often
//! than the apply lag (a hot key) differs from S in every round although nothing is wrong,
//! and would be reported (and, with `[verify] repair`, copied again for nothing).
//!
//! How, per table, in three steps the verify engine drives:
//! 1. `recheck_base`, before S is taken: one DuckDB transaction keeps the replica rows of the
//!    differing keys (`tw_base_<i>`) and the pipeline's transaction ordinal B. Those rows hold
//!    exactly the transactions up to B, all committed at the source before S was taken (they
//!    had been applied already).
//! 2. `recheck_later`, once the replica has passed S: the transactions after B whose log rows
//!    touch those keys (by key, by the old key of a key-changing update, or a `TRUNCATE`), as
//!    (ordinal, position). The engine asks the source which positions S holds; the cutoff C is
//!    the last of them that S holds, else B (`recheck_as_of`). Ordinals follow the source's
//!    commit order and a snapshot holds a prefix of it, so the transactions up to C are those
//!    S holds and the later ones are not. (PostgreSQL: S is `pg_current_wal_lsn()` read just
//!    after the snapshot, so a transaction that committed in between counts as held though
//!    the snapshot does not show it; its keys differ in that round only, and a key is reported
//!    only if it differs in every round.)
//! 3. `recheck_batch` builds the replica side key by key:
//!    - no log row after C: the replica row as it is now (nothing has changed it since S; the
//!      replica has applied everything up to S);
//!    - a log row after C: the key's last log row in (B, C] (by ordinal, then sequence): present
//!      with that image for `SNAPSHOT`, `INSERT` and an `UPDATE` to the key, absent for a
//!      `DELETE`, an `UPDATE` that moved the key away and a `TRUNCATE`; with none, its base row
//!      (or its absence).
//!
//! The log stands in for the replica only after checking that they agree: for every key
//! read as of the log, its replica row now must be its last log row now (the invariant the
//! sink keeps, read in the same DuckDB transaction as the rest of the step), or the key is
//! reported as differing. So a replica row that is wrong while its log is right is still
//! found, and a log that is wrong shows as a difference from the source at the snapshot.
//!
//! New log rows appended between the steps have greater ordinals than C and belong to
//! transactions after S (every transaction up to S had been applied by step 2), so they only
//! ever count as "after C". A log row's image is the replica row its transaction wrote (the
//! sink writes both in one transaction; an update of unchanged TOAST values logs the updated
//! replica row), so this reads what the replica held at C.
//!
//! Without a `_log` table (`log_tables = false`), or one whose columns differ from the
//! replica's, the round compares the replica as it is, as before. While a table is copied
//! again its log describes the copy table (`sink/recopy.rs`), not the replica table, so its
//! keys read as of the log are reported: a table under copy is not comparable anyway.

use duckdb::params;
use tidewater_core::Result;

use super::sql::{columns, key_columns, key_join, key_list, or_distinct};
use super::{sql_err, Comparer, NEXT, RECHECK};
use crate::sql::{log_table, old_key_columns, quote_ident, LOG_METADATA_COLUMNS};

/// The re-check of one table as of a transaction.
pub(crate) struct AsOf {
    /// The base's ordinal (B).
    base: i64,
    /// The last transaction the round's snapshot holds (C), once known.
    cutoff: Option<i64>,
    /// The change log, qualified.
    log: String,
    /// The base rows' temp table.
    rows: String,
}

impl Comparer {
    /// Step 1 (module doc): the base rows and their ordinal, read in one transaction. False
    /// when the table has no usable change log.
    pub fn recheck_base(&mut self, i: usize, pipeline: &str) -> Result<bool> {
        self.tables[i].as_of = None;
        let Some(log) = self.usable_log(i)? else {
            return Ok(false);
        };
        let t = &self.tables[i];
        let rows = format!("tw_base_{i}");
        let prefix = self.catalog_prefix();
        self.exec("BEGIN TRANSACTION")?;
        let read = self
            .exec(&format!(
                "CREATE OR REPLACE TEMP TABLE {rows} AS SELECT {cols} FROM {rep} r \
                 SEMI JOIN {diff} d ON {on}",
                cols = columns(&t.schema, Some("r")),
                rep = t.replica,
                diff = t.diff,
                on = key_join(&t.schema, "r", "d"),
            ))
            .and_then(|()| {
                self.conn
                    .query_row(
                        &format!(
                            "SELECT tx_ordinal FROM {prefix}_tidewater.pipeline WHERE name = ?"
                        ),
                        [pipeline],
                        |r| r.get::<_, Option<i64>>(0),
                    )
                    .map_err(sql_err("reading the replica's transaction ordinal"))
            });
        let base = match read {
            Ok(base) => {
                self.exec("COMMIT")?;
                base
            }
            Err(e) => {
                let _ = self.exec("ROLLBACK");
                return Err(e);
            }
        };
        let Some(base) = base else {
            return Ok(false);
        };
        self.tables[i].as_of = Some(AsOf {
            base,
            cutoff: None,
            log,
            rows: format!("temp.main.{rows}"),
        });
        Ok(true)
    }

    /// Step 2: (ordinal, position) of the transactions after the base that touched the
    /// differing keys, in commit order.
    pub fn recheck_later(&self, i: usize) -> Result<Vec<(i64, String)>> {
        let t = &self.tables[i];
        let Some(a) = &t.as_of else {
            return Ok(Vec::new());
        };
        let touch = touching(&t.schema, &a.log, a.base, &t.diff, "_tw_kind");
        let sql = format!("SELECT DISTINCT _tw_tx, _tw_position FROM ({touch}) ORDER BY _tw_tx",);
        let mut stmt = self.conn.prepare(&sql).map_err(sql_err(
            "reading the transactions after the re-check's base",
        ))?;
        let rows = stmt
            .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_err(
                "reading the transactions after the re-check's base",
            ))?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql_err(
            "reading the transactions after the re-check's base",
        ))
    }

    /// Step 2's outcome: the cutoff.
    pub fn recheck_as_of(&mut self, i: usize, ordinal: i64) -> Result<()> {
        if let Some(a) = &mut self.tables[i].as_of {
            a.cutoff = Some(ordinal.max(a.base));
        }
        Ok(())
    }

    /// Step 3: SQL that puts the replica rows of re-check keys `from..=to` as of the cutoff
    /// in `tw_rep`, and SQL to run after they are compared that adds the keys whose replica
    /// row is not their last log row to the differences (None: the table is not re-checked as
    /// of a transaction). Both run in one DuckDB transaction, so the log and the replica are
    /// read at the same commit.
    pub(super) fn replica_as_of(&self, i: usize, from: u64, to: u64) -> Option<(String, String)> {
        let t = &self.tables[i];
        let a = t.as_of.as_ref()?;
        let cutoff = a.cutoff?;
        let s = &t.schema;
        let batch = format!("(SELECT * FROM {RECHECK} WHERE _tw_n BETWEEN {from} AND {to})");
        let touch = touching(s, &a.log, a.base, &batch, "_tw_n");
        let cols = |alias| columns(s, Some(alias));
        let keys = key_list(s, "k");
        let inconsistent = format!(
            "INSERT INTO {NEXT} SELECT 'differing', {keys} FROM {batch} k \
               JOIN (SELECT * FROM temp.main.tw_touch QUALIFY row_number() OVER (PARTITION BY _tw_n \
                 ORDER BY _tw_tx DESC, _tw_seq DESC, _tw_present DESC) = 1) s ON k._tw_n = s._tw_n \
               LEFT JOIN (SELECT *, true AS _tw_here FROM {rep}) r ON {rep_on} \
             WHERE (CASE WHEN s._tw_present THEN r._tw_here IS NULL{distinct} \
                    ELSE r._tw_here IS NOT NULL END) \
               AND NOT EXISTS (SELECT 1 FROM {NEXT} n WHERE {next_on});",
            rep = t.replica,
            rep_on = key_join(s, "r", "k"),
            distinct = or_distinct(s),
            next_on = key_join(s, "n", "k"),
        );
        let replica = format!(
            "CREATE OR REPLACE TEMP TABLE tw_touch AS {touch};
             CREATE OR REPLACE TEMP TABLE tw_rep AS
               WITH b AS {batch},
                 moved AS (SELECT DISTINCT _tw_n FROM temp.main.tw_touch WHERE _tw_tx > {cutoff}),
                 settled AS (SELECT * FROM temp.main.tw_touch WHERE _tw_tx <= {cutoff} \
                   QUALIFY row_number() OVER (PARTITION BY _tw_n \
                     ORDER BY _tw_tx DESC, _tw_seq DESC, _tw_present DESC) = 1)
               SELECT {rep_cols} FROM {rep} r SEMI JOIN \
                 (SELECT * FROM b ANTI JOIN moved ON b._tw_n = moved._tw_n) k ON {rep_on}
               UNION ALL SELECT {last_cols} FROM settled e \
                 SEMI JOIN moved ON e._tw_n = moved._tw_n WHERE e._tw_present
               UNION ALL SELECT {base_cols} FROM {base} r SEMI JOIN \
                 (SELECT * FROM b SEMI JOIN moved ON b._tw_n = moved._tw_n \
                  ANTI JOIN settled ON b._tw_n = settled._tw_n) k ON {rep_on};",
            rep_cols = cols("r"),
            rep = t.replica,
            rep_on = key_join(s, "r", "k"),
            last_cols = cols("e"),
            base_cols = cols("r"),
            base = a.rows,
        );
        Some((replica, inconsistent))
    }

    /// The end of the table's re-check round.
    pub(super) fn as_of_done(&mut self, i: usize) -> Result<()> {
        match self.tables[i].as_of.take() {
            Some(a) => self.exec(&format!("DROP TABLE IF EXISTS {}", a.rows)),
            None => Ok(()),
        }
    }

    /// `"catalog".` when the replica is attached, else nothing.
    pub(super) fn catalog_prefix(&self) -> String {
        self.catalog
            .as_deref()
            .map(|c| format!("{}.", quote_ident(c)))
            .unwrap_or_default()
    }

    /// Table `i`'s change log, qualified, when it has the replica's columns and types and
    /// the columns the re-check reads.
    fn usable_log(&self, i: usize) -> Result<Option<String>> {
        let t = &self.tables[i];
        let s = &t.schema;
        if !s.has_key() || t.problem.is_some() {
            return Ok(None);
        }
        let db = self.database();
        let replica = self.catalog_columns(&db, &s.id.schema, &s.id.name)?;
        let log = self.catalog_columns(&db, &s.id.schema, &format!("{}_log", s.id.name))?;
        let has = |name: &str, ty: Option<&str>| {
            log.iter()
                .any(|(n, t)| n == name && ty.is_none_or(|ty| t == ty))
        };
        let source_columns = s.columns.iter().all(|c| {
            let ty = replica.iter().find(|(n, _)| *n == c.name).map(|(_, t)| t);
            ty.is_some_and(|ty| has(&c.name, Some(ty)))
        });
        let metadata = LOG_METADATA_COLUMNS.iter().all(|(n, _)| has(n, None));
        let old_keys = old_key_columns(s).iter().all(|(n, _)| has(n, None));
        Ok((source_columns && metadata && old_keys)
            .then(|| format!("{}{}", self.catalog_prefix(), log_table(&s.id))))
    }
}

/// SQL: the log rows after ordinal `base` that touch the keys of `keys` (a relation with the
/// key columns and `tag`), each with the key's `tag`, the row's ordinal, sequence and
/// position, whether it leaves the key present, and the row's columns.
fn touching(
    s: &tidewater_core::TableSchema,
    log: &str,
    base: i64,
    keys: &str,
    tag: &str,
) -> String {
    let cols = columns(s, Some("l"));
    let head = format!(
        "SELECT k.{tag} AS _tw_n, l._metadata_tx AS _tw_tx, l._metadata_sequence AS _tw_seq, \
         l._metadata_position AS _tw_position"
    );
    let old_on: Vec<String> = old_key_columns(s)
        .iter()
        .zip(key_columns(s))
        .map(|((old, _), c)| format!("l.{} = k.{}", quote_ident(old), quote_ident(&c.name)))
        .collect();
    format!(
        "{head}, l._metadata_change_type IN ('SNAPSHOT', 'INSERT', 'UPDATE') AS _tw_present, {cols} \
           FROM {log} l JOIN {keys} k ON {on} WHERE l._metadata_tx > {base} \
         UNION ALL {head}, false, {cols} \
           FROM {log} l JOIN {keys} k ON {old_on} WHERE l._metadata_tx > {base} \
         UNION ALL {head}, false, {cols} \
           FROM {log} l CROSS JOIN {keys} k \
           WHERE l._metadata_change_type = 'TRUNCATE' AND l._metadata_tx > {base}",
        on = key_join(s, "l", "k"),
        old_on = old_on.join(" AND "),
    )
}
