//! Consistent snapshots of the source and where they stand in the binlog.
//!
//! - MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` publishes the binlog position of
//!   that snapshot in `binlog_snapshot_file/position` (no lock at all), turned into the GTID
//!   state to resume from by `gtid_pos`.
//! - MySQL with GTIDs, for chunks of keyed tables ([`snapshot_without_lock`]): no lock; the
//!   snapshot is known to hold every transaction of a `gtid_executed` read before it opened,
//!   and to show none past the binlog's end read after it opened (the argument is on the
//!   function).
//! - MySQL otherwise (GTIDs off; a keyless table's copy, which needs its exact position; a
//!   table that becomes readable while streaming; `verify`): the same transaction started
//!   under a brief `FLUSH TABLES WITH READ LOCK` (needs RELOAD), reading `@@gtid_executed` /
//!   the binlog position before unlocking.
//!
//! And the single-transaction initial snapshot of a destination that does not copy in chunks:
//! every selected table read inside one such transaction, in primary-key chunks, streamed to
//! the apply loop as one source transaction.

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
use crate::conn::{binlog_status_statements, my_error, Flavor};
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
                let status = binlog_status(conn).await?;
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
                _ => binlog_end(status),
            }
        }
    }
}

/// The binlog's end of a MySQL server ([`binlog_status_statements`]: one round trip for the
/// statement its version knows, the other only if that fails).
async fn binlog_status(conn: &mut Conn) -> mysql_async::Result<Option<Row>> {
    let [likely, other] = binlog_status_statements(Flavor::MySql, conn.server_version());
    match conn.query_first(likely).await {
        Ok(row) => Ok(row),
        Err(_) => conn.query_first(other).await,
    }
}

/// The binlog's end (file and offset) from a [`binlog_status`] row.
fn binlog_end(status: Option<Row>) -> Result<BinlogPosition> {
    let row = status.ok_or_else(|| {
        Error::source_fatal("SHOW MASTER STATUS is empty: the binary log is off")
            .with_fix("start the server with log_bin")
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    Ok(BinlogPosition::File {
        file: file.unwrap_or_default(),
        pos: pos.unwrap_or(4),
    })
}

/// MySQL's `@@global.gtid_executed` when `gtid_mode` is `ON`; `None` when GTIDs are off (or
/// only being switched on: `OFF_PERMISSIVE`, `ON_PERMISSIVE` still log anonymous
/// transactions).
pub async fn mysql_gtid_executed(conn: &mut Conn) -> Result<Option<MySqlGtidSet>> {
    let row: Option<(String, String)> = conn
        .query_first("SELECT @@global.gtid_mode, @@global.gtid_executed")
        .await
        .map_err(|e| my_error(e, "reading gtid_mode and gtid_executed"))?;
    match row {
        Some((mode, set)) if mode == "ON" => Ok(Some(
            MySqlGtidSet::parse(&set).map_err(Error::source_fatal)?,
        )),
        _ => Ok(None),
    }
}

/// `@@global.gtid_executed` of a MySQL server whose tables are copied in chunks (it had
/// `gtid_mode = ON` when the run started).
pub async fn gtid_executed_while_chunked(conn: &mut Conn) -> Result<MySqlGtidSet> {
    mysql_gtid_executed(conn).await?.ok_or_else(|| {
        Error::source_fatal("gtid_mode was switched off while copying in chunks")
            .with_fix("SET GLOBAL gtid_mode = ON, then start tidewater again")
    })
}

/// MySQL with GTIDs: opens a consistent snapshot on `conn`, without any lock, that holds
/// every transaction of `delivered` (rule 1 of `tidewater_core::copy`), and returns the
/// binlog's end read once it is open: its horizon (rule 4). Which transactions between the
/// two it shows is not known, which a keyed table's chunk does not need (rule 2); a keyless
/// table's copy does (rule 3), and takes [`snapshot_covering`] instead.
///
/// **Why it holds every delivered transaction.** MySQL's binlog group commit makes a group's
/// transactions visible in InnoDB (`finish_transaction_in_engines` in the commit stage) and
/// only then adds their GTIDs to `gtid_executed` (`Gtid_state::update_commit_group`; a
/// transaction committing on its own, with `binlog_order_commits` off, does the same in
/// `finish_commit`). So a transaction whose GTID is in a `gtid_executed` read is visible to a
/// read view created after that read. The set is read first, `delivered` (the stream's
/// executed set: the transactions it delivered and those before its start) must be in it,
/// else it is read again, and only then does `START TRANSACTION WITH CONSISTENT SNAPSHOT`
/// create the read view. A plain position read would not do: the binlog dump sends a
/// transaction once its events are written (flush and sync stages), before its InnoDB commit,
/// so the stream can deliver a transaction a new snapshot does not show yet.
///
/// **Why the horizon is past everything it shows.** A transaction the read view shows had
/// finished its InnoDB commit before the view was created, and the commit stage follows the
/// flush stage that wrote its events to the binlog file, so the binlog's end read after the
/// snapshot opened is at or past its end. The stream compares it with the end of the last
/// event it read (`Stream::passed`).
pub async fn snapshot_without_lock(
    conn: &mut Conn,
    delivered: &MySqlGtidSet,
) -> Result<BinlogPosition> {
    let err = |what: &'static str| move |e| my_error(e, what);
    let waiting = Instant::now();
    let mut retries = 0u32;
    loop {
        let executed = gtid_executed_while_chunked(conn).await?;
        if executed.includes(delivered) {
            break;
        }
        retries += 1;
        wait_for_visibility(
            waiting,
            retries,
            &delivered.to_string(),
            &executed.to_string(),
        )
        .await?;
    }
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(err("setting the snapshot isolation level"))?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(err("starting the snapshot transaction"))?;
    let status = binlog_status(conn)
        .await
        .map_err(err("reading the binlog's end after the snapshot opened"))?;
    binlog_end(status)
}

/// One more try of a snapshot that missed a transaction the stream delivered: fails after
/// `MAX_WAIT`, says so after `TELL_AFTER` tries, and waits a little longer each time.
async fn wait_for_visibility(
    waiting: Instant,
    retries: u32,
    stream: &str,
    snapshot: &str,
) -> Result<()> {
    if waiting.elapsed() > MAX_WAIT {
        return Err(Error::source_retryable(format!(
            "the binlog stream is at {stream} but new snapshots stay at {snapshot}"
        )));
    }
    if retries == TELL_AFTER {
        info!(stream, snapshot, "a snapshot waits for a transaction the stream delivered to become visible at the source (it is in the binlog, but not visible yet)");
    }
    tokio::time::sleep(Duration::from_micros(100 << retries.min(9))).await;
    Ok(())
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
        wait_for_visibility(waiting, retries, &position.to_string(), &at.to_string()).await?;
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
