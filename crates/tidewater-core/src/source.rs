//! The source contract: discover tables, then stream whole transactions into the apply loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::apply::AckReceiver;
use crate::error::Result;
use crate::event::SourceEvent;
use crate::model::{Position, TableId, TableSchema, Value};
use crate::recopy::RecopyRequests;
use crate::unreplicated::Unreplicated;

pub struct SourceContext {
    /// The position the sink has committed; `None` means "take the initial snapshot first".
    pub resume: Option<Position>,
    /// The highest position the sink has recorded as acknowledgeable (see
    /// [`crate::PipelineState::acknowledged`]): the position guard compares the server's
    /// view of this replica with it before resuming.
    pub acknowledged: Option<Position>,
    /// The replica's identity (see [`crate::PipelineState::replica_id`]).
    pub replica_id: Option<String>,
    pub events: mpsc::Sender<SourceEvent>,
    /// Positions the sink has committed; the source acknowledges them to the server.
    pub acks: AckReceiver,
    /// Selected tables that the destination does not hold yet although it is past its
    /// initial snapshot (a table created at the source, or `tables` widened): the source
    /// copies their rows at a position of its stream, then streams their changes after it.
    pub backfill: Vec<TableId>,
    /// Tables the destination holds that are not among the selected tables: dropped at the
    /// source, or left out of `tables` (narrowed globs). A source must not stream on while
    /// one it could replicate is left out: its changes would be missed meanwhile, and if it
    /// were selected again its replica would resume as if nothing had been missed.
    pub left_out: Vec<TableId>,
    /// The definitions the destination's tables were last written with. A table whose
    /// current source definition changes one of them in a way the stream does not carry (see
    /// `uncarried`: changed while tidewater was stopped, or a copy again that a crash
    /// interrupted) is copied again by the source at a position of its stream, replacing its
    /// replica rows (needs `add_tables`).
    pub replica_schemas: Vec<TableSchema>,
    /// Whether the destination can take in tables while streaming (new ones found at the
    /// source, and `backfill`): a source that finds a new selected table then adds it.
    pub add_tables: bool,
    /// How to start the replica over with a new snapshot, from the sink
    /// ([`crate::Sink::resnapshot_fix`]): the fix of an error after which the replica cannot
    /// catch up (the changes since its position are gone at the source).
    pub resnapshot_fix: String,
    /// The chunked initial snapshot (`crate::copy`): `Some` when the sink takes it, with the
    /// committed progress of a copy still under way (or finished). `None`: the sink cannot,
    /// and the initial snapshot is one transaction.
    pub chunked: Option<crate::copy::ChunkedCopy>,
    /// Where the source lists selected tables it cannot replicate, with the reason and fix,
    /// and removes them once they have joined (see `unreplicated`).
    pub unreplicated: Unreplicated,
    /// Replicated tables the runtime asks to copy again while streaming (see `recopy`): the
    /// source takes them between transactions and copies each at a position of its stream,
    /// replacing its replica rows, as after a change the stream does not carry (needs
    /// `add_tables`; without it they are left untaken).
    pub recopy: RecopyRequests,
    /// The held tables' layouts as last committed (see [`crate::Sink::table_layouts`]); the
    /// source compares them with the tables now and copies again a table whose rows changed
    /// without row changes in its stream, and sends [`SourceEvent::Layouts`] when a layout
    /// changes. `None`: the destination keeps no layouts (the source sends none).
    pub layouts: Option<BTreeMap<TableId, String>>,
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
