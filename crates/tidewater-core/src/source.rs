//! The source contract: discover tables, then stream whole transactions into the apply loop.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::apply::AckReceiver;
use crate::error::Result;
use crate::event::SourceEvent;
use crate::model::{Position, TableSchema, Value};

pub struct SourceContext {
    /// The position the sink has committed; `None` means "take the initial snapshot first".
    pub resume: Option<Position>,
    pub events: mpsc::Sender<SourceEvent>,
    /// Positions the sink has committed; the source acknowledges them to the server.
    pub acks: AckReceiver,
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
