//! What a source sends while it copies a table (the chunked initial snapshot of
//! [`crate::copy`], and whole-table copies): rows as `Snapshot` changes, and the wait that
//! keeps a chunk's source transaction short. Apart from `copy` because it speaks the event
//! protocol, which itself carries `copy`'s progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::info;

use crate::error::{Error, Result};
use crate::event::SourceEvent;
use crate::model::{Change, ChangeKind, TableSchema, Value};
use crate::source::RowConsumer;

/// Waits until the apply loop has taken every event sent before (the queue is empty, or
/// closed). A source opens a chunk's transaction only after this: the transaction then lasts
/// as long as the chunk's read (its rows fit in the queue unless `chunk_rows` exceeds it),
/// not as long as the apply of everything queued before it, which a slow or stalled
/// destination would make unbounded. No long transactions at the source: InnoDB purge and
/// PostgreSQL's xmin horizon are held back by one chunk's read at most.
pub async fn queue_drained(events: &mpsc::Sender<SourceEvent>) {
    while events.capacity() < events.max_capacity() && !events.is_closed() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

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
        }
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
            .collect();
        self.events
            .send(SourceEvent::Changes(changes))
            .await
            .map_err(|_| Error::shutdown())?;
        if self.last_report.elapsed() >= Duration::from_secs(5) {
            self.last_report = Instant::now();
            let rate = self.rows as f64 / self.started.elapsed().as_secs_f64();
            info!(table = %self.schema.id, rows = self.rows, rows_per_sec = rate as u64, "snapshot in progress");
        }
        Ok(())
    }
}
