//! Tables that join while streaming: created at the source after the initial snapshot, or
//! selected by widened `tables` globs. Their existing rows are copied exactly the way the
//! initial snapshot is, at a position of the running stream:
//!
//! 1. the tables are added to the publication; from that commit on, pgoutput sends their
//!    changes in the running stream;
//! 2. a temporary slot is created with an exported snapshot; its consistent point `C`
//!    divides the transactions into those the snapshot sees (commit LSN < C) and the rest;
//! 3. the stream drops the joining tables' changes of transactions that commit before `C`
//!    (the copy holds them), and when it passes `C`, the copy is sent as one transaction at
//!    position `C`, before any later transaction: nothing is missed, nothing applied twice.
//!
//! This is what PostgreSQL's own table synchronisation does for a subscription, without a
//! second apply stream. A crash before the copy commits leaves the tables outside the
//! replica, so the next run joins them again.

use std::collections::HashSet;

use pg_walstream::PgReplicationConnection;
use tidewater_core::{Error, Result, TableId};
use tokio_postgres::Client;
use tracing::info;

use crate::catalog::SourceTable;
use crate::conn::{format_lsn, open_replication, parse_lsn, replication_error};
use crate::setup::{add_to_publication, quote_ident};

/// Joining tables whose copy waits for the stream to reach the snapshot's position.
pub struct Joining {
    /// The temporary slot's consistent point.
    pub lsn: u64,
    pub snapshot: String,
    pub tables: Vec<SourceTable>,
    pub ids: HashSet<TableId>,
    /// Tables the replica holds already, copied again (see `stream::recopy`): their replica
    /// rows are replaced by the copy.
    pub recopy: HashSet<TableId>,
    /// Holds the temporary slot and keeps its exported snapshot importable until the copy
    /// is done (both end with this session).
    _session: PgReplicationConnection,
}

impl Joining {
    /// Adds a table the replica holds already to this copy: its replica rows are replaced
    /// by the copy's (see `stream::recopy`).
    pub fn add_recopy(&mut self, table: SourceTable) {
        let id = table.schema.id.clone();
        self.tables.retain(|t| t.schema.id != id);
        self.tables.push(table);
        self.ids.insert(id.clone());
        self.recopy.insert(id);
    }
}

/// Where to add tables and how to reach the server.
pub struct Joiner {
    pub url: String,
    pub slot: String,
    pub publication: String,
}

impl Joiner {
    /// Step 1, table by table: the tables now in their publication, and those refused for
    /// good (typically: tidewater's role does not own a table another role created). A
    /// connection error is returned instead: the pipeline retries.
    pub async fn publish(
        &self,
        client: &Client,
        tables: Vec<SourceTable>,
    ) -> Result<(Vec<SourceTable>, Vec<(TableId, Error)>)> {
        let (mut published, mut refused) = (Vec::new(), Vec::new());
        for t in tables {
            match add_to_publication(client, &self.publication, &t).await {
                Ok(()) => published.push(t),
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => refused.push((t.schema.id.clone(), e)),
            }
        }
        Ok((published, refused))
    }

    /// Step 2, for tables `publish` published: opens their snapshot.
    pub async fn begin(&self, tables: Vec<SourceTable>) -> Result<Joining> {
        let mut session = open_replication(&self.url).await?;
        // A temporary slot disappears with its session, also when the process dies.
        let mut name: String = self.slot.chars().take(58).collect();
        name.push_str("_join");
        let res = session
            .exec_async(&format!(
                "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT",
                quote_ident(&name)
            ))
            .await
            .map_err(|e| replication_error(e, &format!("creating temporary slot {name}")))?;
        let lsn = res.get_value(0, 1).and_then(|s| parse_lsn(&s));
        let (Some(lsn), Some(snapshot)) = (lsn, res.get_value(0, 2)) else {
            return Err(Error::source_fatal(
                "CREATE_REPLICATION_SLOT returned no snapshot",
            ));
        };
        if !tables.is_empty() {
            let names: Vec<String> = tables.iter().map(|t| t.schema.id.to_string()).collect();
            info!(tables = %names.join(", "), at = %format_lsn(lsn), "tables join the replica: their rows are copied when the stream reaches this position");
        }
        Ok(Joining {
            lsn,
            snapshot,
            ids: tables.iter().map(|t| t.schema.id.clone()).collect(),
            recopy: HashSet::new(),
            tables,
            _session: session,
        })
    }
}
