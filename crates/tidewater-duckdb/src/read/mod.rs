//! DuckDB's read side (`tidewater_core::replica::Replica`): the replica's status,
//! read-only statements on connections of their own, for `tidewater status` / `query`,
//! `GET /status`, `POST /query` and the PostgreSQL-wire SQL endpoint, and `verify`'s
//! comparison (`crate::compare`).
//!
//! Every connection handed out here belongs to a database instance with
//! `enable_external_access = false`: a statement cannot read files or the environment
//! outside the replica (`read_csv('/etc/passwd')`) as this process's user. The read-only
//! transaction each statement runs in (`exec`) is the second lock; the caller's check that
//! the statement only reads is the first.

mod exec;
mod json_cells;
mod psql_catalog;

use std::path::Path;
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use tidewater_core::replica::{
    Cells, Comparison, Interrupt, Params, QueryError, ReadSession, Replica, ReplicaCapabilities,
    StatusReport, TextResult,
};
use tidewater_core::{Error, Result};

use crate::compare::Comparer;

/// A DuckDB replica, read through clones of one connection.
pub struct DuckDbReplica {
    /// The connection sessions are cloned from (DuckDB connections are not shared between
    /// threads: each reader gets its own).
    template: Mutex<Connection>,
    pipeline: String,
}

impl DuckDbReplica {
    /// Everything: status, live query, the SQL endpoint, verify.
    pub const CAPABILITIES: ReplicaCapabilities = ReplicaCapabilities {
        live_query: true,
        sql_endpoint: true,
        verify: true,
    };

    /// The replica file opened read-only; fails while another process (`tidewater run`)
    /// holds it, with [`tidewater_core::replica::Held`] as the error's source.
    pub fn open_read_only(path: &Path, pipeline: &str) -> Result<DuckDbReplica> {
        let conn = crate::status::open_read_only(path)?;
        Ok(DuckDbReplica {
            template: Mutex::new(conn),
            pipeline: pipeline.into(),
        })
    }

    /// The replica the running sink writes, read through a clone of its connection. The
    /// sink's database instance loses access to files and the environment outside the
    /// replica from here on (the sink itself needs none).
    pub fn beside_sink(sink: &Connection, pipeline: &str) -> Result<DuckDbReplica> {
        let conn = sink
            .try_clone()
            .map_err(|e| Error::sink(format!("opening a read connection: {e}")))?;
        conn.execute_batch("SET enable_external_access = false")
            .map_err(|e| Error::sink(format!("restricting the read connection: {e}")))?;
        Ok(DuckDbReplica {
            template: Mutex::new(conn),
            pipeline: pipeline.into(),
        })
    }

    /// `verify`'s comparison with the replica file, while nobody writes it: the file is
    /// attached read-only to an in-memory database (`run` cannot start meanwhile).
    pub fn file_comparison(path: &Path) -> Result<Box<dyn Comparison>> {
        Ok(Box::new(Comparer::attach_file(path)?))
    }

    /// A connection of its own to the replica's database.
    pub fn connection(&self) -> Result<Connection> {
        let template = self.template.lock().unwrap_or_else(|e| e.into_inner());
        template
            .try_clone()
            .map_err(|e| Error::sink(format!("opening a read connection: {e}")))
    }
}

impl Replica for DuckDbReplica {
    fn capabilities(&self) -> ReplicaCapabilities {
        Self::CAPABILITIES
    }

    fn comparison(&self) -> Result<Box<dyn Comparison>> {
        Ok(Box::new(Comparer::new(self.connection()?)?))
    }

    fn status(&self) -> Result<StatusReport> {
        crate::status::collect(&self.connection()?, &self.pipeline)
    }

    fn session(&self) -> Result<Box<dyn ReadSession>> {
        Ok(Box::new(DuckDbSession {
            conn: self.connection()?,
        }))
    }

    fn catalog_statement(&self, sql: &str) -> Option<String> {
        psql_catalog::rewrite(sql)
    }
}

/// One reader's connection.
struct DuckDbSession {
    conn: Connection,
}

impl ReadSession for DuckDbSession {
    fn query(
        &mut self,
        sql: &str,
        params: &Params,
        limit: usize,
        cells: Cells,
    ) -> std::result::Result<TextResult, QueryError> {
        exec::run_text(&self.conn, sql, params, limit, cells)
    }

    fn interrupt(&self) -> Interrupt {
        let handle = self.conn.interrupt_handle();
        Arc::new(move || handle.interrupt())
    }
}
