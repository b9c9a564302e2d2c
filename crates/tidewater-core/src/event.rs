//! What a source sends to the apply loop: whole transactions, as a sequence of events.

use std::sync::Arc;

use crate::model::{Change, Position, TableSchema};

/// Commit facts of one source transaction.
#[derive(Debug, Clone)]
pub struct TxInfo {
    /// Position of the transaction's commit; stored with the data once applied.
    pub position: Position,
    /// Commit time at the source, microseconds since the Unix epoch (UTC).
    pub commit_time_us: i64,
    /// Whether the source had more written past this transaction when it delivered it: the
    /// apply loop batches while the source is behind and commits at once when it is not.
    pub backlog: Backlog,
}

/// The source's own backlog signal, taken when a transaction is delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backlog {
    /// The source cannot tell: the apply loop judges by the transaction's commit time.
    #[default]
    Unknown,
    /// Nothing meaningful was written at the source past this transaction (as far as the
    /// source last looked): the apply loop commits as soon as nothing more is queued.
    Current,
    /// The source server had already written well past this transaction: more is coming, so
    /// the apply loop lets the batch fill (bounded by the flush interval and batch limits).
    Behind,
}

#[derive(Debug)]
pub enum SourceEvent {
    /// A transaction starts; every change until `Commit` belongs to it. The initial snapshot
    /// is one such transaction (its changes are `ChangeKind::Snapshot`).
    Begin(TxInfo),
    /// Changes of the open transaction, in source order. Large transactions arrive in many
    /// chunks so that neither side holds them whole.
    Changes(Vec<Change>),
    /// All rows of these tables were removed (in order with the changes around it).
    Truncate(Vec<Arc<TableSchema>>),
    /// Copy progress of tables (the chunked initial snapshot, `crate::copy`), inside a
    /// transaction: committed with it.
    Progress(Vec<crate::copy::CopyProgress>),
    /// How these tables are laid out at the source now, beyond their definition
    /// ([`crate::Sink::table_layouts`]), inside a transaction: committed with it. Sent only
    /// once the replica reflects that layout (or a copy that will make it so has begun).
    Layouts(Vec<(crate::model::TableId, String)>),
    /// The open transaction is complete.
    Commit,
    /// Nothing is pending at the source up to here (a keepalive while idle): the apply loop
    /// may acknowledge it once everything received before it is committed.
    Idle(Position),
}
