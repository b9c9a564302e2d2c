//! Tables that join at a restart: selected but not in the replica (`tables` globs widened, or
//! created while tidewater was stopped). Their rows are copied the way the initial snapshot
//! copies them, at a position of the binlog stream:
//!
//! 1. a consistent snapshot is opened (its exact binlog position `S`, see `snapshot`);
//! 2. the stream resumes from the stored position; the joining tables' changes in
//!    transactions that `S` includes are dropped (the copy holds them);
//! 3. before the first transaction that `S` does not include (or when an idle stream has
//!    passed `S`), the copy is sent as one transaction at position `S`.
//!
//! A crash before the copy commits leaves the tables outside the replica: the next run joins
//! them again. (Tables created while streaming need none of this: the binlog holds them from
//! their `CREATE TABLE` on.) A selected table the source user cannot read is listed as not
//! replicated, and joins the same way while streaming once it can be read (the snapshot is
//! opened between transactions, so its position is at or past the stream's).

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidewater_core::{Result, SourceEvent, TableId, Unreplicated};
use tokio::sync::mpsc;
use tracing::info;

use crate::catalog::SourceTable;
use crate::conn::my_error;
use crate::position::BinlogPosition;
use crate::snapshot::{copy_tables, quote_ident};
use crate::value::ZeroDates;

pub struct Joining {
    /// The snapshot's position.
    pub at: BinlogPosition,
    pub ids: HashSet<TableId>,
    tables: Vec<SourceTable>,
    /// Tables the replica holds already, copied again after a schema change the binlog does
    /// not carry (see `Stream::recopy`): their replica rows are replaced by the copy.
    recopy: HashSet<TableId>,
    /// Holds the snapshot transaction open until the copy.
    conn: Conn,
}

impl Joining {
    pub fn new(at: BinlogPosition, tables: Vec<SourceTable>, conn: Conn) -> Joining {
        if !tables.is_empty() {
            let names: Vec<String> = tables.iter().map(|t| t.schema.id.to_string()).collect();
            info!(tables = %names.join(", "), at = %at, "tables join the replica: their rows are copied when the stream reaches this position");
        }
        Joining {
            at,
            ids: tables.iter().map(|t| t.schema.id.clone()).collect(),
            tables,
            recopy: HashSet::new(),
            conn,
        }
    }

    /// Adds a table the replica holds already: its replica rows are replaced by the copy's.
    /// Sound while the stream is inside a transaction the snapshot holds (every open one, as
    /// long as the copy waits): the snapshot includes the change that asked for the copy.
    pub fn add_recopy(&mut self, table: SourceTable) {
        let id = table.schema.id.clone();
        self.tables.retain(|t| t.schema.id != id);
        self.tables.push(table);
        self.ids.insert(id.clone());
        self.recopy.insert(id);
    }

    /// Whether the copy holds the transaction that ends at `after`.
    pub fn holds(&self, after: &BinlogPosition) -> bool {
        self.at.reached(after)
    }

    /// Sends the copy as one transaction at the snapshot's position; the copied tables leave
    /// `unreplicated` (a table listed there joins once its cause is fixed).
    pub async fn copy(
        mut self,
        zero: ZeroDates,
        events: &mpsc::Sender<SourceEvent>,
        unreplicated: &Unreplicated,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let rows = copy_tables(
            &mut self.conn,
            &self.tables,
            &self.recopy,
            &self.at,
            zero,
            events,
        )
        .await?;
        info!(rows, seconds = format!("{:.1}", started.elapsed().as_secs_f64()), at = %self.at, "joining tables copied; their changes stream from here");
        for id in &self.ids {
            if unreplicated.clear(id) {
                info!(table = %id, "a table that could not be replicated has joined the replica");
            }
        }
        Ok(())
    }
}

/// Why a selected table the binlog names cannot be replicated, or `None` when it can: the
/// source user sees no column of it (no privilege on it: MySQL hides such tables from
/// `information_schema`), so neither its definition nor its rows can be read.
pub async fn unreadable(conn: &mut Conn, table: &SourceTable) -> Result<Option<String>> {
    if !table.schema.columns.is_empty() {
        return Ok(None);
    }
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| my_error(e, "reading the current user"))?;
    let user = match user.as_deref().and_then(|u| u.rsplit_once('@')) {
        Some((name, host)) => format!("'{name}'@'{host}'"),
        None => user.unwrap_or_default(),
    };
    let id = &table.schema.id;
    Ok(Some(format!(
        "the source user {user} cannot see it (no privilege on it, or it was dropped), so its \
         definition and rows cannot be read. Fix: GRANT SELECT ON {}.{} TO {user}; it joins \
         within seconds, no restart needed",
        quote_ident(&id.schema),
        quote_ident(&id.name)
    )))
}
