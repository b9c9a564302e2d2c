//! `DuckDbSink`: applies batches of source transactions to a DuckDB file.
//!
//! Changes are buffered per table. Inserts of a table with nothing staged go straight into its
//! replica and log (`direct`); other changes are appended into the temp staging table of the
//! table's shape (one for all tables with as many columns and key columns, `table`) and moved
//! with two set-based statements per table; the rare rest goes row by row (`rowwise`). The
//! batch, its log rows and the new source position commit in one DuckDB transaction.
//!
//! Per batch, a table the batch did not touch costs nothing, and a touched one its appends
//! plus (if it staged) a `DELETE` and an `INSERT`; each staging table is cleared once at the
//! commit, after every table's rows were moved (a table merged in the middle of the batch
//! clears its own rows at once, so nothing is moved twice). The trace log's `COMMIT` line
//! counts the batch's statements and appends.
//!
//! Transaction ordinals (`_metadata_tx`): each source transaction that writes anything gets
//! the committed ordinal + 1, + 2, ... in the order the apply loop hands them over, which is
//! the source's commit order. The last one is stored with the position in the batch's own
//! DuckDB transaction (`_tidewater.pipeline.tx_ordinal`), so after a crash the source replays
//! from the stored position and the replayed transactions get the same ordinals again: the
//! ordinals in the logs have no gaps and no repeats.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use duckdb::Connection;
use tidewater_core::apply::change_bytes;
use tidewater_core::time::format_utc_micros;
use tidewater_core::{
    Change, ChangeKind, CopyProgress, Error, PartialTx, PipelineState, Position, Result, Sink,
    TableId, TableSchema, TxInfo, Value,
};
use tracing::debug;

use crate::catalog::Catalog;
use crate::checkpoint::Checkpoints;
use crate::config::DuckDbOptions;
use crate::feed::Feed;
use crate::guard;
use crate::merge;
use crate::order::log_position;
use crate::plans::Plans;
use crate::primary_keys::PrimaryKeys;
use crate::rowwise;
use crate::schema::{evolve_table, prepare_table, prepare_tables};
use crate::sql::{exec, in_transaction, run_cached};
use crate::staged::{Pending, TableState};
use crate::state;

mod appending;
mod copying;
mod recopy;

/// Staged rows (or estimated bytes, `change_bytes`) per table after which they are moved into
/// the replica mid-batch, bounding the memory a large transaction needs.
const STAGE_FLUSH_ROWS: usize = 100_000;
const STAGE_FLUSH_BYTES: usize = 32 << 20;
/// Changes buffered per table before they are appended to its staging table in one go
/// (one insert per buffer, not per change: transactions interleave tables).
const APPEND_ROWS: usize = 4096;

/// What a batch ran, for the trace log: statements (the commit's own three included), Arrow
/// batches appended, and changes applied row by row (`rowwise`, a few statements each).
#[derive(Default)]
struct Counts {
    statements: u64,
    appends: u64,
    row_changes: u64,
}

/// The source transaction being written.
#[derive(Clone)]
struct CurrentTx {
    position: Position,
    commit_time_us: i64,
    /// The position as the log stores it, and the formatted commit time.
    log_position: Arc<str>,
    commit_ts: Arc<str>,
    /// The sink's ordinal of the transaction (`_metadata_tx`).
    ordinal: i64,
}

pub struct DuckDbSink {
    conn: Connection,
    /// Inserts rows into `conn`'s tables by cached statements (`feed.rs`).
    feed: Feed,
    options: DuckDbOptions,
    tables: HashMap<TableId, TableState>,
    in_batch: bool,
    next_seq: i64,
    current_tx: Option<CurrentTx>,
    /// The transaction ordinal stored with the committed position.
    committed_ordinal: i64,
    /// The ordinal of the last transaction written in the open batch.
    last_ordinal: i64,
    next_txseq: i64,
    batch_transactions: u64,
    batch_changes: u64,
    /// Estimated bytes of the batch's values (`tidewater_core::apply::change_bytes`).
    batch_bytes: u64,
    /// An idle position to store with the open batch instead of its last transaction's.
    batch_ack: Option<Position>,
    /// Index for the staging table of the next table prepared mid-stream.
    next_index: usize,
    /// Keyed tables whose chunked copy is not consistent yet (see `TableState::lenient`), as
    /// the open batch leaves them.
    lenient: HashSet<TableId>,
    /// Lenient tables whose chunk rows are appended as they are unless a streamed change
    /// touched their key, with the keys touched (`TableState::fresh_copy`). Only ever
    /// narrowed after it is set, and emptied when a batch is abandoned.
    fresh_copies: HashMap<TableId, HashSet<Vec<u8>>>,
    checkpoints: Checkpoints,
    /// DuckDB's memory limit, raised when a batch fails on it under `auto` (`crate::memory`).
    memory: crate::memory::Limit,
    /// The replicas' sizes the cached merge plans were made for (`crate::plans`).
    plans: Plans,
    /// Replicas whose `PRIMARY KEY` waits for them to grow (`crate::primary_keys`).
    primary_keys: PrimaryKeys,
    counts: Counts,
    /// A transaction split into pieces whose first pieces are committed, with its ordinal:
    /// its rest continues that ordinal (`large_transaction = "split"`). A commit keeps it only
    /// when the apply loop records it again (`record_partial`).
    continuing: Option<(PartialTx, i64)>,
    /// The open batch has entered the continuing transaction: a later transaction at the
    /// same position (a copy's chunk carries the stream's position) is another one.
    continued: bool,
    /// The open batch ends inside its last transaction, after these changes.
    batch_partial: Option<PartialTx>,
    /// Tables truncated in the open batch whose rows are not removed yet, with the definition
    /// the truncate carries: a copy that begins next fills a copy table instead
    /// (`sink/recopy.rs`).
    pending_truncates: HashMap<TableId, Arc<TableSchema>>,
    /// Your own indexes of replica tables replaced in the open batch, to create again on
    /// them once it commits (`sink/recopy.rs`).
    indexes_to_restore: Vec<(TableId, Vec<String>)>,
}

impl DuckDbSink {
    pub fn open(options: DuckDbOptions) -> Result<DuckDbSink> {
        let conn = crate::storage::open(&options.path, &options.storage_version)?;
        exec(
            &conn,
            state::STATE_DDL,
            &"creating the _tidewater state schema",
        )?;
        exec(&conn, guard::GUARD_DDL, &"creating the replica identity")?;
        exec(
            &conn,
            state::ADDED_COLUMNS_DDL,
            &"adding state columns of later versions",
        )?;
        let memory = crate::settings::apply(&conn, &options)?;
        crate::upgrade::upgrade_layout(&conn)?;
        let committed_ordinal = state::read_tx_ordinal(&conn, &options.pipeline)?;
        let continuing = state::read_partial(&conn, &options.pipeline)?;
        let feed = Feed::register(&conn)?;
        let primary_keys = PrimaryKeys::new(options.primary_key, options.primary_key_rows);
        Ok(DuckDbSink {
            memory,
            feed,
            continuing,
            continued: false,
            batch_partial: None,
            pending_truncates: HashMap::new(),
            indexes_to_restore: Vec::new(),
            conn,
            tables: HashMap::new(),
            next_index: 0,
            in_batch: false,
            next_seq: 0,
            current_tx: None,
            committed_ordinal,
            last_ordinal: committed_ordinal,
            next_txseq: 0,
            batch_transactions: 0,
            batch_changes: 0,
            batch_bytes: 0,
            batch_ack: None,
            lenient: HashSet::new(),
            fresh_copies: HashMap::new(),
            checkpoints: Checkpoints::new(
                &options.path,
                &options.checkpoint_threshold,
                options.checkpoint_when_idle,
                options.log_tables,
            ),
            plans: Plans::new(primary_keys.look_rows()),
            primary_keys,
            counts: Counts::default(),
            options,
        })
    }

    /// Whether `table` is not (yet) a replica table of this definition.
    fn new_definition(&self, table: &Arc<TableSchema>) -> bool {
        match self.tables.get(&table.id) {
            Some(t) => !Arc::ptr_eq(&t.sql.schema, table) && *t.sql.schema != **table,
            None => true,
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The memory limit the sink runs with, for tests that start it low (`crate::memory`).
    #[cfg(test)]
    pub(crate) fn memory_limit_mut(&mut self) -> &mut crate::memory::Limit {
        &mut self.memory
    }

    /// Brings the replica to the schema a change was decoded with: a table that appeared at
    /// the source is created, a changed one altered, inside the open batch (so the change of
    /// schema commits or rolls back with the data that follows it).
    fn ensure_schema(&mut self, table: &Arc<TableSchema>) -> Result<()> {
        self.ensure_schema_of(table, false)
    }

    /// `ensure_schema`; with `emptied`, the caller removes every replica row next (a table
    /// copied again starts with a truncate), so a changed key may recreate the replica.
    fn ensure_schema_of(&mut self, table: &Arc<TableSchema>, emptied: bool) -> Result<()> {
        // (Checked per change: the emptiness test keeps the common case to one load.)
        if !self.pending_truncates.is_empty() && self.pending_truncates.contains_key(&table.id) {
            self.settle_truncate(&table.id)?;
        }
        if let Some(t) = self.tables.get_mut(&table.id) {
            if Arc::ptr_eq(&t.sql.schema, table) {
                return Ok(());
            }
            if *t.sql.schema == **table {
                t.sql.schema = table.clone();
                return Ok(());
            }
        }
        let id = table.id.clone();
        let log = self.options.log_tables;
        let sql = if self.tables.contains_key(&id) {
            self.merge(&id)?;
            let t = &self.tables[&id].sql;
            let (old, index, target) = (t.schema.clone(), t.index, t.replica.clone());
            let emptied = emptied.then_some(self.options.key_at_creation());
            evolve_table(
                &self.conn,
                &old,
                table.clone(),
                index,
                log,
                emptied,
                &target,
            )?
        } else {
            let index = self.next_index;
            self.next_index += 1;
            let mut catalog = Catalog::read(&self.conn)?;
            let sql = prepare_table(
                &self.conn,
                &mut catalog,
                table.clone(),
                index,
                &self.options,
            )?;
            crate::log_restart::defer(&self.conn, &mut catalog, &sql, self.options.log_tables)?;
            sql
        };
        self.install(id, sql);
        Ok(())
    }

    fn table(&mut self, id: &TableId) -> Result<&mut TableState> {
        self.tables
            .get_mut(id)
            .ok_or_else(|| Error::sink(format!("change for table {id}, which was never prepared")))
    }

    /// Called before each piece of a transaction is written. A transaction new to the batch
    /// gets the next ordinal when it first writes: after `begin_tx` (a copy's chunks carry the
    /// stream's position, and may share a commit time), or at another position or commit
    /// time than the one before.
    fn enter_tx(&mut self, tx: &TxInfo, first_sequence: i64) {
        let same = matches!(&self.current_tx, Some(c)
            if c.position == tx.position && c.commit_time_us == tx.commit_time_us);
        if !same {
            // The rest of a transaction whose first pieces are committed keeps its ordinal.
            let ordinal = match &self.continuing {
                Some((p, ordinal)) if p.position == tx.position && !self.continued => {
                    self.continued = true;
                    *ordinal
                }
                _ => {
                    self.last_ordinal += 1;
                    self.batch_transactions += 1;
                    self.last_ordinal
                }
            };
            self.current_tx = Some(CurrentTx {
                position: tx.position.clone(),
                commit_time_us: tx.commit_time_us,
                log_position: log_position(&self.options.source_type, &tx.position).into(),
                commit_ts: format_utc_micros(tx.commit_time_us).into(),
                ordinal,
            });
        }
        self.next_txseq = first_sequence;
    }

    fn current_tx(&self) -> CurrentTx {
        self.current_tx.clone().expect("inside a transaction")
    }

    /// Moves one table's buffered and staged rows into its log and replica, and removes them
    /// from staging.
    fn merge(&mut self, id: &TableId) -> Result<()> {
        if self.merge_rows(id)? {
            let t = &self.tables[id];
            run_cached(
                &self.conn,
                &t.sql.clear_stage,
                &format_args!("clearing staging of {id}"),
            )?;
            self.counts.statements += 1;
        }
        Ok(())
    }

    /// Moves one table's buffered and staged rows into its log and replica, leaving them in
    /// staging; `true` when there were any (the caller clears them before the table stages
    /// again).
    fn merge_rows(&mut self, id: &TableId) -> Result<bool> {
        self.append_pending(id, true)?;
        let conn = &self.conn;
        let t = self.tables.get_mut(id).expect("prepared table");
        if t.staged == 0 {
            return Ok(false);
        }
        self.counts.statements += merge::apply_staged(conn, t, &mut self.plans)?;
        debug!(table = %id, rows = t.staged, "merged staged changes");
        t.reset_staging();
        Ok(true)
    }

    /// Buffers a change of the open transaction for its table's staging table.
    fn stage(&mut self, change: Change) -> Result<()> {
        self.ensure_schema(&change.table)?;
        let tx = self.current_tx();
        // The schema, not its id: a reference count, where the id's two strings would be
        // copied for every row.
        let table = Arc::clone(&change.table);
        let id = &table.id;
        let pending = Pending {
            seq: self.next_seq,
            txseq: self.next_txseq,
            tx: tx.ordinal,
            position: tx.log_position,
            commit_ts: tx.commit_ts,
            change,
        };
        self.next_seq += 1;
        self.next_txseq += 1;
        let t = self.table(id)?;
        t.pending.push(pending);
        if t.pending.len() >= APPEND_ROWS {
            self.append_pending(id, false)?;
        }
        Ok(())
    }

    /// A change set-based staging cannot express: flush what is staged, then apply it alone.
    fn apply_alone(&mut self, change: &Change) -> Result<()> {
        self.ensure_schema(&change.table)?;
        let id = change.table.id.clone();
        self.merge(&id)?;
        let tx = self.current_tx();
        let meta = rowwise::LogMeta {
            position: &tx.log_position,
            commit_ts: &tx.commit_ts,
            txseq: self.next_txseq,
            tx: tx.ordinal,
        };
        let t = self.table(&id)?;
        let (lenient, target) = (t.lenient, t.sql.replica.clone());
        let log = self.options.log_tables;
        rowwise::apply(&self.conn, change, &target, &meta, log, lenient)?;
        self.counts.row_changes += 1;
        self.next_seq += 1;
        self.next_txseq += 1;
        self.table(&id)?.changes += 1;
        Ok(())
    }
}

/// The batch's steps behind the `Sink` methods, which pass their errors through
/// `memory_checked`.
impl DuckDbSink {
    /// `r`, with DuckDB's memory limit raised and the error made retryable when the limit
    /// failed it under `memory_limit = "auto"` (`crate::memory`).
    fn memory_checked<T>(&mut self, r: Result<T>) -> Result<T> {
        r.map_err(|e| self.memory.on_error(e))
    }

    fn begin_batch(&mut self) -> Result<()> {
        self.memory.settle(&self.conn)?;
        exec(&self.conn, "BEGIN TRANSACTION", &"starting a batch")?;
        self.in_batch = true;
        let tables = &self.tables;
        if self
            .primary_keys
            .declare_due(&self.conn, &mut self.plans, tables)?
        {
            self.conn.flush_prepared_statement_cache();
            self.plans.forget();
        }
        self.last_ordinal = self.committed_ordinal;
        self.next_seq = 0;
        self.batch_transactions = 0;
        self.batch_changes = 0;
        self.batch_bytes = 0;
        self.batch_ack = None;
        self.current_tx = None;
        self.continued = false;
        self.counts = Counts::default();
        Ok(())
    }

    fn write_changes(
        &mut self,
        tx: &TxInfo,
        first_sequence: i64,
        changes: Vec<Change>,
    ) -> Result<()> {
        if changes.is_empty() {
            // Nothing to log: no ordinal either (every ordinal has log rows).
            return Ok(());
        }
        self.enter_tx(tx, first_sequence);
        self.batch_changes += changes.len() as u64;
        self.batch_bytes += changes.iter().map(change_bytes).sum::<usize>() as u64;
        for change in changes {
            if change.kind != ChangeKind::Snapshot {
                self.touch_fresh_copy(&change);
            }
            if needs_row_path(&change) {
                self.apply_alone(&change)?;
            } else {
                self.stage(change)?;
            }
        }
        Ok(())
    }

    fn commit_batch(&mut self, position: &Position, last_commit_time_us: i64) -> Result<()> {
        self.settle_truncates()?;
        // Every table's staged rows are moved, then each shared staging table is cleared once.
        let ids: Vec<TableId> = self.tables.keys().cloned().collect();
        self.append_all_pending(&ids)?;
        let mut shapes = BTreeSet::new();
        for id in &ids {
            if self.merge_rows(id)? {
                shapes.insert(self.tables[id].sql.clear_shape.clone());
            }
        }
        for clear in &shapes {
            run_cached(&self.conn, clear, &"clearing staging")?;
        }
        self.counts.statements += shapes.len() as u64;
        let counts: Vec<(&TableId, u64)> = self
            .tables
            .iter()
            .filter(|(_, t)| t.changes > 0)
            .map(|(id, t)| (id, t.changes))
            .collect();
        let touched = counts.len();
        state::add_table_changes(&self.conn, &counts)?;
        for t in self.tables.values_mut() {
            t.changes = 0;
        }
        let acked = self.batch_ack.take();
        // The transaction's ordinal is the one it got when it was first written.
        let partial = self.batch_partial.take().map(|p| {
            let ordinal = match &self.continuing {
                Some((c, ordinal)) if c.position == p.position => *ordinal,
                _ => self
                    .current_tx
                    .as_ref()
                    .map_or(self.last_ordinal, |c| c.ordinal),
            };
            (p, ordinal)
        });
        state::write_position(
            &self.conn,
            &self.options.pipeline,
            &self.options.source_type,
            &state::Committed {
                position,
                acked: acked.as_ref().unwrap_or(position),
                tx_ordinal: self.last_ordinal,
                last_source_commit: &format_utc_micros(last_commit_time_us),
                transactions: self.batch_transactions,
                changes: self.batch_changes,
                partial: partial.as_ref(),
            },
        )?;
        self.checkpoints
            .before_commit(&self.conn, self.batch_bytes, self.batch_changes)?;
        let started = std::time::Instant::now();
        let committed = exec(
            &self.conn,
            "COMMIT",
            &format_args!("committing the batch up to {position}"),
        );
        // DuckDB ends the transaction either way: a COMMIT that fails (a full disk) rolls it
        // back, and a ROLLBACK after it would only fail with "no transaction is active".
        self.in_batch = false;
        committed?;
        self.plans.note_rows(self.batch_changes);
        self.restore_indexes();
        self.committed_ordinal = self.last_ordinal;
        self.continuing = partial;
        let c = std::mem::take(&mut self.counts);
        tracing::trace!(
            micros = started.elapsed().as_micros() as u64,
            tables = touched,
            statements = c.statements + 3,
            appends = c.appends,
            row_changes = c.row_changes,
            "COMMIT"
        );
        Ok(())
    }
}

/// Changes that the set-based path cannot apply: an update whose unchanged (TOAST) values
/// must come from the replica, and updates/deletes of keyless tables (matched by all columns).
fn needs_row_path(change: &Change) -> bool {
    match change.kind {
        ChangeKind::Snapshot | ChangeKind::Insert => false,
        ChangeKind::Update | ChangeKind::Delete => {
            !change.table.has_key() || change.row.iter().any(|v| matches!(v, Value::Unchanged))
        }
    }
}

impl Sink for DuckDbSink {
    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()> {
        // Staging tables are recreated below: cached plans of the old ones must go.
        self.conn.flush_prepared_statement_cache();
        self.plans.forget();
        self.primary_keys.forget_all();
        // Per table: its merge statements and its inserts (`feed.rs`: replica, `_log`).
        self.conn
            .set_prepared_statement_cache_capacity(16 + 9 * tables.len());
        let partial = self.continuing.is_some();
        let (prepared, restarted) = in_transaction(&self.conn, "preparing tables", || {
            prepare_tables(&self.conn, tables, &self.options, partial)
        })?;
        if let Some(ordinal) = restarted {
            self.committed_ordinal = ordinal;
            self.last_ordinal = ordinal;
        }
        self.next_index = prepared.len();
        self.tables = prepared
            .into_iter()
            .map(|sql| {
                let id = sql.schema.id.clone();
                let mut state = TableState::new(sql);
                state.lenient = self.lenient.contains(&id) && state.sql.schema.has_key();
                state.fresh_copy = self.fresh_copies.contains_key(&id);
                (id, state)
            })
            .collect();
        Ok(())
    }

    fn changes_schema(&self, changes: &[Change]) -> bool {
        let mut last: Option<&Arc<TableSchema>> = None;
        for c in changes {
            if last.is_some_and(|l| Arc::ptr_eq(l, &c.table)) {
                continue;
            }
            last = Some(&c.table);
            if self.new_definition(&c.table) {
                return true;
            }
        }
        false
    }

    fn truncate_changes_schema(&self, tables: &[Arc<TableSchema>]) -> bool {
        tables.iter().any(|t| self.new_definition(t))
    }

    fn copies_in_chunks(&self) -> bool {
        true
    }

    fn copy_progress(&mut self) -> Result<Vec<CopyProgress>> {
        let progress = state::read_copies(&self.conn)?;
        self.lenient.clear();
        self.set_lenient(&progress);
        Ok(progress)
    }

    fn copies_beside(&self) -> Vec<TableId> {
        self.copy_tables_in_use()
    }

    fn write_progress(&mut self, progress: &[CopyProgress]) -> Result<()> {
        self.start_copy_tables(progress)?;
        state::write_copies(&self.conn, progress)?;
        // Changes buffered under one mode are applied under it before the mode changes (a
        // chunk's rows are upserts, not appends, even if the table becomes consistent in the
        // same batch).
        for p in progress {
            if self
                .tables
                .get(&p.table)
                .is_some_and(|t| t.lenient == p.consistent)
            {
                self.merge(&p.table)?;
            }
        }
        self.swap_in_copies(progress)?;
        self.set_lenient(progress);
        self.mark_fresh_copies(progress)
    }

    fn replicated_tables(&mut self) -> Result<Option<BTreeSet<TableId>>> {
        state::replicated_tables(&self.conn).map(Some)
    }

    fn forget(&mut self, tables: &[TableId], drop_tables: bool) -> Result<()> {
        crate::forget::forget(&self.conn, tables, drop_tables)
    }

    fn table_layouts(&mut self) -> Result<Option<BTreeMap<TableId, String>>> {
        crate::layouts::read(&self.conn).map(Some)
    }

    fn write_layouts(&mut self, layouts: &[(TableId, String)]) -> Result<()> {
        crate::layouts::write(&self.conn, layouts)
    }

    fn replica_schema(&mut self, id: &TableId) -> Result<Option<TableSchema>> {
        Ok(self.tables.get(id).map(|t| (*t.sql.schema).clone()))
    }

    fn state(&mut self) -> Result<PipelineState> {
        self.committed_ordinal = state::read_tx_ordinal(&self.conn, &self.options.pipeline)?;
        self.last_ordinal = self.committed_ordinal;
        self.continuing = state::read_partial(&self.conn, &self.options.pipeline)?;
        let partial = self.continuing.as_ref().map(|(p, _)| p.clone());
        Ok(PipelineState {
            position: state::read_position(&self.conn, &self.options.pipeline)?,
            acknowledged: guard::acknowledged(&self.conn, &self.options.pipeline)?,
            replica_id: Some(guard::replica_id(&self.conn)?),
            partial,
        })
    }

    fn splits_transactions(&self) -> bool {
        true
    }

    fn record_partial(&mut self, partial: &PartialTx) -> Result<()> {
        if !self.in_batch {
            return Err(Error::sink(
                "internal: a piece of a transaction outside a batch",
            ));
        }
        self.batch_partial = Some(partial.clone());
        Ok(())
    }

    fn begin_tx(&mut self, _tx: &TxInfo) -> Result<()> {
        self.current_tx = None;
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        let r = self.begin_batch();
        self.memory_checked(r)
    }

    fn write(&mut self, tx: &TxInfo, first_sequence: i64, changes: Vec<Change>) -> Result<()> {
        let r = self.write_changes(tx, first_sequence, changes);
        self.memory_checked(r)
    }

    fn truncate(&mut self, tx: &TxInfo, tables: &[Arc<TableSchema>]) -> Result<()> {
        let r = self.truncate_tables(tx, tables);
        self.memory_checked(r)
    }

    fn commit(&mut self, position: &Position, last_commit_time_us: i64) -> Result<()> {
        let r = self.commit_batch(position, last_commit_time_us);
        self.memory_checked(r)
    }

    fn record_ack(&mut self, position: &Position) -> Result<()> {
        if self.in_batch {
            self.batch_ack = Some(position.clone());
            return Ok(());
        }
        guard::record_idle(&self.conn, &self.options.pipeline, position)
    }

    fn rollback(&mut self) -> Result<()> {
        self.pending_truncates.clear();
        self.indexes_to_restore.clear();
        self.primary_keys.forget_all();
        self.batch_ack = None;
        self.batch_partial = None;
        self.continued = false;
        if self.in_batch {
            self.in_batch = false;
            exec(&self.conn, "ROLLBACK", &"abandoning the open batch")?;
        }
        for t in self.tables.values_mut() {
            t.pending.clear();
            t.reset_staging();
            t.changes = 0;
        }
        // Progress of the abandoned batch is gone too.
        let progress = state::read_copies(&self.conn)?;
        self.lenient.clear();
        self.set_lenient(&progress);
        for t in self.tables.values_mut() {
            t.fresh_copy = false;
        }
        self.fresh_copies.clear();
        // The abandoned transactions come again from the source, with the same ordinals.
        self.last_ordinal = self.committed_ordinal;
        self.current_tx = None;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        crate::checkpoint::close(&self.conn, &self.options.path)
    }

    fn idle(&mut self) -> Result<()> {
        if self.in_batch {
            return Ok(());
        }
        let r = self.checkpoints.idle(&self.conn);
        self.memory_checked(r)
    }

    fn resnapshot_fix(&self) -> String {
        crate::errors::resnapshot_fix(&self.options.path)
    }
}
