//! Streamed rows on their way into the staging tables (`tabledata.insertAll`).
//!
//! Rows are gathered per staging table and sent `APPEND_ROWS` at a time, with up to
//! `MAX_APPENDS_IN_FLIGHT` requests out at once; what is left goes when the batch commits
//! (`flush`). So a batch of many small source transactions costs one request per staging table
//! and 500 rows, not one per transaction and table (a pgbench transaction touches four
//! tables). Memory: at most `APPEND_ROWS` rows per staging table, plus the requests in flight.
//!
//! Nothing here decides what is committed: the commit transaction selects staged rows by run
//! and ordinal (`sink`), and waits for every append first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use tidewater_core::{Error, Result};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::client::BqClient;

/// Rows per insertAll request (BigQuery recommends about 500).
const APPEND_ROWS: usize = 500;
/// insertAll requests in flight before an append waits for the oldest.
const MAX_APPENDS_IN_FLIGHT: usize = 8;

pub struct Appends {
    rt: Handle,
    client: Arc<BqClient>,
    /// Rows not sent yet, per staging table.
    pending: BTreeMap<String, Vec<TableDataInsertAllRequestRows>>,
    in_flight: VecDeque<JoinHandle<Result<()>>>,
}

impl Appends {
    pub fn new(rt: Handle, client: Arc<BqClient>) -> Appends {
        Appends {
            rt,
            client,
            pending: BTreeMap::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// Queues rows for `staging`; sends full requests at once.
    pub fn add(
        &mut self,
        staging: &str,
        rows: impl IntoIterator<Item = TableDataInsertAllRequestRows>,
    ) -> Result<()> {
        let pending = self.pending.entry(staging.to_string()).or_default();
        pending.extend(rows);
        if pending.len() >= APPEND_ROWS {
            let rows = std::mem::take(pending);
            self.send(staging, rows)?;
        }
        Ok(())
    }

    /// Sends what is queued and waits until every request has been answered.
    pub fn flush(&mut self) -> Result<()> {
        for (staging, rows) in std::mem::take(&mut self.pending) {
            self.send(&staging, rows)?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(())
    }

    /// Drops what is queued and stops what is in flight (an abandoned batch: its rows are
    /// never selected).
    pub fn abandon(&mut self) {
        self.pending.clear();
        for task in self.in_flight.drain(..) {
            task.abort();
        }
    }

    fn send(&mut self, staging: &str, rows: Vec<TableDataInsertAllRequestRows>) -> Result<()> {
        for chunk in rows.chunks(APPEND_ROWS) {
            while self.in_flight.len() >= MAX_APPENDS_IN_FLIGHT {
                self.wait_oldest()?;
            }
            let (client, staging) = (self.client.clone(), staging.to_string());
            let chunk = chunk.to_vec();
            let task = self
                .rt
                .spawn(async move { client.insert_all(&staging, chunk).await });
            self.in_flight.push_back(task);
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.rt
            .block_on(task)
            .map_err(|e| Error::sink(format!("appending to a staging table: {e}")))?
    }
}
