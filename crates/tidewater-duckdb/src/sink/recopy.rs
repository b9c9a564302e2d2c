//! A table copied again while streaming (`tidewater resnapshot`, a verify repair, a schema
//! change the stream does not carry: `tidewater_core::copy`, "Copies again") fills a copy
//! table, `"S"."T__tidewater_copy"`, while its replica table keeps the rows it had; once the
//! copy is consistent the copy table replaces the replica table in the same DuckDB
//! transaction. Readers never see a half-copied table: until the swap they see the table as it
//! was when the copy began (stale: `status` shows the copy, and `/health` says degraded, not
//! down, as `Sink::copies_beside` tells the runtime), then the complete copy.
//!
//! How the sink tells a re-copy from a plain `TRUNCATE`: a source starts a re-copy with a
//! truncate of the table (carrying the definition the stream applies from there) and, in the
//! same source transaction, a fresh copy progress (no chunk, no row). So a truncate of a known
//! table only writes its `_log` row and is held (`pending_truncates`):
//! - the table's fresh progress next: the copy table is created empty with the held
//!   definition and every later row of the table goes there (`TableSql::replica`); the
//!   replica table is left as it is;
//! - anything else first (a change of the table, another progress, the commit): the rows are
//!   removed then, as a plain truncate. Nothing of the table was written in between, so the
//!   outcome is the same as removing them at once.
//!
//! The `_log` is unchanged by this: its `TRUNCATE` row and then the copy's `SNAPSHOT` rows and
//! streamed changes describe the copy table, which becomes the replica. While the copy runs,
//! the last `_log` entry of a key is the copy table's row, not the (older) replica table's.
//!
//! Crash safety: the copy table, the rows in it and the copy's progress commit together, and
//! the swap commits with the progress that marks the copy consistent, so after a crash the
//! run finds either the copy table (and resumes filling it: `schema::prepare_table` points the
//! table's statements at it) or the swapped replica. A re-copy asked while one is under way
//! starts a new, empty copy table.

use std::sync::Arc;

use tidewater_core::{CopyProgress, Error, Result, TableId, TableSchema, TxInfo};
use tracing::{info, warn};

use super::DuckDbSink;
use crate::rowwise;
use crate::schema::evolve_table;
use crate::sql::{copy_table, exec, qualified, quote_ident};
use crate::staged::TableState;
use crate::table::TableSql;

impl DuckDbSink {
    /// `Sink::truncate`: each table's `_log` row now; a known table's rows are removed when
    /// it is next written, or at the commit, unless a copy of it begins first.
    pub(super) fn truncate_tables(
        &mut self,
        tx: &TxInfo,
        tables: &[Arc<TableSchema>],
    ) -> Result<()> {
        if tables.is_empty() {
            return Ok(());
        }
        self.enter_tx(tx, self.next_txseq);
        let tx = self.current_tx();
        for t in tables {
            self.end_fresh_copy(&t.id);
            let known = self.tables.contains_key(&t.id);
            if known {
                self.merge(&t.id)?;
                self.pending_truncates.insert(t.id.clone(), t.clone());
            } else {
                self.ensure_schema_of(t, true)?;
                rowwise::delete_all(&self.conn, &self.tables[&t.id].sql.replica)?;
            }
            if self.options.log_tables {
                let meta = rowwise::LogMeta {
                    position: &tx.log_position,
                    commit_ts: &tx.commit_ts,
                    txseq: self.next_txseq,
                    tx: tx.ordinal,
                };
                rowwise::log_truncate(&self.conn, t, &meta)?;
            }
            self.next_txseq += 1;
        }
        Ok(())
    }

    /// A held truncate of `id` becomes a plain one: its rows are removed now.
    pub(super) fn settle_truncate(&mut self, id: &TableId) -> Result<()> {
        let Some(schema) = self.pending_truncates.remove(id) else {
            return Ok(());
        };
        self.ensure_schema_of(&schema, true)?;
        rowwise::delete_all(&self.conn, &self.tables[id].sql.replica)
    }

    /// Every held truncate becomes a plain one (before the batch commits).
    pub(super) fn settle_truncates(&mut self) -> Result<()> {
        let ids: Vec<TableId> = self.pending_truncates.keys().cloned().collect();
        for id in &ids {
            self.settle_truncate(id)?;
        }
        Ok(())
    }

    /// Before `progress` is written: a held truncate followed by its table's fresh progress
    /// starts a copy table; any other progress of a table with a held truncate settles it.
    pub(super) fn start_copy_tables(&mut self, progress: &[CopyProgress]) -> Result<()> {
        for p in progress {
            if !self.pending_truncates.contains_key(&p.table) {
                continue;
            }
            let begins = p.chunks == 0 && p.rows == 0 && !p.done && !p.consistent;
            if begins {
                let schema = self.pending_truncates.remove(&p.table).expect("held");
                self.start_copy_table(schema)?;
            } else {
                self.settle_truncate(&p.table)?;
            }
        }
        Ok(())
    }

    /// Creates the table's copy table, empty, with `schema` (the definition the truncate
    /// carried), and points the table's statements at it.
    fn start_copy_table(&mut self, schema: Arc<TableSchema>) -> Result<()> {
        let id = schema.id.clone();
        let copy = copy_table(&id);
        let (old, index) = {
            let t = &self.tables[&id].sql;
            (t.schema.clone(), t.index)
        };
        let log = self.options.log_tables;
        // The copy table starts with the definition the table has now, then takes the new one
        // the way any schema change is applied (the log follows it there).
        let fresh = TableSql::writing_to(old.clone(), index, log, copy.clone());
        let what = format_args!("creating the copy table of {id}");
        exec(
            &self.conn,
            &format!("DROP TABLE IF EXISTS {}", qualified(&copy)),
            &what,
        )?;
        exec(
            &self.conn,
            &fresh.create_replica(self.options.key_at_creation()),
            &what,
        )?;
        let sql = if *old == *schema {
            fresh
        } else {
            let pk = Some(self.options.key_at_creation());
            evolve_table(&self.conn, &old, schema, index, log, pk, &copy)?
        };
        info!(table = %id, copy = %qualified(&copy), "the table's copy fills a copy table; the replica table keeps its rows until the copy is consistent");
        self.install(id, sql);
        Ok(())
    }

    /// The tables whose rows go to their copy table (`Sink::copies_beside`).
    pub(super) fn copy_tables_in_use(&self) -> Vec<TableId> {
        self.tables
            .iter()
            .filter(|(id, t)| t.sql.replica != **id)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Makes `sql` the table's statements (its definition or target changed), keeping what
    /// the batch counted and the copy's modes.
    pub(super) fn install(&mut self, id: TableId, sql: crate::table::TableSql) {
        // Cached plans may name the old staging table, target or columns.
        self.conn.flush_prepared_statement_cache();
        self.plans.forget();
        self.primary_keys.forget(&sql.replica);
        let changes = self.tables.get(&id).map_or(0, |t| t.changes);
        let mut state = TableState::new(sql);
        state.changes = changes;
        state.lenient = self.lenient.contains(&id) && state.sql.schema.has_key();
        state.fresh_copy = self.fresh_copies.contains_key(&id);
        self.tables.insert(id, state);
    }

    /// After `progress` is written and the tables it changes are merged: the copy table of a
    /// table whose copy is now consistent replaces its replica table. Indexes you created on
    /// the replica table are created again on it after the commit (`restore_indexes`).
    pub(super) fn swap_in_copies(&mut self, progress: &[CopyProgress]) -> Result<()> {
        for p in progress.iter().filter(|p| p.consistent) {
            let Some(t) = self.tables.get(&p.table) else {
                continue;
            };
            if t.sql.replica == p.table {
                continue;
            }
            self.merge(&p.table)?;
            let id = p.table.clone();
            let copy = self.tables[&id].sql.replica.clone();
            let indexes = self.own_indexes(&id)?;
            if !indexes.is_empty() {
                self.indexes_to_restore.push((id.clone(), indexes));
            }
            let t = &self.tables[&id].sql;
            let sql = TableSql::writing_to(
                t.schema.clone(),
                t.index,
                self.options.log_tables,
                id.clone(),
            );
            exec(
                &self.conn,
                &format!(
                    "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {}",
                    qualified(&id),
                    qualified(&copy),
                    quote_ident(&id.name)
                ),
                &format_args!("replacing {id} with its copy"),
            )?;
            info!(table = %id, "the table's copy replaces its replica table");
            self.install(id, sql);
        }
        Ok(())
    }

    /// The `CREATE INDEX` statements of the indexes you created on `id`'s replica table (its
    /// primary key is tidewater's and not among them).
    fn own_indexes(&self, id: &TableId) -> Result<Vec<String>> {
        let what = format!("reading the indexes of {id}");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sql FROM duckdb_indexes() WHERE database_name = current_database() \
                 AND schema_name = ? AND table_name = ? AND sql IS NOT NULL ORDER BY index_name",
            )
            .map_err(|e| Error::sink(format!("{what}: {e}")))?;
        let rows = stmt
            .query_map([&id.schema, &id.name], |r| r.get::<_, String>(0))
            .map_err(|e| Error::sink(format!("{what}: {e}")))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::sink(format!("{what}: {e}")))
    }

    /// After the commit that swapped copy tables in: your indexes of the replaced replica
    /// tables, created again one statement at a time. Outside the batch on purpose: an index
    /// that no longer fits the table (a column dropped by the change that caused the copy, a
    /// unique index the new rows break) is a warning to act on, not a stop of replication.
    pub(super) fn restore_indexes(&mut self) {
        for (id, statements) in std::mem::take(&mut self.indexes_to_restore) {
            for sql in statements {
                match exec(
                    &self.conn,
                    &sql,
                    &format_args!("creating an index of {id} again"),
                ) {
                    Ok(()) => {
                        info!(table = %id, index = %sql, "your index is created again on the table's new copy")
                    }
                    Err(e) => {
                        warn!(table = %id, index = %sql, error = %e, "your index of the table copied again could not be created again on it: create it by hand")
                    }
                }
            }
        }
    }
}
