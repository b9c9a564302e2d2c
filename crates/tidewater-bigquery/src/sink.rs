//! `BigQuerySink`: rows stream to a staging table as changes arrive; the log and the replica
//! follow in one transaction per batch.
//!
//! Real BigQuery refuses UPDATE, DELETE, MERGE and TRUNCATE on a table whose streaming buffer
//! holds rows (for 30 to 90 minutes after a `tabledata.insertAll`). So no table that receives
//! streamed rows is ever the target of DML, and no table that is the target of DML ever
//! receives streamed rows:
//!
//! - `<table>_staging` receives every streamed row, tagged with the run that appended it
//!   (`_metadata_run`), its transaction's ordinal (`_metadata_tx`) and sequence. It is only
//!   ever read; its day partitions expire by themselves (`tables::STAGING_EXPIRATION_MS`).
//!   Snapshot rows (the initial copy, and every re-copy) reach it through load jobs instead
//!   (`load`), tagged the same way: what the commit selects does not depend on how a row
//!   arrived, and a load job is atomic.
//! - `<table>_log`, the replica and `_tidewater_state` are written only by the commit
//!   transaction (INSERT … SELECT, MERGE, UPDATE), never streamed to.
//!
//! Exactly once, by a transaction ordinal and the run. The sink numbers source transactions:
//! the one after the stored position gets `tx_ordinal + 1` (`tx_ordinal` lives in
//! `_tidewater_state` next to the position). `write` appends rows to the staging tables
//! (insertAll, 500 rows a request, several in flight: `appends`); `commit` sends the rest
//! and waits for them, then runs one
//! multi-statement transaction (`merge`) that copies this run's staged rows with
//! `lo < _metadata_tx <= hi` into the logs, MERGEs the same rows into the replicas and sets the
//! state to (position, `hi`). Only then does `commit` return and the apply loop acknowledge
//! the source.
//!
//! - Crash before or during the appends, or after them but before the commit transaction:
//!   the state still says `lo`, and the log and replica hold nothing above it (they are
//!   written only by that transaction, all or nothing). The next run gets a new run id and
//!   the source replays from the stored position; its commits select only rows of the new
//!   run, so the dead run's staged rows are never read again (they expire with their
//!   partition). The log gets every change once, the replica applies it once: nothing needs
//!   deleting, so a restart never waits for a streaming buffer.
//! - Crash after the commit transaction, before the acknowledgement: the state holds the new
//!   position; the source replays only what is after it.
//! - A commit whose answer was lost is retried with the same request id; the script's guard
//!   (state still at `lo`) makes a second run fail without effect, and the sink then reads
//!   the state to learn that the first run committed.
//! - A load job: all of its rows or none, run once per upload, and an upload is never
//!   started again within a run (why, in `load`): its rows are selected like streamed ones.
//! - An insertAll retried after a lost answer: its rows carry insertIds (run, ordinal,
//!   sequence), so BigQuery drops the copies; if one slipped through (insertId de-duplication
//!   is best effort), the MERGE still takes one event per key and position, but the log would
//!   hold it twice — the same exposure as any insertAll user, and why the insertIds are
//!   deterministic.
//!
//! Schema changes. `_tidewater_tables` (`definitions`) holds the definition each replica was
//! last committed with, written by the commit transaction that applies the first rows under
//! it. BigQuery DDL cannot run inside that transaction, so the tables change around it:
//!
//! - before the commit, columns are added and widened (`evolve`), in the replica, log and
//!   staging tables. If the process dies before the commit, the committed definition is the
//!   old one and nothing committed wrote the new columns: the next start (`prepare`) brings
//!   the tables back to the committed definition (dropping the added replica columns, whose
//!   values are all NULL; a widened column stays wide, and takes the old values exactly), and
//!   the replayed stream brings the change again;
//! - after the commit, the replica drops the columns the committed definition no longer
//!   has. Dropping before it would lose values if the commit never happened (the replay
//!   needs them); if the process dies between the commit and the drop, the next start drops
//!   them. Until then the replica has an extra column the MERGE does not write. The log and
//!   staging tables keep dropped columns (history; and no column is ever dropped from a
//!   table that receives streamed rows);
//! - a change the stream does not carry (an added column: docs/schema-changes.md) arrives as
//!   a copy of the table at a later position, a TRUNCATE carrying the new definition and the
//!   copied rows in one source transaction: the same path, with the truncate's `DELETE`.
//!
//! `TIDEWATER_FAULT=after-log-append` (or `after-merge`) kills the process with SIGKILL at
//! that point of the next commit, `after-schema-change` after the DDL of the next schema
//! change: the crash tests use them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use serde_json::{Map, Value as Json};
use tidewater_core::stats::now_us;
use tidewater_core::{
    Change, ChangeKind, CopyProgress, Error, PipelineState, Position, Result, Sink, TableId,
    TableSchema, TxInfo,
};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use crate::appends::Appends;
use crate::client::{BqClient, Connection};
use crate::cost::BqCost;
use crate::definitions::{self, COPIES_TABLE, DEFINITIONS_TABLE, LAYOUTS_TABLE};
use crate::evolve::{ensure, IfMissing};
use crate::load::Loads;
use crate::merge::{commit_script, LogRange, StateUpdate};
use crate::prune::KeyBounds;
use crate::rows::{before_row, log_row, truncate_row, TxMeta};
use crate::state::{self, StoredState};
use crate::tables::{self, table_names, Place, TableNames, OLD_KEY_PREFIX, UNCHANGED_COLUMN};

/// Clock slack for the partition filter of the MERGE.
const PARTITION_SLACK_US: i64 = 10 * 60 * 1_000_000;

/// A run id: distinct for every start and every abandoned batch of this process (the clock
/// in µs, made strictly increasing).
fn new_run() -> String {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_us();
    let prev = LAST.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    let id = if prev >= now {
        LAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    } else {
        now
    };
    format!("{id:x}")
}

fn place(c: &Connection) -> Place<'_> {
    Place {
        project: &c.project,
        dataset: &c.dataset,
        location: c.location.as_deref(),
    }
}

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
    /// Whether `schema` is the definition committed in `_tidewater_tables`; if not, the next
    /// commit records it.
    recorded: bool,
    /// The replica may hold columns `schema` no longer has: dropped after the next commit.
    evolved: bool,
    /// What the commit copies from staging into the log (`LogRange::log_columns`).
    log_columns: Vec<String>,
    /// The staging table's columns, in its order: those of a load job's file.
    staging_fields: Vec<TableFieldSchema>,
    /// Whether the open batch wrote to it.
    touched: bool,
    truncated_at: Option<(i64, i64)>,
    /// The keys the open batch touched (keyed tables): the MERGE's pruning predicate.
    bounds: Option<KeyBounds>,
    /// Whether an update of the open batch left values unchanged (TOAST).
    unchanged: bool,
    /// Whether the open batch updates or deletes rows of this keyless table.
    multiset: bool,
}

impl TableState {
    /// Ready for the next batch.
    fn reset(&mut self) {
        self.touched = false;
        self.truncated_at = None;
        self.bounds = KeyBounds::new(&self.schema);
        self.unchanged = false;
        self.multiset = false;
    }
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
    LogAppended,
    Merged,
    SchemaChanged,
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
    /// Streamed rows on their way into staging.
    appends: Appends,
    /// Snapshot rows on their way into staging by load jobs.
    loads: Loads,
    /// Set anew by every `state()` (the start of a run) and `rollback()`.
    run: String,
    fault: Option<Fault>,
    cost: Arc<BqCost>,
    /// The committed definitions, read by `replicated_tables` for `prepare`.
    stored: Option<HashMap<TableId, TableSchema>>,
    /// Copy progress written in the open batch, recorded by its commit.
    progress: BTreeMap<TableId, CopyProgress>,
    /// Table layouts written in the open batch, recorded by its commit.
    layouts: BTreeMap<TableId, String>,
}

impl BigQuerySink {
    /// Connects, and creates the dataset and the state table when missing. Call from the
    /// runtime the sink then uses (its calls block on it from the apply thread).
    pub async fn connect(options: BigQueryOptions) -> Result<BigQuerySink> {
        let client = BqClient::connect(&options.connection).await?;
        client.ensure_dataset().await?;
        let at = place(&options.connection);
        client.create_table(tables::state_table(&at)).await?;
        client.create_table(tables::definitions_table(&at)).await?;
        client.create_table(tables::copies_table(&at)).await?;
        client.create_table(tables::layouts_table(&at)).await?;
        let fault = match std::env::var("TIDEWATER_FAULT").as_deref() {
            Ok("after-log-append") => Some(Fault::LogAppended),
            Ok("after-merge") => Some(Fault::Merged),
            Ok("after-schema-change") => Some(Fault::SchemaChanged),
            _ => None,
        };
        let client = Arc::new(client);
        Ok(BigQuerySink {
            rt: Handle::current(),
            loads: Loads::new(Handle::current(), client.clone()),
            appends: Appends::new(Handle::current(), client.clone()),
            client,
            options,
            tables: HashMap::new(),
            applied: 0,
            next_ordinal: 1,
            current: None,
            batch_started_us: now_us(),
            run: String::new(),
            fault,
            cost: Arc::default(),
            stored: None,
            progress: BTreeMap::new(),
            layouts: BTreeMap::new(),
        })
    }

    /// Bytes processed by the commits, for `/metrics`.
    pub fn cost(&self) -> Arc<BqCost> {
        self.cost.clone()
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Brings the replica, log and staging tables of `schema` to its columns (creating them
    /// when missing; see `evolve`). The replica drops columns `schema` lacks only when
    /// `drop_extra` (its definition is committed). Returns the log columns a commit copies,
    /// and the staging table's columns.
    fn ensure_tables(
        &self,
        schema: &TableSchema,
        drop_extra: bool,
    ) -> Result<(Vec<String>, Vec<TableFieldSchema>)> {
        tables::check_columns(schema)?;
        let at = place(&self.options.connection);
        let fix = self.resnapshot_fix();
        let client = &self.client;
        // Replica, then log, then staging: a widened staging column (where rows come from)
        // implies a widened log and replica (where they go), whatever the crash point.
        self.block_on(async {
            // A committed definition means the replica and log were created and hold rows;
            // staging holds nothing committed and expires by itself.
            let held = if drop_extra {
                IfMissing::Refuse
            } else {
                IfMissing::Create
            };
            let (replica, log) = (
                tables::replica_table(&at, schema),
                tables::log_table(&at, schema),
            );
            ensure(client, replica, drop_extra, held, &fix).await?;
            let log = ensure(client, log, false, held, &fix).await?;
            let staging = tables::staging_table(&at, schema);
            let staging = ensure(client, staging, false, IfMissing::Create, &fix).await?;
            // Both have every column of the definition; a crash between their DDL can leave
            // one with an added column the other lacks, which no committed row holds yet.
            let in_staging = |c: &TableFieldSchema| staging.iter().any(|s| s.name == c.name);
            let log = log.into_iter().filter(in_staging).map(|c| c.name).collect();
            Ok((log, staging))
        })
    }

    /// Creates the tables of a table new to the sink, or brings existing ones to `schema`
    /// (`recorded`: `schema` is the committed definition).
    fn prepare_table(&mut self, schema: &Arc<TableSchema>, recorded: bool) -> Result<()> {
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
        let (log_columns, staging_fields) = self.ensure_tables(schema, recorded)?;
        self.tables.insert(
            schema.id.clone(),
            TableState {
                schema: schema.clone(),
                names,
                recorded,
                evolved: false,
                log_columns,
                staging_fields,
                touched: false,
                truncated_at: None,
                bounds: KeyBounds::new(schema),
                unchanged: false,
                multiset: false,
            },
        );
        Ok(())
    }

    /// A table whose definition changed at the source (carried by the stream, or with its
    /// copy, `emptied`): its tables get the new columns now; the replica's dropped columns go
    /// after the commit that records the new definition ("Schema changes" above).
    fn evolve_table(&mut self, new: &Arc<TableSchema>, emptied: bool) -> Result<()> {
        let t = &self.tables[&new.id];
        let key_names = |s: &TableSchema| -> Vec<String> {
            s.key.iter().map(|&k| s.columns[k].name.clone()).collect()
        };
        let (old_key, new_key) = (key_names(&t.schema), key_names(new));
        if old_key != new_key && !emptied {
            return Err(Error::source_fatal(format!(
                "the primary key of {} changed from ({}) to ({}): tidewater cannot re-key a \
                 BigQuery replica in place",
                new.id,
                old_key.join(", "),
                new_key.join(", ")
            ))
            .with_fix(self.resnapshot_fix()));
        }
        let key_type = |s: &TableSchema| s.key.first().map(|&k| s.columns[k].ty.clone());
        let same_bounds = old_key == new_key && key_type(&t.schema) == key_type(new);
        // A load job's file has the staging columns it was started with.
        self.loads.complete()?;
        let (log_columns, staging_fields) = self.ensure_tables(new, false)?;
        self.inject(Fault::SchemaChanged);
        let t = self.tables.get_mut(&new.id).expect("known");
        info!(table = %new.id, "the source table's definition changed: the BigQuery tables follow");
        t.schema = new.clone();
        t.recorded = false;
        t.evolved = true;
        t.log_columns = log_columns;
        t.staging_fields = staging_fields;
        if !same_bounds {
            // Keys of the batch so far are of another column or type: no pruning this batch.
            t.bounds = None;
        }
        Ok(())
    }

    /// Whether `schema` is not the definition the sink writes its table with.
    fn new_definition(&self, schema: &Arc<TableSchema>) -> bool {
        match self.tables.get(&schema.id) {
            Some(t) => !Arc::ptr_eq(&t.schema, schema) && *t.schema != **schema,
            None => true,
        }
    }

    /// A table's state; a table new to the stream is created first, a changed one evolved.
    /// `emptied`: the table is being truncated (its copy follows), so its key may change.
    fn table_for(&mut self, schema: &Arc<TableSchema>, emptied: bool) -> Result<&mut TableState> {
        if self.new_definition(schema) {
            if self.tables.contains_key(&schema.id) {
                self.evolve_table(schema, emptied)?;
            } else {
                self.prepare_table(schema, false)?;
            }
        }
        Ok(self.tables.get_mut(&schema.id).expect("prepared"))
    }

    /// After a commit: what it recorded is committed, and replicas lose the columns their
    /// committed definition dropped. A failure here only delays the drop to the next start
    /// (`prepare` drops them then): the commit itself stands.
    fn after_commit(&mut self) {
        let mut evolved = Vec::new();
        for t in self.tables.values_mut() {
            t.recorded = true;
            if std::mem::take(&mut t.evolved) {
                evolved.push(t.schema.clone());
            }
        }
        let at = place(&self.options.connection);
        let fix = self.resnapshot_fix();
        for schema in evolved {
            let replica = tables::replica_table(&at, &schema);
            if let Err(e) =
                self.block_on(ensure(&self.client, replica, true, IfMissing::Refuse, &fix))
            {
                warn!(table = %schema.id, error = %e, "dropping columns the source dropped from the replica failed; retried at the next start");
            }
        }
    }

    /// The transaction being written, numbered when it first writes: after `begin_tx` (a
    /// copy's chunks share the stream's position with the transaction before them), or at
    /// another position than the one before.
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

    fn read_definitions(&self) -> Result<HashMap<TableId, TableSchema>> {
        let stored = self.block_on(definitions::read(&self.client, &self.options.pipeline))?;
        Ok(stored.into_iter().map(|s| (s.id.clone(), s)).collect())
    }

    /// Runs the commit script; a retried one that finds the state already at `hi` committed.
    /// Returns the bytes it processed (0 when only the retry's answer arrived).
    fn run_commit(&self, script: &str, hi: i64) -> Result<u64> {
        let request_id = format!("tidewater-{}-{hi}", self.run);
        let what = format!("committing the batch up to transaction {hi}");
        let result = self.block_on(self.client.query_answer(&what, script, Some(&request_id)));
        match result {
            Ok(answer) => Ok(answer.bytes_processed),
            Err(e) if crate::errors::is_state_moved(&e) => {
                let stored = self.block_on(state::read(&self.client, &self.options.pipeline))?;
                match stored {
                    Some(s) if s.tx_ordinal == hi => Ok(0),
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
        let mut stored = match self.stored.take() {
            Some(s) => s,
            None => self.read_definitions()?,
        };
        for t in tables {
            // The replica keeps its committed definition until the stream brings the change.
            match stored.remove(&t.id) {
                Some(def) => self.prepare_table(&Arc::new(def), true)?,
                None => self.prepare_table(t, false)?,
            }
        }
        Ok(())
    }

    fn replicated_tables(&mut self) -> Result<Option<BTreeSet<TableId>>> {
        let stored = self.read_definitions()?;
        let held = stored.keys().cloned().collect();
        self.stored = Some(stored);
        Ok(Some(held))
    }

    fn forget(&mut self, tables: &[TableId], drop_tables: bool) -> Result<()> {
        let client = &self.client;
        let script = definitions::forget(|t| client.qualified(t), &self.options.pipeline, tables);
        self.block_on(client.query("forgetting tables", &script, None))?;
        if drop_tables {
            for id in tables {
                let names = crate::tables::table_names(id);
                for table in [names.replica, names.log, names.staging] {
                    let sql = format!("DROP TABLE IF EXISTS {}", client.qualified(&table));
                    self.block_on(client.query(&format!("dropping {table}"), &sql, None))?;
                }
            }
        }
        Ok(())
    }

    fn replica_schema(&mut self, id: &TableId) -> Result<Option<TableSchema>> {
        let t = self.tables.get(id).filter(|t| t.recorded);
        Ok(t.map(|t| (*t.schema).clone()))
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
        if stored.position.is_none() {
            // A new snapshot: definitions left by an earlier one describe nothing held (the
            // snapshot's commit records them anew).
            self.stored = Some(HashMap::new());
        }
        // A new run: staged rows of an earlier run that never committed are never selected.
        self.run = new_run();
        info!(run = %self.run, tx_ordinal = self.applied, "resuming the BigQuery pipeline");
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

    fn begin_tx(&mut self, _tx: &TxInfo) -> Result<()> {
        self.current = None;
        Ok(())
    }

    fn changes_schema(&self, changes: &[Change]) -> bool {
        changes.iter().any(|c| self.new_definition(&c.table))
    }

    fn truncate_changes_schema(&self, tables: &[Arc<TableSchema>]) -> bool {
        tables.iter().any(|t| self.new_definition(t))
    }

    fn write(&mut self, tx: &TxInfo, first_sequence: i64, changes: Vec<Change>) -> Result<()> {
        let mut per_table: HashMap<String, Vec<TableDataInsertAllRequestRows>> = HashMap::new();
        // Snapshot rows go by load job (`load`), never by insertAll.
        let mut loaded: HashMap<TableId, Vec<Map<String, Json>>> = HashMap::new();
        for change in &changes {
            self.table_for(&change.table, false)?.touched = true;
        }
        let current = self.enter_tx(tx);
        let first = first_sequence + current.truncates;
        current.next_sequence = first + changes.len() as i64;
        let current = self.current.as_ref().expect("inside a transaction");
        let meta = TxMeta {
            ordinal: current.ordinal,
            position: &current.position.0,
            commit_time_us: current.commit_time_us,
            appended_us: now_us(),
            run: &self.run,
        };
        for (i, change) in changes.iter().enumerate() {
            let sequence = first + i as i64;
            let row = log_row(change, &meta, sequence)?;
            let t = self.tables.get_mut(&change.table.id).expect("prepared");
            t.unchanged |= row.json.get(UNCHANGED_COLUMN).is_some();
            if !t.schema.has_key() && matches!(change.kind, ChangeKind::Update | ChangeKind::Delete)
            {
                t.multiset = true;
                if let Some(before) = before_row(change, &meta, sequence)? {
                    let staged = per_table.entry(t.names.staging.clone()).or_default();
                    staged.push(before);
                }
            }
            if let Some(b) = &mut t.bounds {
                let old = format!("{OLD_KEY_PREFIX}{}", b.column());
                b.add(&row.json[b.column()]);
                b.add(&row.json[old.as_str()]);
            }
            match (change.kind, row.json) {
                (ChangeKind::Snapshot, Json::Object(row)) => {
                    loaded.entry(change.table.id.clone()).or_default().push(row);
                }
                (_, json) => {
                    let staged = per_table.entry(t.names.staging.clone()).or_default();
                    staged.push(TableDataInsertAllRequestRows { json, ..row });
                }
            }
        }
        for (staging, rows) in per_table {
            self.appends.add(&staging, rows)?;
        }
        for (id, rows) in loaded {
            let t = &self.tables[&id];
            let (staging, fields) = (&t.names.staging, &t.staging_fields);
            self.loads.add(&self.run, staging, fields, &rows)?;
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
        let mut staged = Vec::new();
        for schema in tables {
            let t = self.table_for(schema, true)?;
            t.touched = true;
            t.truncated_at = Some((ordinal, sequence + 1));
            staged.push(t.names.staging.clone());
        }
        let current = self.current.as_ref().expect("inside a transaction");
        let row = truncate_row(&self.tx_meta(current), sequence);
        for staging in staged {
            self.appends.add(&staging, [row.clone()])?;
        }
        Ok(())
    }

    fn commit(&mut self, position: &Position, last_commit_time_us: i64) -> Result<()> {
        self.loads.complete()?;
        self.appends.flush()?;
        self.inject(Fault::LogAppended);
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
                staging: self.client.qualified(&t.names.staging),
                log_columns: &t.log_columns,
                run: &self.run,
                lo,
                hi,
                truncated_at: t.truncated_at,
                appended_since_us: since,
                prune: t.bounds.as_ref().and_then(|b| b.predicate("t")),
                unchanged: t.unchanged,
                prune_previous: t.bounds.as_ref().and_then(|b| b.predicate("r")),
                multiset: t.multiset,
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
        let definitions_table = self.client.qualified(DEFINITIONS_TABLE);
        let mut definitions = Vec::new();
        for t in self.tables.values().filter(|t| !t.recorded) {
            let pipeline = &self.options.pipeline;
            definitions.extend(definitions::record(
                &definitions_table,
                pipeline,
                &t.schema,
            )?);
        }
        let copies_table = self.client.qualified(COPIES_TABLE);
        for p in self.progress.values() {
            let pipeline = &self.options.pipeline;
            definitions.extend(definitions::record_copy(&copies_table, pipeline, p)?);
        }
        let layouts_table = self.client.qualified(LAYOUTS_TABLE);
        for (id, layout) in &self.layouts {
            let pipeline = &self.options.pipeline;
            definitions.extend(definitions::record_layout(
                &layouts_table,
                pipeline,
                id,
                layout,
            )?);
        }
        let script = commit_script(&ranges, &definitions, &update);
        let tables_merged = ranges.len();
        let started = std::time::Instant::now();
        let bytes = self.run_commit(&script, hi)?;
        let merged = self.tables.values().filter(|t| t.touched);
        let names: Vec<String> = merged
            .map(|t| format!("{}.{}", c.dataset, t.names.replica))
            .collect();
        self.cost
            .record_commit(names.iter().map(String::as_str), bytes);
        debug!(
            transactions = hi - lo,
            tables = tables_merged,
            bytes_processed = bytes,
            millis = started.elapsed().as_millis() as u64,
            dataset = %c.dataset,
            "merged the batch into the replicas"
        );
        self.after_commit();
        self.inject(Fault::Merged);
        self.applied = hi;
        self.current = None;
        self.progress.clear();
        self.layouts.clear();
        self.tables.values_mut().for_each(TableState::reset);
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        // Staged rows of the abandoned batch are never selected: the ordinals are handed out
        // again, but only to rows of a new run, and commits select by run.
        self.run = new_run();
        self.appends.abandon();
        self.loads.abandon();
        self.current = None;
        self.progress.clear();
        self.layouts.clear();
        self.next_ordinal = self.applied + 1;
        self.tables.values_mut().for_each(TableState::reset);
        Ok(())
    }

    /// Chunks commit with their progress in `_tidewater_copies`; their rows are MERGEd like
    /// any change (the last event per key wins), which is the lenient apply a copy that is
    /// not consistent yet needs: an insert of a held key replaces it, an update of a missing
    /// key inserts its image, a delete of a missing key does nothing (`tidewater_core::copy`).
    fn copies_in_chunks(&self) -> bool {
        true
    }

    fn copy_progress(&mut self) -> Result<Vec<CopyProgress>> {
        self.block_on(definitions::read_copies(
            &self.client,
            &self.options.pipeline,
        ))
    }

    fn write_progress(&mut self, progress: &[CopyProgress]) -> Result<()> {
        for p in progress {
            self.progress.insert(p.table.clone(), p.clone());
        }
        Ok(())
    }

    fn table_layouts(&mut self) -> Result<Option<BTreeMap<TableId, String>>> {
        let pipeline = &self.options.pipeline;
        self.block_on(definitions::read_layouts(&self.client, pipeline))
            .map(Some)
    }

    fn write_layouts(&mut self, layouts: &[(TableId, String)]) -> Result<()> {
        self.layouts.extend(layouts.iter().cloned());
        Ok(())
    }

    fn resnapshot_fix(&self) -> String {
        format!(
            "drop the replicated tables, their _log tables and this pipeline's rows of {}, {}, \
             {} and {} in dataset {} (or set sink.dataset to a new dataset), and run `tidewater \
             run` again: it takes a new snapshot",
            tables::STATE_TABLE,
            DEFINITIONS_TABLE,
            COPIES_TABLE,
            LAYOUTS_TABLE,
            self.client.dataset
        )
    }
}
