//! The sink's side of a chunked copy (`tidewater_core::copy`): which tables are applied
//! leniently (not consistent yet) and which are fresh copies whose chunk rows are appended as
//! they are. Kept apart from the batch mechanics in `sink.rs`.

use std::collections::HashSet;

use tidewater_core::{Change, CopyProgress, Error, Result, TableId, Value};

use super::DuckDbSink;
use crate::staged::key_bytes;

/// Keys a fresh copy's streamed changes may touch before it stops being one (its chunk rows
/// are then all staged, as upserts): bounds the memory the keys take (~10 MiB).
const MAX_TOUCHED: usize = 100_000;

impl DuckDbSink {
    /// Takes the tables' copy progress into account: which tables are applied leniently.
    pub(super) fn set_lenient(&mut self, progress: &[CopyProgress]) {
        for p in progress {
            let keyed = self
                .tables
                .get(&p.table)
                .is_some_and(|t| t.sql.schema.has_key());
            let lenient = keyed && !p.consistent;
            if lenient {
                self.lenient.insert(p.table.clone());
            } else {
                self.lenient.remove(&p.table);
            }
            if let Some(t) = self.tables.get_mut(&p.table) {
                t.lenient = lenient;
            }
        }
    }

    /// Copies that begin (no chunk yet) on an empty replica table become fresh copies (see
    /// `TableState::fresh_copy`); copies that are consistent stop being one. The table is
    /// merged first, so that its replica table holds everything written to it.
    pub(super) fn mark_fresh_copies(&mut self, progress: &[CopyProgress]) -> Result<()> {
        for p in progress {
            let begins = p.chunks == 0
                && p.rows == 0
                && !p.done
                && self.lenient.contains(&p.table)
                && self.tables.contains_key(&p.table);
            if begins {
                self.merge(&p.table)?;
            }
            if begins && self.replica_empty(&p.table)? {
                self.fresh_copies
                    .insert(p.table.clone(), Default::default());
            } else if !self.lenient.contains(&p.table) {
                self.end_fresh_copy(&p.table);
            }
            if let Some(t) = self.tables.get_mut(&p.table) {
                t.fresh_copy = self.fresh_copies.contains_key(&p.table);
            }
        }
        Ok(())
    }

    /// A streamed change of a fresh copy's table: its keys (the row's, and the old one of a
    /// key change) are touched (see `TableState::fresh_copy`).
    pub(super) fn touch_fresh_copy(&mut self, change: &Change) {
        let id = &change.table.id;
        let Some(touched) = self.fresh_copies.get_mut(id) else {
            return;
        };
        let key = &change.table.key;
        let new = key.iter().map(|&k| &change.row[k]);
        let old = change.old.iter().flatten();
        if new
            .clone()
            .chain(old.clone())
            .any(|v| matches!(v, Value::Unchanged))
        {
            // (Never sent for a key; if it were, the key would be unknown.)
            self.end_fresh_copy(id);
            return;
        }
        touched.insert(key_bytes(new));
        if change.old.is_some() {
            touched.insert(key_bytes(old));
        }
        if touched.len() > MAX_TOUCHED {
            let id = id.clone();
            self.end_fresh_copy(&id);
        }
    }

    pub(super) fn end_fresh_copy(&mut self, id: &TableId) {
        if self.fresh_copies.remove(id).is_some() {
            if let Some(t) = self.tables.get_mut(id) {
                t.fresh_copy = false;
            }
        }
    }

    /// Whether the table the rows of `id` go to (its replica or copy table) is empty.
    pub(super) fn replica_empty(&self, id: &TableId) -> Result<bool> {
        let target = self.tables.get(id).map_or(id, |t| &t.sql.replica);
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1)",
            crate::sql::qualified(target)
        );
        let rows: i64 = self
            .conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| Error::sink(format!("reading the replica table {id}: {e}")))?;
        Ok(rows == 0)
    }
}

/// Whether a row of a fresh copy (`touched`: the keys its streamed changes touched) is
/// appended: a chunk row whose key no streamed change touched (see `TableState::fresh_copy`).
/// No key is built while nothing is touched, the common case.
pub(super) fn appends_fresh(touched: Option<&HashSet<Vec<u8>>>, change: &Change) -> bool {
    change.kind == tidewater_core::ChangeKind::Snapshot
        && touched.is_some_and(|touched| {
            let key = change.table.key.iter().map(|&k| &change.row[k]);
            touched.is_empty() || !touched.contains(&key_bytes(key))
        })
}
