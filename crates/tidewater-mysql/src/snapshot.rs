//! The initial snapshot: every selected table read inside one consistent-snapshot
//! transaction whose binlog position is known exactly, in primary-key chunks, streamed to the
//! apply loop as one source transaction.
//!
//! - MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` publishes the binlog position of
//!   that snapshot in `binlog_snapshot_file/position` (no lock at all), turned into the GTID
//!   state to resume from by `gtid_pos`.
//! - MySQL: the same transaction started under a brief `FLUSH TABLES WITH READ LOCK` (needs
//!   RELOAD), reading `@@gtid_executed` / the binlog position before unlocking.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tidewater_core::copy_rows::SnapshotRows;
use tidewater_core::stats::now_us;
use tidewater_core::{Error, Position, Result, SourceEvent, TableId, TxInfo};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::catalog::SourceTable;
use crate::conn::{my_error, Flavor};
use crate::gtid::MySqlGtidSet;
use crate::gtid_pos::{gtid_at, GtidMemo};
use crate::position::BinlogPosition;
pub use crate::read::quote_ident;
use crate::read::{read_table, ReadOptions};
use crate::value::ZeroDates;

/// Changes per event sent to the apply loop.
const EVENT_ROWS: usize = 1024;
/// A snapshot that misses a transaction it must hold is taken again for at most this long.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// After this many snapshots in a row that miss such a transaction, the wait is logged.
const TELL_AFTER: u32 = 20;

/// Opens the consistent snapshot and returns the position it corresponds to (`memo`: one per
/// copy, see [`crate::gtid_pos`]).
pub async fn begin_snapshot(
    conn: &mut Conn,
    flavor: Flavor,
    memo: Option<&GtidMemo>,
) -> Result<BinlogPosition> {
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
            let (gtid, derived) = gtid_at(conn, &file, pos, memo).await?;
            debug!(file, pos, ?derived, "snapshot position");
            Ok(match gtid {
                Some(state) => BinlogPosition::MariaDb(state),
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
                        Error::source_fatal(
                            "SHOW MASTER STATUS is empty: enable the binary log (log_bin)",
                        )
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

/// Opens a consistent snapshot on `conn` that holds every transaction up to `position` (the
/// binlog stream's: everything it has delivered), and returns its position. MariaDB writes a
/// transaction to the binlog before its InnoDB commit is visible, so a snapshot opened right
/// after the stream read a commit can miss it: such a snapshot is taken again, before any row
/// is read (its position has not reached `position`). MySQL's path reads its position under
/// a global read lock, which orders it with commits.
pub async fn snapshot_covering(
    conn: &mut Conn,
    flavor: Flavor,
    position: &BinlogPosition,
    memo: Option<&GtidMemo>,
) -> Result<BinlogPosition> {
    let waiting = Instant::now();
    let mut retries = 0u32;
    loop {
        let at = begin_snapshot(conn, flavor, memo).await?;
        if flavor != Flavor::MariaDb || at.reached(position) {
            if retries > 0 {
                debug!(
                    retries,
                    "snapshot taken again until it showed every delivered transaction"
                );
            }
            return Ok(at);
        }
        conn.query_drop("ROLLBACK")
            .await
            .map_err(|e| my_error(e, "ending a snapshot that missed a delivered commit"))?;
        retries += 1;
        if waiting.elapsed() > MAX_WAIT {
            return Err(Error::source_retryable(format!(
                "the binlog stream is at {position} but new snapshots stay at {at}"
            )));
        }
        if retries == TELL_AFTER {
            info!(stream = %position, snapshot = %at, "a snapshot waits for a transaction the stream delivered to become visible at the source (it is in the binlog, but not visible yet)");
        }
        tokio::time::sleep(Duration::from_micros(100 << retries.min(9))).await;
    }
}

/// Reads every table inside the open snapshot transaction and sends it as one source
/// transaction at `position`. Returns the number of rows. The replica's rows of a table in
/// `recopy` (one it holds already) are removed first, in the same transaction: a truncate
/// that carries the table's new definition.
pub async fn copy_tables(
    conn: &mut Conn,
    tables: &[SourceTable],
    recopy: &HashSet<TableId>,
    position: &BinlogPosition,
    zero: ZeroDates,
    events: &mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    let gone = || Error::shutdown();
    events
        .send(SourceEvent::Begin(TxInfo {
            position: Position(position.to_string()),
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        }))
        .await
        .map_err(|_| gone())?;
    let mut total = 0;
    for t in tables {
        if recopy.contains(&t.schema.id) {
            events
                .send(SourceEvent::Truncate(vec![t.schema.clone()]))
                .await
                .map_err(|_| gone())?;
        }
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
    let opts = ReadOptions {
        keys: None,
        chunk_rows: EVENT_ROWS,
        zero_dates: zero,
    };
    let mut out = SnapshotRows::new(t.schema.clone(), events);
    read_table(conn, t, &opts, &mut out).await
}
