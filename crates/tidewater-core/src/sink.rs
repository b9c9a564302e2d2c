//! The destination contract. A sink applies batches of whole source transactions, each
//! batch in one destination transaction together with the source position it reaches.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::Result;
use crate::event::TxInfo;
use crate::model::{Change, Position, TableId, TableSchema};

/// What a sink remembers of the pipeline, read at start.
#[derive(Debug, Clone, Default)]
pub struct PipelineState {
    /// Position of the last applied source transaction; `None` until the initial snapshot
    /// has been committed.
    pub position: Option<Position>,
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

    /// The committed state, read at start to resume.
    fn state(&mut self) -> Result<PipelineState>;

    /// Opens a destination transaction for a batch.
    fn begin(&mut self) -> Result<()>;

    /// Whether writing these changes would change a destination table's definition (a
    /// schema change at the source, or a new table). The apply loop then starts a new batch
    /// first when it can do so at a transaction boundary.
    fn changes_schema(&self, _changes: &[Change]) -> bool {
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

    /// Abandons the open batch, if any.
    fn rollback(&mut self) -> Result<()>;

    /// Called once when the pipeline stops cleanly, after its last commit: leaves the
    /// destination complete by itself (DuckDB: its write-ahead log checkpointed into the file).
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
