//! The source's backlog signal for the apply loop ([`Backlog`] on each transaction), taken by
//! polling how far the source server has written its log.
//!
//! Neither replication protocol says how much the server has written past what it streams
//! (PostgreSQL's `wal_end` is the record's own LSN; a binlog dump sends no end position), so
//! a source asks on a connection of its own every [`POLL_INTERVAL`] (PostgreSQL:
//! `pg_current_wal_flush_lsn()`; MySQL/MariaDB: `SHOW BINARY LOG STATUS`) and compares the
//! answer with the position of the transaction it delivers. The source says how to poll
//! ([`EndPoll`]) and maps its positions to `u64`s in which the distance is bytes of log;
//! this module holds the polling task and the rule, the same for every source.
//!
//! A polled position is never ahead of the server, only late: a transaction is `Behind` when
//! a poll taken before it was delivered already saw more than [`BEHIND_BYTES`] of log written
//! past it, so a late poll can only miss a backlog (for at most one interval), not invent
//! one. Log written for tables that are not replicated counts too; at worst that lets one
//! batch fill for the flush interval. The signal only decides when the apply loop commits,
//! never what: a wrong answer costs latency or commit size, never exactness.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::debug;

use crate::error::Result;
use crate::event::Backlog;

/// How often the server's end of log is asked for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Log written past a delivered transaction that makes the source "behind": about 20 ms of
/// pgbench's peak here, so a stream keeping up within a few milliseconds is current.
pub const BEHIND_BYTES: u64 = 64 << 10;

/// One source's way of asking its server how far it has written (on a connection it holds).
pub trait EndPoll: Send + 'static {
    /// The server's end of log as a `u64` comparable with the delivered positions the source
    /// passes to [`PolledEnd::backlog`]; `None` when the server cannot tell now.
    fn poll(&mut self) -> impl Future<Output = Result<Option<u64>>> + Send;
}

/// The server's end of log as last polled (0: not known), and the polling task.
pub struct PolledEnd {
    end: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl PolledEnd {
    /// Starts polling with the poller `connect` yields. A failure to connect or to poll
    /// leaves the signal unknown (the apply loop then judges by commit times): never an
    /// error of the pipeline.
    pub fn start<P: EndPoll>(connect: impl Future<Output = Result<P>> + Send + 'static) -> Self {
        let end = Arc::new(AtomicU64::new(0));
        let polled = end.clone();
        let task = tokio::spawn(async move {
            let mut poller = match connect.await {
                Ok(p) => p,
                Err(e) => {
                    debug!(error = %e, "no backlog signal: cannot connect");
                    return;
                }
            };
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match poller.poll().await {
                    Ok(Some(at)) => {
                        polled.fetch_max(at, Ordering::Relaxed);
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
        PolledEnd { end, task }
    }

    /// The server's end of log as last polled (0: not known yet).
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Relaxed)
    }

    /// The backlog at a transaction that ends at `delivered`, being delivered now.
    pub fn backlog(&self, delivered: u64) -> Backlog {
        backlog_at(self.end(), delivered)
    }
}

impl Drop for PolledEnd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rule, given the polled end of log (0: unknown) and the delivered position.
pub fn backlog_at(polled: u64, delivered: u64) -> Backlog {
    if polled == 0 {
        Backlog::Unknown
    } else if polled > delivered.saturating_add(BEHIND_BYTES) {
        Backlog::Behind
    } else {
        Backlog::Current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_only_when_well_past_the_delivered_position() {
        assert_eq!(backlog_at(0, 100), Backlog::Unknown);
        assert_eq!(backlog_at(50, 100), Backlog::Current);
        assert_eq!(backlog_at(100 + BEHIND_BYTES, 100), Backlog::Current);
        assert_eq!(backlog_at(101 + BEHIND_BYTES, 100), Backlog::Behind);
    }

    /// A poller answering from a list, then failing.
    struct Scripted(Vec<Option<u64>>);

    impl EndPoll for Scripted {
        async fn poll(&mut self) -> Result<Option<u64>> {
            if self.0.is_empty() {
                return Err(crate::Error::source_retryable("gone"));
            }
            Ok(self.0.remove(0))
        }
    }

    async fn wait_for(end: &PolledEnd, want: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while end.end() != want {
            assert!(tokio::time::Instant::now() < deadline, "end {}", end.end());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_furthest_poll_counts_until_a_poll_fails() {
        let end = PolledEnd::start(async {
            Ok(Scripted(vec![
                Some(500_000),
                None,
                Some(300_000),
                Some(900_000),
            ]))
        });
        wait_for(&end, 900_000).await;
        assert_eq!(end.backlog(900_000 - BEHIND_BYTES - 1), Backlog::Behind);
        // The script ends: the poll fails and the signal is unknown again.
        wait_for(&end, 0).await;
        assert_eq!(end.backlog(1), Backlog::Unknown);
    }
}
