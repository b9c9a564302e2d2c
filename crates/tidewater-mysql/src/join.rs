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
//! their `CREATE TABLE` on.)

use std::collections::HashSet;

use mysql_async::Conn;
use tidewater_core::{Result, SourceEvent, TableId};
use tokio::sync::mpsc;
use tracing::info;

use crate::catalog::SourceTable;
use crate::position::BinlogPosition;
use crate::snapshot::copy_tables;
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

    /// Sends the copy as one transaction at the snapshot's position.
    pub async fn copy(mut self, zero: ZeroDates, events: &mpsc::Sender<SourceEvent>) -> Result<()> {
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
        Ok(())
    }
}
