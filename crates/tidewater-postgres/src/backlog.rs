//! The source's backlog signal for the apply loop ([`tidewater_core::Backlog`]): whether the
//! server had already written well past a transaction when the stream delivered it.
//!
//! Logical replication does not carry the server's end of WAL: a walsender fills an XLogData
//! message's `wal_end` with the record's own LSN (PostgreSQL's `WalSndPrepareWrite`), and a
//! keepalive's with how far it has decoded. So a separate SQL session asks the server for its
//! flushed WAL position every [`POLL_INTERVAL`] (the position a walsender reads up to).
//!
//! A polled position is never ahead of the server, only late: a transaction is `Behind` when
//! a poll taken before it was delivered already saw more than [`BEHIND_BYTES`] of WAL written
//! past its commit, so a late poll can only miss a backlog (for at most one interval), not
//! invent one. WAL written for other tables counts too; at worst that lets one batch fill for
//! the flush interval. The signal only decides when the apply loop commits, never what.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::Backlog;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::conn::{connect, parse_lsn};

/// How often the server's flushed WAL position is asked for.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// WAL written past a delivered commit that makes the source "behind": about 20 ms of
/// pgbench's peak here, so a stream keeping up within a few milliseconds is current.
const BEHIND_BYTES: u64 = 64 << 10;

/// The server's flushed WAL position as last polled (0: not known), and the poll's task.
pub struct WalEnd {
    lsn: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl WalEnd {
    /// Starts polling on a connection of its own. A failure to connect or to query leaves
    /// the signal unknown (the apply loop then judges by commit times): never an error.
    pub fn start(url: String) -> WalEnd {
        let lsn = Arc::new(AtomicU64::new(0));
        let polled = lsn.clone();
        let task = tokio::spawn(async move {
            let client = match connect(&url).await {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "no backlog signal: cannot connect");
                    return;
                }
            };
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let row = client
                    .query_one(
                        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                         ELSE pg_current_wal_flush_lsn() END)::text",
                        &[],
                    )
                    .await;
                match row.map(|r| r.get::<_, Option<String>>(0)) {
                    Ok(Some(at)) => {
                        if let Some(at) = parse_lsn(&at) {
                            polled.fetch_max(at, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        debug!(error = %e, "no backlog signal: the poll failed");
                        polled.store(0, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        WalEnd { lsn, task }
    }

    /// The backlog at a transaction whose commit is at `commit_lsn`, being delivered now.
    pub fn backlog(&self, commit_lsn: u64) -> Backlog {
        backlog_at(self.lsn.load(Ordering::Relaxed), commit_lsn)
    }
}

impl Drop for WalEnd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rule, given the polled position (0: unknown).
fn backlog_at(polled: u64, commit_lsn: u64) -> Backlog {
    if polled == 0 {
        Backlog::Unknown
    } else if polled > commit_lsn.saturating_add(BEHIND_BYTES) {
        Backlog::Behind
    } else {
        Backlog::Current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_only_when_well_past_the_commit() {
        assert_eq!(backlog_at(0, 100), Backlog::Unknown);
        assert_eq!(backlog_at(50, 100), Backlog::Current);
        assert_eq!(backlog_at(100 + BEHIND_BYTES, 100), Backlog::Current);
        assert_eq!(backlog_at(101 + BEHIND_BYTES, 100), Backlog::Behind);
    }
}
