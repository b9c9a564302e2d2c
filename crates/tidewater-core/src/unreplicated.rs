//! Selected tables the source is not replicating, and why: the source-neutral channel by
//! which a source says "this table matches `tables` but is not in the replica" (PostgreSQL:
//! tidewater's role may not add it to the publication, or may not read it; MySQL: the
//! user cannot see it). The pipeline's health, `status`, the status page and `/metrics`
//! read it, so a table left out is never only a log line.
//!
//! The source owns the entries: it sets one when a table cannot join and removes it when
//! the table has joined (its rows are copied) or is no longer selected (dropped, renamed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::TableId;

/// A cheap handle (clones share the same set): the source writes, reporters read.
#[derive(Debug, Clone, Default)]
pub struct Unreplicated(Arc<Mutex<BTreeMap<TableId, String>>>);

impl Unreplicated {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableId, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `table` is selected but not replicated, because of `reason` (which names the fix).
    /// Returns whether this is news (the table was not listed, or for another reason), so
    /// that a source retrying every few seconds logs a warning only when something changed.
    pub fn set(&self, table: &TableId, reason: &str) -> bool {
        let mut m = self.lock();
        if m.get(table).is_some_and(|r| r == reason) {
            return false;
        }
        m.insert(table.clone(), reason.to_string());
        true
    }

    /// `table` is replicated now, or no longer selected. Returns whether it was listed.
    pub fn clear(&self, table: &TableId) -> bool {
        self.lock().remove(table).is_some()
    }

    pub fn contains(&self, table: &TableId) -> bool {
        self.lock().contains_key(table)
    }

    /// The listed tables with their reasons, in table order.
    pub fn list(&self) -> Vec<(TableId, String)> {
        self.lock()
            .iter()
            .map(|(t, r)| (t.clone(), r.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reports_news_only_and_clear_removes() {
        let u = Unreplicated::default();
        let t = TableId::new("public", "t");
        assert!(u.set(&t, "not owned"));
        assert!(!u.set(&t, "not owned"), "same reason again is no news");
        assert!(u.set(&t, "no SELECT"), "another reason is news");
        let shared = u.clone();
        assert_eq!(shared.list(), vec![(t.clone(), "no SELECT".to_string())]);
        assert!(shared.clear(&t));
        assert!(!u.clear(&t));
        assert!(u.is_empty());
    }
}
