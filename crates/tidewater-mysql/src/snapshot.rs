//! The initial snapshot: every selected table read inside one consistent-snapshot
//! transaction whose binlog position is known exactly, in primary-key chunks, streamed to the
//! apply loop as one source transaction.
//!
//! - MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` publishes the binlog position of
//!   that snapshot in `binlog_snapshot_file/position` (no lock at all); `BINLOG_GTID_POS`
//!   turns it into the GTID state to resume from.
//! - MySQL: the same transaction started under a brief `FLUSH TABLES WITH READ LOCK` (needs
//!   RELOAD), reading `@@gtid_executed` / the binlog position before unlocking.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as My};
use tidewater_core::stats::now_us;
use tidewater_core::{Change, ChangeKind, Error, Position, Result, SourceEvent, TxInfo};
use tokio::sync::mpsc;
use tracing::info;

use crate::catalog::SourceTable;
use crate::conn::{my_error, Flavor};
use crate::gtid::{MariaState, MySqlGtidSet};
use crate::position::BinlogPosition;
use crate::value::{convert, Origin, ZeroDates};

/// Rows per primary-key chunk (one round trip each).
const CHUNK_ROWS: usize = 8192;
/// Changes per event sent to the apply loop.
const EVENT_ROWS: usize = 1024;

pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Opens the consistent snapshot and returns the position it corresponds to.
pub async fn begin_snapshot(conn: &mut Conn, flavor: Flavor) -> Result<BinlogPosition> {
    let err = |what: &'static str| move |e| my_error(e, what);
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(err("setting the snapshot isolation level"))?;
    match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
                .map_err(err("starting the snapshot transaction"))?;
            let status: Vec<(String, String)> = conn
                .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                .await
                .map_err(err("reading the snapshot's binlog position"))?;
            let get = |n: &str| status.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let (Some(file), Some(pos)) = (
                get("Binlog_snapshot_file"),
                get("Binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
            ) else {
                return Err(Error::source_fatal(
                    "the server reports no binlog snapshot position; enable the binary log (log_bin)",
                ));
            };
            let gtid: Option<String> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos))
                .await
                .map_err(err("reading the snapshot's GTID position"))?;
            Ok(match gtid {
                Some(g) => BinlogPosition::MariaDb(
                    MariaState::parse(&g).map_err(Error::source_fatal)?,
                ),
                None => BinlogPosition::File { file, pos },
            })
        }
        Flavor::MySql => {
            conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(|e| {
                my_error(
                    e,
                    "locking tables briefly to read the snapshot position (FLUSH TABLES WITH READ LOCK \
                     needs the RELOAD privilege)",
                )
            })?;
            let opened = async {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .await?;
                let gtid: Option<(String, String)> = conn
                    .query_first("SELECT @@global.gtid_mode, @@global.gtid_executed")
                    .await?;
                // MySQL 8.4 renamed SHOW MASTER STATUS.
                let status: Option<Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
                    Ok(row) => row,
                    Err(_) => conn.query_first("SHOW MASTER STATUS").await?,
                };
                Ok::<_, mysql_async::Error>((gtid, status))
            }
            .await;
            let unlocked = conn.query_drop("UNLOCK TABLES").await;
            let (gtid, status) = opened.map_err(err("opening the snapshot"))?;
            unlocked.map_err(err("unlocking tables"))?;
            match gtid {
                Some((mode, set)) if mode == "ON" => Ok(BinlogPosition::MySql(
                    MySqlGtidSet::parse(&set).map_err(Error::source_fatal)?,
                )),
                _ => {
                    let row = status.ok_or_else(|| {
                        Error::source_fatal("SHOW MASTER STATUS is empty: enable the binary log (log_bin)")
                    })?;
                    let file: Option<String> = row.get(0);
                    let pos: Option<u64> = row.get(1);
                    Ok(BinlogPosition::File {
                        file: file.unwrap_or_default(),
                        pos: pos.unwrap_or(4),
                    })
                }
            }
        }
    }
}

/// Reads every table inside the open snapshot transaction and sends it as one source
/// transaction at `position`. Returns the number of rows.
pub async fn copy_tables(
    conn: &mut Conn,
    tables: &[SourceTable],
    position: &BinlogPosition,
    zero: ZeroDates,
    events: &mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    let gone = || Error::shutdown();
    events
        .send(SourceEvent::Begin(TxInfo {
            position: Position(position.to_string()),
            commit_time_us: now_us(),
        }))
        .await
        .map_err(|_| gone())?;
    let mut total = 0;
    for t in tables {
        let started = Instant::now();
        let n = copy_table(conn, t, zero, events).await?;
        info!(
            table = %t.schema.id,
            rows = n,
            rows_per_sec = (n as f64 / started.elapsed().as_secs_f64().max(1e-9)) as u64,
            "table copied"
        );
        total += n;
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| my_error(e, "ending the snapshot transaction"))?;
    events.send(SourceEvent::Commit).await.map_err(|_| gone())?;
    Ok(total)
}

async fn copy_table(
    conn: &mut Conn,
    t: &SourceTable,
    zero: ZeroDates,
    events: &mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    let schema = &t.schema;
    let id = &schema.id;
    let cols: Vec<String> = schema.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let from = format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name));
    let keys: Vec<&String> = schema.key.iter().map(|&k| &cols[k]).collect();
    let select = format!("SELECT {} FROM {from}", cols.join(", "));
    let order = keys
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let first = format!("{select} ORDER BY {order} LIMIT {CHUNK_ROWS}");
    // Keyset pagination: (k1 > ?) OR (k1 = ? AND k2 > ?) OR ..., which every optimizer turns
    // into index ranges (row-constructor comparisons are not always).
    let next = {
        let mut ors = Vec::new();
        for i in 0..keys.len() {
            let mut ands: Vec<String> = keys[..i].iter().map(|k| format!("{k} = ?")).collect();
            ands.push(format!("{} > ?", keys[i]));
            ors.push(format!("({})", ands.join(" AND ")));
        }
        format!(
            "{select} WHERE {} ORDER BY {order} LIMIT {CHUNK_ROWS}",
            ors.join(" OR ")
        )
    };
    let ctx = |e| my_error(e, &format!("reading {id}"));
    let mut total = 0u64;
    let mut batch = Vec::with_capacity(EVENT_ROWS);
    let mut last_key: Option<Vec<My>> = None;
    loop {
        let params: Vec<My> = match &last_key {
            Some(k) => (0..k.len()).flat_map(|i| k[..=i].iter().cloned()).collect(),
            None => Vec::new(),
        };
        // Keyless tables are read in one streamed query (there is no order to page by).
        let sql = match (&last_key, schema.key.is_empty()) {
            (_, true) => &select,
            (None, false) => &first,
            (Some(_), false) => &next,
        };
        let mut result = conn.exec_iter(sql.as_str(), params).await.map_err(ctx)?;
        let mut n = 0;
        while let Some(row) = result.next().await.map_err(ctx)? {
            n += 1;
            let mut values = row.unwrap();
            if !schema.key.is_empty() {
                last_key = Some(schema.key.iter().map(|&k| values[k].clone()).collect());
            }
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.drain(..).enumerate() {
                out.push(
                    convert(&t.kinds[i], v, Origin::Snapshot, zero).map_err(|e| {
                        Error::source_fatal(format!("{id}.{}: {e}", schema.columns[i].name))
                    })?,
                );
            }
            batch.push(Change {
                table: schema.clone(),
                kind: ChangeKind::Snapshot,
                row: out,
                old: None,
            });
            if batch.len() == EVENT_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(EVENT_ROWS));
                events
                    .send(SourceEvent::Changes(full))
                    .await
                    .map_err(|_| Error::shutdown())?;
            }
        }
        drop(result);
        total += n as u64;
        if schema.key.is_empty() || n < CHUNK_ROWS {
            break;
        }
    }
    if !batch.is_empty() {
        events
            .send(SourceEvent::Changes(batch))
            .await
            .map_err(|_| Error::shutdown())?;
    }
    Ok(total)
}
