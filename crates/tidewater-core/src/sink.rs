//! The destination contract. A sink applies batches of whole source transactions, each
//! batch in one destination transaction together with the source position it reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::copy::CopyProgress;
use crate::error::{Error, Result};
use crate::event::TxInfo;
use crate::model::{Change, Position, TableId, TableSchema};
use crate::split::PartialTx;

/// What a sink remembers of the pipeline, read at start.
#[derive(Debug, Clone, Default)]
pub struct PipelineState {
    /// Position of the last applied source transaction; `None` until the initial snapshot
    /// has been committed.
    pub position: Option<Position>,
    /// The highest position the source may have been told is applied (`position`, or an
    /// idle point after it recorded by [`Sink::record_ack`]): never less than what the
    /// source server holds as confirmed by this replica. `None` when the sink keeps no such
    /// record; the position guard then cannot compare the server's view with the replica.
    pub acknowledged: Option<Position>,
    /// This replica's identity (a UUID, stored before anything is taken from the source),
    /// which claims server-side state such as a replication slot; `None` when the sink has
    /// no place for it.
    pub replica_id: Option<String>,
    /// A source transaction after `position` whose first changes the destination holds
    /// (`[apply] large_transaction = "split"`, `crate::split`): the apply loop skips them
    /// when the source replays it.
    pub partial: Option<PartialTx>,
}

/// Called from one thread (the apply loop); implementations may block.
pub trait Sink: Send {
    /// Creates the destination tables for these source tables, or checks that existing ones
    /// still match (a replica changed by hand is an error, not something to guess about).
    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()>;

    /// The source tables the destination already holds with their rows (from the initial
    /// snapshot, or added later), read before `prepare`. `None`: the sink does not track
    /// this, and cannot take in a table whose rows must be copied while streaming.
    fn replicated_tables(&mut self) -> Result<Option<BTreeSet<TableId>>> {
        Ok(None)
    }

    /// `tidewater forget`: the destination stops holding `tables` (what it records about
    /// them goes, so a run whose `source.tables` no longer selects them starts, and selecting
    /// them again copies them anew); with `drop_tables` their replica and change tables go
    /// too. Called only while no run writes the destination.
    fn forget(&mut self, _tables: &[TableId], _drop_tables: bool) -> Result<()> {
        Err(
            Error::config("this destination cannot forget replicated tables yet").with_fix(
                "put the tables back into source.tables, or start from an empty replica \
                     (a new sink.dataset) to take a new snapshot of the tables you select",
            ),
        )
    }

    /// The definition the destination's replica of `id` was last written with, if it holds
    /// one and records it (read after `prepare`).
    fn replica_schema(&mut self, _id: &TableId) -> Result<Option<TableSchema>> {
        Ok(None)
    }

    /// The committed state, read at start to resume.
    fn state(&mut self) -> Result<PipelineState>;

    /// Opens a destination transaction for a batch.
    fn begin(&mut self) -> Result<()>;

    /// A source transaction begins inside the open batch: its `write`s and `truncate`s
    /// follow, until the next `begin_tx`. Transactions tidewater sends itself (a copy's chunk,
    /// copy progress) carry the stream's position, the same as the transaction before them,
    /// so a sink that numbers transactions must not tell them apart by position.
    fn begin_tx(&mut self, _tx: &TxInfo) -> Result<()> {
        Ok(())
    }

    /// Whether writing these changes would change a destination table's definition (a
    /// schema change at the source, or a new table). The apply loop then starts a new batch
    /// first when it can do so at a transaction boundary.
    fn changes_schema(&self, _changes: &[Change]) -> bool {
        false
    }

    /// Whether truncating these tables would change a destination table's definition (a
    /// table re-copied after a schema change the stream does not carry: its copy starts with
    /// a truncate carrying the new definition). Handled like `changes_schema`.
    fn truncate_changes_schema(&self, _tables: &[Arc<TableSchema>]) -> bool {
        false
    }

    /// Applies changes of transaction `tx` inside the open batch. `first_sequence` is the
    /// index of `changes[0]` within its source transaction.
    fn write(&mut self, tx: &TxInfo, first_sequence: i64, changes: Vec<Change>) -> Result<()>;

    /// Removes all rows of these tables inside the open batch, in order with the writes.
    fn truncate(&mut self, tx: &TxInfo, tables: &[Arc<TableSchema>]) -> Result<()>;

    /// Commits the open batch atomically with `position`, the position of its last
    /// transaction.
    fn commit(&mut self, position: &Position, last_commit_time_us: i64) -> Result<()>;

    /// Whether this sink can commit a source transaction in pieces
    /// (`[apply] large_transaction = "split"`): it implements `record_partial`.
    fn splits_transactions(&self) -> bool {
        false
    }

    /// The open batch ends inside source transaction `partial.position`, after its first
    /// `partial.changes` changes: stored by the batch's `commit` (whose position stays the
    /// last complete transaction's) and returned by `state` as `partial`. A commit without it
    /// stores none (the apply loop records it again with every commit until the transaction
    /// is complete). The next batch continues the same transaction: the sink gives its rest
    /// the same transaction identity (DuckDB: the same `_metadata_tx` ordinal), in this run
    /// and after a restart.
    fn record_partial(&mut self, _partial: &PartialTx) -> Result<()> {
        Err(Error::sink(
            "internal: this destination does not commit a transaction in pieces",
        ))
    }

    /// Abandons the open batch, if any.
    fn rollback(&mut self) -> Result<()>;

    /// How a user starts this destination over, so that `tidewater run` takes a new snapshot
    /// (the fix sources give when the changes since the stored position are gone).
    fn resnapshot_fix(&self) -> String {
        "start from an empty destination and run `tidewater run` again: it takes a new \
         snapshot"
            .into()
    }

    /// Records, before the source is told, that the source may acknowledge `position`: an
    /// idle point past every transaction committed so far. Inside an open batch it is stored
    /// by that batch's commit (the batch's transactions come before it); outside one it is
    /// stored at once. A sink that keeps no such record does nothing (its `state` then has
    /// no `acknowledged`).
    fn record_ack(&mut self, _position: &Position) -> Result<()> {
        Ok(())
    }

    /// Whether this sink takes the chunked initial snapshot (`crate::copy`): stores
    /// [`CopyProgress`] with its batches, applies `Snapshot` rows as upserts and the changes of
    /// a table that is not consistent yet leniently. A sink that does not is given the whole
    /// snapshot as one transaction.
    fn copies_in_chunks(&self) -> bool {
        false
    }

    /// The committed copy progress of every table (empty when the replica never copied in
    /// chunks), read at start after `state`.
    fn copy_progress(&mut self) -> Result<Vec<CopyProgress>> {
        Ok(Vec::new())
    }

    /// The tables whose copy under way fills a table beside their replica table, as of the
    /// last commit: their replica table keeps the rows it had when the copy began (whole,
    /// stale) until the copy is consistent and replaces it (DuckDB: `T__tidewater_copy`).
    /// A table not listed holds only what was copied so far while its copy runs. Read after
    /// `copy_progress` at start and after each commit that holds copy progress.
    fn copies_beside(&self) -> Vec<TableId> {
        Vec::new()
    }

    /// Stores copy progress inside the open batch (it commits with the batch).
    fn write_progress(&mut self, _progress: &[CopyProgress]) -> Result<()> {
        Err(Error::sink(
            "internal: this destination does not take the chunked initial snapshot",
        ))
    }

    /// Per held table, the source's note of how the table is laid out beyond its definition,
    /// as of the last [`Sink::write_layouts`] committed (PostgreSQL: the leaf partitions of a
    /// partitioned table, whose detach or attach leaves no row changes in the stream). Read at
    /// start, it lets the source see such a change made while tidewater was stopped
    /// (`SourceContext::layouts`). `None`: this sink keeps no layouts, and the source takes
    /// the tables as they are at each start.
    fn table_layouts(&mut self) -> Result<Option<BTreeMap<TableId, String>>> {
        Ok(None)
    }

    /// Stores tables' layouts inside the open batch (they commit with it). Only called when
    /// [`Sink::table_layouts`] returned `Some`, for tables the destination holds.
    fn write_layouts(&mut self, _layouts: &[(TableId, String)]) -> Result<()> {
        Err(Error::sink(
            "internal: this destination keeps no table layouts",
        ))
    }

    /// Called by the apply loop between batches when no event is waiting: housekeeping that
    /// would otherwise stall a commit (DuckDB: a checkpoint). Must not change what is stored.
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called once when the pipeline stops cleanly, after its last commit: leaves the
    /// destination complete by itself (DuckDB: its write-ahead log checkpointed into the file).
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
