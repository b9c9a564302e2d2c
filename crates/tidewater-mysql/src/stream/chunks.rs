//! The chunked initial snapshot on MariaDB (the rules are in `tidewater_core::copy`): between
//! two binlog transactions, the next chunk of a table still copying is read in its own short
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` on an ordinary connection, while the
//! binlog stream waits.
//!
//! **The chunk holds every delivered transaction (rule 1).** MariaDB publishes the binlog
//! position exactly consistent with a consistent-snapshot transaction
//! (`binlog_snapshot_file/position`, turned into a GTID state with `BINLOG_GTID_POS`): the
//! snapshot shows every transaction logged before it and none after. MariaDB writes a
//! transaction to the binlog before its InnoDB commit is visible, so the stream can deliver a
//! transaction a new snapshot does not show yet; then that snapshot's position has not reached
//! the stream's (the GTID state after the last transaction read), and the chunk is read again.
//!
//! **The horizon** is the snapshot's own GTID state: once the stream's position reaches it,
//! every transaction the chunk shows has been delivered.
//!
//! **Keyless tables** are one chunk: their row events are dropped until it, and afterwards
//! those of transactions the snapshot's position includes, until the stream reaches it.
//!
//! **MySQL** (with GTIDs; a server with `gtid_mode` off keeps the single-transaction snapshot)
//! has no exact position of a consistent snapshot without a lock. A keyed table's chunk does
//! not need one: its snapshot is opened after a `gtid_executed` read that holds every
//! delivered transaction (rule 1), and its horizon is the binlog's end read after it opened,
//! compared with the end of the last event the stream read
//! (`snapshot::snapshot_without_lock`, where the argument is). A keyless table's copy needs
//! the exact set of transactions it shows (rule 3), so it is read under the brief
//! `FLUSH TABLES WITH READ LOCK` of `snapshot::begin_snapshot` (RELOAD), as before.

use std::ops::{Deref, DerefMut};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidewater_core::copy::{self, ChunkRead, ChunkSize, KeyRange};
use tidewater_core::copy_rows::SnapshotRows;
use tidewater_core::stats::now_us;
use tidewater_core::{CopyProgress, Position, Result, SourceEvent, TableId, TxInfo};

use super::Stream;
use crate::catalog::SourceTable;
use crate::conn::{connect, my_error, Flavor};
use crate::gtid_pos::GtidMemo;
use crate::position::BinlogPosition;
use crate::read::{chunk_bounds, read_chunk};
use crate::snapshot::{snapshot_covering, snapshot_without_lock};
use crate::value::ZeroDates;

/// The copy under way: the source-neutral state, and the connections chunks are read on
/// (opened at the first chunk; one per chunk of a parallel round).
pub struct Copying {
    copy: copy::Copying<BinlogPosition>,
    conns: Vec<Conn>,
    gtids: GtidMemo,
}

impl Copying {
    pub fn new(
        size: ChunkSize,
        progress: Vec<CopyProgress>,
        keyless: impl Fn(&TableId) -> bool,
    ) -> Copying {
        let horizon = |h: &str| BinlogPosition::parse(h).ok();
        Copying {
            copy: copy::Copying::new(size, progress, keyless, horizon),
            conns: Vec::new(),
            gtids: GtidMemo::default(),
        }
    }

    /// Whether a change of `table` in the transaction ending at `after` is dropped (keyless
    /// tables only: the copy holds it, or holds the table's rows after it).
    pub fn drops(&self, table: &TableId, after: &BinlogPosition) -> bool {
        self.copy.drops(table, |at| at.reached(after))
    }
}

impl Deref for Copying {
    type Target = copy::Copying<BinlogPosition>;
    fn deref(&self) -> &Self::Target {
        &self.copy
    }
}

impl DerefMut for Copying {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.copy
    }
}

/// Reads `range` on `conn` in a consistent snapshot that holds every transaction the stream
/// has delivered up to `position` (`snapshot::snapshot_covering`, rule 1 of the module
/// comment); returns its rows, still held in `out`, and the snapshot's position.
async fn read_range<'a>(
    conn: &mut Conn,
    table: &SourceTable,
    range: &KeyRange,
    limit: usize,
    position: &BinlogPosition,
    (zero, gtids, flavor): (ZeroDates, &GtidMemo, Flavor),
    mut out: SnapshotRows<'a>,
) -> Result<(SnapshotRows<'a>, u64, BinlogPosition)> {
    let at = match (flavor, position) {
        (Flavor::MySql, BinlogPosition::MySql(delivered)) if table.schema.has_key() => {
            snapshot_without_lock(conn, delivered).await?
        }
        _ => snapshot_covering(conn, flavor, position, Some(gtids)).await?,
    };
    let rows = read_chunk(conn, table, range, limit, zero, &mut out).await?;
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| my_error(e, "ending a snapshot chunk"))?;
    Ok((out, rows, at))
}

impl Stream {
    /// Opens a consistent snapshot on `conn` that holds every transaction the stream has
    /// delivered (`snapshot::snapshot_covering`, rule 1 of the module comment). Every copy
    /// taken while streaming (chunks, re-copies) needs this: a copy missing a delivered
    /// transaction would overwrite that transaction's changes with older rows.
    pub(super) async fn snapshot_covering_stream(
        &self,
        conn: &mut Conn,
        flavor: Flavor,
    ) -> Result<BinlogPosition> {
        let gtids = self.copy.as_ref().map(|c| &c.gtids);
        snapshot_covering(conn, flavor, &self.position, gtids).await
    }

    /// Reads and sends the next chunk of the first table still copying, as one transaction at
    /// the stream's position, with the table's progress; or the next `[snapshot] parallelism`
    /// chunks of it at once, on as many connections ("Parallel reads" in
    /// `tidewater_core::copy`): the server finds the keys that end all but the last, each range
    /// is read in its own consistent snapshot that holds every delivered transaction, and they
    /// are sent in key order, each with its progress. The first range's rows may go to the
    /// queue while it is read (past `copy_rows::HOLD_BYTES`); the others are held whole (a
    /// range holds about one chunk: its bound is the `limit`-th key).
    pub(super) async fn copy_chunk(&mut self) -> Result<()> {
        let started = Instant::now();
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        let Some((i, id)) = copy.next() else {
            return Ok(());
        };
        let key = (id.schema.clone(), id.name.clone());
        let Some(table) = self.tables.get(&key).cloned() else {
            copy.gone(i);
            return Ok(());
        };
        let has_key = table.schema.has_key();
        let readers = copy.readers(i, has_key);
        let (limit, after) = (copy.limit(i), copy.progress[i].last_key_values());
        let mut conns = std::mem::take(&mut copy.conns);
        while conns.len() < readers {
            conns.push(connect(&self.url).await?);
        }
        let bounds = match readers {
            1 => Vec::new(),
            _ => chunk_bounds(&mut conns[0], &table, after, limit, readers - 1, self.zero).await?,
        };
        let ranges = self.copy.as_mut().expect("copying").ranges(i, bounds);
        let tx = TxInfo {
            position: Position(self.position.to_string()),
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        };
        let (events, position, zero, flavor) =
            (&self.events, &self.position, self.zero, self.flavor);
        let gtids = &self.copy.as_ref().expect("copying").gtids;
        let reads = ranges.iter().zip(conns.iter_mut()).enumerate();
        let reads = reads.map(|(j, (range, conn))| {
            // The rows are held until the chunk's transaction has ended (`copy_rows`), then
            // sent as one transaction after everything delivered so far.
            let out = SnapshotRows::chunk(table.schema.clone(), events, tx.clone());
            read_range(
                conn,
                &table,
                range,
                limit,
                position,
                (zero, gtids, flavor),
                out.holding_all(j > 0),
            )
        });
        let reads = futures_util::future::try_join_all(reads).await?;
        for (range, (out, rows, at)) in ranges.into_iter().zip(reads) {
            let bytes = out.bytes;
            let last_key = out.release().await?;
            let chunk = ChunkRead {
                limit,
                rows,
                bytes,
                last_key,
                upto: range.upto,
                horizon: at.to_string(),
                at,
            };
            let copy = self.copy.as_mut().expect("copying");
            let progress = copy.chunk_read(i, chunk, has_key, started);
            self.send(SourceEvent::Progress(vec![progress])).await?;
            self.send(SourceEvent::Commit).await?;
        }
        // The parallel round's other connections are closed once no table is left to copy (a
        // later copy opens them again), so that idle sessions do not linger for the whole run.
        let copy = self.copy.as_mut().expect("copying");
        if !copy.copying() {
            conns.truncate(1);
        }
        copy.conns = conns;
        // An idle stream may already have read past the last chunk's horizon: the table is
        // consistent now, not at the next transaction or heartbeat.
        self.passed().await
    }

    /// Between transactions: marks done tables consistent once the stream's position has
    /// reached their last chunk's (sent as its own empty transaction at that position).
    pub(super) async fn passed(&mut self) -> Result<()> {
        if self.tx.is_some() {
            return Ok(());
        }
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        let (position, read_to) = (&self.position, (&*self.file, self.event_end));
        let (marked, _) = copy.mark_passed(|h| {
            BinlogPosition::parse(h)
                .ok()
                .is_none_or(|h| passed_horizon(position, read_to, &h))
        });
        if marked.is_empty() {
            return Ok(());
        }
        let tx = TxInfo {
            position: Position(self.position.to_string()),
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        };
        self.send(SourceEvent::Begin(tx)).await?;
        self.send(SourceEvent::Progress(marked)).await?;
        self.send(SourceEvent::Commit).await
    }
}

/// Whether the stream, after the transaction that ends at `position` and having read the
/// binlog up to `read_to` (file, end of its last event), has delivered every transaction a
/// chunk with this horizon shows. A binlog end (MySQL's lock-free chunks, read after the
/// snapshot opened) is compared with how far the stream has read: every transaction that
/// ends before it has been read whole and, between transactions, delivered. A position of
/// the stream's own form is compared as positions are.
fn passed_horizon(
    position: &BinlogPosition,
    (file, end): (&str, u64),
    horizon: &BinlogPosition,
) -> bool {
    match (position, horizon) {
        (BinlogPosition::File { .. }, _) => position.reached(horizon),
        (_, BinlogPosition::File { .. }) => BinlogPosition::File {
            file: file.to_string(),
            pos: end,
        }
        .reached(horizon),
        _ => position.reached(horizon),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> BinlogPosition {
        BinlogPosition::parse(s).unwrap()
    }

    #[test]
    fn a_binlog_end_horizon_is_passed_by_what_the_stream_has_read() {
        let gtids = at("mysql-gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42");
        let horizon = at("binlog:binlog.000007:1500");
        // Read up to the horizon or past it, in the same file or a later one.
        assert!(passed_horizon(&gtids, ("binlog.000007", 1500), &horizon));
        assert!(passed_horizon(&gtids, ("binlog.000007", 2200), &horizon));
        assert!(passed_horizon(&gtids, ("binlog.000008", 120), &horizon));
        // Not yet: short of it, an earlier file, or no file read at all.
        assert!(!passed_horizon(&gtids, ("binlog.000007", 1499), &horizon));
        assert!(!passed_horizon(&gtids, ("binlog.000006", 9000), &horizon));
        assert!(!passed_horizon(&gtids, ("", 0), &horizon));
        // A horizon of the stream's own form is compared as positions are (the read offset
        // does not matter): GTID sets, and file positions when GTIDs are off.
        let exact = at("mysql-gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-40");
        assert!(passed_horizon(&gtids, ("", 0), &exact));
        let later = at("mysql-gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-43");
        assert!(!passed_horizon(&gtids, ("binlog.000009", 4), &later));
        let file = at("binlog:binlog.000007:900");
        assert!(passed_horizon(
            &file,
            ("binlog.000001", 0),
            &at("binlog:binlog.000007:900")
        ));
        assert!(!passed_horizon(&file, ("binlog.000009", 0), &horizon));
    }
}
