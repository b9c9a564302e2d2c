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
//! 3. **Keyless tables** (no primary key) are one chunk, the whole table: replaying changes is
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

use serde::{Deserialize, Serialize};

use crate::model::{TableId, Value};

/// Rows per chunk when `[snapshot] chunk_rows` is not set.
pub const DEFAULT_CHUNK_ROWS: usize = 20_000;

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

/// How the source copies the tables of a replica that has not finished its initial copy.
#[derive(Debug, Clone, Default)]
pub struct ChunkedCopy {
    /// Rows read per chunk.
    pub chunk_rows: usize,
    /// The committed progress per table (empty for a fresh replica).
    pub progress: Vec<CopyProgress>,
}

impl ChunkedCopy {
    /// Whether every table is consistent (nothing left to copy or to wait for).
    pub fn finished(&self) -> bool {
        !self.progress.is_empty() && self.progress.iter().all(|p| p.consistent)
    }
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
}
