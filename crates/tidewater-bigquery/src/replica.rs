//! The BigQuery dataset's read side (`tidewater_core::replica::Replica`): `tidewater status`
//! (the committed position and lag from `_tidewater_state`, rows per table), `tidewater
//! query` (`session`: one read-only statement) and `tidewater verify` (`compare`).
//!
//! Blocking over async. The `Replica` trait is blocking (its callers run it on blocking
//! threads: the verify engine's comparison thread, `spawn_blocking` for queries and status)
//! and the BigQuery client is async. Like `BigQuerySink`, the replica keeps the handle of the
//! runtime it was opened on and blocks on it (`Handle::block_on`) from those threads. Making
//! the trait async would change every DuckDB method (which blocks on DuckDB anyway) and the
//! verify engine for one sink; the bridge is one line per call here.
//!
//! Capabilities, honestly: live query and verify, no SQL endpoint (the PostgreSQL wire
//! protocol needs a catalog psql can browse and statements answered in milliseconds: a
//! BigQuery job takes a second or more and bills each statement).

use std::sync::Arc;

use serde_json::Value as Json;
use tidewater_core::replica::{
    Comparison, ReadSession, Replica, ReplicaCapabilities, StatusReport, TableStatus,
};
use tidewater_core::time::format_utc_micros;
use tidewater_core::{Error, Result};
use tokio::runtime::Handle;

use crate::client::{BqClient, Connection};
use crate::compare::BqComparison;
use crate::definitions;
use crate::merge::literal;
use crate::session::BqSession;
use crate::tables::{table_names, STATE_TABLE};

/// The read side of one pipeline's dataset.
pub struct BigQueryReplica {
    rt: Handle,
    client: Arc<BqClient>,
    pipeline: String,
}

impl BigQueryReplica {
    pub const CAPABILITIES: ReplicaCapabilities = ReplicaCapabilities {
        live_query: true,
        sql_endpoint: false,
        verify: true,
    };

    /// Connects to the dataset (nothing is created); fails, saying who creates it, when it
    /// holds no pipeline state yet. Call from the runtime its blocking methods then use.
    pub async fn connect(connection: &Connection, pipeline: &str) -> Result<BigQueryReplica> {
        let client = BqClient::connect(connection).await?;
        if client.table_fields(STATE_TABLE).await?.is_none() {
            return Err(Error::sink(format!(
                "BigQuery dataset {}.{} holds no {STATE_TABLE} yet: `tidewater run` creates it",
                client.project, client.dataset
            )));
        }
        Ok(BigQueryReplica {
            rt: Handle::current(),
            client: Arc::new(client),
            pipeline: pipeline.to_string(),
        })
    }

    /// `project.dataset`, for messages and `tidewater status`.
    pub fn name(&self) -> String {
        format!("bigquery {}.{}", self.client.project, self.client.dataset)
    }

    async fn read_status(&self) -> Result<StatusReport> {
        let c = &self.client;
        let what = format!("reading {STATE_TABLE}");
        let sql = format!(
            "SELECT position, source_type, tx_ordinal, UNIX_MICROS(last_source_commit), \
             UNIX_MICROS(last_apply) FROM {} WHERE name = {}",
            c.qualified(STATE_TABLE),
            literal(&self.pipeline)
        );
        let rows = c.query(&what, &sql, None).await?;
        let mut report = StatusReport::default();
        let Some(row) = rows.first() else {
            return Ok(report);
        };
        let text = |i: usize| row.get(i).and_then(Json::as_str).map(str::to_string);
        let micros = |i: usize| text(i).and_then(|t| t.parse::<i64>().ok());
        report.position = text(0);
        report.source_type = text(1);
        report.transactions_applied = micros(2).unwrap_or(0);
        report.last_source_commit = micros(3).map(format_utc_micros);
        report.last_apply = micros(4).map(format_utc_micros);
        report.last_lag_ms = micros(3)
            .zip(micros(4))
            .map(|(commit, apply)| (apply - commit) / 1000);
        let mut held = definitions::read(c, &self.pipeline).await?;
        held.sort_by(|a, b| a.id.cmp(&b.id));
        if held.is_empty() {
            return Ok(report);
        }
        // COUNT(*) of a whole table is answered from metadata: no bytes billed.
        let counts: Vec<String> = held
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let names = table_names(&s.id);
                format!(
                    "SELECT {i} AS i, (SELECT COUNT(*) FROM {}) AS r, (SELECT COUNT(*) FROM {}) AS l",
                    c.qualified(&names.replica),
                    c.qualified(&names.log)
                )
            })
            .collect();
        let sql = counts.join(" UNION ALL ");
        let rows = c.query("counting the replica's rows", &sql, None).await?;
        let int = |row: &Vec<Json>, i: usize| {
            let cell = row.get(i).and_then(Json::as_str);
            cell.and_then(|t| t.parse::<i64>().ok()).unwrap_or(-1)
        };
        for row in &rows {
            let Some(s) = usize::try_from(int(row, 0)).ok().and_then(|i| held.get(i)) else {
                continue;
            };
            let changes = int(row, 2);
            report.changes_applied += changes.max(0);
            report.tables.push(TableStatus {
                table: s.id.to_string(),
                rows: int(row, 1),
                changes_applied: changes,
                schema_version: 1,
            });
        }
        report.tables.sort_by(|a, b| a.table.cmp(&b.table));
        Ok(report)
    }
}

impl Replica for BigQueryReplica {
    fn capabilities(&self) -> ReplicaCapabilities {
        Self::CAPABILITIES
    }

    fn status(&self) -> Result<StatusReport> {
        self.rt.block_on(self.read_status())
    }

    fn session(&self) -> Result<Box<dyn ReadSession>> {
        Ok(Box::new(BqSession::new(
            self.rt.clone(),
            self.client.clone(),
        )))
    }

    fn comparison(&self) -> Result<Box<dyn Comparison>> {
        Ok(Box::new(BqComparison::new(
            self.rt.clone(),
            self.client.clone(),
        )))
    }
}
