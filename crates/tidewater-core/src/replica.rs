//! The read side of a destination: what `status`, live query (`tidewater query`,
//! `POST /query`), the PostgreSQL-wire SQL endpoint, `verify` and `/metrics` need from a
//! replica,
//! without naming its driver. The write side is `Sink`; a sink crate implements both, and
//! the runtime's registry is the only place that picks the implementation.
//!
//! A query result is text: every value as the destination renders it, with each column's
//! neutral `ColumnKind` so an endpoint can choose its own format (JSON numbers, PostgreSQL
//! type OIDs) without knowing the destination's type system.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, TableSchema, Value};

/// What a replica can do beyond reporting its status. A plain struct: each reader asks for
/// the one flag it needs, and a destination that gains a feature sets one more `true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaCapabilities {
    /// Read-only SQL statements (`tidewater query`, `POST /query`).
    pub live_query: bool,
    /// The PostgreSQL wire-protocol endpoint (`[sql] listen`): live query plus a catalog
    /// psql and BI tools can browse.
    pub sql_endpoint: bool,
    /// `tidewater verify` compares the replica with the source.
    pub verify: bool,
}

/// The replica's committed state: `tidewater status`, `GET /status`, the status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusReport {
    pub position: Option<String>,
    pub source_type: Option<String>,
    pub last_source_commit: Option<String>,
    pub last_apply: Option<String>,
    /// Source commit → replica commit of the last applied transaction, where the replica
    /// stores both times (BigQuery's state table); `None` elsewhere (a running `run` knows it).
    #[serde(default)]
    pub last_lag_ms: Option<i64>,
    pub transactions_applied: i64,
    pub changes_applied: i64,
    pub tables: Vec<TableStatus>,
    /// Whether the replica's main file alone holds every committed change (DuckDB: its
    /// `.wal` is empty or gone: a clean stop checkpoints). `None` where unknown or
    /// meaningless (an in-memory database, a remote warehouse, an older status file).
    #[serde(default)]
    pub checkpointed: Option<bool>,
    /// Bytes of committed changes waiting in a write-ahead log for a checkpoint.
    #[serde(default)]
    pub wal_bytes: u64,
    /// A source transaction after `position` of which the replica holds only the first
    /// changes (`[apply] large_transaction = "split"`), and how many.
    #[serde(default)]
    pub partial: Option<(String, i64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableStatus {
    pub table: String,
    /// Rows in the replica table; -1 when they could not be counted.
    pub rows: i64,
    pub changes_applied: i64,
    pub schema_version: i32,
}

/// A result column's kind, as much as a client needs to format its text: the PostgreSQL
/// endpoint picks a type OID from it, `POST /query` a JSON number or boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Bool,
    Int16,
    Int32,
    Int64,
    /// Exact numbers too wide for `Int64` (decimals, unsigned 64-bit): text, never a float.
    Numeric,
    Float32,
    Float64,
    Date,
    /// Text `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    Timestamp,
    /// An instant, always in UTC: text `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`.
    TimestampTz,
    Time,
    /// Text: lower-case hexadecimal digits.
    Bytes,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultColumn {
    pub name: String,
    /// The destination's name of the column's type (DuckDB: its Arrow type, `Int64`,
    /// `Decimal128(12, 2)`), shown as is.
    pub type_name: String,
    pub kind: ColumnKind,
}

impl ResultColumn {
    pub fn text(name: impl Into<String>) -> ResultColumn {
        ResultColumn {
            name: name.into(),
            type_name: "Utf8".into(),
            kind: ColumnKind::Text,
        }
    }
}

/// How cells are rendered as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// The destination's display text (`[fruit, red]` for a list): the SQL endpoint.
    Text,
    /// Every cell a JSON document (`1`, `"text"`, `["fruit","red"]`; decimals as strings,
    /// to stay exact): `POST /query` parses each.
    Json,
}

/// A result with every value as text (NULL as `None`).
#[derive(Debug, Clone)]
pub struct TextResult {
    pub columns: Vec<ResultColumn>,
    pub rows: Vec<Vec<Option<String>>>,
    /// More rows existed than the limit.
    pub truncated: bool,
    /// Parameters the statement takes (`$1`, `?`).
    pub parameters: usize,
    pub elapsed_ms: u64,
}

/// A statement parameter's value (what a PostgreSQL client binds).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    /// Cast by the destination to what the statement expects.
    Text(String),
    Bytes(Vec<u8>),
}

/// Values for a statement's parameters.
#[derive(Debug, Clone)]
pub enum Params {
    Values(Vec<Param>),
    /// NULL for each parameter the statement has: to learn its columns before values exist.
    AllNull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryErrorKind {
    /// Not a single read-only statement.
    Refused,
    /// The destination rejected or failed the statement.
    Sql,
    Timeout,
    /// No replica to query (not open yet, or the server is busy).
    Unavailable,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryError {
    pub kind: QueryErrorKind,
    #[serde(rename = "error")]
    pub message: String,
    /// The SQLSTATE that says what went wrong (`42601` a syntax error, `42P01` an unknown
    /// table, ...), where the one who refused or failed the statement knows it; else the
    /// PostgreSQL-wire endpoint answers by `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

impl QueryError {
    pub fn new(kind: QueryErrorKind, message: impl Into<String>) -> QueryError {
        QueryError {
            kind,
            message: message.into(),
            sqlstate: None,
        }
    }

    /// The error with its SQLSTATE (see the field).
    pub fn with_sqlstate(mut self, sqlstate: &str) -> QueryError {
        self.sqlstate = Some(sqlstate.to_string());
        self
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Stops the statement a `ReadSession` is running, from another thread.
pub type Interrupt = Arc<dyn Fn() + Send + Sync>;

/// One reader's own session on the replica (a DuckDB connection is not shared between
/// threads). Blocking.
pub trait ReadSession: Send {
    /// Runs one statement that the caller has checked reads only, inside a read-only
    /// transaction where the destination has one; at most `limit` rows are kept, and rows
    /// are fetched in pieces, so the limit bounds memory.
    fn query(
        &mut self,
        sql: &str,
        params: &Params,
        limit: usize,
        cells: Cells,
    ) -> std::result::Result<TextResult, QueryError>;

    /// What stops this session's running statement (a timeout).
    fn interrupt(&self) -> Interrupt;
}

/// A destination's read side. Blocking methods: call them off the async runtime.
pub trait Replica: Send + Sync {
    fn capabilities(&self) -> ReplicaCapabilities;

    /// The committed state: position, totals and per-table rows.
    fn status(&self) -> Result<StatusReport>;

    /// A session for read-only statements; an error when `capabilities().live_query` is
    /// false.
    fn session(&self) -> Result<Box<dyn ReadSession>>;

    /// A comparison of source rows with this replica, for `verify`; an error when
    /// `capabilities().verify` is false.
    fn comparison(&self) -> Result<Box<dyn Comparison>>;

    /// The statement in this replica's own SQL that answers `sql` when `sql` is a catalog
    /// question asked in PostgreSQL's terms (psql's `\dt`, `\d`, `\dn`; `SHOW TABLES`), for the
    /// PostgreSQL-wire endpoint. `None`: `sql` runs as it is.
    fn catalog_statement(&self, _sql: &str) -> Option<String> {
        None
    }
}

/// What the rows of a table are read for, in a `Comparison`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The first comparison of the whole table.
    First,
    /// A keyless table read again: only rows that differed before and differ again remain.
    Rescan,
    /// Keyed: the rows of the keys that differed, batch by batch (`recheck_batch`).
    Recheck,
}

/// `verify`'s comparison of source rows (canonical text, as the source reads them) with the
/// replica's, table by table, in bounded memory; then re-checks of the keys that differed.
/// Blocking, one call at a time; the verify engine in the runtime drives it.
pub trait Comparison: Send {
    /// The replica's committed position.
    fn replica_position(&self, pipeline: &str) -> Result<Option<String>>;
    /// Registers a source table and checks that the replica has it with the same columns
    /// and types. Returns its index.
    fn add_table(&mut self, schema: Arc<TableSchema>) -> Result<usize>;
    /// Whether table `i`'s rows can be compared (its replica table matches the source's).
    fn comparable(&self, i: usize) -> bool;
    /// Prepares for table `i`'s rows.
    fn start(&mut self, i: usize, pass: Pass) -> Result<()>;
    /// Source rows of the started table, in key order.
    fn rows(&mut self, rows: &[Vec<Value>]) -> Result<()>;
    /// The started table's last rows have arrived: compares what is left.
    fn finish(&mut self) -> Result<()>;
    /// Differences table `i` has now.
    fn differences(&self, i: usize) -> Result<u64>;
    /// Keyed re-check: numbers the keys that differ; returns how many.
    fn recheck_prepare(&self, i: usize) -> Result<u64>;
    /// Keys `from..=to` of the re-check, as canonical text for the source.
    fn recheck_keys(&self, i: usize, from: u64, to: u64) -> Result<Vec<Vec<Value>>>;
    /// Compares the source rows of keys `from..=to` (given to `rows`) with the replica's (as
    /// of the transaction `recheck_as_of` set, if any).
    fn recheck_batch(&mut self, from: u64, to: u64) -> Result<()>;
    /// Live re-check, before the round's source snapshot is taken: keeps the replica's rows
    /// of table `i`'s differing keys and the ordinal of the last transaction they hold, read
    /// together. Returns false when this replica cannot be read as of a transaction (it keeps
    /// no change log): the round then compares the replica as it is when read.
    fn recheck_base(&mut self, _i: usize, _pipeline: &str) -> Result<bool> {
        Ok(false)
    }
    /// After the replica has passed the round's snapshot: the transactions after the base that
    /// touched table `i`'s differing keys (or emptied it), as (ordinal, position), in the
    /// order they committed.
    fn recheck_later(&self, _i: usize) -> Result<Vec<(i64, String)>> {
        Ok(Vec::new())
    }
    /// Compares table `i`'s re-check with the replica as of transaction `ordinal` (the last
    /// one the round's source snapshot holds) instead of the replica as it is when read.
    fn recheck_as_of(&mut self, _i: usize, _ordinal: i64) -> Result<()> {
        Ok(())
    }
    /// Only the keys that differed again remain.
    fn recheck_done(&mut self, i: usize) -> Result<()>;
    /// Table `i`'s counts and up to `max_examples` keys (rows) per kind of difference.
    fn result(&self, i: usize, max_examples: usize) -> Result<TableReport>;
}

/// What `verify` found in one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    /// False for a table without a primary key: compared as a multiset of rows.
    pub keyed: bool,
    /// Source rows compared.
    pub rows: u64,
    /// In the source, not in the replica.
    pub missing: u64,
    /// In the replica, not in the source.
    pub extra: u64,
    /// Same key, other values.
    pub differing: u64,
    /// Why the rows could not be compared (the replica's table or columns differ).
    pub problem: Option<String>,
    /// Up to `--max-examples` keys (keyless tables: rows) per kind of difference.
    pub examples: Examples,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Examples {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub differing: Vec<String>,
}

impl TableReport {
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.differing + u64::from(self.problem.is_some())
    }
}

/// The marker source of an error caused by another process holding the replica (a local
/// file `tidewater run` writes). Callers ask [`is_held`] instead of reading messages.
#[derive(Debug)]
pub struct Held;

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the replica is held by another process")
    }
}

impl std::error::Error for Held {}

/// Whether `e` failed because another process holds the replica.
pub fn is_held(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<Held>())
}

/// One sample of a sink's own metric: an optional `(label, value)` and the number.
pub type Sample = (Option<(&'static str, String)>, u64);

/// A metric a sink exports on `/metrics` beside the pipeline's (BigQuery: bytes processed).
#[derive(Debug, Clone)]
pub struct SinkMetric {
    pub name: &'static str,
    /// `true`: a counter; `false`: a gauge.
    pub counter: bool,
    pub help: &'static str,
    pub samples: Vec<Sample>,
}

/// What a sink counts about itself, read by `/metrics`.
pub trait SinkMetrics: Send + Sync {
    fn metrics(&self) -> Vec<SinkMetric>;
}
