//! Tables that join while streaming: created at the source after the initial snapshot, or
//! selected by widened `tables` globs. They are added to the publication here. When the
//! destination copies in chunks they are then copied like the initial snapshot, behind a
//! barrier (`stream::chunks::Copying::join`); otherwise their existing rows are copied in one
//! transaction at a position of the running stream:
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
use crate::conn::{format_lsn, open_replication, parse_lsn, pg_error, replication_error};
use crate::setup::{add_to_publication, publication_for, quote_ident, quoted_table};

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
    /// Step 1, table by table: the tables now in their publication, and those refused with
    /// the reason and its fix (typically: tidewater's role does not own a table another role
    /// created). A refused table is asked again at the next poll, so a fix takes effect
    /// without a restart. A connection error is returned instead: the pipeline retries.
    pub async fn publish(
        &self,
        client: &Client,
        tables: Vec<SourceTable>,
    ) -> Result<(Vec<SourceTable>, Vec<(TableId, String)>)> {
        let (mut published, mut refused) = (Vec::new(), Vec::new());
        for t in tables {
            if let Some(reason) = refusal(client, &self.publication, &t).await? {
                refused.push((t.schema.id.clone(), reason));
                continue;
            }
            match add_to_publication(client, &self.publication, &t).await {
                Ok(()) => published.push(t),
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => refused.push((t.schema.id.clone(), e.message().to_string())),
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

/// Why tidewater's role cannot take `table` in, from the catalog: it may not read the table
/// (the copy would fail), or may not add it to the publication (only the owner, or a member
/// of the owning role, may). Asked before trying, because every refused `ALTER PUBLICATION`
/// would be an error in the server's log at each poll. `None`: nothing stands in the way
/// (the `ALTER PUBLICATION` may still fail for another reason; `publish` reports that one).
async fn refusal(
    client: &Client,
    publication: &str,
    table: &SourceTable,
) -> Result<Option<String>> {
    let publication = publication_for(publication, table);
    let id = &table.schema.id;
    let row = client
        .query_opt(
            "SELECT has_table_privilege(c.oid, 'SELECT'), pg_has_role(c.relowner, 'USAGE'), \
             pg_get_userbyid(c.relowner)::text, current_user::text, \
             EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $2 \
                     AND p.schemaname = $3 AND p.tablename = $4) \
             FROM pg_class c WHERE c.oid = $1",
            &[&table.oid, &publication, &id.schema, &id.name],
        )
        .await
        .map_err(|e| pg_error(e, &format!("reading the privileges on {id}")))?;
    let Some(row) = row else {
        return Ok(Some(
            "the table was dropped or renamed before it could join".into(),
        ));
    };
    let (select, owns, owner, me, member): (bool, bool, String, String, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let (quoted, role, owner_role) = (quoted_table(id), quote_ident(&me), quote_ident(&owner));
    if !owns && !member {
        // Ownership (or membership in the owning role) also gives SELECT: one fix for both.
        let grant = if select {
            String::new()
        } else {
            format!(" and GRANT SELECT ON {quoted} TO {role}")
        };
        return Ok(Some(format!(
            "tidewater's role {me} cannot add it to publication {publication}: the table is owned \
             by {owner}, and only its owner may publish it. Fix (one of): ALTER TABLE {quoted} \
             OWNER TO {role}; or GRANT {owner_role} TO {role}; or, as {owner}, ALTER PUBLICATION \
             {} ADD TABLE {quoted}{grant}. It joins within seconds, no restart needed",
            quote_ident(&publication)
        )));
    }
    if !select {
        return Ok(Some(format!(
            "tidewater's role {me} may not read it (no SELECT privilege), so its rows cannot be \
             copied. Fix: GRANT SELECT ON {quoted} TO {role}; it joins within seconds, no \
             restart needed"
        )));
    }
    Ok(None)
}
