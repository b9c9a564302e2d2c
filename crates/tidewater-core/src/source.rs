//! The source contract: discover tables, then stream whole transactions into the apply loop.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::apply::AckReceiver;
use crate::error::Result;
use crate::event::SourceEvent;
use crate::model::{Position, TableId, TableSchema, Value};
use crate::unreplicated::Unreplicated;

pub struct SourceContext {
    /// The position the sink has committed; `None` means "take the initial snapshot first".
    pub resume: Option<Position>,
    pub events: mpsc::Sender<SourceEvent>,
    /// Positions the sink has committed; the source acknowledges them to the server.
    pub acks: AckReceiver,
    /// Selected tables that the destination does not hold yet although it is past its
    /// initial snapshot (a table created at the source, or `tables` widened): the source
    /// copies their rows at a position of its stream, then streams their changes after it.
    pub backfill: Vec<TableId>,
    /// Whether the destination can take in tables while streaming (new ones found at the
    /// source, and `backfill`): a source that finds a new selected table then adds it.
    pub add_tables: bool,
    /// Where the source lists selected tables it cannot replicate, with the reason and fix,
    /// and removes them once they have joined (see `unreplicated`).
    pub unreplicated: Unreplicated,
}

pub trait Source: Send {
    /// The tables this source replicates (resolved from the configured globs).
    fn tables(&self) -> Vec<Arc<TableSchema>>;

    /// Streams until an error or until the apply loop goes away. A replayed transaction at or
    /// below `resume` is never sent again.
    fn run(&mut self, ctx: SourceContext) -> impl Future<Output = Result<()>> + Send;
}

/// Receives a table's rows as a source reads them (the initial snapshot, `verify`): chunks of
/// rows in canonical text, each row in the table's column order.
pub trait RowConsumer: Send {
    fn rows(&mut self, rows: Vec<Vec<Value>>) -> impl Future<Output = Result<()>> + Send;
}
