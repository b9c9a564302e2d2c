//! The chunked initial snapshot, source-neutral part: what is recorded per table, and the
//! rules a source follows to interleave short chunk reads with its stream.
//!
//! # Why the replica comes out exact
//!
//! A fresh replica first fixes the stream's start P0 at the source and commits "copying at P0"
//! with a [`CopyProgress`] per selected table (no key yet, not done). From then on the stream
//! runs from the sink's committed position, as on any resume. Between two stream transactions
//! (everything up to position P handed to the apply loop) the source reads the next chunk of a
//! table that is still copying, in its own short read-only transaction on an ordinary
//! connection: the rows after the last copied key in key order, at most `chunk_rows`. Neither
//! locks nor writes at the source, nor any key comparison on this side (text collations cannot
//! be reproduced client-side): the server orders and compares the keys.
//!
//! 1. **The chunk holds every delivered transaction.** A chunk is only used when its read
//!    already shows the effects of every transaction the stream has delivered (commit ≤ P).
//!    Reading a position with a separate statement is not enough: PostgreSQL writes a commit
//!    record before the transaction leaves the proc array, MariaDB writes the binlog before the
//!    InnoDB commit is visible. The source checks the visibility information of the chunk's own
//!    read (PostgreSQL: the transaction's `pg_current_snapshot()` against the xids of the
//!    delivered transactions) and reads the chunk again when it lacks one.
//! 2. **Chunk rows are upserts, and the stream is applied to every key.** The chunk is one sink
//!    transaction of `Snapshot` rows that replace rows with the same key, together with the
//!    table's progress and the unchanged stream position. The stream transactions after it are
//!    applied normally, even those the chunk already reflects. Per key, source transactions are
//!    serialized by row locks and visibility respects that order, so the chunk shows a prefix of
//!    that key's sequence of changes that contains everything delivered (rule 1). Every change
//!    is a full row image (applied as an upsert) or a delete, so replaying the rest of the
//!    sequence from inside that prefix ends at the same row as the source. A key the chunk lacks
//!    but the replica holds was deleted after P: that delete is still to come. While a table is
//!    not [`CopyProgress::consistent`] the sink applies its changes leniently: an insert
//!    replaces, an update of a missing row inserts its full image, and an update without a full
//!    image (PostgreSQL's unchanged TOAST values) of a missing row is skipped (the chunk that
//!    covers the key, or the later delete, brings the row to its final state).
//! 3. **Keyless tables** (no primary key, nor a unique index the source can key them by: see
//!    the sources' catalogs) are one chunk, the whole table: replaying changes is
//!    not idempotent for a multiset. The stream drops their changes until the copy, and after
//!    it drops the changes of transactions the copy already contains (by the copy's visibility
//!    information), until it passes the copy's horizon.
//! 4. **Consistency.** Every transaction a chunk shows commits before its horizon (PostgreSQL:
//!    `pg_current_wal_lsn()` read after the chunk's snapshot). Once a table is done and the
//!    stream has delivered everything before the horizon of its last chunk, its replica equals
//!    the source at a transaction boundary: the table is marked `consistent`, and from then on a
//!    missing row is the error it always is. The replica is transaction-consistent when every
//!    table is.
//! 5. **Resume.** The progress commits with each chunk in the same destination transaction, so
//!    after a crash the stream resumes at the stored position and the copy at the next chunk.
//!
//! # Parallel reads
//!
//! With `[snapshot] parallelism` N > 1, a table whose chunk size is known (after its first
//! chunk of the run) is read N chunks at a time: the source first asks the server for the
//! keys that end the next N - 1 chunks (the `limit`-th key after the last copied one, and so
//! on: [`Copying::ranges`]), then reads the [`KeyRange`]s `(last, b1]`, `(b1, b2]`, ...,
//! `(bN-1, ...)` (the last one with the row limit) at once, each in its own short
//! transaction on its own connection, and sends them in key order, each as its own
//! destination transaction with its progress (the last key of a bounded range is its bound).
//! The rules hold per chunk: each chunk's read is checked against every delivered
//! transaction (rule 1; the stream waits while the round is read, so they all check the same
//! list); the ranges are disjoint and cover every key after the last copied one (the bounds
//! split the key space, whichever snapshot they came from), so a key's rows come from one
//! chunk at most, and rule 2 never needed the chunks of a table to share a snapshot (a key
//! that moves between two chunks' ranges is the key change the stream applies later, as
//! between two consecutive chunks). The progress only moves forward: the chunks commit in key
//! order, and after a crash the copy resumes after the last committed one.
//!
//! # Copies again
//!
//! A table copied again while streaming (`tidewater resnapshot`, a repair, a change the stream
//! does not carry: see `uncarried`) goes through the same chunks. At a point P of the stream
//! the source sends, in one destination transaction, a truncate of the table (carrying the
//! definition the stream knows) and a fresh [`CopyProgress`] ([`Copying::restart`]); the
//! table is then copied exactly as above, from an empty replica table at P. The rules hold
//! unchanged because nothing in them needs the copy to start at the stream's start: the
//! replica table is empty at P like a new one, and rule 1 makes every chunk show every
//! transaction delivered before it, including those delivered before P (so a source tracks
//! the transactions it delivers whether or not a copy runs, until a snapshot has shown them).
//! When P lies inside a transaction T (the change that needs the copy is seen in T), T's
//! earlier changes of the table are removed by the truncate and its later ones applied
//! leniently (keyed) or dropped (keyless); every chunk is read after T, so it shows T.
//! While the copy runs the rows it has written so far plus streamed changes are all there is
//! of the table's new rows: it is complete again, and transaction-consistent, once the table
//! is. (A sink may keep showing the table's old rows meanwhile: DuckDB fills a copy table and
//! swaps it in then, see its `sink/recopy.rs`.)
//!
//! A table that joins (PostgreSQL: a new table added to the publication at X) is copied the
//! same way from an empty replica table, with one more condition: its changes that committed
//! before X are not delivered, only in its rows, and one of them may not be visible yet to a
//! snapshot taken after X (rule 1 cannot see it: it was never delivered). So its first chunk
//! waits until every transaction running at a snapshot taken after X has ended (see the
//! PostgreSQL source's `stream::chunks::Copying::join`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::model::{TableId, Value};

/// Rows per chunk when `[snapshot] chunk_rows` is not set.
pub const DEFAULT_CHUNK_ROWS: usize = 20_000;
/// Bytes of values per chunk (estimated as the apply loop does) when `[snapshot] chunk_bytes`
/// is not set.
pub const DEFAULT_CHUNK_BYTES: usize = 32 << 20;
/// Chunks read at once when `[snapshot] parallelism` is not set (see `docs/performance.md`,
/// "Parallel chunk reads": on 2 cores the destination, not the source, bounds the copy).
pub const DEFAULT_READERS: usize = 1;
/// The first chunk of a table in a run reads at most this many rows: how wide they are sets
/// how many rows the next chunks read (see [`ChunkSize`]).
const FIRST_CHUNK_ROWS: usize = 1_000;

/// How large a chunk may be: at most `rows` rows and about `bytes` bytes of values. The byte
/// bound keeps a chunk of wide rows short at the source and small in the destination's open
/// transaction: each chunk reads as many rows as `bytes` holds at the width of the table's
/// previous chunk (the first of a run reads at most [`FIRST_CHUNK_ROWS`]); rows wider than
/// their predecessors overshoot it in one chunk at most. And how many chunks of a table are
/// read at once, each on its own connection (`readers`, `[snapshot] parallelism`: see
/// [`KeyRange`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSize {
    pub rows: usize,
    pub bytes: usize,
    pub readers: usize,
}

impl Default for ChunkSize {
    fn default() -> Self {
        ChunkSize {
            rows: DEFAULT_CHUNK_ROWS,
            bytes: DEFAULT_CHUNK_BYTES,
            readers: DEFAULT_READERS,
        }
    }
}

impl ChunkSize {
    /// The rows the chunk after one of `rows` rows holding `bytes` bytes may read.
    fn after(self, rows: u64, bytes: u64) -> usize {
        let width = (bytes / rows.max(1)).max(1);
        let fit = (self.bytes as u64 / width).max(1);
        fit.min(self.rows as u64) as usize
    }
}

/// The copy of one table, as committed with its last chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyProgress {
    pub table: TableId,
    /// The key of the last copied row, canonical text per key column (`None` in it: SQL
    /// NULL); `None` before the first chunk.
    pub last_key: Option<Vec<Option<String>>>,
    pub rows: u64,
    pub chunks: u64,
    /// Every row has been copied.
    pub done: bool,
    /// The source's visibility information of the last chunk (opaque here: what the source
    /// needs to tell which transactions the chunk contains, and where its horizon is).
    pub horizon: Option<String>,
    /// Done, and the stream has passed the horizon: the table's replica equals the source at
    /// a transaction boundary (see the module doc).
    pub consistent: bool,
}

impl CopyProgress {
    pub fn new(table: TableId) -> CopyProgress {
        CopyProgress {
            table,
            last_key: None,
            rows: 0,
            chunks: 0,
            done: false,
            horizon: None,
            consistent: false,
        }
    }

    /// The last key as values (for the source's next keyset read).
    pub fn last_key_values(&self) -> Option<Vec<Value>> {
        self.last_key.as_ref().map(|k| {
            k.iter()
                .map(|v| v.as_deref().map_or(Value::Null, Value::text))
                .collect()
        })
    }

    /// Records a chunk of `rows` rows ending at `last_key` (`None`: the chunk was empty).
    pub fn add_chunk(&mut self, rows: u64, last_key: Option<&[Value]>, horizon: String) {
        self.rows += rows;
        self.chunks += 1;
        if let Some(k) = last_key {
            self.last_key = Some(k.iter().map(|v| v.as_str().map(str::to_string)).collect());
        }
        self.horizon = Some(horizon);
    }
}

/// One chunk of a parallel round (see "Parallel reads" in the module doc): the keys after
/// `after` (`None`: from the table's first key) up to and including `upto` (`None`: to the
/// table's end, at most the chunk's row limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub after: Option<Vec<Value>>,
    pub upto: Option<Vec<Value>>,
}

/// How the source copies the tables of a replica that has not finished its initial copy.
#[derive(Debug, Clone, Default)]
pub struct ChunkedCopy {
    /// How large each chunk may be.
    pub size: ChunkSize,
    /// The committed progress per table (empty for a fresh replica).
    pub progress: Vec<CopyProgress>,
}

impl ChunkedCopy {
    /// Whether every table is consistent (nothing left to copy or to wait for).
    pub fn finished(&self) -> bool {
        !self.progress.is_empty() && self.progress.iter().all(|p| p.consistent)
    }
}

/// The copy under way in a source's stream, source-neutral: the progress per table, the
/// keyless tables whose changes the stream drops (rule 3), and when the next chunk is due.
/// `H` is the source's visibility information of a chunk (what its opaque
/// [`CopyProgress::horizon`] text parses to).
pub struct Copying<H> {
    pub size: ChunkSize,
    /// Per selected table, in copy order.
    pub progress: Vec<CopyProgress>,
    /// Per table (parallel to `progress`): the rows its next chunk reads, once a chunk of it
    /// has been read in this run.
    limits: Vec<Option<usize>>,
    /// Per table (parallel to `progress`): whether a parallel round of it was logged.
    parallel: Vec<bool>,
    /// Keyless tables not consistent yet: `None` until copied (their changes are dropped),
    /// then the copy's visibility information (changes of transactions it shows are dropped).
    keyless: HashMap<TableId, Option<H>>,
    /// When the next chunk is due while the stream is busy (the stream and the copy share the
    /// time about equally); chunks are read at once while the stream is idle.
    pub due: Instant,
}

impl<H> Copying<H> {
    /// Resumes `progress`; `horizon` parses a stored horizon (for a keyless table already
    /// copied, whose changes the copy holds are still to be dropped).
    pub fn new(
        size: ChunkSize,
        progress: Vec<CopyProgress>,
        keyless: impl Fn(&TableId) -> bool,
        horizon: impl Fn(&str) -> Option<H>,
    ) -> Copying<H> {
        let keyless = progress
            .iter()
            .filter(|p| keyless(&p.table) && !p.consistent)
            .map(|p| {
                let at = p
                    .done
                    .then(|| p.horizon.as_deref().and_then(&horizon))
                    .flatten();
                (p.table.clone(), at)
            })
            .collect();
        Copying {
            size,
            limits: vec![None; progress.len()],
            parallel: vec![false; progress.len()],
            progress,
            keyless,
            due: Instant::now(),
        }
    }

    /// A table still has rows to copy.
    pub fn copying(&self) -> bool {
        self.progress.iter().any(|p| !p.done)
    }

    /// A table is copied but not consistent yet: it waits for the stream to pass its
    /// horizon. (A source whose server stays silent while idle must ask how far it is.)
    pub fn waiting_for_horizon(&self) -> bool {
        self.progress.iter().any(|p| p.done && !p.consistent)
    }

    /// The next table to copy a chunk of (the first not done), with its index.
    pub fn next(&self) -> Option<(usize, TableId)> {
        let i = self.progress.iter().position(|p| !p.done)?;
        Some((i, self.progress[i].table.clone()))
    }

    /// How many chunks of the table at `i` are read at once: `[snapshot] parallelism` once its
    /// chunk size is known (a chunk of it was read in this run), for a keyed table; else 1.
    pub fn readers(&self, i: usize, has_key: bool) -> usize {
        match (has_key, self.limits[i]) {
            (true, Some(_)) => self.size.readers.max(1),
            _ => 1,
        }
    }

    /// The ranges of a parallel round of the table at `i`, given the keys that end all but
    /// the last (in key order, as the server found them after the last copied key).
    pub fn ranges(&mut self, i: usize, bounds: Vec<Vec<Value>>) -> Vec<KeyRange> {
        if !bounds.is_empty() && !std::mem::replace(&mut self.parallel[i], true) {
            info!(table = %self.progress[i].table, readers = bounds.len() + 1, "copying in parallel: chunks read at once, each on its own connection");
        }
        let mut after = self.progress[i].last_key_values();
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        for bound in bounds {
            ranges.push(KeyRange {
                after: after.replace(bound.clone()),
                upto: Some(bound),
            });
        }
        ranges.push(KeyRange { after, upto: None });
        ranges
    }

    /// The rows the next chunk of the table at `i` reads (see [`ChunkSize`]).
    pub fn limit(&self, i: usize) -> usize {
        self.limits[i].unwrap_or(self.size.rows.min(FIRST_CHUNK_ROWS))
    }

    /// Starts the copy of `table` over while streaming (a re-copy: see "Copies again" in the
    /// module doc); returns its progress, to commit in the transaction that removes the
    /// table's replica rows. A table copied before (or being copied) starts again from its
    /// first key; a keyless table's changes are dropped again until its copy.
    pub fn restart(&mut self, table: TableId, keyless: bool) -> CopyProgress {
        let progress = CopyProgress::new(table.clone());
        match self.progress.iter().position(|p| p.table == table) {
            Some(i) => {
                self.progress[i] = progress.clone();
                self.limits[i] = None;
            }
            None => {
                self.progress.push(progress.clone());
                self.limits.push(None);
                self.parallel.push(false);
            }
        }
        if keyless {
            self.keyless.insert(table, None);
        } else {
            self.keyless.remove(&table);
        }
        progress
    }

    /// The table at `i` is no longer replicated (dropped at the source): nothing to copy.
    pub fn gone(&mut self, i: usize) {
        self.progress[i].done = true;
        self.progress[i].consistent = true;
    }

    /// Whether a change of `table` is dropped (keyless tables only): the table is not copied
    /// yet, or `shows` says its copy holds the change's transaction.
    pub fn drops(&self, table: &TableId, shows: impl FnOnce(&H) -> bool) -> bool {
        match self.keyless.get(table) {
            None => false,
            Some(None) => true,
            Some(Some(at)) => shows(at),
        }
    }

    /// Records the chunk just read of the table at `i` (`rows` rows ending at `last_key`,
    /// read with visibility `at`, stored as `horizon`); returns the progress to commit with it.
    /// `started` is when the chunk began: the next one is due after as long again (at most
    /// 5 s).
    pub fn chunk_read(
        &mut self,
        i: usize,
        chunk: ChunkRead<H>,
        has_key: bool,
        started: Instant,
    ) -> CopyProgress {
        let p = &mut self.progress[i];
        // A bounded range is copied up to its bound, whatever its last row.
        let last = chunk.upto.as_deref().or(chunk.last_key.as_deref());
        p.add_chunk(chunk.rows, last, chunk.horizon);
        p.done = !has_key || (chunk.upto.is_none() && chunk.rows < chunk.limit as u64);
        self.limits[i] = Some(self.size.after(chunk.rows, chunk.bytes));
        if p.done {
            let h = p.horizon.as_deref().unwrap_or_default();
            info!(table = %p.table, rows = p.rows, chunks = p.chunks, horizon = h, "table copied; consistent once the stream passes its horizon");
            if let Some(k) = self.keyless.get_mut(&p.table) {
                *k = Some(chunk.at);
            }
        }
        let progress = p.clone();
        self.due = Instant::now() + started.elapsed().min(Duration::from_secs(5));
        progress
    }

    /// Marks done tables consistent whose horizon the stream has passed (`passed`, given the
    /// stored horizon text; a table without one is passed). Returns the progress to commit,
    /// and whether every table is now consistent.
    pub fn mark_passed(&mut self, passed: impl Fn(&str) -> bool) -> (Vec<CopyProgress>, bool) {
        let mut marked = Vec::new();
        for p in self.progress.iter_mut().filter(|p| p.done && !p.consistent) {
            if p.horizon.as_deref().is_none_or(&passed) {
                p.consistent = true;
                self.keyless.remove(&p.table);
                info!(table = %p.table, "table replica is transaction-consistent");
                marked.push(p.clone());
            }
        }
        let all = self.progress.iter().all(|p| p.consistent);
        if all && !marked.is_empty() {
            info!("every copy finished: the replica is transaction-consistent");
        }
        (marked, all)
    }
}

/// What one chunk read brought (see [`Copying::chunk_read`]).
pub struct ChunkRead<H> {
    /// The row limit it was read with ([`Copying::limit`]): fewer rows mean the table's end.
    pub limit: usize,
    pub rows: u64,
    /// The bytes of its rows' values (estimated: `crate::apply::change_bytes`).
    pub bytes: u64,
    pub last_key: Option<Vec<Value>>,
    /// The range's bound, when it had one ([`KeyRange::upto`]).
    pub upto: Option<Vec<Value>>,
    /// The chunk's visibility information, and its text as stored with the progress.
    pub at: H,
    pub horizon: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_accumulate() {
        let mut p = CopyProgress::new(TableId::new("public", "t"));
        assert_eq!(p.last_key_values(), None);
        p.add_chunk(3, Some(&[Value::text("7"), Value::Null]), "h1".into());
        p.add_chunk(0, None, "h2".into());
        assert_eq!((p.rows, p.chunks), (3, 2));
        assert_eq!(
            p.last_key_values(),
            Some(vec![Value::text("7"), Value::Null])
        );
        assert_eq!(p.horizon.as_deref(), Some("h2"));
    }

    #[test]
    fn chunk_rows_follow_the_row_width() {
        let size = ChunkSize {
            rows: 20_000,
            bytes: 1 << 20,
            readers: 1,
        };
        let mut c = Copying::new(
            size,
            vec![CopyProgress::new(TableId::new("s", "t"))],
            |_| false,
            |h| Some(h.to_string()),
        );
        assert_eq!(c.limit(0), FIRST_CHUNK_ROWS);
        fn read(c: &mut Copying<String>, limit: usize, rows: u64, bytes: u64) -> bool {
            let chunk = ChunkRead {
                limit,
                rows,
                bytes,
                last_key: Some(vec![Value::text("1")]),
                upto: None,
                at: String::new(),
                horizon: String::new(),
            };
            c.chunk_read(0, chunk, true, Instant::now()).done
        }
        // 1 KiB rows: 1024 fit in 1 MiB.
        assert!(!read(&mut c, FIRST_CHUNK_ROWS, 1_000, 1_024_000));
        assert_eq!(c.limit(0), 1_024);
        // Narrow rows: the row bound.
        assert!(!read(&mut c, 1_024, 1_024, 1_024 * 10));
        assert_eq!(c.limit(0), 20_000);
        // A row wider than the bound: one row per chunk.
        assert!(!read(&mut c, 20_000, 20_000, 20_000 << 20));
        assert_eq!(c.limit(0), 1);
        // Fewer rows than asked for: the table's end.
        assert!(read(&mut c, 1, 0, 0));
    }

    #[test]
    fn a_parallel_round_covers_the_keys_after_the_last_in_order() {
        let t = TableId::new("s", "t");
        let size = ChunkSize {
            rows: 10,
            bytes: 1 << 20,
            readers: 3,
        };
        let mut c = Copying::new(size, vec![CopyProgress::new(t)], |_| false, |_| Some(()));
        // Not before the table's first chunk of the run: its row width is not known yet.
        assert_eq!(c.readers(0, true), 1);
        let key = |k: &str| Some(vec![Value::text(k)]);
        let chunk = |rows, last: &str, upto: Option<Vec<Value>>| ChunkRead {
            limit: 10,
            rows,
            bytes: rows * 10,
            last_key: key(last),
            upto,
            at: (),
            horizon: "h".into(),
        };
        assert!(
            !c.chunk_read(0, chunk(10, "10", None), true, Instant::now())
                .done
        );
        assert_eq!((c.readers(0, true), c.readers(0, false)), (3, 1));
        let ranges = c.ranges(0, vec![vec![Value::text("20")], vec![Value::text("30")]]);
        let range = |after: &str, upto: Option<&str>| KeyRange {
            after: key(after),
            upto: upto.and_then(key),
        };
        assert_eq!(
            ranges,
            vec![
                range("10", Some("20")),
                range("20", Some("30")),
                range("30", None)
            ]
        );
        // A bounded range is copied up to its bound even when its last rows were deleted, and
        // never ends the table, even with fewer rows than the limit.
        let p = c.chunk_read(0, chunk(7, "18", key("20")), true, Instant::now());
        assert_eq!((p.last_key_values(), p.done), (key("20"), false));
        assert!(
            !c.chunk_read(0, chunk(10, "30", key("30")), true, Instant::now())
                .done
        );
        // The open range with fewer rows than the limit does.
        let p = c.chunk_read(0, chunk(4, "34", None), true, Instant::now());
        assert_eq!((p.last_key_values(), p.done, p.rows), (key("34"), true, 31));
        // No bounds (the table ends within one chunk): one open range.
        assert_eq!(c.ranges(0, Vec::new()), vec![range("34", None)]);
    }

    #[test]
    fn restart_copies_a_table_again() {
        let (t, k) = (TableId::new("s", "t"), TableId::new("s", "k"));
        let mut c = Copying::new(ChunkSize::default(), Vec::new(), |_| false, |_| Some(()));
        assert!(!c.copying());
        let p = c.restart(t.clone(), false);
        assert_eq!((p.chunks, p.done, p.consistent), (0, false, false));
        assert_eq!(c.next(), Some((0, t.clone())));
        let chunk = ChunkRead {
            limit: c.limit(0),
            rows: 1,
            bytes: 10,
            last_key: Some(vec![Value::text("1")]),
            upto: None,
            at: (),
            horizon: "h".into(),
        };
        assert!(c.chunk_read(0, chunk, true, Instant::now()).done);
        assert!(c.mark_passed(|_| true).1);
        // Again: from the first key, the same entry; a keyless table's changes are dropped
        // until its copy.
        assert_eq!(c.restart(t.clone(), false).last_key, None);
        c.restart(k.clone(), true);
        assert_eq!(c.progress.len(), 2);
        assert_eq!(c.limit(0), FIRST_CHUNK_ROWS);
        assert!(c.drops(&k, |_| false) && !c.drops(&t, |_| true));
        assert!(c.copying() && !c.mark_passed(|_| true).1);
    }

    #[test]
    fn copying_marks_and_drops() {
        let (t, k) = (TableId::new("s", "t"), TableId::new("s", "k"));
        let mut done = CopyProgress::new(k.clone());
        done.done = true;
        done.horizon = Some("5".into());
        let progress = vec![CopyProgress::new(t.clone()), done];
        let size = ChunkSize {
            rows: 2,
            bytes: 1 << 20,
            readers: 1,
        };
        let mut c = Copying::new(
            size,
            progress,
            |id| id.name == "k",
            |h| h.parse::<u32>().ok(),
        );
        assert!(c.drops(&k, |&h| h == 5) && !c.drops(&k, |&h| h != 5));
        assert!(!c.drops(&t, |_| true));
        let (i, id) = c.next().unwrap();
        assert_eq!((i, id), (0, t.clone()));
        let chunk = |rows| ChunkRead {
            limit: 2,
            rows,
            bytes: rows * 100,
            last_key: Some(vec![Value::text("9")]),
            upto: None,
            at: 7u32,
            horizon: "7".into(),
        };
        assert!(!c.chunk_read(0, chunk(2), true, Instant::now()).done);
        assert!(c.chunk_read(0, chunk(1), true, Instant::now()).done);
        assert!(!c.copying());
        let (marked, all) = c.mark_passed(|h| h == "5");
        assert_eq!((marked.len(), all), (1, false));
        assert!(!c.drops(&k, |_| true));
        let (marked, all) = c.mark_passed(|_| true);
        assert_eq!((marked[0].table.clone(), all), (t, true));
    }
}
