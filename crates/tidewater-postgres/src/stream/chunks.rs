//! The chunked initial snapshot on PostgreSQL (the rules are in `tidewater_core::copy`):
//! between two stream transactions, the next chunk of a table still copying is read in its own
//! short `REPEATABLE READ READ ONLY` transaction on the SQL connection, while the replication
//! stream waits (keepalives are still answered).
//!
//! **The chunk holds every delivered transaction (rule 1).** The chunk transaction's first
//! statement takes its snapshot and returns it (`pg_current_snapshot()`), then the WAL insert
//! position (`pg_current_wal_lsn()`), read after the snapshot was taken. The stream remembers
//! the xid of every transaction it delivered (pgoutput's BEGIN) since a chunk's snapshot last
//! showed them all: a delivered transaction is committed, so it is visible to a snapshot unless
//! its xid is at or past the snapshot's `xmax` or in its `xip` list (still in the proc array:
//! PostgreSQL writes the commit record, which the walsender may already have decoded and sent,
//! before the committing backend leaves the proc array). Such a snapshot is discarded before
//! any row is read, and a new one taken. A transaction once visible to a snapshot is visible
//! to every later one, so the list is cleared after each accepted snapshot and stays short.
//! Xids in BEGIN are 32-bit; the snapshot's are 64-bit (epoch and xid): a delivered xid is at
//! most 2^31 older than the snapshot's `xmax`, which places it in its epoch.
//!
//! **The horizon.** Every transaction the snapshot shows committed has its commit record
//! before the WAL position read after it. Once the stream delivers a transaction whose commit
//! is at or past it (or a keepalive reports the server's WAL past it while the stream is
//! between transactions), everything committed before it has been delivered.
//!
//! **Keyless tables** are one chunk: the stream drops their changes until it, and afterwards
//! the changes of transactions visible to its snapshot (stored with the progress, so a restart
//! keeps dropping them), until the stream passes its horizon.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::copy::{self, ChunkRead, ChunkSize, KeyRange};
use tidewater_core::copy_rows::SnapshotRows;
use tidewater_core::{CopyProgress, Error, Result, SourceEvent, TableId, TableSchema};
use tokio_postgres::Client;
use tracing::{debug, info};

use super::{State, Stream};
use crate::conn::{connect, format_lsn, parse_lsn, pg_error};
use crate::read::{chunk_bounds, read_chunk};

/// A snapshot that misses a delivered transaction is taken again for at most this long
/// before the copy gives up (the race lasts microseconds; a synchronous standby that does not
/// answer can hold a committed transaction invisible for longer).
const MAX_WAIT: Duration = Duration::from_secs(120);
/// After this many snapshots in a row that miss a delivered transaction, the wait is logged.
const TELL_AFTER: u32 = 20;
/// After this many looks at a joining table's barrier (a few seconds), the wait is logged.
const TELL_HELD_AFTER: u32 = 5;

/// A snapshot as `pg_current_snapshot()` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSnapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl PgSnapshot {
    /// Parses `xmin:xmax:xip1,xip2,...`.
    pub fn parse(s: &str) -> Option<PgSnapshot> {
        let mut parts = s.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        parts
            .next()
            .is_none()
            .then_some(PgSnapshot { xmin, xmax, xip })
    }

    /// Whether the committed transaction with this 32-bit xid is visible to the snapshot.
    pub fn shows(&self, xid: u32) -> bool {
        // How far the xid is below xmax, modulo 2^32: a committed xid older than xmax by less
        // than 2^31 (every recent one); 0 or "ahead" means at or past xmax.
        let below = (self.xmax as u32).wrapping_sub(xid);
        if below == 0 || below > 1 << 31 {
            return false;
        }
        let full = self.xmax - u64::from(below);
        full < self.xmin || !self.xip.contains(&full)
    }

    fn text(&self) -> String {
        let xip: Vec<String> = self.xip.iter().map(u64::to_string).collect();
        format!("{}:{}:{}", self.xmin, self.xmax, xip.join(","))
    }
}

/// A chunk's horizon and snapshot, stored as the progress's opaque `horizon`: `LSN|snapshot`.
pub fn horizon_text(lsn: u64, snapshot: &PgSnapshot) -> String {
    format!("{}|{}", format_lsn(lsn), snapshot.text())
}

pub fn parse_horizon(h: &str) -> Option<(u64, PgSnapshot)> {
    let (lsn, snap) = h.split_once('|')?;
    Some((parse_lsn(lsn)?, PgSnapshot::parse(snap)?))
}

/// The copy under way: the source-neutral state, the xids of the transactions delivered
/// since a chunk's snapshot last showed them all, and the joining tables' barriers.
pub struct Copying {
    copy: copy::Copying<PgSnapshot>,
    /// The source's URL, and the connections beside the stream's SQL session that read the
    /// other chunks of a parallel round (opened at the first round).
    url: String,
    readers: Vec<Client>,
    delivered: Vec<u32>,
    /// Per table that joined (see `join`): the transactions that were running when it was
    /// published. Its first chunk is read only once none of them runs any more.
    barriers: HashMap<TableId, Vec<u64>>,
    /// While a joining table's barrier holds: when to look again, and how many looks so far.
    held: Option<(Instant, u32)>,
}

impl Copying {
    pub fn new(
        size: ChunkSize,
        progress: Vec<CopyProgress>,
        keyless: impl Fn(&TableId) -> bool,
        url: String,
    ) -> Copying {
        let horizon = |h: &str| parse_horizon(h).map(|h| h.1);
        // A joined table not copied yet keeps its barrier in its horizon (see `join`).
        let barriers = progress
            .iter()
            .filter(|p| !p.done && p.chunks == 0)
            .filter_map(|p| Some((p.table.clone(), parse_horizon(p.horizon.as_deref()?)?.1.xip)))
            .filter(|(_, xip)| !xip.is_empty())
            .collect();
        Copying {
            copy: copy::Copying::new(size, progress, keyless, horizon),
            url,
            readers: Vec::new(),
            delivered: Vec::new(),
            barriers,
            held: None,
        }
    }

    /// A table joins the replica (`crate::join`: it was just published, or is selected and
    /// not held yet): its copy starts with a barrier, `snapshot` taken after it was published.
    /// Its changes in transactions that commit after it is published stream from then on;
    /// those that committed before are only in its rows, and one of them may not be visible
    /// yet (its commit logged, but its backend not out of the proc array), running as far as
    /// `snapshot` can tell. So the first chunk is read only once every transaction running in
    /// `snapshot` has ended: that is what a new slot's consistent point waits for too. The
    /// barrier is stored as the progress's horizon, until the first chunk replaces it.
    pub fn join(&mut self, table: TableId, keyless: bool, snapshot: &PgSnapshot) -> CopyProgress {
        let mut progress = self.copy.restart(table.clone(), keyless);
        progress.horizon = Some(horizon_text(0, snapshot));
        if let Some(p) = self.copy.progress.iter_mut().find(|p| p.table == table) {
            p.horizon = progress.horizon.clone();
        }
        if snapshot.xip.is_empty() {
            self.barriers.remove(&table);
        } else {
            self.barriers.insert(table, snapshot.xip.clone());
        }
        progress
    }

    /// Until when no chunk is read: a joining table's barrier holds.
    pub fn held_until(&self) -> Option<Instant> {
        self.held
            .map(|(at, _)| at)
            .filter(|at| *at > Instant::now())
    }

    /// A stream transaction with this xid was delivered.
    pub fn delivered(&mut self, xid: u32) {
        self.delivered.push(xid);
    }

    /// Forgets the delivered transactions `snapshot` shows: every later snapshot shows them.
    fn forget_shown(&mut self, snapshot: &PgSnapshot) {
        self.delivered.retain(|&x| !snapshot.shows(x));
    }

    /// Whether a change of `table` in the transaction `xid` is dropped (keyless tables only).
    pub fn drops(&self, table: &TableId, xid: u32) -> bool {
        self.copy.drops(table, |snap| snap.shows(xid))
    }
}

impl Deref for Copying {
    type Target = copy::Copying<PgSnapshot>;
    fn deref(&self) -> &Self::Target {
        &self.copy
    }
}

impl DerefMut for Copying {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.copy
    }
}

/// Opens a chunk transaction; returns its snapshot and the WAL position read after it.
async fn begin_chunk(client: &Client) -> Result<(PgSnapshot, u64)> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| pg_error(e, "opening a snapshot chunk"))?;
    // One statement: the snapshot is taken when it starts, the WAL position read after.
    let row = client
        .query_one(
            "SELECT pg_current_snapshot()::text, pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading the chunk's snapshot"))?;
    let (snap, lsn): (String, String) = (row.get(0), row.get(1));
    match (PgSnapshot::parse(&snap), parse_lsn(&lsn)) {
        (Some(s), Some(l)) => Ok((s, l)),
        _ => Err(Error::source_fatal(format!(
            "unexpected snapshot {snap} or WAL position {lsn}"
        ))),
    }
}

/// A snapshot taken now, outside any transaction.
pub(super) async fn current_snapshot(client: &Client) -> Result<PgSnapshot> {
    let row = client
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(|e| pg_error(e, "reading the current snapshot"))?;
    let snap: String = row.get(0);
    PgSnapshot::parse(&snap)
        .ok_or_else(|| Error::source_fatal(format!("unexpected snapshot {snap}")))
}

async fn end_chunk(client: &Client, commit: bool) -> Result<()> {
    client
        .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
        .await
        .map_err(|e| pg_error(e, "ending a snapshot chunk"))
}

/// Opens a chunk transaction on `client` whose snapshot shows every transaction in
/// `delivered` (rule 1): one that misses one (its commit is logged, but it has not left the
/// proc array yet) is rolled back before any row is read, and taken again. Returns the
/// snapshot, the WAL position read after it, and how many snapshots were taken again.
async fn covering_chunk(client: &Client, delivered: &[u32]) -> Result<(PgSnapshot, u64, u32)> {
    let waiting = Instant::now();
    let mut retries = 0u32;
    loop {
        let (snapshot, horizon) = begin_chunk(client).await?;
        let Some(xid) = delivered.iter().copied().find(|&x| !snapshot.shows(x)) else {
            return Ok((snapshot, horizon, retries));
        };
        end_chunk(client, false).await?;
        retries += 1;
        let waited = waiting.elapsed();
        if waited > MAX_WAIT {
            return Err(Error::source_retryable(format!(
                "transaction {xid}, delivered by the replication stream, stayed invisible to \
                 new snapshots for {} s",
                waited.as_secs()
            )));
        }
        if retries == TELL_AFTER {
            info!(xid, snapshot = %snapshot.text(), "a snapshot chunk waits for a transaction the stream delivered to become visible at the source (its commit is logged, but not visible yet)");
        }
        tokio::time::sleep(Duration::from_micros(100 << retries.min(9))).await;
    }
}

/// One range of a parallel round, read and its transaction ended; its rows still held.
struct RangeRead<'a> {
    out: SnapshotRows<'a>,
    rows: u64,
    snapshot: PgSnapshot,
    horizon: u64,
    retries: u32,
}

/// Reads `range` in its own chunk transaction on `client` (see [`covering_chunk`]).
async fn read_range<'a>(
    client: &Client,
    schema: &TableSchema,
    range: &KeyRange,
    limit: usize,
    delivered: &[u32],
    mut out: SnapshotRows<'a>,
) -> Result<RangeRead<'a>> {
    let (snapshot, horizon, retries) = covering_chunk(client, delivered).await?;
    let rows = read_chunk(client, schema, range, limit, &mut out).await?;
    end_chunk(client, true).await?;
    Ok(RangeRead {
        out,
        rows,
        snapshot,
        horizon,
        retries,
    })
}

impl Stream<'_> {
    /// While no table is being copied, the delivered transactions are still tracked (a copy
    /// that starts later must show them: see `tidewater_core::copy`, "Copies again"); those a
    /// current snapshot shows are forgotten, so the list holds only the last few seconds'.
    pub(super) async fn forget_visible(&mut self, st: &mut State) -> Result<()> {
        let Some(copy) = self.copy.as_ref() else {
            return Ok(());
        };
        if copy.delivered.is_empty() || copy.copying() {
            return Ok(());
        }
        let client = self.client;
        let snapshot = self.answering(st, current_snapshot(client)).await?;
        if let Some(copy) = self.copy.as_mut() {
            copy.forget_shown(&snapshot);
        }
        Ok(())
    }

    /// Reads and sends the next chunk of the first table still copying, as one transaction
    /// at the position of the last delivered one, with the table's progress; or the next
    /// `[snapshot] parallelism` chunks of it at once ([`Stream::copy_round`]).
    pub(super) async fn copy_chunk(&mut self, st: &mut State) -> Result<()> {
        let started = Instant::now();
        let client = self.client;
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        let Some((i, id)) = copy.next() else {
            return Ok(());
        };
        let Some(schema) = self.tables.get(&id).cloned() else {
            copy.gone(i);
            return Ok(());
        };
        // A joining table's first chunk waits for its barrier (below): read alone.
        if copy.readers(i, schema.has_key()) > 1 && !copy.barriers.contains_key(&id) {
            return self.copy_round(st, i, schema, started).await;
        }
        let delivered = copy.delivered.clone();
        let (snapshot, horizon, retries) = self
            .answering(st, covering_chunk(client, &delivered))
            .await?;
        let copy = self.copy.as_mut().expect("copying");
        // This snapshot shows every delivered transaction, and so does every later one.
        copy.delivered.clear();
        let running = copy
            .barriers
            .get(&id)
            .and_then(|b| b.iter().copied().find(|x| snapshot.xip.contains(x)));
        if let Some(xid) = running {
            // A transaction running when the table joined still runs: looked at again later,
            // while the stream goes on.
            let tries = copy.held.map_or(0, |(_, n)| n) + 1;
            copy.held = Some((
                Instant::now() + Duration::from_millis(100 << tries.min(6)),
                tries,
            ));
            if tries == TELL_HELD_AFTER {
                info!(table = %id, xid, "a joining table's copy waits for a transaction that was running when the table joined to end (its changes may only be in the table's rows)");
            }
            return self.answering(st, end_chunk(client, false)).await;
        }
        copy.barriers.remove(&id);
        copy.held = None;
        let limit = copy.limit(i);
        let range = KeyRange {
            after: copy.progress[i].last_key_values(),
            upto: None,
        };
        let tx = st.position_tx();
        let events = self.events.clone();
        // The rows are held until the chunk's transaction has ended (`copy_rows`), then sent
        // as one transaction after everything delivered so far.
        let read = async {
            let mut out = SnapshotRows::chunk(schema.clone(), &events, tx);
            let rows = read_chunk(client, &schema, &range, limit, &mut out).await?;
            end_chunk(client, true).await?;
            let bytes = out.bytes;
            Ok((rows, bytes, out.release().await?))
        };
        let (rows, bytes, last_key) = self.answering(st, read).await?;
        let chunk = ChunkRead {
            limit,
            rows,
            bytes,
            last_key,
            upto: None,
            horizon: horizon_text(horizon, &snapshot),
            at: snapshot,
        };
        self.chunk_read(st, i, chunk, schema.has_key(), started, retries)
            .await
    }

    /// Reads the next `[snapshot] parallelism` chunks of the keyed table at `i` at once, on
    /// as many connections ("Parallel reads" in `tidewater_core::copy`): the server finds the
    /// keys that end all but the last, each range is read in its own chunk transaction that
    /// shows every delivered transaction, and they are sent in key order, each with its
    /// progress. The first range's rows may go to the queue while it is read (past
    /// `copy_rows::HOLD_BYTES`); the others are held whole (a range holds about one chunk:
    /// its bound is the `limit`-th key).
    async fn copy_round(
        &mut self,
        st: &mut State,
        i: usize,
        schema: Arc<TableSchema>,
        started: Instant,
    ) -> Result<()> {
        let client = self.client;
        let copy = self.copy.as_mut().expect("copying");
        let (limit, readers) = (copy.limit(i), copy.size.readers);
        let after = copy.progress[i].last_key_values();
        let delivered = copy.delivered.clone();
        let url = copy.url.clone();
        let mut extra = std::mem::take(&mut copy.readers);
        let bounds = self
            .answering(st, async {
                while extra.len() + 1 < readers {
                    extra.push(connect(&url).await?);
                }
                chunk_bounds(client, &schema, after, limit, readers - 1).await
            })
            .await?;
        let ranges = self.copy.as_mut().expect("copying").ranges(i, bounds);
        let tx = st.position_tx();
        let events = self.events.clone();
        let clients = std::iter::once(client).chain(extra.iter());
        let reads = ranges
            .iter()
            .zip(clients)
            .enumerate()
            .map(|(j, (range, c))| {
                let out = SnapshotRows::chunk(schema.clone(), &events, tx.clone());
                read_range(c, &schema, range, limit, &delivered, out.holding_all(j > 0))
            });
        let reads = self
            .answering(st, futures_util::future::try_join_all(reads))
            .await?;
        // Every range's snapshot showed every delivered transaction.
        self.copy.as_mut().expect("copying").delivered.clear();
        for (range, read) in ranges.into_iter().zip(reads) {
            let bytes = read.out.bytes;
            let last_key = self.answering(st, read.out.release()).await?;
            let chunk = ChunkRead {
                limit,
                rows: read.rows,
                bytes,
                last_key,
                upto: range.upto,
                horizon: horizon_text(read.horizon, &read.snapshot),
                at: read.snapshot,
            };
            self.chunk_read(st, i, chunk, true, started, read.retries)
                .await?;
        }
        // Kept for the next round; closed once no table is left to copy (a later copy opens
        // them again), so that idle sessions do not linger for the whole run.
        let copy = self.copy.as_mut().expect("copying");
        if copy.copying() {
            copy.readers = extra;
        }
        Ok(())
    }

    /// Records a chunk that was read (its rows sent) and sends its progress and commit.
    async fn chunk_read(
        &mut self,
        st: &mut State,
        i: usize,
        chunk: ChunkRead<PgSnapshot>,
        has_key: bool,
        started: Instant,
        retries: u32,
    ) -> Result<()> {
        let copy = self.copy.as_mut().expect("copying");
        let progress = copy.chunk_read(i, chunk, has_key, started);
        if retries > 0 {
            debug!(table = %progress.table, retries, "chunk snapshot taken again until it showed every delivered transaction");
        }
        self.send(st, SourceEvent::Progress(vec![progress])).await?;
        self.send(st, SourceEvent::Commit).await
    }

    /// Marks done tables consistent once the stream has passed their horizon: every
    /// transaction committed before `lsn` has been delivered. Sent as its own (empty)
    /// transaction at the last delivered position, between stream transactions.
    pub(super) async fn passed(&mut self, st: &mut State, lsn: u64) -> Result<()> {
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        let (marked, _) =
            copy.mark_passed(|h| parse_horizon(h).is_none_or(|(horizon, _)| horizon <= lsn));
        if marked.is_empty() {
            return Ok(());
        }
        self.send_alone(st, SourceEvent::Progress(marked)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots() {
        let s = PgSnapshot::parse("100:105:100,103").unwrap();
        assert_eq!(s.xip, vec![100, 103]);
        assert!(s.shows(99));
        assert!(s.shows(101));
        assert!(!s.shows(100));
        assert!(!s.shows(103));
        assert!(s.shows(104));
        assert!(!s.shows(105));
        assert!(!s.shows(106));
        assert_eq!(PgSnapshot::parse("7:7:").unwrap().xip, Vec::<u64>::new());
        assert!(PgSnapshot::parse("7:x:").is_none());
        // Across an epoch: xmax in epoch 1, a delivered xid from the end of epoch 0.
        let e = PgSnapshot::parse(&format!("{}:{}:", (1u64 << 32) - 5, (1u64 << 32) + 3)).unwrap();
        assert!(e.shows(u32::MAX - 1));
        assert!(e.shows(2));
        assert!(!e.shows(3));
        let h = horizon_text(0x1_0000_0010, &s);
        assert_eq!(h, "1/10|100:105:100,103");
        assert_eq!(parse_horizon(&h), Some((0x1_0000_0010, s)));
    }
}
