//! The initial snapshot: every selected table copied inside the snapshot exported when the
//! replication slot was created, so the copy and the stream that follows it neither overlap
//! nor leave a gap. Rows stream to the apply loop in chunks; nothing holds a table whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tidewater_core::stats::now_us;
use tidewater_core::{Change, ChangeKind, Error, Position, Result, SourceEvent, TxInfo, Value};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::info;

use crate::catalog::SourceTable;
use crate::conn::pg_error;
use crate::setup::{quote_ident, quoted_table};
use crate::text::split_copy_line;
use crate::types::canonical;

pub const CHUNK_ROWS: usize = 1024;

/// Copies `tables` as of `snapshot_name` and sends them as one transaction at `position`.
pub async fn copy_tables(
    client: &Client,
    snapshot_name: &str,
    position: Position,
    tables: &[SourceTable],
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
        }),
    )
    .await?;
    let mut total = 0;
    for table in tables {
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
    let cols: Vec<String> = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let sql = format!(
        "COPY {} ({}) TO STDOUT",
        quoted_table(&schema.id),
        cols.join(", ")
    );
    let stream = client
        .copy_out(&sql)
        .await
        .map_err(|e| pg_error(e, &format!("copying {}", schema.id)))?;
    futures_util::pin_mut!(stream);
    let started = Instant::now();
    let mut last_report = started;
    let mut rows = 0u64;
    let mut fields = Vec::with_capacity(schema.columns.len());
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| pg_error(e, &format!("copying {}", schema.id)))?;
        for line in lines(&data) {
            split_copy_line(&line, &mut fields).map_err(|e| {
                Error::source_fatal(format!("malformed COPY row of {}: {e}", schema.id))
            })?;
            if fields.len() != schema.columns.len() {
                return Err(Error::source_fatal(format!(
                    "COPY row of {} has {} fields, expected {}",
                    schema.id,
                    fields.len(),
                    schema.columns.len()
                )));
            }
            let mut row = Vec::with_capacity(fields.len());
            for (f, col) in fields.drain(..).zip(&schema.columns) {
                row.push(match f {
                    None => Value::Null,
                    Some(b) => canonical(&col.ty, b)
                        .map_err(|e| e.context(format!("{}.{}", schema.id, col.name)))?,
                });
            }
            chunk.push(Change {
                table: Arc::clone(schema),
                kind: ChangeKind::Snapshot,
                row,
                old: None,
            });
            rows += 1;
            if chunk.len() == CHUNK_ROWS {
                send(
                    events,
                    SourceEvent::Changes(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(CHUNK_ROWS),
                    )),
                )
                .await?;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let rate = rows as f64 / started.elapsed().as_secs_f64();
            info!(table = %schema.id, rows, rows_per_sec = rate as u64, "snapshot in progress");
        }
    }
    if !chunk.is_empty() {
        send(events, SourceEvent::Changes(chunk)).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    info!(table = %schema.id, rows, seconds = format!("{secs:.1}"), rows_per_sec = (rows as f64 / secs.max(1e-9)) as u64, "snapshot of table done");
    Ok(rows)
}

/// PostgreSQL sends one row per CopyData message; split anyway, in case of several.
fn lines(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= data.len() {
            return None;
        }
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i);
        let line = data.slice(start..end);
        start = end + 1;
        Some(line)
    })
}

pub async fn send(events: &mpsc::Sender<SourceEvent>, event: SourceEvent) -> Result<()> {
    events.send(event).await.map_err(|_| Error::shutdown())
}
