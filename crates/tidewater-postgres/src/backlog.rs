//! PostgreSQL's end of WAL for the backlog signal ([`tidewater_core::backlog`]): logical
//! replication does not carry it (a walsender fills an XLogData message's `wal_end` with the
//! record's own LSN, PostgreSQL's `WalSndPrepareWrite`, and a keepalive's with how far it
//! has decoded), so a separate SQL session asks for the flushed WAL position (the position a
//! walsender reads up to; on a standby, the replayed one). LSNs are bytes of WAL, so a
//! delivered commit LSN compares with it directly.

use tidewater_core::backlog::{EndPoll, PolledEnd};
use tidewater_core::Result;
use tokio_postgres::Client;

use crate::conn::{connect, parse_lsn};

/// The server's flushed WAL position, polled (see [`tidewater_core::backlog`]).
pub type WalEnd = PolledEnd;

struct WalFlush(Client);

impl EndPoll for WalFlush {
    async fn poll(&mut self) -> Result<Option<u64>> {
        let row = self
            .0
            .query_one(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_flush_lsn() END)::text",
                &[],
            )
            .await
            .map_err(|e| tidewater_core::Error::source_retryable(e.to_string()))?;
        Ok(row
            .get::<_, Option<String>>(0)
            .as_deref()
            .and_then(parse_lsn))
    }
}

/// Starts polling on a connection of its own (see [`PolledEnd::start`]).
pub fn start(url: String) -> WalEnd {
    PolledEnd::start(async move { connect(&url).await.map(WalFlush) })
}
