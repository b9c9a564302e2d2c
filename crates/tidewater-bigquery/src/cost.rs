//! What BigQuery billed the sink's commits: bytes processed, from the job statistics of each
//! commit transaction (on-demand pricing bills these; the emulator always reports 0). The
//! runtime exports them in `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct BqCost {
    total: AtomicU64,
    /// Per replica table (`dataset.table`): the bytes of the last commit transaction that
    /// MERGEd into it.
    last: Mutex<BTreeMap<String, u64>>,
    commits: AtomicU64,
}

impl BqCost {
    /// A commit transaction processed `bytes` and MERGEd into `tables`. The statistics of a
    /// script are its total; with several tables in one commit, each is shown the total.
    pub fn record_commit<'a>(&self, tables: impl Iterator<Item = &'a str>, bytes: u64) {
        self.total.fetch_add(bytes, Relaxed);
        self.commits.fetch_add(1, Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for t in tables {
            last.insert(t.to_string(), bytes);
        }
    }

    /// Bytes processed by every commit since the start.
    pub fn bytes_processed_total(&self) -> u64 {
        self.total.load(Relaxed)
    }

    /// Commit transactions since the start.
    pub fn commits(&self) -> u64 {
        self.commits.load(Relaxed)
    }

    /// Per replica table, the bytes of the last commit that MERGEd into it.
    pub fn last_merge_bytes(&self) -> BTreeMap<String, u64> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_and_the_last_commit_per_table_wins() {
        let c = BqCost::default();
        c.record_commit(["d.a", "d.b"].into_iter(), 100);
        c.record_commit(["d.a"].into_iter(), 7);
        assert_eq!(c.bytes_processed_total(), 107);
        assert_eq!(c.commits(), 2);
        let last = c.last_merge_bytes();
        assert_eq!((last["d.a"], last["d.b"]), (7, 100));
    }
}
