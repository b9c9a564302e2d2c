//! What a source sends while it copies a table (the chunked initial snapshot of
//! [`crate::copy`], and whole-table copies): rows as `Snapshot` changes, held back while a
//! chunk's source transaction is open so that the transaction lasts as long as its read. Apart
//! from `copy` because it speaks the event protocol, which itself carries `copy`'s progress.
//!
//! **Short source transactions, overlapped with the destination's writes.** A chunk's rows
//! are held in memory while its source transaction is open and sent once it has ended
//! ([`SnapshotRows::chunk`], [`SnapshotRows::release`]): the read never waits for the apply
//! loop, so the transaction lasts as long as the read (InnoDB purge and PostgreSQL's xmin
//! horizon are held back by one chunk's read at most), and the next chunk is read while the
//! destination still writes this one. Past [`HOLD_BYTES`] of held rows (very wide rows) the
//! rows go straight to the queue as they are read: memory stays bounded, and the transaction
//! then waits for the apply loop as a whole-table copy does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::info;

use crate::apply::change_bytes;
use crate::error::{Error, Result};
use crate::event::{SourceEvent, TxInfo};
use crate::model::{Change, ChangeKind, TableSchema, Value};
use crate::source::RowConsumer;

/// At most this much of a chunk's rows (by [`change_bytes`]) is held while its source
/// transaction is open.
pub const HOLD_BYTES: usize = 64 << 20;

/// Turns a table's rows into `Snapshot` changes for the apply loop (the initial copy and its
/// chunks), remembering the last row's key and logging progress every few seconds.
pub struct SnapshotRows<'a> {
    schema: Arc<TableSchema>,
    events: &'a mpsc::Sender<SourceEvent>,
    rows: u64,
    started: Instant,
    last_report: Instant,
    /// The key of the last row (keyed tables).
    pub last_key: Option<Vec<Value>>,
    /// A chunk's events not sent yet (its `Begin` first), and their bytes; `None` once sent
    /// (or for a whole-table copy, which sends as it reads).
    held: Option<(Vec<SourceEvent>, usize)>,
    /// Past this many held bytes, rows go to the queue as they are read.
    hold_bytes: usize,
    /// The bytes of the rows' values so far (estimated as the apply loop does).
    pub bytes: u64,
}

impl<'a> SnapshotRows<'a> {
    pub fn new(schema: Arc<TableSchema>, events: &'a mpsc::Sender<SourceEvent>) -> Self {
        let started = Instant::now();
        SnapshotRows {
            schema,
            events,
            rows: 0,
            started,
            last_report: started,
            last_key: None,
            held: None,
            hold_bytes: HOLD_BYTES,
            bytes: 0,
        }
    }

    /// A chunk that will be one destination transaction starting with `begin`: its events are
    /// held until [`SnapshotRows::release`] (see the module doc).
    pub fn chunk(
        schema: Arc<TableSchema>,
        events: &'a mpsc::Sender<SourceEvent>,
        begin: TxInfo,
    ) -> Self {
        let mut rows = SnapshotRows::new(schema, events);
        rows.held = Some((vec![SourceEvent::Begin(begin)], 0));
        rows
    }

    /// With `all`, holds every row until [`SnapshotRows::release`], however many: for a
    /// chunk read beside another that is sent first (a parallel round, whose chunks are
    /// bounded by their key ranges), where sending early would interleave the two.
    pub fn holding_all(mut self, all: bool) -> Self {
        if all {
            self.hold_bytes = usize::MAX;
        }
        self
    }

    /// Sends what is still held (call once the chunk's source transaction has ended); returns
    /// the key of the last row.
    pub async fn release(mut self) -> Result<Option<Vec<Value>>> {
        self.send_held().await?;
        Ok(self.last_key)
    }

    async fn send_held(&mut self) -> Result<()> {
        for event in self.held.take().map(|h| h.0).unwrap_or_default() {
            self.send(event).await?;
        }
        Ok(())
    }

    async fn send(&self, event: SourceEvent) -> Result<()> {
        self.events.send(event).await.map_err(|_| Error::shutdown())
    }
}

impl RowConsumer for SnapshotRows<'_> {
    async fn rows(&mut self, rows: Vec<Vec<Value>>) -> Result<()> {
        self.rows += rows.len() as u64;
        if let (Some(last), true) = (rows.last(), self.schema.has_key()) {
            self.last_key = Some(self.schema.key.iter().map(|&k| last[k].clone()).collect());
        }
        let changes = rows
            .into_iter()
            .map(|row| Change {
                table: Arc::clone(&self.schema),
                kind: ChangeKind::Snapshot,
                row,
                old: None,
            })
            .collect::<Vec<_>>();
        let size = changes.iter().map(change_bytes).sum::<usize>();
        self.bytes += size as u64;
        match self.held.as_mut() {
            Some((held, bytes)) if *bytes < self.hold_bytes => {
                *bytes += size;
                held.push(SourceEvent::Changes(changes));
            }
            _ => {
                // Past HOLD_BYTES: what is held goes first, then rows as they are read.
                self.send_held().await?;
                self.send(SourceEvent::Changes(changes)).await?;
            }
        }
        if self.last_report.elapsed() >= Duration::from_secs(5) {
            self.last_report = Instant::now();
            let rate = self.rows as f64 / self.started.elapsed().as_secs_f64();
            info!(table = %self.schema.id, rows = self.rows, rows_per_sec = rate as u64, "snapshot in progress");
        }
        Ok(())
    }
}
