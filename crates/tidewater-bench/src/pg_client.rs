//! A blocking PostgreSQL session for the frequent small statements of a run
//! (slot positions polled while tidewater drains, freshness probe inserts):
//! one connection kept open, so polling costs no process start.

use tokio::runtime::{Builder, Runtime};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::error::{BenchError, Result};

pub struct PgClient {
    rt: Runtime,
    client: Client,
}

impl PgClient {
    pub fn connect(url: &str) -> Result<PgClient> {
        let rt = Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BenchError::io("starting a tokio runtime"))?;
        let (client, connection) = rt.block_on(tokio_postgres::connect(url, NoTls))?;
        // Driven whenever a query below is (a current-thread runtime runs it inside block_on).
        rt.spawn(connection);
        Ok(PgClient { rt, client })
    }

    /// Runs statements (simple query protocol), discarding results.
    pub fn execute(&self, sql: &str) -> Result<()> {
        Ok(self.rt.block_on(self.client.batch_execute(sql))?)
    }

    /// The first column of the first row, as text (`None` for no row or NULL).
    pub fn value(&self, sql: &str) -> Result<Option<String>> {
        let messages = self.rt.block_on(self.client.simple_query(sql))?;
        Ok(messages
            .into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
                _ => None,
            })
            .flatten())
    }

    /// Whether the slot has confirmed `lsn` (tidewater confirms only what DuckDB committed).
    pub fn slot_confirmed(&self, slot: &str, lsn: &str) -> Result<bool> {
        let sql = format!(
            "SELECT coalesce(confirmed_flush_lsn >= '{lsn}'::pg_lsn, false) \
             FROM pg_replication_slots WHERE slot_name = '{slot}'"
        );
        Ok(self.value(&sql)?.as_deref() == Some("t"))
    }
}
