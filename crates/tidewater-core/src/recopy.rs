//! Requests to copy replicated tables again while streaming: the source-neutral channel by
//! which the runtime asks the running source to replace a table's replica rows with a fresh
//! copy taken at a position of its stream (continuous verification's `repair`; later
//! `tidewater resnapshot --tables`). The source serves them through the same re-copy path it
//! uses for a schema change the stream does not carry, so the copy is exact for the same
//! reasons (see each source's `stream/recopy.rs`).
//!
//! The handle lives as long as the process (in `Stats`), so a request made while the source
//! restarts is served by the next attempt. A source takes the requests between transactions.
//! A chunked re-copy (`crate::copy`, "Copies again") is kept once its first transaction
//! commits (milliseconds after it is taken): the tables taken together start in one
//! transaction, and after a crash their copy resumes at the next chunk. One taken and lost
//! before that (or, for a re-copy in one transaction, before the copy committed) is not served
//! again, which is fine for its users: they look at the replica again and ask again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::TableId;

/// A cheap handle (clones share the same set): the runtime asks, the source takes.
#[derive(Debug, Clone, Default)]
pub struct RecopyRequests(Arc<Mutex<BTreeSet<TableId>>>);

impl RecopyRequests {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<TableId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `tables` to be copied again (a table asked for twice is copied once).
    pub fn request(&self, tables: impl IntoIterator<Item = TableId>) {
        self.lock().extend(tables);
    }

    /// The tables asked for since the last call, in table order; the set is empty after.
    pub fn take(&self) -> Vec<TableId> {
        std::mem::take(&mut *self.lock()).into_iter().collect()
    }

    /// Tables asked for and not taken yet.
    pub fn pending(&self) -> Vec<TableId> {
        self.lock().iter().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_once() {
        let r = RecopyRequests::default();
        let source_side = r.clone();
        assert!(source_side.take().is_empty());
        r.request([TableId::new("public", "b"), TableId::new("public", "a")]);
        r.request([TableId::new("public", "a")]);
        assert_eq!(r.pending().len(), 2);
        assert_eq!(
            source_side.take(),
            vec![TableId::new("public", "a"), TableId::new("public", "b")]
        );
        assert!(r.is_empty());
    }
}
