//! `[apply] large_transaction = "split"`: a source transaction larger than `split_rows`
//! changes is committed to the destination in pieces, so that what the destination holds
//! for an open transaction (DuckDB keeps per-row bookkeeping of it until it commits) stays
//! bounded whatever the transaction's size. The price, which the user opts into, is atomic
//! visibility: readers can see the first pieces of such a transaction before its end.
//!
//! Exactly once still holds. A piece commits, in the same destination transaction as its
//! rows, a [`PartialTx`]: the transaction's own position (the source names a transaction's
//! commit position at its BEGIN: PostgreSQL's `final_lsn`, the GTID set after a MariaDB
//! transaction), how many of its changes the destination holds, and a fingerprint of them.
//! The committed *position* stays the last complete transaction's, so the source is never
//! told to discard the partial one. After a crash the source replays from that position;
//! the partial transaction is the first it delivers (sources deliver in commit order and
//! the piece's batch held every transaction before it). The apply loop drops its first
//! `changes` changes ([`Replay`]) and applies the rest, numbered from `changes` on. The
//! argument needs the replay to deliver the same changes in the same order, which a
//! source's decoding of its own log does; but the user can change what is selected while
//! tidewater is stopped (tables globs, a publication), so the skipped changes are compared
//! with the fingerprint, and a replay that differs stops with an error instead of skipping
//! the wrong changes. A stream transaction that arrives first with another position than
//! the partial one stops the same way.
//!
//! Only stream transactions are split: a copy's chunks are bounded by `[snapshot]` already,
//! and their rows are not replayed in the same order.

use crate::error::{Error, Result};
use crate::model::{Change, ChangeKind, Position, Value};

/// Default `[apply] split_rows`.
pub const DEFAULT_SPLIT_ROWS: usize = 1_000_000;

/// A source transaction the destination holds only the first `changes` changes of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialTx {
    /// The transaction's own position (what its `TxInfo` carries).
    pub position: Position,
    pub changes: i64,
    /// [`Fingerprint`] of those changes.
    pub fingerprint: u64,
}

/// FNV-1a over each change's table, kind and values: stable across builds and platforms
/// (it is stored), cheap, and boundary-free (the same changes in other event sizes give the
/// same value). Not a defence against an adversary, a check that a replay is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(FNV_OFFSET)
    }
}

impl Fingerprint {
    pub fn value(self) -> u64 {
        self.0
    }

    /// Continues a fingerprint stored by an earlier piece.
    pub fn from_value(value: u64) -> Fingerprint {
        Fingerprint(value)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    fn values(&mut self, values: &[Value]) {
        for v in values {
            match v {
                Value::Null => self.bytes(&[0]),
                Value::Unchanged => self.bytes(&[1]),
                Value::Text(t) => {
                    self.bytes(&[2]);
                    self.bytes(&(t.len() as u64).to_le_bytes());
                    self.bytes(t);
                }
            }
        }
    }

    pub fn add(&mut self, changes: &[Change]) {
        for c in changes {
            self.bytes(c.table.id.schema.as_bytes());
            self.bytes(&[0]);
            self.bytes(c.table.id.name.as_bytes());
            let kind = match c.kind {
                ChangeKind::Snapshot => b'S',
                ChangeKind::Insert => b'I',
                ChangeKind::Update => b'U',
                ChangeKind::Delete => b'D',
            };
            self.bytes(&[0, kind]);
            self.values(&c.row);
            if let Some(old) = &c.old {
                self.bytes(&[3]);
                self.values(old);
            }
        }
    }
}

/// Whether a transaction whose changes start like this may be split: a stream transaction,
/// not a copy's chunk.
pub fn splittable(changes: &[Change]) -> bool {
    changes
        .first()
        .is_some_and(|c| c.kind != ChangeKind::Snapshot)
}

/// The replay of a partial transaction after a restart: which changes to drop.
#[derive(Debug)]
pub struct Replay {
    partial: PartialTx,
    /// Changes still to drop.
    left: i64,
    seen: Fingerprint,
}

impl Replay {
    pub fn new(partial: PartialTx) -> Replay {
        Replay {
            left: partial.changes,
            partial,
            seen: Fingerprint::default(),
        }
    }

    pub fn position(&self) -> &Position {
        &self.partial.position
    }

    /// What the destination holds of the transaction (recorded again by every commit until
    /// the replay is done: a commit of other transactions before it must not drop it).
    pub fn partial(&self) -> &PartialTx {
        &self.partial
    }

    /// How many changes the destination already holds (the first sequence of what follows).
    pub fn held(&self) -> i64 {
        self.partial.changes
    }

    /// The stored fingerprint of the held changes, for the pieces that follow.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.partial.fingerprint)
    }

    /// Drops from `changes` those the destination holds already, checking them against the
    /// fingerprint once all are seen. Returns whether the replay is done with.
    pub fn skip(&mut self, changes: &mut Vec<Change>) -> Result<bool> {
        let n = (self.left as usize).min(changes.len());
        self.seen.add(&changes[..n]);
        changes.drain(..n);
        self.left -= n as i64;
        if self.left > 0 {
            return Ok(false);
        }
        if self.seen.value() != self.partial.fingerprint {
            return Err(self.other_changes());
        }
        Ok(true)
    }

    /// The replayed transaction differs from the held changes (another fingerprint, or a
    /// truncate among them: a transaction is never split after one).
    pub fn other_changes(&self) -> Error {
        self.differs("with other changes")
    }

    /// The replayed transaction ended before its held changes were all seen.
    pub fn ended_early(&self) -> Error {
        self.differs("with fewer changes")
    }

    /// A stream transaction other than the partial one arrived first.
    pub fn other_first(&self, position: &Position) -> Error {
        Error::source_fatal(format!(
            "the destination holds the first {} changes of the transaction at {} \
             (`large_transaction = \"split\"`), but the source replayed the transaction at \
             {position} first: the rest of it cannot be applied exactly",
            self.partial.changes, self.partial.position
        ))
        .with_fix(REPLAY_FIX)
    }

    fn differs(&self, how: &str) -> Error {
        Error::source_fatal(format!(
            "the destination holds the first {} changes of the transaction at {} \
             (`large_transaction = \"split\"`), but the source replayed it {how} (was the \
             table selection or the publication changed while tidewater was stopped?): the \
             rest of it cannot be applied exactly",
            self.partial.changes, self.partial.position
        ))
        .with_fix(REPLAY_FIX)
    }
}

const REPLAY_FIX: &str = "restore the table selection the transaction was split under and \
                          run again, or re-copy the replica from a new snapshot (start from an \
                          empty destination)";

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, ColumnType, TableId, TableSchema};

    fn changes(from: usize, to: usize) -> Vec<Change> {
        let t = Arc::new(TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![Column {
                name: "id".into(),
                ty: ColumnType::Int32,
                nullable: false,
                source_type: "int4".into(),
            }],
            key: vec![0],
        });
        (from..to)
            .map(|i| Change {
                table: t.clone(),
                kind: ChangeKind::Insert,
                row: vec![Value::text(&i.to_string())],
                old: None,
            })
            .collect()
    }

    fn partial(n: usize) -> PartialTx {
        let mut f = Fingerprint::default();
        f.add(&changes(0, n));
        PartialTx {
            position: Position("0/10".into()),
            changes: n as i64,
            fingerprint: f.value(),
        }
    }

    #[test]
    fn a_replay_drops_the_held_changes_across_event_boundaries() {
        let mut r = Replay::new(partial(5));
        let mut first = changes(0, 3);
        assert!(!r.skip(&mut first).unwrap());
        assert!(first.is_empty());
        let mut second = changes(3, 8);
        assert!(r.skip(&mut second).unwrap());
        let left: Vec<_> = second.iter().map(|c| c.row[0].clone()).collect();
        assert_eq!(
            left,
            vec![Value::text("5"), Value::text("6"), Value::text("7")]
        );
    }

    #[test]
    fn a_replay_with_other_changes_is_refused() {
        let mut r = Replay::new(partial(5));
        let mut other = changes(1, 9);
        let e = r.skip(&mut other).unwrap_err();
        assert!(e.message().contains("with other changes"), "{e}");
        assert!(e.fix().is_some());
    }

    #[test]
    fn the_fingerprint_is_the_stored_value_of_fnv_1a() {
        // Stored in replicas: it must not change between builds. (The value is FNV-1a of
        // `s\0t\0I\x02`, the length 1 as 8 little-endian bytes, and `0`, computed apart.)
        let mut f = Fingerprint::default();
        f.add(&changes(0, 1));
        assert_eq!(f.value(), 0xef72_7a67_d4e3_3608);
    }
}
