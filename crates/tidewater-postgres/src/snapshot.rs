//! The initial snapshot: every selected table copied inside the snapshot exported when the
//! replication slot was created, so the copy and the stream that follows it neither overlap
//! nor leave a gap. Rows stream to the apply loop in chunks; nothing holds a table whole.

use std::collections::HashSet;
use std::time::Instant;

use tidewater_core::copy_rows::SnapshotRows;
use tidewater_core::stats::now_us;
use tidewater_core::{Error, Position, Result, SourceEvent, TableId, TxInfo};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::info;

use crate::catalog::SourceTable;
use crate::conn::pg_error;
use crate::read::{read_table, ReadOptions, CHUNK_ROWS};

/// Copies `tables` as of `snapshot_name` and sends them as one transaction at `position`.
/// The replica's rows of a table in `recopy` (one it holds already) are removed first, in
/// the same transaction: a truncate that carries the table's new definition.
pub async fn copy_tables(
    client: &Client,
    snapshot_name: &str,
    position: Position,
    tables: &[SourceTable],
    recopy: &HashSet<TableId>,
    events: &mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot_name.replace('\'', "''")
        ))
        .await
        .map_err(|e| pg_error(e, "importing the slot's exported snapshot"))?;
    send(
        events,
        SourceEvent::Begin(TxInfo {
            position,
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        }),
    )
    .await?;
    let mut total = 0;
    for table in tables {
        if recopy.contains(&table.schema.id) {
            send(events, SourceEvent::Truncate(vec![table.schema.clone()])).await?;
        }
        total += copy_table(client, table, events).await?;
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| pg_error(e, "ending the snapshot"))?;
    send(events, SourceEvent::Commit).await?;
    Ok(total)
}

async fn copy_table(
    client: &Client,
    table: &SourceTable,
    events: &mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    let schema = &table.schema;
    let started = Instant::now();
    let mut out = SnapshotRows::new(schema.clone(), events);
    let opts = ReadOptions {
        ordered: false,
        keys: None,
        chunk_rows: CHUNK_ROWS,
    };
    let rows = read_table(client, schema, &opts, &mut out).await?;
    let secs = started.elapsed().as_secs_f64();
    info!(table = %schema.id, rows, seconds = format!("{secs:.1}"), rows_per_sec = (rows as f64 / secs.max(1e-9)) as u64, "snapshot of table done");
    Ok(rows)
}

pub async fn send(events: &mpsc::Sender<SourceEvent>, event: SourceEvent) -> Result<()> {
    events.send(event).await.map_err(|_| Error::shutdown())
}
