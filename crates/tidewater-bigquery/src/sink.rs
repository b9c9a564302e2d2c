//! `BigQuerySink`: the log fills as changes arrive; the replica follows in one transaction
//! per batch.
//!
//! Exactly once, by a transaction ordinal. The sink numbers source transactions: the one after
//! the stored position gets `tx_ordinal + 1` (`tx_ordinal` lives in `_tidewater_state` next to
//! the position), and every log row carries its transaction's ordinal (`_metadata_tx`) and
//! sequence. `write` appends rows to `<table>_log` at once (insertAll, several requests in
//! flight); `commit` waits for them, then runs one multi-statement transaction (`merge`) that
//! MERGEs the log rows with `lo < _metadata_tx <= hi` into the replicas and sets the state to
//! (position, `hi`). Only then does `commit` return and the apply loop acknowledge the source.
//!
//! - Crash before or during the appends, or after them but before the MERGE: the state still
//!   says `lo`, so those log rows were never applied. At the next start `state()` deletes the
//!   log rows above the stored ordinal, then the source replays from the stored position and
//!   the rows are appended again: the log holds every change once, the replica gets it once.
//! - Crash after the MERGE transaction committed, before the acknowledgement: the state holds
//!   the new position; the source replays only what is after it.
//! - A commit whose answer was lost is retried with the same request id; the script's guard
//!   (state still at `lo`) makes a second run fail without effect, and the sink then reads
//!   the state to learn that the first run committed.
//!
//! `TIDEWATER_FAULT=after-log-append` (or `after-merge`) kills the process with SIGKILL at
//! that point of the next commit: the crash tests use it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use tidewater_core::stats::now_us;
use tidewater_core::{
    Change, Error, PipelineState, Position, Result, Sink, TableId, TableSchema, TxInfo,
};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::client::{BqClient, Connection};
use crate::merge::{commit_script, LogRange, StateUpdate};
use crate::rows::{log_row, truncate_row, TxMeta};
use crate::state::{self, StoredState};
use crate::tables::{self, table_names, TableNames};

/// Rows per insertAll request (BigQuery recommends about 500).
const APPEND_ROWS: usize = 500;
/// insertAll requests in flight before `write` waits for the oldest.
const MAX_APPENDS_IN_FLIGHT: usize = 8;
/// Clock slack for the partition filter of the MERGE.
const PARTITION_SLACK_US: i64 = 10 * 60 * 1_000_000;

#[derive(Debug, Clone)]
pub struct BigQueryOptions {
    pub connection: Connection,
    /// Key of this pipeline's row in `_tidewater_state`.
    pub pipeline: String,
    pub source_type: String,
}

struct TableState {
    schema: Arc<TableSchema>,
    names: TableNames,
    /// Whether the open batch wrote to it.
    touched: bool,
    truncated_at: Option<(i64, i64)>,
}

/// The source transaction being written.
struct CurrentTx {
    position: Position,
    commit_time_us: i64,
    ordinal: i64,
    next_sequence: i64,
    /// TRUNCATEs so far in the transaction: each takes a sequence number of its own (the
    /// apply loop numbers only the changes), so later changes move up by one per TRUNCATE.
    truncates: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    AfterLogAppend,
    AfterMerge,
}

pub struct BigQuerySink {
    rt: Handle,
    client: Arc<BqClient>,
    options: BigQueryOptions,
    tables: HashMap<TableId, TableState>,
    /// The ordinal in the committed state.
    applied: i64,
    /// The ordinal the next new transaction gets.
    next_ordinal: i64,
    current: Option<CurrentTx>,
    /// When the open batch started appending.
    batch_started_us: i64,
    appends: VecDeque<JoinHandle<Result<()>>>,
    /// Set anew by every `state()` (the start of a run).
    run: String,
    fault: Option<Fault>,
}

impl BigQuerySink {
    /// Connects, and creates the dataset and the state table when missing. Call from the
    /// runtime the sink then uses (its calls block on it from the apply thread).
    pub async fn connect(options: BigQueryOptions) -> Result<BigQuerySink> {
        let client = BqClient::connect(&options.connection).await?;
        client.ensure_dataset().await?;
        let c = &options.connection;
        client
            .create_table(tables::state_table(
                &c.project,
                &c.dataset,
                c.location.as_deref(),
            ))
            .await?;
        let fault = match std::env::var("TIDEWATER_FAULT").as_deref() {
            Ok("after-log-append") => Some(Fault::AfterLogAppend),
            Ok("after-merge") => Some(Fault::AfterMerge),
            _ => None,
        };
        Ok(BigQuerySink {
            rt: Handle::current(),
            client: Arc::new(client),
            options,
            tables: HashMap::new(),
            applied: 0,
            next_ordinal: 1,
            current: None,
            batch_started_us: now_us(),
            appends: VecDeque::new(),
            run: String::new(),
            fault,
        })
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Creates the replica and log of a table, or checks that existing ones have its columns.
    fn prepare_table(&mut self, schema: &Arc<TableSchema>) -> Result<()> {
        tables::check_columns(schema)?;
        let c = &self.options.connection;
        let loc = c.location.as_deref();
        let names = table_names(&schema.id);
        if let Some(other) = self
            .tables
            .iter()
            .find(|(id, t)| **id != schema.id && t.names == names)
        {
            return Err(Error::config(format!(
                "source tables {} and {} would both be BigQuery table {}: leave one out of \
                 source.tables",
                other.0, schema.id, names.replica
            )));
        }
        let wanted = [
            tables::replica_table(&c.project, &c.dataset, loc, schema),
            tables::log_table(&c.project, &c.dataset, loc, schema),
        ];
        for table in wanted {
            let name = table.table_id().clone();
            match self.block_on(self.client.table_columns(&name))? {
                None => self.block_on(self.client.create_table(table))?,
                Some(found) if found == tables::column_names(&table) => {}
                Some(found) => {
                    return Err(Error::sink(format!(
                        "BigQuery table {}.{name} does not have the columns tidewater writes \
                         (expected ({}), found ({})): the source table changed, or the table was \
                         changed by hand. The BigQuery sink cannot alter tables yet: drop the \
                         table, its _log table and this pipeline's row of {} to take a new snapshot",
                        c.dataset,
                        tables::column_names(&table).join(", "),
                        found.join(", "),
                        tables::STATE_TABLE
                    )))
                }
            }
        }
        self.tables.insert(
            schema.id.clone(),
            TableState {
                schema: schema.clone(),
                names,
                touched: false,
                truncated_at: None,
            },
        );
        Ok(())
    }

    /// A table's state; a table new to the stream is created first, a changed one refused.
    fn table_for(&mut self, schema: &Arc<TableSchema>) -> Result<&mut TableState> {
        match self.tables.get(&schema.id) {
            Some(t) if Arc::ptr_eq(&t.schema, schema) || *t.schema == **schema => {}
            Some(_) => {
                return Err(Error::source_fatal(format!(
                    "the columns of {} changed at the source: the BigQuery sink cannot alter its \
                     tables yet. Stop tidewater, drop the replica, its _log table and this \
                     pipeline's row of {} to take a new snapshot",
                    schema.id,
                    tables::STATE_TABLE
                )))
            }
            None => self.prepare_table(schema)?,
        }
        Ok(self.tables.get_mut(&schema.id).expect("prepared"))
    }

    fn enter_tx(&mut self, tx: &TxInfo) -> &mut CurrentTx {
        let same = matches!(&self.current, Some(c) if c.position == tx.position);
        if !same {
            self.current = Some(CurrentTx {
                position: tx.position.clone(),
                commit_time_us: tx.commit_time_us,
                ordinal: self.next_ordinal,
                next_sequence: 0,
                truncates: 0,
            });
            self.next_ordinal += 1;
        }
        self.current.as_mut().expect("just set")
    }

    /// Sends rows to a log table in the background; waits when too many requests are out.
    fn append(&mut self, log: &str, rows: Vec<TableDataInsertAllRequestRows>) -> Result<()> {
        for chunk in rows.chunks(APPEND_ROWS) {
            while self.appends.len() >= MAX_APPENDS_IN_FLIGHT {
                self.wait_oldest_append()?;
            }
            let (client, log, chunk) = (self.client.clone(), log.to_string(), chunk.to_vec());
            let task = self
                .rt
                .spawn(async move { client.insert_all(&log, chunk).await });
            self.appends.push_back(task);
        }
        Ok(())
    }

    fn wait_oldest_append(&mut self) -> Result<()> {
        let Some(task) = self.appends.pop_front() else {
            return Ok(());
        };
        self.block_on(task)
            .map_err(|e| Error::sink(format!("appending to a change log: {e}")))?
    }

    fn wait_appends(&mut self) -> Result<()> {
        while !self.appends.is_empty() {
            self.wait_oldest_append()?;
        }
        Ok(())
    }

    fn tx_meta<'a>(&'a self, c: &'a CurrentTx) -> TxMeta<'a> {
        TxMeta {
            ordinal: c.ordinal,
            position: &c.position.0,
            commit_time_us: c.commit_time_us,
            appended_us: now_us(),
            run: &self.run,
        }
    }

    fn inject(&self, at: Fault) {
        if self.fault == Some(at) {
            tracing::error!(fault = ?at, "TIDEWATER_FAULT: killing this process");
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            std::process::abort();
        }
    }

    /// Runs the commit script; a retried one that finds the state already at `hi` committed.
    fn run_commit(&self, script: &str, hi: i64) -> Result<()> {
        let request_id = format!("tidewater-{}-{hi}", self.run);
        let what = format!("committing the batch up to transaction {hi}");
        let result = self.block_on(self.client.query(&what, script, Some(&request_id)));
        match result {
            Ok(_) => Ok(()),
            Err(e) if crate::errors::is_state_moved(&e) => {
                let stored = self.block_on(state::read(&self.client, &self.options.pipeline))?;
                match stored {
                    Some(s) if s.tx_ordinal == hi => Ok(()),
                    _ => Err(Error::sink(format!(
                        "{what}: the pipeline state in {} moved under this process: is another \
                         `tidewater run` writing dataset {}? Stop it",
                        tables::STATE_TABLE,
                        self.client.dataset
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }
}

impl Sink for BigQuerySink {
    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()> {
        self.tables.clear();
        for t in tables {
            self.prepare_table(t)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<PipelineState> {
        let pipeline = &self.options.pipeline;
        let stored = match self.block_on(state::read(&self.client, pipeline))? {
            Some(s) => s,
            None => {
                let source = &self.options.source_type;
                self.block_on(state::insert(&self.client, pipeline, source))?;
                StoredState::default()
            }
        };
        self.applied = stored.tx_ordinal;
        self.next_ordinal = stored.tx_ordinal + 1;
        self.run = format!("{:x}", now_us());
        let logs: Vec<String> = self.tables.values().map(|t| t.names.log.clone()).collect();
        let removed =
            self.block_on(state::remove_uncommitted(&self.client, &logs, self.applied))?;
        if removed > 0 {
            info!(
                rows = removed,
                "removed change-log rows of a batch that never committed; they are sent again"
            );
        }
        Ok(PipelineState {
            position: stored.position.map(Position),
            // Acknowledgements and the replica's identity are not kept in BigQuery yet: the
            // position guard and the slot owner check are DuckDB's (docs/bigquery.md).
            ..PipelineState::default()
        })
    }

    fn begin(&mut self) -> Result<()> {
        self.current = None;
        self.batch_started_us = now_us();
        Ok(())
    }

    fn changes_schema(&self, changes: &[Change]) -> bool {
        changes.iter().any(|c| match self.tables.get(&c.table.id) {
            Some(t) => !Arc::ptr_eq(&t.schema, &c.table) && *t.schema != *c.table,
            None => true,
        })
    }

    fn write(&mut self, tx: &TxInfo, first_sequence: i64, changes: Vec<Change>) -> Result<()> {
        let mut per_log: HashMap<String, Vec<TableDataInsertAllRequestRows>> = HashMap::new();
        for change in &changes {
            self.table_for(&change.table)?.touched = true;
        }
        let current = self.enter_tx(tx);
        let first = first_sequence + current.truncates;
        current.next_sequence = first + changes.len() as i64;
        let current = self.current.as_ref().expect("inside a transaction");
        let meta = self.tx_meta(current);
        for (i, change) in changes.iter().enumerate() {
            let row = log_row(change, &meta, first + i as i64)?;
            let log = &self.tables[&change.table.id].names.log;
            per_log.entry(log.clone()).or_default().push(row);
        }
        for (log, rows) in per_log {
            self.append(&log, rows)?;
        }
        Ok(())
    }

    fn truncate(&mut self, tx: &TxInfo, tables: &[Arc<TableSchema>]) -> Result<()> {
        let (ordinal, sequence) = {
            let c = self.enter_tx(tx);
            let sequence = c.next_sequence;
            c.next_sequence += 1;
            c.truncates += 1;
            (c.ordinal, sequence)
        };
        let mut logs = Vec::new();
        for schema in tables {
            let t = self.table_for(schema)?;
            t.touched = true;
            t.truncated_at = Some((ordinal, sequence + 1));
            logs.push(t.names.log.clone());
        }
        let current = self.current.as_ref().expect("inside a transaction");
        let row = truncate_row(&self.tx_meta(current), sequence);
        for log in logs {
            self.append(&log, vec![row.clone()])?;
        }
        Ok(())
    }

    fn commit(&mut self, position: &Position, last_commit_time_us: i64) -> Result<()> {
        self.wait_appends()?;
        self.inject(Fault::AfterLogAppend);
        let (lo, hi) = (self.applied, self.next_ordinal - 1);
        let c = &self.options.connection;
        let since = self.batch_started_us - PARTITION_SLACK_US;
        let ranges: Vec<LogRange> = self
            .tables
            .values()
            .filter(|t| t.touched)
            .map(|t| LogRange {
                schema: &t.schema,
                replica: self.client.qualified(&t.names.replica),
                log: self.client.qualified(&t.names.log),
                lo,
                hi,
                truncated_at: t.truncated_at,
                appended_since_us: since,
            })
            .collect();
        let state_table = self.client.qualified(tables::STATE_TABLE);
        let update = StateUpdate {
            table: &state_table,
            pipeline: &self.options.pipeline,
            lo,
            hi,
            position: &position.0,
            last_source_commit_us: last_commit_time_us,
        };
        let script = commit_script(&ranges, &update);
        let tables_merged = ranges.len();
        let started = std::time::Instant::now();
        self.run_commit(&script, hi)?;
        debug!(
            transactions = hi - lo,
            tables = tables_merged,
            millis = started.elapsed().as_millis() as u64,
            dataset = %c.dataset,
            "merged the batch into the replicas"
        );
        self.inject(Fault::AfterMerge);
        self.applied = hi;
        self.current = None;
        for t in self.tables.values_mut() {
            t.touched = false;
            t.truncated_at = None;
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        // Appended rows stay in the logs above the stored ordinal; the next `state()` removes
        // them before anything is sent again.
        for task in self.appends.drain(..) {
            task.abort();
        }
        self.current = None;
        self.next_ordinal = self.applied + 1;
        for t in self.tables.values_mut() {
            t.touched = false;
            t.truncated_at = None;
        }
        Ok(())
    }

    fn resnapshot_fix(&self) -> String {
        format!(
            "drop the replicated tables, their _log tables and this pipeline's row of {} in \
             dataset {} (or set sink.dataset to a new dataset), and run `tidewater run` again: \
             it takes a new snapshot",
            tables::STATE_TABLE,
            self.client.dataset
        )
    }
}
